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

Only the unit functions ``_h``, ``_hp``, ``_s``, the decay ``_kappa`` and the activation's
``_g``, ``_gp`` are generated; the loops (``_run``, ``_integrate``, …) are the real modules
:mod:`theory.field_kernels` and :mod:`theory.marginal_kernels`, included by
:func:`theory.emit.emit_module`.
"""

from __future__ import annotations

import time
from functools import cache, lru_cache

import numpy as np
import sympy as sp

from . import rules as R
from .activations import Activation
from .cache import (
    digest_of,
    generated_path,
    load_module,
    module_name,
    source_fingerprint,
)
from .emit import emit_module, njit_function, pr
from .quad_expr import I2_code, activation_functions, concrete
from .quadrature import marginal_n

__all__ = [
    "marginal_form",
    "marginal_tables",
    "marginal_source",
    "load_marginal",
    "MARGINAL_CODEGEN_VERSION",
    "table_nodes",
    "relu_spec",
]

MARGINAL_CODEGEN_VERSION = "3"
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
        Adaptive feedback with a kinked activation other than relu (h' has a Dirac delta);
        the other schemes handle it through Stein's lemma. (relu: every integral is an
        exact moment, the Dirac one included, :mod:`theory.relu_kernels`.)
    """
    _concrete = concrete

    def refuse(why):
        return ValueError(
            f"quadrature scheme 'marginal' does not apply to rule {rule.name!r}: {why}. It "
            "needs δ_k = h(λ_k) e (linear in the error e, no second-pass field lam_t, no "
            "phi), presynaptic x and a second-layer signal free of e; use scheme 'auto', "
            "'gauss-hermite' or 'sobol'"
        )

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
    if act.name == "relu":
        # every integral an exact moment (theory.relu_kernels); h' = c δ(λ) is taken there
        relu_spec(h, s, adaptive, refuse)
        return h, hp, s
    if adaptive:
        # dh/dλ through λ itself, g(λ) and g'(λ)
        hp = sp.diff(h, lam_) + sp.diff(h, _G) * _GP + sp.diff(h, _GP) * _GPP
        if hp.has(sp.DiracDelta) or (hp.has(_GPP) and _gpp_expr(act).has(sp.DiracDelta)):
            raise NotImplementedError(
                f"rule {rule.name!r} with activation {act.name!r}: the drift of the adaptive "
                "feedback b needs the derivative of δ, which has a Dirac delta (g' of a kinked "
                "activation is a step); the schemes 'auto', 'sobol' and 'gauss-hermite' take "
                "this drift through Stein's lemma instead"
            )
    if not act.smooth:
        # across the kink of g (a step in g') the per-field Gauss–Hermite rules converge
        # only like 1/n, and n against fewer nodes under-estimates that error: measured
        # 1.3–2.8 % wrong for relu at n = 24, silently — refused (relu itself has exact
        # moments, above)
        raise refuse(
            f"activation {act.name!r} has a kink (g or g' is not smooth), where Gauss–Hermite "
            "converges only like 1/n (1–3 % wrong at n = 24)"
        )
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


def _monomial(ex, what, refuse):
    """``(degree in λ, has a step)`` of ``ex = c λ^i g(λ)^j g'(λ)^k`` for relu
    (g = λ θ(λ), g' = θ(λ)), else ValueError (``refuse``)."""
    lam_ = sp.Symbol("lam_", real=True)
    try:
        terms = sp.Poly(sp.expand(ex), lam_, _G, _GP).terms()
    except sp.PolynomialError:
        terms = []
    if len(terms) != 1 or terms[0][1].has(lam_, _G, _GP, sp.Heaviside, sp.Max):
        raise refuse(
            f"with relu its {what} = {ex} is not c·λ^i·g(λ)^j·g'(λ)^k (one term), the form "
            "the exact relu moments take"
        )
    (i, j, k), _ = terms[0]
    return i + j, j + k > 0


def relu_spec(h, s, adaptive: bool, refuse=None) -> dict:
    """The constants of the exact relu moments (:mod:`theory.relu_kernels`) for
    ``δ = h(λ) e`` and the second-layer signal ``s``: per table factor kind (0 one, 1 g,
    2 g', 3 z, 4 h, 5 h', 6 s) its degree in the field, whether it has a step θ and a Dirac
    δ, and the multiplier of h' (``c δ(λ)`` for ``h = c θ(λ)``; 0 for a constant h).
    Every integral must be of degree ≤ 2: h of degree 0, s of degree ≤ 1 (bp, fa, afa).

    Raises ValueError (``refuse(why)``) for another shape."""
    if refuse is None:

        def refuse(why):
            return ValueError(f"the exact relu moments do not apply: {why}")

    dh, sh = _monomial(h, "δ/e", refuse)
    ds, ss = _monomial(s, "second-layer signal", refuse)
    if dh > 0 or ds > 1:
        raise refuse(
            "with relu the exact moments need δ/e of degree 0 and a second-layer signal of "
            f"degree ≤ 1 in λ (got {dh} and {ds})"
        )
    dirac = int(adaptive and sh)
    return {
        "KIND_DEG": (0, 1, 0, 1, 0, 0, ds),
        "KIND_STEP": (0, 1, 1, 0, int(sh), 0, int(ss)),
        "KIND_DIRAC": (0, 0, 0, 0, 0, dirac, 0),
        "HP_MULT": float(dirac),
    }


