"""PEPITA against AFA, network by network: when does linearised PEPITA hold?

For each feedback scale σ_F, three simulation ensembles with the *same* seeds: AFA,
PEPITA (presynaptic ``x̃ = x − F e``) and PEPITA-forward (presynaptic ``x``). The same seed
gives the same initial weights (``same_init``; the draw order of w*, w, v, F is fixed
whatever the rule) and the same stream of inputs and noise (the sample stream depends on
the seed only), so the runs differ only by their learning rule.

Rows: ε_g (mean ± 1 std over seeds); the relative difference to AFA
``|ε_g^PEPITA − ε_g^AFA| / ε_g^AFA`` seed by seed (mean over seeds, log scale); the
feedback norm ``|b| = |w F|/√N``. PEPITA with ``x̃`` adds ``(η/√N) g'(λ_k) b_k e² F`` along
``F`` at every step, so ``b`` grows like ``exp(η ‖F‖² ∫E[g' e²])`` with ``‖F‖² = N σ_F²``
(docs/theory.md §2): it tracks AFA for ‖F‖² ≪ 1 and diverges (marked ×) for ‖F‖² = O(1).

Over the simulations, the exact-PEPITA ODE (docs/quadrature.md, Gaussian quadrature) of both
PEPITA variants, from the measured initial state (dotted lines in the rule's colour), and
the α at which the ODE diverges (dashed vertical line, next to the simulations' dotted one).

Parameters: ``figures/configs/pepita-vs-afa.json``.
"""

from __future__ import annotations

import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "pepita-vs-afa"
DESCRIPTION = (
    "identically initialised PEPITA, PEPITA-forward and AFA on the same samples: "
    "ε_g, relative difference and |b| for several σ_F (divergence marked), with "
    "the exact-PEPITA ODE"
)


def _tag(sF: float) -> str:
    return f"sF{sF:g}".replace(".", "p")


def _nanstats(x):
    """Mean and std over seeds of the seeds still alive at each record."""
    x = np.asarray(x, dtype=float)
    n = np.isfinite(x).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(x, axis=0) / np.maximum(n, 1), np.nan)
        var = np.where(n > 1, np.nansum((x - mean) ** 2, axis=0) / np.maximum(n - 1, 1), 0.0)
    return mean, np.sqrt(var)


