"""Rule-independent numba kernels of Forward-Forward's order-parameter ODEs
(:mod:`theory.ff`, whose docstring gives the model, the quadrature and the layout of the
parameter vector ``p``).

Every generated FF module (one per activation) includes this file
(:func:`theory.emit.include`); the block between ``# >>> generated`` and ``# <<<
generated`` holds stand-ins (the erf activation) for the functions printed from the sympy
signals (:func:`theory.ff.signals`)::

    g_(z)                 the activation g
    dh2_(z)               d g(z)²/dz      dg_(z)   g'(z)
    dLp_(G_p, theta)      ∂L/∂G⁺         dLm_(G_m, theta)   ∂L/∂G⁻
    Lp_(G_p, theta)       softplus(θ − G⁺) Lm_(G_m, theta)   softplus(G⁻ − θ)

and the layout constant ``_HEADER`` (the length of p's header, ``theory.ff._HEADER``).
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
def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    ex = math.exp(x)
    return ex / (1.0 + ex)


@njit(cache=True, nogil=True, inline="always")
def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(cache=True, nogil=True, inline="always")
def _heaviside(x):
    return 1.0 if x > 0.0 else 0.0


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
_HEADER = 12


@njit(cache=True, nogil=True, inline="always")
def g_(z):
    return math.erf((1.0 / 2.0) * math.sqrt(2.0) * z)


@njit(cache=True, nogil=True, inline="always")
def dh2_(z):
    return (
        2.0
        * math.sqrt(2.0)
        * math.exp(-(1.0 / 2.0) * (z * z))
        * math.erf((1.0 / 2.0) * math.sqrt(2.0) * z)
        / math.sqrt(math.pi)
    )


@njit(cache=True, nogil=True, inline="always")
def dg_(z):
    return math.sqrt(2.0) * math.exp(-(1.0 / 2.0) * (z * z)) / math.sqrt(math.pi)


@njit(cache=True, nogil=True, inline="always")
def dLp_(G_p, theta):
    return -_sigmoid(-G_p + theta)


@njit(cache=True, nogil=True, inline="always")
def dLm_(G_m, theta):
    return _sigmoid(G_m - theta)


@njit(cache=True, nogil=True, inline="always")
def Lp_(G_p, theta):
    return _softplus(-G_p + theta)


@njit(cache=True, nogil=True, inline="always")
def Lm_(G_m, theta):
    return _softplus(G_m - theta)


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
def _outer_qmc(p, L, M):
    """The QMC rule (``p[10] = 2``) over the label coordinates: like :func:`_outer`, but one
    outer node per point and piece. Point i of the ``p[11]`` stored points (row of M + K
    numbers: ξ_ν1..ξ_ν(M−1), a uniform s, then ξ_λ) fixes ξ_ν<M; the last label coordinate
    is split at its jump x* and s is mapped into each piece by the inverse CDF,
    ``x = Φ⁻¹(s Φ(x*))`` below (mass Φ(x*)) and ``x = −Φ⁻¹(s Φ(−x*))`` above (mass Φ(−x*)),
    so each piece's integrand is smooth in the point and its label constant. Returns nodes
    (2n, M), weights (mass / n), labels and the point of each node."""
    o_vs, o_l, o_n, o_e, o_g = _offsets(p)
    nq = int(p[11])
    D = M + int(p[0])
    o_q = o_g + 2 * int(p[8])
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
def _passes(lam, u, yl, theta, K, ap, am):
    """Both passes for label y = yl: fills a^±; returns (G⁺, G⁻)."""
    Gp = 0.0
    Gm = 0.0
    for k in range(K):  # a^± hold h^± until the second loop (g evaluated once per field)
        ap[k] = g_(lam[k] + u[k] * yl)
        am[k] = g_(lam[k] - u[k] * yl)
        Gp += ap[k] * ap[k]
        Gm += am[k] * am[k]
    dp = 2.0 * dLp_(Gp, theta)
    dm = 2.0 * dLm_(Gm, theta)
    for k in range(K):  # d(g²)/dz = 2 g g'
        ap[k] = dp * ap[k] * dg_(lam[k] + u[k] * yl)
        am[k] = dm * am[k] * dg_(lam[k] - u[k] * yl)
    return Gp, Gm


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


@njit(cache=True, nogil=True)
def _moments(y, p, acc, want_drift):
    """Moments over the fields: outer rule over the label coordinates (label fixed per
    node), then λ given them — tensor Gauss–Hermite (smooth activations) or the nested
    split rule (kinked ones, ``p[10] = 1``). ``acc`` receives, flat: [E δ_k λ_l (K·K),
    E δ_k δ_l (K·K), E δ_k ν_m (K·M, ν in the order of p), E y (a⁺ − a⁻)_k (K), E L,
    E(G⁺ − G⁻)]."""
    K, M, MO, L = _setup(y, p)
    theta = p[4]
    lin = int(p[9]) == 1
    split = int(p[10]) == 1
    qmc = int(p[10]) == 2
    u = y[K * (K + 1) // 2 + K * M :]
    for i in range(acc.shape[0]):
        acc[i] = 0.0
    o_dd = K * K
    o_dn = 2 * K * K
    o_u = o_dn + K * M
    o_L = o_u + K
    if qmc:  # one outer node per point and piece, its inner node is the point's ξ_λ
        XI, WT, YL, PI = _outer_qmc(p, L, MO)
        o_q = _offsets(p)[4] + 2 * int(p[8])
        XQ = p[o_q : o_q + int(p[11]) * (MO + K)].reshape((int(p[11]), MO + K))
        XIN = np.empty((1, K))
        WIN = np.ones(1)
        nin = 1
    else:
        XI, WT, YL = _outer(p, L, MO)
        PI = np.zeros(0, np.int64)
    if split:
        cap = 1
        for _ in range(K):
            cap *= (_NCELL + 2 + _NLCUT) * int(p[5])
        XIN = np.empty((cap, K))
        WIN = np.empty(cap)
        nin = 0
    elif not qmc:
        XIN, WIN = _gh_inner(p, K)
        nin = WIN.shape[0]
    lam = np.empty(K)
    mlam = np.empty(K)
    nu = np.empty(M)
    mnu = np.empty(M)
    ap = np.empty(K)
    am = np.empty(K)
    dl = np.empty(K)
    for o in range(WT.shape[0]):
        Wo = WT[o]
        yl = YL[o]
        _outer_part(L, MO, K, XI, o, mlam)
        for m in range(M):
            v = 0.0
            if lin:  # regression of ν_m on (ζ, λ): ζ part
                v = L[MO + K + m, 0] * XI[o, 0]
            else:
                for j in range(m + 1):
                    v += L[m, j] * XI[o, j]
            mnu[m] = v
        if split:
            nin = _split_inner(p, K, MO, L, mlam, u, XIN, WIN)
        if qmc:
            for k in range(K):
                XIN[0, k] = XQ[PI[o], MO + k]
        for it in range(nin):
            W = Wo * WIN[it]
            for a in range(K):
                s = mlam[a]
                for b in range(a + 1):
                    s += L[MO + a, MO + b] * XIN[it, b]
                lam[a] = s
            Gp, Gm = _passes(lam, u, yl, theta, K, ap, am)
            acc[o_L] += W * (Lp_(Gp, theta) + Lm_(Gm, theta))
            acc[o_L + 1] += W * (Gp - Gm)
            if not want_drift:
                continue
            for m in range(M):
                v = mnu[m]
                if lin:  # ... and its λ part
                    for b in range(K):
                        v += L[MO + K + m, MO + b] * XIN[it, b]
                nu[m] = v
            for k in range(K):
                dl[k] = ap[k] + am[k]
            for k in range(K):
                acc[o_u + k] += W * yl * (ap[k] - am[k])
                for l in range(K):
                    acc[k * K + l] += W * dl[k] * lam[l]
                    acc[o_dd + k * K + l] += W * dl[k] * dl[l]
                for m in range(M):
                    acc[o_dn + k * M + m] += W * dl[k] * nu[m]


@njit(cache=True, nogil=True)
def rhs(y, p, dy):
    """dy/dα of the FF order parameters (module docstring of theory.ff)."""
    K = int(p[0])
    M = int(p[1])
    eta = p[2]
    eta_u = p[3]
    acc = np.empty(2 * K * K + K * M + K + 2)
    _moments(y, p, acc, True)
    o_dd = K * K
    o_dn = 2 * K * K
    o_u = o_dn + K * M
    o_pm = _HEADER + M * M + M
    i = 0
    for k in range(K):
        for l in range(k, K):
            dy[i] = -eta * (acc[k * K + l] + acc[l * K + k]) + eta * eta * acc[o_dd + k * K + l]
            i += 1
    for k in range(K):
        for m in range(M):
            dy[i] = -eta * acc[o_dn + k * M + int(p[o_pm + m])]
            i += 1
    for k in range(K):
        dy[i] = -eta_u * acc[o_u + k]
        i += 1


@njit(cache=True, nogil=True)
def loss_gap(y, p, out):
    """out[0] = E[L], out[1] = E[G⁺ − G⁻]."""
    K = int(p[0])
    M = int(p[1])
    acc = np.empty(2 * K * K + K * M + K + 2)
    _moments(y, p, acc, False)
    out[0] = acc[acc.shape[0] - 2]
    out[1] = acc[acc.shape[0] - 1]


@njit(cache=True, nogil=True, inline="always")
def _dsign(u, last, x, a, b, S):
    """sign(G^{+1} − G^{−1}) with λ_K = a + b x and the other units' part S."""
    z = a + b * x
    gp = g_(z + u[last])
    gm = g_(z - u[last])
    D = S + gp * gp - gm * gm
    return 1 if D > 0.0 else (-1 if D < 0.0 else 0)


