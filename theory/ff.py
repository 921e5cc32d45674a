"""Forward-Forward in the teacher–student setting: the order-parameter ODEs (SCIENCE.md §9).

Model
-----
One FF layer of K units, input ``x ~ N(0, I_N)`` (fresh every step), label ``ℓ = ±1`` fed
through label weights ``u_k``::

    λ_k^ℓ = λ_k + u_k ℓ,   h_k^ℓ = g(λ_k^ℓ),   G^ℓ = Σ_k (h_k^ℓ)²
    y = sign(Σ_m v*_m g*(ν_m)),   g*(z) = erf(z/√2)          (the teacher's label)
    L = softplus(θ − G⁺) + softplus(G⁻ − θ)                  (G^± = G^{±y})
    a_k^± = ∂L/∂λ_k^± = (∂L/∂G^±) · d(g²)/dz |_{λ_k^±}
    w_k ← w_k − (η/√N) δ_k x,   δ_k = a_k^+ + a_k^−;    u_k ← u_k − (η_u/N) y (a_k^+ − a_k^−)

The teacher always labels with ``g* = erf(·/√2)`` whatever the student's activation (a ReLU
teacher would output the label 0 on half the inputs); for M = 1, ``y = sign(v*_1 ν_1)``.

As N → ∞ the order parameters ``Q, R, u`` (T, v* fixed) follow (§3's recipe)::

    dQ_kl/dα = −η E[δ_k λ_l + δ_l λ_k] + η² E[δ_k δ_l]
    dR_km/dα = −η E[δ_k ν_m]
    du_k/dα  = −η_u E[y (a_k^+ − a_k^−)]

over ``(λ, ν) ~ N(0, C)``, ``C = [[Q, R], [Rᵀ, T]]``. Observables: ``ε_g = P(ŷ ≠ y)`` with
``ŷ = sign(G^{+1} − G^{−1})`` (a tie counts half), the mean loss ``E[L]`` and the goodness
gap ``E[G⁺ − G⁻]``.

Derivation and generated code
-----------------------------
The signals are sympy expressions (:func:`signals`): the loss is written with the
functions :class:`softplus` and :class:`sigmoid` (whose derivatives sympy knows), the
activation ``g`` as an expression of ``z``, and ``∂L/∂G^±`` and ``d(g²)/dz`` come from
``sympy.diff``. They are printed into a numba module together with the quadrature kernels
below, cached on disk (``theory.codegen.cache_dir()``, keyed by this file's source and the
activation), never edited by hand.

Quadrature (no closed forms)
----------------------------
The label is a function of ν only, so the label coordinates are the *outer* integral: at
each outer node y is fixed and the λ integrand is smooth, however sharply λ predicts the
label late in learning (conditioning on λ instead gives the label probability
``Φ(μ/σ)`` with σ → 0, which no fixed rule in λ resolves).

* **Linear label** (M = 1, or M = 2 with ``|v*_1| = |v*_2|``; ``p[9] = 1``): erf is odd
  and increasing, so ``y = sign(ζ)``, ``ζ = Σ_m sign(v*_m) ν_m``. Fields in the order
  ``(ζ, λ, ν)``; the outer rule is one line in ζ cut at 0. ν enters only dR, linearly, so
  only its regression on ``(ζ, λ)`` — the first 1 + K columns of its Cholesky rows — is
  needed.
* **General label** (``p[9] = 0``): fields ``(ν, λ)``; tensor Gauss–Hermite over
  ξ_ν1..ξ_ν(M−1) (``n_nu`` nodes); along the last coordinate the label jumps at
  ``ν_M = t``, ``t = √2 erfinv(−Σ_{m<M} v*_m erf(ν_m/√2) / v*_M)``. The teacher units are
  ordered by ``|v*_m|`` so that the unit with the largest one is last: for M = 2 the
  threshold then never leaves ``(−1, 1)`` and the outer integrand has no kink.

Either way the last outer line, ``[−8, 8]``, is cut into 6 cells plus the jump, each piece
integrated by ``n_leg``-point Gauss–Legendre against ``φ``. Inside: tensor Gauss–Hermite in
ξ_λ (``n_lam`` nodes per unit), or, for a kinked activation (ReLU) at K ≤ 2
(``p[10] = 1``), a nested piecewise Gauss–Legendre rule (``n_lam`` nodes per piece) cut
at each unit's kinks ``λ_k = ±u_k`` (λ_k is affine in ξ_λk given the coordinates before
it).

``ε_g`` integrates an indicator in λ (the sign of ``G^{+1} − G^{−1}``). Given the outer
node, an explicit rule over ξ_λ1..ξ_λ(K−1) — the midpoint rule in probability space
(``ξ = Φ⁻¹((i + ½)/n)``, robust to the cusps of this integrand) at K = 2, scrambled Sobol
points at K ≥ 3 — and, along ξ_λK (on which ``λ_K`` depends affinely), the exact Gaussian
mass of the pieces where the prediction is wrong: the sign changes of
``D = G^{+1} − G^{−1}`` are located on a grid of spacing 0.27 in ``[−8, 8]`` and refined
by bisection.

Parameter vector ``p`` (the teacher units are reordered by increasing ``|v*_m|``: ``T``
and ``v_star`` are stored in that order, ``pos[m]`` is the position of unit m)::

    p = [K, M, eta, eta_u, theta, n_lam, n_nu, n_eg, n_leg, linear label (0/1: then one
         outer coordinate, else M), split λ rule (0/1), T (M·M), v_star (M), pos (M),
         GH nodes/weights for λ (n_lam, n_lam), for ν (n_nu, n_nu), ε_g points
         (n_eg·(K−1)) and weights (n_eg), Gauss–Legendre nodes/weights on [−1, 1]
         (n_leg, n_leg)]

Flat state ``y = [Q upper triangle, R (row-major), u]`` (:class:`FFLayout`): Q and R first,
as the solvers' positive-semi-definiteness check expects.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .state import OrderParameters, _check_size

__all__ = ["ACTIVATIONS", "signals", "build_ff_system", "FFSystem", "FFLayout",
           "observables", "default_nodes", "FF_CODEGEN_VERSION"]

#: built-in student activations (any sympy expression of theory.activations.z works too)
ACTIVATIONS = ("erf", "linear", "relu", "tanh", "sigmoid")
FF_CODEGEN_VERSION = "2"
_HEADER = 11


def check_activation(activation):
    """The :class:`theory.activations.Activation` of ``activation`` (a built-in name, a
    ``"user:<expr>"`` string or a sympy expression of ``z``); ValueError otherwise."""
    from .activations import get_activation
    try:
        return get_activation(activation)
    except ValueError as exc:
        raise ValueError(f"unsupported activation for rule 'ff': {exc}") from None


# ============================================================================ sympy part
def _sympy():
    import sympy as sp

    class sigmoid(sp.Function):
        """Logistic function s(x) = 1/(1 + e^{−x}); s' = s (1 − s)."""

        def fdiff(self, argindex=1):
            return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))

    class softplus(sp.Function):
        """softplus(x) = log(1 + e^x); softplus' = s."""

        def fdiff(self, argindex=1):
            return sigmoid(self.args[0])

    return sp, sigmoid, softplus


