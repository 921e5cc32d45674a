"""Finite-size scaling: the theory–simulation discrepancy shrinks like 1/√N.

For BP and FA (rules whose order parameters self-average), the discrepancy
``D(N) = sup_α |⟨ε_g⟩_sim − ε_g^ODE|`` between the mean of an ensemble of simulations and
the ODE, both from the same initial state (:func:`odeflow.compare.compare`), against N.

At every N the initial weights are *constructed* with exactly the same overlaps
``Q, R, T`` (Cholesky factor of the target Gram matrix times orthonormal random rows
scaled by √N) and the same ``v, v*`` (and FA feedback ``b``), so the ODE trajectory is
identical for every N and only finite-size effects change. With S seeds the mean carries
fluctuations of order ``std/√S``, and the seed-to-seed spread itself is ``O(1/√N)``
(panel b), so D(N) ∝ 1/√N. D is a supremum of a random process, hence noisy: it is
averaged over independent replicas (disjoint seed sets), with the standard error of that
average as error bar. Lines: least-squares fits of log D against log N (slope in the
legend) and a 1/√N guide.

Parameters: ``figures/configs/scaling.json``.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "scaling"
DESCRIPTION = (
    "sup_α |mean sim ε_g − ODE ε_g| against N for BP and FA (log–log, fitted slope, 1/√N guide)"
)


def constructed_weights(N: int, Q, R, T, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(w, w_star)`` of shapes (K, N), (M, N) whose overlaps are *exactly* ``Q = w wᵀ/N``,
    ``R = w w*ᵀ/N``, ``T = w* w*ᵀ/N``."""
    Q, R, T = (np.asarray(a, dtype=float) for a in (Q, R, T))
    K, M = R.shape
    G = np.block([[T, R.T], [R, Q]])
    L = np.linalg.cholesky(G)
    Z = np.random.default_rng(seed).standard_normal((N, K + M))
    U, _ = np.linalg.qr(Z)  # (N, K+M), orthonormal columns
    rows = L @ (math.sqrt(N) * U.T)
    return rows[M:], rows[:M]


