"""Rule-independent numba kernels of the marginal Gauss–Hermite scheme
(:mod:`theory.codegen_marginal`, whose docstring describes the packed rules and term
tables).

Included in every generated marginal module after :mod:`theory.field_kernels`
(:func:`theory.emit.include`); the block between ``# >>> generated`` and ``# <<<
generated`` holds stand-ins (backprop with erf) for the names each generated module
defines itself: the constants, the unit functions ``_h`` (δ/e), ``_hp`` (∂h/∂λ), ``_s``
(second-layer signal) with the bits ``*_USES`` of g (1) and g' (2) they need,
``_kappa(rp)`` (the weight decay) and ``CLOSED`` (1: relu, every integral an exact moment,
:mod:`theory.relu_kernels`, included before this module).
"""

import numpy as np
from numba import njit

from theory.quadrature import factor_nb

# isort: split
# >>> generated
from theory.field_kernels import _fill, _g, _gp
from theory.relu_kernels import _run_closed, combine_terms

ADAPTIVE = 0
CLOSED = 0
SGD_V = 1
N_RULE = 0
PRUNE = 1e-18
P0 = 6
H_USES = 2
HP_USES = 0
S_USES = 1


@njit(cache=True, nogil=True, inline="always")
def _h(lam_, G_, GP_, vk_, bk_, rp):
    return vk_ * GP_


@njit(cache=True, nogil=True, inline="always")
def _hp(lam_, G_, GP_, vk_, bk_, rp):
    return 0.0


@njit(cache=True, nogil=True, inline="always")
def _s(lam_, G_, GP_, vk_, bk_, rp):
    return G_


@njit(cache=True, nogil=True, inline="always")
def _kappa(rp):
    return 0.0


# <<< generated


@njit(cache=True, nogil=True)
def _rule_arrays(p, O):
    """The 1-D Gauss–Hermite rules of the d-field subsets (d = 1…4), packed at
    p[O:] = [2, P, D, n, (n_d, x_d (n_d), w_d (n_d)) for d = 1…4], concatenated in X and
    Wt (rule d at off[d] … off[d] + cnt[d]), and the offset of the term tables that follow."""
    off = np.zeros(5, np.int64)
    cnt = np.zeros(5, np.int64)
    b = O + 4
    tot = 0
    for d in range(1, 5):
        nd = int(p[b])
        off[d] = tot
        cnt[d] = nd
        tot += nd
        b += 1 + 2 * nd
    X = np.empty(tot)
    Wt = np.empty(tot)
    b = O + 4
    for d in range(1, 5):
        nd = cnt[d]
        for i in range(nd):
            X[off[d] + i] = p[b + 1 + i]
            Wt[off[d] + i] = p[b + 1 + nd + i]
        b += 1 + 2 * nd
    return X, Wt, off, cnt, b


@njit(cache=True, nogil=True, inline="always")
def _slots(j, d, lev, LS, xi, need, fld, T, A, Bv, rp):
    """The factor values T[kind, a] of the slots a computed at loop level j."""
    for a in range(d):
        if lev[a] != j:
            continue
        zz = 0.0
        for i in range(d):
            zz += LS[a, i] * xi[i]
        T[3, a] = zz
        nd = need[a]
        gg = 0.0
        ggp = 0.0
        if nd & 1:
            gg = _g(zz)
            T[1, a] = gg
        if nd & 2:
            ggp = _gp(zz)
            T[2, a] = ggp
        if nd >= 8:
            f = fld[a]
            if nd & 8:
                T[4, a] = _h(zz, gg, ggp, A[f], Bv[f], rp)
            if nd & 16:
                T[5, a] = _hp(zz, gg, ggp, A[f], Bv[f], rp)
            if nd & 32:
                T[6, a] = _s(zz, gg, ggp, A[f], Bv[f], rp)


