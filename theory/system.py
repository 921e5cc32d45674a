"""The declared interface of a compiled order-parameter system (sympy-free).

A *system* is what a model (:mod:`theory.models`) and an expectation scheme build for one
rule, K, M and activation, and what every solver of :mod:`odeflow` integrates. Four
classes implement it: :class:`theory.codegen.System` (closed forms),
:class:`theory.codegen_quad.QuadSystem` (Gaussian quadrature),
:class:`theory.cache.CachedSystem` (a closed-form system loaded without sympy) and
:class:`theory.ff.FFSystem` (Forward-Forward). :class:`System` states the contract;
:class:`SystemMethods` implements what follows from it once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "System",
    "SystemMethods",
    "committee_observables",
    "describe_system",
    "describe",
    "observables",
]


@runtime_checkable
class System(Protocol):
    """The contract every compiled order-parameter system fulfils.

    The dynamical state is a flat float64 vector ``y`` (its packing: ``layout``); the
    constants of a run (teacher overlaps ``T``, ``v*``, learning rates, rule parameters,
    quadrature nodes, …) travel in a flat float64 vector ``p`` built by ``params``. The
    solvers only ever call ``rhs``, ``eg`` and ``noise`` with these two vectors, from
    compiled loops; everything else is Python.

    Attributes
    ----------
    rhs : callable ``rhs(y, p, dy) -> None``
        A numba function writing the drift ``dy/dα = f(y; p)`` into ``dy`` (same shape
        as ``y``). It must not allocate or keep references to its arguments, and must be
        callable from ``nopython`` code (it is passed to the compiled integrators).
    eg : callable ``eg(y, p) -> float``
        A numba function: the generalisation error ε_g at ``y`` (the quantity the
        solvers test against ``eg_tol`` and the divergence threshold).
    noise : callable ``noise(y, p, S) -> None`` or None
        For models with a stochastic part (AFA's adaptive feedback): writes the K×K
        covariance per unit α of the noise on ``b`` into ``S``. None otherwise
        (:func:`odeflow.solve_sde` refuses such systems).
    layout
        The packing of ``y``: ``n`` (length), ``K``, ``M``, ``nQ``, ``slices`` (name →
        slice of ``y``), ``pack(state) -> y``, ``unpack(y) -> {name: array}`` (also on
        stacks ``(..., n)``) and ``state(y, constants) -> OrderParameters``.
    rule
        The rule as the numerics see it: ``name``, ``feedback`` ("v", "fixed",
        "adaptive" or "none") and ``params`` (its own parameters with defaults).
    model : str
        Name of the model in :data:`theory.models.MODELS` ("committee", "ff") that built
        the system; it decides the parameter names and the result fields.
    activation : str
        Name of the activation.
    K, M : int
        Student and teacher hidden units.

    Methods
    -------
    params(state, eta, eta_v=None, sigma=0.0, **rule_params) -> (P,) array
        The parameter vector for ``state``'s constants and the rates. Raises ValueError
        (naming the quantity and what is allowed) when ``state`` lacks what the model
        needs or a rate is invalid. Never returns NaN.
    observables(y, p) -> dict
        Named extra quantities of a flat state or a stack ``(T, n)`` of them, beyond the
        layout's own fields: ``b``, ``cos_vb``, ``norm_b`` for the committee (None
        where the rule has no feedback); ``eg``, ``loss``, ``gap`` for FF. Arrays with
        the leading shape of ``y``.
    describe() -> dict
        JSON-able provenance: model, rule, feedback, activation, K, M, the source of the
        generated code and anything else needed to rebuild the system.
    """

    rhs: Callable
    eg: Callable
    noise: Any
    layout: Any
    rule: Any
    model: str
    activation: str
    K: int
    M: int

    def params(self, state, eta, eta_v=None, sigma=0.0, **rule_params) -> np.ndarray: ...

    def observables(self, y, p) -> dict: ...

    def describe(self) -> dict: ...


def describe_system(system) -> dict:
    """The provenance of ``system`` (see :meth:`System.describe`)."""
    rule = system.rule
    out = {
        "model": getattr(system, "model", "committee"),
        "rule": getattr(rule, "name", str(rule)),
        "feedback": getattr(rule, "feedback", None),
        "rule_params": {
            k: (None if v is None else float(v))
            for k, v in dict(getattr(rule, "params", {}) or {}).items()
        },
        "activation": str(getattr(system, "activation", "")),
        "K": int(system.layout.K),
        "M": int(system.layout.M),
        "n": int(system.layout.n),
        "class": type(system).__name__,
    }
    pre = getattr(rule, "presynaptic", None)
    if pre is not None:  # "x" or "x_tilde" (PEPITA's modulated input)
        out["presynaptic"] = str(pre)
    src = getattr(system, "source_path", None)
    if src is not None:
        out["source"] = str(src)
    quad = getattr(system, "quadrature", None)
    if isinstance(quad, dict):
        out["quadrature"] = dict(quad)
    return out


def committee_observables(y, p, K: int, M: int, feedback: str, layout) -> dict:
    """``b``, ``cos_vb = cos(v, b)`` and ``norm_b = |b|`` of the committee.

    ``b`` is read from ``y`` for adaptive feedback and from the parameter vector for fixed
    feedback (``p = [K, M, η, η_v, σ, σ_F², T (M·M), v* (M), c (M), b (K), …]``, the layout
    of :func:`theory.cache.param_vector`); all three are None for a rule without feedback
    (backprop, feedback "v")."""
    Y = np.asarray(y, dtype=float)
    parts = layout.unpack(Y)
    if feedback == "adaptive":
        b = parts["b"]
    elif feedback == "fixed":
        o = 6 + M * M + 2 * M
        b = np.broadcast_to(np.asarray(p, dtype=float)[o : o + K], Y.shape[:-1] + (K,)).copy()
    else:
        return {"b": None, "cos_vb": None, "norm_b": None}
    from .observables import cos_vb, norm_b

    return {"b": b, "cos_vb": cos_vb(parts["v"], b), "norm_b": norm_b(b)}


def describe(system) -> dict:
    """``system.describe()``, or :func:`describe_system` for a duck-typed system (an object
    with ``rhs``, ``eg``, ``layout``, ``params``, ``rule`` only, e.g. a test's toy)."""
    fn = getattr(system, "describe", None)
    return fn() if callable(fn) else describe_system(system)


def observables(system, y, p) -> dict:
    """``system.observables(y, p)``, or the committee's for a duck-typed system."""
    fn = getattr(system, "observables", None)
    if callable(fn):
        return fn(y, p)
    lay = system.layout
    fb = getattr(system.rule, "feedback", "adaptive" if lay.adaptive_b else "v")
    return committee_observables(y, p, lay.K, lay.M, fb, lay)


class SystemMethods:
    """What follows from the contract of :class:`System`, for the committee systems:
    ``evaluate``, ``noise_covariance``, ``eps_g``, and the committee's ``model``,
    ``observables`` and ``describe``."""

    #: name of the model in theory.models.MODELS
    model = "committee"

    def evaluate(self, state, eta, eta_v=None, sigma=0.0, **kw):
        """The right-hand side at ``state`` as arrays ``{"Q", "R", "v"[, "b"]}`` (d/dα);
        ``kw``: rule parameters (and, for quadrature systems, ``qrule``)."""
        p = self.params(state, eta, eta_v, sigma, **kw)
        y = self.layout.pack(state)
        dy = np.empty_like(y)
        self.rhs(y, p, dy)
        return self.layout.unpack(dy)

    def noise_covariance(self, state, eta, eta_v=None, sigma=0.0, **rule_params):
        """Σ_kl = η² σ_F² E[δ_k δ_l], the covariance per unit α of the noise on the adaptive
        feedback b (adaptive-feedback rules only)."""
        if self.noise is None:
            raise ValueError(
                f"rule {self.rule.name!r} has no stochastic feedback; "
                "only adaptive-feedback rules (e.g. 'afa') do"
            )
        p = self.params(state, eta, eta_v, sigma, **rule_params)
        S = np.empty((self.K, self.K))
        self.noise(self.layout.pack(state), p, S)
        return S

    def eps_g(self, state) -> float:
        """ε_g at ``state`` from the generated code."""
        p = self.params(state, 0.0, 0.0, 0.0)
        return float(self.eg(self.layout.pack(state), p))

    def observables(self, y, p) -> dict:
        """``b``, ``cos_vb``, ``norm_b`` (see :func:`committee_observables`)."""
        fb = getattr(self.rule, "feedback", "adaptive" if self.layout.adaptive_b else "v")
        return committee_observables(y, p, self.K, self.M, fb, self.layout)

    def describe(self) -> dict:
        """Provenance (see :func:`describe_system`)."""
        return describe_system(self)
