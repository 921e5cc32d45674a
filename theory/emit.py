"""One sympy → numba printer and one emitter for every generated module.

Generators (:mod:`theory.codegen`, :mod:`theory.codegen_quad`, :mod:`theory.codegen_marginal`,
:mod:`theory.ff`, :mod:`simulations.kernelgen`) print their rule- or activation-specific
expressions with :class:`NumbaPrinter` and write the module with :func:`emit_module`:

    header comments (generator, version, cache key — never edit a generated file)
    imports
    constants          (flags fixed at generation time: numba folds them)
    generated functions
    included kernels   (real modules such as theory/ff_kernels.py, see below)
    more generated functions (the ones that call the kernels)

Rule-independent numba loops live in real, importable and lintable modules (the *kernel
modules*). A kernel module marks the few names it expects from the generated part with a
block::

    # >>> generated
    ... stand-in definitions (so that the module imports and runs on its own) ...
    # <<< generated

:func:`include` returns the module's source without that block; the generated module
defines those names itself. Each generated module is one file, so numba's on-disk cache
(``cache=True``) keys the compiled kernels by that file, as before.

The cache key of a generated module is :func:`theory.cache.generated_path` /
:func:`theory.cache.source_fingerprint` (the generator's sources and the inputs).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

__all__ = ["NumbaPrinter", "pr", "njit_function", "emit_module", "include", "BEGIN", "END"]

BEGIN = "# >>> generated"
END = "# <<< generated"


class NumbaPrinter(PythonCodePrinter):
    """sympy → numba-compilable Python: ``math.*`` functions, floats for every number
    (``2.0``, ``(1.0/3.0)``: no integer arithmetic in the kernels), small integer powers as
    products, the clipped ``_asin`` (round-off can push the argument a hair past ±1 at
    degenerate states), branch-free-looking ``max``/``min`` and the step functions inline.

    ``functions``: extra names printed as calls of generated helpers, ``{sympy function
    name: numba name}`` (FF's ``softplus`` → ``_softplus``).
    """

    def __init__(self, functions=None, settings=None):
        super().__init__({"fully_qualified_modules": True, "strict": False, **(settings or {})})
        self._functions = dict(functions or {})

    def _print_Symbol(self, s):
        return s.name

    def _print_Pi(self, e):
        return "math.pi"

    def _print_Pow(self, e, rational=False):
        base, ex = e.as_base_exp()
        if ex == sp.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if ex == -sp.Rational(1, 2):
            return f"(1.0/math.sqrt({self._print(base)}))"
        if ex == -1:
            return f"(1.0/{self.parenthesize(base, 100)})"
        if ex.is_Integer and 1 < ex <= 4:
            b = self.parenthesize(base, 100)
            return "(" + "*".join([b] * int(ex)) + ")"
        return super()._print_Pow(e, rational)

    def _print_asin(self, e):
        return f"_asin({self._print(e.args[0])})"

    def _print_Rational(self, e):
        return f"({e.p}.0/{e.q}.0)"

    def _print_Integer(self, e):
        return f"{int(e)}.0"

    def _print_Heaviside(self, e):
        return f"(1.0 if ({self._print(e.args[0])}) > 0.0 else 0.0)"

    def _print_Max(self, e):
        out = self._print(e.args[0])
        for a in e.args[1:]:
            out = f"max({out}, {self._print(a)})"
        return out

    def _print_Min(self, e):
        out = self._print(e.args[0])
        for a in e.args[1:]:
            out = f"min({out}, {self._print(a)})"
        return out

    def _print_sign(self, e):
        a = self._print(e.args[0])
        return f"(1.0 if ({a}) > 0.0 else (-1.0 if ({a}) < 0.0 else 0.0))"

    def _print_DiracDelta(self, e):
        raise NotImplementedError("DiracDelta")

    def _print_Function(self, e):
        name = type(e).__name__
        if name in self._functions:
            return f"{self._functions[name]}({', '.join(self._print(a) for a in e.args)})"
        return super()._print_Function(e)


_DEFAULT = NumbaPrinter()


def pr(expr) -> str:
    """``expr`` printed by the default :class:`NumbaPrinter`."""
    return _DEFAULT.doprint(expr)


def njit_function(name: str, args: str, body, *, inline: bool = False, doc: str = "") -> str:
    """Source of one ``@njit(cache=True, nogil=True)`` function; ``body``: lines (without
    indentation) or one string."""
    lines = body.splitlines() if isinstance(body, str) else list(body)
    deco = (
        '@njit(cache=True, nogil=True, inline="always")'
        if inline
        else "@njit(cache=True, nogil=True)"
    )
    out = [deco, f"def {name}({args}):"]
    if doc:
        out.append(f'    """{doc}"""')
    out += ["    " + ln if ln else "" for ln in lines]
    return "\n".join(out) + "\n"


@cache
def include(path) -> str:
    """The source of kernel module ``path`` without its ``# >>> generated`` block (the
    stand-ins that the generated module replaces with its own definitions)."""
    lines = Path(path).read_text().splitlines(keepends=True)
    marks = [i for i, ln in enumerate(lines) if ln.rstrip() in (BEGIN, END)]
    if len(marks) != 2 or lines[marks[0]].rstrip() != BEGIN:
        raise RuntimeError(
            f"kernel module {path} must hold exactly one block of lines {BEGIN!r} … {END!r}"
        )
    head = "".join(lines[: marks[0]]).rstrip()
    tail = "".join(lines[marks[1] + 1 :]).lstrip("\n")
    return head + "\n\n" + tail


def kernel_path(name: str) -> Path:
    """Path of the kernel module ``theory/<name>.py``."""
    return Path(__file__).with_name(f"{name}.py")


def emit_module(
    *,
    generator: str,
    version: str,
    key: str,
    comments=(),
    imports=(),
    constants=None,
    functions=(),
    kernels=(),
    after=(),
) -> str:
    """The source of a generated module (see the module docstring).

    Parameters
    ----------
    generator, version, key : str
        Written in the header (``key``: the cache key the module's path carries).
    comments : list of str
        More header lines (what was generated: rule, activation, …), without ``#``.
    imports : list of str
        Import lines (``math``, ``numpy as np`` and ``numba.njit`` are always there).
    constants : dict
        Module constants ``{name: value}`` (written with ``repr``).
    functions : list of str
        Generated function sources, before the kernels.
    kernels : list of str
        Kernel module names (``theory/<name>.py``) included via :func:`include`.
    after : list of str
        Generated sources after the kernels (the entry points that call them).
    """
    out = [
        f"# Generated by {generator} (version {version}) — do not edit.",
        *[f"# {c}" for c in comments],
        f"# key={key}",
        "import math",
        "import numpy as np",
        "from numba import njit",
        *imports,
        "",
    ]
    out += [f"{n} = {v!r}" for n, v in (constants or {}).items()]
    out.append("")
    for f in functions:
        out += ["", f.rstrip("\n"), ""]
    for k in kernels:
        out += ["", f"# ---- included from theory/{k}.py", include(kernel_path(k)).rstrip("\n"), ""]
    for f in after:
        out += ["", f.rstrip("\n"), ""]
    return "\n".join(out) + "\n"
