"""The step loop of the deep teacher–student student (docs/deep.md), one numba kernel.

Student (``L = len(widths) + 1``; 0-based hidden layers ``l = 0 … L−2`` below, layer ``l``
is the docs' hidden layer ``l + 1``)::

    a_0 = λ = W₁ x/√N,   h_l = g(a_l),   a_{l+1} = W[l] h_l,   ŷ = v·h_{L−2}

teacher ``y = Σ_m v*_m g(ν_m) + σ ζ``, error ``e = ŷ − y``. Every update uses the values
before the step::

    W₁   ← W₁   − (η/√N)  (c ⊗ x − c_e ⊗ F)      (c, c_e per rule, below)
    W[l] ← W[l] − (η_W/N) ΔW[l]
    v    ← v    − (η_v/N) Δv

============== ==================================== ======================= =================
rule           signals δ_l                          ΔW[l]                   Δv
============== ==================================== ======================= =================
bp             δ_{L−2} = g'(a) ⊙ v e,               δ_{l+1} ⊗ h_l           e h_{L−2}
               δ_l = g'(a_l) ⊙ W[l]ᵀ δ_{l+1}
fa             as bp with b for v, B[l] for W[l]ᵀ   δ_{l+1} ⊗ h_l           e h_{L−2}
dfa            δ_l = g'(a_l) ⊙ d[l] e               δ_{l+1} ⊗ h_l           e h_{L−2}
afa            δ_0 = g'(λ) ⊙ b₁ e,                  δ_{l+1} ⊗ h_l           e h_{L−2}
               δ_{l+1} = g'(a_{l+1}) ⊙ W[l] δ_l
pepita(-fwd)   δ_l = h_l − h̃_l                      δ_{l+1} ⊗ h̃_l           e h̃_{L−2}
pepita-hebb.   δ_l = h_l − h̃_l                      h_{l+1}⊗h_l −           ŷ h_{L−2} −
                                                    h̃_{l+1}⊗h̃_l             y h̃_{L−2}
============== ==================================== ======================= =================

with the second pass ``λ̃ = λ − e b₁`` (the input ``x̃ = x − F e``; ``b₁ = W₁F/√N`` kept exact),
``h̃_0 = g(λ̃)``, ``h̃_{l+1} = g(W[l] h̃_l)``. First layer: ``c = δ_0``, ``c_e = 0`` for bp,
fa, dfa, afa and pepita-forward (presynaptic ``x``); ``c_e = e δ_0`` for pepita
(presynaptic ``x̃``); pepita-hebbian ``ΔW₁ = h_0 ⊗ x − h̃_0 ⊗ x̃``, i.e. ``c = h_0 − h̃_0``,
``c_e = −e h̃_0``. AFA is PEPITA linearised in ``e``: ``h_l − h̃_l ≈ δ_l`` propagated
forward through ``W[l]`` (its presynaptic terms are the first-pass ``x``, ``h_l``).

How it runs (as :mod:`simulations.teacher_student`'s kernel): ``nogil``, allocation-free,
the inputs drawn inside (xoshiro256++ + ziggurat, ``x`` then ``ζ`` each step: the same
stream as the two-layer kernel), each first-layer update fused with the next forward pass.
The read-out matrices are packed into ``(L−2, Kmax, Kmax)`` arrays (``W[l][:K_{l+1}, :K_l]``
used), the per-layer vectors into ``(L−1, Kmax)`` arrays.
"""

import math

import numpy as np
from numba import njit

# absolute, and no __future__ import: a user rule's module includes this source
from simulations.teacher_student import _dot, _fill_normal, _g, _gp

__all__ = ["RULE_CODES", "USER_CODES", "ACTS", "deep_block", "mc_block", "warmup"]

_FM = {"reassoc", "contract", "arcp"}

# >>> generated


@njit(cache=True, nogil=True, inline="always")
def _user_delta(a_, f_, e_, p, o, act):
    return _gp(a_, act) * f_


# <<< generated

#: activations of the deep kernel, in the order of their codes (theory.activation_names)
ACTS = ("erf", "linear", "relu", "tanh", "sigmoid")

#: rule → integer code of the kernel
RULE_CODES = {
    "bp": 0,
    "fa": 1,
    "dfa": 2,
    "afa": 3,
    "pepita": 4,
    "pepita-forward": 5,
    "pepita-hebbian": 6,
}
#: a user's deep rule (theory.deep_rules) by feedback kind; its δ is ``_user_delta``,
#: generated into its own copy of this module (simulations.deep_kernelgen)
USER_CODES = {"v": 7, "fixed": 8, "direct": 9}


