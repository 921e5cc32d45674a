"""An independent high-precision reference for the relu order-parameter ODEs (bp, fa, afa):
nested Gauss–Legendre rules split at the kinks, in plain NumPy.

Every expectation of these rules is ``E[Π_a z_a^{p_a} θ(z_a)^{s_a}]`` over at most four
jointly Gaussian fields. In Cholesky coordinates ``z_a = Σ_{j≤a} L_aj ξ_j`` the field z_a
has exactly one kink in ξ_a once ξ_0 … ξ_{a−1} are fixed, at ``ξ_a = −m_a / L_aa`` with
``m_a = Σ_{j<a} L_aj ξ_j``; integrating from the innermost level out, the integrand of
level a is smooth on each side of that kink (the inner integrals are smooth functions of
the outer ξ). So each outer level is a Gauss–Legendre rule on ``[−B, B]`` split at the
kink (exponential convergence), and the innermost level is analytic:
``∫ θ(m + sξ)(m + sξ)^p φ(ξ) dξ`` from the truncated moments of the standard normal.

Nothing here is shared with :mod:`theory.relu_kernels` (Stein's lemma and orthant
probabilities) or with the generated tables: the right-hand side is assembled from the
rule's definition (``e = Σ_u A_u relu(z_u)``, ``δ_k = c_k θ(λ_k) e``), and the b drift of
adaptive feedback from Stein's lemma in the other direction, ``(b, c)ᵀ C⁻¹ E[z δ_k]``.
"""

import math
from functools import lru_cache
from itertools import combinations_with_replacement as cwr

import numpy as np
from scipy.special import comb, ndtr

#: outer integration range in ξ (φ(9) ≈ 1e-18)
B = 9.0


@lru_cache(maxsize=8)
def _gl(n):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def _split_nodes(lo_kink, n):
    """Nodes and weights (times φ) on [−B, B] split at the kinks (one per row)."""
    x, w = _gl(n)
    k = np.clip(lo_kink, -B, B)[..., None]
    # left piece [−B, k], right piece [k, B]
    hl, hr = (k + B) / 2, (B - k) / 2
    xl, xr = -B + hl * (x + 1), k + hr * (x + 1)
    nodes = np.concatenate([xl, xr], axis=-1)
    wts = np.concatenate([hl * w, hr * w], axis=-1)
    return nodes, wts * np.exp(-0.5 * nodes**2) / math.sqrt(2 * math.pi)


def _tail_moments(a, p):
    """``∫_a^∞ ξ^j φ(ξ) dξ`` for j = 0 … p (arrays like a)."""
    ph = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    out = [ndtr(-a), ph]
    for j in range(2, p + 1):
        out.append(a ** (j - 1) * ph + (j - 1) * out[j - 2])
    return out[: p + 1]


def _gauss_moment(j):
    return 0.0 if j % 2 else float(np.prod(np.arange(j - 1, 0, -2))) if j else 1.0


def _inner(m, s, p, step):
    """``∫ (m + sξ)^p θ(m + sξ)^step φ(ξ) dξ`` (s > 0)."""
    if step:
        tm = _tail_moments(-m / s, p)
        return sum(comb(p, j) * m ** (p - j) * s**j * tm[j] for j in range(p + 1))
    return sum(comb(p, j) * m ** (p - j) * s**j * _gauss_moment(j) for j in range(p + 1))


