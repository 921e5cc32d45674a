"""Align, then memorise: the second layer aligns with the feedback while ε_g is on its
plateau, and only then does the error fall.

For AFA (adaptive feedback ``b = w F/√N``) and FA (fixed random ``b``), with the parameters
of docs/theory.md §7: ε_g, ``cos(v, b)`` and ``|b|`` over α, ODE from the measured initial
state of seed 0 (lines) against the simulation ensemble from the same initial weights
(mean ± 1 std over seeds), via :func:`odeflow.compare.compare`. Vertical lines: ``α_align``,
where the ODE's ``cos(v, b)`` first exceeds 0.9, and ``α_½``, where the ODE's ε_g has
dropped to half its initial value; the shaded interval is the alignment phase.

Parameters: ``figures/configs/alignment.json``.
"""

from __future__ import annotations

import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "alignment"
DESCRIPTION = (
    "align, then memorise: cos(v, b) and |b| beside ε_g for AFA and FA (ODE vs simulations)"
)


def first_crossing(alpha, x, level, above=True):
    """First α where ``x >= level`` (``above``) or ``x <= level``; NaN if never."""
    x = np.asarray(x, dtype=float)
    hit = x >= level if above else x <= level
    idx = np.flatnonzero(hit & np.isfinite(x))
    return float(alpha[idx[0]]) if idx.size else float("nan")


def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    from odeflow.compare import compare

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim_cfg, ode_opts = cfg["simulation"], cfg["ode"]
    level = cfg["check"]["cos_aligned"]
    data, info = {"N": sim_cfg["N"], "cos_level": level}, {}
    for rule in cfg["rules"]:
        c = compare({**sim_cfg, "rule": rule, **ode_opts})
        o, sim = c.ode_result, c.sim
        T = len(c.alpha)
        data["alpha"] = c.alpha
        data[f"{rule}_ode_eg"] = o.eg
        data[f"{rule}_ode_cos_vb"] = o.cos_vb
        data[f"{rule}_ode_norm_b"] = o.norm_b
        data[f"{rule}_sim_eg_mean"] = sim.eg_mean[:T]
        data[f"{rule}_sim_eg_std"] = sim.eg_std[:T]
        for name in ("cos_vb", "norm_b"):
            data[f"{rule}_sim_{name}_mean"] = sim.mean(name)[:T]
            data[f"{rule}_sim_{name}_std"] = sim.std(name)[:T]
        data[f"{rule}_sim_cos_vb"] = sim.cos_vb[:, :T]
        data[f"{rule}_sim_eg"] = sim.eg[:, :T]
        a_align = first_crossing(c.alpha, o.cos_vb, level)
        a_half = first_crossing(c.alpha, o.eg, 0.5 * o.eg[0], above=False)
        data[f"{rule}_alpha_align"] = a_align
        data[f"{rule}_alpha_half"] = a_half
        info[rule] = dict(
            ode_message=o.message,
            n_seeds=c.n_seeds,
            alpha_align=a_align,
            alpha_half=a_half,
            discrepancy=c.discrepancy,
            stderr=c.stderr,
        )
    alpha = data["alpha"]

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.3), constrained_layout=True, sharex=True)
    ax_e, ax_c, ax_b = axes
    for rule in cfg["rules"]:
        col = S.COLORS[rule]
        for ax, name in ((ax_e, "eg"), (ax_c, "cos_vb"), (ax_b, "norm_b")):
            m, s = data[f"{rule}_sim_{name}_mean"], data[f"{rule}_sim_{name}_std"]
            S.band(ax, alpha, m, s, col)
            step = max(1, len(alpha) // 50)
            ax.plot(alpha[::step], m[::step], "o", ms=2.2, color=col, alpha=0.8)
            ax.plot(alpha, data[f"{rule}_ode_{name}"], "-", color=col, lw=1.6)
        a_al, a_h = data[f"{rule}_alpha_align"], data[f"{rule}_alpha_half"]
        for ax in axes:
            if np.isfinite(a_al):
                ax.axvspan(0, a_al, color=col, alpha=0.07, lw=0)
                ax.axvline(a_al, color=col, ls=":", lw=1)
            if np.isfinite(a_h):
                ax.axvline(a_h, color=col, ls="--", lw=1)
        ytxt = 0.55 if rule == cfg["rules"][0] else 0.4
        if np.isfinite(a_al):
            ax_c.text(
                a_al,
                ytxt,
                r" $\alpha_{\rm align}$",
                color=col,
                fontsize=8,
                transform=ax_c.get_xaxis_transform(),
            )
        if np.isfinite(a_h):
            ax_e.text(
                a_h,
                0.93,
                r" $\alpha_{1/2}$",
                color=col,
                fontsize=8,
                transform=ax_e.get_xaxis_transform(),
            )
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=S.COLORS[r], lw=1.6, label=f"{S.LABELS[r]} ODE") for r in cfg["rules"]
    ]
    handles += [
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            ls="",
            ms=3,
            label=f"simulation (N = {sim_cfg['N']}) ± 1 std",
        ),
        Line2D([], [], color="0.3", ls=":", label=r"$\cos(v,b)$ = " f"{level:g}"),
        Line2D([], [], color="0.3", ls="--", label=r"$\varepsilon_g$ halved"),
    ]
    ax_e.legend(handles=handles, loc="lower left", fontsize=7)
    ax_e.set_ylabel(S.EG)
    ax_e.set_yscale("log")
    ax_c.set_ylabel(r"$\cos(v, b)$")
    ax_c.axhline(level, color="0.5", lw=0.6)
    ax_b.set_ylabel(r"$|b|$")
    for ax, l in zip(axes, "abc"):
        ax.set_xlabel(S.ALPHA)
        S.panel_label(ax, l)
    fig.suptitle(
        f"K = M = {sim_cfg['K']}, η = η$_v$ = {sim_cfg['eta']}, σ$_F$ = "
        f"{sim_cfg['sigma_F']}, {info[cfg['rules'][0]]['n_seeds']} seeds "
        "(same initial weights)",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