@lru_cache(maxsize=None)
def _symbols():
    sp, sigmoid, softplus = _sympy()
    names = ("z", "lam_p", "lam_m", "G_p", "G_m", "theta")
    return sp, sigmoid, softplus, {n: sp.Symbol(n, real=True) for n in names}


def activation_expr(activation):
    """``g(z)`` as a sympy expression of the symbol ``z`` (from :mod:`theory.activations`)."""
    return check_activation(activation).expr


def signals(activation: str = "erf") -> dict:
    """The FF loss and signals as sympy expressions (SCIENCE.md §9).

    Returns a dict of expressions in the symbols ``lam_p, lam_m`` (λ_k^±), ``G_p, G_m``
    (G^±) and ``theta``:

    ``loss``      softplus(θ − G⁺) + softplus(G⁻ − θ)
    ``dL_dGp``    ∂L/∂G⁺ (sympy.diff)         ``dL_dGm``  ∂L/∂G⁻
    ``dh2``       d g(z)²/dz (sympy.diff), a function of ``z``
    ``a_plus``    ∂L/∂G⁺ · dh2(λ⁺) = ∂L/∂λ_k^+      ``a_minus`` likewise
    ``delta``     a_plus + a_minus (the first-layer signal)
    ``u_signal``  a_plus − a_minus (the label-weight signal, times y)
    """
    sp, sigmoid, softplus, S = _symbols()
    z, Gp, Gm, th = S["z"], S["G_p"], S["G_m"], S["theta"]
    g = activation_expr(activation)
    loss = softplus(th - Gp) + softplus(Gm - th)
    dLp, dLm = sp.diff(loss, Gp), sp.diff(loss, Gm)
    dh2 = sp.diff(g ** 2, z)
    ap = dLp * dh2.subs(z, S["lam_p"])
    am = dLm * dh2.subs(z, S["lam_m"])
    return {"g": g, "loss": loss, "loss_p": softplus(th - Gp), "loss_m": softplus(Gm - th),
            "dL_dGp": dLp, "dL_dGm": dLm, "dh2": dh2, "a_plus": ap, "a_minus": am,
            "delta": ap + am, "u_signal": ap - am}


