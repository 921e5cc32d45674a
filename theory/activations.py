"""Activation functions as symbolic data (SCIENCE.md §1, §10).

An :class:`Activation` holds ``g(z)`` as a sympy expression of the symbol :data:`z` and its
derivative ``g'(z)`` (by ``sympy.diff``). Built-in names:

============  ==========================  ======================================
name          g(z)                        Gaussian averages
============  ==========================  ======================================
``erf``       erf(z/√2)                   closed forms (SCIENCE.md §3)
``linear``    z                           closed forms
``relu``      max(0, z)                   quadrature (I2 also as arc-cosine kernel)
``tanh``      tanh(z)                     quadrature
``sigmoid``   1/(1 + e^(−z))              quadrature
============  ==========================  ======================================

A user activation is any sympy expression of ``z`` (and numbers only)::

    import sympy as sp
    from theory.activations import z, get_activation
    swish = get_activation(z * (1 + sp.tanh(z)) / 2)

Its name is ``"user:<expression>"`` (what ``Result.params['activation']`` records).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .observables import ACTIVATIONS, CLOSED_FORM_ACTIVATIONS

__all__ = ["Activation", "get_activation", "z", "BUILTIN", "CLOSED_FORM_ACTIVATIONS",
           "ACTIVATIONS", "activation_key"]

#: the symbol a user activation is written in
z = sp.Symbol("z", real=True)

BUILTIN = {
    "erf": sp.erf(z / sp.sqrt(2)),
    "linear": z,
    "relu": sp.Max(0, z),
    "tanh": sp.tanh(z),
    # 1/(1 + e^(−z)) written through tanh: the same function, but neither it nor its
    # derivative overflows for large |z| (exp(−z)/(1+exp(−z))² would give inf/inf)
    "sigmoid": (1 + sp.tanh(z / 2)) / 2,
}
assert tuple(BUILTIN) == ACTIVATIONS


@dataclass(frozen=True)
class Activation:
    """An activation ``g`` with its derivative.

    Attributes
    ----------
    name : str
        A built-in name, or ``"user:<str(expr)>"``.
    expr, deriv : sympy expressions of :data:`z`
        ``g(z)`` and ``g'(z)``.
    closed_form : bool
        Whether the Gaussian averages I2, I3, I4, J2 have closed forms (erf, linear).
    """

    name: str
    expr: sp.Expr
    deriv: sp.Expr
    closed_form: bool

    @property
    def smooth(self) -> bool:
        """False when g or g' has a kink or jump (max, min, |·|, sign, θ, piecewise):
        then tensor Gauss–Hermite converges slowly and the automatic rule is Sobol."""
        kinks = (sp.Max, sp.Min, sp.Abs, sp.sign, sp.Heaviside, sp.Piecewise)
        return not any(ex.has(*kinks) for ex in (self.expr, self.deriv))

    @property
    def key(self) -> str:
        """Canonical string for caches (the expression itself for user activations)."""
        return activation_key(self)

    def g(self, x) -> sp.Expr:
        """``g(x)`` for a sympy expression ``x``."""
        return self.expr.xreplace({z: x})

    def gp(self, x) -> sp.Expr:
        """``g'(x)`` for a sympy expression ``x``."""
        return self.deriv.xreplace({z: x})

    def numpy(self):
        """(g, g') as numpy-vectorised callables (for tests and plain-numpy quadrature)."""
        mods = [{"Heaviside": _heaviside_np}, "numpy", "scipy"]
        return (sp.lambdify(z, self.expr, modules=mods),
                sp.lambdify(z, self.deriv, modules=mods))


def _heaviside_np(x, h0=0.5):
    import numpy as np
    return np.where(x > 0, 1.0, np.where(x < 0, 0.0, h0))


def activation_key(act: Activation) -> str:
    if act.name in BUILTIN:
        return act.name
    return "user_" + hashlib.sha256(sp.srepr(act.expr).encode()).hexdigest()[:12]


@lru_cache(maxsize=None)
def _builtin(name: str) -> Activation:
    expr = BUILTIN[name]
    if name == "relu":
        # d/dz max(0, z): the step θ(z) (value 1/2 at the measure-zero kink is irrelevant)
        deriv = sp.Heaviside(z)
    else:
        deriv = sp.simplify(sp.diff(expr, z))
    return Activation(name, expr, deriv, name in CLOSED_FORM_ACTIVATIONS)


def get_activation(spec) -> Activation:
    """An :class:`Activation` from a built-in name, a sympy expression of ``z`` or an
    Activation (returned as is).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the built-in ones) or an expression that is
        not a function of ``z`` alone (free symbols other than z, or no z at all).
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        if spec in BUILTIN:
            return _builtin(spec)
        if spec.startswith("user:"):
            try:
                expr = sp.sympify(spec[5:], locals={"z": z})
            except (sp.SympifyError, SyntaxError, TypeError) as exc:
                raise ValueError(f"activation {spec!r}: cannot parse the expression after "
                                 f"'user:' ({exc})") from None
            return _user(expr)
        raise ValueError(f"unknown activation {spec!r}; allowed: {', '.join(BUILTIN)}, or a "
                         "sympy expression of theory.activations.z (e.g. z*sympy.tanh(z))")
    if isinstance(spec, sp.Basic):
        return _user(spec)
    raise ValueError(f"activation must be one of {', '.join(BUILTIN)} or a sympy expression "
                     f"of z, got {type(spec).__name__} {spec!r}")


def _user(expr) -> Activation:
    expr = sp.sympify(expr)
    # accept any symbol *named* z (users may create their own sp.Symbol("z"))
    reps = {s: z for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name == "z"}
    expr = expr.xreplace(reps)
    other = sorted(str(s) for s in expr.free_symbols if s != z)
    if other or z not in expr.free_symbols:
        why = (f"it contains the symbols {other}" if other else "it does not contain z")
        raise ValueError(f"user activation {expr} is not an expression of z alone: {why}; "
                         "write it in theory.activations.z, e.g. z*sympy.tanh(z)")
    if expr.has(sp.Derivative) or expr.has(sp.Integral) or any(
            isinstance(f, sp.core.function.AppliedUndef) for f in expr.atoms(sp.Function)):
        raise ValueError(f"user activation {expr}: undefined functions, derivatives or "
                         "integrals cannot be compiled; use elementary functions of z")
    for name, b in BUILTIN.items():
        diff = expr - b
        if sp.simplify(diff) == 0 or sp.simplify(diff.rewrite(sp.exp)) == 0:
            return _builtin(name)      # a built-in in disguise: use its closed forms
    deriv = sp.diff(expr, z)
    return Activation(f"user:{expr}", expr, deriv, False)
