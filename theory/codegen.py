"""Generated numba code for a derived system (docs/theory.md §4–5).

:func:`build_system` turns a :class:`theory.derive.Derivation` into Python source with
explicit index loops — one loop nest per kind of term, never unrolled over units, so the
source does not grow with K or M — compiles it with numba, and caches both on disk
(keyed by rule, activation and :data:`CODEGEN_VERSION`; the kernels read K and M from
the parameter vector, so one compilation serves every size).

Inside each loop nest the summand (coefficient × closed-form average) is reduced by
common-subexpression elimination and every subexpression is hoisted to the outermost loop
whose indices it depends on (for ``I4(k, l, u1, u2)`` the determinant ``Λ4`` is computed
once per ``(k, l)``, ``Λ1`` once per ``u1``). Sums over two summation indices whose summand
is symmetric (``I4`` in its last two arguments, ``I2``) run over ``u2 ≥ u1`` with weight 2
off the diagonal.

Flat state ``y``: :class:`theory.state.Layout`. Parameter vector ``p``::

    p = [K, M, eta, eta_v, sigma, sigma_F2, T (M·M, row-major), v_star (M), c (M),
         b (K, fixed feedback), rule parameters (sorted by name)[, abort slot]]

The optional last entry is the abort slot of :mod:`theory.runtime.interruptible`: ``rhs``
checks it before each sum over the summation indices and, when it is set, fills ``dy``
with NaN and returns (Ctrl-C during a right-hand side that takes hours at K = 1000).

The module is written by :func:`theory.emit.emit_module` (one printer, one emitter for
every generator) and includes the rule-independent ``_fill`` and ``_asin`` from the real
module :mod:`theory.closed_kernels`. Generated functions (all ``@njit(cache=True)``):

    rhs(y, p, dy)      dy/dα
    eg(y, p) -> float  generalisation error
    noise(y, p, S)     K×K covariance per unit α of the noise on b (adaptive feedback only)

Never edit a generated file: delete the cache directory (``ODEFLOW_CACHE_DIR``, default
``~/.cache/odeflow``) to regenerate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from . import derive as D
from .cache import (
    cache_dir,
    digest_of,
    generated_path,
    load_module,
    module_name,
    param_vector,
    source_fingerprint,
)
from .emit import NumbaPrinter, emit_module
from .integrals import closed_form
from .rules import Rule, get_rule
from .state import Layout, OrderParameters, _check_size
from .system import SystemMethods

__all__ = ["System", "build_system", "cache_dir", "CODEGEN_VERSION"]

#: bump when the generated code changes for the same inputs
CODEGEN_VERSION = "2"

#: the printer of every generator (theory.emit); kept under its old name for importers
_Printer = NumbaPrinter
_P = NumbaPrinter()


def _pr(expr) -> str:
    return _P.doprint(expr)


# ------------------------------------------------------------------ symbols and levels
_PARAMS = ("eta", "eta_v", "sigma", "sigma_F2")


class _Leaves:
    """Maps placeholder expressions (A(u), C entries, …) to local symbols and records the
    index symbols each one depends on and the line that loads it."""

    def __init__(self, rule_params):
        self.deps = {}
        self.load = {}
        self.rule_params = set(rule_params)

    def _sym(self, name, deps, load):
        s = sp.Symbol(name, real=True)
        self.deps[s] = frozenset(deps)
        self.load[s] = load
        return s

    @staticmethod
    def _ix(i):
        return "PHI" if i == D.PHI else str(i)

    def entry(self, a, b):
        a, b = sorted((a, b), key=D.rank)
        return self._sym(f"C_{a}_{b}", {a, b} - {D.PHI}, f"C[{self._ix(a)}, {self._ix(b)}]")

    def placeholder(self, expr):
        """Replace A(u), V(k), B(k), Cov(a, b) and parameter symbols by leaf symbols."""
        reps = {}
        for f in expr.atoms(sp.Function):
            if f.func is D.A:
                (u,) = f.args
                reps[f] = self._sym(f"A_{u}", {u}, f"A[{u}]")
            elif f.func is D.V:
                (u,) = f.args
                reps[f] = self._sym(f"A_{u}", {u}, f"A[{u}]")  # A[k] = v_k for students
            elif f.func is D.B:
                (u,) = f.args
                reps[f] = self._sym(f"B_{u}", {u}, f"Bf[{u}]")
            elif f.func is D.Cov:
                reps[f] = self.entry(*f.args)
        out = expr.xreplace(reps)
        for s in out.free_symbols:
            if s.name in _PARAMS or s.name in self.rule_params:
                self.deps.setdefault(s, frozenset())
        return out


def _template_value(term: D.Term, leaves: _Leaves, activation: str):
    if term.template == "ONE":
        return sp.Integer(1)
    args = term.args
    t = sp.Symbol("_t")

    def C(i, j):
        a, b = args[i - 1], args[j - 1]
        s = leaves.entry(a, b)
        if (a == D.PHI) != (b == D.PHI):  # cross-covariance with φ: O(1/√N)
            return t * s
        return s

    expr = closed_form(term.template, activation, C)
    if term.order == 0:
        return expr.subs(t, 0)
    val0 = sp.simplify(expr.subs(t, 0))
    if val0 != 0:
        raise NotImplementedError(
            f"{term.template}{term.args} does not vanish at zero cross-covariance with φ; "
            "the b drift would grow like √N"
        )
    return sp.diff(expr, t).subs(t, 0)


def _symmetric_pair(terms, u1, u2) -> bool:
    """Whether the summand of a two-dummy group is symmetric under u1 ↔ u2."""
    swap = {u1: u2, u2: u1}
    orig = sum(t.expr() for t in terms)
    swapped = 0
    for t in terms:
        args = tuple(swap.get(a, a) for a in t.args)
        if t.template != "ONE":
            args = D.canonical_args(t.template, args)
        swapped += D.Term(t.coef.xreplace(swap), t.template, args, t.order).expr()
    return sp.expand(orig - swapped) == 0


def _loop(idx, lo=None):
    cls = D.INDEX_CLASS[idx]
    rng = {"S": ("0", "K"), "T": ("K", "K + M"), "U": ("0", "NU")}[cls]
    start = lo if lo is not None else rng[0]
    return f"for {idx} in range({start}, {rng[1]}):"


def _emit_group(terms, free, acc, leaves, activation, depth):
    """Code that adds the group's sum over its dummies to ``acc``, inside the free loops."""
    dummies = terms[0].dummies
    summand = sum(t.coef * _template_value(t, leaves, activation) for t in terms)
    summand = leaves.placeholder(summand)
    sym = len(dummies) == 2 and _symmetric_pair(terms, *dummies)
    order = list(free) + list(dummies)
    reps, (reduced,) = sp.cse(summand, symbols=sp.numbered_symbols("x_"), optimizations="basic")

    def level(expr_syms, known):
        lv = -1
        for s in expr_syms:
            for i in known[s] if s in known else leaves.deps.get(s, frozenset()):
                if i in order:
                    lv = max(lv, order.index(i))
        return lv

    known = {}
    leaf_level, body = {}, {i: [] for i in range(-1, len(order))}
    for s in summand.free_symbols:
        if s in leaves.load:
            leaf_level[s] = level([s], known)
    for s, lv in sorted(leaf_level.items(), key=lambda kv: kv[0].name):
        body[lv].append(f"{s.name} = {leaves.load[s]}")
    fresh = sp.numbered_symbols("h_")

    def lv_of(expr):
        return level(expr.free_symbols, known)

    def define(sym, expr):
        known[sym] = frozenset().union(
            *[known.get(s, leaves.deps.get(s, frozenset())) for s in expr.free_symbols]
        )
        body[level([sym], known)].append(f"{sym.name} = {_pr(expr)}")

    def hoist(expr, cur):
        """Loop-invariant code motion: every subexpression (or group of factors/terms of
        a product/sum) that depends on fewer loop indices than ``cur`` moves out."""
        if expr.is_Atom:
            return expr
        lv = lv_of(expr)
        if lv < cur:
            sym = next(fresh)
            define(sym, hoist(expr, lv))
            return sym
        if isinstance(expr, (sp.Add, sp.Mul)):
            groups = {}
            for a in expr.args:
                groups.setdefault(lv_of(a) if not a.is_Number else -2, []).append(a)
            args = []
            for glv, items in groups.items():
                if glv < cur and (len(items) > 1 or not items[0].is_Atom) and glv != -2:
                    sym = next(fresh)
                    define(sym, hoist(expr.func(*items), glv))
                    args.append(sym)
                else:
                    args += [hoist(a, cur) for a in items]
            return expr.func(*args, evaluate=False)
        return expr.func(*[hoist(a, cur) for a in expr.args])

    for x, ex in reps:
        define(x, hoist(ex, lv_of(ex)))
    reduced = hoist(reduced, len(order) - 1)
    final = _pr(reduced)
    nfree = len(free)
    lines = []
    ind = "    " * depth
    # level -1 and the free levels were opened by the caller: their statements go first.
    for lv in range(-1, nfree):
        lines += [ind + s for s in body[lv]]
    for j, d in enumerate(dummies):
        lo = dummies[0] if (sym and j == 1) else None
        lines.append(ind + "    " * j + _loop(d, lo))
        lines += [ind + "    " * (j + 1) + s for s in body[nfree + j]]
    inner = ind + "    " * len(dummies)
    if sym:
        u1, u2 = dummies
        lines.append(inner + f"{acc} += (1.0 if {u1} == {u2} else 2.0) * ({final})")
    else:
        lines.append(inner + f"{acc} += {final}")
    return lines


