"""Rule-independent numba kernels of the full-field quadrature systems
(:mod:`theory.codegen_quad`: tensor Gauss–Hermite or explicit nodes such as Sobol).

Included in every generated quadrature module after :mod:`theory.field_kernels`
(:func:`theory.emit.include`); the block between ``# >>> generated`` and ``# <<<
generated`` holds stand-ins for the names each generated module defines itself (``P0``,
``N_RULE``, and ``_g``/``_fill`` from the shared kernels).

The rule is packed at the end of the parameter vector (:meth:`QuadratureRule.packed`):
kind 0, tensor Gauss–Hermite (1-D nodes and weights); kind 1, explicit nodes and weights.
"""

import numpy as np
from numba import njit

from theory.quadrature import factor_nb, map_node

# isort: split
# >>> generated
from theory.field_kernels import _fill, _g

P0 = 6
N_RULE = 0
# <<< generated


@njit(cache=True, nogil=True, inline="always")
def _next_node(p, O, kind, D, P, q, X, Wt, idx, xi):
    """Node q of the rule packed at p[O:] into xi; returns its weight. Tensor
    Gauss–Hermite (kind 0; 1-D nodes X and weights Wt) runs an odometer, first coordinate
    fastest; explicit nodes (kind 1) are read from p. No array is sliced here: a view
    costs reference counting on every node."""
    if kind == 0:
        n = X.shape[0]
        if q == 0:
            for j in range(D):
                idx[j] = 0
                xi[j] = X[0]
        else:
            j = 0
            idx[0] += 1
            while idx[j] == n:
                idx[j] = 0
                xi[j] = X[0]
                j += 1
                idx[j] += 1
            xi[j] = X[idx[j]]
        w = 1.0
        for j in range(D):
            w *= Wt[idx[j]]
        return w
    base = O + q * D
    for j in range(D):
        xi[j] = p[base + j]
    return p[O + P * D + q]


@njit(cache=True, nogil=True)
def _rule_arrays(p, O, kind):
    """The 1-D Gauss–Hermite nodes and weights of a packed tensor rule (empty otherwise)."""
    if kind == 0:
        n = int(p[O])
        return p[O + 1 : O + 1 + n].copy(), p[O + 1 + n : O + 1 + 2 * n].copy(), O + 1 + 2 * n
    return np.empty(0), np.empty(0), O


@njit(cache=True, nogil=True)
def _eg_nodes(y, p):
    """ε_g = ½ E[e₀²] over the rule's nodes (activations without a closed-form I2)."""
    K = int(p[0])
    M = int(p[1])
    NU = K + M
    C = np.empty((NU, NU))
    A = np.empty(NU)
    Bv = np.empty(NU)
    L = np.zeros((NU, NU))
    z = np.empty(NU)
    _fill(y, p, K, M, C, A, Bv)
    if factor_nb(C, L) < 0:
        return np.nan
    P_RULE = P0 + M * M + 2 * M + K
    P_Q = P_RULE + N_RULE
    kind = int(p[P_Q + 1])
    P = int(p[P_Q + 2])
    D = int(p[P_Q + 3])
    O_N = P_Q + 4
    xi = np.empty(D)
    idx = np.zeros(D, np.int64)
    X, Wt, _ = _rule_arrays(p, O_N, kind)
    acc = 0.0
    for q in range(P):
        w = _next_node(p, O_N, kind, D, P, q, X, Wt, idx, xi)
        map_node(L, xi, z)
        e0 = 0.0
        for u in range(NU):
            e0 += A[u] * _g(z[u])
        acc += w * e0 * e0
    return 0.5 * acc
