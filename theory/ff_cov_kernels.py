"""Rule-independent numba kernel of the Forward-Forward noise covariance
(:mod:`theory.ff_covariance`): Σ = Cov[f] of the per-sample increments of (Q, R, u).

Included in the generated covariance module after :mod:`theory.ff_kernels` (whose nodes,
label split and passes it reuses); the block between ``# >>> generated`` and ``# <<<
generated`` stands in for those names so that this module imports on its own.

Per sample (docs/ff-theory.md), with ``δ_k = a_k^+ + a_k^−``::

    f_{Q_kl} = −η (δ_k λ_l + δ_l λ_k) + η² δ_k δ_l
    f_{R_km} = −η δ_k ν_m
    f_{u_k}  = −η_u y (a_k^+ − a_k^−)

For a linear label (``p[9] = 1``) the kernels of :mod:`theory.ff_kernels` integrate ν only
through its regression on (ζ, λ); its residual ``r`` (independent of everything else, mean
0, covariance ``C_r`` from the ν rows of the Cholesky factor beyond the first 1 + K
columns) adds ``η² E[δ_k δ_l] C_r[m, m']`` to the R–R block and nothing elsewhere.
"""

import numpy as np
from numba import njit

# >>> generated
from theory.ff_kernels import (  # noqa: F401
    _HEADER,
    _NLCUT,
    _gh_inner,
    _outer,
    _outer_part,
    _passes,
    _setup,
    _split_inner,
)
from theory.ff_kernels import _NCELL as _NCELL_FF

_NCELL = _NCELL_FF
# <<< generated


@njit(cache=True, nogil=True)
def _ff_cov(y, p, mvec, S):
    """``mvec`` ← E[f] (the drift), ``S`` ← Cov[f] (n×n, the FF flat layout: Q upper
    triangle, R row-major in the original teacher order, u)."""
    K, M, MO, L = _setup(y, p)
    theta = p[4]
    eta = p[2]
    eta_u = p[3]
    lin = int(p[9]) == 1
    split = int(p[10]) == 1
    nQ = K * (K + 1) // 2
    O_R = nQ
    O_U = nQ + K * M
    n = O_U + K
    u = y[O_U:]
    o_pm = _HEADER + M * M + M
    for i in range(n):
        mvec[i] = 0.0
        for j in range(n):
            S[i, j] = 0.0
    XI, WT, YL = _outer(p, L, MO)
    if split:
        cap = 1
        for _ in range(K):
            # the capacity of theory.ff_rules._split_inner (cells, kinks and λ cuts per
            # coordinate), as in theory.ff_kernels: without the cuts it wrote past XIN
            cap *= (_NCELL + 2 + _NLCUT) * int(p[5])
        XIN = np.empty((cap, K))
        WIN = np.empty(cap)
        nin = 0
    else:
        XIN, WIN = _gh_inner(p, K)
        nin = WIN.shape[0]
    lam = np.empty(K)
    mlam = np.empty(K)
    nu = np.empty(M)
    mnu = np.empty(M)
    ap = np.empty(K)
    am = np.empty(K)
    dl = np.empty(K)
    f = np.empty(n)
    aDD = np.zeros((K, K))
    for o in range(WT.shape[0]):
        Wo = WT[o]
        yl = YL[o]
        _outer_part(L, MO, K, XI, o, mlam)
        for m in range(M):
            v = 0.0
            if lin:
                v = L[MO + K + m, 0] * XI[o, 0]
            else:
                for j in range(m + 1):
                    v += L[m, j] * XI[o, j]
            mnu[m] = v
        if split:
            nin = _split_inner(p, K, MO, L, mlam, u, XIN, WIN)
        for it in range(nin):
            W = Wo * WIN[it]
            for a in range(K):
                s = mlam[a]
                for b in range(a + 1):
                    s += L[MO + a, MO + b] * XIN[it, b]
                lam[a] = s
            _passes(lam, u, yl, theta, K, ap, am)
            for m in range(M):
                v = mnu[m]
                if lin:
                    for b in range(K):
                        v += L[MO + K + m, MO + b] * XIN[it, b]
                nu[m] = v
            for k in range(K):
                dl[k] = ap[k] + am[k]
            i = 0
            for k in range(K):
                for l in range(k, K):
                    f[i] = -eta * (dl[k] * lam[l] + dl[l] * lam[k]) + eta * eta * dl[k] * dl[l]
                    i += 1
            for k in range(K):
                for m in range(M):
                    f[O_R + k * M + m] = -eta * dl[k] * nu[int(p[o_pm + m])]
                f[O_U + k] = -eta_u * yl * (ap[k] - am[k])
                for l in range(K):
                    aDD[k, l] += W * dl[k] * dl[l]
            for i in range(n):
                wf = W * f[i]
                mvec[i] += wf
                for j in range(i, n):
                    S[i, j] += wf * f[j]
    for i in range(n):
        for j in range(i, n):
            S[i, j] -= mvec[i] * mvec[j]
            S[j, i] = S[i, j]
    if lin:  # the residual of ν given (ζ, λ): columns beyond the first 1 + K
        nt = L.shape[0]
        for m in range(M):
            jm = MO + K + int(p[o_pm + m])
            for m2 in range(M):
                jm2 = MO + K + int(p[o_pm + m2])
                cr = 0.0
                for c in range(MO + K, nt):
                    cr += L[jm, c] * L[jm2, c]
                if cr == 0.0:
                    continue
                for k in range(K):
                    for k2 in range(K):
                        S[O_R + k * M + m, O_R + k2 * M + m2] += eta * eta * aDD[k, k2] * cr