def _emit_quantity(terms, free, target, leaves, activation, triangular=False, poll=False):
    """Loops over the free indices computing ``target`` (a format string in them).

    ``poll``: check the abort slot (:mod:`theory.runtime.interruptible`) once per value of
    the free indices — before each sum over the dummies, the O(NU²) bulk of the work, so
    the check costs nothing measurable and an abort is seen within one such sum."""
    lines = []
    for j, idx in enumerate(free):
        lo = free[0] if (triangular and j == 1) else None
        lines.append("    " * j + _loop(idx, lo))
    depth = len(free)
    ind = "    " * depth
    if poll:
        lines += [
            ind + "if ABORTABLE and p[NP] != 0.0:",
            ind + "    _abort(dy)",
            ind + "    return",
        ]
    lines.append(ind + "acc = 0.0")
    groups = {}
    for t in terms:
        groups.setdefault(t.dummies, []).append(t)
    for ds in sorted(groups, key=len):
        lines += _emit_group(groups[ds], free, "acc", leaves, activation, depth)
    lines += [ind + s for s in target]
    return lines


# ------------------------------------------------------------------------- the module
def _source(der: D.Derivation, key: str) -> str:
    rule = der.rule
    act = der.activation
    adaptive = rule.feedback == "adaptive"
    rp = sorted(rule.params)
    leaves = _Leaves(rp)
    k, l, n = D.k, D.l, D.n

    rhs = []
    rhs += _emit_quantity(
        der.dQ, (k, l), ["dy[iq] = acc", "iq += 1"], leaves, act, triangular=True, poll=True
    )
    rhs += _emit_quantity(
        der.dR, (k, n), ["dy[O_R + k * M + (n - K)] = acc"], leaves, act, poll=True
    )
    if der.dv:
        rhs += _emit_quantity(der.dv, (k,), ["dy[O_V + k] = acc"], leaves, act, poll=True)
    else:
        rhs += ["for k in range(K):", "    dy[O_V + k] = 0.0"]
    if adaptive:
        rhs += _emit_quantity(der.db, (k,), ["dy[O_B + k] = acc"], leaves, act, poll=True)
    eg_body = _emit_quantity(der.eg, (), ["return acc"], leaves, act)
    noise = (
        _emit_quantity(
            der.noise, (k, l), ["S[k, l] = acc", "S[l, k] = acc"], leaves, act, triangular=True
        )
        if adaptive
        else None
    )

    def fn(name, args, body, ret=None):
        out = [
            "@njit(cache=True, nogil=True)",
            f"def {name}({args}):",
            "    # sizes travel in p so that one compiled kernel serves every K, M",
            "    K = int(p[0]); M = int(p[1]); NU = K + M; PHI = K + M; NF = NU + ADAPTIVE",
            "    O_R = K * (K + 1) // 2; O_V = O_R + K * M; O_B = O_V + K",
            "    P_RULE = P0 + M * M + 2 * M + K",
            f"    NP = P_RULE + {len(rp)}  # the layout's length; p[NP]: the abort slot, if any",
            "    ABORTABLE = p.shape[0] == NP + 1",
            "    W = np.empty(NF * NF + 2 * NF)",
            "    C = W[:NF * NF].reshape((NF, NF))",
            "    A = W[NF * NF:NF * NF + NF]",
            "    Bf = W[NF * NF + NF:]",
            "    _fill(y, p, K, M, C, A, Bf)",
            "    eta = p[2]; eta_v = p[3]; sigma = p[4]; sigma_F2 = p[5]",
        ]
        out += [f"    {name_} = p[P_RULE + {i}]" for i, name_ in enumerate(rp)]
        if name == "rhs":
            out.append("    iq = 0")
        out += ["    " + s for s in body]
        return "\n".join(out)

    body = [fn("rhs", "y, p, dy", rhs), fn("eg", "y, p", eg_body)]
    if noise is not None:
        body.append(fn("noise", "y, p, S", noise))
    return emit_module(
        generator="theory.codegen",
        version=CODEGEN_VERSION,
        key=key,
        comments=[
            (f"rule={rule.name!r} activation={act!r} (any K, M: sizes are read from p[0], p[1])")
        ],
        constants={
            "ADAPTIVE": int(adaptive),
            # p = [K, M, eta, eta_v, sigma, sigma_F2, T, v_star, c, b, rule params]
            "P0": 6,
        },
        kernels=["closed_kernels"],
        after=body + ([] if adaptive else ["noise = None"]),
    )


