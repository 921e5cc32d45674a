"""Escape from the Saad–Solla plateau: exit time against the initial asymmetry.

K = M = 3 erf teacher–student, second layer fixed at ``v = v* = 1`` (``eta_v = 0``), as in
the ``saad-solla`` figure. The student starts at ``Q = q0 I``, ``T = I`` and
``R_km = r0 + a ξ_km`` (ξ ~ N(0, 1), fixed): ``a`` is the initial asymmetry. The plateau
exit is the α at which the specialisation measure crosses ``level`` (event
:func:`odeflow.events.plateau_exit`, located on the ODE's dense output; the same criterion
on the recorded simulation trajectories, :func:`odeflow.events.simulation_exit_alpha`).

Theory: an asymmetry grows like ``a e^{λα}`` near the symmetric fixed point, so
``α_exit ≈ const + ln(1/a)/λ``; λ comes from the linearised ODE
(:func:`odeflow.stability.escape_rate`) and is drawn as a dotted line of slope 1/λ through the
ODE points. BP and FA (fixed feedback ``b`` = ``fa_b``: units with different feedback, whose
fixed point is still symmetric in the teacher units) have different λ.

Simulations: exact initial weights with that ``R``, ``Q``, ``T = I`` (``w*`` orthogonal rows,
see :func:`weights_with_overlaps`), several seeds (different inputs). At finite N the
stochastic updates inject an asymmetry of their own, of order √(α/N): for ``a`` below it
the simulations escape earlier than the ODE and their exit time saturates.

Parameters: ``figures/configs/plateau-exit.json``.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "plateau-exit"
DESCRIPTION = (
    "Saad-Solla plateau: exit time against the initial asymmetry (log scale), "
    "ODE events vs simulations, BP and FA, with the linear-stability slope"
)

RULES = ("bp", "fa")


def target_R(cfg, a):
    K, M = cfg["K"], cfg["M"]
    rng = np.random.default_rng(cfg["init"]["seed"])
    return cfg["init"]["r0"] + a * rng.standard_normal((K, M))


def initial_state(cfg, a, rule):
    from theory.state import OrderParameters

    K, M = cfg["K"], cfg["M"]
    kw = {"b": np.array(cfg["fa_b"], dtype=float)} if rule == "fa" else {}
    return OrderParameters.from_spec(
        K, M, Q=cfg["init"]["q0"], R=target_R(cfg, a), T=1.0, v=1.0, v_star=1.0, **kw
    )


def weights_with_overlaps(N, R, q0, seed):
    """Weights with exactly ``w* w*ᵀ/N = I``, ``w w*ᵀ/N = R``, ``w wᵀ/N = q0 I``.

    ``w* = √N`` × orthonormal rows; ``w = R w* + C Z`` with ``Z`` (K, N) orthonormal rows
    (×√N) orthogonal to the teacher and ``C = chol(q0 I − R Rᵀ)``.
    """
    K, M = R.shape
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((N, M + K))
    Qr, _ = np.linalg.qr(G)  # orthonormal columns
    w_star = math.sqrt(N) * Qr[:, :M].T
    Z = math.sqrt(N) * Qr[:, M:].T
    C = np.linalg.cholesky(q0 * np.eye(K) - R @ R.T)
    return R @ w_star + C @ Z, w_star


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    import odeflow
    from odeflow.events import plateau_exit, simulation_exit_alpha
    from odeflow.stability import escape_rate
    from simulations.teacher_student import simulate

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    ev = plateau_exit(level=cfg["level"])
    oc, sc = cfg["ode"], cfg["simulation"]
    ode_kw = dict(
        eta=cfg["eta"],
        eta_v=0.0,
        activation=cfg["activation"],
        alpha_max=oc["alpha_max"],
        rtol=oc["rtol"],
        atol=oc["atol"],
    )
    a_ode = np.array(oc["asymmetries"], dtype=float)
    a_sim = np.array(sc["asymmetries"], dtype=float)
    data = {"ode_asymmetries": a_ode, "sim_asymmetries": a_sim}
    info = {}
    for rule in RULES:
        exits = []
        for a in a_ode:
            r = odeflow.solve(
                rule,
                initial_state(cfg, a, rule),
                events=ev,
                record={"alpha": [0.0, oc["alpha_max"]]},
                **ode_kw,
            )
            exits.append(r.alpha_events[0][0] if len(r.alpha_events[0]) else np.nan)
        lam, _, eg_plateau = escape_rate(
            rule,
            initial_state(cfg, a_ode[0], rule),
            eta=cfg["eta"],
            eta_v=0.0,
            activation=cfg["activation"],
        )
        data[f"{rule}_ode_exit"] = np.array(exits)
        data[f"{rule}_lambda"] = lam
        data[f"{rule}_eg_plateau"] = eg_plateau
        # simulations from weights with exactly these overlaps
        sim_exit = np.full((len(a_sim), sc["seeds"]), np.nan)
        with tempfile.TemporaryDirectory() as tmp:
            for i, a in enumerate(a_sim):
                w, w_star = weights_with_overlaps(
                    sc["N"], target_R(cfg, a), cfg["init"]["q0"], sc["weights_seed"]
                )
                f = Path(tmp) / f"w{i}.npz"
                extra = {"b": np.array(cfg["fa_b"], dtype=float)} if rule == "fa" else {}
                np.savez(
                    f, w=w, w_star=w_star, v=np.ones(cfg["K"]), v_star=np.ones(cfg["M"]), **extra
                )
                sim = simulate(
                    dict(
                        rule=rule,
                        N=sc["N"],
                        K=cfg["K"],
                        M=cfg["M"],
                        activation=cfg["activation"],
                        eta=cfg["eta"],
                        eta_v=0.0,
                        alpha_max=sc["alpha_max"],
                        record={"every": sc["record_every"]},
                        seeds=sc["seeds"],
                        init={"weights": str(f)},
                    )
                )
                sim_exit[i] = simulation_exit_alpha(sim, ev)
        data[f"{rule}_sim_exit"] = sim_exit
        info[rule] = dict(
            lambda_=lam,
            slope=1 / lam,
            eg_plateau=eg_plateau,
            ode_exit=data[f"{rule}_ode_exit"].tolist(),
            sim_exit_mean=np.nanmean(sim_exit, axis=1).tolist(),
            sim_never_exited=int(np.isnan(sim_exit).sum()),
        )

    fig, ax = plt.subplots(figsize=(5.6, 4.0), constrained_layout=True)
    x_ode = np.log(1 / a_ode)
    x_sim = np.log(1 / a_sim)
    for rule in RULES:
        col = S.COLORS[rule]
        ex = data[f"{rule}_ode_exit"]
        lam = data[f"{rule}_lambda"]
        ax.plot(x_ode, ex, "-", color=col, lw=1.6, label=f"{S.LABELS[rule]} ODE (event)")
        # the linear-stability law through the smallest-asymmetry ODE point
        j = np.nanargmax(x_ode)
        ax.plot(x_ode, ex[j] + (x_ode - x_ode[j]) / lam, ":", color="k", lw=1.0)
        se = data[f"{rule}_sim_exit"]
        m = np.nanmean(se, axis=1)
        s = np.nanstd(se, axis=1, ddof=1) if se.shape[1] > 1 else np.zeros(len(m))
        ax.errorbar(
            x_sim,
            m,
            yerr=s,
            fmt="o",
            color=col,
            ms=4.5,
            capsize=2.5,
            mfc="white" if rule == "fa" else col,
            label=f"{S.LABELS[rule]} simulation N = {sc['N']} (mean ± std, {sc['seeds']} seeds)",
        )
        ax.text(x_ode[j], ex[j], f"  slope 1/λ = {1 / lam:.1f}", fontsize=7, va="top", color=col)
    ax.plot([], [], ":", color="k", lw=1.0, label="linearised ODE: slope 1/λ")
    ax.set_xlabel(r"$\ln(1/a)$, $a$ = initial asymmetry of $R$")
    ax.set_ylabel(rf"plateau exit $\alpha$ (specialisation $= {cfg['level']}$)")
    sec = ax.secondary_xaxis(
        "top", functions=(lambda x: x / math.log(10), lambda y: y * math.log(10))
    )
    sec.set_xlabel(r"$\log_{10}(1/a)$")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(
        f"K = M = {cfg['K']}, erf, η = {cfg['eta']}, v = v* = 1 fixed, "
        f"FA feedback b = {cfg['fa_b']}",
        fontsize=8,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
