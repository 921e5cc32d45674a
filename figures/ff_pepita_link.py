"""Does FF with PEPITA's negatives learn like PEPITA? Update cosines over training.

Forward-Forward with top-down negatives (:mod:`simulations.ff_topdown`): the negative sample
of each image is PEPITA's modulated input ``x − F e`` (``e`` the read-out's error, ``F`` fixed
random at PEPITA's scale). On a fixed batch of training images, every ``cos_every`` batches,
the FF update of each hidden layer is compared (cosine) with exact PEPITA's update on the
same weights and batch: the whole FF update (softplus loss), its error-driven part (the
update minus the same update with ``F = 0``), the contrastive-loss update, and the
first-order expansion in ``F`` (markers: the prediction of the whole update's cosine).
Last panel: test accuracy of the read-out against FF with wrong-label negatives (label in the
input, goodness prediction) and FF with hybrid-image negatives (linear head), same widths,
optimiser and data; also the top-down network with the sign of the feedback flipped
(negative ``x + F e``) and, as a baseline, the same read-out trained on the fixed random
hidden layers (``train_hidden=False``).

Parameters: ``figures/configs/ff-pepita-link.json``.
"""

from __future__ import annotations

import time

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "ff-pepita-link"
DESCRIPTION = (
    "FF with PEPITA's modulated input as negative: layer-wise cosine of its update "
    "with exact PEPITA's over training, and its accuracy against other FF negatives"
)

_VARIANTS = {  # key -> (label, colour)
    "topdown": (r"FF, negative $x - Fe$", "#CC79A7"),
    "topdown_flip": (r"FF, negative $x + Fe$", "#009E73"),
    "wrong_label": ("FF, wrong-label negatives", "#0072B2"),
    "hybrid": ("FF, hybrid-image negatives", "#E69F00"),
    "readout_only": ("read-out only (hidden layers random, fixed)", "#999999"),
}