def _printer():
    sp, sigmoid, softplus, _ = _symbols()
    from sympy.printing.pycode import PythonCodePrinter

    class P(PythonCodePrinter):
        def _print_Function(self, e):
            name = type(e).__name__
            if name in ("sigmoid", "softplus"):
                return f"_{name}({self._print(e.args[0])})"
            return super()._print_Function(e)

        def _print_Heaviside(self, e):
            return f"_heaviside({self._print(e.args[0])})"

        def _print_Max(self, e):
            a, b = e.args
            return f"max({self._print(a)}, {self._print(b)})"

        def _print_Rational(self, e):
            return f"({e.p}.0/{e.q}.0)"

    return P({"fully_qualified_modules": True, "strict": False})


# ====================================================================== generated module
_TEMPLATE = r'''
import math
import numpy as np
from numba import njit

_HEADER = @HEADER@
_SQ2 = math.sqrt(2.0)
_INV_SQ2PI = 1.0 / math.sqrt(2.0 * math.pi)
_XMAX = 8.0          # the last ν and λ coordinates are integrated over [−8, 8] (tail 1e-15)
_NCELL = 6           # cells of width 8/3 (outer ν rule)
_LMAX = 60.0         # ε_g: monotone pieces of the decision are located on [−60, 60] ...
_LSTEP = 0.005       # ... on a grid of this spacing (once per evaluation)
_WMIN = 1e-18        # tensor nodes of smaller weight are skipped (their total is < 1e-12)


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
    for _ in range(3):
        d = 1.1283791670955126 * math.exp(-x * x)
        if d == 0.0:
            break
        x -= (math.erf(x) - c) / d
    return x


# ------------------------------------------------- generated from the sympy signals
@GENERATED@


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
    K = int(p[0]); M = int(p[1])
    lin = int(p[9]) == 1
    MO = 1 if lin else M
    n = MO + K + (M if lin else 0)
    o_vs = _HEADER + M * M
    o_pm = o_vs + M
    C = np.zeros((n, n))
    i = 0
    for a in range(K):
        for b in range(a, K):
            C[MO + a, MO + b] = y[i]; C[MO + b, MO + a] = y[i]
            i += 1
    if lin:
        s = np.empty(M)
        for m in range(M):
            s[m] = 1.0 if p[o_vs + m] > 0.0 else -1.0
        for m in range(M):
            for m2 in range(M):
                C[MO + K + m, MO + K + m2] = p[_HEADER + m * M + m2]
        for m in range(M):                      # Cov(ζ, ν_m) = (T s)_m; Var ζ = sᵀ T s
            t = 0.0
            for m2 in range(M):
                t += p[_HEADER + m * M + m2] * s[m2]
            C[0, MO + K + m] = t; C[MO + K + m, 0] = t
            C[0, 0] += s[m] * t
        for a in range(K):
            za = 0.0
            for m in range(M):
                j = int(p[o_pm + m])
                r = y[i + a * M + m]
                C[MO + a, MO + K + j] = r; C[MO + K + j, MO + a] = r
                za += s[j] * r
            C[0, MO + a] = za; C[MO + a, 0] = za
    else:
        for a in range(K):
            for m in range(M):
                j = int(p[o_pm + m])              # teacher unit m sits at position j
                C[j, MO + a] = y[i + a * M + m]; C[MO + a, j] = y[i + a * M + m]
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
    K = int(p[0]); M = int(p[1])
    nl = int(p[5]); nn = int(p[6]); ne = int(p[7]); ng = int(p[8])
    o_vs = _HEADER + M * M
    o_l = o_vs + 2 * M                        # v_star (M), then the position of each unit
    o_n = o_l + 2 * nl
    o_e = o_n + 2 * nn                        # ε_g points (ne, K − 1), then weights (ne)
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
    nn = int(p[6]); ng = int(p[8])
    vs = p[o_vs:o_vs + M].copy()
    if int(p[9]) == 1:
        vs[:] = 1.0
    xn = p[o_n:o_n + nn]; wn = p[o_n + nn:o_n + 2 * nn]
    xg = p[o_g:o_g + ng]; wg = p[o_g + ng:o_g + 2 * ng]
    total = 1
    for m in range(M - 1):
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
            lo = cuts[q]; hi = cuts[q + 1]
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


@njit(cache=True, nogil=True, inline="always")
def _passes(lam, u, yl, theta, K, ap, am):
    """Both passes for label y = yl: fills a^±; returns (G⁺, G⁻)."""
    Gp = 0.0
    Gm = 0.0
    for k in range(K):
        a = g_(lam[k] + u[k] * yl)
        b = g_(lam[k] - u[k] * yl)
        Gp += a * a
        Gm += b * b
    dp = dLp_(Gp, theta)
    dm = dLm_(Gm, theta)
    for k in range(K):
        ap[k] = dp * dh2_(lam[k] + u[k] * yl)
        am[k] = dm * dh2_(lam[k] - u[k] * yl)
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
    xl = p[o_l:o_l + nl]; wl = p[o_l + nl:o_l + 2 * nl]
    total = 1
    for k in range(K):
        total *= nl
    X = np.empty((total, K)); W = np.empty(total)
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
    """Nodes of coordinate ξ_λ(lev) given ξ_λ0..ξ_λ(lev−1): [−8, 8] cut into _NCELL cells
    and at the kinks of unit lev (λ_lev = ±u_lev, where g(λ ± u) bends for a kinked
    activation), each piece with the Gauss–Legendre rule times φ. Returns the count."""
    s = mlam[lev]
    for j in range(lev):
        s += L[MO + lev, MO + j] * xi[j]
    b = L[MO + lev, MO + lev]
    k1 = 2.0 * _XMAX; k2 = 2.0 * _XMAX             # outside: no kink
    if b > 0.0:
        k1 = (-abs(u[lev]) - s) / b
        k2 = (abs(u[lev]) - s) / b
    cuts = np.empty(_NCELL + 3)
    nc = 0
    for i in range(_NCELL + 1):
        x = -_XMAX + i * (2.0 * _XMAX / _NCELL)
        for kk in (k1, k2):
            if nc > 0 and cuts[nc - 1] < kk < x:
                cuts[nc] = kk
                nc += 1
        cuts[nc] = x
        nc += 1
    ng = xg.shape[0]
    cnt = 0
    for q in range(nc - 1):
        lo = cuts[q]; hi = cuts[q + 1]
        if hi <= lo:
            continue
        mid = 0.5 * (lo + hi); half = 0.5 * (hi - lo)
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
    ng = int(p[5])                  # split rule: the λ slot holds Gauss–Legendre nodes
    xg = p[o_l:o_l + ng]; wg = p[o_l + ng:o_l + 2 * ng]
    per = (_NCELL + 2) * ng
    X = np.empty((K, per)); Wl = np.empty((K, per))
    cnt = np.zeros(K, np.int64); idx = np.zeros(K, np.int64)
    xi = np.zeros(K); wacc = np.ones(K + 1)
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
    u = y[K * (K + 1) // 2 + K * M:]
    for i in range(acc.shape[0]):
        acc[i] = 0.0
    o_dd = K * K; o_dn = 2 * K * K; o_u = o_dn + K * M; o_L = o_u + K
    XI, WT, YL = _outer(p, L, MO)
    if split:
        cap = 1
        for k in range(K):
            cap *= (_NCELL + 2) * int(p[5])
        XIN = np.empty((cap, K)); WIN = np.empty(cap)
        nin = 0
    else:
        XIN, WIN = _gh_inner(p, K)
        nin = WIN.shape[0]
    lam = np.empty(K); mlam = np.empty(K); nu = np.empty(M); mnu = np.empty(M)
    ap = np.empty(K); am = np.empty(K); dl = np.empty(K)
    for o in range(WT.shape[0]):
        Wo = WT[o]
        yl = YL[o]
        _outer_part(L, MO, K, XI, o, mlam)
        for m in range(M):
            v = 0.0
            if lin:                                 # regression of ν_m on (ζ, λ): ζ part
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
            Gp, Gm = _passes(lam, u, yl, theta, K, ap, am)
            acc[o_L] += W * (Lp_(Gp, theta) + Lm_(Gm, theta))
            acc[o_L + 1] += W * (Gp - Gm)
            if not want_drift:
                continue
            for m in range(M):
                v = mnu[m]
                if lin:                             # ... and its λ part
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
    K = int(p[0]); M = int(p[1])
    eta = p[2]; eta_u = p[3]
    acc = np.empty(2 * K * K + K * M + K + 2)
    _moments(y, p, acc, True)
    o_dd = K * K; o_dn = 2 * K * K; o_u = o_dn + K * M
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
    K = int(p[0]); M = int(p[1])
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
    u = y[K * (K + 1) // 2 + K * M:]
    last = K - 1
    XI, WT, YL = _outer(p, L, MO)
    xi = np.zeros(K); mlam = np.empty(K)
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
                xa = cuts[q]; xb = cuts[q + 1]
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

'''