@njit(cache=True, nogil=True)
def _run(p, O, C, A, Bv, K, sig2, X, Wt, off, cnt, rp, acc):
    """Integrate the table packed at p[O:] and add its contributions to acc.
    Returns −1 if a marginal covariance is not PSD (acc then NaN), else 0."""
    if CLOSED:
        return _run_closed(p, O, C, A, Bv, K, sig2, X, Wt, off, cnt, rp, acc)
    NS = int(p[O])
    NI = int(p[O + 1])
    NC = int(p[O + 2])
    OS = O + 3
    OI = OS + 6 * NS
    OC = OI + 8 * NI
    NU = A.shape[0]
    # the tables as integers, once per call (never converted inside the node loop)
    kinds = np.empty((NI, 4), np.int64)
    slots = np.empty((NI, 4), np.int64)
    for i in range(NI):
        for j in range(4):
            kinds[i, j] = int(p[OI + 8 * i + 2 * j])
            slots[i, j] = int(p[OI + 8 * i + 2 * j + 1])
    I = np.zeros(NI)
    T = np.ones((7, 4))  # T[kind, slot]: factor values at the current node
    xi = np.zeros(4)
    fld = np.zeros(4, np.int64)
    need = np.zeros(4, np.int64)  # per slot: bits 1 g, 2 g', 8 h, 16 h', 32 s
    lev = np.zeros(4, np.int64)
    nn = np.ones(4, np.int64)
    i0 = 0
    for s in range(NS):
        base = OS + 6 * s
        d = int(p[base])
        i1 = int(p[base + 5])
        for a in range(d):
            fld[a] = int(p[base + 1 + a])
            need[a] = 0
        # compute at each node only the factors this subset's integrals use
        for i in range(i0, i1):
            for j in range(4):
                kd = kinds[i, j]
                a = slots[i, j]
                if kd == 1:
                    need[a] |= 1
                elif kd == 2:
                    need[a] |= 2
                elif kd == 4:
                    need[a] |= 8 | H_USES
                elif kd == 5:
                    need[a] |= 16 | HP_USES
                elif kd == 6:
                    need[a] |= 32 | S_USES
        CS = np.empty((d, d))
        LS = np.zeros((d, d))  # once per subset
        for a in range(d):
            for c in range(d):
                CS[a, c] = C[fld[a], fld[c]]
        code = factor_nb(CS, LS)
        if code < 0:
            for j in range(acc.shape[0]):
                acc[j] = np.nan
            return -1
        # z_a = Σ_j L_aj ξ_j. With the (lower-triangular) Cholesky factor z_a depends on
        # ξ_0…ξ_a only, so slot a's factors are computed in loop level a, outside the
        # inner loops: an innermost node evaluates one field, not d. The dense
        # eigen-factor (singular C_S) computes every slot at the innermost level.
        for a in range(d):
            lev[a] = a if code == 0 else d - 1
        for j in range(4):
            nn[j] = cnt[d] if j < d else 1  # levels beyond d: one node ξ = 0, weight 1
            xi[j] = 0.0
        o = off[d]
        for q0 in range(nn[0]):
            w0 = Wt[o + q0]
            if w0 < PRUNE:
                continue
            xi[0] = X[o + q0]
            _slots(0, d, lev, LS, xi, need, fld, T, A, Bv, rp)
            for q1 in range(nn[1]):
                w1 = w0 * (Wt[o + q1] if d > 1 else 1.0)
                if w1 < PRUNE:
                    continue
                if d > 1:
                    xi[1] = X[o + q1]
                    _slots(1, d, lev, LS, xi, need, fld, T, A, Bv, rp)
                for q2 in range(nn[2]):
                    w2 = w1 * (Wt[o + q2] if d > 2 else 1.0)
                    if w2 < PRUNE:
                        continue
                    if d > 2:
                        xi[2] = X[o + q2]
                        _slots(2, d, lev, LS, xi, need, fld, T, A, Bv, rp)
                    for q3 in range(nn[3]):
                        w = w2 * (Wt[o + q3] if d > 3 else 1.0)
                        if w < PRUNE:
                            continue
                        if d > 3:
                            xi[3] = X[o + q3]
                            _slots(3, d, lev, LS, xi, need, fld, T, A, Bv, rp)
                        for i in range(i0, i1):
                            I[i] += (
                                w
                                * T[kinds[i, 0], slots[i, 0]]
                                * T[kinds[i, 1], slots[i, 1]]
                                * T[kinds[i, 2], slots[i, 2]]
                                * T[kinds[i, 3], slots[i, 3]]
                            )
        i0 = i1
    combine_terms(p, OC, NC, sig2, A, Bv, NU, I, acc)
    return 0


