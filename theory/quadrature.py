"""Fixed deterministic rules for Gaussian expectations ``E[f(z)]``, ``z ~ N(0, C)``
(docs/quadrature.md).

Write ``z = L ξ`` with ``L Lᵀ = C`` and integrate over a standard normal ``ξ ∈ R^dim`` with a
rule ``Σ_q w_q f(L ξ_q)`` whose nodes ``ξ_q`` and weights ``w_q`` never change, so that the
result is a smooth, deterministic function of ``C`` (an ODE right-hand side built on it
can be integrated by an adaptive solver). Schemes:

``gauss-hermite``
    Tensor product of the ``n``-point probabilists' Gauss–Hermite rule (weight
    ``e^(−ξ²/2)/√(2π)``): ``n^dim`` nodes, exact for polynomials of degree ``2n − 1`` in
    every coordinate, spectrally convergent for analytic integrands (erf, tanh, sigmoid);
    slow (algebraic) for kinks (ReLU's derivative is a step).
``sobol``
    ``n`` (a power of two) scrambled Sobol points (scipy's Owen scrambling with a fixed
    ``seed``) mapped through the inverse normal CDF, equal weights ``1/n``: error
    ~ ``n^(-1)`` up to logs, insensitive to dim; the choice beyond a few fields.
``marginal``
    Marginal Gauss–Hermite (:mod:`theory.codegen_marginal`): for rules with
    ``δ_k = h(λ_k) e`` every expectation is a sum of expectations over at most four fields,
    each integrated by an ``n``-point tensor rule over its own marginal covariance.
    The :class:`QuadratureRule` carries the 1-D nodes; the field subsets and their terms
    are built for K, M by the code generator (``nodes``/``weights`` here give the plain
    tensor rule over ``dim`` variables). Default ``n`` = :data:`MARGINAL_DEFAULT_N`.
``auto``
    Sobol with :func:`default_n` points (2^14 for ≤ 4 variables, 2^15 for 5–6, 2^16
    beyond). Tensor Gauss–Hermite is spectrally accurate while the field variances are
    ≲ 1, but erf(λ/√2), tanh λ and g'(λ) turn step-like in ξ when Var λ grows (tanh is
    analytic only in a strip), and then its error explodes (measured at K = M = 2: 1e-4 at
    Q ≈ 1 but 1e-2 for erf at Q ≈ 3 and 0.4 for tanh at the end of an FA run, with 12
    nodes per field), while scrambled Sobol stays at ~1e-5–1e-4 relative with 2^14 points
    whatever the variances. Gauss–Hermite remains the choice for high-accuracy checks at
    moderate variance (``scheme="gauss-hermite"``).

The factor ``L`` is the Cholesky factor of ``C`` when ``C`` is positive definite; when a
pivot is not clearly positive (a singular, positive semi-definite ``C``, e.g. a student
unit aligned with a teacher unit) the eigen-factor ``V diag(√max(μ, 0))`` is used instead,
which still satisfies ``L Lᵀ = C`` to round-off.

Public API::

    QuadratureRule(scheme, n, dim, nodes (P, dim), weights (P,), seed)
    make_rule(dim, scheme="auto", n=None, seed=0) -> QuadratureRule
    coarse_rule(rule) -> QuadratureRule        (the rule behind the error estimate)
    factor(C) -> L                             (numpy)
    factor_nb(C, L) -> 0 ok / 1 eigen fallback / -1 not PSD   (numba, in place)
    map_node(L, xi, z)                         (numba: z = L ξ, lower-triangular L)
    expect(f, C, rule)                         (numpy: Σ_q w_q f(Z)[q], Z = ξ Lᵀ (P, dim))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

__all__ = [
    "QuadratureRule",
    "make_rule",
    "coarse_rule",
    "factor",
    "factor_nb",
    "map_node",
    "expect",
    "SCHEMES",
    "GH_DEFAULT_N",
    "GH_N_RANGE",
    "SOBOL_N_RANGE",
    "MAX_GH_NODES",
    "check_options",
    "default_n",
    "MARGINAL_DEFAULT_N",
    "MARGINAL_MAX_DIM",
    "MARGINAL_N_FACTOR",
    "marginal_n",
    "RTOL_DEFAULT",
    "RTOL_RANGE",
    "check_rtol",
    "coarse_rules",
]

SCHEMES = ("auto", "gauss-hermite", "sobol", "marginal")
#: default nodes per field of the marginal scheme (theory.codegen_marginal)
MARGINAL_DEFAULT_N = 24
#: Gauss–Hermite nodes per field used when a rule is built without a state to choose n
#: from (:func:`theory.codegen_quad.build_quad_system` called directly). ``odeflow.solve``
#: never uses them: it picks the smallest n whose error estimate meets ``rtol``
#: (:mod:`theory.tolerance`). Beyond 6 fields there is no default (n = 3 per field was 30–63 %
#: wrong at K = M = 4): ValueError.
GH_DEFAULT_N = {1: 48, 2: 32, 3: 20, 4: 12, 5: 8, 6: 6}
#: the tolerance every scheme promises by default: ``max_i |f_i − f_i^exact| ≤ rtol · scale``,
#: scale = the largest ``|f_i|`` of the right-hand side (theory.tolerance)
RTOL_DEFAULT = 1e-6
RTOL_RANGE = (1e-13, 1.0)
GH_N_RANGE = (2, 100)
SOBOL_N_RANGE = (64, 1 << 21)  # explicit nodes: 2^21 × dim doubles at most
SOBOL_DEFAULT_N = 1 << 14
#: refuse tensor rules with more nodes than this (time of every evaluation; the nodes of a
#: tensor rule are generated inside the loop, so memory is no limit)
MAX_GH_NODES = 50_000_000
#: the marginal scheme integrates over at most this many fields at once
MARGINAL_MAX_DIM = 4
#: nodes per field of the marginal scheme's d-field subsets, in units of n
MARGINAL_N_FACTOR = {1: 4, 2: 3, 3: 3, 4: 1}


@dataclass(frozen=True, eq=False)
class QuadratureRule:
    """Nodes and weights of a rule for ``E[f(ξ)]``, ``ξ ~ N(0, I_dim)``.

    Attributes
    ----------
    scheme : {"gauss-hermite", "sobol"}
    n : int
        Nodes per dimension (Gauss–Hermite) or number of points (Sobol).
    dim : int
    seed : int or None
        Scrambling seed (Sobol only).
    x1, w1 : (n,) arrays or None
        The one-dimensional Gauss–Hermite nodes and weights (tensor rule); None for Sobol.
    nodes : (P, dim) array
        All nodes (built on demand for a tensor rule).
    weights : (P,) array, summing to 1
    """

    scheme: str
    n: int
    dim: int
    seed: int | None = None
    x1: np.ndarray | None = None
    w1: np.ndarray | None = None
    _nodes: np.ndarray | None = None
    _weights: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of nodes P (marginal: of the largest subset, ``n^min(dim, 4)``; the total
        depends on K and M, see ``theory.codegen_marginal.table_nodes``)."""
        if self.scheme == "marginal":
            return self.n ** min(self.dim, MARGINAL_MAX_DIM)
        return self.n**self.dim if self.scheme == "gauss-hermite" else self.n

    @property
    def nodes(self) -> np.ndarray:
        if self._nodes is not None:
            return self._nodes
        grids = np.meshgrid(*([self.x1] * self.dim), indexing="ij")
        return np.ascontiguousarray(np.stack([g.ravel() for g in grids], axis=1))

    @property
    def weights(self) -> np.ndarray:
        if self._weights is not None:
            return self._weights
        W = self.w1
        for _ in range(self.dim - 1):
            W = np.multiply.outer(W, self.w1)
        return W.ravel()

    def packed(self) -> np.ndarray:
        """The rule as the tail of a generated system's parameter vector:
        ``[0, P, dim, n, x1 (n), w1 (n)]`` (tensor Gauss–Hermite, nodes generated in the
        loop) or ``[1, P, dim, nodes (P·dim), weights (P)]`` (explicit nodes)."""
        if self.scheme == "gauss-hermite":
            return np.concatenate([[0.0, self.size, self.dim, self.n], self.x1, self.w1])
        if self.scheme == "marginal":  # the term tables follow (theory.codegen_marginal)
            parts = [[2.0, self.size, self.dim, self.n]]
            for d in range(1, MARGINAL_MAX_DIM + 1):
                x, w = _gh(marginal_n(self.n, d))
                parts += [[float(x.size)], x, w]
            return np.concatenate(parts)
        return np.concatenate([[1.0, self.size, self.dim], self.nodes.ravel(), self.weights])

    def describe(self) -> dict:
        return {
            "scheme": self.scheme,
            "n": self.n,
            "dim": self.dim,
            "nodes": self.size,
            "seed": self.seed,
        }


