"""Learning curves ε_g(α) of BP, FA, AFA and PEPITA-forward: ODE against simulation.

K = M = 2 erf teacher–student model. For every rule the simulation ensemble (``seeds``
seeds, all from the *same* initial weights, ``same_init``; independent sample streams) and
the ODE started from the measured initial order parameters of seed 0 are produced by
:func:`odeflow.compare.compare`. PEPITA-forward is drawn against the AFA ODE: it is AFA to
first order in ``e b`` (SCIENCE.md §2).

Panel (a): ε_g on log–log axes, simulation mean ± 1 std (bands, markers) and ODE (lines).
Panel (b): the residual ``mean_sim − ODE`` with its ±1 standard-error band, against the
finite-size scale ``1/√N``.

Parameters: ``figures/configs/learning-curves.json``.
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "learning-curves"
DESCRIPTION = ("ε_g(α) of BP, FA, AFA, PEPITA-forward (K=M=2, erf): ODE from the measured "
               "initial state vs simulation mean ± 1 std")


def key(rule: str) -> str:
    return rule.replace("-", "_")


def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    from odeflow.compare import compare

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim_cfg, ode_opts = cfg["simulation"], cfg["ode"]
    N = sim_cfg["N"]
    data, info = {}, {}
    for rule in cfg["rules"]:
        c = compare({**sim_cfg, "rule": rule, **ode_opts})
        k = key(rule)
        data["alpha"] = c.alpha
        data[f"{k}_sim_mean"] = c.sim_mean["eg"]
        data[f"{k}_sim_std"] = c.sim_std["eg"]
        data[f"{k}_sim_eg"] = c.sim.eg[:, :len(c.alpha)]
        data[f"{k}_ode"] = c.ode["eg"]
        data[f"{k}_n_seeds"] = c.n_seeds
        data[f"{k}_discrepancy"] = c.discrepancy["eg"]
        data[f"{k}_stderr"] = c.stderr["eg"]
        info[rule] = dict(ode=cfg["ode_of"][rule], ode_message=c.ode_result.message,
                          n_seeds=c.n_seeds, discrepancy=c.discrepancy,
                          stderr=c.stderr, notes=c.notes)
        if rule == cfg["rules"][0]:
            data.update(c.ode_result.init.to_dict("init_"))
    data["N"] = N
    alpha = data["alpha"]

    fig, (ax, axr) = plt.subplots(1, 2, figsize=(9.0, 3.6), constrained_layout=True,
                                  gridspec_kw={"width_ratios": [1.35, 1]})
    pos = alpha > 0
    drawn_ode = set()
    for rule in cfg["rules"]:
        k, col = key(rule), S.COLORS[rule]
        m, s = data[f"{k}_sim_mean"], data[f"{k}_sim_std"]
        S.band(ax, alpha[pos], m[pos], s[pos], col)
        ax.plot(alpha[pos], m[pos], "o", ms=2.2, color=col, alpha=0.8,
                label=f"{S.LABELS[rule]} simulation")
        ode_rule = cfg["ode_of"][rule]
        if ode_rule == rule:
            ax.plot(alpha[pos], data[f"{k}_ode"][pos], "-", color=col, lw=1.6,
                    label=f"{S.LABELS[rule]} ODE")
        elif ode_rule not in drawn_ode and ode_rule not in cfg["rules"]:
            ax.plot(alpha[pos], data[f"{k}_ode"][pos], "--", color=S.COLORS[ode_rule],
                    lw=1.4, label=f"{S.LABELS[ode_rule]} ODE")
        drawn_ode.add(ode_rule)
        se = s / math.sqrt(max(int(data[f"{k}_n_seeds"]), 1))
        r = m - data[f"{k}_ode"]
        S.band(axr, alpha[pos], r[pos], se[pos], col)
        ls = "-" if ode_rule == rule else "--"
        axr.plot(alpha[pos], r[pos], ls, color=col, lw=1.1,
                 label=S.LABELS[rule] + ("" if ode_rule == rule else
                                         f" − {S.LABELS[ode_rule]} ODE"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(S.ALPHA)
    ax.set_ylabel(S.EG)
    ax.set_title(f"K = M = {sim_cfg['K']}, erf, N = {N}, {data[key(cfg['rules'][0]) + '_n_seeds']}"
                 f" seeds, η = η$_v$ = {sim_cfg['eta']}, σ$_F$ = {sim_cfg['sigma_F']}")
    ax.legend(ncol=2, fontsize=7, loc="lower left")
    S.panel_label(ax, "a")

    axr.axhline(0, color="k", lw=0.6)
    for sgn in (1, -1):
        axr.axhline(sgn / math.sqrt(N), color="0.5", lw=0.8, ls=":")
    axr.text(alpha[pos][0], 1 / math.sqrt(N), r" $1/\sqrt{N}$", va="bottom", fontsize=7,
             color="0.4")
    axr.set_xscale("log")
    axr.set_xlabel(S.ALPHA)
    axr.set_ylabel(r"$\langle\varepsilon_g\rangle_{\rm sim} - \varepsilon_g^{\rm ODE}$"
                   r"  (±1 s.e.)")
    axr.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    S.panel_label(axr, "b")

    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