def _generated_functions(activation: str) -> str:
    """numba source of g_, dh2_, dLp_, dLm_, Lp_, Lm_ printed from :func:`signals`."""
    sp, _, _, S = _symbols()
    sig = signals(activation)
    P = _printer()
    z, Gp, Gm, th = S["z"], S["G_p"], S["G_m"], S["theta"]
    defs = [("g_", "z", sig["g"]), ("dh2_", "z", sig["dh2"]),
            ("dLp_", "G_p, theta", sig["dL_dGp"]), ("dLm_", "G_m, theta", sig["dL_dGm"]),
            ("Lp_", "G_p, theta", sig["loss_p"]), ("Lm_", "G_m, theta", sig["loss_m"])]
    out = []
    for name, args, expr in defs:
        out.append('@njit(cache=True, nogil=True, inline="always")')
        out.append(f"def {name}({args}):")
        out.append(f"    return {P.doprint(expr)}")
        out.append("")
    return "\n".join(out)


def _source(activation: str, digest: str) -> str:
    head = (f"# Generated by theory.ff (version {FF_CODEGEN_VERSION}) — do not edit.\n"
            f"# activation={check_activation(activation).name!r} key={digest}\n")
    return head + _TEMPLATE.replace("@GENERATED@", _generated_functions(activation)).replace(
        "@HEADER@", str(_HEADER))


