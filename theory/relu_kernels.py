"""Exact Gaussian moments of ReLU terms: the marginal scheme for relu
(docs/quadrature.md, "ReLU: exact moments").

With ``g = relu``, ``g' = θ`` (the step) and a rule ``δ_k = h(λ_k) e`` with ``h = c θ(λ_k)``
(bp, fa, afa), every integral of the marginal term tables (:mod:`theory.codegen_marginal`)
is ``c E[z^m 1{z_O > 0}]`` over at most four jointly Gaussian fields ``z ~ N(0, C_S)``: a
monomial ``z^m`` of degree ≤ 2 (relu(z) = z θ(z), the factor z) times the indicator of an
orthant (the steps). Stein's lemma, ``E[z_i f(z)] = Σ_j C_ij E[∂_j f(z)]`` with
``∂_j θ(z_j) = δ(z_j)``, reduces the moments to orthant probabilities::

    T0(O)       = P(z_O > 0)
    T1(O; i)    = E[z_i 1_O]     = Σ_{j∈O} C_ij φ_j T0(O∖j | z_j = 0)
    T2(O; i, k) = E[z_i z_k 1_O] = C_ik T0(O) + Σ_{j∈O} C_ij φ_j T1(O∖j; k | z_j = 0)

(``φ_j = 1/√(2π C_jj)``, the density of z_j at 0; conditioning on z_j = 0 leaves a centred
Gaussian with covariance ``C − C_{:j} C_{j:}/C_jj``). A Dirac factor (the derivative of h,
for the b drift of adaptive feedback, ``∂h/∂λ = c δ(λ)``) is one more conditioning:
``E[δ(z_j) F] = φ_j E[F | z_j = 0]``. Orthant probabilities of ≤ 3 centred Gaussians are
closed forms (``1/4 + asin ρ/2π``; ``1/8 + Σ asin ρ_ab/4π``); four fields need a 1-D
integral: Plackett's identity ``∂P/∂ρ_ij = φ₂(0, 0; ρ_ij) P(z_k, z_l > 0 | z_i = z_j = 0)``
integrated along the path that scales the correlations between two pairs {a, b}, {c, d}
by ``t ∈ [0, 1]`` (positive definite all along), from ``P(t=0) = P₂(ρ_ab) P₂(ρ_cd)``::

    P₄ = P₂(ρ_ab) P₂(ρ_cd) + ∫₀^{π/2} Σ_{i∈{a,b}, j∈{c,d}} ρ_ij cos ϑ / (2π √(1 − t² ρ_ij²))
                                        · (1/4 + asin ρ_kl|ij(t) / 2π) dϑ,   t = sin ϑ

with the ``n``-point Gauss–Legendre rule in ϑ (the substitution removes the square-root
singularity of a cross correlation → ±1 at t = 1; the pairing with the smallest largest
cross correlation is taken). That integral is the only approximation: it converges
exponentially in n, and n against fewer nodes is the error estimate.

A field whose (conditional) variance is below ``DEGEN`` × the subset's largest variance is
identically zero: its step counts ½ (the symmetric limit, which makes the Stein sums of two
perfectly correlated fields add up to the right value), its monomial factor 0.

Included in every generated marginal module (:func:`theory.emit.include`); used when the
generated constant ``CLOSED`` is 1. The block between ``# >>> generated`` and ``# <<<
generated`` holds stand-ins (bp with relu) for what the generated module defines: the
per-kind degree, step and Dirac flags of the table factors (kinds 0 one, 1 g, 2 g', 3 z,
4 h, 5 h', 6 s) and the unit functions ``_h``, ``_s``.
"""

import math

import numpy as np
from numba import njit

from theory.quadrature import factor_nb

# isort: split
# >>> generated
KIND_DEG = (0, 1, 0, 1, 0, 0, 1)
KIND_STEP = (0, 1, 1, 0, 1, 0, 1)
KIND_DIRAC = (0, 0, 0, 0, 0, 1, 0)
HP_MULT = 1.0


