"""The numba forms of the built-in activations, for the simulation kernels.

The activation registry (:mod:`theory.activations`) is the one source of every
activation: its sympy expression feeds the ODEs (closed forms, quadrature) and, printed
by :class:`theory.emit.NumbaPrinter`, the simulation kernel of a user activation. The
built-in names (:data:`theory.activation_names.ACTIVATIONS`, in the order of their
integer codes ``act``) have the hand-tuned forms below instead, equal to their registry
expressions to round-off (``tests/theory/test_activation_kernels.py`` checks it) and
chosen for speed and range:

* erf: ``erf(z/√2)`` and ``g' = √(2/π) e^(−z²/2)`` (one libm call each);
* relu: ``g' = θ(z)`` with ``g'(0) = 0`` (the subgradient every simulation uses);
* tanh: ``g' = 1 − tanh² z`` (no ``cosh``, which overflows past |z| ≈ 710);
* sigmoid: ``(1 + tanh(z/2))/2`` (no ``exp`` overflow for large negative z).

Every simulation kernel of the project (:mod:`simulations.teacher_student` and the
generated step loops of :mod:`simulations.kernelgen`, :mod:`simulations.ff_kernel`,
:mod:`simulations.deep_kernel`) takes ``g``/``gp`` from here; a user activation's kernel
gets functions of the same signature printed from the registry.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["FM", "g", "gp"]

#: fastmath flags of the simulation kernels: reassociation and FMA contraction, but no
#: ``nnan``/``ninf`` (the kernels test for non-finite values to detect divergence)
FM = {"reassoc", "contract", "arcp"}
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@njit(cache=True, nogil=True, inline="always", fastmath=FM)
def g(z, act):
    """g(z), act = index in ACTIVATIONS: 0 erf(z/√2), 1 z, 2 max(0, z), 3 tanh z,
    4 1/(1 + e^(−z)) (computed as (1 + tanh(z/2))/2: no overflow)."""
    if act == 0:
        return math.erf(z * _INV_SQRT2)
    if act == 1:
        return z
    if act == 2:
        return z if z > 0.0 else 0.0
    if act == 3:
        return math.tanh(z)
    return 0.5 + 0.5 * math.tanh(0.5 * z)


@njit(cache=True, nogil=True, inline="always", fastmath=FM)
def gp(z, act):
    """g'(z): √(2/π) exp(−z²/2), 1, θ(z), 1 − tanh² z, g(1 − g) for acts 0…4."""
    if act == 0:
        return _SQRT_2_OVER_PI * math.exp(-0.5 * z * z)
    if act == 1:
        return 1.0
    if act == 2:
        return 1.0 if z > 0.0 else 0.0
    if act == 3:
        t = math.tanh(z)
        return 1.0 - t * t
    t = math.tanh(0.5 * z)
    return 0.25 * (1.0 - t * t)