@njit(cache=True, nogil=True)
def _integrate(y, p, mode, dy, S):
    """mode 0: dy = dy/dα; mode 1: S = noise covariance of b."""
    K = int(p[0])
    M = int(p[1])
    NU = K + M
    O_R = K * (K + 1) // 2
    O_V = O_R + K * M
    O_B = O_V + K
    eta = p[2]
    eta_v = p[3]
    sigma = p[4]
    sigma_F2 = p[5]
    P_RULE = P0 + M * M + 2 * M + K
    rp = p[P_RULE : P_RULE + N_RULE].copy()
    O_N = P_RULE + N_RULE + 1
    X, Wt, off, cnt, O_T = _rule_arrays(p, O_N)
    C = np.empty((NU, NU))
    A = np.empty(NU)
    Bv = np.empty(NU)
    _fill(y, p, K, M, C, A, Bv)
    oDD = K * K
    oR = 2 * K * K
    oV = oR + K * M
    oB = oV + K
    acc = np.zeros(oB + K)
    _run(p, O_T, C, A, Bv, K, sigma * sigma, X, Wt, off, cnt, rp, acc)  # NaN if not PSD
    if mode == 1:
        for k in range(K):
            for l in range(k, K):
                S[k, l] = eta * eta * sigma_F2 * acc[oDD + k * K + l]
                S[l, k] = S[k, l]
        return
    kappa = _kappa(rp)
    iq = 0
    for k in range(K):
        for l in range(k, K):
            dy[iq] = (
                -eta * acc[k * K + l]
                + eta * eta * acc[oDD + k * K + l]
                - 2.0 * eta * kappa * C[k, l]
            )
            iq += 1
    for k in range(K):
        for m in range(M):
            dy[O_R + k * M + m] = -eta * acc[oR + k * M + m] - eta * kappa * C[k, K + m]
        dy[O_V + k] = -eta_v * acc[oV + k] if SGD_V else 0.0
        if ADAPTIVE:
            dy[O_B + k] = -eta * acc[oB + k] - eta * kappa * Bv[k]


@njit(cache=True, nogil=True)
def _eg_table(y, p):
    """ε_g from the eg table (activations without a closed-form I2)."""
    K = int(p[0])
    M = int(p[1])
    NU = K + M
    C = np.empty((NU, NU))
    A = np.empty(NU)
    Bv = np.empty(NU)
    _fill(y, p, K, M, C, A, Bv)
    P_RULE = P0 + M * M + 2 * M + K
    rp = p[P_RULE : P_RULE + N_RULE].copy()
    O_N = P_RULE + N_RULE + 1
    X, Wt, off, cnt, O_T = _rule_arrays(p, O_N)
    NS = int(p[O_T])
    NI = int(p[O_T + 1])
    NC = int(p[O_T + 2])
    O_T2 = O_T + 3 + 6 * NS + 8 * NI + 6 * NC  # the eg table follows the rhs table
    sig2 = p[4] * p[4]
    acc = np.zeros(1)
    if _run(p, O_T2, C, A, Bv, K, sig2, X, Wt, off, cnt, rp, acc) < 0:
        return np.nan
    return acc[0]
