"""Activation functions as symbolic data (docs/theory.md §1, docs/quadrature.md).

An :class:`Activation` holds ``g(z)`` as a sympy expression of the symbol :data:`z` and its
derivative ``g'(z)`` (by ``sympy.diff``). Built-in names:

============  ==========================  ======================================
name          g(z)                        Gaussian averages
============  ==========================  ======================================
``erf``       erf(z/√2)                   closed forms (docs/theory.md §4)
``linear``    z                           closed forms
``relu``      max(0, z)                   quadrature (I2 also as arc-cosine kernel)
``tanh``      tanh(z)                     quadrature
``sigmoid``   1/(1 + e^(−z))              quadrature
============  ==========================  ======================================

A user activation is any sympy expression of ``z`` (and numbers only)::

    import sympy as sp
    from theory.activations import z, get_activation
    swish = get_activation(z * (1 + sp.tanh(z)) / 2)

Its name is ``"user:<expression>"`` (what ``Result.params['activation']`` records). In a
JSON config an activation is a string: a built-in name, or the expression itself with or
without the ``user:`` prefix (``"z*tanh(z)"``, ``"user:z*(1 + tanh(z))/2"``). Strings are
read by :func:`parse_expression`, a whitelisting parser (numbers, ``z``, ``pi``, ``E``,
``+ - * / **`` and the functions of :data:`FUNCTIONS`) that never evaluates the string:
a config is data and cannot run code through its activation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache

import sympy as sp

from .activation_names import ACTIVATIONS, CLOSED_FORM_ACTIVATIONS

__all__ = [
    "Activation",
    "get_activation",
    "z",
    "BUILTIN",
    "CLOSED_FORM_ACTIVATIONS",
    "ACTIVATIONS",
    "activation_key",
    "parse_expression",
    "FUNCTIONS",
]

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
        """False when g or g' has a kink or jump (max, min, abs, sign, θ, piecewise):
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
        """(g, g') as numpy-vectorised callables (for tests and plain-numpy quadrature);
        made once per activation and process."""
        return _numpy_of(self.expr, self.deriv)


@lru_cache(maxsize=64)
def _numpy_of(expr, deriv):
    mods = [{"Heaviside": _heaviside_np}, "numpy", "scipy"]
    return sp.lambdify(z, expr, modules=mods), sp.lambdify(z, deriv, modules=mods)


def _heaviside_np(x, h0=0.5):
    import numpy as np

    return np.where(x > 0, 1.0, np.where(x < 0, 0.0, h0))


def activation_key(act: Activation) -> str:
    if act.name in BUILTIN:
        return act.name
    return "user_" + hashlib.sha256(sp.srepr(act.expr).encode()).hexdigest()[:12]


@cache
def _builtin(name: str) -> Activation:
    expr = BUILTIN[name]
    if name == "relu":
        # d/dz max(0, z): the step θ(z) (value 1/2 at the measure-zero kink is irrelevant)
        deriv = sp.Heaviside(z)
    else:
        deriv = sp.simplify(sp.diff(expr, z))
    return Activation(name, expr, deriv, name in CLOSED_FORM_ACTIVATIONS)