# -------------------------------------------------------------------------- the system
@dataclass
class System(SystemMethods):
    """A derived and compiled order-parameter system for one rule, K, M and activation.

    Attributes
    ----------
    rhs, eg, noise : numba dispatchers (see module docstring); ``noise`` is None unless the
        rule's feedback is adaptive.
    layout : :class:`theory.state.Layout` of the flat state vector.
    derivation : :class:`theory.derive.Derivation`, the template sums behind the code.
    source_path : path of the generated module.
    timings : seconds spent deriving, generating and compiling (``{"derive", "codegen",
        "compile"}``), or loading from the cache.
    """

    #: the generated rhs polls the abort slot (theory.runtime.interruptible)
    polls_abort = True

    rule: Rule
    K: int
    M: int
    activation: str
    layout: Layout
    derivation: D.Derivation
    rhs: object
    eg: object
    noise: object
    source_path: Path
    timings: dict = field(default_factory=dict)

    def params(self, state: OrderParameters, eta, eta_v=None, sigma=0.0, **rule_params):
        """The parameter vector ``p`` for ``state`` (its constant parts) and the rates.

        Raises ValueError when the state lacks what the rule needs (``b`` for fixed
        feedback; ``b, c, sigma_F2`` for adaptive), or a rate is invalid.
        """
        return param_vector(self.rule, self.K, self.M, state, eta, eta_v, sigma, **rule_params)


