"""The online Forward-Forward step loop (docs/ff-theory.md §1), a kernel module.

:func:`_ff_block` runs the FF layer of :mod:`simulations.ff_online` for a block of steps.
It is used as it stands for the built-in activations (``g``, ``g'`` from the registry's
:mod:`theory.activation_kernels`, selected by the integer code ``act``), and included by
:func:`simulations.ff_online.ff_kernel` in a generated module for a user activation, where
the block between ``# >>> generated`` and ``# <<< generated`` is replaced by ``_g``/``_gp``
printed from the activation's sympy expression (:func:`theory.emit.include`): one step loop
for every activation.
"""

import math

import numpy as np
from numba import njit

from simulations.teacher_student import _fill_normal
from theory.activation_kernels import FM as _FM

_INV_SQRT2 = 1.0 / math.sqrt(2.0)

# >>> generated
from theory.activation_kernels import g as _g  # noqa: E402
from theory.activation_kernels import gp as _gp  # noqa: E402

# <<< generated


@njit(cache=True, nogil=True, inline="always")
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


@njit(cache=True, nogil=True, inline="always", fastmath=_FM)
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@njit(cache=True, nogil=True, fastmath=_FM)
def _ff_block(act, n_steps, st, xb, w, w_star, u, v_star, eta, eta_u, theta, work):
    """Run ``n_steps`` online FF steps in place; allocation-free.

    Each step draws ``x ~ N(0, I_N)`` from ``st``, computes the fields, the teacher label
    and both passes, applies ``Δu`` at once and keeps ``Δw_k = −(η/√N) δ_k x`` pending, to
    be fused with the next forward pass (flushed before returning).

    ``work`` is (6, max(K, M)) scratch; on return ``work[5, :K]`` holds ``|w_k|²/N``.
    Returns the number of steps done: ``n_steps``, or the index of the first step whose
    goodness was not finite (the weights are then those after that many steps).
    """
    N = xb.shape[1]
    K = w.shape[0]
    M = w_star.shape[0]
    inv_sqN = 1.0 / math.sqrt(N)
    lr_w = eta * inv_sqN
    lr_u = eta_u / N
    lam = work[0]
    ck = work[1]
    hp = work[2]
    hm = work[3]
    pending = False
    for t in range(n_steps):
        x = xb[t & 1]
        xo = xb[1 - (t & 1)]
        _fill_normal(st, x)
        for k in range(K):
            wk = w[k]
            s = 0.0
            if not pending:
                s = _dot(wk, x)
            else:
                c = ck[k]
                for i in range(N):
                    wi = wk[i] - c * xo[i]
                    wk[i] = wi
                    s += wi * x[i]
            lam[k] = s * inv_sqN
        tsum = 0.0
        for m in range(M):
            tsum += v_star[m] * math.erf(_dot(w_star[m], x) * inv_sqN * _INV_SQRT2)
        yl = 1.0 if tsum >= 0.0 else -1.0
        Gp = 0.0
        Gm = 0.0
        for k in range(K):
            hp[k] = _g(lam[k] + u[k] * yl, act)  # positive pass: ℓ = y
            hm[k] = _g(lam[k] - u[k] * yl, act)  # negative pass: ℓ = −y
            Gp += hp[k] * hp[k]
            Gm += hm[k] * hm[k]
        if not (math.isfinite(Gp) and math.isfinite(Gm)):
            return t
        sp_ = _sigmoid(theta - Gp)
        sm_ = _sigmoid(Gm - theta)
        for k in range(K):
            ap = -2.0 * sp_ * hp[k] * _gp(lam[k] + u[k] * yl, act)
            am = 2.0 * sm_ * hm[k] * _gp(lam[k] - u[k] * yl, act)
            ck[k] = lr_w * (ap + am)
            u[k] -= lr_u * yl * (ap - am)
        pending = True
    if pending:
        x = xb[(n_steps - 1) & 1]
        for k in range(K):
            wk = w[k]
            c = ck[k]
            for i in range(N):
                wk[i] -= c * x[i]
    for k in range(K):
        work[5, k] = _dot(w[k], w[k]) / N
    return n_steps


def _warmup():
    _ff_block(
        0,
        0,
        np.ones(4, np.uint64),
        np.zeros((2, 2)),
        np.zeros((1, 2)),
        np.zeros((1, 2)),
        np.zeros(1),
        np.ones(1),
        0.0,
        0.0,
        1.0,
        np.zeros((6, 1)),
    )