def get_activation(spec) -> Activation:
    """An :class:`Activation` from a built-in name, an expression string, a sympy
    expression of ``z`` or an Activation (returned as is).

    A string that is not a built-in name is an expression of ``z`` (with or without the
    prefix ``"user:"``, e.g. ``"z*tanh(z)"`` or ``"user:z*(1 + tanh(z))/2"``), read by
    :func:`parse_expression` — a whitelisting parser that never evaluates the string, so a
    JSON config cannot run code through its activation.

    Raises
    ------
    ValueError
        For an unknown name or a string outside the expression grammar (the message lists
        the built-in names and the allowed functions), or an expression that is not a
        function of ``z`` alone (free symbols other than z, or no z at all).
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        if spec in BUILTIN:
            return _builtin(spec)
        return _from_string(spec)
    if isinstance(spec, sp.Basic):
        return _user(spec)
    raise ValueError(
        f"activation must be one of {', '.join(BUILTIN)}, an expression string "
        f"of z or a sympy expression of z, got {type(spec).__name__} {spec!r}"
    )


_BY_STRING: dict = {}


def _from_string(spec: str) -> Activation:
    # cached (under the string and the canonical name): recognising a built-in in disguise
    # runs sympy.simplify (seconds), and the simulations look the name up at every record
    if spec not in _BY_STRING:
        act = _parse_string(spec)
        if len(_BY_STRING) < 1024:
            _BY_STRING[spec] = _BY_STRING[act.name] = act
        return act
    return _BY_STRING[spec]


def _parse_string(spec: str) -> Activation:
    text = spec[5:] if spec.startswith("user:") else spec
    try:
        expr = parse_expression(text)
    except ValueError as exc:
        raise ValueError(
            f"unknown activation {spec!r}; allowed: {', '.join(BUILTIN)}, or "
            "an expression of z with or without the prefix 'user:' (e.g. "
            f"'z*tanh(z)'). The expression was refused: {exc}"
        ) from None
    return _user(expr)


# ----------------------------------------------------------- the safe string parser
def _relu(x):
    return sp.Max(0, x)


def _sigmoid(x):
    return 1 / (1 + sp.exp(-x))


def _softplus(x):
    return sp.log(1 + sp.exp(x))


#: the functions an activation string may call (name → sympy constructor)
FUNCTIONS = {
    "tanh": sp.tanh,
    "exp": sp.exp,
    "log": sp.log,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "sqrt": sp.sqrt,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "atan": sp.atan,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "asinh": sp.asinh,
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "Max": sp.Max,
    "max": sp.Max,
    "Min": sp.Min,
    "min": sp.Min,
    "sign": sp.sign,
    "Heaviside": sp.Heaviside,
    "relu": _relu,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
}
#: the named constants an activation string may use
CONSTANTS = {"pi": sp.pi, "E": sp.E}
_MAX_LEN = 2000


def parse_expression(text: str) -> sp.Expr:
    """A sympy expression from an activation string, without ``eval`` or ``sympify``.

    The string is parsed by :func:`ast.parse` and every node is checked against a fixed
    grammar: numbers, the name ``z``, the constants ``pi`` and ``E``, the operators
    ``+ - * / **``, unary ``+``/``-``, and calls ``f(args)`` of :data:`FUNCTIONS` with
    positional arguments. Attribute access, subscripts, lambdas, keywords, other names and
    everything else are refused. The result is the expression the same Python code would
    give with sympy objects (``z*(1 + tanh(z))/2`` ≡ ``z*(1 + sympy.tanh(z))/2``), except
    that integer division ``1/2`` stays exact (a Rational).

    Raises
    ------
    ValueError
        Naming the offending piece and what is allowed.
    """
    import ast

    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty expression")
    if len(text) > _MAX_LEN:
        raise ValueError(f"expression longer than {_MAX_LEN} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a valid expression ({exc.msg})") from None
    allowed = (
        f"numbers, z, pi, E, + - * / **, and the functions "
        f"{', '.join(sorted(FUNCTIONS, key=str.lower))}"
    )
    binops = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
        ast.Pow: lambda a, b: a**b,
    }

    def walk(node, depth=0):
        if depth > 100:
            raise ValueError("expression nested too deeply")
        if isinstance(node, ast.Expression):
            return walk(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ValueError(
                    f"constant {node.value!r} is not a real number; allowed: {allowed}"
                )
            return (
                sp.Integer(node.value)
                if isinstance(node.value, int)
                else sp.Float(repr(node.value))
            )
        if isinstance(node, ast.Name):
            if node.id == "z":
                return z
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ValueError(f"name {node.id!r} is not allowed; allowed: {allowed}")
        if isinstance(node, ast.BinOp) and type(node.op) in binops:
            return binops[type(node.op)](walk(node.left, depth + 1), walk(node.right, depth + 1))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            val = walk(node.operand, depth + 1)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise ValueError(
                    f"calling {ast.unparse(node.func)!r} is not allowed (only the "
                    f"functions listed, called by name); allowed: {allowed}"
                )
            if node.func.id not in FUNCTIONS:
                raise ValueError(f"function {node.func.id!r} is not allowed; allowed: {allowed}")
            if node.keywords or not node.args or any(isinstance(a, ast.Starred) for a in node.args):
                raise ValueError(f"{node.func.id}(...) takes positional arguments only")
            try:
                return FUNCTIONS[node.func.id](*[walk(a, depth + 1) for a in node.args])
            except TypeError as exc:
                raise ValueError(f"{node.func.id}(...): {exc}") from None
        if isinstance(node, ast.BinOp):
            raise ValueError(
                f"operator {type(node.op).__name__} is not allowed (use ** for a "
                f"power); allowed: {allowed}"
            )
        raise ValueError(
            f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed; allowed: {allowed}"
        )

    return walk(tree)


def _maybe_zero(expr) -> bool:
    """False if ``expr`` (of z) is clearly non-zero at one of a few sample points."""
    for x in (-1.7, -0.3, 0.45, 1.3, 2.9):
        try:
            val = complex(expr.xreplace({z: sp.Float(x)}).evalf())
        except (TypeError, ValueError):
            return True  # cannot tell numerically: let simplify decide
        if abs(val) > 1e-9:
            return False
    return True


def _user(expr) -> Activation:
    expr = sp.sympify(expr)
    # accept any symbol *named* z (users may create their own sp.Symbol("z"))
    reps = {s: z for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name == "z"}
    expr = expr.xreplace(reps)
    other = sorted(str(s) for s in expr.free_symbols if s != z)
    if other or z not in expr.free_symbols:
        why = f"it contains the symbols {other}" if other else "it does not contain z"
        raise ValueError(
            f"user activation {expr} is not an expression of z alone: {why}; "
            "write it in theory.activations.z, e.g. z*sympy.tanh(z)"
        )
    if (
        expr.has(sp.Derivative)
        or expr.has(sp.Integral)
        or any(isinstance(f, sp.core.function.AppliedUndef) for f in expr.atoms(sp.Function))
    ):
        raise ValueError(
            f"user activation {expr}: undefined functions, derivatives or "
            "integrals cannot be compiled; use elementary functions of z"
        )
    for name, b in BUILTIN.items():
        diff = expr - b
        if not _maybe_zero(diff):
            continue  # differs at a sample point: no simplify (seconds)
        if sp.simplify(diff) == 0 or sp.simplify(diff.rewrite(sp.exp)) == 0:
            return _builtin(name)  # a built-in in disguise: use its closed forms
    deriv = sp.diff(expr, z)
    return Activation(f"user:{expr}", expr, deriv, False)