def _int_option(name, val, lo, hi):
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
        if isinstance(val, float) and val.is_integer():
            val = int(val)
        else:
            raise ValueError(
                f"quadrature option {name} must be an integer in [{lo}, {hi}], got {val!r}"
            )
    if not lo <= val <= hi:
        raise ValueError(f"quadrature option {name} = {val} is out of range; allowed: [{lo}, {hi}]")
    return int(val)


def default_n(dim: int, scheme: str) -> int:
    """Default nodes per variable (Gauss–Hermite) or points (Sobol) for ``dim`` variables."""
    if scheme == "gauss-hermite":
        if dim not in GH_DEFAULT_N:
            raise ValueError(
                f"quadrature scheme 'gauss-hermite' has no default n for {dim} fields (n^{dim} "
                "nodes: a small n is badly wrong, a large one unaffordable); give n "
                "explicitly, let odeflow.solve choose it from rtol, or use scheme='sobol'"
            )
        return GH_DEFAULT_N[dim]
    if scheme == "marginal":
        return MARGINAL_DEFAULT_N
    return (
        SOBOL_DEFAULT_N if dim <= 4 else (2 * SOBOL_DEFAULT_N if dim <= 6 else 4 * SOBOL_DEFAULT_N)
    )


def check_options(dim: int, scheme="auto", n=None, seed=0) -> tuple:
    """Validated ``(scheme, n, seed)`` with ``auto`` and ``n=None`` resolved.

    Raises ValueError naming the option (``scheme``, ``n``, ``seed``, ``dim``) that is out
    of range, and the allowed values.
    """
    dim = _int_option("dim", dim, 1, 64)
    if scheme not in SCHEMES:
        raise ValueError(
            f"quadrature option scheme = {scheme!r} is unknown; allowed: {', '.join(SCHEMES)}"
        )
    if scheme == "auto":
        scheme = "sobol"
    if n is None:
        n = default_n(dim, scheme)
    if scheme == "gauss-hermite":
        n = _int_option("n", n, *GH_N_RANGE)
        if n**dim > MAX_GH_NODES:
            raise ValueError(
                f"quadrature option n = {n} gives n^dim = {n}^{dim} = "
                f"{n**dim:.3g} Gauss–Hermite nodes, more than {MAX_GH_NODES}; "
                "lower n or use scheme='sobol'"
            )
    elif scheme == "marginal":
        # the number of nodes depends on K and M: checked by theory.codegen_quad
        n = _int_option("n", n, *GH_N_RANGE)
    else:
        n = _int_option("n", n, *SOBOL_N_RANGE)
        if n & (n - 1):
            raise ValueError(
                f"quadrature option n = {n} must be a power of two for "
                "scheme='sobol' (Sobol points balance only in blocks of 2^m)"
            )
    seed = _int_option("seed", seed, 0, 2**63 - 1)
    return scheme, n, seed


