"""Numba kernels of the deep-student ODEs (docs/deep.md, :mod:`theory.deep`).

Included in the generated module of one activation (:func:`theory.emit.include`); the
block between ``# >>> generated`` and ``# <<< generated`` holds stand-ins (erf) for the
only names the generated part defines: the activation ``_g``, ``_gp`` = g' and ``_gpp`` =
g'', and a user rule's signal ``_user_delta`` (:mod:`theory.deep_rules`). Everything
rule-specific is a branch on the rule code ``p[3]`` (the branches are cheap next to the
forward passes), so one compiled module serves every built-in rule, depth, width, M and
quadrature rule of an activation; a user's rule gets its own module.

One node of the quadrature rule gives the fields ``z = (λ (K₁), ν (M))`` (and the noise
ζ when σ > 0); the kernel runs the student forward, computes the rule's signals and
accumulates the expectations of docs/deep.md::

    dQ_kl/dα = −η (E[A_k λ_l + A_l λ_k] + b_l E[B_k] + b_k E[B_l])
               + η² E[A_k A_l + σ_F² B_k B_l]
    dR_km/dα = −η (E[A_k ν_m] + c_m E[B_k])
    dv/dα    = −η_v E[s_v],          dW_ℓ/dα = −η_W E[S_ℓ]
    db_k/dα  = −η (E[∂_(b,c) A_k] + ‖F‖² E[B_k])                  (adaptive feedback)

where the first-layer update is ``Δw_k = −(η/√N)(A_k x + B_k F)`` and ``∂_(b,c)`` is the
derivative along the direction ``(b, c)`` in field space (Stein's lemma on φ = F·x/√N),
computed exactly by a tangent (forward-mode) pass through the network.

Finite N (mode 4, :func:`moments`, :func:`cov`): one sample moves every order parameter by
``f/N`` with, per node (the integrands above, before the expectation)::

    f_Qkl = −η (A_k λ_l + A_l λ_k + B_k b_l + B_l b_k) + η² (A_k A_l + σ_F² B_k B_l)
    f_Rkm = −η (A_k ν_m + B_k c_m),   f_v = −η_v s_v,   f_Wℓ = −η_W S_ℓ
    f_bk  = −η (A_k √N φ + B_k ‖F‖²),  √N φ = βᵀz + s⊥ ξ⊥,  β = C⁻¹(b, c),
            s⊥² = ‖F‖² − (b, c)ᵀ C⁻¹ (b, c)                       (adaptive feedback)

and ``Σ = Σ_q w_q f_q f_qᵀ − m mᵀ`` over the same nodes as the drift, plus the ξ⊥ part
(independent of the fields: ``η² s⊥² E[A_k A_l]`` in the b block only).

Flat state ``y = [Q upper triangle, R (K₁·M), v (K_{L−1}), W₀, W₁, … (row-major), b (K₁,
adaptive feedback)]``. Parameter vector (:meth:`theory.deep.DeepSystem.params`)::

    p = [K1, M, H, rule, eta, eta_v, eta_W, sigma, sigma_F2, F_norm2, stein, n_rp,
         widths (H), T (M·M), v_star (M), c (M), b_fixed (K_{L−1}),
         B₀, B₁, … (row-major, B_ℓ of shape K_ℓ×K_{ℓ+1}), d₀, d₁, … (widths),
         a user rule's parameters (n_rp, sorted by name),
         quadrature rule (QuadratureRule.packed(): kind, P, D, …)]

Rule codes: 0 bp, 1 fa, 2 dfa, 3 afa, 4 pepita (presynaptic x̃), 5 pepita-forward,
6 pepita-hebbian (presynaptic x̃); a user's deep rule (:mod:`theory.deep_rules`, its
``_user_delta`` generated into the module): 7 feedback "v", 8 "fixed", 9 "direct".
"""

import math

import numpy as np
from numba import njit

from theory.quad_kernels import _next_node, _rule_arrays
from theory.quadrature import factor_nb, map_node

# >>> generated


@njit(cache=True, nogil=True, inline="always")
def _g(zz_):
    return math.erf(zz_ / math.sqrt(2.0))


