"""The naive closed-form baseline of ``bench_ode.py`` (1) and (7): the BP right-hand side
written the straightforward way (nn2pp's: every (i, k, a, b) tuple with the closed-form
I4 of docs/theory.md §4) and its Euler loop."""

import math

import numpy as np
from numba import njit

TWO_PI = 2.0 / math.pi
FOUR_PI2 = 4.0 / math.pi**2


# ------------------------------------------------------------- (1) the naive baseline
@njit(cache=True)
def _I2(C, a, b):
    return TWO_PI * math.asin(C[a, b] / math.sqrt((1 + C[a, a]) * (1 + C[b, b])))


@njit(cache=True)
def _J2(C, a, b):
    return TWO_PI / math.sqrt(1 + C[a, a] + C[b, b] + C[a, a] * C[b, b] - C[a, b] ** 2)


@njit(cache=True)
def _I3(C, a, b, c):
    L3 = (1 + C[a, a]) * (1 + C[c, c]) - C[a, c] ** 2
    return TWO_PI / math.sqrt(L3) * (C[b, c] * (1 + C[a, a]) - C[a, b] * C[a, c]) / (1 + C[a, a])


@njit(cache=True)
def _I4(C, a, b, c, d):
    """docs/theory.md §4 closed form, evaluated from scratch for one tuple (a, b, c, d)."""
    L4 = (1 + C[a, a]) * (1 + C[b, b]) - C[a, b] ** 2
    L0 = (
        L4 * C[c, d]
        - C[b, c] * C[b, d] * (1 + C[a, a])
        - C[a, c] * C[a, d] * (1 + C[b, b])
        + C[a, b] * C[a, c] * C[b, d]
        + C[a, b] * C[a, d] * C[b, c]
    )
    L1 = (
        L4 * (1 + C[c, c])
        - C[b, c] ** 2 * (1 + C[a, a])
        - C[a, c] ** 2 * (1 + C[b, b])
        + 2 * C[a, b] * C[a, c] * C[b, c]
    )
    L2 = (
        L4 * (1 + C[d, d])
        - C[b, d] ** 2 * (1 + C[a, a])
        - C[a, d] ** 2 * (1 + C[b, b])
        + 2 * C[a, b] * C[a, d] * C[b, d]
    )
    return FOUR_PI2 / math.sqrt(L4) * math.asin(L0 / math.sqrt(L1 * L2))


@njit(cache=True)
def baseline_rhs(y, T, vs, eta, eta_v, sigma, K, M, C, coef, dy):
    """BP right-hand side written the straightforward way: every (i, k, a, b) tuple.

    With ``c = [v, −v*]`` (so ``ŷ − y = Σ_a c_a g(z_a)``), f = v::

        dR_in = −η v_i Σ_a c_a I3(i, n, a)
        dQ_ik = −η v_i Σ_a c_a I3(i, k, a) − η v_k Σ_a c_a I3(k, i, a)
                + η² v_i v_k [Σ_ab c_a c_b I4(i, k, a, b) + σ² J2(i, k)]
        dv_i  = −η_v Σ_a c_a I2(i, a)
    """
    nQ = K * (K + 1) // 2
    n = K + M
    # unpack the covariance and the coefficients
    idx = 0
    for i in range(K):
        for k in range(i, K):
            C[i, k] = y[idx]
            C[k, i] = y[idx]
            idx += 1
    for i in range(K):
        for m in range(M):
            C[i, K + m] = y[nQ + i * M + m]
            C[K + m, i] = y[nQ + i * M + m]
    for m in range(M):
        for l in range(M):
            C[K + m, K + l] = T[m, l]
    for i in range(K):
        coef[i] = y[nQ + K * M + i]
    for m in range(M):
        coef[K + m] = -vs[m]
    v = coef[:K]
    # dQ over all (i, k), then packed
    idx = 0
    for i in range(K):
        for k in range(K):
            s4 = 0.0
            for a in range(n):
                for b in range(n):
                    s4 += coef[a] * coef[b] * _I4(C, i, k, a, b)
            s3i = 0.0
            s3k = 0.0
            for a in range(n):
                s3i += coef[a] * _I3(C, i, k, a)
                s3k += coef[a] * _I3(C, k, i, a)
            val = (
                -eta * v[i] * s3i
                - eta * v[k] * s3k
                + eta * eta * v[i] * v[k] * (s4 + sigma * sigma * _J2(C, i, k))
            )
            if k >= i:
                dy[i * K - (i * (i - 1)) // 2 + (k - i)] = val
    for i in range(K):
        for m in range(M):
            s = 0.0
            for a in range(n):
                s += coef[a] * _I3(C, i, K + m, a)
            dy[nQ + i * M + m] = -eta * v[i] * s
    for i in range(K):
        s = 0.0
        for a in range(n):
            s += coef[a] * _I2(C, i, a)
        dy[nQ + K * M + i] = -eta_v * s


@njit(cache=True)
def baseline_euler(y, T, vs, eta, eta_v, sigma, K, M, dt, nsteps):
    C = np.empty((K + M, K + M))
    coef = np.empty(K + M)
    dy = np.empty_like(y)
    for _ in range(nsteps):
        baseline_rhs(y, T, vs, eta, eta_v, sigma, K, M, C, coef, dy)
        for j in range(y.shape[0]):
            y[j] += dt * dy[j]
