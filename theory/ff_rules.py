"""Activation-independent node rules of the Forward-Forward quadrature (:mod:`theory.ff`,
whose docstring gives the model, the quadrature and the layout of the parameter vector
``p``): the covariance of the fields and its Cholesky factor, the outer rule over the label
coordinates (Gauss–Legendre pieces split at the label's jump, or QMC points split there),
and the inner rules over the student fields (tensor Gauss–Hermite, the nested split rule).

Included, with :mod:`theory.ff_kernels`, in every generated FF module
(:func:`theory.emit.include`); the ``# >>> generated`` block holds the stand-in of the layout
constant ``_HEADER`` (``theory.ff._HEADER``) that the generated module defines.
"""

import math

import numpy as np
from numba import njit

_SQ2 = math.sqrt(2.0)
_INV_SQ2PI = 1.0 / math.sqrt(2.0 * math.pi)
_XMAX = 8.0  # the last ν and λ coordinates are integrated over [−8, 8] (tail 1e-15)
_NCELL = 6  # cells of width 8/3 (outer ν rule)
_LMAX = 60.0  # ε_g: monotone pieces of the decision are located on [−60, 60] ...
_LSTEP = 0.005  # ... on a grid of this spacing (once per evaluation)
_WMIN = 1e-18  # tensor nodes of smaller weight are skipped (their total is < 1e-12)
# split rule: every student coordinate is also cut where λ_k crosses a point of this grid, so
# that no piece is wider than 1 in λ where the activation bends (|λ| ≲ 6): the integrand's
# poles (those of s(θ − G), G = Σ g²) sit O(1) from the real axis *in λ*, i.e. O(1/√Q) in ξ,
# and a rule that is fine in ξ converges slowly once Q is large (Q_kk ≈ 6: Gauss–Hermite
# with 48 nodes is 1.5e-3 off)
_LCUT = 6.0
_NLCUT = 13  # cuts at λ = −6, −5, …, 6


@njit(cache=True, nogil=True, inline="always")
def _Phi(x):
    return 0.5 * math.erfc(-x / _SQ2)


@njit(cache=True, nogil=True, inline="always")
def _phi(x):
    return _INV_SQ2PI * math.exp(-0.5 * x * x)


@njit(cache=True, nogil=True)
def _erfinv(c):
    """Inverse error function: Giles' (2010) approximation polished by Newton steps."""
    w = -math.log((1.0 - c) * (1.0 + c))
    if w < 5.0:
        w = w - 2.5
        q = 2.81022636e-08
        q = 3.43273939e-07 + q * w
        q = -3.5233877e-06 + q * w
        q = -4.39150654e-06 + q * w
        q = 0.00021858087 + q * w
        q = -0.00125372503 + q * w
        q = -0.00417768164 + q * w
        q = 0.246640727 + q * w
        q = 1.50140941 + q * w
    else:
        w = math.sqrt(w) - 3.0
        q = -0.000200214257
        q = 0.000100950558 + q * w
        q = 0.00134934322 + q * w
        q = -0.00367342844 + q * w
        q = 0.00573950773 + q * w
        q = -0.0076224613 + q * w
        q = 0.00943887047 + q * w
        q = 1.00167406 + q * w
        q = 2.83297682 + q * w
    x = q * c
    # Halley steps (cubic: the approximation's ~1e-7 becomes round-off in one step)
    for _ in range(2):
        d = 1.1283791670955126 * math.exp(-x * x)
        if d == 0.0:
            break
        f = math.erf(x) - c
        dx = f / (d + x * f)
        x -= dx
        if abs(dx) <= 1e-9 * abs(x):
            break
    return x


# >>> generated
_HEADER = 13
# <<< generated