@njit(cache=True, nogil=True, inline="always")
def _gp(zz_):
    return math.sqrt(2.0) * math.exp(-zz_ * zz_ / 2.0) / math.sqrt(math.pi)


@njit(cache=True, nogil=True, inline="always")
def _gpp(zz_):
    return -zz_ * math.sqrt(2.0) * math.exp(-zz_ * zz_ / 2.0) / math.sqrt(math.pi)


@njit(cache=True, nogil=True, inline="always")
def _user_delta(a_, f_, e_, p, o):
    return _gp(a_) * f_


# <<< generated

HEADER = 12
BP, FA, DFA, AFA, PEPITA, PEPITA_FORWARD, PEPITA_HEBBIAN = 0, 1, 2, 3, 4, 5, 6
# a user's deep rule (theory.deep_rules): δ = _user_delta(a, f, e) with f carried by v and
# Wᵀ (USER_V), by fixed b and B (USER_FIXED) or by d_ℓ e (USER_DIRECT)
USER_V, USER_FIXED, USER_DIRECT = 7, 8, 9


@njit(cache=True, nogil=True)
def _sizes(p):
    """Offsets of the parameter vector and the flat state (see the module docstring)."""
    K = int(p[0])
    M = int(p[1])
    H = int(p[2])
    wd = np.empty(H, np.int64)
    off = np.zeros(H + 1, np.int64)  # start of hidden layer l in the flat unit buffers
    # start of W_l (and B_l) in the flat matrix buffers; woff[H − 1]: their total size
    woff = np.zeros(H, np.int64)
    for l in range(H):
        wd[l] = int(p[HEADER + l])
        off[l + 1] = off[l] + wd[l]
    for l in range(1, H):
        woff[l] = woff[l - 1] + wd[l] * wd[l - 1]
    nW = woff[H - 1]
    return K, M, H, wd, off, woff, nW


@njit(cache=True, nogil=True)
def _forward(h0pre, Wy, O_W, wd, off, woff, H, A, Hh):
    """Forward pass from the first-layer pre-activations ``h0pre``: pre-activations into
    ``A`` and activations into ``Hh`` (flat over the hidden layers)."""
    for k in range(wd[0]):
        A[k] = h0pre[k]
        Hh[k] = _g(h0pre[k])
    for l in range(1, H):
        n_in = wd[l - 1]
        for r in range(wd[l]):
            s = 0.0
            base = O_W + woff[l - 1] + r * n_in
            for c in range(n_in):
                s += Wy[base + c] * Hh[off[l - 1] + c]
            A[off[l] + r] = s
            Hh[off[l] + r] = _g(s)


