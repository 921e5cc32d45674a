"""AFA's phase diagram over the feedback scale σ_F and the learning rate η = η_v.

At a fixed α (the simulations' ``alpha_max``): ε_g and the alignment ``cos(v, b)`` of the
second layer with the adaptive feedback ``b = w F/√N`` (docs/theory.md §5), from the ODE on a
(σ_F, η) grid, and from simulation ensembles at a few points (circles filled with the
simulated value on the same colour scale). Panel c puts theory against simulation at those
points: the deterministic ODE (mean field) and the feedback-noise SDE (§5.2): ``b`` does not
self-average, and at large σ_F its noise (covariance ∝ η² σ_F²) shifts the mean ε_g away
from the ODE, which the SDE captures.

Every run goes through :func:`odeflow.sweep.sweep` (three sweeps: the ODE grid, the ODE at
the simulated points, the simulations), so re-running the figure into the same directory
reuses finished points. The ODE starts from the measured initial state of the simulations'
weights (``same_init``: every seed starts there): ``w, w*, v`` and the direction of ``F``
are fixed by ``init.seed``; ``F = σ_F g`` with ``g ~ N(0, I)``, so ``b = w F/√N`` and
``c = w* F/√N`` scale with σ_F and ``sigma_F2 = F·F/N`` with σ_F² — a zipped axis of the
sweep. Small σ_F: weak feedback, ε_g stays near its initial plateau; larger σ_F and η:
``v`` aligns with ``b`` and ε_g falls.

Parameters: ``figures/configs/afa-phase.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "afa-phase"
DESCRIPTION = (
    "AFA phase diagram: ε_g and cos(v, b) at fixed α over (σ_F, η), ODE grid vs "
    "simulations at a few points (odeflow.sweep)"
)


def initial_state(sim_cfg: dict, sigma_F: float):
    """Measured initial order parameters of the simulations at feedback scale σ_F."""
    from simulations.teacher_student import initial_weights, validate_config

    cfg = validate_config({**sim_cfg, "rule": "afa", "sigma_F": sigma_F})
    return initial_weights(cfg, cfg["seeds"][0]).order_parameters("afa")


def _init_axes(sim_cfg, sigmas) -> dict:
    """The zipped init axes (b, c, sigma_F2) for a list of σ_F."""
    states = [initial_state(sim_cfg, s) for s in sigmas]
    return {
        "init.b": [s.b.tolist() for s in states],
        "init.c": [s.c.tolist() for s in states],
        "init.sigma_F2": [float(s.sigma_F2) for s in states],
    }


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    from odeflow.sweep import axis_values, sweep

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim = {**cfg["simulation"], "rule": "afa"}
    A = float(sim["alpha_max"])
    sFs = axis_values("sigma_F", cfg["sigma_F"])
    etas = axis_values("eta", cfg["eta"])
    pts = [tuple(map(float, p)) for p in cfg["sim_points"]]
    work = Path(outdir) / f"{NAME}-sweeps"
    s0 = initial_state(sim, 1.0)  # σ_F-independent parts of the initial state
    base = {
        "rule": "afa",
        "activation": sim["activation"],
        "sigma": sim["sigma"],
        "alpha_max": A,
        "record": {"alpha": [0.0, A]},
        **cfg["ode"],
        "init": {
            k: np.asarray(v).tolist()
            for k, v in s0.to_dict().items()
            if v is not None and k != "F_norm2"
        },
    }  # AFA: no ‖F‖² term
    kw = dict(workers=cfg["workers"])
    # (1) the ODE on the grid: η × (σ_F zipped with the initial b, c, σ_F²)
    ode = sweep(
        {"base": base, "grid": {"eta": etas}, "zip": _init_axes(sim, sFs)}, work / "ode-grid", **kw
    )
    # (2) the ODE at the simulated points, (3) the simulations there
    zp = {"eta": [e for _, e in pts], **_init_axes(sim, [s for s, _ in pts])}
    ode_pts = sweep({"base": base, "zip": zp}, work / "ode-points", **kw)
    sde_base = {k: v for k, v in base.items() if k not in ("method", "rtol", "atol")}
    sde = sweep(
        {"kind": "sde", "base": {**sde_base, **cfg["sde"]}, "zip": zp}, work / "sde-points", **kw
    )
    sims = sweep(
        {
            "kind": "simulate",
            "base": sim,
            "zip": {
                "sigma_F": [s for s, _ in pts],
                "eta": [e for _, e in pts],
                "eta_v": [e for _, e in pts],
            },
        },
        work / "simulations",
        **kw,
    )
    n_seeds = len(sims.load(0).seeds)
    data = {
        "sigma_F": np.array(sFs),
        "eta": np.array(etas),
        "alpha": A,
        "N": sim["N"],
        "ode_eg": ode.grid("eg_final"),
        "ode_cos_vb": ode.grid("cos_vb_final"),
        "ode_norm_b": ode.grid("norm_b_final"),
        "ode_diverged": ode.grid("diverged"),
        "eg0": float(ode.load(0).eg[0]),
        "pt_sigma_F": np.array([s for s, _ in pts]),
        "pt_eta": np.array([e for _, e in pts]),
        "pt_ode_eg": ode_pts.column("eg_final"),
        "pt_ode_cos_vb": ode_pts.column("cos_vb_final"),
        "pt_sde_eg": sde.column("eg_final"),
        "pt_sde_eg_std": sde.column("eg_std"),
        "n_paths": cfg["sde"]["n_paths"],
        "pt_sim_eg": sims.column("eg_final"),
        "pt_sim_eg_std": sims.column("eg_std"),
        "pt_sim_cos_vb": sims.column("cos_vb_final"),
        "pt_sim_diverged": sims.column("diverged"),
        "n_seeds": n_seeds,
    }
    cos_std = []
    for i in range(len(pts)):
        r = sims.load(i)
        c = r.cos_vb[~r.diverged, -1]
        cos_std.append(float(np.std(c, ddof=1)) if c.size > 1 else np.nan)
    data["pt_sim_cos_vb_std"] = np.array(cos_std)

    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.8), constrained_layout=True)
    ax_e, ax_c, ax_s = axes
    # grid cell edges: geometric midpoints in σ_F, arithmetic in η
    lx = np.log(sFs)
    ex = np.exp(
        np.concatenate(
            [
                [lx[0] - (lx[1] - lx[0]) / 2],
                (lx[1:] + lx[:-1]) / 2,
                [lx[-1] + (lx[-1] - lx[-2]) / 2],
            ]
        )
    )
    ey = np.concatenate(
        [
            [etas[0] - (etas[1] - etas[0]) / 2],
            np.add(etas[1:], etas[:-1]) / 2,
            [etas[-1] + (etas[-1] - etas[-2]) / 2],
        ]
    )
    eg_norm = LogNorm(
        vmin=np.nanmin([np.nanmin(data["ode_eg"]), np.nanmin(data["pt_sim_eg"])]), vmax=data["eg0"]
    )
    # alignment is strong almost everywhere: the colour scale starts at the lowest value
    cmin = np.nanmin([np.nanmin(data["ode_cos_vb"]), np.nanmin(data["pt_sim_cos_vb"])])
    cos_norm = Normalize(min(np.floor(cmin * 20) / 20, 0.95), 1.0)
    for ax, key, norm, cmap, label in (
        (ax_e, "eg", eg_norm, "viridis", rf"{S.EG} at $\alpha$ = {A:g}"),
        (ax_c, "cos_vb", cos_norm, "cividis", rf"$\cos(v, b)$ at $\alpha$ = {A:g}"),
    ):
        Z = data[f"ode_{key}"]  # sweep axes: rows η, columns σ_F
        m = ax.pcolormesh(ex, ey, np.ma.masked_invalid(Z), norm=norm, cmap=cmap, shading="flat")
        ax.scatter(
            data["pt_sigma_F"],
            data["pt_eta"],
            c=data[f"pt_sim_{key}"],
            norm=norm,
            cmap=cmap,
            s=90,
            edgecolors="k",
            linewidths=1.2,
            zorder=3,
            label=f"simulation, mean of {n_seeds} seeds (N = {sim['N']})",
        )
        div = data["ode_diverged"] > 0
        if div.any():
            yy, xx = np.nonzero(div)
            ax.plot(np.array(sFs)[xx], np.array(etas)[yy], "kx", ms=6, label="ODE diverged")
        ax.set_xscale("log")
        ax.set_xlabel(r"feedback scale $\sigma_F$")
        ax.set_ylabel(r"learning rate $\eta = \eta_v$")
        fig.colorbar(m, ax=ax, label=label + " (ODE: cells)")
    ax_e.legend(loc="upper left", fontsize=7, framealpha=0.8, frameon=True)
    # (c) theory against simulation at the simulated points
    se = data["pt_sim_eg_std"] / np.sqrt(n_seeds)
    se_sde = data["pt_sde_eg_std"] / np.sqrt(data["n_paths"])
    for i, (s, e) in enumerate(pts):
        col = S.CYCLE[i % len(S.CYCLE)]
        x = data["pt_sim_eg"][i]
        ax_s.errorbar(
            x,
            data["pt_ode_eg"][i],
            xerr=se[i],
            fmt="o",
            color=col,
            ms=6,
            capsize=2,
            label=rf"$\sigma_F$ = {s:g}, $\eta$ = {e:g}",
        )
        ax_s.errorbar(
            x, data["pt_sde_eg"][i], yerr=se_sde[i], fmt="s", mfc="none", color=col, ms=7, capsize=2
        )
    allv = np.concatenate([data["pt_ode_eg"], data["pt_sim_eg"], data["pt_sde_eg"]])
    lo, hi = 0.85 * np.nanmin(allv), 1.1 * np.nanmax(allv)
    ax_s.plot([lo, hi], [lo, hi], "-", color="0.5", lw=0.8)
    from matplotlib.lines import Line2D

    h, _ = ax_s.get_legend_handles_labels()
    h += [
        Line2D([], [], color="0.3", marker="o", ls="", label="ODE (mean field)"),
        Line2D(
            [],
            [],
            color="0.3",
            marker="s",
            mfc="none",
            ls="",
            label=f"SDE, {data['n_paths']} paths (feedback noise)",
        ),
        Line2D([], [], color="0.5", lw=0.8, label="theory = simulation"),
    ]
    ax_s.set_xlim(lo, hi)
    ax_s.set_ylim(lo, hi)
    ax_s.set_xlabel(
        rf"simulation {S.EG} at $\alpha$ = {A:g} (mean ± std. error, "
        f"{n_seeds} seeds)"
    )
    ax_s.set_ylabel(rf"theory {S.EG} at $\alpha$ = {A:g}")
    ax_s.legend(handles=h, loc="upper left", fontsize=7)
    for ax, l in zip(axes, "abc"):
        S.panel_label(ax, l)
    fig.suptitle(
        f"AFA, K = M = {sim['K']}, N = {sim['N']}, initial ε_g = {data['eg0']:.3f}: "
        f"ODE grid {len(sFs)} × {len(etas)}, simulations and SDE at {len(pts)} points",
        fontsize=10,
    )
    info = {
        "ode_grid": ode.summary(),
        "ode_points": ode_pts.summary(),
        "sde": sde.summary(),
        "simulations": sims.summary(),
    }
    params = dict(
        cfg, sigma_F_values=sFs, eta_values=etas, results=info, seconds=time.perf_counter() - t0
    )
    save_figure(fig, outdir, NAME, params, data)
    return data
