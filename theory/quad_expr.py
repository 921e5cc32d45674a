"""The symbolic side shared by the quadrature generators (:mod:`theory.codegen_quad`,
:mod:`theory.codegen_marginal`): a rule's expressions made concrete for an activation, and
the activation's generated functions.

A rule ``δ_k(λ_k, e; v_k, b_k)`` is written with the placeholders ``g``, ``gp`` and the
second-pass field ``λ̃_k = λ_k − e b_k``; :func:`concrete` substitutes the activation and
λ̃, and renames the symbols to the kernels' locals ``lam_, e_, vk_, bk_``.

The node loop of the full-field scheme evaluates every transcendental of a field once per
node (:func:`field_code`, :func:`unit_code`): g' is written through the functions of g
(:func:`shared_form`: tanh' = 1 − tanh², so g, g', g'' of tanh cost one ``tanh``), the
first pass stores those values per field and the rule's expressions of λ_k read them back
instead of calling erf/exp/tanh again; what remains (the second-pass field λ̃_k) is shared
across δ, ∂δ/∂λ, ∂δ/∂e and the second-layer signal by common-subexpression elimination.
"""

from __future__ import annotations

import sympy as sp

from . import rules as R
from .activations import Activation
from .emit import NumbaPrinter, njit_function, pr

__all__ = [
    "concrete",
    "needs_stein",
    "I2_code",
    "activation_functions",
    "shared_form",
    "field_atoms",
    "atom_code",
    "value_code",
    "field_code",
    "unit_code",
    "LAM",
    "E",
    "V",
    "B",
]

LAM, E, V, B = sp.symbols("lam_ e_ vk_ bk_", real=True)
_ZZ = sp.Symbol("zz_", real=True)
_Z = sp.Symbol("z", real=True)


def concrete(expr, act: Activation):
    """A rule expression with g, g' replaced by the activation and λ̃ by λ − e b."""
    expr = sp.sympify(expr).subs(R.lam_t, R.lam - R.e * R.b_k)
    expr = expr.replace(R.g, lambda x: act.g(x)).replace(R.gp, lambda x: act.gp(x))
    return expr.xreplace({R.lam: LAM, R.e: E, R.v_k: V, R.b_k: B})


#: functions that are cheap next to a transcendental call (recomputed, never stored)
_CHEAP = (sp.Max, sp.Min, sp.Heaviside, sp.sign, sp.Abs, sp.Piecewise)


def shared_form(expr):
    """``expr`` with every ``cosh(u)^(−2k)`` and ``sech(u)^(2k)`` written as
    ``(1 − tanh(u)²)^k``: the same function, but g' (and g'') of tanh-based activations
    (tanh, sigmoid, z·tanh z, …) then use the ``tanh`` that g already computed."""

    def even_power(e, base, sign):
        return (
            e.is_Pow
            and isinstance(e.base, base)
            and e.exp.is_Integer
            and sign * e.exp > 0
            and e.exp % 2 == 0
        )

    def to_tanh(e):
        return (1 - sp.tanh(e.base.args[0]) ** 2) ** (abs(int(e.exp)) // 2)

    expr = sp.sympify(expr)
    expr = expr.replace(lambda e: even_power(e, sp.cosh, -1), to_tanh)
    return expr.replace(lambda e: even_power(e, sp.sech, 1), to_tanh)


def _atoms(exprs, var) -> list:
    """The transcendental function calls of ``exprs`` that depend on ``var`` (sorted, so
    the generated source is deterministic)."""
    found = set()
    for ex in exprs:
        for f in sp.sympify(ex).atoms(sp.Function):
            if not isinstance(f, _CHEAP) and f.has(var):
                found.add(f)
    return sorted(found, key=sp.srepr)


def field_atoms(act: Activation) -> list:
    """The transcendental calls of g and g' (:func:`shared_form`) as expressions of
    ``zz_``: what the first pass of the node loop computes once per field (tanh: ``[tanh]``;
    erf: ``[erf, exp]``; relu: none)."""
    g = act.expr.xreplace({_Z: _ZZ})
    gp = shared_form(act.deriv).xreplace({_Z: _ZZ})
    return _atoms([g, gp], _ZZ)


class _NodePrinter(NumbaPrinter):
    """The node loop's printer: ``tanh`` as :func:`theory.field_kernels._tanh` (one
    ``exp`` or ``expm1``; ~1.6× faster than libm's ``tanh``, to a few ulp)."""

    def _print_tanh(self, e):
        return f"_tanh({self._print(e.args[0])})"


_NODE = _NodePrinter()


def _cse_lines(names, exprs, prefix):
    reps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix), optimizations="basic")
    lines = [f"{s.name} = {_NODE.doprint(ex)}" for s, ex in reps]
    return lines + [f"{n} = {_NODE.doprint(ex)}" for n, ex in zip(names, reduced)]


def atom_code(act: Activation) -> list:
    """Statements computing the transcendental calls of one field ``zz_``
    (:func:`field_atoms`, each once) into ``fa0_, fa1_, …``."""
    atoms = field_atoms(act)
    return _cse_lines([f"fa{j}_" for j in range(len(atoms))], atoms, "ft_")


