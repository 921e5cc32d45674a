"""The four Gaussian averages every order-parameter ODE reduces to (docs/theory.md §4).

For jointly Gaussian fields with covariance ``C`` (1-based entries in the order the fields
are written)::

    I2(a,b)     = E[g(a) g(b)]
    I3(a,b,c)   = E[g'(a) b g(c)]
    I4(a,b,c,d) = E[g'(a) g'(b) g(c) g(d)]
    J2(a,b)     = E[g'(a) g'(b)]

For ``g(z) = erf(z/√2)``::

    I2 = (2/π) arcsin( C12 / √((1+C11)(1+C22)) )
    J2 = (2/π) (1 + C11 + C22 + C11 C22 − C12²)^(-1/2)
    I3 = (2/π) (1/√Λ3) (C23 (1+C11) − C12 C13) / (1+C11),   Λ3 = (1+C11)(1+C33) − C13²
    I4 = (4/π²) (1/√Λ4) arcsin( Λ0 / (√Λ1 √Λ2) ),             Λ4 = (1+C11)(1+C22) − C12²
    Λ0 = Λ4 C34 − C23 C24 (1+C11) − C13 C14 (1+C22) + C12 C13 C24 + C12 C14 C23
    Λ1 = Λ4 (1+C33) − C23² (1+C11) − C13² (1+C22) + 2 C12 C13 C23
    Λ2 = Λ4 (1+C44) − C24² (1+C11) − C14² (1+C22) + 2 C12 C14 C24

For linear ``g(z) = z``: ``I2 = C12``, ``I3 = C23``, ``I4 = C34``, ``J2 = 1``.

The sympy expressions here are the single source of these formulas: the code generator
prints them into the generated right-hand sides, and :func:`kernel` compiles them into
standalone numba functions (used by tests against Monte Carlo).
"""

from __future__ import annotations

from functools import cache
from itertools import combinations_with_replacement

import sympy as sp

from .observables import check_closed_form as check_activation

__all__ = ["ARITY", "SYMMETRIES", "closed_form", "entry_symbols", "kernel"]

#: number of fields each average takes
ARITY = {"I2": 2, "I3": 3, "I4": 4, "J2": 2}

#: argument permutations that leave each average unchanged (used to canonicalise terms
#: and to halve summations): I2, J2 symmetric; I4 symmetric in (1,2) and in (3,4).
SYMMETRIES = {
    "I2": [(1, 0)],
    "J2": [(1, 0)],
    "I3": [],
    "I4": [(1, 0, 2, 3), (0, 1, 3, 2), (1, 0, 3, 2)],
}


def entry_symbols(n: int) -> dict:
    """Symbols ``C11, C12, …`` for an n×n symmetric covariance, keyed by ``(i, j)``, 1-based,
    both orders mapping to the same symbol."""
    out = {}
    for i, j in combinations_with_replacement(range(1, n + 1), 2):
        s = sp.Symbol(f"C{i}{j}", real=True)
        out[(i, j)] = out[(j, i)] = s
    return out


def closed_form(name: str, activation: str, C=None) -> sp.Expr:
    """Closed form of average ``name`` for ``activation``.

    Parameters
    ----------
    name : {"I2", "I3", "I4", "J2"}
    activation : {"erf", "linear"}
    C : callable ``(i, j) -> sympy.Expr``, optional
        The covariance entries (1-based). Defaults to the symbols of :func:`entry_symbols`.
    """
    check_activation(activation)
    if name not in ARITY:
        raise ValueError(f"unknown Gaussian average {name!r}; known: {', '.join(ARITY)}")
    if C is None:
        syms = entry_symbols(ARITY[name])
        C = lambda i, j: syms[(i, j)]  # noqa: E731
    if activation == "linear":
        if name == "J2":
            return sp.Integer(1)
        i, j = {"I2": (1, 2), "I3": (2, 3), "I4": (3, 4)}[name]
        return C(i, j)
    pi = sp.pi
    if name == "I2":
        return 2 / pi * sp.asin(C(1, 2) / (sp.sqrt(1 + C(1, 1)) * sp.sqrt(1 + C(2, 2))))
    if name == "J2":
        return 2 / pi / sp.sqrt(1 + C(1, 1) + C(2, 2) + C(1, 1) * C(2, 2) - C(1, 2) ** 2)
    if name == "I3":
        L3 = (1 + C(1, 1)) * (1 + C(3, 3)) - C(1, 3) ** 2
        return 2 / pi / sp.sqrt(L3) * (C(2, 3) * (1 + C(1, 1)) - C(1, 2) * C(1, 3)) / (1 + C(1, 1))
    # I4: written with √Λ1 √Λ2 as separate factors so that a loop-invariant Λ1 (when the
    # third field is fixed in an outer loop) is hoisted by the code generator.
    L4 = (1 + C(1, 1)) * (1 + C(2, 2)) - C(1, 2) ** 2
    L0 = (
        L4 * C(3, 4)
        - C(2, 3) * C(2, 4) * (1 + C(1, 1))
        - C(1, 3) * C(1, 4) * (1 + C(2, 2))
        + C(1, 2) * C(1, 3) * C(2, 4)
        + C(1, 2) * C(1, 4) * C(2, 3)
    )
    L1 = (
        L4 * (1 + C(3, 3))
        - C(2, 3) ** 2 * (1 + C(1, 1))
        - C(1, 3) ** 2 * (1 + C(2, 2))
        + 2 * C(1, 2) * C(1, 3) * C(2, 3)
    )
    L2 = (
        L4 * (1 + C(4, 4))
        - C(2, 4) ** 2 * (1 + C(1, 1))
        - C(1, 4) ** 2 * (1 + C(2, 2))
        + 2 * C(1, 2) * C(1, 4) * C(2, 4)
    )
    return 4 / pi**2 / sp.sqrt(L4) * sp.asin(L0 / (sp.sqrt(L1) * sp.sqrt(L2)))


@cache
def kernel(name: str, activation: str = "erf"):
    """A numba-compiled scalar function of the covariance entries in the order
    ``C11, C12, …, C1n, C22, …, Cnn`` (upper triangle, row-major)."""
    import numba

    n = ARITY[name]
    syms = entry_symbols(n)
    args = [syms[(i, j)] for i, j in combinations_with_replacement(range(1, n + 1), 2)]
    f = sp.lambdify(args, closed_form(name, activation), modules="math")
    return numba.njit(f)