_MODULES: dict = {}


def _generator_fingerprint() -> str:
    """Hash of the modules that shape generated code, so that editing the generator (even
    without bumping CODEGEN_VERSION) never picks up a stale cached module."""
    return source_fingerprint(
        ("codegen.py", "derive.py", "integrals.py", "rules.py", "emit.py", "closed_kernels.py")
    )


_SYSTEMS: dict = {}


def _load_module(rule: Rule, activation: str):
    """Derive, generate (or find on disk) and import the generated module of a rule.

    The generated kernels read K and M from ``p`` at run time, so one module — and one
    numba compilation — serves every size; the cache key is (rule, activation, version).
    """
    from .runtime import cli

    key = (rule.key, activation)
    if key in _MODULES:
        return _MODULES[key]
    t0 = time.perf_counter()
    with cli.activity(f"deriving the ODEs of rule {rule.name!r} ({activation})"):
        der = D.derive(rule, activation)
    t1 = time.perf_counter()
    path = generated_path(
        "sys",
        CODEGEN_VERSION,
        _generator_fingerprint(),
        rule.key,
        activation,
        label=f"{rule.name}_{activation}",
    )
    digest = digest_of(path)
    t2 = time.perf_counter()

    def warm(mod):
        # compile (or load numba's cached machine code) now, so timings say where time goes
        layout = Layout(1, 1, rule.feedback == "adaptive")
        y = np.zeros(layout.n)
        p = np.zeros(6 + 1 + 2 + 1 + len(rule.params))
        p[0] = p[1] = 1
        mod.rhs(y, p, np.empty_like(y))
        mod.eg(y, p)
        if mod.noise is not None:
            mod.noise(y, p, np.empty((1, 1)))

    # written atomically with a content hash; verified, repaired if corrupt (theory.cache)
    with cli.activity(
        f"loading the {rule.name!r} kernels (compiled on first use, cached in {path.parent})"
    ):
        mod, cached = load_module(path, lambda: _source(der, digest), module_name(path), warm)
    t3 = time.perf_counter()
    out = (
        der,
        mod,
        path,
        {"derive": t1 - t0, "codegen": t2 - t1, "compile": t3 - t2, "source_cached": cached},
    )
    _MODULES[key] = out
    return out