def loglog_fit(N, y):
    """Least-squares slope and intercept of log y against log N."""
    slope, icpt = np.polyfit(np.log(np.asarray(N, float)), np.log(np.asarray(y, float)), 1)
    return float(slope), float(icpt)


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from odeflow.compare import compare

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    ov = cfg["overlaps"]
    Ns, rules = [int(n) for n in cfg["N"]], cfg["rules"]
    nrep, spr = int(cfg["replicas"]), int(cfg["seeds_per_replica"])
    data = {"N": np.array(Ns), "replicas": nrep, "seeds_per_replica": spr}
    info = {}
    with tempfile.TemporaryDirectory() as tmp:
        for N in Ns:
            w, w_star = constructed_weights(N, ov["Q"], ov["R"], ov["T"], ov["rotation_seed"])
            path = Path(tmp) / f"weights_N{N}.npz"
            np.savez(
                path,
                w=w,
                w_star=w_star,
                v=np.asarray(ov["v"], float),
                v_star=np.asarray(ov["v_star"], float),
                b=np.asarray(ov["b"], float),
            )
            for rule in rules:
                D, spread = [], []
                for r in range(nrep):
                    c = compare(
                        {
                            **cfg["simulation"],
                            **cfg["ode"],
                            "rule": rule,
                            "N": N,
                            "seeds": list(range(r * spr, (r + 1) * spr)),
                            "init": {"weights": str(path)},
                        }
                    )
                    D.append(c.discrepancy["eg"])
                    spread.append(float(np.max(c.sim_std["eg"])))
                    if N == Ns[0] and r == 0:
                        data["alpha"] = c.alpha
                        data[f"{rule}_ode_eg"] = c.ode["eg"]
                data[f"{rule}_N{N}_D"] = np.array(D)
                data[f"{rule}_N{N}_spread"] = np.array(spread)
                info[f"{rule} N={N}"] = dict(D=D, spread=spread)
    for rule in rules:
        D = np.array([data[f"{rule}_N{N}_D"] for N in Ns])  # (nN, nrep)
        sp = np.array([data[f"{rule}_N{N}_spread"] for N in Ns])
        data[f"{rule}_D_mean"] = D.mean(axis=1)
        data[f"{rule}_D_se"] = (
            D.std(axis=1, ddof=1) / math.sqrt(nrep) if nrep > 1 else np.zeros(len(Ns))
        )
        data[f"{rule}_spread_mean"] = sp.mean(axis=1)
        data[f"{rule}_slope"], data[f"{rule}_icpt"] = loglog_fit(Ns, D.mean(axis=1))
        data[f"{rule}_spread_slope"], data[f"{rule}_spread_icpt"] = loglog_fit(Ns, sp.mean(1))
        info[rule] = dict(slope=data[f"{rule}_slope"], spread_slope=data[f"{rule}_spread_slope"])
    allD = np.concatenate([data[f"{r}_D_mean"] for r in rules])
    allN = np.tile(Ns, len(rules))
    data["pooled_slope"], _ = loglog_fit(allN, allD)
    info["pooled_slope"] = data["pooled_slope"]

    fig, (ax, axs) = plt.subplots(1, 2, figsize=(8.6, 3.5), constrained_layout=True)
    Nf = np.geomspace(Ns[0] / 1.3, Ns[-1] * 1.3, 50)
    for rule in rules:
        col = S.COLORS[rule]
        ax.errorbar(
            Ns,
            data[f"{rule}_D_mean"],
            yerr=data[f"{rule}_D_se"],
            fmt="o",
            color=col,
            ms=5,
            capsize=3,
            label=S.LABELS[rule],
        )
        ax.plot(
            Nf,
            np.exp(data[f"{rule}_icpt"]) * Nf ** data[f"{rule}_slope"],
            "-",
            color=col,
            lw=1,
            label=f"fit: slope {data[f'{rule}_slope']:.2f}",
        )
        axs.plot(Ns, data[f"{rule}_spread_mean"], "o", color=col, ms=5, label=S.LABELS[rule])
        axs.plot(
            Nf,
            np.exp(data[f"{rule}_spread_icpt"]) * Nf ** data[f"{rule}_spread_slope"],
            "-",
            color=col,
            lw=1,
            label=f"fit: slope {data[f'{rule}_spread_slope']:.2f}",
        )
    for a, key in ((ax, "D_mean"), (axs, "spread_mean")):
        y = np.concatenate([data[f"{r}_{key}"] for r in rules])
        c0 = np.exp(np.mean(np.log(y) + 0.5 * np.log(np.tile(Ns, len(rules)))))
        a.plot(Nf, c0 / np.sqrt(Nf), "--", color="0.4", lw=1.2, label=r"$\propto 1/\sqrt{N}$")
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xticks(Ns)
        a.set_xticklabels([str(n) for n in Ns])
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xlabel(r"$N$")
        a.legend(fontsize=7)
    ax.set_ylabel(
        r"$\sup_\alpha\,|\langle\varepsilon_g\rangle_{\rm sim} - "
        r"\varepsilon_g^{\rm ODE}|$"
    )
    axs.set_ylabel(r"$\sup_\alpha\,{\rm std}(\varepsilon_g)$ over seeds")
    ax.set_title(f"{spr} seeds per mean, {nrep} replicas (± s.e.)")
    axs.set_title("seed-to-seed spread")
    S.panel_label(ax, "a")
    S.panel_label(axs, "b")
    sim = cfg["simulation"]
    fig.suptitle(
        f"K = M = {sim['K']}, erf, η = η$_v$ = {sim['eta']}, α ∈ [0, "
        f"{sim['alpha_max']}], same initial overlaps at every N",
        fontsize=10,
    )
    params = dict(cfg, results=info, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, data)
    return data
