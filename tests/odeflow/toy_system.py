"""A linear toy ``System`` with the same interface as ``theory.codegen.build_system``.

``dy/dα = A y`` with A (n×n) packed in the parameter vector, so the exact solution is
``y(α) = expm(α A) y(0)``; ``ε_g = ½|y|²``; the noise covariance on the b block is a constant
matrix ``S`` (K×K) packed after A. The state vector follows ``theory.state.Layout`` so the
first K(K+1)/2 entries are Q (used by the solver's PSD check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.linalg import expm

from theory.state import Layout, OrderParameters


@dataclass(frozen=True)
class ToyRule:
    name: str = "toy"
    feedback: str = "v"


@njit(cache=True)
def toy_rhs(y, p, dy):
    n = y.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += p[i * n + j] * y[j]
        dy[i] = s


@njit(cache=True)
def toy_eg(y, p):
    s = 0.0
    for i in range(y.shape[0]):
        s += y[i] * y[i]
    return 0.5 * s


@njit(cache=True)
def toy_noise(y, p, S):
    n = y.shape[0]
    K = S.shape[0]
    off = n * n
    for k in range(K):
        for l in range(K):
            S[k, l] = p[off + k * K + l]


class ToySystem:
    """Linear system ``dy/dα = A y`` on the layout of (K, M) order parameters.

    Parameters
    ----------
    A : (n, n) array, n = layout.n
    K, M : ints
    adaptive : bool
        If True the layout carries a b block and :attr:`noise` is set (constant covariance
        ``Sigma`` per unit α on b).
    Sigma : (K, K) array, optional
    """

    activation = "erf"

    def __init__(self, A, K=2, M=2, adaptive=False, Sigma=None):
        self.K, self.M = K, M
        self.layout = Layout(K, M, adaptive_b=adaptive)
        self.rule = ToyRule(feedback="adaptive" if adaptive else "v")
        A = np.asarray(A, dtype=float)
        assert A.shape == (self.layout.n, self.layout.n)
        self.A = A
        self.Sigma = np.zeros((K, K)) if Sigma is None else np.asarray(Sigma, dtype=float)
        self.rhs = toy_rhs
        self.eg = toy_eg
        self.noise = toy_noise if adaptive else None

    def params(self, state, eta, eta_v, sigma):
        if self.layout.adaptive_b:
            state.require("b")
        return np.concatenate([self.A.ravel(), self.Sigma.ravel()])

    def exact(self, y0, alpha):
        """``expm(α A) y0`` for each α."""
        return np.array([expm(a * self.A) @ y0 for a in np.atleast_1d(alpha)])


def toy_state(K=2, M=2, b=None):
    """A valid initial state: Q = I + 0.2 offdiag, small R, v."""
    Q = np.eye(K) + 0.2 * (np.ones((K, K)) - np.eye(K)) / max(K - 1, 1)
    R = 0.1 * np.arange(1, K * M + 1).reshape(K, M) / (K * M)
    v = 0.3 + 0.1 * np.arange(K)
    kw = {}
    if b is not None:
        kw = dict(b=np.asarray(b, float), c=np.zeros(M), sigma_F2=1.0)
    return OrderParameters(Q=Q, R=R, T=np.eye(M), v=v, v_star=np.ones(M), **kw)


def stable_A(K=2, M=2, adaptive=False, seed=0, decay_Q=0.3):
    """A stable A that keeps the field covariance [[Q, R], [Rᵀ, T]] positive definite: the Q
    block only decays (Q(α) = e^{-decay_Q α} Q0), the R block rotates (norm-preserving) and
    decays faster (rate 0.5 > decay_Q/2), the rest (v, b) rotates, decays and is driven by Q."""
    lay = Layout(K, M, adaptive_b=adaptive)
    n, nQ, nR = lay.n, lay.nQ, K * M
    rng = np.random.default_rng(seed)
    A = np.zeros((n, n))
    A[:nQ, :nQ] = -decay_Q * np.eye(nQ)
    G = rng.normal(size=(nR, nR))
    A[nQ : nQ + nR, nQ : nQ + nR] = (G - G.T) * 0.5 - 0.5 * np.eye(nR)
    m = n - nQ - nR
    G = rng.normal(size=(m, m))
    A[nQ + nR :, nQ + nR :] = (G - G.T) * 0.5 - 0.5 * np.eye(m)
    A[nQ + nR :, :nQ] = 0.1 * rng.normal(size=(m, nQ))
    return A


def growing_v_A(K=2, M=2, rate=0.8, adaptive=False):
    """Only the v (and b) entries grow like e^{rate α}: ε_g = ½|y|² diverges while the field
    covariance stays physical."""
    lay = Layout(K, M, adaptive_b=adaptive)
    A = np.zeros((lay.n, lay.n))
    s = lay.slices["v"].start
    A[s:, s:] = rate * np.eye(lay.n - s)
    return A