@njit(cache=True, nogil=True, inline="always")
def _h(lam_, G_, GP_, vk_, bk_, rp):
    return vk_ * GP_


@njit(cache=True, nogil=True, inline="always")
def _s(lam_, G_, GP_, vk_, bk_, rp):
    return G_


# <<< generated

#: relative (conditional) variance below which a field counts as identically zero
DEGEN = 1e-12
_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def gauss_legendre_theta(n):
    """The n-point Gauss–Legendre rule on [0, π/2] (Newton on the Legendre recurrence)."""
    t = np.empty(n)
    w = np.empty(n)
    for i in range(n):
        x = math.cos(math.pi * (i + 0.75) / (n + 0.5))
        dp = 1.0
        for _ in range(100):
            p0 = 1.0
            p1 = x
            for k in range(2, n + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            dp = n * (x * p1 - p0) / (x * x - 1.0)
            dx = p1 / dp
            x -= dx
            if abs(dx) < 1e-16:
                break
        p0 = 1.0
        p1 = x
        for k in range(2, n + 1):
            p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
        dp = n * (x * p1 - p0) / (x * x - 1.0)
        t[i] = (x + 1.0) * math.pi / 4.0
        w[i] = 2.0 / ((1.0 - x * x) * dp * dp) * math.pi / 4.0
    return t, w


@njit(cache=True, nogil=True, inline="always")
def _asin(x):
    return math.asin(min(1.0, max(-1.0, x)))


@njit(cache=True, nogil=True, inline="always")
def _corr(C, a, b):
    s = C[a, a] * C[b, b]
    if s <= 0.0:
        return 0.0
    return C[a, b] / math.sqrt(s)


@njit(cache=True, nogil=True)
def _cond(C, j):
    """The covariance of z given z_j = 0 (row and column j zero)."""
    out = np.empty((4, 4))
    cjj = C[j, j]
    for a in range(4):
        for b in range(4):
            out[a, b] = C[a, b] - C[a, j] * C[j, b] / cjj
    for a in range(4):
        out[a, j] = 0.0
        out[j, a] = 0.0
    return out


@njit(cache=True, nogil=True)
def _clean(C, O, tol):
    """(O without its identically-zero fields, 0.5^their number)."""
    fac = 1.0
    for a in range(4):
        if (O >> a) & 1 and C[a, a] <= tol:
            O &= ~(1 << a)
            fac *= 0.5
    return O, fac


@njit(cache=True, nogil=True)
def _p4(C, idx, tn, tw):
    """P(z_idx > 0) for four fields of positive variance (module docstring)."""
    R = np.empty((4, 4))
    for a in range(4):
        for b in range(4):
            R[a, b] = _corr(C, idx[a], idx[b])
    # the pairing {a, b} | {c, d} whose largest cross correlation is smallest
    pairs = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2))
    best = 0
    bmax = 2.0
    for q in range(3):
        a, b, c, d = pairs[q]
        m = max(max(abs(R[a, c]), abs(R[a, d])), max(abs(R[b, c]), abs(R[b, d])))
        if m < bmax:
            bmax = m
            best = q
    a, b, c, d = pairs[best]
    grp = np.array([a, b, c, d])
    base = (0.25 + _asin(R[a, b]) / _TWO_PI) * (0.25 + _asin(R[c, d]) / _TWO_PI)
    tot = 0.0
    for q in range(tn.shape[0]):
        t = math.sin(tn[q])
        ct = math.cos(tn[q])
        acc = 0.0
        for ii in range(2):
            for jj in range(2):
                i = grp[ii]
                j = grp[2 + jj]
                k = grp[1 - ii]
                l = grp[3 - jj]
                r = R[i, j]
                if r == 0.0:
                    continue
                rij = t * r
                rki = R[k, i]
                rlj = R[l, j]
                rkj = t * R[k, j]
                rli = t * R[l, i]
                rkl = t * R[k, l]
                den = 1.0 - rij * rij
                skl = rkl - (rki * rli - rij * (rki * rlj + rkj * rli) + rkj * rlj) / den
                skk = 1.0 - (rki * rki - 2.0 * rij * rki * rkj + rkj * rkj) / den
                sll = 1.0 - (rli * rli - 2.0 * rij * rli * rlj + rlj * rlj) / den
                rho = 0.0
                if skk > 0.0 and sll > 0.0:
                    rho = skl / math.sqrt(skk * sll)
                acc += r * ct / (_TWO_PI * math.sqrt(den)) * (0.25 + _asin(rho) / _TWO_PI)
        tot += tw[q] * acc
    return base + tot


