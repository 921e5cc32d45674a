"""Finite N: ε_g mean ± std from simulations against the SDE band, and the plateau escape.

At finite N every order parameter diffuses (docs/finite-size.md)::

    dy = E[f](y) dα + Σ(y)^{1/2} dB_α / √N,      Σ = Cov[f]

Simulations of BP and AFA (K = M = 2, erf, η = η_v = 1) at N = 250, 1000, 4000 start from
*exactly the same* order parameters at every N (weights built with those overlaps, shared by
all seeds; the seeds differ only in their sample streams), so the ODE is the same at every
N and only the finite-N noise changes. Against them, the SDE
(``odeflow.solve_sde(..., N=N)``) from the same state: its band (mean ± std over paths)
at the same N, and the escape-time distribution of its paths
(:func:`odeflow.events.exit_times`) on a denser grid of N (the theory line).

- BP starts on the symmetric manifold (Q = I, R = 0, equal v): the ODE stays on the
  symmetric plateau for ever, noise alone breaks the symmetry, and the exit (specialisation
  = 0.5, :func:`odeflow.events.plateau_exit`) comes at ``α ≈ A + ln N / (2λ)``, λ the
  escape rate of the linearised ODE (:func:`odeflow.stability.escape_rate`; the noise puts
  an asymmetry of size 1/√N on the unstable direction).
- AFA starts from the state measured in the default random init; its escape (ε_g below a
  fraction of its initial value) is driven by the O(1) noise of the feedback b
  (docs/theory.md §5), so its escape time hardly depends on N.

The simulations are slow (N = 4000, α up to 220, 24 seeds): their results are cached in
``figures/results/finite-size-simulations.json``, keyed by everything that defines them;
a changed config runs them again. Parameters: ``figures/configs/finite-size.json``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "finite-size"
DESCRIPTION = (
    "finite N: eps_g mean ± std of BP and AFA simulations at N = 250, 1000, 4000 vs the SDE "
    "band, and the plateau escape time against log N (SDE line, simulation points)"
)
#: cached simulation results (full mode only; quick runs are cheap and not stored)
STORE = Path(__file__).resolve().parent / "results" / f"{NAME}-simulations.json"
#: cached SDE summaries (the SDE with the full Σ costs minutes per N at α = 220)
SDE_STORE = STORE.with_name(f"{NAME}-sde.json")


# ---------------------------------------------------------------------------- state
def case_state(case: dict):
    """The :class:`theory.state.OrderParameters` every run of ``case`` starts from.

    ``case["state"]`` gives ``Q, R, T, v, v_star`` explicitly, or
    ``{"measured": {"N", "sigma_F", "init_seed"}}``: the state measured in the simulation
    module's default random init of that seed (w, w* ~ N(0, I), v ~ 0.1 N(0, 1),
    F ~ σ_F N(0, I)) — b, c and σ_F² included for adaptive rules.
    """
    from theory.state import OrderParameters

    st = case["state"]
    if "measured" in st:
        from simulations.teacher_student import initial_weights, validate_config

        m = st["measured"]
        cfg = validate_config(
            {
                "rule": case["rule"],
                "N": int(m["N"]),
                "alpha_max": 1.0,
                "sigma_F": float(m.get("sigma_F", 0.3)),
                "init": {"seed": int(m.get("init_seed", 0))},
            }
        )
        return initial_weights(cfg, cfg["seeds"][0]).order_parameters(case["rule"])
    return OrderParameters.from_spec(
        len(st["v"]),
        len(st["v_star"]),
        Q=np.asarray(st["Q"], float),
        R=np.asarray(st["R"], float),
        T=np.asarray(st["T"], float),
        v=np.asarray(st["v"], float),
        v_star=np.asarray(st["v_star"], float),
    )


def weights_with_state(N: int, state, seed: int = 0) -> dict:
    """Weights ``w (K, N), w_star (M, N), v, v_star`` (and ``F`` when ``state`` has adaptive
    feedback) whose overlaps are *exactly* those of ``state``: ``Q = w wᵀ/N``,
    ``R = w w*ᵀ/N``, ``T = w* w*ᵀ/N``, ``b = w F/√N``, ``c = w* F/√N``, ``σ_F² = F·F/N``.

    The rows are ``L (√N Uᵀ)`` with ``L`` the Cholesky factor of the target Gram matrix of
    (w*, w, F)/√N and ``U`` (N, K+M(+1)) orthonormal columns of a seeded Gaussian matrix.
    """
    K, M = state.K, state.M
    adaptive = state.b is not None and state.c is not None and state.sigma_F2 is not None
    G = np.block([[state.T, state.R.T], [state.R, state.Q]])
    if adaptive:
        cross = np.r_[state.c, state.b] / math.sqrt(N)  # w·F/N = b/√N
        G = np.block([[G, cross[:, None]], [cross[None, :], np.array([[state.sigma_F2]])]])
    L = np.linalg.cholesky(G)
    Z = np.random.default_rng(seed).standard_normal((N, G.shape[0]))
    U, _ = np.linalg.qr(Z)
    rows = L @ (math.sqrt(N) * U.T)
    out = {
        "w_star": rows[:M],
        "w": rows[M : M + K],
        "v": np.asarray(state.v, float),
        "v_star": np.asarray(state.v_star, float),
    }
    if adaptive:
        out["F"] = rows[M + K]
    return out


def escape_event(case: dict, eg0: float):
    """The plateau-exit event of ``case`` (``eg0``: ε_g of the initial state, the plateau
    value of the ``"eg"`` measure)."""
    from odeflow.events import plateau_exit

    e = case["escape"]
    if e["measure"] == "eg":
        return plateau_exit("eg", plateau_eg=eg0, fraction=e["fraction"])
    return plateau_exit("specialisation", level=e["level"])


# ----------------------------------------------------------------------- simulations
def _sim_key(cfg: dict, name: str, N: int) -> str:
    """Everything that defines one cached ensemble, as a canonical JSON string."""
    keys = ("seeds", "weights_seed")
    case = {k: v for k, v in cfg["cases"][name].items() if k != "sde"}  # SDE options: not here
    return json.dumps({"case": case, "N": N, **{k: cfg[k] for k in keys}}, sort_keys=True)


def run_simulations(cfg: dict, name: str, N: int) -> dict:
    """One ensemble: ``cfg["seeds"]`` sample streams from the case's state at this N.

    Returns a JSON-able dict: ``alpha``, ``eg_mean``, ``eg_std``, ``n`` (seeds that did not
    diverge), per-seed ``eg`` and ``exit`` (escape α, null if none), and ``seconds``.
    """
    from odeflow.events import path_exit_alpha
    from simulations.teacher_student import simulate

    case = cfg["cases"][name]
    state = case_state(case)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "weights.npz"
        np.savez(f, **weights_with_state(N, state, cfg["weights_seed"]))
        sim = simulate(
            {
                "rule": case["rule"],
                "N": N,
                "eta": case["eta"],
                "eta_v": case["eta_v"],
                "alpha_max": case["alpha_max"],
                "record": {"every": case["record_every"]},
                "seeds": int(cfg["seeds"]),
                "threads": cfg.get("threads"),
                "init": {"weights": str(f)},
            }
        )
    eg = np.asarray(sim.eg, dtype=float)
    exits = path_exit_alpha(sim, escape_event(case, float(eg[0, 0])))

    return {
        "alpha": _js(sim.alpha, 8),
        "eg_mean": _js(sim.eg_mean),
        "eg_std": _js(sim.eg_std),
        "n": int(sim.n_mean),
        "eg": [_js(row) for row in eg],
        "exit": _js(exits),
        "diverged": int(np.asarray(sim.diverged).sum()),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def simulations(cfg: dict, store: Path | None = STORE, log=print) -> dict:
    """``{(case, N): ensemble dict}`` for every case and N of ``cfg``, read from ``store``
    when an entry with the same key exists there, run (and stored) otherwise."""
    stored = {}
    if store is not None and store.exists():
        stored = json.loads(store.read_text()).get("entries", {})
    out = {}
    for name in cfg["cases"]:
        for N in cfg["N"]:
            key = _sim_key(cfg, name, int(N))
            if key not in stored:
                log(f"{NAME}: simulating {name} at N = {N} ({cfg['seeds']} seeds) …")
                stored[key] = run_simulations(cfg, name, int(N))
                _write_store(store, stored)
            out[(name, int(N))] = stored[key]
    return out


def _arr(x):
    return np.array([np.nan if v is None else v for v in x], dtype=float)


# ------------------------------------------------------------------------------ SDE
def sde_available() -> tuple[bool, str]:
    """Whether ``odeflow.solve_sde`` takes ``N`` (the diffusion of every order parameter)."""
    import inspect

    import odeflow

    if "N" not in inspect.signature(odeflow.solve_sde).parameters:
        return False, "odeflow.solve_sde has no N (finite-N diffusion) in this version"
    return True, ""


def sde_options(cfg: dict, name: str) -> dict:
    """The SDE options of ``case`` (``cfg["sde"]`` overridden by the case's own ``"sde"``)."""
    return {**cfg["sde"], **cfg["cases"][name].get("sde", {})}


def run_sde(cfg: dict, name: str, N: int, alpha):
    """The SDE ensemble of ``case`` at this N from the case's state, recorded at ``alpha``."""
    import odeflow

    case, sc = cfg["cases"][name], sde_options(cfg, name)
    state = case_state(case)
    if state.sigma_F2 is not None:
        # the weights at this N have ‖F‖² = N σ_F² exactly; a state measured at another N
        # carries that N's F_norm2, which Σ would otherwise use for the √N φ part of b's noise
        state = state.replace(F_norm2=N * float(state.sigma_F2))
    return odeflow.solve_sde(
        case["rule"],
        state,
        eta=case["eta"],
        eta_v=case["eta_v"],
        alpha_max=float(alpha[-1]),
        dt=sc["dt"],
        n_paths=int(sc["n_paths"]),
        seed=int(sc["seed"]),
        record={"alpha": np.asarray(alpha, float).tolist()},
        N=int(N),
        noise_every=sc.get("noise_every"),  # absent: the adaptive refresh of Σ
        noise_rtol=sc.get("noise_rtol"),
        noise_quadrature=sc.get("noise_quadrature"),
    )


def sde_runs(cfg: dict, alphas: dict, store: Path | None = SDE_STORE, log=print) -> dict:
    """``{(case, N): summary}`` of the SDE at every N of the figure and of the theory line:
    ``eg_mean``, ``eg_std``, ``n_alive`` per record, per-path escape α ``exit``, and the
    run's ``message``. Cached in ``store`` like :func:`simulations` (full mode)."""
    from odeflow.events import path_exit_alpha

    stored = {}
    if store is not None and store.exists():
        stored = json.loads(store.read_text()).get("entries", {})
    out = {}
    for name, case in cfg["cases"].items():
        sc = sde_options(cfg, name)
        for N in sorted({int(n) for n in cfg["N"]} | {int(n) for n in sc["N_theory"]}):
            key = _sde_key(case, sc, N)
            if key not in stored:
                log(f"{NAME}: SDE {name} at N = {N} ({sc['n_paths']} paths) …")
                t0 = time.perf_counter()
                r = run_sde(cfg, name, N, alphas[name])
                ev = escape_event(case, float(r.eg[0, 0]))
                stored[key] = {
                    "eg_mean": _js(r.eg_mean),
                    "eg_std": _js(r.eg_std),
                    "n_alive": np.asarray(r.n_alive).tolist(),
                    "exit": _js(path_exit_alpha(r, ev)),
                    "message": r.message,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                _write_store(store, stored)
            out[(name, N)] = stored[key]
    return out


def _sde_key(case: dict, sc: dict, N: int) -> str:
    """Everything that defines one SDE run (not the list of N of the theory line)."""
    sc = {k: v for k, v in sc.items() if k != "N_theory"}
    case = {k: v for k, v in case.items() if k != "sde"}  # its SDE options are in sc
    # "F_norm2": ‖F‖² = N σ_F² at every N (runs stored before this used the measured one)
    return json.dumps({"case": case, "sde": sc, "N": N, "F_norm2": "N sigma_F2"}, sort_keys=True)


def _js(a, digits=6):
    return [None if not np.isfinite(x) else float(f"{x:.{digits}g}") for x in np.ravel(a)]


def _write_store(store, entries):
    """Write the cache after every run, atomically: an interrupted run keeps the others."""
    if store is None:
        return
    from theory.runtime.cli import atomic_path

    store.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(store) as tmp:
        Path(tmp).write_text(json.dumps({"figure": NAME, "entries": entries}, indent=0) + "\n")


def _escape_stats(alphas) -> dict:
    from odeflow.events import ExitTimes

    e = ExitTimes(alphas)
    return {"mean": e.mean, "sem": e.sem, "std": e.std, "fraction": e.fraction}


# Long on purpose: the figure's computations and its panels in the order the reader sees them
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    import odeflow
    from odeflow.compare import sde_verdict
    from odeflow.events import ExitTimes
    from odeflow.stability import escape_rate

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    Ns = [int(n) for n in cfg["N"]]
    sims = simulations(cfg, store=None if quick else STORE)
    have_sde, why = sde_available()
    data, info = {"N": np.array(Ns)}, {"sde": why or "odeflow.solve_sde(..., N=N)"}
    alphas = {name: _arr(sims[(name, Ns[0])]["alpha"]) for name in cfg["cases"]}
    sde = sde_runs(cfg, alphas, store=None if quick else SDE_STORE) if have_sde else {}
    for name, case in cfg["cases"].items():
        state = case_state(case)
        alpha = _arr(sims[(name, Ns[0])]["alpha"])
        data[f"{name}_alpha"] = alpha
        ode = odeflow.solve(
            case["rule"],
            state,
            eta=case["eta"],
            eta_v=case["eta_v"],
            alpha_max=float(alpha[-1]),
            record={"alpha": alpha.tolist()},
        )
        data[f"{name}_ode_eg"] = ode.eg
        if case["escape"]["measure"] == "specialisation":
            lam, _, eg_pl = escape_rate(case["rule"], state, eta=case["eta"], eta_v=case["eta_v"])
            data[f"{name}_lambda"], data[f"{name}_eg_plateau"] = lam, eg_pl
        info[name] = {}
        for N in Ns:
            e = sims[(name, N)]
            for k in ("eg_mean", "eg_std", "exit"):
                data[f"{name}_N{N}_sim_{k}"] = _arr(e[k])
            row = {"sim_escape": _escape_stats(_arr(e["exit"])), "sim_n": e["n"]}
            if have_sde:
                r = sde[(name, N)]
                sm, ss = _arr(r["eg_mean"]), _arr(r["eg_std"])
                data[f"{name}_N{N}_sde_eg_mean"], data[f"{name}_N{N}_sde_eg_std"] = sm, ss
                data[f"{name}_N{N}_sde_exit"] = _arr(r["exit"])
                row["sde_eg"] = sde_verdict(
                    _arr(e["eg_mean"]), _arr(e["eg_std"]), e["n"], sm, ss, np.array(r["n_alive"])
                )
                row["sde_escape"] = _escape_stats(_arr(r["exit"]))
                row["sde_message"] = r["message"]
            info[name][f"N={N}"] = row
        if have_sde:  # the theory line: SDE escape times on a denser grid of N
            Nt = sorted({int(n) for n in sde_options(cfg, name)["N_theory"]} | set(Ns))
            esc = [ExitTimes(_arr(sde[(name, n)]["exit"])) for n in Nt]
            data[f"{name}_theory_N"] = np.array(Nt)
            data[f"{name}_theory_exit_mean"] = np.array([x.mean for x in esc])
            data[f"{name}_theory_exit_sem"] = np.array([x.sem for x in esc])
            data[f"{name}_theory_exit_std"] = np.array([x.std for x in esc])
            data[f"{name}_theory_exit_fraction"] = np.array([x.fraction for x in esc])

    names = list(cfg["cases"])
    fig, axes = plt.subplots(
        len(names), 3, figsize=(11.5, 3.4 * len(names)), constrained_layout=True, squeeze=False
    )
    colN = {N: S.CYCLE[i % len(S.CYCLE)] for i, N in enumerate(Ns)}
    for row, name in zip(axes, names):
        ax_m, ax_s, ax_e = row
        case, a = cfg["cases"][name], data[f"{name}_alpha"]
        step = max(1, len(a) // 40)  # markers every few records, lines at every one
        ax_m.plot(a, data[f"{name}_ode_eg"], "-", color="k", lw=1.0, label="ODE (N → ∞)")
        for N in Ns:
            c = colN[N]
            m, s = data[f"{name}_N{N}_sim_eg_mean"], data[f"{name}_N{N}_sim_eg_std"]
            ax_m.errorbar(
                a[::step],
                m[::step],
                yerr=s[::step],
                fmt="o",
                ms=2.5,
                color=c,
                elinewidth=0.7,
                capsize=0,
                label=f"sim N = {N}",
            )
            ax_s.plot(a[::step], s[::step], "o", ms=2.5, color=c, label=f"sim N = {N}")
            if have_sde:
                sm, ss = data[f"{name}_N{N}_sde_eg_mean"], data[f"{name}_N{N}_sde_eg_std"]
                S.band(ax_m, a, sm, ss, c, alpha=0.18)
                ax_m.plot(a, sm, "--", color=c, lw=0.9)
                ax_s.plot(a, ss, "--", color=c, lw=1.1, label=f"SDE N = {N}")
        if case["escape"]["measure"] == "specialisation":
            ax_m.set_yscale("log")
        ax_m.set_xlabel(S.ALPHA)
        ax_m.set_ylabel(S.EG + " (mean ± std)")
        ax_m.legend(fontsize=6.5, loc="lower left" if name == "bp" else "upper right")
        ax_m.set_title(f"{S.LABELS[name]}: simulations (dots) vs SDE band (shaded)")
        ax_s.set_xlabel(S.ALPHA)
        ax_s.set_ylabel(f"std of {S.EG} over seeds / paths")
        ax_s.legend(fontsize=6.5, ncol=2)
        ax_s.set_title(f"{cfg['seeds']} seeds; SDE {sde_options(cfg, name)['n_paths']} paths")
        # escape time against ln N
        lnN = np.log(Ns)
        mean = np.array([np.nanmean(data[f"{name}_N{N}_sim_exit"]) for N in Ns])
        sd = np.array([np.nanstd(data[f"{name}_N{N}_sim_exit"], ddof=1) for N in Ns])
        nex = np.array([np.isfinite(data[f"{name}_N{N}_sim_exit"]).sum() for N in Ns])
        ax_e.errorbar(lnN, mean, yerr=sd, fmt="none", color=S.COLORS[name], lw=0.8, capsize=3)
        ax_e.errorbar(
            lnN,
            mean,
            yerr=sd / np.sqrt(np.maximum(nex, 1)),
            fmt="o",
            color=S.COLORS[name],
            ms=5,
            capsize=0,
            lw=2,
            label="simulations: mean ± s.e. (thin: std)",
        )
        if have_sde:
            tN = np.log(data[f"{name}_theory_N"])
            tm, ts = data[f"{name}_theory_exit_mean"], data[f"{name}_theory_exit_sem"]
            ax_e.plot(tN, tm, "-", color="k", lw=1.2, label="SDE: mean escape")
            ax_e.fill_between(tN, tm - ts, tm + ts, color="0.6", alpha=0.35, lw=0)
            if f"{name}_lambda" in data:  # the linear-stability law through the SDE's last N
                lam = data[f"{name}_lambda"]
                ax_e.plot(
                    tN,
                    tm[-1] + (tN - tN[-1]) / (2 * lam),
                    ":",
                    color="k",
                    lw=1.0,
                    label=rf"slope $1/(2\lambda)$ = {1 / (2 * lam):.1f}",
                )
        ax_e.set_xlabel(r"$\ln N$")
        crit = case["escape"]
        ax_e.set_ylabel(
            rf"escape $\alpha$ (specialisation = {crit['level']})"
            if crit["measure"] == "specialisation"
            else rf"escape $\alpha$ ({S.EG} < {crit['fraction']} × initial)"
        )
        ax_e.legend(fontsize=6.5)
    for i, ax in enumerate(axes.ravel()):
        S.panel_label(ax, "abcdefghi"[i])
    title = (
        f"Finite N: K = M = 2, erf, same initial order parameters at every N "
        f"(BP symmetric, AFA measured), {cfg['seeds']} sample streams per N"
    )
    if not have_sde:
        title += "\n(simulations only: " + why + ")"
    fig.suptitle(title, fontsize=10)
    params = dict(cfg, sde_available=have_sde, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
