"""Rule-independent numba kernels shared by the quadrature systems
(:mod:`theory.codegen_quad`, :mod:`theory.codegen_marginal`).

Included in every generated quadrature module (:func:`theory.emit.include`); the block
between ``# >>> generated`` and ``# <<< generated`` holds stand-ins (the erf activation, a
rule without feedback) for the names each generated module defines itself: the constants
``ADAPTIVE``, ``P0``, the activation ``_g``, its derivative ``_gp`` and, when it has one,
its closed-form ``_I2(C_aa, C_bb, C_ab) = E[g(a) g(b)]``.

* ``_fill``: the covariance ``C`` of the fields ``(λ, ν)``, the read-out coefficients
  ``A = (v, −v*)`` of ``e = ŷ − y`` and the feedback overlaps ``Bv = (b, c)`` (scaled by
  √N) from the flat state ``y`` and the parameter vector ``p`` (layouts in
  :mod:`theory.codegen_quad`).
* ``_eg_closed``: ``ε_g = ½ Σ_ab A_a A_b I2(C_aa, C_bb, C_ab)``.
* ``_tanh``: tanh from one ``exp`` (the generated node loops print ``tanh`` as this).
"""

import math

import numpy as np
from numba import njit

# >>> generated
ADAPTIVE = 0
P0 = 6


@njit(cache=True, nogil=True, inline="always")
def _g(zz_):
    return math.erf(zz_ / math.sqrt(2.0))


@njit(cache=True, nogil=True, inline="always")
def _gp(zz_):
    return math.sqrt(2.0) * math.exp(-zz_ * zz_ / 2.0) / math.sqrt(math.pi)


@njit(cache=True, nogil=True, inline="always")
def _I2(Caa, Cbb, Cab):
    return (2.0 / math.pi) * _asin(Cab / math.sqrt((1.0 + Caa) * (1.0 + Cbb)))


# <<< generated


@njit(cache=True, nogil=True, inline="always")
def _asin(x):
    # clipped: round-off can push the argument a hair past ±1 at degenerate states
    return math.asin(min(1.0, max(-1.0, x)))


@njit(cache=True, nogil=True, inline="always")
def _tanh(x):
    # tanh from one exp (expm1 near 0, where 1 − e^(−2|x|) would cancel): within a few ulp
    # of math.tanh and ~1.6× faster (libm's tanh goes through the slower expm1 everywhere);
    # the node loops of theory.codegen_quad call it once per field and node
    ax = abs(x)
    if ax < 0.5:
        em = math.expm1(2.0 * ax)
        t = em / (em + 2.0)
    else:
        ex = math.exp(-2.0 * ax)
        t = (1.0 - ex) / (1.0 + ex)
    return t if x >= 0.0 else -t


@njit(cache=True, nogil=True, inline="always")
def _arccos1(Caa, Cbb, Cab):
    # E[relu(a) relu(b)]: arc-cosine kernel of degree 1 (Cho & Saul 2009)
    s = math.sqrt(max(Caa, 0.0) * max(Cbb, 0.0))
    if s <= 0.0:
        return 0.0
    c = min(1.0, max(-1.0, Cab / s))
    th = math.acos(c)
    return s * (math.sin(th) + (math.pi - th) * c) / (2.0 * math.pi)


@njit(cache=True, nogil=True, inline="always")
def _fill(y, p, K, M, C, A, Bv):
    # C: covariance of (λ, ν); A: readout coefficients of e = ŷ − y (v, −v*);
    # Bv: the feedback overlaps (b, c) of the fields with F (scaled by √N)
    O_R = K * (K + 1) // 2
    O_V = O_R + K * M
    P_T = P0
    P_VS = P0 + M * M
    P_C = P_VS + M
    P_B = P_C + M
    i = 0
    for a in range(K):
        for c in range(a, K):
            C[a, c] = y[i]
            C[c, a] = y[i]
            i += 1
    for a in range(K):
        for m in range(M):
            C[a, K + m] = y[O_R + a * M + m]
            C[K + m, a] = y[O_R + a * M + m]
    for m in range(M):
        for m2 in range(M):
            C[K + m, K + m2] = p[P_T + m * M + m2]
    for a in range(K):
        A[a] = y[O_V + a]
        Bv[a] = y[O_V + K + a] if ADAPTIVE else p[P_B + a]
    for m in range(M):
        A[K + m] = -p[P_VS + m]
        Bv[K + m] = p[P_C + m]


@njit(cache=True, nogil=True)
def _eg_closed(y, p):
    """ε_g = ½ Σ_ab A_a A_b I2(C_aa, C_bb, C_ab) from the activation's closed-form I2."""
    K = int(p[0])
    M = int(p[1])
    NU = K + M
    C = np.empty((NU, NU))
    A = np.empty(NU)
    Bv = np.empty(NU)
    _fill(y, p, K, M, C, A, Bv)
    acc = 0.0
    for a in range(NU):
        Caa = C[a, a]
        for bb in range(a, NU):
            Cbb = C[bb, bb]
            Cab = C[a, bb]
            val = A[a] * A[bb] * (_I2(Caa, Cbb, Cab))
            acc += val if a == bb else 2.0 * val
    return 0.5 * acc
