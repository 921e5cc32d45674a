"""The AFA feedback does not self-average: seed-to-seed spread, simulation vs SDE vs ODE.

``b_k = w_k·F/√N`` is an overlap of order √N in the sum, so its step-to-step noise does
not vanish as N → ∞ (docs/theory.md §5): simulations started from the *same* weights
(``same_init``) but fed independent samples spread out, by an amount the deterministic
ODE cannot describe (its spread is zero) but the SDE ``db = drift dα + chol(Σ) dB_α``
does. All three start from the measured initial state of seed 0 (§4a).

Panels: (a) ε_g, mean ± 1 std of simulations and SDE paths, and the ODE; (b) the spread
std(ε_g) over α (simulation: with its sampling uncertainty ``std/√(2(n−1))``); (c) the
feedback components b_k, a few simulation runs (thin) against the SDE mean ± 1 std;
(d) the spread std(b_k).

Parameters: ``figures/configs/feedback-noise.json`` (docs/theory.md §7 values).
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "feedback-noise"
DESCRIPTION = (
    "AFA feedback noise: seed-to-seed spread of ε_g and b in simulations vs the "
    "SDE ensemble vs the deterministic ODE)"
)


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    import odeflow
    from odeflow.compare import compare

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim_cfg, ode_opts, sde_opts = cfg["simulation"], cfg["ode"], cfg["sde"]
    c = compare({**sim_cfg, **ode_opts})
    sim, ode = c.sim, c.ode_result
    init = sim.initial_state(0)
    sde = odeflow.solve_sde(
        "afa",
        init,
        eta=sim_cfg["eta"],
        eta_v=sim_cfg["eta_v"],
        sigma=sim_cfg["sigma"],
        activation=sim_cfg["activation"],
        alpha_max=sim_cfg["alpha_max"],
        record={"alpha": sim.alpha.tolist()},
        **sde_opts,
    )
    alpha = sim.alpha
    n = int(sim.n_mean)
    data = dict(
        alpha=alpha,
        N=sim_cfg["N"],
        n_seeds=n,
        n_paths=sde.n_paths,
        sim_eg=sim.eg,
        sim_eg_mean=sim.eg_mean,
        sim_eg_std=sim.eg_std,
        sim_b=sim.b,
        sim_b_mean=sim.mean("b"),
        sim_b_std=sim.std("b"),
        sde_eg_mean=sde.eg_mean,
        sde_eg_std=sde.eg_std,
        sde_b_mean=sde.b_mean,
        sde_b_std=sde.b_std,
        sde_diverged=sde.diverged,
        ode_eg=ode.eg,
        ode_b=ode.b,
        ode_eg_std=np.zeros_like(ode.eg),
        sde_b_paths=sde.b[: cfg["n_paths_shown"]],
    )
    data.update(init.to_dict("init_"))
    i_sim, i_sde = int(np.nanargmax(sim.eg_std)), int(np.nanargmax(sde.eg_std))
    info = dict(
        sim=sim.summary(),
        ode=ode.message,
        sde=sde.message,
        sim_spread_peak=dict(value=float(sim.eg_std[i_sim]), alpha=float(alpha[i_sim])),
        sde_spread_peak=dict(value=float(sde.eg_std[i_sde]), alpha=float(alpha[i_sde])),
        discrepancy_ode=float(np.max(np.abs(sim.eg_mean - ode.eg))),
        discrepancy_sde=float(np.max(np.abs(sim.eg_mean - sde.eg_mean))),
    )

    col_sim, col_sde, col_ode = S.COLORS["afa"], S.COLORS["sde"], "k"
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 6.4), constrained_layout=True, sharex=True)
    (ax_e, ax_s), (ax_b, ax_bs) = axes
    # (a) eps_g
    S.band(ax_e, alpha, sde.eg_mean, sde.eg_std, col_sde, alpha=0.25)
    ax_e.plot(
        alpha,
        sde.eg_mean,
        "--",
        color=col_sde,
        lw=1.5,
        label=f"SDE, {sde.n_paths} paths (mean ± 1 std)",
    )
    S.band(ax_e, alpha, sim.eg_mean, sim.eg_std, col_sim, alpha=0.2)
    ax_e.plot(
        alpha,
        sim.eg_mean,
        "o",
        ms=2.2,
        color=col_sim,
        label=f"simulations, N = {sim_cfg['N']}, {n} seeds",
    )
    ax_e.plot(alpha, ode.eg, "-", color=col_ode, lw=1.2, label="ODE (mean field)")
    ax_e.set_ylabel(S.EG)
    ax_e.legend(loc="lower left", fontsize=7)
    # (b) spread of eps_g
    rel = 1 / math.sqrt(2 * max(n - 1, 1))
    S.band(ax_s, alpha, sim.eg_std, rel * sim.eg_std, col_sim, alpha=0.2)
    ax_s.plot(
        alpha,
        sim.eg_std,
        "o-",
        ms=2.2,
        lw=0.8,
        color=col_sim,
        label=r"simulations (± sampling error of the std)",
    )
    ax_s.plot(alpha, sde.eg_std, "--", color=col_sde, lw=1.5, label="SDE")
    ax_s.plot(alpha, np.zeros_like(alpha), "-", color=col_ode, lw=1.2, label="ODE: none")
    ax_s.set_ylabel(r"std$(\varepsilon_g)$ over seeds / paths")
    ax_s.legend(loc="upper left", fontsize=7)
    # (c) b_k: a few runs vs the SDE band
    K = sim.b.shape[-1]
    for k in range(K):
        ck = S.CYCLE[k]
        S.band(ax_b, alpha, sde.b_mean[:, k], sde.b_std[:, k], ck, alpha=0.18)
        ax_b.plot(
            alpha, sde.b_mean[:, k], "--", color=ck, lw=1.3, label=rf"$b_{k + 1}$: SDE mean ± 1 std"
        )
        ax_b.plot(alpha, ode.b[:, k], "-", color="k", lw=0.9, label="ODE" if k == 0 else None)
        for s in range(min(cfg["n_paths_shown"], sim.b.shape[0])):
            ax_b.plot(
                alpha,
                sim.b[s, :, k],
                "-",
                color=ck,
                lw=0.5,
                alpha=0.6,
                label=rf"$b_{k + 1}$: single simulations" if s == 0 else None,
            )
    ax_b.set_ylabel(r"$b_k = w_k\cdot F/\sqrt{N}$")
    ax_b.legend(loc="best", fontsize=6.5, ncol=2)
    # (d) spread of b_k
    for k in range(K):
        ck = S.CYCLE[k]
        sb = sim.std("b")[:, k]
        S.band(ax_bs, alpha, sb, rel * sb, ck, alpha=0.15)
        ax_bs.plot(alpha, sb, "o-", ms=2, lw=0.8, color=ck, label=rf"$b_{k + 1}$ simulations")
        ax_bs.plot(alpha, sde.b_std[:, k], "--", color=ck, lw=1.5, label=rf"$b_{k + 1}$ SDE")
    ax_bs.axhline(0, color=col_ode, lw=1.2, label="ODE: none")
    ax_bs.set_ylabel(r"std$(b_k)$ over seeds / paths")
    ax_bs.legend(loc="upper right", fontsize=7, ncol=2)
    for ax, l in zip(axes.ravel(), "abcd"):
        S.panel_label(ax, l)
    for ax in axes[1]:
        ax.set_xlabel(S.ALPHA)
    fig.suptitle(
        f"AFA, K = M = {sim_cfg['K']}, η = η$_v$ = {sim_cfg['eta']}, σ$_F$ = "
        f"{sim_cfg['sigma_F']}: same initial weights, independent samples",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
