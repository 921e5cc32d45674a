"""ε_g and the per-layer alignment ``cos_delta`` of a deep student, by Monte Carlo over its
Gaussian fields (docs/deep.md).

Given the order parameters, every signal of the deep student (docs/deep.md) is a function
of the fields ``(λ, ν) ~ N(0, [[Q, R], [Rᵀ, T]])`` (and of the label noise ``ζ``), so the
expectations over a fresh input are expectations over ``K₁ + M`` Gaussians. They are
estimated here on ``n`` fixed points (:func:`field_normals`: scrambled Sobol, the same for
every record and seed, so the curves are smooth and differences between records are not
blurred by sampling noise)::

    ε_g = ½ E[(ŷ − y)²]   (noise-free: y = v*·g(ν))
    cos_delta[l] = E[δ_l·δ_l^BP] / √(E|δ_l|² E|δ_l^BP|²)

with ``δ_l^BP`` BP's signal at hidden layer ``l`` under the current weights and ``δ_l`` the
rule's (:mod:`simulations.deep_kernel` has the table; PEPITA's is ``h_l − h̃_l``). In the
signals the error carries the label noise ``σ ζ``, as during training.

This module shares no code with the theory's quadrature (an independent estimate). Two
implementations: :func:`deep_observables` (plain numpy, the reference) and
:func:`mc_observables` (numba, ``nogil``, the per-sample signals of
:mod:`simulations.deep_kernel`; ~20× faster, used by the simulations; the tests check that the
two agree). The numba loop itself, ``mc_block``, lives in :mod:`simulations.deep_kernel`
next to the signals it calls, so that a user rule's generated copy of that module has it.
"""

from __future__ import annotations

import numpy as np

from theory.quadrature import factor

from . import deep_kernel
from .deep_kernel import ACTS, RULE_CODES
from .teacher_student import _g_np