def build_system(rule, K: int, M: int, activation="erf", quadrature=None):
    """The derived, compiled system of ``rule`` for K student and M teacher units.

    Derivation and compilation happen once per (rule, activation) and process (and are
    cached on disk across processes); every K, M reuses them.

    ``quadrature``: None (default) uses the closed forms where they exist (erf, linear
    with a rule linear in the feedback) and Gaussian quadrature otherwise
    (:mod:`theory.codegen_quad`); False demands closed forms; True, a scheme name or a
    dict ``{"scheme", "n", "seed"}`` forces quadrature with those options.
    """
    rule = get_rule(rule)
    K, M = _check_size("K", K), _check_size("M", M)
    if _needs_quadrature(rule, activation, quadrature):
        from .codegen_quad import build_quad_system

        return build_quad_system(rule, K, M, activation, quadrature)
    from .activations import get_activation

    activation = get_activation(activation).name  # e.g. a sympy expression equal to erf
    mem_key = (rule.key, K, M, activation)
    if mem_key not in _SYSTEMS:
        der, mod, path, timings = _load_module(rule, activation)
        _SYSTEMS[mem_key] = System(
            rule,
            K,
            M,
            activation,
            Layout(K, M, rule.feedback == "adaptive"),
            der,
            mod.rhs,
            mod.eg,
            mod.noise,
            path,
            dict(timings),
        )
    return _SYSTEMS[mem_key]


def _needs_quadrature(rule: Rule, activation, quadrature) -> bool:
    """Dispatch between the closed-form templates and the quadrature backend."""
    from .activations import get_activation

    act = get_activation(activation)
    if quadrature is not None and quadrature is not False:
        return True
    closed = act.closed_form and rule.is_standard
    if closed:
        try:
            D.derive(rule, act.name)
        except NotImplementedError:
            closed = False
    if not closed and quadrature is False:
        raise ValueError(
            f"rule {rule.name!r} with activation {act.name!r} has no closed-form "
            "averages (quadrature=False); allow quadrature (None or True)"
        )
    return not closed