# ---------------------------------------------------------------------- the tables
class _Tables:
    def __init__(self):
        self.integrals = {}  # canonical factors -> integral index (provisional)
        self.contribs = []  # (integral key, acc, mult, c1, c2, c3)

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
        contribs = [[index[k], acc, mult, c1, c2, c3] for k, acc, mult, c1, c2, c3 in self.contribs]
        return np.concatenate(
            [
                [len(subsets), len(integrals), len(contribs)],
                np.ravel(subsets),
                np.ravel(integrals),
                np.ravel(contribs),
            ]
        ).astype(float)


@lru_cache(maxsize=64)
def marginal_tables(K: int, M: int, adaptive: bool, eg_table: bool):
    """The packed term tables ``(rhs table, eg table or empty)`` for K students and M
    teachers (see the module docstring); accumulators of the rhs table::

        aQ[k, l] = E[δ_k λ_l + δ_l λ_k] at k·K + l (k ≤ l),  aDD[k, l] = E[δ_k δ_l] at
        K² + k·K + l,  aR[k, m] = E[δ_k ν_m] at 2K² + k·M + m,  aV[k] = E[e s_k] at
        2K² + KM + k,  aB[k] = √N E[δ_k φ] at 2K² + KM + K + k (adaptive only).
    """
    NU = K + M
    cA = lambda u: 2 + u  # noqa: E731  (coefficient index of A_u)
    cB = lambda u: 2 + NU + u  # noqa: E731  (coefficient index of B_u = b or c)
    t = _Tables()
    oDD, oR, oV, oB = K * K, 2 * K * K, 2 * K * K + K * M, 2 * K * K + K * M + K
    for k in range(K):
        for l in range(k, K):
            for u in range(NU):  # E[δ_k λ_l] + E[δ_l λ_k]
                t.add([(k, H), (u, G), (l, Z)], k * K + l, 1.0, [cA(u)])
                t.add([(l, H), (u, G), (k, Z)], k * K + l, 1.0, [cA(u)])
                for u2 in range(u, NU):  # symmetric in u, u'
                    t.add(
                        [(k, H), (l, H), (u, G), (u2, G)],
                        oDD + k * K + l,
                        1.0 if u == u2 else 2.0,
                        [cA(u), cA(u2)],
                    )
            t.add([(k, H), (l, H)], oDD + k * K + l, 1.0, [1])  # σ² E[h_k h_l]
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
            for u2 in range(u, NU):  # ½ Σ A_u A_u' E[g_u g_u'], symmetric
                t.add([(u, G), (u2, G)], 0, 0.5 if u == u2 else 1.0, [cA(u), cA(u2)])
        eg = t.pack()
    return rhs, eg


@cache
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
    dims = table[3 : 3 + 6 * NS : 6].astype(int)
    return NS, int(sum(pruned_count(marginal_n(n, int(d)), int(d)) for d in dims))