@njit(cache=True, nogil=True)
def _monotone_breaks(ul, out):
    """Where ``d(λ) = g(λ + ul)² − g(λ − ul)²`` (the last unit's share of
    G^{+1} − G^{−1}) changes monotonicity: the grid points of [−_LMAX, _LMAX] (spacing
    _LSTEP) where the sign of its slope changes (a flat piece counts as a sign of its own).
    Between them d is monotone, so along any line λ = A + Bx the decision changes sign at
    most once per piece. Returns the count written to ``out``."""
    n = int(2.0 * _LMAX / _LSTEP)
    cnt = 0
    prev = g_(-_LMAX + ul) ** 2 - g_(-_LMAX - ul) ** 2
    sprev = 2
    for i in range(1, n + 1):
        lam = -_LMAX + i * _LSTEP
        cur = g_(lam + ul) ** 2 - g_(lam - ul) ** 2
        dd = cur - prev
        sg = 1 if dd > 1e-15 else (-1 if dd < -1e-15 else 0)
        if sprev != 2 and sg != sprev and cnt < out.shape[0]:
            out[cnt] = lam - _LSTEP
            cnt += 1
        sprev = sg
        prev = cur
    return cnt


@njit(cache=True, nogil=True, inline="always")
def _wrong_mass(sg, yl, lo, hi):
    """Gaussian mass of [lo, hi] counted as error: all of it if the prediction sign sg
    disagrees with the label, half of it for a tie."""
    if sg == 0:
        return 0.5 * (_Phi(hi) - _Phi(lo))
    if (sg > 0) != (yl > 0):
        return _Phi(hi) - _Phi(lo)
    return 0.0


