"""The hand-written simulation kernel that ``simulations.kernelgen`` replaced, kept verbatim
(``simulations/teacher_student.py`` at commit b7e8bde) as the reference the generated
kernels are checked against bit for bit (``test_kernel_codegen.py``). It inlines the same
``_g``, ``_gp``, ``_dot`` and input generator from ``simulations.teacher_student`` as the
generated kernels, so both are compiled on the same machine from the same activations.

Rule codes: 0 bp, 1 fa, 2 afa, 3 pepita, 4 pepita-forward.
"""

import math

from numba import njit

from simulations.teacher_student import _FM, _dot, _fill_normal, _g, _gp

CODES = {"bp": 0, "fa": 1, "afa": 2, "pepita": 3, "pepita-forward": 4}


@njit(cache=False, nogil=True, fastmath=_FM)
def _run_block(rule, act, n_steps, st, xb, w, w_star, v, v_star, F, b, eta, eta_v, sigma, work):
    """The kernel as it was (its docstring: simulations.kernelgen.KERNEL_TEMPLATE)."""
    N = xb.shape[1]
    K = w.shape[0]
    M = w_star.shape[0]
    inv_sqN = 1.0 / math.sqrt(N)
    lr_w = eta * inv_sqN  # first layer: η/√N
    lr_v = eta_v / N  # second layer: η_v/N
    adaptive = rule == 2 or rule == 3 or rule == 4
    modulated = rule == 3  # presynaptic x̃ = x − F e
    lam = work[0]
    ck = work[1]  # pending update of w_k: −ck[k] x_prev (+ cek[k] F)
    cek = work[2]
    gk = work[3]
    zeta = work[4, :1]
    FF = _dot(F, F)
    if adaptive:
        for k in range(K):
            b[k] = _dot(w[k], F) * inv_sqN
    pending = False
    for t in range(n_steps):
        x = xb[t & 1]
        xo = xb[1 - (t & 1)]
        _fill_normal(st, x)
        _fill_normal(st, zeta)
        # first forward pass (and the pending update of the previous step)
        yhat = 0.0
        for k in range(K):
            wk = w[k]
            s = 0.0
            if not pending:
                s = _dot(wk, x)
            elif modulated:  # p = x̃ = x − F e
                c, ce = ck[k], cek[k]
                for i in range(N):
                    wi = wk[i] - (c * xo[i] - ce * F[i])
                    wk[i] = wi
                    s += wi * x[i]
            else:
                c = ck[k]
                for i in range(N):
                    wi = wk[i] - c * xo[i]
                    wk[i] = wi
                    s += wi * x[i]
            lam[k] = s * inv_sqN
            yhat += v[k] * _g(lam[k], act)
        y = sigma * zeta[0]
        for m in range(M):
            y += v_star[m] * _g(_dot(w_star[m], x) * inv_sqN, act)
        e = yhat - y  # e = ŷ − y
        if not math.isfinite(e):
            return t
        xF = _dot(x, F) if adaptive else 0.0
        # d_k: Δw_k = −(η/√N) d_k p; gk: the g(·) in Δv_k = −(η_v/N) e g(·)
        for k in range(K):
            if rule == 0:  # bp: f_k = v_k (pre-update)
                d = v[k] * _gp(lam[k], act) * e
                gk[k] = _g(lam[k], act)
            elif rule == 1 or rule == 2:  # fa / afa: f_k = b_k (pre-update)
                d = b[k] * _gp(lam[k], act) * e
                gk[k] = _g(lam[k], act)
            else:  # pepita: second pass λ̃ = λ − e b
                gt = _g(lam[k] - e * b[k], act)
                d = _g(lam[k], act) - gt
                gk[k] = gt
            ck[k] = lr_w * d
            cek[k] = ck[k] * e if modulated else 0.0
        for k in range(K):
            v[k] -= lr_v * e * gk[k]
            if modulated:
                b[k] -= ck[k] * (xF - e * FF) * inv_sqN
            elif adaptive:
                b[k] -= ck[k] * xF * inv_sqN
        pending = True
    if pending:  # flush the last update
        x = xb[(n_steps - 1) & 1]
        for k in range(K):
            wk = w[k]
            c, ce = ck[k], cek[k]
            if modulated:
                for i in range(N):
                    wk[i] -= c * x[i] - ce * F[i]
            else:
                for i in range(N):
                    wk[i] -= c * x[i]
    for k in range(K):
        work[5, k] = _dot(w[k], w[k]) / N
    return n_steps
