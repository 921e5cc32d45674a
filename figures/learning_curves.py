"""Learning curves ε_g(α) of BP, FA, AFA and PEPITA-forward: ODE against simulation.

K = M = 2 erf teacher–student model. For every rule the simulation ensemble (``seeds``
seeds, all from the *same* initial weights, ``same_init``; independent sample streams) and
the ODE started from the measured initial order parameters of seed 0 are produced by
:func:`odeflow.compare.compare`, each rule against the ODE compare takes for it
(:data:`odeflow.compare.ODE_RULE`): PEPITA-forward against its exact two-pass ODE (by
quadrature), which is AFA's to first order in ``e b``.

Panel (a): ε_g on log–log axes, ODE (lines) and simulation mean (markers) with ±1 std over
the seeds (error bars). Rules whose ODEs nearly coincide (AFA and PEPITA-forward: equal to
first order in ``e b``) get different line styles (:data:`LINES`: AFA a wide solid line,
PEPITA-forward dashes drawn on top of it), and each rule's markers sit on every n-th
record with its own offset and shape: every rule stays visible, and no translucent bands
overlap into colours the legend does not explain. "(x)" in PEPITA-forward's label is its
presynaptic term: the update uses the input ``x`` itself, where PEPITA uses the modulated
input ``x̃ = x − F e`` (the legend says so).
Panel (b): the residual ``mean_sim − ODE`` (line) with its ±1 standard error (thin lines of
the same colour), against the finite-size scale ``1/√N``.

Parameters: ``figures/configs/learning-curves.json``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "learning-curves"
DESCRIPTION = (
    "ε_g(α) of BP, FA, AFA, PEPITA-forward (K=M=2, erf): ODE from the measured "
    "initial state vs simulation mean ± 1 std"
)


#: ODE line of each rule: (line style, width, z-order); AFA's wide solid line stays
#: visible under PEPITA-forward's dashes where the two ODEs coincide
LINES = {
    "bp": ("-", 1.5, 2),
    "fa": ("-", 1.5, 2),
    "afa": ("-", 2.6, 2),
    "pepita-forward": ((0, (3.5, 2.0)), 1.5, 2.5),
    "pepita": ((0, (1, 1.2)), 1.5, 2.5),
}
#: what "(x)" / "(x̃)" in the PEPITA labels means, for the legend
PRESYN_NOTE = {
    "pepita-forward": r": updates use the input $x$ (PEPITA: $\tilde{x} = x - Fe$)",
    "pepita": r": updates use $\tilde{x} = x - Fe$ (not the input $x$)",
}


def key(rule: str) -> str:
    return rule.replace("-", "_")


def make(outdir, quick: bool = False) -> dict:
    from odeflow.compare import ODE_RULE, compare
    from theory.runtime.cli import status

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim_cfg, ode_opts = cfg["simulation"], cfg["ode"]
    N = sim_cfg["N"]
    data, info = {}, {}
    for i, rule in enumerate(cfg["rules"]):
        status(
            f"  {NAME}: {rule} ({i + 1}/{len(cfg['rules'])}): {sim_cfg['seeds']} "
            f"simulations at N = {N} and the {ODE_RULE[rule]} ODE"
        )
        # a rule without closed forms gets the quadrature tolerance the config states for it
        quad = cfg.get("ode_quadrature", {}).get(rule)
        extra = {"quadrature": quad} if quad is not None else {}
        c = compare({**sim_cfg, "rule": rule, **ode_opts, **extra})
        k = key(rule)
        data["alpha"] = c.alpha
        data[f"{k}_sim_mean"] = c.sim_mean["eg"]
        data[f"{k}_sim_std"] = c.sim_std["eg"]
        data[f"{k}_sim_eg"] = c.sim.eg[:, : len(c.alpha)]
        data[f"{k}_ode"] = c.ode["eg"]
        data[f"{k}_n_seeds"] = c.n_seeds
        data[f"{k}_discrepancy"] = c.discrepancy["eg"]
        data[f"{k}_stderr"] = c.stderr["eg"]
        info[rule] = dict(
            ode=c.config["ode"]["rule"],
            ode_message=c.ode_result.message,
            n_seeds=c.n_seeds,
            discrepancy=c.discrepancy,
            stderr=c.stderr,
            notes=c.notes,
        )
        if rule == cfg["rules"][0]:
            data.update(c.ode_result.init.to_dict("init_"))
    data["N"] = N

    fig = plot(data, cfg)
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def plot(data: dict, cfg: dict):
    """The figure from the computed ``data`` (see :func:`make`) and the config."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from odeflow.compare import ODE_RULE

    sim_cfg = cfg["simulation"]
    N = int(data["N"])
    rules = cfg["rules"]
    alpha = np.asarray(data["alpha"])
    pos = np.flatnonzero(alpha > 0)
    markers = {"bp": "o", "fa": "s", "afa": "D", "pepita-forward": "^", "pepita": "v"}
    stride = len(rules)
    fig, (ax, axr) = plt.subplots(
        1, 2, figsize=(9.6, 3.9), constrained_layout=True, gridspec_kw={"width_ratios": [1.35, 1]}
    )
    drawn_ode = set()
    for j, rule in enumerate(rules):
        k, col = key(rule), S.COLORS[rule]
        m, s = np.asarray(data[f"{k}_sim_mean"]), np.asarray(data[f"{k}_sim_std"])
        ode_rule = ODE_RULE[rule]
        ls, lw, z = LINES.get(ode_rule, ("-", 1.5, 2))
        if ode_rule == rule:
            ax.plot(alpha[pos], data[f"{k}_ode"][pos], ls=ls, color=col, lw=lw, zorder=z)
        elif ode_rule not in drawn_ode and ode_rule not in rules:
            ax.plot(
                alpha[pos],
                data[f"{k}_ode"][pos],
                ls="--",
                color=S.COLORS[ode_rule],
                lw=1.3,
                zorder=2,
            )
        drawn_ode.add(ode_rule)
        # every `stride`-th record, offset per rule: coinciding rules interleave
        sel = pos[j::stride]
        hollow = j % 2 == 1
        # lower bar clipped above 0 (log axis)
        yerr = np.vstack([np.minimum(s[sel], 0.95 * m[sel]), s[sel]])
        ax.errorbar(
            alpha[sel],
            m[sel],
            yerr=yerr,
            fmt=markers.get(rule, "o"),
            ms=3.6,
            color=col,
            mfc="white" if hollow else col,
            mew=0.9,
            elinewidth=0.7,
            capsize=0,
            zorder=3,
        )
        se = s / math.sqrt(max(int(data[f"{k}_n_seeds"]), 1))
        r = m - data[f"{k}_ode"]
        rls = ls if ode_rule == rule else "--"
        axr.plot(alpha[pos], r[pos], ls=rls, color=col, lw=min(lw, 2.0), zorder=z)
        for sgn in (1, -1):
            axr.plot(alpha[pos], (r + sgn * se)[pos], "-", color=col, lw=0.6, alpha=0.55)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(S.ALPHA)
    ax.set_ylabel(S.EG)
    n_seeds = int(data[key(rules[0]) + "_n_seeds"])
    ax.set_title(
        f"K = M = {sim_cfg['K']}, erf, N = {N}, {n_seeds} seeds, "
        f"η = η$_v$ = {sim_cfg['eta']}, σ$_F$ = {sim_cfg['sigma_F']}",
        fontsize=9,
    )
    # legend: one entry per rule (marker = simulation, line = its ODE) + how to read it
    handles, labels = [], []
    for j, rule in enumerate(rules):
        col = S.COLORS[rule]
        ode_rule = ODE_RULE[rule]
        ls, lw, _ = LINES.get(ode_rule, ("-", 1.5, 2))
        handles.append(
            Line2D(
                [],
                [],
                color=col,
                marker=markers.get(rule, "o"),
                ms=4,
                mfc="white" if j % 2 else col,
                lw=lw,
                ls=ls if ode_rule == rule else "none",
            )
        )
        labels.append(
            S.LABELS[rule]
            + PRESYN_NOTE.get(rule, "")
            + ("" if ode_rule == rule else f" (theory: {S.LABELS[ode_rule]} ODE)")
        )
    handles += [
        Line2D([], [], color="0.3", ls="-", lw=1.5),
        Line2D([], [], color="0.3", marker="o", ls="none", ms=4),
    ]
    labels += ["ODE from the measured initial state", "simulation mean, bars ±1 std over seeds"]
    ax.legend(handles, labels, fontsize=7, loc="lower left")
    S.panel_label(ax, "a")

    axr.axhline(0, color="k", lw=0.6)
    for sgn in (1, -1):
        axr.axhline(sgn / math.sqrt(N), color="0.5", lw=0.8, ls=":")
    axr.text(
        alpha[pos][0], 1 / math.sqrt(N), r" $1/\sqrt{N}$", va="bottom", fontsize=7, color="0.4"
    )
    axr.set_xscale("log")
    axr.set_xlabel(S.ALPHA)
    axr.set_ylabel(r"$\langle\varepsilon_g\rangle_{\rm sim} - \varepsilon_g^{\rm ODE}$")
    rh = [
        Line2D(
            [],
            [],
            color=S.COLORS[r],
            lw=min(LINES.get(r, ("-", 1.5))[1], 2.0),
            ls=LINES.get(r, ("-",))[0] if ODE_RULE[r] == r else "--",
        )
        for r in rules
    ]
    rl = [
        S.LABELS[r] + ("" if ODE_RULE[r] == r else f" − {S.LABELS[ODE_RULE[r]]} ODE") for r in rules
    ]
    rh.append(Line2D([], [], color="0.3", lw=0.6, alpha=0.55))
    rl.append("thin lines: ±1 standard error")
    axr.legend(rh, rl, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.95))
    S.panel_label(axr, "b")
    return fig