# ------------------------------------------------------------------------ the source
def marginal_source(rule: R.Rule, act: Activation, key: str) -> str:
    """Python source of the generated marginal module (see the module docstring): the
    unit functions ``_h``, ``_hp``, ``_s`` and the decay ``_kappa`` are generated; the
    loops are included from :mod:`theory.field_kernels` and :mod:`theory.marginal_kernels`.
    """
    adaptive = rule.feedback == "adaptive"
    params = sorted(rule.params)
    h, hp, s = marginal_form(rule, act, adaptive)
    load_rp = [f"{nm} = rp[{i}]" for i, nm in enumerate(params)]

    def fn(name, ex, doc):
        ex = sp.sympify(ex)
        lines = list(load_rp)
        if ex.has(_GPP):
            lines.append(f"GPP_ = {pr(_gpp_expr(act))}")
        reps, (red,) = sp.cse([ex], symbols=sp.numbered_symbols("t_"), optimizations="basic")
        lines += [f"{sym.name} = {pr(e)}" for sym, e in reps]
        lines.append(f"return {pr(red)}")
        return njit_function(name, "lam_, G_, GP_, vk_, bk_, rp", lines, inline=True, doc=doc)

    def uses(ex):
        # which of g (bit 1) and g' (bit 2) at the unit's field the expression needs
        ex = sp.sympify(ex)
        return (1 if ex.has(_G) else 0) | (2 if ex.has(_GP) or ex.has(_GPP) else 0)

    kappa = njit_function(
        "_kappa",
        "rp",
        load_rp + [f"return {pr(rule.weight_decay)}"],
        inline=True,
        doc="the weight decay κ of the rule",
    )
    units = [
        fn("_h", h, "h = δ/e of one hidden unit"),
        fn("_hp", hp, "∂h/∂λ (adaptive feedback only)"),
        fn("_s", s, "the second-layer signal s"),
        kappa,
    ]
    rhs = njit_function(
        "rhs",
        "y, p, dy",
        [
            "# np.int64(...): one compilation for both modes (see theory.codegen_quad)",
            "_integrate(y, p, np.int64(0), dy, np.empty((1, 1)))",
        ],
    )
    noise = (
        njit_function("noise", "y, p, S", ["_integrate(y, p, np.int64(1), np.empty(1), S)"])
        if adaptive
        else "noise = None"
    )
    eg = "eg = _eg_closed" if I2_code(act) is not None else "eg = _eg_table"
    # relu: every integral an exact moment (theory.relu_kernels); other activations
    # carry inert stand-ins of its constants (the branch is never taken)
    closed = relu_spec(h, s, adaptive) if act.name == "relu" else relu_spec(0, 0, False)
    return emit_module(
        generator="theory.codegen_marginal",
        version=MARGINAL_CODEGEN_VERSION,
        key=key,
        comments=[
            f"rule={rule.name!r} activation={act.name!r}: marginal Gauss–Hermite",
            "(any K, M and node count: sizes, nodes and term tables are read from p)",
        ],
        imports=["from theory.quadrature import factor_nb"],
        constants={
            "ADAPTIVE": int(adaptive),
            "SGD_V": int(rule.second_layer == "sgd"),
            "N_RULE": len(params),
            "PRUNE": MARGINAL_PRUNE,  # tensor nodes with a smaller weight: skipped
            # p = [K, M, eta, eta_v, sigma, sigma_F2, T, v_star, c, b, rule params,
            #      quad]
            "P0": 6,
            "H_USES": uses(h),
            "HP_USES": uses(hp),
            "S_USES": uses(s),
            "CLOSED": int(act.name == "relu"),
            **closed,
        },
        functions=activation_functions(act) + units,
        kernels=["field_kernels", "relu_kernels", "marginal_kernels"],
        after=[rhs, eg, noise],
    )


_MODULES: dict = {}


def _fingerprint() -> str:
    return source_fingerprint(
        (
            "codegen_marginal.py",
            "quad_expr.py",
            "quadrature.py",
            "activations.py",
            "rules.py",
            "emit.py",
            "field_kernels.py",
            "marginal_kernels.py",
            "relu_kernels.py",
        )
    )


def load_marginal(rule: R.Rule, act: Activation):
    """The generated marginal module of (rule, activation): ``(module, path, timings)``,
    compiled once and cached on disk (:func:`theory.cache.load_module`)."""
    key = (rule.key, act.key, sp.srepr(act.expr))
    if key in _MODULES:
        return _MODULES[key]
    marginal_form(rule, act, rule.feedback == "adaptive")  # refuse early, in Python
    t0 = time.perf_counter()
    path = generated_path(
        "qmarg",
        MARGINAL_CODEGEN_VERSION,
        _fingerprint(),
        rule.key,
        act.key,
        sp.srepr(act.expr),
        label=f"{rule.name}_{act.key}",
    )
    digest = digest_of(path)
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
        p = np.concatenate(
            [
                [1, 1, 0, 0, 0, 0, 1.0, 0, 0, 0],
                np.zeros(len(rule.params)),
                [0.0],
                make_rule(2, "marginal", 2).packed(),
                rhs_t,
                eg_t,
            ]
        )
        mod.rhs(y, p, np.empty_like(y))
        mod.eg(y, p)
        if mod.noise is not None:
            mod.noise(y, p, np.empty((1, 1)))

    mod, cached = load_module(
        path, lambda: marginal_source(rule, act, digest), module_name(path), warm
    )
    t2 = time.perf_counter()
    out = (
        mod,
        path,
        {"derive": 0.0, "codegen": t1 - t0, "compile": t2 - t1, "source_cached": cached},
    )
    _MODULES[key] = out
    return out