# ------------------------------------------------------------------ shared helpers
@njit(cache=True, nogil=True)
def _setup(y, p):
    """Covariance of the fields in integration order and its lower Cholesky factor.

    Outer (label) coordinates first: the outer integral runs where the label lives; given
    them, the label is fixed and the λ integrand is smooth, however well λ predicts the
    label. General label (``p[9] = 0``): order ``(ν in the order of p, λ)``. Linear label
    (``p[9] = 1``: y = sign(ζ), ζ = Σ_m sign(v*_m) ν_m): order ``(ζ, λ, ν)``; ν_m is then
    needed only through its regression on (ζ, λ) (its own residual is independent of
    everything else and enters linearly), i.e. the first 1 + K columns of its row. A
    non-positive pivot (a degenerate direction) gives a zero column — not
    theory.quadrature.factor_nb's eigen-factor fallback: the split integration needs the
    triangular structure (each coordinate depends only on those before it) even then.
    Returns ``K, M, MO, L`` (MO: number of outer coordinates).
    """
    K = int(p[0])
    M = int(p[1])
    lin = int(p[9]) == 1
    MO = 1 if lin else M
    n = MO + K + (M if lin else 0)
    o_vs = _HEADER + M * M
    o_pm = o_vs + M
    C = np.zeros((n, n))
    i = 0
    for a in range(K):
        for b in range(a, K):
            C[MO + a, MO + b] = y[i]
            C[MO + b, MO + a] = y[i]
            i += 1
    if lin:
        s = np.empty(M)
        for m in range(M):
            s[m] = 1.0 if p[o_vs + m] > 0.0 else -1.0
        for m in range(M):
            for m2 in range(M):
                C[MO + K + m, MO + K + m2] = p[_HEADER + m * M + m2]
        for m in range(M):  # Cov(ζ, ν_m) = (T s)_m; Var ζ = sᵀ T s
            t = 0.0
            for m2 in range(M):
                t += p[_HEADER + m * M + m2] * s[m2]
            C[0, MO + K + m] = t
            C[MO + K + m, 0] = t
            C[0, 0] += s[m] * t
        for a in range(K):
            za = 0.0
            for m in range(M):
                j = int(p[o_pm + m])
                r = y[i + a * M + m]
                C[MO + a, MO + K + j] = r
                C[MO + K + j, MO + a] = r
                za += s[j] * r
            C[0, MO + a] = za
            C[MO + a, 0] = za
    else:
        for a in range(K):
            for m in range(M):
                j = int(p[o_pm + m])  # teacher unit m sits at position j
                C[j, MO + a] = y[i + a * M + m]
                C[MO + a, j] = y[i + a * M + m]
        for m in range(M):
            for m2 in range(M):
                C[m, m2] = p[_HEADER + m * M + m2]
    L = np.zeros((n, n))
    for j in range(n):
        s2 = C[j, j]
        for k in range(j):
            s2 -= L[j, k] * L[j, k]
        if s2 <= 1e-14 * max(1.0, C[j, j]):
            continue
        d = math.sqrt(s2)
        L[j, j] = d
        for i2 in range(j + 1, n):
            t = C[i2, j]
            for k in range(j):
                t -= L[i2, k] * L[j, k]
            L[i2, j] = t / d
    return K, M, MO, L


@njit(cache=True, nogil=True)
def _offsets(p):
    K = int(p[0])
    M = int(p[1])
    nl = int(p[5])
    nn = int(p[6])
    ne = int(p[7])
    o_vs = _HEADER + M * M
    o_l = o_vs + 2 * M  # v_star (M), then the position of each unit
    o_n = o_l + 2 * nl
    o_e = o_n + 2 * nn  # ε_g points (ne, K − 1), then weights (ne)
    o_g = o_e + ne * max(K - 1, 0) + ne
    return o_vs, o_l, o_n, o_e, o_g