@njit(cache=True, nogil=True)
def _edge(u, last, A, B, S, a0, b0, keep):
    """The point of [a0, b0] where the sign of D stops being ``keep`` (bisection)."""
    for _ in range(60):
        mid = 0.5 * (a0 + b0)
        if _dsign(u, last, mid, A, B, S) == keep:
            a0 = mid
        else:
            b0 = mid
        if b0 - a0 < 1e-13:
            break
    return 0.5 * (a0 + b0)


@njit(cache=True, nogil=True)
def eg(y, p):
    """ε_g = P(ŷ ≠ y), ties counting half. Outer rule over the label coordinates (label
    fixed per node); given them, an explicit rule over ξ_λ1..ξ_λ(K−1) (midpoint in
    probability space for K = 2, scrambled Sobol beyond; read from p) and, along ξ_λK,
    the exact Gaussian mass of the pieces where sign(G^{+1} − G^{−1}) disagrees with y:
    the line is cut where the last unit's share of the decision changes monotonicity
    (:func:`_monotone_breaks`), and the one sign change a monotone piece can hold is
    found by bisection."""
    K, M, MO, L = _setup(y, p)
    o_vs, o_l, o_n, o_e, o_g = _offsets(p)
    ne = int(p[7])
    D1 = K - 1
    u = y[K * (K + 1) // 2 + K * M :]
    last = K - 1
    XI, WT, YL = _outer(p, L, MO)
    xi = np.zeros(K)
    mlam = np.empty(K)
    brk = np.empty(64)
    nb = _monotone_breaks(u[last], brk)
    cuts = np.empty(nb + 2)
    out = 0.0
    for o in range(WT.shape[0]):
        yl = YL[o]
        _outer_part(L, MO, K, XI, o, mlam)
        inner = 0.0
        for it in range(ne):
            W = p[o_e + ne * D1 + it]
            for k in range(D1):
                xi[k] = p[o_e + it * D1 + k]
            S = 0.0
            for k in range(K - 1):
                s = mlam[k]
                for j in range(k + 1):
                    s += L[MO + k, MO + j] * xi[j]
                gp = g_(s + u[k])
                gm = g_(s - u[k])
                S += gp * gp - gm * gm
            A = mlam[last]
            for j in range(K - 1):
                A += L[MO + last, MO + j] * xi[j]
            B = L[MO + last, MO + last]
            # the line x ∈ [−X, X] (λ_K = A + Bx) cut into monotone pieces of D
            nc = 0
            cuts[nc] = -_XMAX
            nc += 1
            if B > 0.0:
                for i in range(nb):
                    x = (brk[i] - A) / B
                    if cuts[nc - 1] < x < _XMAX:
                        cuts[nc] = x
                        nc += 1
            cuts[nc] = _XMAX
            nc += 1
            wrong = 0.0
            for q in range(nc - 1):
                xa = cuts[q]
                xb = cuts[q + 1]
                sa = _dsign(u, last, xa, A, B, S)
                sb = _dsign(u, last, xb, A, B, S)
                if sa == sb:
                    wrong += _wrong_mass(sa, yl, xa, xb)
                    continue
                # monotone: sa, then possibly a tie (a flat zero stretch), then sb
                t1 = _edge(u, last, A, B, S, xa, xb, sa)
                t2 = t1
                if sa != 0 and sb != 0:
                    tb = _edge(u, last, A, B, S, t1, xb, 0)
                    if tb > t1 and _dsign(u, last, 0.5 * (t1 + tb), A, B, S) == 0:
                        t2 = tb
                wrong += _wrong_mass(sa, yl, xa, t1)
                wrong += _wrong_mass(0, yl, t1, t2)
                wrong += _wrong_mass(sb, yl, t2, xb)
            inner += W * wrong
        out += WT[o] * inner
    return out