def check_rtol(rtol) -> float:
    """``rtol`` as a float in :data:`RTOL_RANGE` (None → :data:`RTOL_DEFAULT`), else
    ValueError naming the option and the allowed range."""
    if rtol is None:
        return RTOL_DEFAULT
    lo, hi = RTOL_RANGE
    if isinstance(rtol, (bool, str)) or not isinstance(rtol, (int, float, np.floating)):
        raise ValueError(
            f"quadrature option rtol must be a number in [{lo:g}, {hi:g}], got {rtol!r}"
        )
    r = float(rtol)
    if not (math.isfinite(r) and lo <= r <= hi):
        raise ValueError(
            f"quadrature option rtol = {rtol!r} is out of range; allowed: [{lo:g}, {hi:g}]"
        )
    return r


def marginal_n(n: int, d: int) -> int:
    """Nodes per field of the marginal scheme for a subset of ``d`` fields:
    ``n · MARGINAL_N_FACTOR[d]``, at most 200 (numpy's Gauss–Hermite nodes overflow beyond
    ~300). The low-dimensional subsets are cheap, and at large field variance their
    integrals (E[h_k h_l], E[h'_k g_u], …, functions of one or two fields that turn
    step-like on the node spacing) dominated the error: measured at Q_kk = 2.7, n = 40,
    4.6e-5 relative with one n for all subsets, 3.5e-9 with these factors."""
    return int(min(n * MARGINAL_N_FACTOR[d], 200))