def _ode(sim, base) -> dict:
    """The exact-PEPITA ODE from the simulation's measured initial state (seed index 0;
    every seed starts there: same_init), on the simulation's grid, with the simulations'
    divergence threshold ε_g > eg_max; records after a divergence are NaN."""
    import odeflow

    T = len(sim.alpha)
    eg_max = float(base.get("divergence", {}).get("eg_max", 1e4))
    r = odeflow.solve(
        sim.rule,
        sim.initial_state(0),
        eta=base["eta"],
        eta_v=base["eta_v"],
        sigma=base.get("sigma", 0.0),
        activation=base.get("activation", "erf"),
        alpha_max=float(sim.alpha[-1]),
        record=sim.alpha.tolist(),
        diverge_threshold=eg_max,
    )
    out = {"eg": np.full(T, np.nan), "norm_b": np.full(T, np.nan)}
    out["eg"][: len(r.eg)] = r.eg
    out["norm_b"][: len(r.eg)] = r.norm_b
    out["alpha_diverged"] = r.alpha_final if r.reason == "diverged" else np.nan
    out["message"] = r.message
    return out


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    from simulations.teacher_student import simulate

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    base = cfg["simulation"]
    N = base["N"]
    sFs, rules = cfg["sigma_F"], cfg["rules"]
    data, info = {"sigma_F": np.array(sFs), "N": N}, {}
    for sF in sFs:
        tag = _tag(sF)
        res = {rule: simulate({**base, "rule": rule, "sigma_F": sF}) for rule in rules}
        a = res["afa"]
        for rule, r in res.items():
            k = f"{tag}_{rule.replace('-', '_')}"
            data["alpha"] = r.alpha
            data[f"{k}_eg"] = r.eg
            data[f"{k}_norm_b"] = r.norm_b
            data[f"{k}_diverged"] = r.diverged
            data[f"{k}_alpha_diverged"] = r.alpha_diverged
            if rule != "afa":
                with np.errstate(invalid="ignore", divide="ignore"):
                    data[f"{k}_reldiff"] = np.abs(r.eg - a.eg) / a.eg
            info[f"{sF:g} {rule}"] = r.summary()
        data[f"{tag}_normF2"] = float(np.mean(a.sigma_F2)) * N
        for rule in cfg.get("ode_rules", []):
            k = f"{tag}_{rule.replace('-', '_')}"
            o = _ode(res[rule], base)
            data.update({f"{k}_ode_{n}": v for n, v in o.items() if n != "message"})
            info[f"{sF:g} {rule} ODE"] = o["message"]
    alpha = data["alpha"]

    ncol = len(sFs)
    fig, axes = plt.subplots(
        3, ncol, figsize=(3.2 * ncol, 7.2), sharex=True, constrained_layout=True, squeeze=False
    )
    letters = iter("abcdefghijklmnop")
    for j, sF in enumerate(sFs):
        tag = _tag(sF)
        ax_e, ax_r, ax_b = axes[:, j]
        nF2 = data[f"{tag}_normF2"]
        ax_e.set_title(rf"$\sigma_F$ = {sF:g}, $\|F\|^2 = N\sigma_F^2$ = {nF2:.2g}")
        for rule in rules:
            k = f"{tag}_{rule.replace('-', '_')}"
            col = S.COLORS[rule]
            ls = {"afa": "-", "pepita": "-", "pepita-forward": "--"}.get(rule, "-")
            m, s = _nanstats(data[f"{k}_eg"])
            S.band(ax_e, alpha, m, s, col)
            ax_e.plot(alpha, m, ls, color=col, label=S.LABELS[rule], lw=1.4)
            mb, sb = _nanstats(data[f"{k}_norm_b"])
            S.band(ax_b, alpha, mb, sb, col)
            ax_b.plot(alpha, mb, ls, color=col, lw=1.4)
            if rule != "afa":
                rd, _ = _nanstats(data[f"{k}_reldiff"])
                ax_r.plot(
                    alpha[1:], rd[1:], ls, color=col, lw=1.4, label=f"{S.LABELS[rule]} vs AFA"
                )
            if f"{k}_ode_eg" in data:
                ax_e.plot(alpha, data[f"{k}_ode_eg"], color=col, ls=(0, (1, 1)), lw=2.2)
                ax_b.plot(alpha, data[f"{k}_ode_norm_b"], color=col, ls=(0, (1, 1)), lw=2.2)
                ad_o = float(data[f"{k}_ode_alpha_diverged"])
                if np.isfinite(ad_o):
                    for ax in (ax_e, ax_r, ax_b):
                        ax.axvline(ad_o, color=col, lw=1.0, ls="--")
                    # top left: the steep curves near the divergence leave it free
                    ax_e.text(
                        0.03,
                        0.95,
                        f"exact ODE diverges at α ≈ {ad_o:.3g}\n(dashed)",
                        transform=ax_e.transAxes,
                        color=col,
                        fontsize=7,
                        va="top",
                        ha="left",
                    )
            div = data[f"{k}_diverged"]
            if div.any():
                ad = float(np.nanmin(data[f"{k}_alpha_diverged"]))
                for ax in (ax_e, ax_r, ax_b):
                    ax.axvline(ad, color=col, lw=0.8, ls=":")
                # the last recorded point before divergence, marked with a cross
                alive = np.isfinite(m)
                if alive.any():
                    i = np.flatnonzero(alive)[-1]
                    ax_e.plot(alpha[i], m[i], "x", color=col, ms=8, mew=2)
                    ax_b.plot(alpha[i], mb[i], "x", color=col, ms=8, mew=2)
                ax_e.text(
                    ad,
                    0.6,
                    f" {int(div.sum())}/{len(div)} diverged\n at α ≈ {ad:.3g}",
                    transform=ax_e.get_xaxis_transform(),
                    color=col,
                    fontsize=7,
                    va="top",
                    ha="left",
                )
        lo, hi = (
            np.nanmin(data[f"{tag}_afa_eg"]),
            np.nanmax([np.nanmax(data[f"{tag}_{r.replace('-', '_')}_eg"]) for r in rules]),
        )
        if hi > 20 * lo:
            ax_e.set_yscale("log")
        ax_r.set_yscale("log")
        ax_b.set_yscale("log")
        ax_r.axhline(cfg["check"]["agree_rel"], color="0.5", lw=0.8, ls=":")
        ax_b.set_xlabel(S.ALPHA)
        if j == 0:
            if cfg.get("ode_rules"):
                ax_e.plot([], [], color="0.3", ls=(0, (1, 1)), lw=2.2, label="exact ODE (§5.5)")
            ax_e.set_ylabel(S.EG + " (mean ± 1 std)")
            ax_r.set_ylabel(
                r"$|\varepsilon_g - \varepsilon_g^{\rm AFA}|\,/\,"
                r"\varepsilon_g^{\rm AFA}$"
            )
            ax_b.set_ylabel(r"$|b| = |wF|/\sqrt{N}$")
            ax_e.legend(loc="lower left", fontsize=7)
            ax_r.text(
                alpha[-1],
                cfg["check"]["agree_rel"],
                f"{cfg['check']['agree_rel']:.0%} ",
                ha="right",
                va="bottom",
                fontsize=7,
                color="0.4",
            )
        for ax in (ax_e, ax_r, ax_b):
            S.panel_label(ax, next(letters))
    fig.suptitle(
        f"Same initial weights and samples: N = {N}, K = M = {base['K']}, "
        f"η = η$_v$ = {base['eta']}, {len(data[f'{_tag(sFs[0])}_afa_diverged'])} "
        f"seeds",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
