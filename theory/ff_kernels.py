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

and, imported from :mod:`theory.ff_rules` (which the generated module includes first),
the node rules and the layout constant ``_HEADER`` (the length of p's header,
``theory.ff._HEADER``).
"""

import math

import numpy as np
from numba import njit

_SQ2 = math.sqrt(2.0)
_INV_SQ2PI = 1.0 / math.sqrt(2.0 * math.pi)


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


# >>> generated
from theory.ff_rules import (  # noqa: E402, F401  (one generated module in the real thing)
    _HEADER,
    _LCUT,
    _LMAX,
    _LSTEP,
    _NCELL,
    _NLCUT,
    _XMAX,
    _gh_inner,
    _offsets,
    _outer,
    _outer_part,
    _outer_qmc,
    _Phi,
    _setup,
    _split_inner,
)


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


@njit(cache=True, nogil=True)
def _abort_at(p):
    """Index of the abort slot (theory.runtime.interruptible) in ``p``, or −1 when ``p``
    has none: the slot is the one entry past the layout of theory.ff.FFSystem.params
    (header, T, v*, positions, the λ, ν and ε_g rules, Gauss–Legendre, QMC points)."""
    K = int(p[0])
    M = int(p[1])
    mo = 1 if int(p[9]) == 1 else M
    n = _offsets(p)[4] + 2 * int(p[8]) + int(p[11]) * (mo + K) + int(p[12]) * (mo + K - 1)
    return n if p.shape[0] == n + 1 else -1


@njit(cache=True, nogil=True)
def _moments(y, p, acc, want_drift):
    """Moments over the fields: outer rule over the label coordinates (label fixed per
    node), then λ given them — tensor Gauss–Hermite (smooth activations) or the nested
    split rule (kinked ones, ``p[10] = 1``). ``acc`` receives, flat: [E δ_k λ_l (K·K),
    E δ_k δ_l (K·K), E δ_k ν_m (K·M, ν in the order of p), E y (a⁺ − a⁻)_k (K), E L,
    E(G⁺ − G⁻)]. Returns True when it stopped early because the abort slot was set
    (checked once per outer node)."""
    ab = _abort_at(p)
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
        o_q = _offsets(p)[4] + 2 * int(p[8])
        XI, WT, YL, PI = _outer_qmc(p, L, MO, o_q, int(p[11]), MO + K)
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
        if ab >= 0 and p[ab] != 0.0:
            return True
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
    return False


@njit(cache=True, nogil=True)
def rhs(y, p, dy):
    """dy/dα of the FF order parameters (module docstring of theory.ff)."""
    K = int(p[0])
    M = int(p[1])
    eta = p[2]
    eta_u = p[3]
    acc = np.empty(2 * K * K + K * M + K + 2)
    if _moments(y, p, acc, True):  # aborted: no plausible value left behind
        for i in range(dy.shape[0]):
            dy[i] = np.nan
        return
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


@njit(cache=True, nogil=True, inline="always")
def _dval(u, last, x, a, b, S):
    """G^{+1} − G^{−1} with λ_K = a + b x and the other units' part S."""
    z = a + b * x
    gp = g_(z + u[last])
    gm = g_(z - u[last])
    return S + gp * gp - gm * gm


@njit(cache=True, nogil=True)
def _edge(u, last, A, B, S, a0, b0, keep):
    """The point of [a0, b0] where the sign of D stops being ``keep``: the Illinois method
    (regula falsi that halves the stale end's value; ~8 evaluations instead of bisection's
    ~47) where D changes sign cleanly, bisection where an end (or a step) hits D = 0 exactly
    — a tie, which may be a flat stretch (ReLU) whose ends bisection locates."""
    fa = _dval(u, last, a0, A, B, S)
    fb = _dval(u, last, b0, A, B, S)
    if keep != 0 and fa != 0.0 and fb != 0.0 and (fa > 0.0) != (fb > 0.0):
        side = 0
        for _ in range(100):
            x = (a0 * fb - b0 * fa) / (fb - fa)
            if not (a0 < x < b0):
                x = 0.5 * (a0 + b0)
            fx = _dval(u, last, x, A, B, S)
            if fx == 0.0:
                break  # a tie: bisection below finds where the sign stops being keep
            if (fx > 0.0) == (fa > 0.0):
                a0, fa = x, fx
                if side == -1:
                    fb *= 0.5
                side = -1
            else:
                b0, fb = x, fx
                if side == 1:
                    fa *= 0.5
                side = 1
            if b0 - a0 < 1e-12 or abs(fx) < 1e-15:
                return x
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
def _line_wrong(u, K, MO, L, mlam, xi, yl, brk, nb, cuts):
    """Gaussian mass of the wrong predictions along the last student coordinate, given the
    outer node (``mlam``) and ξ_λ1..ξ_λ(K−1) (``xi``): the line x ∈ [−8, 8] (λ_K = A + Bx)
    is cut where the last unit's share of the decision changes monotonicity
    (:func:`_monotone_breaks`, ``brk``), and the one sign change a monotone piece can hold
    is located by :func:`_edge`."""
    last = K - 1
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
    return wrong


@njit(cache=True, nogil=True)
def eg(y, p):
    """ε_g = P(ŷ ≠ y), ties counting half. Outer rule over the label coordinates (label
    fixed per node); given them, an explicit rule over ξ_λ1..ξ_λ(K−1) (midpoint in
    probability space for K = 2, scrambled Sobol beyond; read from p) and, along ξ_λK,
    the exact Gaussian mass of the pieces where sign(G^{+1} − G^{−1}) disagrees with y
    (:func:`_line_wrong`). With the QMC rule (``p[10] = 2``): ``p[12]`` QMC points over
    (label coordinates, ξ_λ1..ξ_λ(K−1)), split at the label's jump (:func:`_outer_qmc`),
    each with its exact line in ξ_λK. NaN when the abort slot is set (checked once per
    outer node)."""
    ab = _abort_at(p)
    K, M, MO, L = _setup(y, p)
    o_vs, o_l, o_n, o_e, o_g = _offsets(p)
    ne = int(p[7])
    D1 = K - 1
    u = y[K * (K + 1) // 2 + K * M :]
    xi = np.zeros(K)
    mlam = np.empty(K)
    brk = np.empty(64)
    nb = _monotone_breaks(u[K - 1], brk)
    cuts = np.empty(nb + 2)
    out = 0.0
    if int(p[10]) == 2:
        o_q = o_g + 2 * int(p[8]) + int(p[11]) * (MO + K)
        D = MO + K - 1
        XI, WT, YL, PI = _outer_qmc(p, L, MO, o_q, int(p[12]), D)
        for o in range(WT.shape[0]):
            if ab >= 0 and p[ab] != 0.0:
                return np.nan
            if WT[o] == 0.0:
                continue
            _outer_part(L, MO, K, XI, o, mlam)
            for k in range(D1):
                xi[k] = p[o_q + PI[o] * D + MO + k]
            out += WT[o] * _line_wrong(u, K, MO, L, mlam, xi, YL[o], brk, nb, cuts)
        return out
    XI, WT, YL = _outer(p, L, MO)
    for o in range(WT.shape[0]):
        if ab >= 0 and p[ab] != 0.0:
            return np.nan
        _outer_part(L, MO, K, XI, o, mlam)
        inner = 0.0
        for it in range(ne):
            for k in range(D1):
                xi[k] = p[o_e + it * D1 + k]
            W = p[o_e + ne * D1 + it]
            inner += W * _line_wrong(u, K, MO, L, mlam, xi, YL[o], brk, nb, cuts)
        out += WT[o] * inner
    return out