__all__ = ["field_normals", "deep_observables", "mc_observables", "forward", "signals"]

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def field_normals(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` fixed standard normal vectors of length ``dim`` (+1 for ζ): a scrambled Sobol
    sequence (seeded by ``seed``) mapped through the normal quantile — randomised
    quasi-Monte Carlo, whose error on these smooth integrands is ~10⁻⁵ relative at n = 2¹³
    (plain Monte Carlo: 10⁻²); use a power of two for n (otherwise the first n points of
    the next power of two are taken)."""
    import warnings

    from scipy.stats import norm, qmc

    m = max(int(np.ceil(np.log2(max(n, 2)))), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the balance properties of Sobol' points…"
        u = qmc.Sobol(dim + 1, scramble=True, seed=int(seed) + 0xF1E1D).random_base2(m)[:n]
    return norm.ppf(np.clip(u, 1e-16, 1.0 - 1e-16))


def _gp_np(z, act):
    if act == "erf":
        return _SQRT_2_OVER_PI * np.exp(-0.5 * z * z)
    if act == "linear":
        return np.ones_like(z)
    if act == "relu":
        return (z > 0).astype(float)
    if act == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if act == "sigmoid":
        t = np.tanh(0.5 * z)
        return 0.25 * (1.0 - t * t)
    raise ValueError(f"deep simulations support the activations erf, linear, relu, tanh, "
                     f"sigmoid; got {act!r}")  # fmt: skip


def forward(lam, W, act):
    """Fields ``a_l`` and activities ``h_l`` (lists over hidden layers) of inputs whose
    first-layer fields are the rows of ``lam``."""
    a, h = [lam], [_g_np(lam, act)]
    for Wl in W:
        a.append(h[-1] @ np.asarray(Wl).T)
        h.append(_g_np(a[-1], act))
    return a, h


def signals(rule, a, h, e, v, W, act, b=None, fb_b=None, B=None, d=None):
    """Per-layer signals δ_l (list of (n, K_l) arrays) of ``rule`` (the kernel's table)."""
    L1 = len(a)
    gp = [_gp_np(x, act) for x in a]
    e = e[:, None]
    if rule in ("bp", "fa"):
        top = v if rule == "bp" else fb_b
        dl = [None] * L1
        dl[-1] = gp[-1] * np.asarray(top) * e
        for l in range(L1 - 2, -1, -1):
            back = np.asarray(W[l]) if rule == "bp" else np.asarray(B[l]).T
            dl[l] = gp[l] * (dl[l + 1] @ back)
        return dl
    if rule == "dfa":
        return [gp[l] * np.asarray(d[l]) * e for l in range(L1)]
    if rule == "afa":
        dl = [gp[0] * np.asarray(b) * e]
        for l in range(L1 - 1):
            dl.append(gp[l + 1] * (dl[-1] @ np.asarray(W[l]).T))
        return dl
    # PEPITA variants: h_l − h̃_l with the second pass from λ̃ = λ − e b
    _, ht = forward(a[0] - e * np.asarray(b), W, act)
    return [h[l] - ht[l] for l in range(L1)]


def deep_observables(
    Q, R, T, v, v_star, W, rule, activation, z, sigma=0.0, b=None, fb_b=None, B=None, d=None
):
    """``(ε_g, cos_delta)`` of one state by Monte Carlo over ``z`` (:func:`field_normals`).

    Parameters
    ----------
    Q, R, T, v, v_star, W :
        Order parameters (docs/deep.md shapes; ``W`` a list of read-out matrices).
    rule, activation : str
    z : (n, K₁ + M + 1) array
        Standard normals (the last column is ζ).
    b, fb_b, B, d :
        ``b = W₁F/√N`` (afa, pepita*), FA's ``b`` and ``B``, DFA's ``d``.

    Returns
    -------
    eg : float
    cos_delta : (L − 1,) array
    """
    Q, R, T = (np.asarray(x, dtype=float) for x in (Q, R, T))
    K, M = R.shape
    C = np.block([[Q, R], [R.T, T]])
    fields = z[:, : K + M] @ factor(C).T
    lam, nu = fields[:, :K], fields[:, K:]
    a, h = forward(lam, W, activation)
    yhat = h[-1] @ np.asarray(v, dtype=float)
    y0 = _g_np(nu, activation) @ np.asarray(v_star, dtype=float)
    eg = 0.5 * np.mean((yhat - y0) ** 2)
    e = yhat - y0 - sigma * z[:, K + M]
    dl = signals(rule, a, h, e, v, W, activation, b=b, fb_b=fb_b, B=B, d=d)
    dbp = dl if rule == "bp" else signals("bp", a, h, e, v, W, activation)
    cos = np.empty(len(dl))
    for l in range(len(dl)):
        num = np.mean(np.sum(dl[l] * dbp[l], axis=1))
        den = np.sqrt(np.mean(np.sum(dl[l] ** 2, axis=1)) * np.mean(np.sum(dbp[l] ** 2, axis=1)))
        cos[l] = num / den if den > 0 else np.nan
    return float(eg), cos


def mc_observables(
    Q, R, T, v, v_star, Wr, widths, rule, activation, z, sigma=0.0, b=None, fb_b=None,
    fB=None, fd=None, kernel=None, rp=None,
):  # fmt: skip
    """:func:`deep_observables` in numba, with the kernel's packed arrays (``Wr``, ``fB``
    (L−2 or 1, Kmax, Kmax), ``fd`` (L−1, Kmax)); returns ``(ε_g, cos_delta)``.
    ``rule``: a built-in name or a rule code; ``kernel``: the module holding ``mc_block``
    (default :mod:`simulations.deep_kernel`; a user rule's generated module, with its
    parameters ``rp``)."""
    Q, R, T = (np.asarray(x, dtype=float) for x in (Q, R, T))
    widths = np.asarray(widths, dtype=np.int64)
    K, M = R.shape
    Km, nl = int(widths.max()), len(widths)
    Lf = factor(np.block([[Q, R], [R.T, T]]))
    zero = np.zeros(Km)
    cos = np.empty(nl)
    code = RULE_CODES[rule] if isinstance(rule, str) else int(rule)
    eg = (kernel or deep_kernel).mc_block(
        code, ACTS.index(activation), widths, Lf, z, np.asarray(v, dtype=float),
        np.asarray(v_star, dtype=float), Wr, zero if fb_b is None else fb_b,
        Wr if fB is None else fB, np.zeros((nl, Km)) if fd is None else fd,
        zero if b is None else np.asarray(b, dtype=float), float(sigma), np.zeros((4, nl, Km)),
        cos, np.zeros(1) if rp is None else np.asarray(rp, dtype=float),
    )  # fmt: skip
    return float(eg), cos