@njit(cache=True, nogil=True)
def _backward(y, p, O_V, O_W, O_BF, O_BM, O_D, wd, off, woff, H, rule, e, A, Dl, P_R):
    """The signals δ_ℓ of a feedback rule into ``Dl`` (flat): BP (rule 0) with v and Wᵀ,
    FA with b and B, DFA with d_ℓ e, AFA forward from δ₁ = g'(λ) ⊙ b e (the linearised
    second pass of PEPITA); a user's rule (codes 7–9) δ = _user_delta(a, f, e) with its
    parameters at ``p[P_R:]``."""
    last = H - 1
    if rule >= USER_V:
        if rule == USER_DIRECT:
            for l in range(H):
                for r in range(wd[l]):
                    i = off[l] + r
                    Dl[i] = _user_delta(A[i], p[O_D + i] * e, e, p, P_R)
            return
        for r in range(wd[last]):
            i = off[last] + r
            f = y[O_V + r] if rule == USER_V else p[O_BF + r]
            Dl[i] = _user_delta(A[i], f * e, e, p, P_R)
        for l in range(last - 1, -1, -1):
            n_out = wd[l + 1]
            for r in range(wd[l]):
                s = 0.0
                for c in range(n_out):
                    if rule == USER_V:  # W_l[c, r]
                        s += y[O_W + woff[l] + c * wd[l] + r] * Dl[off[l + 1] + c]
                    else:  # B_l[r, c]
                        s += p[O_BM + woff[l] + r * n_out + c] * Dl[off[l + 1] + c]
                Dl[off[l] + r] = _user_delta(A[off[l] + r], s, e, p, P_R)
        return
    if rule == DFA:
        for l in range(H):
            for r in range(wd[l]):
                i = off[l] + r
                Dl[i] = _gp(A[i]) * p[O_D + i] * e
        return
    if rule == AFA:
        K = wd[0]
        O_B = O_W + woff[H - 1]
        for k in range(K):
            Dl[k] = _gp(A[k]) * y[O_B + k] * e
        for l in range(1, H):
            n_in = wd[l - 1]
            for r in range(wd[l]):
                s = 0.0
                base = O_W + woff[l - 1] + r * n_in
                for c in range(n_in):
                    s += y[base + c] * Dl[off[l - 1] + c]
                Dl[off[l] + r] = _gp(A[off[l] + r]) * s
        return
    # BP (v, Wᵀ) or FA (b, B)
    for r in range(wd[last]):
        i = off[last] + r
        f = y[O_V + r] if rule == BP else p[O_BF + r]
        Dl[i] = _gp(A[i]) * f * e
    for l in range(last - 1, -1, -1):
        n_out = wd[l + 1]
        for r in range(wd[l]):
            s = 0.0
            for c in range(n_out):
                if rule == BP:  # W_l[c, r]
                    s += y[O_W + woff[l] + c * wd[l] + r] * Dl[off[l + 1] + c]
                else:  # B_l[r, c]
                    s += p[O_BM + woff[l] + r * n_out + c] * Dl[off[l + 1] + c]
            Dl[off[l] + r] = _gp(A[off[l] + r]) * s


