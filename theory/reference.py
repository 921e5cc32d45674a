"""Hand-written reference implementation of the BP / FA / AFA equations of docs/theory.md §4
and §5.1–5.2, in plain numpy.

This module is deliberately *not* derived: it transcribes the published-style formulas
term by term, so it is an independent oracle for the symbolic derivation
(``tests/theory``) and the NumPy baseline that ``benchmarks/bench_ode.py`` integrates with
``scipy.integrate.solve_ivp``. Do not use it for production integration: it is slow.
"""

from __future__ import annotations

import numpy as np

from .state import OrderParameters

__all__ = ["I2", "I3", "I4", "J2", "rhs", "noise_covariance"]

_TWO_PI = 2.0 / np.pi


def I2(C11, C12, C22, activation="erf"):
    if activation == "linear":
        return C12
    return _TWO_PI * np.arcsin(C12 / np.sqrt((1 + C11) * (1 + C22)))


def J2(C11, C12, C22, activation="erf"):
    if activation == "linear":
        return 1.0
    return _TWO_PI / np.sqrt(1 + C11 + C22 + C11 * C22 - C12**2)


def I3(C, activation="erf"):
    """``E[g'(a) b g(c)]`` for the 3×3 covariance ``C`` of (a, b, c)."""
    if activation == "linear":
        return C[1, 2]
    L3 = (1 + C[0, 0]) * (1 + C[2, 2]) - C[0, 2] ** 2
    return _TWO_PI / np.sqrt(L3) * (C[1, 2] * (1 + C[0, 0]) - C[0, 1] * C[0, 2]) / (1 + C[0, 0])


def I4(C, activation="erf"):
    """``E[g'(a) g'(b) g(c) g(d)]`` for the 4×4 covariance ``C`` of (a, b, c, d)."""
    if activation == "linear":
        return C[2, 3]
    L4 = (1 + C[0, 0]) * (1 + C[1, 1]) - C[0, 1] ** 2
    L0 = (
        L4 * C[2, 3]
        - C[1, 2] * C[1, 3] * (1 + C[0, 0])
        - C[0, 2] * C[0, 3] * (1 + C[1, 1])
        + C[0, 1] * C[0, 2] * C[1, 3]
        + C[0, 1] * C[0, 3] * C[1, 2]
    )
    L1 = (
        L4 * (1 + C[2, 2])
        - C[1, 2] ** 2 * (1 + C[0, 0])
        - C[0, 2] ** 2 * (1 + C[1, 1])
        + 2 * C[0, 1] * C[0, 2] * C[1, 2]
    )
    L2 = (
        L4 * (1 + C[3, 3])
        - C[1, 3] ** 2 * (1 + C[0, 0])
        - C[0, 3] ** 2 * (1 + C[1, 1])
        + 2 * C[0, 1] * C[0, 3] * C[1, 3]
    )
    return 4 / np.pi**2 / np.sqrt(L4) * np.arcsin(L0 / np.sqrt(L1 * L2))


def _sub(C, idx):
    return C[np.ix_(idx, idx)]


def _fields(state: OrderParameters):
    """Covariance of (λ_1..λ_K, ν_1..ν_M) and index lists of students and teachers."""
    K, M = state.K, state.M
    return state.field_covariance(), list(range(K)), list(range(K, K + M))


def _S(C, i, k, stud, teach, v, vs, sigma, activation):
    """The η²-bracket of dQ_ik and of Σ_ik: E[g'(λ_i) g'(λ_k) (y − ŷ)²] term by term."""
    s = 0.0
    for a, n in enumerate(teach):
        for b, m in enumerate(teach):
            s += vs[a] * vs[b] * I4(_sub(C, [i, k, n, m]), activation)
    for a, j in enumerate(stud):
        for b, n in enumerate(teach):
            s -= 2 * v[a] * vs[b] * I4(_sub(C, [i, k, j, n]), activation)
    for a, j in enumerate(stud):
        for b, l in enumerate(stud):
            s += v[a] * v[b] * I4(_sub(C, [i, k, j, l]), activation)
    s += sigma**2 * J2(C[i, i], C[i, k], C[k, k], activation)
    return s


