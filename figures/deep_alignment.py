"""Deep students (docs/deep.md): ε_g and the alignment of every hidden
layer's signal with BP's, for BP, FA, DFA and PEPITA at depth L = 2, 3, 4.

Rows: depth (hidden widths ``[K]*(L−1)``); first column ε_g, then ``cos_delta`` of hidden
layer 1, 2, 3 (``E[δ_ℓ·δ_ℓ^BP]/√(E|δ_ℓ|² E|δ_ℓ^BP|²)`` over the fields, BP's δ with the
current weights; 1 for BP). Lines: the ODEs (:func:`odeflow.solve` with ``widths``) from
the measured initial state of seed 0; markers and bands: the simulation ensemble
(:mod:`simulations.deep_student`, same initial weights for every seed; mean ± 1 std),
whose ε_g and cos_delta are Monte Carlo averages over the fields of the measured order
parameters. Every rule of one depth starts from the same weights.

Parameters: ``figures/configs/deep-alignment.json``.
"""

from __future__ import annotations

import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "deep-alignment"
DESCRIPTION = (
    "deep students: ε_g and per-layer cos(δ_ℓ, δ_ℓ^BP) for BP, FA, DFA, PEPITA at depth 2–4 "
    "(ODE vs simulations)"
)
_COLORS = {**S.COLORS, "dfa": "#009E73", "pepita-hebbian": "#56B4E9"}
_LABELS = {**S.LABELS, "dfa": "DFA", "pepita": "PEPITA", "pepita-hebbian": "PEPITA-Hebbian"}


def theory(rule, sim, sim_cfg, ode_opts):
    """The deep ODE from the measured initial state of seed 0 of ``sim``, on its grid."""
    from odeflow import solve

    res = solve(
        rule,
        sim.initial_state(0),
        eta=sim_cfg["eta"],
        eta_v=sim_cfg["eta_v"],
        eta_W=sim_cfg.get("eta_W"),
        sigma=sim_cfg["sigma"],
        activation=sim_cfg["activation"],
        alpha_max=sim_cfg["alpha_max"],
        record={"alpha": [float(a) for a in sim.alpha]},
        widths=[int(k) for k in sim.widths],
        **ode_opts,
    )
    return res


def _run(cfg):
    from simulations.deep_student import simulate

    sim_cfg, ode = cfg["simulation"], cfg["ode"]
    data, info = {"N": sim_cfg["N"]}, {}
    for L in cfg["depths"]:
        widths = [cfg["width"]] * (L - 1)
        for rule in cfg["rules"]:
            key = f"L{L}_{rule}"
            t0 = time.perf_counter()
            sim = simulate({**sim_cfg, "rule": rule, "widths": widths})
            t_sim = time.perf_counter() - t0
            data["alpha"] = sim.alpha
            data[f"{key}_sim_eg_mean"], data[f"{key}_sim_eg_std"] = sim.eg_mean, sim.eg_std
            data[f"{key}_sim_cos_mean"] = sim.mean("cos_delta")
            data[f"{key}_sim_cos_std"] = sim.std("cos_delta")
            t0 = time.perf_counter()
            o = theory(rule, sim, sim_cfg, ode)
            t_ode = time.perf_counter() - t0
            T = len(o.alpha)
            data[f"{key}_ode_alpha"] = o.alpha
            data[f"{key}_ode_eg"] = o.eg
            data[f"{key}_ode_cos"] = np.asarray(o.cos_delta)
            # how far theory and simulation are, per record, in units of the seed spread
            se = sim.eg_std[:T] / np.sqrt(max(sim.n_mean, 1))
            # α = 0: every seed starts from the same weights (a spread of rounding only)
            ok = (sim.alpha[:T] > 0) & (se > 1e-9)
            info[key] = dict(
                n_seeds=int(sim.n_mean),
                diverged=int(sim.diverged.sum()),
                ode_message=o.message,
                eg_final_sim=float(sim.eg_mean[T - 1]),
                eg_final_ode=float(o.eg[-1]),
                eg_max_abs_diff=float(np.nanmax(np.abs(sim.eg_mean[:T] - o.eg))),
                eg_max_diff_in_se=float(np.nanmax(np.abs(sim.eg_mean[:T] - o.eg)[ok] / se[ok]))
                if ok.any()
                else float("nan"),
                cos_max_abs_diff=float(
                    np.nanmax(np.abs(data[f"{key}_sim_cos_mean"][:T] - data[f"{key}_ode_cos"]))
                ),
                seconds_sim=round(t_sim, 1),
                seconds_ode=round(t_ode, 1),
            )
    return data, info


def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    data, info = _run(cfg)
    depths, rules, sim_cfg = cfg["depths"], cfg["rules"], cfg["simulation"]
    ncol = max(depths)
    fig, axes = plt.subplots(
        len(depths), ncol, figsize=(2.6 * ncol, 2.2 * len(depths)), constrained_layout=True,
        sharex=True, squeeze=False,
    )  # fmt: skip
    alpha = data["alpha"]
    step = max(1, len(alpha) // 30)
    for r, L in enumerate(depths):
        for c in range(ncol):
            ax = axes[r, c]
            if c >= L:
                ax.axis("off")
                continue
            for rule in rules:
                key, col = f"L{L}_{rule}", _COLORS[rule]
                if c == 0:
                    m, s = data[f"{key}_sim_eg_mean"], data[f"{key}_sim_eg_std"]
                    ode_a, ode_y = data[f"{key}_ode_alpha"], data[f"{key}_ode_eg"]
                else:
                    m = data[f"{key}_sim_cos_mean"][:, c - 1]
                    s = data[f"{key}_sim_cos_std"][:, c - 1]
                    ode_a, ode_y = data[f"{key}_ode_alpha"], data[f"{key}_ode_cos"][:, c - 1]
                S.band(ax, alpha, m, s, col)
                ax.plot(alpha[::step], m[::step], "o", ms=2.0, color=col, alpha=0.8)
                ax.plot(ode_a, ode_y, "-", color=col, lw=1.3)
            if c == 0:
                ax.set_yscale("log")
                ax.set_ylabel(f"L = {L}\n" + S.EG)
            else:
                ax.set_ylim(-1.05, 1.05)
                ax.axhline(0, color="0.7", lw=0.5)
                ax.set_ylabel(rf"$\cos(\delta_{c}, \delta_{c}^{{\rm BP}})$")
            if r == len(depths) - 1:
                ax.set_xlabel(S.ALPHA)
    handles = [Line2D([], [], color=_COLORS[q], lw=1.4, label=_LABELS[q]) for q in rules]
    handles += [
        Line2D([], [], color="0.3", lw=1.3, label="ODE"),
        Line2D([], [], color="0.3", marker="o", ls="", ms=3,
               label=f"simulation N = {sim_cfg['N']} (±1 std)"),
    ]  # fmt: skip
    axes[0, -1].legend(handles=handles, loc="center", fontsize=8)
    axes[0, -1].axis("off")
    n_seeds = min(v["n_seeds"] for v in info.values())
    fig.suptitle(
        f"deep students, hidden widths {cfg['width']}, M = {sim_cfg['M']}, η = {sim_cfg['eta']}, "
        f"η$_v$ = η$_W$ = {sim_cfg['eta_v']}, σ$_F$ = {sim_cfg['sigma_F']}, ≥ {n_seeds} seeds",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