# Long on purpose: one pass over the nodes accumulates every expectation of the system (the
# drift, b's noise, the observables and, in mode 4, the covariance of every increment share
# the fields, the forward passes and the signals of a node); the sections (fields, forward,
# signals, accumulation, assembly) follow the module docstring
@njit(cache=True, nogil=True)
def _integrate(y, p, mode, dy, S, obs):
    """mode 0: dy = dy/dα; mode 1: S = noise covariance of b (K₁×K₁); mode 2: obs =
    [ε_g, then per hidden layer E[δ·δ^BP], E[|δ|²], E[|δ^BP|²]]; mode 3: obs[0] = ε_g;
    mode 4: dy = E[f], S = Cov[f] (n×n) of the per-sample increments f of every order
    parameter (``p[9]`` = ‖F‖², :meth:`theory.deep.DeepSystem.covariance`)."""
    K, M, H, wd, off, woff, nW = _sizes(p)
    NU = K + M
    rule = int(p[3])
    eta = p[4]
    eta_v = p[5]
    eta_W = p[6]
    sigma = p[7]
    sigma_F2 = p[8]
    F_norm2 = p[9]
    stein = p[10] > 0.5
    adaptive = AFA <= rule <= PEPITA_HEBBIAN
    pep = PEPITA <= rule <= PEPITA_HEBBIAN
    xt = rule == PEPITA or rule == PEPITA_HEBBIAN
    Kl = wd[H - 1]
    nu = off[H]
    O_R = K * (K + 1) // 2
    O_V = O_R + K * M
    O_W = O_V + Kl
    O_B = O_W + nW
    P_T = HEADER + H
    P_VS = P_T + M * M
    P_C = P_VS + M
    O_BF = P_C + M
    O_BM = O_BF + Kl
    O_D = O_BM + nW
    P_R = O_D + nu  # a user rule's parameters (p[11] of them)
    P_Q = P_R + int(p[11])
    kind = int(p[P_Q])
    P = int(p[P_Q + 1])
    D = int(p[P_Q + 2])
    O_N = P_Q + 3
    noisy = D > NU
    xi = np.empty(D)
    idx = np.zeros(D, np.int64)
    X, Wt, _ = _rule_arrays(p, O_N, kind)
    # the field covariance and the feedback overlaps (b, c)
    C = np.empty((NU, NU))
    Bv = np.zeros(NU)
    i = 0
    for a in range(K):
        for c in range(a, K):
            C[a, c] = y[i]
            C[c, a] = y[i]
            i += 1
    for a in range(K):
        for m in range(M):
            C[a, K + m] = y[O_R + a * M + m]
            C[K + m, a] = y[O_R + a * M + m]
    for m in range(M):
        for m2 in range(M):
            C[K + m, K + m2] = p[P_T + m * M + m2]
        Bv[K + m] = p[P_C + m]
    if adaptive:
        for a in range(K):
            Bv[a] = y[O_B + a]
    L = np.zeros((NU, NU))
    z = np.empty(NU)
    if factor_nb(C, L) < 0:  # not PSD: unphysical; the solver stops on NaN
        dy[:] = np.nan
        S[:, :] = np.nan
        obs[:] = np.nan
        return
    # work space, allocated once per call (never inside the node loop)
    A = np.empty(nu)
    Hh = np.empty(nu)
    At = np.empty(nu)
    Ht = np.empty(nu)
    Dl = np.empty(nu)
    Db = np.empty(nu)
    Hd = np.empty(nu)  # tangent of Hh along (b, c)
    lt = np.empty(K)
    Ak = np.empty(K)
    Bk = np.empty(K)
    Tk = np.empty(K)
    sv = np.empty(Kl)
    aQ = np.zeros((K, K))
    aAA = np.zeros((K, K))
    aBB = np.zeros((K, K))
    aR = np.zeros((K, M))
    aB = np.zeros(K)
    aT = np.zeros(K)
    aZ = np.zeros((K, NU))
    aV = np.zeros(Kl)
    aW = np.zeros(max(nW, 1))
    aO = np.zeros(3 * H)
    aE = 0.0
    cov = mode == 4
    ny = y.shape[0]
    fq = np.zeros(ny)  # mode 4: the increment f at one node
    beta = np.zeros(NU)  # mode 4: √N φ = βᵀz + s⊥ ξ⊥, β = C⁻¹(b, c)
    s_perp2 = 0.0
    if cov:
        for i in range(ny):
            dy[i] = 0.0
            for j in range(ny):
                S[i, j] = 0.0
        if adaptive:
            beta = np.linalg.lstsq(C, Bv)[0]
            s_perp2 = F_norm2
            for a in range(NU):
                s_perp2 -= beta[a] * Bv[a]
            s_perp2 = max(s_perp2, 0.0)
    for q in range(P):
        w = _next_node(p, O_N, kind, D, P, q, X, Wt, idx, xi)
        map_node(L, xi, z)
        _forward(z, y, O_W, wd, off, woff, H, A, Hh)
        yhat = 0.0
        for r in range(Kl):
            yhat += y[O_V + r] * Hh[off[H - 1] + r]
        yt = 0.0
        for m in range(M):
            yt += p[P_VS + m] * _g(z[K + m])
        e0 = yhat - yt
        e = e0 - sigma * xi[NU] if noisy else e0
        if mode == 2 or mode == 3:
            aE += w * e0 * e0
            if mode == 3:
                continue
        # ---- signals: A_k, B_k (first layer), the read-out and v signals
        if pep:
            for k in range(K):
                lt[k] = z[k] - e * Bv[k]
            _forward(lt, y, O_W, wd, off, woff, H, At, Ht)
            for j in range(nu):
                Dl[j] = Hh[j] - Ht[j]
        else:
            _backward(y, p, O_V, O_W, O_BF, O_BM, O_D, wd, off, woff, H, rule, e, A, Dl, P_R)
        for k in range(K):
            Ak[k] = Dl[k]
            if rule == PEPITA:
                Bk[k] = -e * Dl[k]
            elif rule == PEPITA_HEBBIAN:
                Bk[k] = e * Ht[k]
            else:
                Bk[k] = 0.0
        if mode == 2:  # the observable cos_delta: BP's signals with the current W, v
            _backward(y, p, O_V, O_W, O_BF, O_BM, O_D, wd, off, woff, H, BP, e, A, Db, P_R)
            for l in range(H):
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                for r in range(wd[l]):
                    j = off[l] + r
                    s1 += Dl[j] * Db[j]
                    s2 += Dl[j] * Dl[j]
                    s3 += Db[j] * Db[j]
                aO[3 * l] += w * s1
                aO[3 * l + 1] += w * s2
                aO[3 * l + 2] += w * s3
            continue
        # ---- tangent along (b, c): E[∂_(b,c) A_k] for the b drift (Stein's lemma on φ)
        if adaptive and mode == 0:
            if stein:  # kinked activation: (b, c)ᵀ C⁻¹ E[z A_k], no g''
                for k in range(K):
                    for a in range(NU):
                        aZ[k, a] += w * Ak[k] * z[a]
            else:
                for k in range(K):
                    Hd[k] = _gp(z[k]) * Bv[k]
                for l in range(1, H):
                    n_in = wd[l - 1]
                    for r in range(wd[l]):
                        s = 0.0
                        base = O_W + woff[l - 1] + r * n_in
                        for c in range(n_in):
                            s += y[base + c] * Hd[off[l - 1] + c]
                        Hd[off[l] + r] = _gp(A[off[l] + r]) * s
                ed = 0.0
                for r in range(Kl):
                    ed += y[O_V + r] * Hd[off[H - 1] + r]
                for m in range(M):
                    ed -= p[P_VS + m] * _gp(z[K + m]) * Bv[K + m]
                for k in range(K):
                    bk = Bv[k]
                    if rule == AFA:
                        Tk[k] = bk * (_gpp(z[k]) * bk * e + _gp(z[k]) * ed)
                    else:  # A_k = g(λ_k) − g(λ_k − e b_k)
                        Tk[k] = _gp(z[k]) * bk - _gp(lt[k]) * (bk - ed * bk)
                    aT[k] += w * Tk[k]
        # ---- accumulate
        for k in range(K):
            wa = w * Ak[k]
            for l in range(k, K):
                aQ[k, l] += wa * z[l] + w * Ak[l] * z[k]
                aAA[k, l] += wa * Ak[l]
                aBB[k, l] += w * Bk[k] * Bk[l]
            for m in range(M):
                aR[k, m] += wa * z[K + m]
            aB[k] += w * Bk[k]
        last = off[H - 1]
        for r in range(Kl):
            if rule == PEPITA_HEBBIAN:  # ŷ h_{L−1} − y h̃_{L−1}
                sv[r] = yhat * Hh[last + r] - (yhat - e) * Ht[last + r]
            elif pep:
                sv[r] = e * Ht[last + r]
            else:
                sv[r] = e * Hh[last + r]
            aV[r] += w * sv[r]
            if cov:
                fq[O_V + r] = -eta_v * sv[r]
        for l in range(H - 1):
            n_in = wd[l]
            for r in range(wd[l + 1]):
                j = off[l + 1] + r
                base = woff[l] + r * n_in
                for c in range(n_in):
                    jc = off[l] + c
                    if rule == PEPITA_HEBBIAN:
                        val = Hh[j] * Hh[jc] - Ht[j] * Ht[jc]
                    elif pep:
                        val = Dl[j] * Ht[jc]
                    else:
                        val = Dl[j] * Hh[jc]
                    aW[base + c] += w * val
                    if cov:
                        fq[O_W + base + c] = -eta_W * val
        if cov:  # f of Q, R (and b); then Σ_q w f fᵀ and Σ_q w f
            iq = 0
            for k in range(K):
                for l in range(k, K):
                    t = Ak[k] * z[l] + Ak[l] * z[k] + Bk[k] * Bv[l] + Bk[l] * Bv[k]
                    fq[iq] = -eta * t + eta * eta * (Ak[k] * Ak[l] + sigma_F2 * Bk[k] * Bk[l])
                    iq += 1
                for m in range(M):
                    fq[O_R + k * M + m] = -eta * (Ak[k] * z[K + m] + Bk[k] * Bv[K + m])
            if adaptive:
                bz = 0.0
                for a in range(NU):
                    bz += beta[a] * z[a]
                for k in range(K):
                    fq[O_B + k] = -eta * (Ak[k] * bz + Bk[k] * F_norm2)
            for i in range(ny):
                wf = w * fq[i]
                dy[i] += wf
                for j in range(i, ny):
                    S[i, j] += wf * fq[j]
    if cov:
        for i in range(ny):
            for j in range(i, ny):
                S[i, j] -= dy[i] * dy[j]
                S[j, i] = S[i, j]
        if adaptive:  # the part of √N φ independent of the fields: E[(η A_k s⊥ ξ⊥)(…)]
            for k in range(K):
                for l in range(k, K):
                    S[O_B + k, O_B + l] += eta * eta * s_perp2 * aAA[k, l]
                    S[O_B + l, O_B + k] = S[O_B + k, O_B + l]
        return
    if mode == 2 or mode == 3:
        obs[0] = 0.5 * aE
        for j in range(3 * H):
            obs[1 + j] = aO[j]
        return
    if mode == 1:
        for k in range(K):
            for l in range(k, K):
                S[k, l] = eta * eta * sigma_F2 * aAA[k, l]
                S[l, k] = S[k, l]
        return
    if adaptive and stein:
        sol = np.linalg.lstsq(C, Bv)[0]
        for k in range(K):
            t = 0.0
            for a in range(NU):
                t += sol[a] * aZ[k, a]
            aT[k] = t
    iq = 0
    for k in range(K):
        for l in range(k, K):
            drift = -eta * (aQ[k, l] + Bv[l] * aB[k] + Bv[k] * aB[l])
            dy[iq] = drift + eta * eta * (aAA[k, l] + sigma_F2 * aBB[k, l])
            iq += 1
    for k in range(K):
        for m in range(M):
            dy[O_R + k * M + m] = -eta * (aR[k, m] + Bv[K + m] * aB[k])
    for r in range(Kl):
        dy[O_V + r] = -eta_v * aV[r]
    for j in range(nW):
        dy[O_W + j] = -eta_W * aW[j]
    if adaptive:
        for k in range(K):
            drift = -eta * aT[k]
            if xt:
                drift -= eta * F_norm2 * aB[k]
            dy[O_B + k] = drift