@lru_cache(maxsize=64)
def _gh(n):
    """The n-point probabilists' Gauss–Hermite rule, weights normalised to sum 1."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return np.ascontiguousarray(x), np.ascontiguousarray(w / w.sum())


@lru_cache(maxsize=64)
def _make(dim, scheme, n, seed):
    if scheme in ("gauss-hermite", "marginal"):
        x, w = np.polynomial.hermite_e.hermegauss(n)
        return QuadratureRule(
            scheme, n, dim, None, np.ascontiguousarray(x), np.ascontiguousarray(w / w.sum())
        )
    from scipy.stats import norm, qmc

    u = qmc.Sobol(d=dim, scramble=True, seed=seed).random_base2(int(round(math.log2(n))))
    return QuadratureRule(
        scheme, n, dim, seed, None, None, np.ascontiguousarray(norm.ppf(u)), np.full(n, 1.0 / n)
    )


def make_rule(
    dim: int, scheme: str = "auto", n: int | None = None, seed: int = 0
) -> QuadratureRule:
    """The rule for ``dim`` standard normal variables (see the module docstring).

    Parameters
    ----------
    dim : int
    scheme : {"auto", "gauss-hermite", "sobol", "marginal"}
    n : int, optional
        Nodes per dimension (Gauss–Hermite, 2…100, with ``n^dim ≤ MAX_GH_NODES``; marginal,
        2…100, the total checked by ``theory.codegen_quad``) or number of points (Sobol, a
        power of two in 64…2^21). Default: :func:`default_n`.
    seed : int
        Sobol scrambling seed.

    Raises
    ------
    ValueError
        An option out of range (the message names it).
    """
    scheme, n, seed = check_options(dim, scheme, n, seed)
    return _make(int(dim), scheme, n, seed if scheme == "sobol" else 0)


def coarse_rule(rule: QuadratureRule) -> QuadratureRule:
    """The first of :func:`coarse_rules` (kept for importers)."""
    return coarse_rules(rule)[0]


def coarse_n(n: int) -> int:
    """Nodes per field of the coarse Gauss–Hermite rule: ``n − max(2, 2⌊n/8⌋)`` (same
    parity as n). With ``n − 2`` the difference under-estimated the error of the finer rule
    where Gauss–Hermite has not entered its spectral regime (step-like integrands at large
    field variance: exact PEPITA, GH n = 12, read 8.7e-5 where the rule was 1e-4 off); a
    coarser partner makes the difference dominated by the partner's error, ≥ the finer
    rule's error once the error falls with n."""
    return max(GH_N_RANGE[0], n - max(2, 2 * (n // 8)))


def coarse_rules(rule: QuadratureRule) -> list:
    """The cheaper rules whose largest disagreement with ``rule`` is the error estimate
    (:meth:`theory.codegen_quad.QuadSystem.error_estimate`):

    * Gauss–Hermite (tensor or marginal): one rule with :func:`coarse_n` nodes per field;
    * Sobol: two rules of half the points with two other scrambling seeds. The error of a
      scrambled rule is a random variable; the error of each half rule is ≥ that of the
      full one on average (×2 for n⁻¹, ×2.8 for n⁻¹·⁵), and the larger of two independent
      differences rarely falls below the full rule's error.
    """
    if rule.scheme in ("gauss-hermite", "marginal"):
        return [make_rule(rule.dim, rule.scheme, coarse_n(rule.n))]
    half = max(SOBOL_N_RANGE[0], rule.n // 2)
    return [make_rule(rule.dim, "sobol", half, rule.seed + j) for j in (1, 2)]


# ----------------------------------------------------------------------------- factor
#: relative size below which a Cholesky pivot counts as zero (singular C)
PIVOT_RTOL = 1e-10


def factor(C) -> np.ndarray:
    """A lower-triangular ``L`` with ``L Lᵀ = C`` (Cholesky), or the eigen-factor
    ``V diag(√max(μ, 0))`` when ``C`` is singular (positive semi-definite).

    Raises ValueError if ``C`` is not symmetric positive semi-definite."""
    C = np.asarray(C, dtype=float)
    L = np.zeros_like(C)
    code = factor_nb(C, L)
    if code < 0:
        raise ValueError(
            "the covariance is not positive semi-definite (smallest eigenvalue "
            f"{np.linalg.eigvalsh(C)[0]:.3g})"
        )
    return L


@njit(cache=True, nogil=True)
def factor_nb(C, L):
    """In place ``L`` with ``L Lᵀ = C``; returns 0 (Cholesky), 1 (eigen-factor fallback
    for a singular PSD ``C``), −1 (not PSD: L filled with NaN)."""
    n = C.shape[0]
    scale = 0.0
    for i in range(n):
        scale = max(scale, abs(C[i, i]))
    tol = PIVOT_RTOL * max(scale, 1e-300)
    ok = True
    for j in range(n):
        s = C[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if s <= tol:
            ok = False
            break
        d = math.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, n):
            t = C[i, j]
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / d
        for i in range(j):
            L[i, j] = 0.0
    if ok:
        return 0
    mu, V = np.linalg.eigh(C)
    if mu[0] < -1e-9 * max(scale, 1.0):
        for i in range(n):
            for j in range(n):
                L[i, j] = np.nan
        return -1
    for j in range(n):
        r = math.sqrt(max(mu[j], 0.0))
        for i in range(n):
            L[i, j] = V[i, j] * r
    return 1


@njit(cache=True, nogil=True, inline="always")
def map_node(L, xi, z):
    """``z = L ξ`` (full product: L may be the dense eigen-factor)."""
    n = L.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += L[i, j] * xi[j]
        z[i] = s


def expect(f, C, rule: QuadratureRule | None = None, **options):
    """``E[f(z)]`` for ``z ~ N(0, C)`` with a fixed rule (numpy level).

    Parameters
    ----------
    f : callable
        ``f(Z)`` for ``Z`` of shape ``(P, dim)`` returning an array with leading axis P.
    C : (dim, dim) array
    rule : QuadratureRule, optional
        Default ``make_rule(dim, **options)``.
    """
    C = np.atleast_2d(np.asarray(C, dtype=float))
    dim = C.shape[0]
    if rule is None:
        rule = make_rule(dim, **options)
    if rule.dim != dim:
        raise ValueError(f"the rule has dim = {rule.dim} but C is {dim}×{dim}")
    Z = rule.nodes @ factor(C).T
    val = np.asarray(f(Z), dtype=float)
    return np.tensordot(rule.weights, val, axes=(0, 0))