@njit(cache=True, nogil=True)
def _outer(p, L, M):
    """The outer rule over the M label coordinates: nodes (n_out, M), weights and labels.

    Tensor Gauss–Hermite over ξ_ν1..ξ_ν(M−1); along the last coordinate the label jumps at
    ν_M = t, t = √2 erfinv(−Σ_{m<M} v*_m erf(ν_m/√2) / v*_M); [−8, 8] is cut into 6 cells
    plus that point, each piece carries n_leg Gauss–Legendre nodes times φ(ξ), and
    its label is read at its midpoint. For a linear label (M = 1 here: the coordinate ζ,
    y = sign ζ) this is the split at ζ = 0.
    """
    o_vs, o_l, o_n, o_e, o_g = _offsets(p)
    nn = int(p[6])
    ng = int(p[8])
    vs = p[o_vs : o_vs + M].copy()
    if int(p[9]) == 1:
        vs[:] = 1.0
    xn = p[o_n : o_n + nn]
    wn = p[o_n + nn : o_n + 2 * nn]
    xg = p[o_g : o_g + ng]
    wg = p[o_g + ng : o_g + 2 * ng]
    total = 1
    for _ in range(M - 1):
        total *= nn
    npiece = _NCELL + 1
    XI = np.zeros((total * npiece * ng, M))
    WT = np.zeros(total * npiece * ng)
    YL = np.zeros(total * npiece * ng)
    cuts = np.empty(_NCELL + 2)
    xi = np.zeros(M)
    vl = vs[M - 1]
    cnt = 0
    for it in range(total):
        r = it
        W = 1.0
        for m in range(M - 1):
            j = r % nn
            r //= nn
            W *= wn[j]
            xi[m] = xn[j]
        if W < _WMIN:
            continue
        s = 0.0
        for m in range(M - 1):
            v = 0.0
            for j in range(m + 1):
                v += L[m, j] * xi[j]
            s += vs[m] * math.erf(v / _SQ2)
        mc = 0.0
        for j in range(M - 1):
            mc += L[M - 1, j] * xi[j]
        sc = L[M - 1, M - 1]
        c = -s / vl
        xstar = 0.0
        has = False
        if sc > 0.0 and -1.0 < c < 1.0:
            xstar = (_SQ2 * _erfinv(c) - mc) / sc
            has = -_XMAX < xstar < _XMAX
        nc = 0
        for i in range(_NCELL + 1):
            x = -_XMAX + i * (2.0 * _XMAX / _NCELL)
            if has and nc > 0 and cuts[nc - 1] < xstar < x:
                cuts[nc] = xstar
                nc += 1
            cuts[nc] = x
            nc += 1
        for q in range(nc - 1):
            lo = cuts[q]
            hi = cuts[q + 1]
            if hi <= lo:
                continue
            mid = 0.5 * (lo + hi)
            yl = 1.0 if s + vl * math.erf((mc + sc * mid) / _SQ2) >= 0.0 else -1.0
            half = 0.5 * (hi - lo)
            for g in range(ng):
                x = mid + half * xg[g]
                for m in range(M - 1):
                    XI[cnt, m] = xi[m]
                XI[cnt, M - 1] = x
                WT[cnt] = W * half * wg[g] * _phi(x)
                YL[cnt] = yl
                cnt += 1
    return XI[:cnt], WT[:cnt], YL[:cnt]


@njit(cache=True, nogil=True)
def _outer_qmc(p, L, M, o_q, nq, D):
    """The QMC rule (``p[10] = 2``) over the label coordinates: like :func:`_outer`, but one
    outer node per point and piece. Point i of the ``nq`` points stored from ``p[o_q]`` (rows
    of D numbers: ξ_ν1..ξ_ν(M−1), a uniform s, then student fields ξ_λ) fixes ξ_ν<M; the
    last label coordinate is split at its jump x* and s is mapped into each piece by the
    inverse CDF, ``x = Φ⁻¹(s Φ(x*))`` below (mass Φ(x*)) and ``x = −Φ⁻¹(s Φ(−x*))`` above
    (mass Φ(−x*)), so each piece's integrand is smooth in the point and its label constant.
    Returns nodes (2n, M), weights (mass / n), labels and the point of each node."""
    o_vs = _offsets(p)[0]
    vs = p[o_vs : o_vs + M].copy()
    if int(p[9]) == 1:
        vs[:] = 1.0
    vl = vs[M - 1]
    XI = np.zeros((2 * nq, M))
    WT = np.zeros(2 * nq)
    YL = np.zeros(2 * nq)
    PI = np.zeros(2 * nq, np.int64)
    for i in range(nq):
        s = 0.0
        mc = 0.0
        for m in range(M - 1):
            v = 0.0
            for j in range(m + 1):
                v += L[m, j] * p[o_q + i * D + j]
            s += vs[m] * math.erf(v / _SQ2)
            mc += L[M - 1, m] * p[o_q + i * D + m]
        sc = L[M - 1, M - 1]
        c = -s / vl
        # the jump of the label along the last coordinate (none: +∞, one piece, whose
        # label is read below like every other)
        xs = np.inf
        if sc > 0.0 and -1.0 < c < 1.0:
            xs = (_SQ2 * _erfinv(c) - mc) / sc
        t = p[o_q + i * D + M - 1]
        for h in range(2):
            o = 2 * i + h
            PI[o] = i
            mass = _Phi(xs) if h == 0 else _Phi(-xs)
            if mass <= 0.0:
                continue
            x = -_SQ2 * _erfinv(min(1.0 - 2.0 * t * mass, 1.0 - 1e-16))
            if h == 1:
                x = -x
            for m in range(M - 1):
                XI[o, m] = p[o_q + i * D + m]
            XI[o, M - 1] = x
            WT[o] = mass / nq
            YL[o] = 1.0 if s + vl * math.erf((mc + sc * x) / _SQ2) >= 0.0 else -1.0
    return XI, WT, YL, PI


@njit(cache=True, nogil=True, inline="always")
def _outer_part(L, MO, K, XI, o, mlam):
    """The part of every λ_a fixed by outer node o: Σ_{j < MO} L[MO + a, j] ξ_j."""
    for a in range(K):
        v = 0.0
        for j in range(MO):
            v += L[MO + a, j] * XI[o, j]
        mlam[a] = v


