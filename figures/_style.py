"""Shared look of the figures and their configuration files.

* One colour and one label per learning rule, the same in every figure (:data:`COLORS`,
  :data:`LABELS`); theory is drawn as lines, simulations as markers or thin lines with
  ±1 std bands, the SDE ensemble dashed.
* :func:`load_config` reads ``figures/configs/<name>.json`` ("configuration is data"): the
  full-mode parameters at top level, and a ``"quick"`` sub-dict whose entries override them
  (recursively for nested dicts) with ``--quick``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: colour per rule (colour-blind-safe Okabe–Ito palette)
COLORS = {
    "bp": "#0072B2",  # blue
    "fa": "#E69F00",  # orange
    "afa": "#009E73",  # green
    "pepita": "#CC79A7",  # purple
    "pepita-forward": "#D55E00",  # vermilion
    "sde": "#56B4E9",  # sky blue (AFA SDE ensemble)
}
LABELS = {
    "bp": "BP",
    "fa": "FA",
    "afa": "AFA",
    "pepita": r"PEPITA ($\tilde{x}$)",
    "pepita-forward": r"PEPITA-forward ($x$)",
    "sde": "AFA SDE",
}
#: distinct colours for components (R_km, specialisation, parameter scans)
CYCLE = [
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#999999",
    "#F0E442",
]

EG = r"$\varepsilon_g$"
ALPHA = r"$\alpha$"

RC = {
    "font.size": 9,
    "axes.labelsize": 10,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 150,
    "figure.dpi": 100,
}


def apply() -> None:
    """Set the shared matplotlib rcParams (call at the top of every ``make``)."""
    import matplotlib

    matplotlib.rcParams.update(RC)


def band(ax, x, mean, std, color, alpha=0.22, **kw):
    """Shade ``mean ± std`` (NaNs, e.g. after divergence, are left blank)."""
    x, mean, std = (np.asarray(a, dtype=float) for a in (x, mean, std))
    ok = np.isfinite(mean) & np.isfinite(std)
    return ax.fill_between(
        x,
        np.where(ok, mean - std, np.nan),
        np.where(ok, mean + std, np.nan),
        color=color,
        alpha=alpha,
        lw=0,
        **kw,
    )


def panel_label(ax, letter: str) -> None:
    """``(a)``, ``(b)``, … in the top-left corner, outside the axes."""
    ax.text(
        -0.02,
        1.02,
        f"({letter})",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontweight="bold",
    )


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(name: str, quick: bool = False, path=None) -> dict:
    """Parameters of figure ``name`` from ``figures/configs/<name>.json``.

    The ``"quick"`` sub-dict overrides the top-level entries when ``quick`` is true; it is
    removed from the returned dict, which records ``"quick": quick`` instead.
    """
    path = Path(path) if path is not None else CONFIG_DIR / f"{name}.json"
    try:
        cfg = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(
            f"cannot read the configuration of figure {name!r}: {path}: {exc.strerror}"
        ) from None
    over = cfg.pop("quick", {}) or {}
    if quick:
        cfg = _merge(cfg, over)
    cfg["quick"] = bool(quick)
    return cfg
