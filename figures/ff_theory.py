"""Forward-Forward in the teacher–student setting: theory (ODEs of theory/ff.py) against
online FF simulations (simulations/ff_online.py), docs/ff-theory.md.

Rows: M = 1 and M = 2 teacher units. Columns: ε_g = P(ŷ ≠ y), the mean label weight
``ū = (1/K) Σ_k u_k`` and the goodness gap ``E[G⁺ − G⁻]`` over α, for K ∈ {1, 2, 4}
(θ = K/2, half the largest erf goodness). Lines: ODE from the measured initial state of
seed 0; markers and bands: simulation mean ± 1 std over seeds (same initial weights,
different samples). The simulations' ε_g and gap are *measured* on a fixed test set of
``mc_test`` inputs (independent of the theory's quadrature, and cheap at K = 4). Last
column: the threshold θ at K = 2, M = 1 — ε_g(α) for a few θ
(top) and ε_g at α_max against θ (bottom; ODE over a grid, simulation means at the θ of
the top panel).

Parameters: ``figures/configs/ff-theory.json``.
"""

from __future__ import annotations

import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "ff-theory"
DESCRIPTION = (
    "Forward-Forward teacher-student: eps_g, label weights and goodness gap, "
    "ODE vs online simulations for K in {1,2,4}, M in {1,2}, and the threshold"
)