@njit(cache=True, nogil=True, fastmath=_FM)
def _signals(rule, act, widths, e, y, yhat, v, Wr, fb_b, fB, fd, b1, a, h, ht, dl, dv, rp):
    """The signals ``dl`` (δ per layer), the second pass ``ht`` (PEPITA rules) and the
    last-layer signal ``dv`` (Δv = −(η_v/N) dv) of one step; ``a, h`` hold the first pass;
    ``rp``: a user rule's parameters (sorted by name)."""
    nl = widths.shape[0]
    last = nl - 1
    if rule == 9:  # user rule, feedback "direct": f = d e
        for l in range(nl):
            for k in range(widths[l]):
                dl[l, k] = _user_delta(a[l, k], fd[l, k] * e, e, rp, 0, act)
    elif rule >= 7:  # user rule, f carried by v and Wᵀ (7) or by b and B (8)
        for k in range(widths[last]):
            f = v[k] if rule == 7 else fb_b[k]
            dl[last, k] = _user_delta(a[last, k], f * e, e, rp, 0, act)
        for l in range(last - 1, -1, -1):
            for k in range(widths[l]):
                s = 0.0
                for j in range(widths[l + 1]):
                    s += (Wr[l, j, k] if rule == 7 else fB[l, k, j]) * dl[l + 1, j]
                dl[l, k] = _user_delta(a[l, k], s, e, rp, 0, act)
    elif rule == 0 or rule == 1:  # bp, fa: backward chain
        for k in range(widths[last]):
            f = v[k] if rule == 0 else fb_b[k]
            dl[last, k] = f * _gp(a[last, k], act) * e
        for l in range(last - 1, -1, -1):
            for k in range(widths[l]):
                s = 0.0
                for j in range(widths[l + 1]):
                    s += (Wr[l, j, k] if rule == 0 else fB[l, k, j]) * dl[l + 1, j]
                dl[l, k] = _gp(a[l, k], act) * s
    elif rule == 2:  # dfa
        for l in range(nl):
            for k in range(widths[l]):
                dl[l, k] = fd[l, k] * _gp(a[l, k], act) * e
    elif rule == 3:  # afa: PEPITA linearised, the first-layer signal carried forward
        for k in range(widths[0]):
            dl[0, k] = b1[k] * _gp(a[0, k], act) * e
        for l in range(last):
            for j in range(widths[l + 1]):
                s = 0.0
                for k in range(widths[l]):
                    s += Wr[l, j, k] * dl[l, k]
                dl[l + 1, j] = _gp(a[l + 1, j], act) * s
    else:  # PEPITA: second pass from x̃ = x − F e
        for k in range(widths[0]):
            ht[0, k] = _g(a[0, k] - e * b1[k], act)
        for l in range(last):
            for j in range(widths[l + 1]):
                s = 0.0
                for k in range(widths[l]):
                    s += Wr[l, j, k] * ht[l, k]
                ht[l + 1, j] = _g(s, act)
        for l in range(nl):
            for k in range(widths[l]):
                dl[l, k] = h[l, k] - ht[l, k]
    for k in range(widths[last]):
        if rule <= 3 or rule >= 7:
            dv[k] = e * h[last, k]
        elif rule <= 5:
            dv[k] = e * ht[last, k]
        else:
            dv[k] = yhat * h[last, k] - y * ht[last, k]


