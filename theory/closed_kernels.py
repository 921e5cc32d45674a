"""Rule-independent numba kernels of the closed-form systems (:mod:`theory.codegen`).

Every generated closed-form module includes this file (:func:`theory.emit.include`) after
its constants; the block between ``# >>> generated`` and ``# <<< generated`` holds
stand-ins for the names the generated module defines itself (``ADAPTIVE``, ``P0``), so
that this module imports and lints on its own.

``_fill`` builds, from the flat state ``y`` and the parameter vector ``p`` (layouts in
:mod:`theory.codegen`), the covariance ``C`` of the fields ``(λ_1..λ_K, ν_1..ν_M[, φ])``,
the read-out coefficients ``A = (v, −v*)`` of the error ``e = ŷ − y`` and the feedback
overlaps ``Bf = b`` (fixed: from ``p``; adaptive: from ``y``).
"""

import math

from numba import njit

# >>> generated
ADAPTIVE = 0
P0 = 6
# <<< generated


@njit(cache=True, nogil=True, inline="always")
def _asin(x):
    # clipped: round-off can push the argument a hair past ±1 at degenerate states
    return math.asin(min(1.0, max(-1.0, x)))


@njit(cache=True, nogil=True)
def _abort(dy):
    # an aborted rhs (theory.runtime.interruptible) leaves no plausible value behind
    for i in range(dy.shape[0]):
        dy[i] = math.nan


@njit(cache=True, nogil=True, inline="always")
def _fill(y, p, K, M, C, A, Bf):
    # C: covariance of (λ_1..λ_K, ν_1..ν_M[, φ]); A: readout coefficients of e = ŷ − y
    PHI = K + M
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
    for m in range(M):
        A[K + m] = -p[P_VS + m]
    for a in range(K):
        if ADAPTIVE:
            Bf[a] = y[O_V + K + a]
        else:
            Bf[a] = p[P_B + a]
    if ADAPTIVE:
        # φ's covariances, scaled by √N (docs/theory.md §5): b, c and σ_F²
        for a in range(K):
            C[a, PHI] = Bf[a]
            C[PHI, a] = Bf[a]
        for m in range(M):
            C[K + m, PHI] = p[P_C + m]
            C[PHI, K + m] = p[P_C + m]
        C[PHI, PHI] = p[5]