_MODULES: dict = {}


def _load_module(activation: str):
    """Generate (or find on disk) and import the FF module of ``activation``."""
    from .activations import activation_key
    from .codegen import cache_dir

    act = check_activation(activation)
    akey = activation_key(act)
    if akey in _MODULES:
        return _MODULES[akey]
    t0 = time.perf_counter()
    import sympy as sp
    digest = hashlib.sha256("|".join([FF_CODEGEN_VERSION, Path(__file__).read_text(),
                                      sp.srepr(act.expr)]).encode()).hexdigest()[:16]
    path = cache_dir() / f"ff_{akey}_{digest}.py"
    from .cache import load_module, module_name
    # written with a content hash, verified, repaired if corrupt (theory.cache); the
    # kernels compile lazily, on the first right-hand side
    mod, _ = load_module(path, lambda: _source(activation, digest), module_name(path),
                         lambda m: None, required=("rhs", "eg", "loss_gap"))
    _MODULES[akey] = (mod, path, time.perf_counter() - t0)
    return _MODULES[akey]


# ================================================================================ nodes
def default_nodes(K: int, M: int, activation: str = "erf") -> dict:
    """Node counts: ``n_lam`` Gauss–Hermite nodes per student unit for the drift (smooth
    activations, or kinked ones at K ≥ 3), ``split_lam`` = 1 for the nested split rule
    instead (kinked activations at K ≤ 2; ``n_lam`` is then the number of Gauss–Legendre
    nodes on each piece of [−8, 8] between the cells' edges and the kinks), ``n_nu`` Gauss–Hermite nodes per
    teacher unit beyond the first (only for a label that is not the sign of a linear form
    of ν), ``n_eg`` points of ε_g's outer rule (midpoint in probability space at K = 2,
    scrambled Sobol at K ≥ 3), ``n_leg`` Gauss–Legendre nodes per piece.

    Chosen so that every expectation agrees with 10⁷-sample Monte Carlo within 1e-3
    (tests/theory/test_ff.py, measured errors in docs/ff-theory.md); the drift costs
    ``n_lam^K`` (or ``(8 n_lam)^K``) inner nodes times the outer rule (42 nodes, or
    ``42 n_nu^(M−1)`` for a non-linear label)."""
    kinked = not check_activation(activation).smooth
    n_lam = {1: 48, 2: 32, 3: 20, 4: 18}.get(K, 10)
    if kinked:                      # K ≤ 2: Gauss–Legendre nodes per piece of the split rule
        n_lam = {1: 16, 2: 12, 3: 20, 4: 16}.get(K, 12)
    n_eg = {1: 1, 2: 48}.get(K, 1 << 13)
    return {"n_lam": n_lam, "split_lam": int(kinked and K <= 2), "n_nu": 12 if M > 1 else 1,
            "n_eg": n_eg, "n_leg": 6}