# Long on purpose: the fused step loop of one seed (forward pass fused with the pending
# first-layer update, the error, the signals, every update); splitting the per-step body
# into more calls would cost call overhead on every step, as in the two-layer template.
@njit(cache=True, nogil=True, fastmath=_FM)
def deep_block(
    rule,
    act,
    n_steps,
    st,
    xb,
    w,
    w_star,
    v,
    v_star,
    F,
    b1,
    widths,
    Wr,
    fb_b,
    fB,
    fd,
    eta,
    eta_v,
    eta_W,
    sigma,
    lay,
    work,
    rp,
):
    """Run ``n_steps`` online steps in place; returns the steps done.

    Parameters
    ----------
    rule, act : int
        :data:`RULE_CODES` and the activation code (``theory.activation_names``).
    st : (4,) uint64
        xoshiro256++ state (advanced in place).
    xb : (2, N)
        Buffers for the current and previous input.
    w, v, Wr, b1 :
        Student weights ``W₁`` (K₁, N), ``v`` (K_{L−1},), read-out ``Wr`` (max(L−2, 1),
        Kmax, Kmax) (updated in place) and ``b₁ = W₁F/√N`` (kept exact for afa/pepita*).
    w_star, v_star, F :
        Teacher and PEPITA's F (read only).
    widths : (L−1,) int64
    fb_b, fB, fd :
        Fixed feedback: FA's ``b`` (K_{L−1},) and ``B`` (max(L−2, 1), Kmax, Kmax) with
        ``B[l][:K_l, :K_{l+1}]`` replacing ``W[l]ᵀ``; DFA's ``d`` (L−1, Kmax).
    lay : (4, L−1, Kmax)
        Scratch for the fields ``a``, activities ``h``, second pass ``h̃`` and signals ``δ``.
    work : (6, max(Kmax, M))
        Scratch; on return ``work[5, :K₁]`` holds ``|w_k|²/N``.
    rp : (≥ 1,)
        A user rule's parameters, sorted by name (ignored by the built-in rules).

    Returns the number of steps completed: ``n_steps``, or the index t of the first step
    whose error ``e`` was not finite (the weights are then those after t steps).
    """
    N = xb.shape[1]
    K = w.shape[0]
    M = w_star.shape[0]
    nl = widths.shape[0]
    last = nl - 1
    inv_sqN = 1.0 / math.sqrt(N)
    lr_w = eta * inv_sqN
    lr_v = eta_v / N
    lr_W = eta_W / N
    adaptive = 3 <= rule <= 6
    plain = rule <= 3 or rule >= 7  # presynaptic terms of the first pass (not PEPITA's)
    a = lay[0]
    h = lay[1]
    ht = lay[2]
    dl = lay[3]
    ck = work[0]  # pending update of w_k: −ck[k] x_prev + cek[k] F
    cek = work[1]
    dv = work[2]
    zeta = work[4, :1]
    FF = _dot(F, F)
    if adaptive:
        for k in range(K):
            b1[k] = _dot(w[k], F) * inv_sqN
    pending = False
    for t in range(n_steps):
        x = xb[t & 1]
        xo = xb[1 - (t & 1)]
        _fill_normal(st, x)
        _fill_normal(st, zeta)
        # first forward pass, fused with the pending first-layer update
        for k in range(K):
            wk = w[k]
            s = 0.0
            if not pending:
                s = _dot(wk, x)
            else:
                c, ce = ck[k], cek[k]
                for i in range(N):
                    wi = wk[i] - (c * xo[i] - ce * F[i])
                    wk[i] = wi
                    s += wi * x[i]
            a[0, k] = s * inv_sqN
            h[0, k] = _g(a[0, k], act)
        for l in range(last):
            for j in range(widths[l + 1]):
                s = 0.0
                for k in range(widths[l]):
                    s += Wr[l, j, k] * h[l, k]
                a[l + 1, j] = s
                h[l + 1, j] = _g(s, act)
        yhat = 0.0
        for k in range(widths[last]):
            yhat += v[k] * h[last, k]
        y = sigma * zeta[0]
        for m in range(M):
            y += v_star[m] * _g(_dot(w_star[m], x) * inv_sqN, act)
        e = yhat - y
        if not math.isfinite(e):
            return t
        _signals(rule, act, widths, e, y, yhat, v, Wr, fb_b, fB, fd, b1, a, h, ht, dl, dv, rp)
        # read-out matrices: W[l] ← W[l] − (η_W/N) ΔW[l]
        for l in range(last):
            for j in range(widths[l + 1]):
                for k in range(widths[l]):
                    if plain:
                        g_ = dl[l + 1, j] * h[l, k]
                    elif rule <= 5:
                        g_ = dl[l + 1, j] * ht[l, k]
                    else:
                        g_ = h[l + 1, j] * h[l, k] - ht[l + 1, j] * ht[l, k]
                    Wr[l, j, k] -= lr_W * g_
        for k in range(widths[last]):
            v[k] -= lr_v * dv[k]
        # first layer: w_k ← w_k − ck x + cek F (applied with the next forward pass)
        for k in range(K):
            if rule == 6:
                ck[k] = lr_w * dl[0, k]
                cek[k] = -lr_w * ht[0, k] * e
            elif rule == 4:
                ck[k] = lr_w * dl[0, k]
                cek[k] = ck[k] * e
            else:
                ck[k] = lr_w * dl[0, k]
                cek[k] = 0.0
        if adaptive:
            xF = _dot(x, F)
            for k in range(K):
                b1[k] -= (ck[k] * xF - cek[k] * FF) * inv_sqN
        pending = True
    if pending:  # flush the last update
        x = xb[(n_steps - 1) & 1]
        for k in range(K):
            wk = w[k]
            c, ce = ck[k], cek[k]
            for i in range(N):
                wk[i] = wk[i] - (c * x[i] - ce * F[i])
    for k in range(K):
        work[5, k] = _dot(w[k], w[k]) / N
    return n_steps


