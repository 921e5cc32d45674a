"""Marginal Gauss–Hermite: each expectation over only the fields it depends on
(docs/quadrature.md, "The marginal scheme").

For a rule whose signal is linear in the error and has no second-pass field,
``δ_k = h_k(λ_k) e`` (bp: ``h = v_k g'(λ_k)``; fa, afa: ``h = b_k g'(λ_k)``), presynaptic
``p = x`` and a second-layer signal ``s_k(λ_k)`` free of e, write
``e = Σ_u A_u g(z_u) − σζ`` with ``A = (v, −v*)``, ``z = (λ, ν)``, ζ ~ N(0, 1) independent.
Every expectation of :mod:`theory.codegen_quad`'s recipe is then a sum of expectations of
products of single-field functions over at most four fields::

    E[δ_k z_l]   = Σ_u A_u E[h_k(z_k) g(z_u) z_l]                                   (≤ 3)
    E[δ_k δ_l]   = Σ_{u,u'} A_u A_u' E[h_k h_l g(z_u) g(z_u')] + σ² E[h_k h_l]       (≤ 4)
    E[e s_k]     = Σ_u A_u E[g(z_u) s_k(z_k)]                                         (≤ 2)
    √N E[δ_k φ]  = Σ_u A_u (b_k E[h'_k(z_k) g(z_u)] + B_u E[h_k(z_k) g'(z_u)])       (≤ 2)
    ε_g          = ½ Σ_{u,u'} A_u A_u' E[g(z_u) g(z_u')]                              (≤ 2)

(``B = (b, c)``; the ζ cross terms vanish because ζ is independent and centred). The
expectation of a function of a subset S of the fields needs only the marginal covariance
``C_S`` — exactly. So the terms are grouped by their set S of *distinct* fields (duplicates
such as k = l or u = k collapse), and each group is integrated once by a ``|S|``-dimensional
tensor Gauss–Hermite rule over ``N(0, C_S)`` (``z_S = L_S ξ``, ``L_S`` from
:func:`theory.quadrature.factor_nb`), with ``n_d = marginal_n(n, d)`` nodes per field for
``d = |S|`` (n for four fields, 3n, 3n, 4n for three, two, one). For K = 3, M = 2 that is
five 4-field subsets instead of one 5-field tensor rule: 5·n⁴ instead of n⁵ nodes. Tensor
nodes of weight < :data:`MARGINAL_PRUNE` are skipped; with a Cholesky ``L_S`` the factors of
field a are evaluated in loop level a (z_a depends on ξ_0…ξ_a only).

The term tables depend on K and M only; they are built here, in Python, once, and travel in
the parameter vector after the packed rule (so one compiled module serves every K, M, n)::

    p = [... as theory.codegen_quad ..., F_norm2, 2, P, D, n,
         (n_d, x_d (n_d), w_d (n_d)) for d = 1…4,
         rhs table, eg table (activations without a closed-form I2)]
    table = [NS, NI, NC, subsets (NS × 6: |S|, four fields (−1 unused), end of the subset's
             integrals), integrals (NI × 8: four (kind, slot) factors), contributions
             (NC × 6: integral, accumulator, multiplier, three coefficient indices)]

Factor kinds: 0 one, 1 g, 2 g', 3 z, 4 h, 5 h' (= ∂h/∂λ), 6 s; a factor's slot is the
position of its field in S. A contribution adds ``mult · c[i1] c[i2] c[i3] · I`` to an
accumulator, with ``c = [1, σ², A (NU), B (NU)]``: the state-dependent coefficients are read
from the state at run time, never frozen in the table.
"""
from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import sympy as sp

from . import rules as R
from .activations import Activation
from .cache import load_module, module_name
from .quadrature import marginal_n

__all__ = ["marginal_form", "marginal_tables", "marginal_source", "load_marginal",
           "MARGINAL_CODEGEN_VERSION", "table_nodes"]

MARGINAL_CODEGEN_VERSION = "1"
#: tensor-product nodes whose weight (the 1-D weights normalised to sum 1, multiplied) is
#: below this are skipped: at 48 nodes per field in 4 fields that keeps 9.6 % of them; the
#: skipped weight sums to 3e-14 (the integrands are bounded by a polynomial of the fields
#: there), far below the rule's own error
MARGINAL_PRUNE = 1e-18
#: factor kinds of the tables (see the module docstring)
ONE, G, GP, Z, H, HP, S = range(7)