@lru_cache(maxsize=None)
def _gauss_hermite(n: int):
    """One-dimensional Gauss–Hermite nodes and weights for E over N(0, 1), from
    :func:`theory.quadrature.make_rule` (the tensor products are formed in the kernels)."""
    if n == 1:
        return np.zeros(1), np.ones(1)
    from .quadrature import make_rule
    r = make_rule(1, "gauss-hermite", n)
    return r.x1, r.w1


@lru_cache(maxsize=None)
def _midpoint_normal(n: int):
    """Midpoint rule in probability space: ``ξ_i = Φ⁻¹((i + ½)/n)``, weights ``1/n``.

    Used for ε_g's outer integral, whose integrand has a cusp where the other units'
    goodness difference vanishes (there the sign of ``D`` is decided far in the tail of
    the last coordinate): Gauss–Hermite converges like ~1/n on it, this rule much faster
    (measured: 3e-5 at n = 64 where Gauss–Hermite is 7e-4 off)."""
    from scipy.special import ndtri
    return ndtri((np.arange(n) + 0.5) / n), np.full(n, 1.0 / n)


@lru_cache(maxsize=None)
def _eg_points(K: int, n: int):
    """The explicit outer rule of ε_g over ξ_λ1..ξ_λ(K−1): points (n, K − 1) and weights.

    K = 1: one empty point. K = 2: the midpoint rule in probability space (above). K ≥ 3:
    ``n`` scrambled Sobol points (fixed seed) mapped by Φ⁻¹ — the tensor midpoint rule
    converges like 1/n per dimension on the cusps of this integrand (measured at K = 4:
    3e-3 off with 14³ points), randomised QMC close to 1/n in the total count."""
    if K == 1:
        return np.zeros((1, 0)), np.ones(1)
    if K == 2:
        x, w = _midpoint_normal(n)
        return x[:, None], w
    from .quadrature import make_rule
    r = make_rule(K - 1, "sobol", n, seed=0)
    return r.nodes, r.weights


@lru_cache(maxsize=None)
def _gauss_legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


# =============================================================================== layout
@dataclass(frozen=True)
class FFLayout:
    """Flat FF state ``y = [Q upper triangle (row-major), R (row-major), u]``."""

    K: int
    M: int
    adaptive_b: bool = False

    @property
    def nQ(self) -> int:
        return self.K * (self.K + 1) // 2

    @property
    def slices(self) -> dict:
        K, M, nQ = self.K, self.M, self.nQ
        return {"Q": slice(0, nQ), "R": slice(nQ, nQ + K * M),
                "u": slice(nQ + K * M, nQ + K * M + K)}

    @property
    def n(self) -> int:
        return self.nQ + self.K * self.M + self.K

    def pack(self, state: OrderParameters) -> np.ndarray:
        if (state.K, state.M) != (self.K, self.M):
            raise ValueError(f"state has K={state.K}, M={state.M} but the system was built "
                             f"for K={self.K}, M={self.M}")
        _require_u(state)
        iu = np.triu_indices(self.K)
        return np.concatenate([state.Q[iu], state.R.ravel(), state.u]).astype(float)

    def unpack(self, y) -> dict:
        y = np.asarray(y, dtype=float)
        if y.shape[-1] != self.n:
            raise ValueError(f"flat state must have last dimension {self.n}, got {y.shape}")
        K, M, s = self.K, self.M, self.slices
        lead = y.shape[:-1]
        Q = np.empty(lead + (K, K))
        iu = np.triu_indices(K)
        Q[..., iu[0], iu[1]] = y[..., s["Q"]]
        Q[..., iu[1], iu[0]] = y[..., s["Q"]]
        return {"Q": Q, "R": y[..., s["R"]].reshape(lead + (K, M)), "u": y[..., s["u"]].copy()}

    def state(self, y, constants: OrderParameters) -> OrderParameters:
        return constants.replace(**self.unpack(y))