@njit(cache=True, nogil=True)
def _gh_inner(p, K):
    """Tensor Gauss–Hermite over ξ_λ (n_lam per unit): nodes (P, K) and weights; nodes of
    weight < _WMIN dropped."""
    o_vs, o_l, o_n, o_e, o_g = _offsets(p)
    nl = int(p[5])
    xl = p[o_l : o_l + nl]
    wl = p[o_l + nl : o_l + 2 * nl]
    total = 1
    for _ in range(K):
        total *= nl
    X = np.empty((total, K))
    W = np.empty(total)
    cnt = 0
    for it in range(total):
        r = it
        w = 1.0
        for k in range(K):
            j = r % nl
            r //= nl
            w *= wl[j]
            X[cnt, k] = xl[j]
        if w < _WMIN:
            continue
        W[cnt] = w
        cnt += 1
    return X[:cnt], W[:cnt]


@njit(cache=True, nogil=True)
def _level_nodes(lev, MO, L, mlam, u, xi, xg, wg, X, Wl):
    """Nodes of coordinate ξ_λ(lev) given ξ_λ0..ξ_λ(lev−1): [−8, 8] cut into _NCELL cells,
    at the kinks of unit lev (λ_lev = ±u_lev, where g(λ ± u) bends for a kinked
    activation) and where λ_lev crosses the grid −_LCUT, …, _LCUT (spacing 1), each piece
    with the Gauss–Legendre rule times φ. Returns the count."""
    s = mlam[lev]
    for j in range(lev):
        s += L[MO + lev, MO + j] * xi[j]
    b = L[MO + lev, MO + lev]
    nk = _NCELL + 1
    cuts = np.empty(_NCELL + 3 + _NLCUT)
    for i in range(_NCELL + 1):
        cuts[i] = -_XMAX + i * (2.0 * _XMAX / _NCELL)
    if b > 0.0:  # λ_lev = s + b ξ: the kinks and the λ grid, where inside (−8, 8)
        for i in range(_NLCUT + 2):
            lam = -_LCUT + i if i < _NLCUT else (abs(u[lev]) if i == _NLCUT else -abs(u[lev]))
            x = (lam - s) / b
            if -_XMAX < x < _XMAX:
                cuts[nk] = x
                nk += 1
    cuts[:nk].sort()
    ng = xg.shape[0]
    cnt = 0
    for q in range(nk - 1):
        lo = cuts[q]
        hi = cuts[q + 1]
        if hi - lo <= 1e-12:
            continue
        mid = 0.5 * (lo + hi)
        half = 0.5 * (hi - lo)
        for g in range(ng):
            x = mid + half * xg[g]
            X[lev, cnt] = x
            Wl[lev, cnt] = half * wg[g] * _phi(x)
            cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def _split_inner(p, K, MO, L, mlam, u, XIN, WIN):
    """Nested piecewise Gauss–Legendre rule over ξ_λ for kinked activations: coordinate by
    coordinate (λ_k depends on ξ_λ0..ξ_λk through the Cholesky factor), each split at the
    kinks of its unit, so every piece is smooth. Fills XIN, WIN; returns the count."""
    o_vs, o_l, o_n, o_e, o_g = _offsets(p)
    ng = int(p[5])  # split rule: the λ slot holds Gauss–Legendre nodes
    xg = p[o_l : o_l + ng]
    wg = p[o_l + ng : o_l + 2 * ng]
    per = (_NCELL + 2 + _NLCUT) * ng
    X = np.empty((K, per))
    Wl = np.empty((K, per))
    cnt = np.zeros(K, np.int64)
    idx = np.zeros(K, np.int64)
    xi = np.zeros(K)
    wacc = np.ones(K + 1)
    lev = 0
    cnt[0] = _level_nodes(0, MO, L, mlam, u, xi, xg, wg, X, Wl)
    n = 0
    while lev >= 0:
        if idx[lev] >= cnt[lev]:
            lev -= 1
            if lev >= 0:
                idx[lev] += 1
            continue
        xi[lev] = X[lev, idx[lev]]
        wacc[lev + 1] = wacc[lev] * Wl[lev, idx[lev]]
        if lev == K - 1:
            if wacc[K] >= _WMIN:
                for k in range(K):
                    XIN[n, k] = xi[k]
                WIN[n] = wacc[K]
                n += 1
            idx[lev] += 1
        else:
            lev += 1
            cnt[lev] = _level_nodes(lev, MO, L, mlam, u, xi, xg, wg, X, Wl)
            idx[lev] = 0
    return n