@njit(cache=True, nogil=True)
def _t0(C, O, tol, tn, tw):
    """P(z_O > 0) (module docstring), O a bit mask over the four slots."""
    O, fac = _clean(C, O, tol)
    # the slots of O in increasing order (no allocation: this runs per term)
    i0 = i1 = i2 = -1
    m = 0
    for a in range(4):
        if (O >> a) & 1:
            if m == 0:
                i0 = a
            elif m == 1:
                i1 = a
            elif m == 2:
                i2 = a
            m += 1
    if m == 0:
        return fac
    if m == 1:
        return 0.5 * fac
    if m == 2:
        return fac * (0.25 + _asin(_corr(C, i0, i1)) / _TWO_PI)
    if m == 3:
        s = _asin(_corr(C, i0, i1)) + _asin(_corr(C, i0, i2)) + _asin(_corr(C, i1, i2))
        return fac * (0.125 + s / (2.0 * _TWO_PI))
    return fac * _p4(C, np.arange(4), tn, tw)


@njit(cache=True, nogil=True)
def _t1(C, O, i, tol, tn, tw):
    """E[z_i 1{z_O > 0}]."""
    if C[i, i] <= tol:
        return 0.0
    O, fac = _clean(C, O, tol)
    s = 0.0
    for j in range(4):
        if (O >> j) & 1 and C[i, j] != 0.0:
            s += (
                C[i, j]
                / math.sqrt(_TWO_PI * C[j, j])
                * _t0(_cond(C, j), O & ~(1 << j), tol, tn, tw)
            )
    return fac * s


@njit(cache=True, nogil=True)
def _t2(C, O, i, k, tol, tn, tw):
    """E[z_i z_k 1{z_O > 0}]."""
    if C[i, i] <= tol or C[k, k] <= tol:
        return 0.0
    O, fac = _clean(C, O, tol)
    s = C[i, k] * _t0(C, O, tol, tn, tw)
    for j in range(4):
        if (O >> j) & 1 and C[i, j] != 0.0:
            s += (
                C[i, j]
                / math.sqrt(_TWO_PI * C[j, j])
                * _t1(_cond(C, j), O & ~(1 << j), k, tol, tn, tw)
            )
    return fac * s


@njit(cache=True, nogil=True)
def moment(CS, O, D, m0, m1, tol, tn, tw):
    """``E[Π_{j∈D} δ(z_j) · z_m0 z_m1 · 1{z_O > 0}]`` for ``z ~ N(0, CS)`` (4×4, unused
    slots zero); O, D bit masks over the slots, m0, m1 slot indices (−1: no factor)."""
    C = CS
    v = 1.0
    for j in range(4):
        if not (D >> j) & 1:
            continue
        if C[j, j] <= tol:
            return np.nan  # a Dirac at a field of zero variance
        if m0 == j or m1 == j:
            return 0.0  # z_j δ(z_j) = 0
        v /= math.sqrt(_TWO_PI * C[j, j])
        if (O >> j) & 1:  # θ(z_j) δ(z_j) = δ(z_j)/2
            O &= ~(1 << j)
            v *= 0.5
        C = _cond(C, j)
    if m0 < 0 and m1 < 0:
        return v * _t0(C, O, tol, tn, tw)
    if m1 < 0 or m0 < 0:
        return v * _t1(C, O, max(m0, m1), tol, tn, tw)
    return v * _t2(C, O, m0, m1, tol, tn, tw)