def value_code(act: Activation, need_gp: bool) -> list:
    """Statements computing ``g_`` (and ``gp_`` when ``need_gp``) of the field ``zz_``
    from its transcendental calls ``fa0_, fa1_, …`` (:func:`atom_code`)."""
    atoms = field_atoms(act)
    sub = {a: sp.Symbol(f"fa{j}_", real=True) for j, a in enumerate(atoms)}
    names, exprs = ["g_"], [act.expr.xreplace({_Z: _ZZ}).xreplace(sub)]
    if need_gp:
        names.append("gp_")
        exprs.append(shared_form(act.deriv).xreplace({_Z: _ZZ}).xreplace(sub))
    return _cse_lines(names, exprs, "fg_")


def field_code(act: Activation, need_gp: bool) -> list:
    """Statements of the first pass for one field ``zz_ = z[u]``: its transcendental calls
    (:func:`atom_code`) stored in ``TR[j, u]``, then ``g_`` (and ``gp_`` when ``need_gp``)
    computed from them (:func:`value_code`)."""
    n = len(field_atoms(act))
    stores = [f"TR[{j}, u] = fa{j}_" for j in range(n)]
    return atom_code(act) + stores + value_code(act, need_gp)


def unit_code(rule: R.Rule, act: Activation, adaptive: bool, params) -> list:
    """Statements computing, for hidden unit k, ``d_`` (δ), ``s_`` (second-layer signal)
    and, for adaptive feedback without Stein's lemma, ``dl_`` (∂δ/∂λ) and ``de_`` (∂δ/∂e)
    from ``lam_, e_, vk_, bk_`` and the rule parameters.

    g and g' enter through :func:`shared_form`; every transcendental of λ_k is read from
    the first pass (``TR[j, k]``, :func:`field_code`) and the rest (functions of λ̃_k) is
    computed once for all four expressions (CSE).

    Raises NotImplementedError when an expression uses a symbol the backend does not
    provide (e.g. φ).
    """

    def conc(expr):
        expr = sp.sympify(expr).subs(R.lam_t, R.lam - R.e * R.b_k)
        expr = expr.replace(R.g, lambda x: act.g(x))
        expr = expr.replace(R.gp, lambda x: shared_form(act.deriv).xreplace({_Z: x}))
        return expr.xreplace({R.lam: LAM, R.e: E, R.v_k: V, R.b_k: B})

    delta = conc(rule.delta)
    names, exprs = ["d_", "s_"], [delta, conc(rule.v_signal)]
    if adaptive and not needs_stein(rule, act):
        names += ["dl_", "de_"]
        exprs += [sp.diff(delta, LAM), sp.diff(delta, E)]
    allowed = (
        {LAM, E, V, B} | {sp.Symbol(p, real=True) for p in params} | {sp.Symbol(p) for p in params}
    )
    for ex in exprs:
        bad = ex.free_symbols - allowed
        if bad:
            raise NotImplementedError(
                f"rule {rule.name!r}: the quadrature backend takes δ as a function of lam, "
                f"e, v_k, b_k, lam_t and the rule parameters; {sorted(map(str, bad))} "
                "(e.g. phi) are not supported"
            )
    atoms = [a.xreplace({_ZZ: LAM}) for a in field_atoms(act)]
    syms = [sp.Symbol(f"tl{j}_", real=True) for j in range(len(atoms))]
    sub = dict(zip(atoms, syms))
    exprs = [ex.xreplace(sub) for ex in exprs]
    used = set().union(*(ex.free_symbols for ex in exprs))
    loads = [f"{s.name} = TR[{j}, k]" for j, s in enumerate(syms) if s in used]
    return loads + _cse_lines(names, exprs, "t_")


def needs_stein(rule: R.Rule, act: Activation) -> bool:
    """Whether the b drift of an adaptive-feedback rule must be computed without the
    derivative of δ: true when ∂δ/∂λ or ∂δ/∂e holds a Dirac delta (g' of a kinked
    activation such as relu is a step, so g'' is a delta that no fixed rule integrates)."""
    if rule.feedback != "adaptive":
        return False
    delta = concrete(rule.delta, act)
    return bool(sp.diff(delta, LAM).has(sp.DiracDelta) or sp.diff(delta, E).has(sp.DiracDelta))


def I2_code(act: Activation):
    """Closed-form I2(a, b) = E[g(a) g(b)] of the activation as code in Caa, Cbb, Cab, or
    None (then ε_g is integrated over the nodes)."""
    if act.name == "erf":
        return "(2.0 / math.pi) * _asin(Cab / math.sqrt((1.0 + Caa) * (1.0 + Cbb)))"
    if act.name == "linear":
        return "Cab"
    if act.name == "relu":
        return "_arccos1(Caa, Cbb, Cab)"
    return None


def activation_functions(act: Activation) -> list:
    """Sources of the generated ``_g(zz_)``, ``_gp(zz_)`` and, when the activation has a
    closed-form I2, ``_I2(Caa, Cbb, Cab)`` (the names :mod:`theory.field_kernels` uses)."""
    out = [
        njit_function("_g", "zz_", [f"return {pr(act.expr.xreplace({_Z: _ZZ}))}"], inline=True),
        njit_function("_gp", "zz_", [f"return {pr(act.deriv.xreplace({_Z: _ZZ}))}"], inline=True),
    ]
    I2 = I2_code(act)
    if I2 is not None:
        out.append(njit_function("_I2", "Caa, Cbb, Cab", [f"return {I2}"], inline=True))
    return out