# ------------------------------------------------------------------ the rule's shape
def marginal_form(rule: R.Rule, act: Activation, adaptive: bool):
    """``(h, h', s)`` as sympy expressions of ``lam, v_k, b_k`` and the rule parameters,
    with ``δ = h(λ) e`` and ``s`` the second-layer signal; h' only when ``adaptive``
    (else 0).

    Raises
    ------
    ValueError
        The rule does not have the shape the marginal scheme needs (the message names the
        rule, the reason and the schemes that do apply).
    NotImplementedError
        Adaptive feedback with a kinked activation (h' has a Dirac delta); the other
        schemes handle it through Stein's lemma.
    """
    from .codegen_quad import _concrete

    def refuse(why):
        return ValueError(
            f"quadrature scheme 'marginal' does not apply to rule {rule.name!r}: {why}. It "
            "needs δ_k = h(λ_k) e (linear in the error e, no second-pass field lam_t, no "
            "phi), presynaptic x and a second-layer signal free of e; use scheme 'auto', "
            "'gauss-hermite' or 'sobol'")

    if rule.presynaptic != "x":
        raise refuse(f"its presynaptic term is {rule.presynaptic!r}, not 'x'")
    for what, ex in (("delta", rule.delta), ("v_signal", rule.v_signal)):
        used = ex.free_symbols & {R.lam_t, R.phi}
        if used:
            raise refuse(f"its {what} uses {', '.join(sorted(map(str, used)))}")
    if R.e in rule.v_signal.free_symbols:
        raise refuse("its second-layer signal v_signal depends on e")
    # g(λ_k), g'(λ_k) and g''(λ_k) stay symbols: the kernel computes them once per node
    # and field, and evaluates h, h', s from them
    own = {R.g(R.lam): _G, R.gp(R.lam): _GP}
    delta = _concrete(sp.sympify(rule.delta).xreplace(own), act)
    e_ = sp.Symbol("e_", real=True)
    lam_ = sp.Symbol("lam_", real=True)
    h = sp.diff(delta, e_)
    if sp.simplify(sp.diff(h, e_)) != 0:
        raise refuse("δ is not linear in e")
    if sp.simplify(delta.subs(e_, 0)) != 0:
        raise refuse("δ does not vanish at e = 0")
    h = sp.simplify(h) if h.has(e_) else h
    if h.has(e_):
        raise refuse("δ/e still depends on e")
    s = _concrete(sp.sympify(rule.v_signal).xreplace(own), act)
    hp = sp.Integer(0)
    if adaptive:
        # dh/dλ through λ itself, g(λ) and g'(λ)
        hp = sp.diff(h, lam_) + sp.diff(h, _G) * _GP + sp.diff(h, _GP) * _GPP
        if hp.has(sp.DiracDelta) or (hp.has(_GPP) and _gpp_expr(act).has(sp.DiracDelta)):
            raise NotImplementedError(
                f"rule {rule.name!r} with activation {act.name!r}: the drift of the adaptive "
                "feedback b needs the derivative of δ, which has a Dirac delta (g' of a kinked "
                "activation is a step); the schemes 'auto', 'sobol' and 'gauss-hermite' take "
                "this drift through Stein's lemma instead")
    return h, hp, s


_G, _GP, _GPP = sp.symbols("G_ GP_ GPP_", real=True)


def _gpp_expr(act: Activation):
    """g''(lam_) as an expression of lam_ and GP_ = g'(lam_) when g''/g' is a rational
    function of z (erf: g'' = −z g'; no second exponential per node), else of lam_."""
    z = sp.Symbol("z", real=True)
    lam_ = sp.Symbol("lam_", real=True)
    gpp = sp.diff(act.deriv, z)
    if act.deriv != 0:
        ratio = sp.simplify(gpp / act.deriv)
        if ratio.is_rational_function(z):
            return (ratio * _GP).xreplace({z: lam_})
    return gpp.xreplace({z: lam_})


