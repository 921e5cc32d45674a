"""BP and FA learning curves for several activations: theory (order-parameter ODEs) against
finite-N simulations.

One column per activation (``erf``: closed-form averages; ``relu``, ``tanh``: Gaussian
quadrature, docs/quadrature.md), BP and FA in each: the simulation mean ± 1 std over seeds
(thin lines, bands) and the ODE from the measured initial state of seed index 0 (every
seed starts there: ``same_init``) as thick dashed lines. The bottom row shows the
deviation of the ODE from the simulation mean in units of the standard error of that mean.

Parameters: ``figures/configs/activations.json``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "activations"
DESCRIPTION = (
    "BP and FA learning curves for erf, relu and tanh (K = M = 2): order-parameter "
    "ODEs (closed forms or Gaussian quadrature) against simulations"
)


def run(cfg) -> tuple:
    import odeflow
    from simulations.teacher_student import simulate

    base = cfg["simulation"]
    data, info = {}, {}
    for act in cfg["activations"]:
        for rule in cfg["rules"]:
            k = f"{act}_{rule}"
            sim = simulate({**base, "rule": rule, "activation": act})
            # erf keeps its closed forms; the others use the configured quadrature rule
            # (default: the automatic one; quick mode: fewer Sobol points)
            quad = cfg.get("quadrature") if act not in ("erf", "linear") else None
            ode = odeflow.solve(
                rule,
                sim.initial_state(0),
                eta=base["eta"],
                eta_v=base["eta_v"],
                sigma=base.get("sigma", 0.0),
                activation=act,
                alpha_max=float(sim.alpha[-1]),
                record=sim.alpha.tolist(),
                quadrature=quad,
            )
            T = len(sim.alpha)
            eg_ode = np.full(T, np.nan)
            eg_ode[: len(ode.eg)] = ode.eg
            data["alpha"] = sim.alpha
            data[f"{k}_sim_eg"] = sim.eg
            data[f"{k}_sim_mean"] = sim.eg_mean
            data[f"{k}_sim_se"] = sim.eg_std / math.sqrt(max(sim.n_mean, 1))
            data[f"{k}_ode_eg"] = eg_ode
            q = ode.quadrature
            info[k] = {
                "simulation": sim.summary(),
                "ode": ode.message,
                "backend": "closed form" if q is None else q["rule"],
                "quadrature_error_final": None if q is None else q["error_final"]["rhs_rel"],
            }
    return data, info


def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    data, info = run(cfg)
    alpha = data["alpha"]
    acts, rules = cfg["activations"], cfg["rules"]
    fig, axes = plt.subplots(
        2,
        len(acts),
        figsize=(3.3 * len(acts), 5.4),
        sharex=True,
        constrained_layout=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.3]},
    )
    letters = iter("abcdefghijkl")
    for j, act in enumerate(acts):
        ax, axd = axes[:, j]
        for rule in rules:
            k = f"{act}_{rule}"
            col = S.COLORS[rule]
            sims = data[f"{k}_sim_eg"]
            m = data[f"{k}_sim_mean"]
            sd = np.nanstd(sims, axis=0, ddof=1) if sims.shape[0] > 1 else 0 * m
            S.band(ax, alpha, m, sd, col)
            ax.plot(alpha, m, color=col, lw=1.0, label=f"{S.LABELS[rule]} simulation")
            ax.plot(
                alpha,
                data[f"{k}_ode_eg"],
                color=col,
                lw=2.2,
                ls="--",
                label=f"{S.LABELS[rule]} ODE",
            )
            with np.errstate(invalid="ignore", divide="ignore"):
                z = (data[f"{k}_ode_eg"] - m) / data[f"{k}_sim_se"]
            axd.plot(alpha[1:], z[1:], color=col, lw=1.2)
        backend = "closed forms" if act in ("erf", "linear") else "quadrature"
        ax.set_title(f"g = {act} ({backend})")
        ax.set_yscale("log")
        axd.axhspan(-3, 3, color="0.9", lw=0)
        axd.axhline(0, color="0.5", lw=0.8)
        axd.set_xlabel(S.ALPHA)
        if j == 0:
            ax.set_ylabel(S.EG + " (simulation mean ± 1 std)")
            axd.set_ylabel("(ODE − mean) / s.e.")
            ax.legend(loc="lower left", fontsize=7)
        for a in (ax, axd):
            S.panel_label(a, next(letters))
    b = cfg["simulation"]
    fig.suptitle(
        f"Theory vs simulation: N = {b['N']}, K = M = {b['K']}, η = η$_v$ = "
        f"{b['eta']}, {len(data[f'{acts[0]}_{rules[0]}_sim_eg'])} seeds (grey band: "
        "±3 standard errors)",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
