"""The tolerance contract of the Forward-Forward quadrature (docs/ff-theory.md).

Every FF rule has an error estimate of its right-hand side, in the committee's terms
(``theory.quadrature``): ``max_i |f_i − f_i^exact| ≤ rtol · scale`` with ``scale`` the
largest ``|f_i|`` of the right-hand side ``f = dy/dα`` at the state.

* **QMC rule** (``n_qmc`` > 0, K ≥ 3): one Sobol sequence of n points, scrambled with
  ``seed``; the estimate is the largest change of f when it is replaced by either of two
  rules of n/2 points scrambled with ``seed + 1`` and ``seed + 2`` (the committee's Sobol
  estimate, ``theory.quadrature.coarse_rules``): the error of a half rule, ≥ the full
  rule's on average (×2 for an error falling like 1/n), and the larger of two independent
  ones rarely falls below it. Costs one more right-hand side.
* **Split and Gauss–Hermite rules** (K ≤ 2): the largest change of f when every node count
  (``n_lam``, ``n_leg``) is lowered by 1 — the error of the coarser rule, an upper estimate
  of the finer one's once the rule converges.

ε_g gets the same treatment (``eg_abs``): its rule with half the points (two other
scramblings for QMC points).

Options (``quadrature={...}`` of ``odeflow.solve`` for rule 'ff', or ``build_ff_system``):
``rtol`` (default :data:`RTOL_DEFAULT`) and any FF node count (``theory.ff.default_nodes``).
When ``rtol`` is given, the rule is checked at the initial state of a solve
(``FFSystem.params``); a rule that cannot meet it is refused with a ValueError naming the
rule, its nodes, the estimated error and what would meet it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RTOL_DEFAULT", "check_options", "error_estimate", "check_tolerance"]

#: FF's default tolerance, relative to the largest entry of the right-hand side: what the
#: default node counts meet at states of real learning curves (measured: docs/ff-theory.md)
RTOL_DEFAULT = 5e-3
RTOL_RANGE = (1e-10, 1.0)


def check_options(quadrature, defaults: dict) -> tuple:
    """``(rtol, nodes)`` from FF's quadrature options: None, True or ``"auto"`` (the
    defaults), or a dict with ``rtol``, ``n`` (the main node count: ``n_qmc`` for the QMC
    rule, ``n_lam`` for the split rule), ``seed`` (the QMC scrambling), ``scheme`` (only
    ``"auto"``: FF chooses its rule) and any node count of ``theory.ff.default_nodes``.
    ValueError for anything else, naming what is allowed."""
    if quadrature is None or quadrature is True or quadrature == "auto":
        return RTOL_DEFAULT, {}
    allowed = ["rtol", "n", "seed", "scheme", *sorted(set(defaults) - {"seed"})]
    if not isinstance(quadrature, dict):
        raise ValueError(
            "rule 'ff' takes quadrature options as None, 'auto' or a dict with keys "
            f"{allowed}, got {quadrature!r}"
        )
    bad = set(quadrature) - set(allowed)
    if bad:
        raise ValueError(
            f"unknown quadrature options {sorted(bad)} for rule 'ff'; allowed: {allowed} "
            "(theory.ff.default_nodes)"
        )
    if quadrature.get("scheme", "auto") != "auto":
        raise ValueError(
            f"rule 'ff' chooses its own rule (split Gauss–Legendre or Sobol split at the "
            f"label's jump); quadrature option scheme must be 'auto', got "
            f"{quadrature['scheme']!r}"
        )
    rtol = quadrature.get("rtol", RTOL_DEFAULT)
    lo, hi = RTOL_RANGE
    if isinstance(rtol, (bool, str)) or not isinstance(rtol, (int, float, np.floating)):
        raise ValueError(
            f"quadrature option rtol must be a number in [{lo:g}, {hi:g}], got {rtol!r}"
        )
    if not (math.isfinite(rtol) and lo <= rtol <= hi):
        raise ValueError(
            f"quadrature option rtol = {rtol!r} is out of range; allowed: [{lo:g}, {hi:g}]"
        )
    nodes = {}
    for k, v in quadrature.items():
        if k in ("rtol", "scheme") or v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"quadrature option {k} must be an integer >= 0, got {v!r}")
        if k == "n":
            k = "n_qmc" if defaults["n_qmc"] else "n_lam"
        nodes[k] = int(v)
    return float(rtol), nodes


def _coarse(nodes: dict) -> dict:
    c = dict(nodes)
    c["n_lam"] = max(2, nodes["n_lam"] - 1)
    c["n_leg"] = max(2, nodes["n_leg"] - 1)
    return c


def error_estimate(
    system, state, eta, eta_v=None, sigma=0.0, theta=None, eta_u=None, with_eg=True
) -> dict:
    """The error estimate of ``system``'s rule at ``state`` (module docstring): ``rhs_abs``
    (largest estimated absolute error of dy/dα), ``rhs_rel`` (over ``max |dy/dα|``),
    ``eg_abs`` (ε_g; None without ``with_eg`` or at K = 1, where it is exact), the rule
    (``scheme``, ``nodes``), ``rtol`` and ``ok``."""
    p = system.params(state, eta, eta_v, sigma, theta=theta, eta_u=eta_u, check=False)
    y = system.layout.pack(state)
    f = np.empty_like(y)
    system.rhs(y, p, f)
    nd = system.nodes
    if nd["n_qmc"]:
        err = np.zeros_like(f)
        for j in (1, 2):
            half = system.with_nodes(
                {**nd, "n_qmc": max(64, nd["n_qmc"] // 2), "seed": nd["seed"] + j},
            )
            ph = half.params(state, eta, eta_v, sigma, theta=theta, eta_u=eta_u, check=False)
            fh = np.empty_like(y)
            half.rhs(y, ph, fh)
            err = np.maximum(err, np.abs(fh - f))
        scheme = "sobol (split at the label's jump)"
    else:
        coarse = system.with_nodes(_coarse(nd))
        pc = coarse.params(state, eta, eta_v, sigma, theta=theta, eta_u=eta_u, check=False)
        fc = np.empty_like(y)
        coarse.rhs(y, pc, fc)
        err = np.abs(f - fc)
        scheme = "split gauss-legendre" if nd["split_lam"] else "gauss-hermite"
    eg_abs = None
    if with_eg and system.K >= 2:
        eg = system.eg(y, p)
        eg_abs = 0.0
        for j in (1, 2):  # half the points, other scramblings (QMC; the midpoint rule: n/2)
            half = system.with_nodes(
                {**nd, "n_eg": max(2, nd["n_eg"] // 2), "seed": nd["seed"] + j},
            )
            ph = half.params(state, 0.0, 0.0, theta=theta, check=False)
            eg_abs = max(eg_abs, float(abs(eg - half.eg(y, ph))))
    scale = float(np.max(np.abs(f)))
    abs_err = float(np.max(err))
    rel = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else math.inf)
    return {
        "scheme": scheme,
        "nodes": dict(nd),
        "rhs_abs": abs_err,
        "rhs_rel": rel,
        "eg_abs": eg_abs,
        "rtol": system.rtol,
        "ok": bool(rel <= system.rtol),
    }


def refusal(est: dict, suggestion: str) -> str:
    """The message of a rule that cannot meet its tolerance."""
    return (
        f"rule 'ff': the quadrature ({est['scheme']}, nodes {est['nodes']}) cannot meet "
        f"rtol = {est['rtol']:g} at the initial state: estimated error {est['rhs_abs']:.2e} "
        f"absolute, {est['rhs_rel']:.2e} relative to the largest |dy/dα|; {suggestion}"
    )


def check_tolerance(system, state, eta, eta_v=None, sigma=0.0, theta=None, eta_u=None):
    """The error estimate at ``state`` if ``system``'s rule meets its ``rtol`` there, else
    ValueError (:func:`refusal`) saying what would meet it."""
    est = error_estimate(system, state, eta, eta_v, sigma, theta, eta_u, with_eg=False)
    if est["ok"]:
        return est
    nd = system.nodes
    if nd["n_qmc"]:
        need = _pow2(nd["n_qmc"] * 1.5 * est["rhs_rel"] / system.rtol)
        hint = (
            f"quadrature={{'rtol': {system.rtol:g}, 'n': {need}}} (Sobol points) should (the "
            "error falls about like 1/n), or raise rtol"
        )
    else:
        hint = (
            f"raise n_lam and n_leg (now {nd['n_lam']}, {nd['n_leg']}) or rtol (to about "
            f"{2 * est['rhs_rel']:.1e})"
        )
    raise ValueError(refusal(est, hint))


def _pow2(x) -> int:
    """The smallest power of 2 >= x and >= 64 (a valid n_qmc)."""
    return 1 << max(6, math.ceil(math.log2(max(x, 64.0))))