def _require_u(state: OrderParameters):
    if state.u is None:
        raise ValueError("rule 'ff' needs the label weights u (K numbers) in the initial "
                         "state: OrderParameters(..., u=...) or init key 'u' (e.g. "
                         "u ~ 0.1·N(0, 1); u = 0 is the symmetric point)")


@dataclass(frozen=True)
class FFRule:
    """The FF rule as the solver sees it (name, parameters and their defaults)."""

    name: str = "ff"
    feedback: str = "none"
    params: dict = field(default_factory=lambda: {"theta": None})


# =============================================================================== system
@dataclass
class FFSystem:
    """The compiled FF system for one K, M and activation: implements the contract of
    :class:`theory.system.System` (``rhs(y, p, dy)``, ``eg(y, p)``, ``noise`` = None,
    ``layout``, ``params``, ``observables``, ``describe``)."""

    K: int
    M: int
    activation: str
    nodes: dict
    rhs: object
    eg: object
    loss_gap: object
    source_path: Path
    layout: FFLayout
    rule: FFRule = field(default_factory=FFRule)
    noise: object = None
    timings: dict = field(default_factory=dict)

    #: the model in theory.models.MODELS (the System contract, theory.system.System)
    model = "ff"

    def describe(self) -> dict:
        """Provenance (:func:`theory.system.describe_system`) plus the node counts."""
        from .system import describe_system
        return {**describe_system(self), "nodes": dict(self.nodes)}

    def params(self, state: OrderParameters, eta, eta_v=None, sigma=0.0, theta=None,
               eta_u=None) -> np.ndarray:
        """The parameter vector ``p``. ``eta_u`` (label-weight rate, scaled η_u/N) may also
        be given as ``eta_v`` (the solver's second-layer slot); default ``eta``. ``theta``
        defaults to K/2 (SCIENCE.md §9).

        Raises ValueError for θ ≤ 0, a state without ``u``, a zero ``v*``, σ ≠ 0 or bad
        rates.
        """
        if (state.K, state.M) != (self.K, self.M):
            raise ValueError(f"state has K={state.K}, M={state.M} but the system was built "
                             f"for K={self.K}, M={self.M}")
        _require_u(state)
        if eta_u is None:
            eta_u = eta if eta_v is None else eta_v
        theta = self.K / 2.0 if theta is None else theta
        for name, val in (("eta", eta), ("eta_u", eta_u)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {val}")
        try:
            theta = float(theta)
        except (TypeError, ValueError):
            raise ValueError(f"theta must be a positive number, got {theta!r}") from None
        if not (np.isfinite(theta) and theta > 0):
            raise ValueError(f"theta (the goodness threshold of rule 'ff') must be a positive "
                             f"finite number, got {theta}")
        if sigma:
            raise ValueError("rule 'ff' has no output noise: its labels are sign(teacher); "
                             f"sigma must be 0, got {sigma}")
        if np.any(state.v_star == 0):
            raise ValueError(f"rule 'ff' needs every v_star non-zero (a unit with v*_m = 0 "
                             f"does not take part in the label), got {state.v_star}")
        # Linear label: with M = 1, or M = 2 and |v*_1| = |v*_2|, y = sign(Σ v*_m erf(ν_m/√2))
        # = sign(ζ), ζ = Σ_m sign(v*_m) ν_m (erf is odd and increasing), so the outer
        # integral is one split half-line in ζ whatever M.
        av = np.abs(state.v_star)
        lin = self.M == 1 or (self.M == 2 and av[0] == av[1])
        # Otherwise the teacher unit with the largest |v*| goes last: its ν is integrated
        # exactly (half-line), and with |v*_last| >= |v*_m| the threshold
        # erf(t/√2) = −Σ v*_m erf(ν_m/√2)/v*_last stays inside (−1, 1) for M = 2, so the
        # remaining Gauss–Hermite integrand has no kink.
        order = np.argsort(av, kind="stable")
        pos = np.empty(self.M)
        pos[order] = np.arange(self.M)
        nd = self.nodes
        # the λ slot: Gauss–Hermite nodes, or Gauss–Legendre ones for the split rule
        xl, wl = (_gauss_legendre(nd["n_lam"]) if nd["split_lam"] else
                  _gauss_hermite(nd["n_lam"]))
        xn, wn = _gauss_hermite(nd["n_nu"])
        xe, we = _eg_points(self.K, nd["n_eg"])
        xg, wg = _gauss_legendre(nd["n_leg"])
        head = [self.K, self.M, eta, eta_u, theta, nd["n_lam"], nd["n_nu"], len(we),
                nd["n_leg"], int(lin), nd["split_lam"]]
        assert len(head) == _HEADER
        return np.ascontiguousarray(np.concatenate(
            [head, state.T[np.ix_(order, order)].ravel(), state.v_star[order], pos, xl, wl,
             xn, wn, xe.ravel(), we, xg, wg]), dtype=float)

    def evaluate(self, state: OrderParameters, eta, eta_v=None, sigma=0.0, theta=None,
                 eta_u=None) -> dict:
        """The drift at ``state``: ``{"Q", "R", "u"}`` (d/dα)."""
        p = self.params(state, eta, eta_v, sigma, theta=theta, eta_u=eta_u)
        y = self.layout.pack(state)
        dy = np.empty_like(y)
        self.rhs(y, p, dy)
        return self.layout.unpack(dy)

    def observables(self, y, p) -> dict:
        """``eg``, ``loss`` and ``gap`` for a flat state or a stack ``(T, n)`` of them."""
        Y = np.atleast_2d(np.asarray(y, dtype=float))
        eg, loss, gap = (np.empty(len(Y)) for _ in range(3))
        out = np.empty(2)
        for i, yi in enumerate(Y):
            yi = np.ascontiguousarray(yi)
            eg[i] = self.eg(yi, p)
            self.loss_gap(yi, p, out)
            loss[i], gap[i] = out
        if np.ndim(y) == 1:
            return {"eg": eg[0], "loss": loss[0], "gap": gap[0]}
        return {"eg": eg, "loss": loss, "gap": gap}

    def state_observables(self, state: OrderParameters, theta=None) -> dict:
        """``eg``, ``loss``, ``gap`` at ``state``."""
        p = self.params(state, 0.0, 0.0, theta=theta)
        return self.observables(self.layout.pack(state), p)


_SYSTEMS: dict = {}


def build_ff_system(K: int, M: int, activation: str = "erf", nodes: dict | None = None
                    ) -> FFSystem:
    """The compiled FF system (generated once per activation and process, cached on disk;
    every K, M and node count reuses the same compiled kernels)."""
    act = check_activation(activation)
    K, M = _check_size("K", K), _check_size("M", M)
    nd = dict(default_nodes(K, M, act.name))
    if nodes:
        bad = set(nodes) - set(nd)
        if bad:
            raise ValueError(f"unknown node counts {sorted(bad)}; allowed: {sorted(nd)}")
        nd.update({k: int(v) for k, v in nodes.items()})
    key = (K, M, act.key, tuple(sorted(nd.items())))
    if key not in _SYSTEMS:
        mod, path, t = _load_module(act)
        _SYSTEMS[key] = FFSystem(K, M, act.name, nd, mod.rhs, mod.eg, mod.loss_gap, path,
                                 FFLayout(K, M), timings={"load": t})
    return _SYSTEMS[key]


def observables(Q, R, T, u, v_star, *, theta, activation="erf", nodes=None) -> dict:
    """ε_g, mean loss and goodness gap from order parameters (leading axes allowed on
    ``Q (…, K, K)``, ``R (…, K, M)``, ``u (…, K)``; ``T``, ``v_star`` fixed).

    Used by the simulations on their measured order parameters."""
    Q, R, u = (np.asarray(a, dtype=float) for a in (Q, R, u))
    T, v_star = np.asarray(T, dtype=float), np.asarray(v_star, dtype=float)
    K, M = R.shape[-2], R.shape[-1]
    sysm = build_ff_system(K, M, activation, nodes)
    lead = u.shape[:-1]
    iu = np.triu_indices(K)
    Y = np.concatenate([Q[..., iu[0], iu[1]], R.reshape(lead + (K * M,)), u], axis=-1)
    st = OrderParameters(Q=np.eye(K), R=np.zeros((K, M)), T=T, v=np.zeros(K),
                         v_star=v_star, u=np.zeros(K))
    p = sysm.params(st, 0.0, 0.0, theta=theta)
    out = sysm.observables(Y.reshape(-1, Y.shape[-1]), p)
    return {k: v.reshape(lead) for k, v in out.items()}