@njit(cache=True, nogil=True, inline="always")
def combine_terms(p, OC, NC, sig2, A, Bv, NU, I, acc):
    """acc[t] += c · cv[a] cv[b] cv[d] · I[i] for every packed row (i, t, c, a, b, d) of the
    table at ``p[OC:]``, with the coefficients cv = [1, σ², A, B] read from the state now
    (shared by the exact relu moments and the marginal scheme's node integrals)."""
    cv = np.empty(2 + 2 * NU)
    cv[0] = 1.0
    cv[1] = sig2
    for u in range(NU):
        cv[2 + u] = A[u]
        cv[2 + NU + u] = Bv[u]
    for r in range(NC):
        b6 = OC + 6 * r
        acc[int(p[b6 + 1])] += (
            p[b6 + 2] * cv[int(p[b6 + 3])] * cv[int(p[b6 + 4])] * cv[int(p[b6 + 5])] * I[int(p[b6])]
        )


@njit(cache=True, nogil=True)
def _run_closed(p, O, C, A, Bv, K, sig2, X, Wt, off, cnt, rp, acc):
    """:func:`theory.marginal_kernels._run` with every integral an exact moment: the
    table packed at p[O:] is evaluated and its contributions added to acc. The rule's n
    (``cnt[4]``, nodes per field of the 4-field subsets) is the number of Gauss–Legendre
    nodes of the four-field orthant probabilities. Returns −1 if a marginal covariance is
    not PSD (acc then NaN), else 0."""
    NS = int(p[O])
    NI = int(p[O + 1])
    NC = int(p[O + 2])
    OS = O + 3
    OI = OS + 6 * NS
    OC = OI + 8 * NI
    NU = A.shape[0]
    tn, tw = gauss_legendre_theta(cnt[4])
    I = np.zeros(NI)
    LS = np.zeros((4, 4))
    fld = np.zeros(4, np.int64)
    i0 = 0
    for s in range(NS):
        base = OS + 6 * s
        d = int(p[base])
        i1 = int(p[base + 5])
        CS = np.zeros((4, 4))
        for a in range(d):
            fld[a] = int(p[base + 1 + a])
        scale = 0.0
        for a in range(d):
            for c in range(d):
                CS[a, c] = C[fld[a], fld[c]]
            scale = max(scale, CS[a, a])
        # PSD test as everywhere else (theory.quadrature.factor_nb: Cholesky, the
        # eigenvalues only when a pivot is not clearly positive)
        if factor_nb(CS[:d, :d].copy(), LS[:d, :d]) < 0 or not (scale > 0.0):
            for j in range(acc.shape[0]):
                acc[j] = np.nan
            return -1
        tol = DEGEN * scale
        for i in range(i0, i1):
            coef = 1.0
            Om = 0
            Dm = 0
            m0 = -1
            m1 = -1
            ok = True
            for j in range(4):
                kd = int(p[OI + 8 * i + 2 * j])
                if kd == 0:
                    continue
                a = int(p[OI + 8 * i + 2 * j + 1])
                f = fld[a]
                if kd == 4:
                    coef *= _h(1.0, 1.0, 1.0, A[f], Bv[f], rp)
                elif kd == 5:
                    coef *= HP_MULT * _h(1.0, 1.0, 1.0, A[f], Bv[f], rp)
                elif kd == 6:
                    coef *= _s(1.0, 1.0, 1.0, A[f], Bv[f], rp)
                for _ in range(KIND_DEG[kd]):
                    if m0 < 0:
                        m0 = a
                    elif m1 < 0:
                        m1 = a
                    else:
                        ok = False  # degree > 2: refused by the generator
                if KIND_STEP[kd]:
                    Om |= 1 << a
                if KIND_DIRAC[kd]:
                    Dm |= 1 << a
            if not ok:
                I[i] = np.nan
            elif coef != 0.0:
                I[i] = coef * moment(CS, Om, Dm, m0, m1, tol, tn, tw)
        i0 = i1
    combine_terms(p, OC, NC, sig2, A, Bv, NU, I, acc)
    return 0