# ---------------------------------------------------------------------- the tables
class _Tables:
    def __init__(self):
        self.integrals = {}          # canonical factors -> integral index (provisional)
        self.contribs = []           # (integral key, acc, mult, c1, c2, c3)

    def add(self, factors, acc, mult, coefs):
        key = tuple(sorted(f for f in factors if f[1] != ONE))
        self.integrals.setdefault(key, len(self.integrals))
        c = list(coefs) + [0] * (3 - len(coefs))
        self.contribs.append((key, acc, float(mult), *c))

    def pack(self) -> np.ndarray:
        # group the integrals by their set of distinct fields (the subset S)
        by_subset = {}
        for key in self.integrals:
            S = tuple(sorted({f for f, _ in key}))
            by_subset.setdefault(S, []).append(key)
        subsets, integrals, index = [], [], {}
        for S in sorted(by_subset, key=lambda s: (len(s), s)):
            for key in by_subset[S]:
                index[key] = len(integrals)
                row = []
                for f, kind in key:
                    row += [kind, S.index(f)]
                row += [ONE, 0] * (4 - len(key))
                integrals.append(row)
            subsets.append([len(S), *S, *([-1] * (4 - len(S))), len(integrals)])
        contribs = [[index[k], acc, mult, c1, c2, c3]
                    for k, acc, mult, c1, c2, c3 in self.contribs]
        return np.concatenate([[len(subsets), len(integrals), len(contribs)],
                               np.ravel(subsets), np.ravel(integrals),
                               np.ravel(contribs)]).astype(float)


@lru_cache(maxsize=64)
def marginal_tables(K: int, M: int, adaptive: bool, eg_table: bool):
    """The packed term tables ``(rhs table, eg table or empty)`` for K students and M
    teachers (see the module docstring); accumulators of the rhs table::

        aQ[k, l] = E[δ_k λ_l + δ_l λ_k] at k·K + l (k ≤ l),  aDD[k, l] = E[δ_k δ_l] at
        K² + k·K + l,  aR[k, m] = E[δ_k ν_m] at 2K² + k·M + m,  aV[k] = E[e s_k] at
        2K² + KM + k,  aB[k] = √N E[δ_k φ] at 2K² + KM + K + k (adaptive only).
    """
    NU = K + M
    cA = lambda u: 2 + u            # noqa: E731  (coefficient index of A_u)
    cB = lambda u: 2 + NU + u       # noqa: E731  (coefficient index of B_u = b or c)
    t = _Tables()
    oDD, oR, oV, oB = K * K, 2 * K * K, 2 * K * K + K * M, 2 * K * K + K * M + K
    for k in range(K):
        for l in range(k, K):
            for u in range(NU):       # E[δ_k λ_l] + E[δ_l λ_k]
                t.add([(k, H), (u, G), (l, Z)], k * K + l, 1.0, [cA(u)])
                t.add([(l, H), (u, G), (k, Z)], k * K + l, 1.0, [cA(u)])
                for u2 in range(u, NU):   # symmetric in u, u'
                    t.add([(k, H), (l, H), (u, G), (u2, G)], oDD + k * K + l,
                          1.0 if u == u2 else 2.0, [cA(u), cA(u2)])
            t.add([(k, H), (l, H)], oDD + k * K + l, 1.0, [1])       # σ² E[h_k h_l]
        for m in range(M):
            for u in range(NU):
                t.add([(k, H), (u, G), (K + m, Z)], oR + k * M + m, 1.0, [cA(u)])
        for u in range(NU):
            t.add([(u, G), (k, S)], oV + k, 1.0, [cA(u)])
            if adaptive:
                t.add([(k, HP), (u, G)], oB + k, 1.0, [cA(u), cB(k)])
                t.add([(k, H), (u, GP)], oB + k, 1.0, [cA(u), cB(u)])
    rhs = t.pack()
    eg = np.empty(0)
    if eg_table:
        t = _Tables()
        for u in range(NU):
            for u2 in range(u, NU):   # ½ Σ A_u A_u' E[g_u g_u'], symmetric
                t.add([(u, G), (u2, G)], 0, 0.5 if u == u2 else 1.0, [cA(u), cA(u2)])
        eg = t.pack()
    return rhs, eg


