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
* ``_tanh``: tanh without a libm call, vectorisable (the generated node loops print
  ``tanh`` as this).
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


#: 2^(−k), k = 0…63: the scale of e^(−y) after range reduction in :func:`_tanh`
_POW2_NEG = np.array([2.0**-k for k in range(64)])
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (Cody–Waite): k·_LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634


@njit(cache=True, nogil=True, inline="always")
def _expm1_neg(r):
    # e^(−r) − 1 for 0 ≤ r < ln 2: Taylor series to r¹⁸ (the next term is < 3e-19 r), no
    # cancellation near 0
    p = 1.5619206968586225e-16
    p = -2.8114572543455206e-15 + r * p
    p = 4.779477332387385e-14 + r * p
    p = -7.647163731819816e-13 + r * p
    p = 1.1470745597729725e-11 + r * p
    p = -1.6059043836821613e-10 + r * p
    p = 2.08767569878681e-09 + r * p
    p = -2.505210838544172e-08 + r * p
    p = 2.755731922398589e-07 + r * p
    p = -2.7557319223985893e-06 + r * p
    p = 2.48015873015873e-05 + r * p
    p = -0.0001984126984126984 + r * p
    p = 0.001388888888888889 + r * p
    p = -0.008333333333333333 + r * p
    p = 0.041666666666666664 + r * p
    p = -0.16666666666666666 + r * p
    p = 0.5 + r * p
    p = -1.0 + r * p
    return r * p


@njit(cache=True, nogil=True, inline="always")
def _tanh(x):
    # tanh x = −m/(2 + m), m = e^(−2|x|) − 1, with the sign of x; within 3 ulp of
    # math.tanh. No libm call and no branch (selects only), so a loop over fields and
    # nodes vectorises (SIMD): the node loops of theory.codegen_quad compute the first
    # pass this way, ~8× faster than libm's tanh. m = 2^(−k)(1 + E(r)) − 1 with
    # 2|x| = k ln 2 + r (E = _expm1_neg); 2^(−k) − 1 is exact, so nothing cancels at k = 0.
    # Past 2|x| = 40, tanh = ±1 in double precision; NaN stays NaN (through r).
    y = 2.0 * abs(x)
    y = 40.0 if y > 40.0 else y
    kf = math.floor(y * _INV_LN2)
    kf = 63.0 if not kf < 63.0 else kf  # (NaN: any index, r is NaN)
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    s = _POW2_NEG[int(kf)]
    m = (s - 1.0) + s * _expm1_neg(r)
    t = -m / (2.0 + m)
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
