"""Monte Carlo reference for the Forward-Forward expectations (docs/ff-theory.md).

An independent, deliberately simple implementation — the test oracle for the quadrature of
:mod:`theory.ff`: draw ``(λ, ν) ~ N(0, [[Q, R], [Rᵀ, T]])``, form the label
``y = sign(Σ_m v*_m erf(ν_m/√2))``, both passes and the signals ``a^±`` by the formulas of
§9 written out by hand, and average::

    dQ_kl/dα = −η E[δ_k λ_l + δ_l λ_k] + η² E[δ_k δ_l]      δ_k = a_k^+ + a_k^−
    dR_km/dα = −η E[δ_k ν_m]
    du_k/dα  = −η_u E[y (a_k^+ − a_k^−)]
    ε_g = P(ŷ ≠ y) (ties count half),  loss = E[L],  gap = E[G⁺ − G⁻]

Every estimate comes with its standard error (sample std / √n). Samples are drawn by
numpy; one plain numba loop applies the formulas sample by sample (10⁸ samples in well under
a minute, so that the standard errors sit well below the 1e-3 the quadrature is held to).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["ff_monte_carlo"]

_SQ2PI = math.sqrt(2.0 / math.pi)


_ACT = ("erf", "linear", "relu", "tanh")


@njit(cache=True, inline="always")
def _gn(z, code):
    if code == 0:
        return math.erf(z / math.sqrt(2.0))
    if code == 1:
        return z
    if code == 2:
        return max(z, 0.0)
    return math.tanh(z)


@njit(cache=True, inline="always")
def _gpn(z, code):
    if code == 0:
        return _SQ2PI * math.exp(-0.5 * z * z)
    if code == 1:
        return 1.0
    if code == 2:
        return 1.0 if z > 0.0 else 0.0
    t = math.tanh(z)
    return 1.0 - t * t


@njit(cache=True, inline="always")
def _expit(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@njit(cache=True, inline="always")
def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(cache=True)
def _accumulate(z, K, M, u, v_star, theta, eta, eta_u, code, s1, s2):
    """Add every sample's values (layout: dQ (K·K), dR (K·M), du (K), eg, loss, gap) and
    their squares to s1, s2 — the formulas of the module docstring, written out."""
    hp = np.empty(K)
    hm = np.empty(K)
    ap = np.empty(K)
    am = np.empty(K)
    d = np.empty(K)
    val = np.empty(s1.shape[0])
    for i in range(z.shape[0]):
        s = 0.0
        for m in range(M):
            s += v_star[m] * math.erf(z[i, K + m] / math.sqrt(2.0))
        y = 1.0 if s >= 0.0 else -1.0
        Gp = 0.0
        Gm = 0.0
        Dp = 0.0
        Dm = 0.0
        for k in range(K):
            hp[k] = _gn(z[i, k] + u[k] * y, code)
            hm[k] = _gn(z[i, k] - u[k] * y, code)
            Gp += hp[k] * hp[k]
            Gm += hm[k] * hm[k]
            a = _gn(z[i, k] + u[k], code)
            b = _gn(z[i, k] - u[k], code)
            Dp += a * a
            Dm += b * b
        sp = _expit(theta - Gp)
        sm = _expit(Gm - theta)
        for k in range(K):
            ap[k] = -2.0 * sp * hp[k] * _gpn(z[i, k] + u[k] * y, code)
            am[k] = 2.0 * sm * hm[k] * _gpn(z[i, k] - u[k] * y, code)
            d[k] = ap[k] + am[k]
        j = 0
        for k in range(K):
            for l in range(K):
                val[j] = -eta * (d[k] * z[i, l] + d[l] * z[i, k]) + eta * eta * d[k] * d[l]
                j += 1
        for k in range(K):
            for m in range(M):
                val[j] = -eta * d[k] * z[i, K + m]
                j += 1
        for k in range(K):
            val[j] = -eta_u * y * (ap[k] - am[k])
            j += 1
        D = Dp - Dm
        val[j] = 0.5 if D == 0.0 else (1.0 if (D > 0.0) != (y > 0.0) else 0.0)
        val[j + 1] = _softplus(theta - Gp) + _softplus(Gm - theta)
        val[j + 2] = Gp - Gm
        for q in range(val.shape[0]):
            s1[q] += val[q]
            s2[q] += val[q] * val[q]


def ff_monte_carlo(
    Q,
    R,
    T,
    u,
    v_star,
    *,
    theta,
    eta=1.0,
    eta_u=1.0,
    activation="erf",
    n=10_000_000,
    seed=0,
    chunk=1_000_000,
) -> dict:
    """Monte Carlo estimates (and standard errors, key ``<name>_se``) of the FF drift and
    observables at one state: ``dQ`` (K, K), ``dR`` (K, M), ``du`` (K,), ``eg``, ``loss``,
    ``gap``, from ``n`` samples drawn in chunks (memory ~ chunk·(K+M)·8 bytes × a few)."""
    Q, R, T = (np.asarray(a, dtype=float) for a in (Q, R, T))
    u, v_star = np.asarray(u, dtype=float), np.asarray(v_star, dtype=float)
    K, M = R.shape
    C = np.block([[Q, R], [R.T, T]])
    w, V = np.linalg.eigh(C)
    L = V * np.sqrt(np.clip(w, 0, None))  # C = L Lᵀ (works for singular C)
    rng = np.random.default_rng(seed)
    names = {"dQ": (K, K), "dR": (K, M), "du": (K,), "eg": (), "loss": (), "gap": ()}
    # running sums of every quantity and of its square, in one flat vector
    sizes = [int(np.prod(sh)) for sh in names.values()]
    s1 = np.zeros(sum(sizes))
    s2 = np.zeros(sum(sizes))
    code = _ACT.index(activation)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        z = rng.standard_normal((m, K + M)) @ L.T
        _accumulate(z, K, M, u, v_star, theta, eta, eta_u, code, s1, s2)
        done += m
    s1, s2 = (
        dict(zip(names, np.split(s1, np.cumsum(sizes)[:-1]))),
        dict(zip(names, np.split(s2, np.cumsum(sizes)[:-1]))),
    )
    s1 = {k: v.reshape(names[k]) for k, v in s1.items()}
    s2 = {k: v.reshape(names[k]) for k, v in s2.items()}
    out = {}
    for k in names:
        mean = s1[k] / n
        out[k] = mean
        out[k + "_se"] = np.sqrt(np.maximum(s2[k] / n - mean**2, 0.0) / (n - 1))
    return out