@njit(cache=True, nogil=True, fastmath=_FM)
def mc_block(rule, act, widths, Lf, z, v, v_star, Wr, fb_b, fB, fd, b1, sigma, lay, cos, rp):
    """ε_g and (into ``cos``) cos_delta per layer over the rows ``z`` of standard normals
    (fields ``Lf z``, label noise ``z[:, K+M]``): :func:`simulations.deep_observables.
    mc_observables`'s loop."""
    n = z.shape[0]
    K = widths[0]
    M = v_star.shape[0]
    D = K + M
    nl = widths.shape[0]
    last = nl - 1
    Km = lay.shape[2]
    a, h, ht, dl = lay[0], lay[1], lay[2], lay[3]
    dbp = np.zeros((nl, Km))
    htb = np.zeros((nl, Km))
    dvb = np.zeros(Km)
    dv = np.zeros(Km)
    f = np.zeros(D)
    sxy = np.zeros(nl)
    sxx = np.zeros(nl)
    syy = np.zeros(nl)
    eg = 0.0
    for s in range(n):
        for i in range(D):
            acc = 0.0
            for j in range(D):  # Lf: Cholesky or (singular C) the eigen-factor
                acc += Lf[i, j] * z[s, j]
            f[i] = acc
        for k in range(K):
            a[0, k] = f[k]
            h[0, k] = _g(f[k], act)
        for l in range(last):
            for j in range(widths[l + 1]):
                acc = 0.0
                for k in range(widths[l]):
                    acc += Wr[l, j, k] * h[l, k]
                a[l + 1, j] = acc
                h[l + 1, j] = _g(acc, act)
        yhat = 0.0
        for k in range(widths[last]):
            yhat += v[k] * h[last, k]
        y0 = 0.0
        for m in range(M):
            y0 += v_star[m] * _g(f[K + m], act)
        eg += 0.5 * (yhat - y0) * (yhat - y0)
        y = y0 + sigma * z[s, D]
        e = yhat - y
        _signals(rule, act, widths, e, y, yhat, v, Wr, fb_b, fB, fd, b1, a, h, ht, dl, dv, rp)
        _signals(0, act, widths, e, y, yhat, v, Wr, fb_b, fB, fd, b1, a, h, htb, dbp, dvb, rp)
        for l in range(nl):
            for k in range(widths[l]):
                sxy[l] += dl[l, k] * dbp[l, k]
                sxx[l] += dl[l, k] * dl[l, k]
                syy[l] += dbp[l, k] * dbp[l, k]
    for l in range(nl):
        den = math.sqrt(sxx[l] * syy[l])
        cos[l] = sxy[l] / den if den > 0.0 else np.nan
    return eg / n


def warmup():
    """Compile (or load from numba's cache) before threads start."""
    z = np.zeros
    deep_block(
        0, 0, 0, np.ones(4, np.uint64), z((2, 2)), z((1, 2)), z((1, 2)), z(1), z(1), z(2), z(1),
        np.ones(1, np.int64), z((1, 1, 1)), z(1), z((1, 1, 1)), z((1, 1)), 0.0, 0.0, 0.0, 0.0,
        z((4, 1, 1)), z((6, 1)), z(1),
    )  # fmt: skip
    mc_block(
        0, 0, np.ones(1, np.int64), np.eye(1), z((1, 2)), z(1), z(1), z((1, 1, 1)), z(1),
        z((1, 1, 1)), z((1, 1)), z(1), 0.0, z((4, 1, 1)), z(1), z(1),
    )  # fmt: skip
