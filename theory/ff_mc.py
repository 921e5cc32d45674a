"""Monte Carlo reference for the Forward-Forward expectations (SCIENCE.md §9), plain numpy.

An independent, deliberately simple implementation — the test oracle for the quadrature of
:mod:`theory.ff`: draw ``(λ, ν) ~ N(0, [[Q, R], [Rᵀ, T]])``, form the label
``y = sign(Σ_m v*_m erf(ν_m/√2))``, both passes and the signals ``a^±`` by the formulas of
§9 written out by hand, and average::

    dQ_kl/dα = −η E[δ_k λ_l + δ_l λ_k] + η² E[δ_k δ_l]      δ_k = a_k^+ + a_k^−
    dR_km/dα = −η E[δ_k ν_m]
    du_k/dα  = −η_u E[y (a_k^+ − a_k^−)]
    ε_g = P(ŷ ≠ y) (ties count half),  loss = E[L],  gap = E[G⁺ − G⁻]

Every estimate comes with its standard error (sample std / √n).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf, expit

__all__ = ["ff_monte_carlo"]

_SQ2PI = math.sqrt(2.0 / math.pi)


def _g(z, act):
    if act == "erf":
        return erf(z / math.sqrt(2.0))
    if act == "linear":
        return z
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation {act!r}")


def _gp(z, act):
    if act == "erf":
        return _SQ2PI * np.exp(-0.5 * z * z)
    if act == "linear":
        return np.ones_like(z)
    if act == "tanh":
        return 1.0 - np.tanh(z) ** 2
    return (z > 0).astype(float)


def ff_monte_carlo(Q, R, T, u, v_star, *, theta, eta=1.0, eta_u=1.0, activation="erf",
                   n=10_000_000, seed=0, chunk=1_000_000) -> dict:
    """Monte Carlo estimates (and standard errors, key ``<name>_se``) of the FF drift and
    observables at one state: ``dQ`` (K, K), ``dR`` (K, M), ``du`` (K,), ``eg``, ``loss``,
    ``gap``, from ``n`` samples drawn in chunks (memory ~ chunk·(K+M)·8 bytes × a few)."""
    Q, R, T = (np.asarray(a, dtype=float) for a in (Q, R, T))
    u, v_star = np.asarray(u, dtype=float), np.asarray(v_star, dtype=float)
    K, M = R.shape
    C = np.block([[Q, R], [R.T, T]])
    w, V = np.linalg.eigh(C)
    L = V * np.sqrt(np.clip(w, 0, None))          # C = L Lᵀ (works for singular C)
    rng = np.random.default_rng(seed)
    names = {"dQ": (K, K), "dR": (K, M), "du": (K,), "eg": (), "loss": (), "gap": ()}
    s1 = {k: np.zeros(sh) for k, sh in names.items()}
    s2 = {k: np.zeros(sh) for k, sh in names.items()}
    done = 0
    while done < n:
        m = min(chunk, n - done)
        z = rng.standard_normal((m, K + M)) @ L.T
        lam, nu = z[:, :K], z[:, K:]
        y = np.where(erf(nu / math.sqrt(2.0)) @ v_star >= 0, 1.0, -1.0)
        zp, zm = lam + u * y[:, None], lam - u * y[:, None]
        hp, hm = _g(zp, activation), _g(zm, activation)
        Gp, Gm = (hp ** 2).sum(1), (hm ** 2).sum(1)
        ap = -2.0 * expit(theta - Gp)[:, None] * hp * _gp(zp, activation)
        am = 2.0 * expit(Gm - theta)[:, None] * hm * _gp(zm, activation)
        d = ap + am
        dl = d[:, :, None] * lam[:, None, :]
        vals = {
            "dQ": -eta * (dl + np.swapaxes(dl, 1, 2)) + eta ** 2 * d[:, :, None] * d[:, None, :],
            "dR": -eta * d[:, :, None] * nu[:, None, :],
            "du": -eta_u * y[:, None] * (ap - am),
            "loss": np.logaddexp(0.0, theta - Gp) + np.logaddexp(0.0, Gm - theta),
            "gap": Gp - Gm,
        }
        D = (_g(lam + u, activation) ** 2).sum(1) - (_g(lam - u, activation) ** 2).sum(1)
        vals["eg"] = np.where(D == 0, 0.5, (np.sign(D) != y).astype(float))
        for k, v in vals.items():
            s1[k] += v.sum(0)
            s2[k] += (v * v).sum(0)
        done += m
    out = {}
    for k in names:
        mean = s1[k] / n
        out[k] = mean
        out[k + "_se"] = np.sqrt(np.maximum(s2[k] / n - mean ** 2, 0.0) / (n - 1))
    return out