def _mean_std(rows):
    a = np.asarray(rows, dtype=float)
    return a.mean(0), a.std(0)


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    from simulations.data import load_dataset
    from simulations.ff_topdown import TopDownConfig, train_ff_topdown
    from simulations.forward_forward import FFConfig, train_ff

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    data = load_dataset(**cfg["data"])
    common = dict(
        hidden=cfg["hidden"],
        epochs=cfg["epochs"],
        lr=cfg["lr"],
        batch=cfg["batch"],
        theta=cfg["theta"],
        eval_train=cfg["eval_train"],
    )
    td = cfg["topdown"]
    out, runs, secs = {}, {k: [] for k in _VARIANTS}, {}
    for key in _VARIANTS:
        t1 = time.perf_counter()
        for seed in cfg["seeds"]:
            if key.startswith("topdown") or key == "readout_only":
                r = train_ff_topdown(
                    data,
                    TopDownConfig(
                        **common,
                        F_scale=td["F_scale"],
                        sign=-1 if key == "topdown_flip" else 1,
                        cos_every=td["cos_every"] if key != "readout_only" else 0,
                        cos_batch=td["cos_batch"],
                        train_hidden=key != "readout_only",
                        seed=seed,
                    ),
                )
            else:
                r = train_ff(
                    data,
                    FFConfig(
                        **common,
                        mode="supervised" if key == "wrong_label" else "unsupervised",
                        seed=seed,
                    ),
                )
            if r.diverged:
                raise RuntimeError(f"{key} seed {seed} diverged after {r.epochs_done} epochs")
            runs[key].append(r)
        secs[key] = time.perf_counter() - t1
        out[f"{key}_test_acc_mean"], out[f"{key}_test_acc_std"] = _mean_std(
            [r.test_acc for r in runs[key]]
        )
    for key in ("topdown", "topdown_flip"):
        out[f"{key}_cos_step"] = runs[key][0].cos_step
        for q in ("cos_ff", "cos_ff_err", "cos_contrastive", "cos_pred"):
            arr = np.stack([getattr(r, q) for r in runs[key]])  # (seeds, M, L)
            out[f"{key}_{q}"] = arr
    L = len(cfg["hidden"])
    n_batches = int(np.ceil(data.y_train.size / cfg["batch"]))

    fig, axes = plt.subplots(1, L + 1, figsize=(3.6 * (L + 1), 3.3), constrained_layout=True)
    step = out["topdown_cos_step"] / n_batches
    styles = (
        ("cos_ff", "-", "whole FF update (softplus loss)"),
        ("cos_ff_err", "--", "its error-driven part (minus $F = 0$)"),
        ("cos_contrastive", ":", r"contrastive loss $G^- - G^+$"),
    )
    for l in range(L):
        ax = axes[l]
        for key, lw in (("topdown", 1.6), ("topdown_flip", 1.0)):
            col = _VARIANTS[key][1]
            for q, ls, _ in styles:
                m, s = _mean_std(out[f"{key}_{q}"][:, :, l])
                ax.plot(step, m, ls, color=col, lw=lw)
                S.band(ax, step, m, s, col, alpha=0.12)
            mp = out[f"{key}_cos_pred"][:, :, l].mean(0)
            ax.plot(step, mp, "o", ms=3, mfc="none", color=col)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_ylim(-1, 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cos(FF update, PEPITA update)")
        ax.set_title(f"hidden layer {l + 1}")
        S.panel_label(ax, "abcdefg"[l])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.3", ls=ls, label=lab) for _, ls, lab in styles]
    handles += [
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            mfc="none",
            ls="",
            label="first-order prediction in $F$",
        ),
    ]
    handles += [
        Line2D([], [], color=col, marker="o", ms=3, label=lab) for lab, col in _VARIANTS.values()
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7)
    ax = axes[L]
    ep = np.arange(cfg["epochs"] + 1)
    for key, (_lab, col) in _VARIANTS.items():
        m, s = out[f"{key}_test_acc_mean"], out[f"{key}_test_acc_std"]
        ax.plot(ep, 100 * m, "-o", ms=3, color=col)
        S.band(ax, ep, 100 * m, 100 * s, col)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("read-out / FF prediction")
    S.panel_label(ax, "abcdefg"[L])
    fig.suptitle(
        f"MNIST {data.y_train.size}/{data.y_test.size}, hidden {cfg['hidden']}, "
        f"F_scale = {td['F_scale']} (|Fe|/|x| ≈ "
        f"{_rel_delta(runs['topdown'][0], data, td):.1e}), "
        f"{len(cfg['seeds'])} seed(s), mean ± std",
        fontsize=9,
    )
    out["epochs_per_step"] = 1.0 / n_batches
    summary = {
        key: dict(
            final_test_acc=float(out[f"{key}_test_acc_mean"][-1]),
            final_test_acc_std=float(out[f"{key}_test_acc_std"][-1]),
            seconds=secs[key],
        )
        for key in _VARIANTS
    }
    for key in ("topdown", "topdown_flip"):
        summary[key].update(
            cos_ff_err_initial=out[f"{key}_cos_ff_err"][:, 0].mean(0).tolist(),
            cos_ff_err_late=out[f"{key}_cos_ff_err"][:, -3:].mean((0, 1)).tolist(),
            cos_ff_late=out[f"{key}_cos_ff"][:, -3:].mean((0, 1)).tolist(),
            max_pred_error=float(np.max(np.abs(out[f"{key}_cos_ff"] - out[f"{key}_cos_pred"]))),
        )
    params = dict(cfg, results=summary, seconds=time.perf_counter() - t0)
    save_figure(fig, outdir, NAME, params, out)
    return out


def _rel_delta(run, data, td):
    """|F e| / |x| on the cosine batch at the end of training (normalised inputs)."""
    from simulations.ff_topdown import update_cosines
    from simulations.forward_forward import _normalize

    x = _normalize(np.asarray(data.x_train[:200], np.float32))
    y = np.eye(data.n_classes)[data.y_train[:200]]
    return update_cosines(run.network, x, y, run.config.theta)["rel_delta"]