def expect(C, factors, n=48):
    """``E[Π_a z_a^{p_a} θ(z_a)^{s_a}]`` for ``z ~ N(0, C)``; ``factors``: a list of
    ``(p_a, s_a)``, one per field of C (which must be positive definite)."""
    L = np.linalg.cholesky(np.asarray(C, float))
    d = L.shape[0]
    xi = []  # outer nodes, broadcast shapes (2n,), (2n, 2n), …
    w = np.ones(())
    val = np.ones(())
    for a in range(d - 1):
        m = sum(L[a, j] * xi[j] for j in range(a)) if a else np.zeros(())
        nodes, wts = _split_nodes(-m / L[a, a], n)
        xi = [x[..., None] for x in xi] + [nodes]
        w = w[..., None] * wts
        z = (m[..., None] if a else 0.0) + L[a, a] * nodes
        p, s = factors[a]
        f = z**p * (z > 0) if s else z**p
        val = val[..., None] * f
    a = d - 1
    m = sum(L[a, j] * xi[j] for j in range(a)) if a else np.zeros(())
    p, s = factors[a]
    return float(np.sum(w * val * _inner(m, L[a, a], p, s)))


class Moments:
    """The expectations of relu, θ and z over the fields of ``C`` that bp, fa and afa
    need, each over its own distinct fields (memoised)."""

    def __init__(self, C, n=48):
        self.C = np.asarray(C, float)
        self.n = n
        self._memo = {}

    def __call__(self, relu=(), step=(), lin=()):
        # per field: (power, step)
        pw, st = {}, {}
        for u in relu:
            pw[u] = pw.get(u, 0) + 1
            st[u] = 1
        for u in step:
            pw.setdefault(u, 0)
            st[u] = 1
        for u in lin:
            pw[u] = pw.get(u, 0) + 1
            st.setdefault(u, 0)
        keys = tuple(sorted((u, pw[u], st[u]) for u in pw))
        if keys not in self._memo:
            S = [u for u, _, _ in keys]
            self._memo[keys] = expect(self.C[np.ix_(S, S)], [(p, s) for _, p, s in keys], self.n)
        return self._memo[keys]


def reference_rhs(rule, state, eta, eta_v, n=48, moments=None, sigma=0.0):
    """``{"Q", "R", "v"[, "b"], "eg"}`` of bp, fa or afa with relu at output noise σ
    (``e = Σ_u A_u relu(z_u) − σζ``, ζ ~ N(0, 1) independent: it enters only E[δ_k δ_l],
    through ``σ² c_k c_l E[θ(λ_k) θ(λ_l)]``; ε_g is that of the noise-free output)."""
    K, M = state.K, state.M
    NU = K + M
    C = np.block([[state.Q, state.R], [state.R.T, state.T]])
    A = np.concatenate([state.v, -np.asarray(state.v_star)])
    mo = moments or Moments(C, n)
    c = np.asarray(state.v if rule == "bp" else state.b, float)
    # E[δ_k z_j] = c_k Σ_u A_u E[θ(λ_k) relu(z_u) z_j]
    Edz = np.array(
        [
            [
                c[k] * sum(A[u] * mo(relu=[u], step=[k], lin=[j]) for u in range(NU))
                for j in range(NU)
            ]
            for k in range(K)
        ]
    )
    Edd = np.zeros((K, K))
    for k in range(K):
        for l in range(k, K):
            s = 0.0
            for u, u2 in cwr(range(NU), 2):
                s += (1 if u == u2 else 2) * A[u] * A[u2] * mo(relu=[u, u2], step=[k, l])
            s += sigma**2 * mo(step=[k, l])
            Edd[k, l] = Edd[l, k] = c[k] * c[l] * s
    Ees = np.array([sum(A[u] * mo(relu=[u, k]) for u in range(NU)) for k in range(K)])
    out = {
        "Q": -eta * (Edz[:, :K] + Edz[:, :K].T) + eta**2 * Edd,
        "R": -eta * Edz[:, K:],
        "v": -eta_v * Ees,
    }
    if rule == "afa":
        Bv = np.concatenate([state.b, state.c])
        # Stein: Σ_j B_j E[∂_j δ_k] = Bᵀ C⁻¹ E[z δ_k]
        out["b"] = -eta * (np.linalg.solve(C, Edz.T).T @ Bv)
    out["eg"] = 0.5 * sum(A[u] * A[u2] * mo(relu=[u, u2]) for u in range(NU) for u2 in range(NU))
    return out
