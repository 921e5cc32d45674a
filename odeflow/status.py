"""Why a run stopped: one enumeration of the engine's stop codes, each carrying its status,
its reason and its message (in the spirit of diffrax's ``RESULTS``).

``Result.status`` follows ``scipy.integrate.solve_ivp``: 0 reached ``alpha_max``, 1 stopped
by a criterion the user asked for (``eg_tol``; a terminal event), −1 stopped early
(diverged, step budget or step size exhausted). ``Result.reason`` is the short tag, and
``Result.message`` the sentence made from the template with the run's numbers.
"""

from __future__ import annotations

import math
from enum import Enum

from . import rk
from .tableaux import TABLEAUX

__all__ = ["STATUS_DOC", "Stop", "describe"]

#: what each status means
STATUS_DOC = {
    0: "reached alpha_max",
    1: "converged (eg < eg_tol)",
    -1: "stopped early (diverged, or step budget / step size exhausted)",
}

_PSD = (
    "diverged at α = {alpha:.4g}: the field covariance [[Q, R], [Rᵀ, T]] lost positive "
    "semi-definiteness (Cholesky pivot {value:.3g}); Q = w·wᵀ/N and R = w·w*ᵀ/N are "
    "overlaps of real vectors, so the trajectory left the physical region {hint}"
)


class Stop(Enum):
    """A stop code of the compiled loops (``ist[I_CODE]``) with ``status``, ``reason`` and
    the message ``template`` (fields: alpha, value, threshold, guard, alpha_max, eg_tol, n_steps,
    n_max, method, hint)."""

    DONE = (
        rk.CODE_DONE,
        0,
        "alpha_max",
        "reached α = alpha_max = {alpha_max:.4g} in {n_steps} steps",
    )
    CONVERGED = (
        rk.CODE_CONVERGED,
        1,
        "converged",
        "converged at α = {alpha:.4g}: ε_g = {value:.3g} < eg_tol = {eg_tol:.3g}",
    )
    NONFINITE = (
        rk.CODE_NONFINITE,
        -1,
        "diverged",
        ("diverged at α = {alpha:.4g}: the order parameters became non-finite (NaN/inf) {hint}"),
    )
    YMAX = (
        rk.CODE_YMAX,
        -1,
        "diverged",
        (
            "diverged at α = {alpha:.4g}: max |order parameter| = {value:.3g} exceeds the "
            "overflow guard {guard:.3g} {hint}"
        ),
    )
    EG = (
        rk.CODE_EG,
        -1,
        "diverged",
        (
            "diverged at α = {alpha:.4g}: ε_g = {value:.3g} exceeds the divergence threshold "
            "{threshold:.3g} {hint}"
        ),
    )
    PSD = (rk.CODE_PSD, -1, "diverged", _PSD)
    MAX_STEPS = (
        rk.CODE_MAX_STEPS,
        -1,
        "max_steps",
        (
            "stopped at α = {alpha:.4g} before alpha_max = {alpha_max:.4g}: max_steps = "
            "{n_max} steps taken (raise max_steps)"
        ),
    )
    H_UNDERFLOW = (
        rk.CODE_H_UNDERFLOW,
        -1,
        "step_underflow",
        (
            "stopped at α = {alpha:.4g}: the adaptive step size fell to {value:.3g} "
            "(the solution is blowing up or the problem is too stiff for {method}) "
            "{hint}"
        ),
    )

    def __init__(self, code, status, reason, template):
        self.code = code
        self.status = status
        self.reason = reason
        self.template = template

    @classmethod
    def from_code(cls, code: int) -> Stop:
        for member in cls:
            if member.code == code:
                return member
        raise RuntimeError(f"solver returned unknown stop code {code}")

    def message(self, fs, ist, opts, method: str) -> str:
        """The sentence for a run that stopped with this code (state arrays of the kernel
        protocol, see :mod:`odeflow.solvers`)."""
        val = float(fs[rk.F_STOP_VALUE])
        tab = TABLEAUX.get(method)
        hint = "(learning rate too large?"
        hint += (
            " or step too large for a fixed-step method?)"
            if tab is not None and not tab.adaptive
            else ")"
        )
        return self.template.format(
            alpha=float(fs[rk.F_STOP_ALPHA]),
            value=val,
            threshold=float(opts[rk.O_THRESH]),
            guard=float(opts[rk.O_YMAX]),
            alpha_max=float(opts[rk.O_ALPHA_MAX]),
            eg_tol=float(opts[rk.O_EG_TOL]),
            n_steps=int(ist[rk.I_NSTEPS]),
            n_max=int(val) if math.isfinite(val) else val,
            method=method,
            hint=hint,
        )


def describe(code, fs, ist, opts, method):
    """``(status, reason, message)`` for a stop code."""
    stop = Stop.from_code(int(code))
    return stop.status, stop.reason, stop.message(fs, ist, opts, method)


def _entry_name(layout, i: int) -> str:
    """The order parameter stored at index ``i`` of the flat state (e.g. ``"Q[0,1]"``,
    ``"b[1]"``), found by unpacking the vector of indices; ``"y[i]"`` if it has no name."""
    import numpy as np

    try:
        parts = layout.unpack(np.arange(layout.n, dtype=float))
    except Exception:  # a layout without the usual unpacking: the flat index still helps
        return f"y[{i}]"
    for name, arr in parts.items():
        if arr is None:
            continue
        hits = np.argwhere(np.asarray(arr) == i)
        if len(hits):
            return f"{name}[{','.join(str(int(k)) for k in hits[0])}]"
    return f"y[{i}]"


def first_nonfinite(system, p, y) -> str | None:
    """What went non-finite first, for the message of a run that stopped on a NaN/inf.

    The state the loop stops with is the last accepted one (finite for the adaptive
    methods, whose non-finite trial steps are rejected): if it has a non-finite entry, that
    entry is named; otherwise the right-hand side at that state (``dQ[0,1]/dα``: where
    a singular rule or expectation breaks down), then ε_g; None if all are finite (the
    state blew up within one step from a finite right-hand side: a step too large).
    """
    import numpy as np

    y = np.ascontiguousarray(y, dtype=float)
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        return _entry_name(system.layout, int(bad[0]))
    try:
        dy = np.empty_like(y)
        system.rhs(y, p, dy)
        bad = np.flatnonzero(~np.isfinite(dy))
        if len(bad):
            name = _entry_name(system.layout, int(bad[0]))
            return f"d{name}/dα (the right-hand side at the last finite state)"
        if not np.isfinite(float(system.eg(y, p))):
            return "ε_g (at the last finite state)"
    except Exception:  # a diagnosis only: never hide the stop itself
        return None
    return None