@njit(cache=True, nogil=True)
def rhs(y, p, dy):
    """dy/dα at ``y`` (the System contract: writes ``dy``, allocates only work space)."""
    # np.int64(...), not a bare literal: one compiled specialisation for every mode
    _integrate(y, p, np.int64(0), dy, np.empty((1, 1)), np.empty(1))


@njit(cache=True, nogil=True)
def noise(y, p, S):
    """The covariance per unit α of the noise on the adaptive feedback b,
    ``Σ_kl = η² σ_F² E[A_k A_l]``."""
    _integrate(y, p, np.int64(1), np.empty(y.shape[0]), S, np.empty(1))


@njit(cache=True, nogil=True)
def moments(y, p, m, S):
    """``m = E[f]`` and ``S = Cov[f]`` (n×n) of the per-sample increments of every order
    parameter (mode 4 of :func:`_integrate`; ``p[9]`` = ‖F‖²)."""
    _integrate(y, p, np.int64(4), m, S, np.empty(1))


@njit(cache=True, nogil=True)
def cov(y, p, S):
    """``S = Σ = Cov[f]`` (n×n): the finite-N diffusion ``dy = E[f] dα + √(Σ/N) dB``."""
    _integrate(y, p, np.int64(4), np.empty(y.shape[0]), S, np.empty(1))


@njit(cache=True, nogil=True)
def observe(y, p, obs):
    """``obs = [ε_g, (E[δ·δ^BP], E[|δ|²], E[|δ^BP|²]) per hidden layer]``."""
    _integrate(y, p, np.int64(2), np.empty(y.shape[0]), np.empty((1, 1)), obs)


@njit(cache=True, nogil=True)
def eg(y, p):
    """ε_g = ½ E[(ŷ − y)²] without the output noise."""
    obs = np.empty(1 + 3 * int(p[2]))
    _integrate(y, p, np.int64(3), np.empty(y.shape[0]), np.empty((1, 1)), obs)
    return obs[0]