def rhs(
    state: OrderParameters,
    rule: str,
    eta: float,
    eta_v: float,
    sigma: float = 0.0,
    activation: str = "erf",
) -> dict:
    """dQ/dα, dR/dα, dv/dα (and db/dα for ``afa``) at ``state`` for rule bp, fa or afa.

    Implements, with ``f = v`` (bp) or ``f = b`` (fa, afa)::

        dR_in = η f_i [Σ_m v*_m I3(i,n,m) − Σ_j v_j I3(i,n,j)]
        dQ_ik = η f_i [Σ_m v*_m I3(i,k,m) − Σ_j v_j I3(i,k,j)] + (i ↔ k)
              + η² f_i f_k [Σ v*v* I4 − 2 Σ v v* I4 + Σ v v I4 + σ² J2]
        dv_i  = η_v [Σ_n v*_n I2(i,n) − Σ_j v_j I2(i,j)]
        db_k  = η b_k [Σ_m v*_m Î3(k; ν_m) − Σ_j v_j Î3(k; λ_j)]     (afa, §5.1)
    """
    if rule not in ("bp", "fa", "afa"):
        raise ValueError(f"the reference implements bp, fa, afa; got {rule!r}")
    C, stud, teach = _fields(state)
    K, M = state.K, state.M
    v, vs = state.v, state.v_star
    f = v if rule == "bp" else state.b

    def bracket(i, z):  # Σ_m v*_m I3(i, z, m) − Σ_j v_j I3(i, z, j)
        s = 0.0
        for a, m in enumerate(teach):
            s += vs[a] * I3(_sub(C, [i, z, m]), activation)
        for a, j in enumerate(stud):
            s -= v[a] * I3(_sub(C, [i, z, j]), activation)
        return s

    dR = np.array([[eta * f[i] * bracket(i, K + n) for n in range(M)] for i in range(K)])
    dQ = np.empty((K, K))
    for i in range(K):
        for k in range(K):
            dQ[i, k] = (
                eta * f[i] * bracket(i, k)
                + eta * f[k] * bracket(k, i)
                + eta**2 * f[i] * f[k] * _S(C, i, k, stud, teach, v, vs, sigma, activation)
            )
    dv = np.array(
        [
            eta_v
            * (
                sum(vs[a] * I2(C[i, i], C[i, n], C[n, n], activation) for a, n in enumerate(teach))
                - sum(v[a] * I2(C[i, i], C[i, j], C[j, j], activation) for a, j in enumerate(stud))
            )
            for i in range(K)
        ]
    )
    out = {"Q": dQ, "R": dR, "v": dv}
    if rule == "afa":
        b, c = state.b, state.c
        cov_phi = np.concatenate([b, c])  # Cov(φ, z)·√N for z = λ_j, ν_m

        def I3hat(kk, z):  # I3 on (λ_k, φ, z) with C12 = b_k, C23 = Cov(φ, z)
            Cz = np.array(
                [
                    [C[kk, kk], b[kk], C[kk, z]],
                    [b[kk], 0.0, cov_phi[z]],
                    [C[kk, z], cov_phi[z], C[z, z]],
                ]
            )
            return I3(Cz, activation)

        out["b"] = np.array(
            [
                eta
                * b[kk]
                * (
                    sum(vs[a] * I3hat(kk, m) for a, m in enumerate(teach))
                    - sum(v[a] * I3hat(kk, j) for a, j in enumerate(stud))
                )
                for kk in range(K)
            ]
        )
    return out


def noise_covariance(
    state: OrderParameters, eta: float, sigma: float = 0.0, activation: str = "erf"
) -> np.ndarray:
    """Σ_kl = η² σ_F² b_k b_l S_kl of docs/theory.md §5 (S: the η²-bracket of dQ)."""
    C, stud, teach = _fields(state)
    K = state.K
    b = state.b
    return np.array(
        [
            [
                eta**2
                * state.sigma_F2
                * b[i]
                * b[k]
                * _S(C, i, k, stud, teach, state.v, state.v_star, sigma, activation)
                for k in range(K)
            ]
            for i in range(K)
        ]
    )