@lru_cache(maxsize=None)
def pruned_count(n: int, d: int) -> int:
    """Number of nodes of the d-dimensional n-point tensor Gauss–Hermite rule whose weight
    is at least :data:`MARGINAL_PRUNE`."""
    _, w = np.polynomial.hermite_e.hermegauss(n)
    lw = np.sort(np.log(w / w.sum()))
    cut = np.log(MARGINAL_PRUNE)
    half = [np.zeros(1), lw, np.add.outer(lw, lw).ravel()]
    a, b = half[d // 2], np.sort(half[d - d // 2])
    # pairs (x in a, y in b) with x + y ≥ cut
    return int(np.sum(b.size - np.searchsorted(b, cut - a, side="left")))


def table_nodes(table: np.ndarray, n: int) -> tuple:
    """(number of subsets, total nodes visited: Σ over the subsets S of the n^|S| tensor
    nodes left after pruning) of a packed table."""
    if table.size == 0:
        return 0, 0
    NS = int(table[0])
    dims = table[3:3 + 6 * NS:6].astype(int)
    return NS, int(sum(pruned_count(marginal_n(n, int(d)), int(d)) for d in dims))


# ------------------------------------------------------------------------ the source
def marginal_source(rule: R.Rule, act: Activation, key: str) -> str:
    """Python source of the generated marginal module (see the module docstring)."""
    from .codegen_quad import _eg_closed_src, _field_helpers, _I2_code, _pr
    adaptive = rule.feedback == "adaptive"
    params = sorted(rule.params)
    h, hp, s = marginal_form(rule, act, adaptive)
    load_rp = [f"    {nm} = rp[{i}]" for i, nm in enumerate(params)]

    def fn(name, ex, doc):
        ex = sp.sympify(ex)
        lines = list(load_rp)
        if ex.has(_GPP):
            lines.append(f"    GPP_ = {_pr(_gpp_expr(act))}")
        reps, (red,) = sp.cse([ex], symbols=sp.numbered_symbols("t_"), optimizations="basic")
        lines += [f"    {sym.name} = {_pr(e)}" for sym, e in reps]
        lines.append(f"    return {_pr(red)}")
        return (f"@njit(cache=True, nogil=True, inline=\"always\")\n"
                f"def {name}(lam_, G_, GP_, vk_, bk_, rp):\n    \"\"\"{doc}\"\"\"\n"
                + "\n".join(lines) + "\n")

    def uses(ex):
        # which of g (bit 1) and g' (bit 2) at the unit's field the expression needs
        ex = sp.sympify(ex)
        return (1 if ex.has(_G) else 0) | (2 if ex.has(_GP) or ex.has(_GPP) else 0)

    unit_src = "\n\n".join([fn("_h", h, "h = δ/e of one hidden unit"),
                             fn("_hp", hp, "∂h/∂λ (adaptive feedback only)"),
                             fn("_s", s, "the second-layer signal s")])
    uses_src = f"H_USES = {uses(h)}\nHP_USES = {uses(hp)}\nS_USES = {uses(s)}"
    I2 = _I2_code(act)
    decay = _pr(rule.weight_decay)
    if I2 is not None:
        eg_src = _eg_closed_src(I2)
    else:
        eg_src = '''
@njit(cache=True, nogil=True)
def eg(y, p):
    K = int(p[0]); M = int(p[1]); NU = K + M
    C = np.empty((NU, NU)); A = np.empty(NU); Bv = np.empty(NU)
    _fill(y, p, K, M, C, A, Bv)
    P_RULE = P0 + M * M + 2 * M + K
    rp = p[P_RULE:P_RULE + N_RULE].copy()
    O_N = P_RULE + N_RULE + 1
    X, Wt, off, cnt, O_T = _rule_arrays(p, O_N)
    NS = int(p[O_T]); NI = int(p[O_T + 1]); NC = int(p[O_T + 2])
    O_T2 = O_T + 3 + 6 * NS + 8 * NI + 6 * NC        # the eg table follows the rhs table
    sig2 = p[4] * p[4]
    acc = np.zeros(1)
    if _run(p, O_T2, C, A, Bv, K, sig2, X, Wt, off, cnt, rp, acc) < 0:
        return np.nan
    return acc[0]
'''
    version = MARGINAL_CODEGEN_VERSION
    return f'''# Generated by theory.codegen_marginal (version {version}) — do not edit.
# rule={rule.name!r} activation={act.name!r}: marginal Gauss–Hermite
# (any K, M and node count: sizes, nodes and term tables are read from p)
# key={key}
import math
import numpy as np
from numba import njit
from theory.quadrature import factor_nb

ADAPTIVE = {int(adaptive)}
SGD_V = {int(rule.second_layer == "sgd")}
N_RULE = {len(params)}
PRUNE = {MARGINAL_PRUNE!r}   # tensor nodes with a smaller weight are skipped
P0 = 6  # p = [K, M, eta, eta_v, sigma, sigma_F2, T, v_star, c, b, rule params, quad]


{_field_helpers(act)}


{uses_src}


{unit_src}


@njit(cache=True, nogil=True)
def _rule_arrays(p, O):
    """The 1-D Gauss–Hermite rules of the d-field subsets (d = 1…4), packed at
    p[O:] = [2, P, D, n, (n_d, x_d (n_d), w_d (n_d)) for d = 1…4], concatenated in X and
    Wt (rule d at off[d] … off[d] + cnt[d]), and the offset of the term tables that follow."""
    off = np.zeros(5, np.int64); cnt = np.zeros(5, np.int64)
    b = O + 4
    tot = 0
    for d in range(1, 5):
        nd = int(p[b])
        off[d] = tot; cnt[d] = nd
        tot += nd
        b += 1 + 2 * nd
    X = np.empty(tot); Wt = np.empty(tot)
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
    NS = int(p[O]); NI = int(p[O + 1]); NC = int(p[O + 2])
    OS = O + 3; OI = OS + 6 * NS; OC = OI + 8 * NI
    NU = A.shape[0]
    # the tables as integers, once per call (never converted inside the node loop)
    kinds = np.empty((NI, 4), np.int64); slots = np.empty((NI, 4), np.int64)
    for i in range(NI):
        for j in range(4):
            kinds[i, j] = int(p[OI + 8 * i + 2 * j])
            slots[i, j] = int(p[OI + 8 * i + 2 * j + 1])
    I = np.zeros(NI)
    T = np.ones((7, 4))            # T[kind, slot]: factor values at the current node
    xi = np.zeros(4); fld = np.zeros(4, np.int64)
    need = np.zeros(4, np.int64)   # per slot: bits 1 g, 2 g', 8 h, 16 h', 32 s
    lev = np.zeros(4, np.int64); nn = np.ones(4, np.int64)
    i0 = 0
    for s in range(NS):
        base = OS + 6 * s
        d = int(p[base]); i1 = int(p[base + 5])
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
        CS = np.empty((d, d)); LS = np.zeros((d, d))   # once per subset
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
                            I[i] += (w * T[kinds[i, 0], slots[i, 0]]
                                     * T[kinds[i, 1], slots[i, 1]]
                                     * T[kinds[i, 2], slots[i, 2]]
                                     * T[kinds[i, 3], slots[i, 3]])
        i0 = i1
    # coefficients c = [1, σ², A, B], read from the state now
    cv = np.empty(2 + 2 * NU)
    cv[0] = 1.0; cv[1] = sig2
    for u in range(NU):
        cv[2 + u] = A[u]
        cv[2 + NU + u] = Bv[u]
    for r in range(NC):
        b6 = OC + 6 * r
        acc[int(p[b6 + 1])] += (p[b6 + 2] * cv[int(p[b6 + 3])] * cv[int(p[b6 + 4])]
                                * cv[int(p[b6 + 5])] * I[int(p[b6])])
    return 0


@njit(cache=True, nogil=True)
def _integrate(y, p, mode, dy, S):
    """mode 0: dy = dy/dα; mode 1: S = noise covariance of b."""
    K = int(p[0]); M = int(p[1]); NU = K + M
    O_R = K * (K + 1) // 2; O_V = O_R + K * M; O_B = O_V + K
    eta = p[2]; eta_v = p[3]; sigma = p[4]; sigma_F2 = p[5]
    P_RULE = P0 + M * M + 2 * M + K
    rp = p[P_RULE:P_RULE + N_RULE].copy()
{chr(10).join(f"    {nm} = rp[{i}]" for i, nm in enumerate(params))}
    O_N = P_RULE + N_RULE + 1
    X, Wt, off, cnt, O_T = _rule_arrays(p, O_N)
    C = np.empty((NU, NU)); A = np.empty(NU); Bv = np.empty(NU)
    _fill(y, p, K, M, C, A, Bv)
    oDD = K * K; oR = 2 * K * K; oV = oR + K * M; oB = oV + K
    acc = np.zeros(oB + K)
    _run(p, O_T, C, A, Bv, K, sigma * sigma, X, Wt, off, cnt, rp, acc)   # NaN if not PSD
    if mode == 1:
        for k in range(K):
            for l in range(k, K):
                S[k, l] = eta * eta * sigma_F2 * acc[oDD + k * K + l]
                S[l, k] = S[k, l]
        return
    kappa = {decay}
    iq = 0
    for k in range(K):
        for l in range(k, K):
            dy[iq] = (-eta * acc[k * K + l] + eta * eta * acc[oDD + k * K + l]
                      - 2.0 * eta * kappa * C[k, l])
            iq += 1
    for k in range(K):
        for m in range(M):
            dy[O_R + k * M + m] = -eta * acc[oR + k * M + m] - eta * kappa * C[k, K + m]
        dy[O_V + k] = -eta_v * acc[oV + k] if SGD_V else 0.0
        if ADAPTIVE:
            dy[O_B + k] = -eta * acc[oB + k] - eta * kappa * Bv[k]


@njit(cache=True, nogil=True)
def rhs(y, p, dy):
    # np.int64(...): one compilation for both modes (see theory.codegen_quad)
    _integrate(y, p, np.int64(0), dy, np.empty((1, 1)))

{eg_src}
''' + ('''

@njit(cache=True, nogil=True)
def noise(y, p, S):
    _integrate(y, p, np.int64(1), np.empty(1), S)
''' if adaptive else "\nnoise = None\n")


_MODULES: dict = {}


def _fingerprint() -> str:
    from .codegen_quad import source_fingerprint
    return source_fingerprint(("codegen_marginal.py", "codegen_quad.py", "quadrature.py",
                               "activations.py", "rules.py", "codegen.py"))


def load_marginal(rule: R.Rule, act: Activation):
    """The generated marginal module of (rule, activation): ``(module, path, timings)``,
    compiled once and cached on disk (:func:`theory.cache.load_module`)."""
    key = (rule.key, act.key, sp.srepr(act.expr))
    if key in _MODULES:
        return _MODULES[key]
    marginal_form(rule, act, rule.feedback == "adaptive")      # refuse early, in Python
    t0 = time.perf_counter()
    from .codegen_quad import generated_path
    path = generated_path("qmarg", MARGINAL_CODEGEN_VERSION, _fingerprint(), rule, act)
    digest = path.stem.rsplit("_", 1)[1]
    t1 = time.perf_counter()
    adaptive = rule.feedback == "adaptive"

    def warm(mod):
        # compile now (or load numba's cache): K = M = 1 with a 2-node rule
        from .quadrature import make_rule
        from .state import Layout
        lay = Layout(1, 1, adaptive)
        y = np.zeros(lay.n)
        y[0] = 1.0
        rhs_t, eg_t = marginal_tables(1, 1, adaptive, True)
        p = np.concatenate([[1, 1, 0, 0, 0, 0, 1.0, 0, 0, 0], np.zeros(len(rule.params)),
                            [0.0], make_rule(2, "marginal", 2).packed(), rhs_t, eg_t])
        mod.rhs(y, p, np.empty_like(y))
        mod.eg(y, p)
        if mod.noise is not None:
            mod.noise(y, p, np.empty((1, 1)))

    mod, cached = load_module(path, lambda: marginal_source(rule, act, digest),
                              module_name(path), warm)
    t2 = time.perf_counter()
    out = (mod, path, {"derive": 0.0, "codegen": t1 - t0, "compile": t2 - t1,
                       "source_cached": cached})
    _MODULES[key] = out
    return out
