"""Theory against simulation: run a simulation ensemble and the ODEs from the same state.

    >>> from odeflow.compare import compare
    >>> c = compare({"rule": "fa", "N": 1000, "alpha_max": 50, "seeds": 8})  # doctest: +SKIP
    >>> print(c.summary())                                                    # doctest: +SKIP

or ``python -m odeflow compare CONFIG.json [-o OUT.npz] [--plot OUT.png] [--quiet]``.

This module is **the one bridge** from ``odeflow`` to ``simulations``: everything else in
``odeflow`` integrates order parameters and knows nothing about finite-N networks.
``simulations`` is imported lazily, inside :func:`compare`, so that ``import odeflow``
never pulls it in (and the rule "odeflow does not depend on simulations" holds for every
other entry point).

What is compared
----------------
The config is a simulation config (the keys of ``python -m simulations run``, see
``simulations.teacher_student.validate_config``) plus optional ODE keys
:data:`ODE_KEYS` (``method``, ``rtol``, ``atol``, ``dt``). ``same_init`` defaults to true
(and must be true): every seed starts from the same weights, so the ensemble mean is the
finite-N estimate of one trajectory, and the ODE is started from the *measured* initial
order parameters of seed index 0 (docs/theory.md §6), integrated with the simulation's
``eta``, ``eta_v``, ``sigma`` and ``activation`` and recorded on the simulation's α grid.

``rule`` may also be a :class:`theory.rules.Rule` or ``"path/to/file.py:NAME"`` (a Rule
defined in a Python file; from the command line a relative path is relative to the config
file): the simulation kernel and the ODEs are then both generated from that Rule, and the
config's ``rule_params`` go to both.

Every simulated rule has its own ODE (:data:`ODE_RULE`); ``pepita`` and ``pepita-forward``
use the exact two-pass equations of docs/quadrature.md (Gaussian quadrature), with the
measured ``‖F‖² = N σ_F²`` as a finite-N parameter for ``pepita``.

For every order parameter ``eg, Q, R, v, b`` (``b`` only for rules with feedback) the
discrepancy is ``max over α and components of |mean_sim − ODE|`` over the α range both
reached, and the standard error is ``max over α and components of std_sim/√n`` (n seeds
that did not diverge).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


class _LazyNumpy:
    """numpy, imported on first use: ``python -m odeflow --help`` registers this module's
    arguments and must not pay for numpy (start-up time, issue 11)."""

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)


np = _LazyNumpy()

__all__ = ["compare", "Comparison", "ODE_KEYS", "ODE_RULE", "OBSERVABLES"]

#: config keys that go to the ODE solver rather than to the simulation
ODE_KEYS = ("method", "rtol", "atol", "dt", "quadrature")
#: which ODE system describes each simulated rule
#: (rules of other models, theory.models.RULE_MODELS, are their own ODE rule too)
ODE_RULE = {
    "bp": "bp",
    "fa": "fa",
    "afa": "afa",
    "pepita": "pepita",
    "pepita-forward": "pepita-forward",
}
#: file types ``--plot`` can write (matplotlib's, by extension)
PLOT_FORMATS = (".png", ".pdf", ".svg")
#: the order parameters compared, in order: eg, Q, R, then each model's compare_fields
#: (theory.models: committee v, b; Forward-Forward label weights u, mean loss, goodness gap)
OBSERVABLES = ("eg", "Q", "R", "v", "b", "u", "loss", "gap")


@dataclass(eq=False)
class Comparison:
    """The result of :func:`compare`.

    Attributes
    ----------
    alpha : (T,) array
        The common record grid (the simulation's, cut where the ODE stopped).
    sim_mean, sim_std : dict name -> (T, ...) arrays
        Ensemble mean and sample std (ddof=1) over the non-diverged seeds.
    ode : dict name -> (T, ...) arrays
        The ODE trajectory on the same grid.
    discrepancy : dict name -> float
        ``max_α max_components |sim_mean − ode|``.
    stderr : dict name -> float
        ``max_α max_components sim_std/√n_seeds``: the size of the statistical error of
        the simulation mean.
    n_seeds : int
        Seeds in the mean (those that did not diverge).
    sim : simulations.teacher_student.SimulationResult
    ode_result : odeflow.Result
    config : dict
        The simulation config as validated, plus the ODE options used (key ``"ode"``).
    """

    alpha: np.ndarray
    sim_mean: dict
    sim_std: dict
    ode: dict
    discrepancy: dict
    stderr: dict
    n_seeds: int
    sim: object
    ode_result: object
    config: dict
    notes: list = field(default_factory=list)

    @property
    def names(self) -> tuple:
        """The compared quantities: eg, Q, R, then the model's ``compare_fields``."""
        return tuple(self.ode)

    @property
    def success(self) -> bool:
        """True when the ODE reached alpha_max and at least one seed survived."""
        return bool(self.ode_result.success) and self.n_seeds > 0

    def relative(self, name: str = "eg") -> float:
        """Discrepancy in units of the standard error (inf if the error is 0)."""
        se, d = self.stderr[name], self.discrepancy[name]
        if se == 0:
            return 0.0 if d == 0 else math.inf
        return d / se

    def summary(self) -> str:
        """A small table: discrepancy and standard error per order parameter."""
        cfg = self.config
        lines = [
            f"compare {_name(cfg)} (ODE: {cfg['ode']['rule']}) N={cfg['N']} "
            f"K={cfg['K']} M={cfg['M']} {cfg['activation']}, {self.n_seeds} of "
            f"{len(cfg['seeds'])} seeds, α = 0..{self.alpha[-1]:.4g}",
            f"{'':4s}{'max|sim-ode|':>14s}{'max stderr':>14s}{'ratio':>9s}",
        ]
        for k in self.names:
            lines.append(
                f"{k:4s}{self.discrepancy[k]:14.4g}{self.stderr[k]:14.4g}{self.relative(k):9.3g}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_arrays(self) -> dict:
        """Flat dict of arrays (for ``np.savez``)."""
        d = {"alpha": self.alpha, "n_seeds": np.asarray(self.n_seeds)}
        for k in self.names:
            d[f"sim_{k}_mean"] = self.sim_mean[k]
            d[f"sim_{k}_std"] = self.sim_std[k]
            d[f"ode_{k}"] = self.ode[k]
            d[f"discrepancy_{k}"] = np.asarray(self.discrepancy[k])
            d[f"stderr_{k}"] = np.asarray(self.stderr[k])
        d["sim_eg"] = self.sim.eg[:, : len(self.alpha)]
        d.update(self.ode_result.init.to_dict("init_"))
        d["config_json"] = np.asarray(json.dumps(self.config))
        d["ode_message"] = np.asarray(self.ode_result.message)
        return d

    def save(self, path) -> Path:
        """Write :meth:`to_arrays` to ``path`` (``.npz``)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"compare output must end in .npz, got {path}")
        np.savez(path, **self.to_arrays())
        return path

    def plot(self, path=None, colors=None):
        """Simulation mean ± 1 std (bands) against the ODE (lines) for every order
        parameter; returns the figure, and saves it when ``path`` is given."""
        import matplotlib.pyplot as plt

        names = self.names
        fig, axes = plt.subplots(
            1, len(names), figsize=(3.3 * len(names), 3.0), constrained_layout=True
        )
        a = self.alpha
        cyc = colors or plt.rcParams["axes.prop_cycle"].by_key()["color"]
        labels = {
            "eg": r"$\varepsilon_g$",
            "Q": r"$Q_{kl}$",
            "R": r"$R_{km}$",
            "v": r"$v_k$",
            "b": r"$b_k$",
            "u": r"$u_k$",
            "loss": "mean loss",
            "gap": r"$E[G^+ - G^-]$",
        }
        for ax, k in zip(np.atleast_1d(axes), names):
            m, s, o = (
                _components(k, x[k], len(a)) for x in (self.sim_mean, self.sim_std, self.ode)
            )
            sub = _component_labels(k, self.sim_mean[k].shape[1:])
            for j in range(m.shape[1]):
                c = cyc[j % len(cyc)]
                ax.fill_between(a, m[:, j] - s[:, j], m[:, j] + s[:, j], color=c, alpha=0.25, lw=0)
                ax.plot(a, m[:, j], ".", color=c, ms=2.5)
                ax.plot(a, o[:, j], "-", color=c, lw=1.2, label=sub[j])
            ax.set_xlabel(r"$\alpha$")
            ax.set_ylabel(labels.get(k, k))
            if k == "eg":
                ax.set_yscale("log")
            elif m.shape[1] > 1:
                ax.legend(fontsize=7, frameon=False)
        cfg = self.config
        fig.suptitle(
            f"{_name(cfg)}: N = {cfg['N']}, {self.n_seeds} seeds (dots ± 1 std) vs ODE (lines)",
            fontsize=10,
        )
        if path is not None:
            fig.savefig(path, dpi=150, bbox_inches="tight")
        return fig


def _name(cfg) -> str:
    r = cfg["rule"]
    return cfg.get("rule_name") or (r["name"] if isinstance(r, dict) else str(r))


def _components(name, x, T):
    """(T, n) columns of an observable; only the upper triangle of the symmetric Q."""
    x = np.asarray(x)
    if name == "Q":
        iu = np.triu_indices(x.shape[-1])
        return x[:, iu[0], iu[1]]
    return x.reshape(T, -1)


def _component_labels(name, shape):
    if name == "eg" or len(shape) == 0:
        return [""]
    if name == "Q":
        iu = np.triu_indices(shape[0])
        return [f"Q{i + 1}{j + 1}" for i, j in zip(*iu)]
    if len(shape) == 1:
        return [f"{name}{i + 1}" for i in range(shape[0])]
    return [f"{name}{i + 1}{j + 1}" for i in range(shape[0]) for j in range(shape[1])]


def split_config(config: dict) -> tuple[dict, dict]:
    """``(simulation config, ODE options)`` from a compare config."""
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    sim_cfg = {k: v for k, v in config.items() if k not in ODE_KEYS}
    ode_opts = {k: config[k] for k in ODE_KEYS if k in config}
    if "same_init" in sim_cfg and not sim_cfg["same_init"]:
        raise ValueError(
            "compare needs same_init: true (the ODE follows one initial state; "
            "with different initial weights per seed the ensemble mean is not "
            "the trajectory of any single ODE)"
        )
    sim_cfg["same_init"] = True
    return sim_cfg, ode_opts


def compare(config: dict, progress: bool = False, sim=None) -> Comparison:
    """Run the simulation ensemble of ``config`` and the ODE from its measured initial state.

    Parameters
    ----------
    config : dict
        Simulation config (``simulations.teacher_student.validate_config``) plus optional
        ODE options ``method`` (default "dopri5"), ``rtol`` (1e-8), ``atol`` (1e-10), ``dt``.
    progress : bool
        Progress bars on stderr.
    sim : SimulationResult, optional
        An already-run simulation of this config (then it is not run again).

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        For an invalid config (unknown keys, ``same_init: false``, …).
    """
    # the one place where odeflow imports simulations (lazily: see the module docstring)
    import importlib

    from simulations.kernelgen import resolve_rule
    from simulations.sim_config import _jsonable_config
    from theory.models import MODELS, RULE_MODELS, model_of

    from .api import check_solver_options, solve

    sim_cfg, ode_opts = split_config(config)
    # a config with "widths" is a deep student (docs/deep.md): its own simulation module,
    # named by the model (theory.models), and the deep ODEs
    deep = "widths" in sim_cfg
    model = MODELS["deep"] if deep else None
    simmod = importlib.import_module(
        model.simulation if deep else "simulations.teacher_student"
    )
    # every ODE option is checked before the (long) simulations run, not after them
    check_solver_options(**ode_opts)
    cfg = simmod.validate_config(sim_cfg)
    if sim is None:
        sim = simmod.simulate(cfg, progress=progress)
    rule = cfg["rule"]
    if model is None:
        model = model_of(rule)  # theory.models: parameters and compared fields
    extra = {"widths": cfg["widths"]} if deep else {}
    if deep:
        ode_rule = rule
    elif isinstance(rule, str) and (rule in ODE_RULE or rule in RULE_MODELS):
        ode_rule = ODE_RULE.get(rule, rule)
    else:  # a Rule (or a file naming one): the same Rule for the ODE
        ode_rule = resolve_rule(rule).rule
    init = sim.initial_state(0)  # for pepita*: b, c, sigma_F2 (and F_norm2) measured
    rates = {k: cfg[k] for k in model.param_names if k in cfg}
    ode_res = solve(
        ode_rule,
        init,
        **rates,
        activation=cfg["activation"],
        alpha_max=cfg["alpha_max"],
        record={"alpha": sim.alpha.tolist()},
        rule_params=cfg.get("rule_params") or None,
        progress=progress,
        **extra,
        **ode_opts,
    )
    T = len(ode_res.alpha)
    notes = []
    if not ode_res.success:
        notes.append(f"ODE: {ode_res.message}; compared up to α = {ode_res.alpha[-1]:.4g}")
    if sim.diverged.any():
        notes.append(
            f"{int(sim.diverged.sum())} of {len(sim.seeds)} seeds diverged (at α = "
            + ", ".join(f"{a:.3g}" for a in sim.alpha_diverged[sim.diverged])
            + "); they are left out of the mean"
        )
    if (ode_res.params.get("system") or {}).get("presynaptic") == "x_tilde":  # pepita
        nF2 = cfg["N"] * cfg["sigma_F"] ** 2
        notes.append(
            f"pepita's exact ODE (docs/quadrature.md) with ‖F‖² = N σ_F² = {nF2:.3g}: "
            "b grows like exp(η ‖F‖² ∫E[δ e]) along F"
        )
    # the model's fields that both the simulation and the ODE have (no b for backprop)
    names = ["eg", "Q", "R"] + [
        k
        for k in model.compare_fields
        if getattr(sim, k, None) is not None and getattr(ode_res, k, None) is not None
    ]
    # a list field (a deep student's read-out matrices W) is compared matrix by matrix
    parts = {}
    for k in list(names):
        if isinstance(getattr(ode_res, k, None), list):
            i0 = names.index(k)
            names[i0 : i0 + 1] = [f"{k}{i}" for i in range(len(getattr(ode_res, k)))]
            parts.update({f"{k}{i}": (k, i) for i in range(len(getattr(ode_res, k)))})
    sim_mean, sim_std, ode, disc, se = {}, {}, {}, {}, {}
    n = int(sim.n_mean)
    for k in names:
        if k == "eg":
            mean, std = sim.eg_mean, sim.eg_std
        elif k in parts:
            mean, std = sim.mean(*parts[k]), sim.std(*parts[k])
        else:
            mean, std = sim.mean(k), sim.std(k)
        mean, std = np.asarray(mean)[:T], np.asarray(std)[:T]
        if k in parts:
            o = np.asarray(getattr(ode_res, parts[k][0])[parts[k][1]])[:T]
        else:
            o = np.asarray(getattr(ode_res, k))[:T]
        sim_mean[k], sim_std[k], ode[k] = mean, std, o
        with np.errstate(invalid="ignore"):
            d = np.abs(mean - o)
        disc[k] = float(np.nanmax(d)) if np.isfinite(d).any() else math.nan
        se[k] = float(np.nanmax(std)) / math.sqrt(n) if n > 0 else math.nan
    full_cfg = dict(_jsonable_config(cfg))
    full_cfg["rule_name"] = sim.rule
    full_cfg["ode"] = dict(
        rule=ode_res.params["rule"],
        method=ode_res.params["method"],
        rtol=ode_res.params.get("rtol"),
        atol=ode_res.params.get("atol"),
        dt=ode_res.params.get("dt"),
        status=ode_res.status,
        message=ode_res.message,
    )
    return Comparison(
        alpha=np.asarray(ode_res.alpha),
        sim_mean=sim_mean,
        sim_std=sim_std,
        ode=ode,
        discrepancy=disc,
        stderr=se,
        n_seeds=n,
        sim=sim,
        ode_result=ode_res,
        config=full_cfg,
        notes=notes,
    )


# ---------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """Arguments of ``python -m odeflow compare``."""
    parser.add_argument(
        "config",
        type=Path,
        help="JSON simulation config (python -m simulations run keys) plus "
        "optional ODE keys method, rtol, atol, dt",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="write the comparison (trajectories, discrepancies) to OUT.npz",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="OUT.png",
        help="draw simulation mean ± std against the ODE",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    """``python -m odeflow compare``: 0 on success, 1 if the ODE stopped early or every
    seed diverged (outputs are still written), 2 for invalid input (raised as ValueError)."""
    from theory.runtime import cli

    if args.output is not None:  # output paths checked before any work
        cli.check_output(args.output, (".npz",))
    if args.plot is not None:
        cli.check_output(args.plot, PLOT_FORMATS, what="--plot")
    try:
        cfg = json.loads(Path(args.config).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read config {args.config}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{args.config} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{args.config} is not a text (JSON) file") from None
    from simulations.teacher_student import rule_relative_to

    # "rule": "my_rules.py:NAME" is relative to the config file's directory
    cfg = rule_relative_to(cfg, Path(args.config).resolve().parent)
    c = compare(cfg, progress=not args.quiet)
    print(c.summary())
    if args.output is not None:
        with cli.atomic_path(args.output) as tmp:
            c.save(tmp)
        print(f"wrote {args.output}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with cli.atomic_path(args.plot) as tmp:
            fig = c.plot(tmp)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return 0 if c.success else 1
