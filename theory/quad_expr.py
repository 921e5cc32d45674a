"""The symbolic side shared by the quadrature generators (:mod:`theory.codegen_quad`,
:mod:`theory.codegen_marginal`): a rule's expressions made concrete for an activation, and
the activation's generated functions.

A rule ``δ_k(λ_k, e; v_k, b_k)`` is written with the placeholders ``g``, ``gp`` and the
second-pass field ``λ̃_k = λ_k − e b_k``; :func:`concrete` substitutes the activation and
λ̃, and renames the symbols to the kernels' locals ``lam_, e_, vk_, bk_``.
"""

from __future__ import annotations

import sympy as sp

from . import rules as R
from .activations import Activation
from .emit import njit_function, pr

__all__ = ["concrete", "needs_stein", "I2_code", "activation_functions", "LAM", "E", "V", "B"]

LAM, E, V, B = sp.symbols("lam_ e_ vk_ bk_", real=True)
_ZZ = sp.Symbol("zz_", real=True)
_Z = sp.Symbol("z", real=True)


def concrete(expr, act: Activation):
    """A rule expression with g, g' replaced by the activation and λ̃ by λ − e b."""
    expr = sp.sympify(expr).subs(R.lam_t, R.lam - R.e * R.b_k)
    expr = expr.replace(R.g, lambda x: act.g(x)).replace(R.gp, lambda x: act.gp(x))
    return expr.xreplace({R.lam: LAM, R.e: E, R.v_k: V, R.b_k: B})


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
