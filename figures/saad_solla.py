"""Saad & Solla (1995): the symmetric plateau of online backprop and its escape.

K = M = 3 erf teacher–student, second layer fixed at ``v = v* = 1`` (``eta_v = 0``), so
only the first layer learns. From a nearly symmetric state (``Q = q0 I``, every
``R_km ≈ r0``) the student first learns the teacher's *average* direction: all ``R_km``
stay equal and ε_g sits on the symmetric plateau. The tiny asymmetry
``R_km = r0 + a·N(0, 1)`` grows exponentially; when it is O(1) the student units
specialise (each ``R_km`` → 1 for one teacher unit m, → 0 for the others) and ε_g falls
to zero. The plateau length grows like ``ln(1/a)``.

Panels: (a) ε_g on log–log axes, ODE for several asymmetries ``a``, plus a simulation
overlay (small random initial weights, mean ± 1 std over seeds) with the ODE from its
measured initial state; (b) the nine ``R_km`` of one ODE run; (c) specialisation
(:func:`theory.observables.specialisation`). The plateau found in the data (ε_g within
±10 % over the longest α interval) is shaded.

Parameters: ``figures/configs/saad-solla.json``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "saad-solla"
DESCRIPTION = (
    "BP, K = M = 3, fixed second layer: the symmetric plateau and its escape "
    "(ε_g, R_km, specialisation; ODE for several asymmetries + simulation)"
)

#: blues for the asymmetry scan (all BP)
SHADES = ["#08306B", "#2171B5", "#6BAED6", "#9ECAE1"]


def plateau(alpha, eg, rel=0.1):
    """Longest interval of α > 0 (in decades) on which ``max ε_g / min ε_g ≤ 1 + rel``.

    Returns ``(alpha_start, alpha_end, mean ε_g on it)``.
    """
    alpha, eg = np.asarray(alpha, dtype=float), np.asarray(eg, dtype=float)
    ok = (alpha > 0) & np.isfinite(eg) & (eg > 0)
    a, e = alpha[ok], eg[ok]
    best = (0, 0)
    j = 0
    n = len(a)
    for i in range(n):  # two pointers: the window [i, j] stays flat
        j = max(j, i)
        while j + 1 < n and e[i : j + 2].max() <= (1 + rel) * e[i : j + 2].min():
            j += 1
        if math.log10(a[j] / a[i]) > math.log10(a[best[1]] / a[best[0]]):
            best = (i, j)
    i, j = best
    return float(a[i]), float(a[j]), float(e[i : j + 1].mean())


def initial_state(cfg, asym):
    from theory.state import OrderParameters

    K, M = cfg["K"], cfg["M"]
    ini = cfg["init"]
    rng = np.random.default_rng(ini["seed"])
    R = ini["r0"] + asym * rng.standard_normal((K, M))
    return OrderParameters.from_spec(K, M, Q=ini["q0"], R=R, T=1.0, v=1.0, v_star=1.0)


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    import odeflow
    from odeflow.compare import compare
    from theory.observables import specialisation

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    asyms = cfg["init"]["asymmetries"]
    rel = cfg["check"]["flat_rel"]
    data, info = {"asymmetries": np.array(asyms)}, {}
    for i, a in enumerate(asyms):
        init = initial_state(cfg, a)
        o = odeflow.solve(
            "bp",
            init,
            eta=cfg["eta"],
            eta_v=0.0,
            activation=cfg["activation"],
            alpha_max=cfg["alpha_max"],
            record=cfg["record"],
            **cfg["ode"],
        )
        data["alpha"] = o.alpha
        data[f"ode{i}_eg"] = o.eg
        data[f"ode{i}_R"] = o.R
        data[f"ode{i}_Q"] = o.Q
        data[f"ode{i}_spec"] = specialisation(o.Q, o.R, init.T)
        p = plateau(o.alpha, o.eg, rel)
        data[f"ode{i}_plateau"] = np.array(p)
        info[f"asymmetry {a:g}"] = dict(message=o.message, plateau=p, eg_final=float(o.eg[-1]))
    c = compare({**cfg["simulation"], **cfg["ode"]})
    sim, so = c.sim, c.ode_result
    sim_spec = specialisation(sim.Q, sim.R, sim.T[:, None])
    ok = ~sim.diverged
    data.update(
        sim_alpha=sim.alpha,
        sim_eg=sim.eg,
        sim_eg_mean=sim.eg_mean,
        sim_eg_std=sim.eg_std,
        sim_spec_mean=sim_spec[ok].mean(axis=0),
        sim_spec_std=sim_spec[ok].std(axis=0, ddof=1)
        if ok.sum() > 1
        else np.zeros(sim_spec.shape[1]),
        simode_eg=so.eg,
        simode_spec=specialisation(so.Q, so.R, so.init.T),
        sim_plateau=np.array(plateau(sim.alpha, sim.eg_mean, rel)),
    )
    info["simulation"] = dict(
        summary=sim.summary(),
        ode=so.message,
        discrepancy=c.discrepancy,
        stderr=c.stderr,
        plateau=data["sim_plateau"].tolist(),
    )
    alpha = data["alpha"]
    floor = 1e-8

    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6), constrained_layout=True)
    ax_e, ax_r, ax_s = axes
    pos = alpha > 0
    for i, a in enumerate(asyms):
        col = SHADES[i % len(SHADES)]
        ax_e.plot(
            alpha[pos],
            np.maximum(data[f"ode{i}_eg"][pos], floor),
            "-",
            color=col,
            label=f"ODE, asymmetry {a:.0e}",
        )
        ax_s.plot(
            alpha[pos], data[f"ode{i}_spec"][pos], "-", color=col, label=f"ODE, asymmetry {a:.0e}"
        )
    a0, a1, pv = data[f"ode{cfg['show_R_of']}_plateau"]
    for ax in axes:
        ax.axvspan(a0, a1, color="0.85", lw=0, zorder=0)
    ax_e.text(
        math.sqrt(a0 * a1), pv * 1.6, "symmetric\nplateau", ha="center", fontsize=8, color="0.3"
    )
    sa = data["sim_alpha"]
    sp = sa > 0
    col_sim = S.COLORS["pepita-forward"]
    N = cfg["simulation"]["N"]
    ns = int(sim.n_mean)
    # log-normal-ish band: mean ± std clipped to the floor
    lo = np.maximum(data["sim_eg_mean"] - data["sim_eg_std"], floor)
    hi = np.maximum(data["sim_eg_mean"] + data["sim_eg_std"], floor)
    ax_e.fill_between(sa[sp], lo[sp], hi[sp], color=col_sim, alpha=0.25, lw=0)
    ax_e.plot(
        sa[sp],
        np.maximum(data["sim_eg_mean"][sp], floor),
        "o",
        ms=2.5,
        color=col_sim,
        label=f"simulation N = {N}, {ns} seeds (± 1 std)",
    )
    ax_e.plot(
        sa[sp],
        np.maximum(data["simode_eg"][sp], floor),
        "-",
        color="k",
        lw=1.0,
        label="ODE from the simulation's initial state",
    )
    S.band(ax_s, sa[sp], data["sim_spec_mean"][sp], data["sim_spec_std"][sp], col_sim)
    ax_s.plot(sa[sp], data["sim_spec_mean"][sp], "o", ms=2.5, color=col_sim, label="simulation")
    ax_s.plot(
        sa[sp],
        data["simode_spec"][sp],
        "-",
        color="k",
        lw=1.0,
        label="ODE (simulation's initial state)",
    )
    ax_e.set_xscale("log")
    ax_e.set_yscale("log")
    ax_e.set_ylim(floor, None)
    ax_e.set_xlabel(S.ALPHA)
    ax_e.set_ylabel(S.EG)
    ax_e.legend(loc="lower left", fontsize=7)
    # (b) R_km of one run
    j = cfg["show_R_of"]
    R = data[f"ode{j}_R"]
    K, M = R.shape[1:]
    styles = ["-", "--", ":", "-."]
    for k in range(K):
        for m in range(M):
            ax_r.plot(
                alpha[pos],
                R[pos, k, m],
                styles[m % len(styles)],
                color=S.CYCLE[k % len(S.CYCLE)],
                lw=1.3,
                label=rf"$R_{{{k + 1}m}}$" if m == 0 else None,
            )
    ax_r.plot([], [], "-", color="0.4", label=r"$m = 1$")
    ax_r.plot([], [], "--", color="0.4", label=r"$m = 2$")
    ax_r.plot([], [], ":", color="0.4", label=r"$m = 3$")
    ax_r.set_xscale("log")
    ax_r.set_xlabel(S.ALPHA)
    ax_r.set_ylabel(r"$R_{km}$")
    ax_r.set_title(f"ODE, asymmetry {asyms[j]:.0e}")
    ax_r.legend(loc="upper left", fontsize=7, ncol=2)
    ax_s.set_xscale("log")
    ax_s.set_xlabel(S.ALPHA)
    ax_s.set_ylabel("specialisation")
    ax_s.legend(loc="upper left", fontsize=7)
    for ax, l in zip(axes, "abc"):
        S.panel_label(ax, l)
    fig.suptitle(
        f"Online BP, K = M = {cfg['K']}, erf, η = {cfg['eta']}, second layer fixed "
        f"(v = v* = 1), Q(0) = {cfg['init']['q0']} I, R(0) ≈ {cfg['init']['r0']}",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