def _run(sim_cfg, K, M, theta, ode_opts):
    """Simulation ensemble and the ODE from its measured initial state."""
    import odeflow
    from simulations.ff_online import simulate_ff

    cfg = {**sim_cfg, "rule": "ff", "K": K, "M": M, "theta": theta}
    sim = simulate_ff(cfg)
    ode = odeflow.solve(
        "ff",
        sim.initial_state(0),
        eta=cfg["eta"],
        eta_u=cfg["eta_u"],
        theta=theta,
        alpha_max=cfg["alpha_max"],
        record={"alpha": sim.alpha},
        **ode_opts,
    )
    return sim, ode


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    import odeflow

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim_cfg, ode_opts = cfg["simulation"], cfg["ode"]
    Ks, Ms = cfg["K"], cfg["M"]
    data = {"N": sim_cfg["N"], "K_values": np.array(Ks), "M_values": np.array(Ms)}
    info, inits = {}, {}
    skip = {tuple(c) for c in cfg.get("skip", [])}
    for M in Ms:
        for K in Ks:
            if (K, M) in skip:  # recorded in the parameters; see the config
                continue
            theta = cfg["theta_per_unit"] * K
            sim, ode = _run(sim_cfg, K, M, theta, ode_opts)
            key = f"K{K}M{M}"
            inits[(K, M)] = sim.initial_state(0)
            data["alpha"] = sim.alpha
            n = sim.n_mean
            data[f"{key}_ode_eg"], data[f"{key}_ode_gap"] = ode.eg, ode.gap
            data[f"{key}_ode_u"] = ode.u.mean(-1)
            data[f"{key}_sim_eg_mean"] = sim.mean("eg_mc")
            data[f"{key}_sim_eg_std"] = sim.std("eg_mc")
            data[f"{key}_sim_eg_test_se"] = np.nanmean(sim.eg_mc_se, axis=0)
            data[f"{key}_sim_u_mean"] = sim.mean("u").mean(-1)
            data[f"{key}_sim_u_std"] = sim.u.mean(-1).std(0, ddof=1)
            data[f"{key}_sim_gap_mean"] = sim.mean("gap_mc")
            data[f"{key}_sim_gap_std"] = sim.std("gap_mc")
            data[f"{key}_n_seeds"] = n
            # the test set is shared by all seeds: its sampling error does not average out
            se = np.hypot(data[f"{key}_sim_eg_std"] / np.sqrt(n), data[f"{key}_sim_eg_test_se"])
            dev = np.abs(ode.eg - data[f"{key}_sim_eg_mean"])
            info[key] = dict(
                theta=theta,
                ode_message=ode.message,
                n_seeds=n,
                eg_max_dev=float(dev.max()),
                eg_max_dev_over_se=float(np.max(dev[1:] / se[1:])),
                eg_final_ode=float(ode.eg[-1]),
                eg_final_sim=float(data[f"{key}_sim_eg_mean"][-1]),
            )
    # the threshold panel: K = 2, M = 1
    tp = cfg["theta_panel"]
    Kt, Mt = tp["K"], tp["M"]
    for th in tp["thetas"]:
        key = f"theta{th:g}"
        if abs(th - cfg["theta_per_unit"] * Kt) < 1e-12 and Mt in Ms and Kt in Ks:
            src = f"K{Kt}M{Mt}"
            for part in ("ode_eg", "sim_eg_mean", "sim_eg_std"):
                data[f"{key}_{part}"] = data[f"{src}_{part}"]
            continue
        sim, ode = _run(sim_cfg, Kt, Mt, th, ode_opts)
        inits[(Kt, Mt)] = sim.initial_state(0)  # same_init: the same for every θ
        data[f"{key}_ode_eg"] = ode.eg
        data[f"{key}_sim_eg_mean"] = sim.mean("eg_mc")
        data[f"{key}_sim_eg_std"] = sim.std("eg_mc")
    init = inits[(Kt, Mt)]
    grid = np.array(tp["grid"], dtype=float)
    final = []
    for th in grid:
        r = odeflow.solve(
            "ff",
            init,
            eta=sim_cfg["eta"],
            eta_u=sim_cfg["eta_u"],
            theta=th,
            alpha_max=sim_cfg["alpha_max"],
            record=[sim_cfg["alpha_max"]],
            **ode_opts,
        )
        final.append(r.eg[-1] if r.success else np.nan)
    data["theta_grid"], data["theta_grid_eg_final"] = grid, np.array(final)
    data["thetas"] = np.array(tp["thetas"], dtype=float)
    alpha = data["alpha"]

    # ---------------------------------------------------------------------- drawing
    fig, axes = plt.subplots(2, 4, figsize=(13.5, 6.0), constrained_layout=True)
    step = max(1, len(alpha) // 20)
    for row, M in enumerate(Ms):
        ax_e, ax_u, ax_g = axes[row, 0], axes[row, 1], axes[row, 2]
        for i, K in enumerate(Ks):
            key, col = f"K{K}M{M}", S.CYCLE[i]
            if (K, M) in skip:
                continue
            for ax, name in ((ax_e, "eg"), (ax_u, "u"), (ax_g, "gap")):
                m, s = data[f"{key}_sim_{name}_mean"], data[f"{key}_sim_{name}_std"]
                S.band(ax, alpha, m, s, col, alpha=0.18)
                ax.plot(alpha[::step], m[::step], "o", ms=3, color=col, alpha=0.9)
                ax.plot(alpha, data[f"{key}_ode_{name}"], "-", color=col, lw=1.5)
        ax_e.set_ylabel(S.EG)
        ax_u.set_ylabel(r"mean label weight $\bar u$")
        ax_g.set_ylabel(r"goodness gap $E[G^+ - G^-]$")
        ax_e.set_title(f"M = {M}: generalisation error", fontsize=9)
        ax_u.set_title(f"M = {M}: label weights", fontsize=9)
        ax_g.set_title(f"M = {M}: goodness gap", fontsize=9)
        ax_e.axhline(0.5, color="0.6", lw=0.6, ls=":")
    handles = [
        Line2D(
            [], [], color=S.CYCLE[i], lw=1.5, label=f"K = {K} (θ = {cfg['theta_per_unit'] * K:g})"
        )
        for i, K in enumerate(Ks)
    ]
    handles += [
        Line2D([], [], color="0.3", lw=1.5, label="ODE"),
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            ls="",
            ms=3,
            label=f"simulation N = {sim_cfg['N']}, ± 1 std\n(test set of {sim_cfg['mc_test']})",
        ),
    ]
    # the label-weight panel has room top left (ū starts near 0.1 and rises late)
    axes[0, 1].legend(handles=handles, loc="upper left", fontsize=7)
    ax_t, ax_f = axes[0, 3], axes[1, 3]
    for i, th in enumerate(tp["thetas"]):
        key, col = f"theta{th:g}", S.CYCLE[3 + i]
        m, s = data[f"{key}_sim_eg_mean"], data[f"{key}_sim_eg_std"]
        S.band(ax_t, alpha, m, s, col, alpha=0.18)
        ax_t.plot(alpha[::step], m[::step], "o", ms=3, color=col)
        ax_t.plot(alpha, data[f"{key}_ode_eg"], "-", color=col, lw=1.5, label=f"θ = {th:g}")
        ax_f.errorbar([th], [m[-1]], yerr=[s[-1]], fmt="o", ms=4, color=col, capsize=2)
    ax_t.set_ylabel(S.EG)
    ax_t.set_title(f"threshold θ (K = {Kt}, M = {Mt})", fontsize=9)
    ax_t.legend(loc="lower left", fontsize=7)
    ax_t.axhline(0.5, color="0.6", lw=0.6, ls=":")
    ax_f.plot(grid, data["theta_grid_eg_final"], "-", color="0.2", lw=1.5, label="ODE")
    ax_f.plot([], [], "o", color="0.4", ms=4, label="simulation ± 1 std")
    ax_f.set_xlabel("threshold θ")
    ax_f.set_ylabel(r"$\varepsilon_g$ at $\alpha$ = " f"{sim_cfg['alpha_max']:g}")
    ax_f.set_title(f"final error against θ (K = {Kt}, M = {Mt})", fontsize=9)
    ax_f.legend(loc="upper left", fontsize=7)
    for ax in axes[:, :3].ravel().tolist() + [ax_t]:
        ax.set_xlabel(S.ALPHA)
    for ax, l in zip(axes.ravel(), "abcdefgh"):
        S.panel_label(ax, l)
    nseed = min(v["n_seeds"] for v in info.values())
    fig.suptitle(
        f"Forward-Forward teacher–student: η = {sim_cfg['eta']:g}, "
        f"η$_u$ = {sim_cfg['eta_u']:g}, erf, {nseed} seeds, same initial weights",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
