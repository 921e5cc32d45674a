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

The SDE band (docs/finite-size.md)
----------------------------------
With ``"sde": {"n_paths": 200}`` in the config, the finite-N diffusion
``dy = E[f] dα + Σ^{1/2} dB_α/√N`` (``odeflow.solve_sde(..., N=N)``, N the simulation's) is
integrated from the same measured state, and its mean ± std over paths stands next to the
ensemble's, per order parameter, with two verdicts (:func:`sde_verdict`):

- mean: ``z = max |mean_sim − mean_sde| / √(std_sim²/n + std_sde²/P)`` over α and
  components; agrees when ``z ≤ 3``;
- spread: the ratio ``std_sde/std_sim`` where the simulations' std exceeds
  ``spread_floor`` (default 0.003); agrees when ``|ratio − 1| ≤ 3 s``, with
  ``s = √(1/(2(n−1)) + 1/(2(P−1)))`` the relative sampling error of a ratio of two sample
  stds (n seeds, P paths).

Keys of ``"sde"`` (:data:`SDE_DEFAULTS`): ``n_paths``, ``dt``, ``seed``, ``method``,
``spread_floor``, and ``noise_every``, ``noise_rtol``, ``noise_quadrature`` (passed to
``solve_sde``: how often and with which rule Σ is computed; by default adaptively) and
``drift_correction`` (true: the drift to O(1/N); bp, fa and such user rules).
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

__all__ = [
    "compare",
    "Comparison",
    "ODE_KEYS",
    "ODE_RULE",
    "OBSERVABLES",
    "SDE_DEFAULTS",
    "sde_verdict",
]

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
#: the ``"sde"`` config entry: its keys and defaults (the SDE band, docs/finite-size.md)
SDE_DEFAULTS = {
    "n_paths": 200,
    "dt": 0.01,
    "seed": 0,
    "method": "euler-maruyama",
    "spread_floor": 0.003,
    "noise_every": None,
    "noise_rtol": None,
    "noise_quadrature": None,
    "drift_correction": False,
}
#: how many sampling errors a verdict allows
SDE_SIGMAS = 3.0
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
        The simulation config as validated, plus the ODE options used (key ``"ode"``) and
        the SDE options (key ``"sde"``, when asked for).
    sde_mean, sde_std : dict name -> (T, ...) arrays
        With ``"sde"`` in the config: mean and std (ddof=1) over the SDE's alive paths at the
        simulation's N (empty otherwise).
    sde_verdict : dict name -> dict
        :func:`sde_verdict` per order parameter (empty without ``"sde"``).
    sde_result : odeflow.results.SDEResult or None
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
    sde_mean: dict = field(default_factory=dict)
    sde_std: dict = field(default_factory=dict)
    sde_verdict: dict = field(default_factory=dict)
    sde_result: object = None

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
        if self.sde_verdict:
            lines += self._sde_lines()
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _sde_lines(self) -> list:
        """The SDE band's table: per order parameter the mean's z and the std ratio."""
        r = self.sde_result
        sc = self.config["sde"]
        lines = [
            f"SDE band (N = {self.config['N']}, {r.n_paths} paths, {sc['method']} "
            f"dt = {sc['dt']:g}; spread judged where std_sim > {sc['spread_floor']:g}):",
            f"{'':4s}{'max z(mean)':>12s}{'std ratio sde/sim':>20s}{'±3 s':>7s}  verdict",
        ]
        for k, v in self.sde_verdict.items():
            ratio = (
                f"{v['ratio_min']:.3g}..{v['ratio_max']:.3g}" if v["n_judged"] else "(no spread)"
            )
            lines.append(
                f"{k:4s}{v['mean_z']:12.3g}{ratio:>20s}{v['ratio_tol']:7.2f}  "
                f"mean {'ok' if v['mean_ok'] else 'OFF'}, spread "
                + ("-" if v["spread_ok"] is None else "ok" if v["spread_ok"] else "OFF")
            )
        return lines

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
        for k in self.sde_mean:
            d[f"sde_{k}_mean"] = self.sde_mean[k]
            d[f"sde_{k}_std"] = self.sde_std[k]
            for q in ("mean_z", "ratio_min", "ratio_max", "ratio_tol"):
                d[f"sde_{k}_{q}"] = np.asarray(self.sde_verdict[k][q])
        if self.sde_result is not None:
            d["sde_eg"] = np.asarray(self.sde_result.eg)[:, : len(self.alpha)]
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
                if k in self.sde_mean:  # the SDE band: mean ± std dashed
                    sm, ss = (_components(k, x[k], len(a)) for x in (self.sde_mean, self.sde_std))
                    for y in (sm[:, j] - ss[:, j], sm[:, j] + ss[:, j]):
                        ax.plot(a, y, "--", color=c, lw=0.8)
            ax.set_xlabel(r"$\alpha$")
            ax.set_ylabel(labels.get(k, k))
            if k == "eg":
                ax.set_yscale("log")
            elif m.shape[1] > 1:
                ax.legend(fontsize=7, frameon=False)
        cfg = self.config
        fig.suptitle(
            f"{_name(cfg)}: N = {cfg['N']}, {self.n_seeds} seeds (dots ± 1 std) vs ODE (lines)"
            + (" and SDE ± 1 std (dashed)" if self.sde_mean else ""),
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
    sim_cfg = {k: v for k, v in config.items() if k not in ODE_KEYS and k != "sde"}
    ode_opts = {k: config[k] for k in ODE_KEYS if k in config}
    if "same_init" in sim_cfg and not sim_cfg["same_init"]:
        raise ValueError(
            "compare needs same_init: true (the ODE follows one initial state; "
            "with different initial weights per seed the ensemble mean is not "
            "the trajectory of any single ODE)"
        )
    sim_cfg["same_init"] = True
    return sim_cfg, ode_opts


def sde_options(config: dict) -> dict | None:
    """The validated ``"sde"`` entry of a compare config (defaults :data:`SDE_DEFAULTS`
    filled in), or None without one. Checked before any simulation runs."""
    opts = config.get("sde")
    if opts is None or opts is False:
        return None
    if opts is True:
        opts = {}
    if not isinstance(opts, dict):
        raise ValueError(
            f"sde must be a dict of SDE options {sorted(SDE_DEFAULTS)} (or true), got {opts!r}"
        )
    unknown = sorted(set(opts) - set(SDE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown sde keys {unknown}; allowed: {', '.join(SDE_DEFAULTS)}")
    out = {**SDE_DEFAULTS, **opts}
    n = out["n_paths"]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"sde.n_paths must be an int >= 2 (a std needs two paths), got {n!r}")
    for key in ("dt", "spread_floor"):
        val = out[key]
        ok = not isinstance(val, bool) and isinstance(val, (int, float))
        if not ok or not math.isfinite(val) or val < 0 or (key == "dt" and val == 0):
            raise ValueError(
                f"sde.{key} must be a {'positive' if key == 'dt' else 'non-negative'}"
                f" number, got {val!r}"
            )
    if out["seed"] is not None and (
        isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or out["seed"] < 0
    ):
        raise ValueError(f"sde.seed must be a non-negative int or null, got {out['seed']!r}")
    ne = out["noise_every"]
    if ne is not None and (isinstance(ne, bool) or not isinstance(ne, int) or ne < 1):
        raise ValueError(f"sde.noise_every must be an int >= 1 or null (adaptive), got {ne!r}")
    tol = out["noise_rtol"]
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < math.inf
    ):
        raise ValueError(f"sde.noise_rtol must be a positive number or null, got {tol!r}")
    if not isinstance(out["drift_correction"], bool):
        raise ValueError(
            f"sde.drift_correction must be true or false, got {out['drift_correction']!r}"
        )
    out["n_paths"] = int(n)
    return out


def sde_verdict(sim_mean, sim_std, n, sde_mean, sde_std, n_paths, spread_floor=0.003) -> dict:
    """How an SDE band agrees with a simulation ensemble, for one order parameter.

    Parameters
    ----------
    sim_mean, sim_std : (T, ...) arrays
        Mean and std (ddof=1) over ``n`` seeds.
    sde_mean, sde_std : (T, ...) arrays
        Mean and std (ddof=1) over ``n_paths`` SDE paths (an int, or (T,) alive counts).
    spread_floor : float
        The spreads are compared only where ``sim_std > spread_floor``.

    Returns
    -------
    dict with
        ``mean_z``: ``max |sim_mean − sde_mean| / √(sim_std²/n + sde_std²/P)`` (points where
        both stds vanish, to round-off, are left out); ``mean_ok``: ``mean_z ≤ 3``;
        ``ratio_min``, ``ratio_max``: range of ``sde_std / sim_std`` where
        ``sim_std > spread_floor``; ``ratio_tol``: ``3 √(1/(2(n−1)) + 1/(2(P−1)))``, three
        relative sampling errors of a ratio of sample stds; ``spread_ok``: every ratio within
        ``1 ± ratio_tol`` (None when no point is judged); ``n_judged``: points compared.
    """
    sm, ss, dm, ds = (np.asarray(x, dtype=float) for x in (sim_mean, sim_std, sde_mean, sde_std))
    T = sm.shape[0]
    P = np.asarray(n_paths, dtype=float)
    if P.ndim:  # alive paths per record: one column per α
        P = P.reshape((T,) + (1,) * (sm.ndim - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(ss**2 / max(n, 1) + ds**2 / P)
        z = np.abs(sm - dm) / se
        # records without spread (α = 0: every seed and path at the measured state) differ
        # by round-off only; a z of round-off over round-off means nothing
        ok = np.isfinite(z) & (se > 1e-12 * np.maximum(1.0, np.abs(sm)))
        mean_z = float(np.max(z[ok])) if ok.any() else math.nan
        judged = np.isfinite(ds) & (ss > spread_floor)
        ratio = ds / ss
    Pmin = float(np.min(P))
    tol = SDE_SIGMAS * math.sqrt(1 / (2 * max(n - 1, 1)) + 1 / (2 * max(Pmin - 1, 1)))
    nj = int(judged.sum())
    rmin = float(ratio[judged].min()) if nj else math.nan
    rmax = float(ratio[judged].max()) if nj else math.nan
    return {
        "mean_z": mean_z,
        "mean_ok": bool(mean_z <= SDE_SIGMAS) if ok.any() else True,
        "ratio_min": rmin,
        "ratio_max": rmax,
        "ratio_tol": tol,
        "spread_ok": (bool(abs(rmin - 1) <= tol and abs(rmax - 1) <= tol) if nj else None),
        "n_judged": nj,
    }


def _sde_band(sde_opts, ode_rule, init, rates, cfg, sim, names, T, n, progress, extra):
    """Run the SDE at the simulation's N from ``init``; ``(mean, std, verdict, result)``.
    ``extra``: ``widths`` for a deep student, ``quadrature`` for the drift when given."""
    from .sde_solve import solve_sde

    res = solve_sde(
        ode_rule,
        init,
        **rates,
        activation=cfg["activation"],
        alpha_max=float(sim.alpha[T - 1]),
        dt=sde_opts["dt"],
        n_paths=sde_opts["n_paths"],
        seed=sde_opts["seed"],
        method=sde_opts["method"],
        record={"alpha": np.asarray(sim.alpha[:T]).tolist()},
        rule_params=cfg.get("rule_params") or None,
        progress=progress,
        N=cfg["N"],
        noise_every=sde_opts["noise_every"],
        noise_rtol=sde_opts["noise_rtol"],
        noise_quadrature=sde_opts["noise_quadrature"],
        drift_correction=sde_opts["drift_correction"],
        **extra,
    )
    mean, std, verdict = {}, {}, {}
    n_alive = np.asarray(res.n_alive)
    for k, (sm, ss) in names.items():
        if k == "eg":
            m, s = res.eg_mean, res.eg_std
        else:
            try:
                m, s = res.mean(k), res.std(k)
            except (AttributeError, KeyError, ValueError):
                continue  # an order parameter the SDE does not carry
        if m is None:
            continue
        mean[k], std[k] = np.asarray(m)[:T], np.asarray(s)[:T]
        verdict[k] = sde_verdict(sm, ss, n, mean[k], std[k], n_alive[:T], sde_opts["spread_floor"])
    return mean, std, verdict, res


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
    simmod = importlib.import_module(model.simulation if deep else "simulations.teacher_student")
    # every ODE (and SDE) option is checked before the (long) simulations run, not after them
    check_solver_options(**ode_opts)
    sde_opts = sde_options(config)
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
    sde = ({}, {}, {}, None)
    if sde_opts is not None:
        bands = {k: (sim_mean[k], sim_std[k]) for k in names}
        # the drift by the ODE's quadrature (when the config names one): the SDE's mean then
        # follows the ODE it is shown with
        quad = {"quadrature": ode_opts["quadrature"]} if "quadrature" in ode_opts else {}
        sde = _sde_band(
            sde_opts, ode_rule, init, rates, cfg, sim, bands, T, n, progress, {**extra, **quad}
        )
        if not sde[3].success:
            notes.append(f"SDE: {sde[3].message}")
    full_cfg = dict(_jsonable_config(cfg))
    full_cfg["rule_name"] = sim.rule
    if sde_opts is not None:
        full_cfg["sde"] = dict(sde_opts)
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
        sde_mean=sde[0],
        sde_std=sde[1],
        sde_verdict=sde[2],
        sde_result=sde[3],
    )


# ---------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """Arguments of ``python -m odeflow compare``."""
    parser.add_argument(
        "config",
        type=Path,
        help="JSON simulation config (python -m simulations run keys) plus "
        'optional ODE keys method, rtol, atol, dt, quadrature, and "sde": '
        '{"n_paths": 200, ...} for the finite-N SDE band',
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
