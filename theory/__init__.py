"""odeflow's mathematics: order parameters, learning rules as symbolic data, the derivation
of their ODEs (sympy) and the generated numba code.

Importing ``theory`` or ``theory.state`` does not import sympy; ``theory.rules``,
``theory.derive`` and ``theory.codegen`` do.
"""
from .state import OrderParameters, Layout  # noqa: F401

__all__ = ["OrderParameters", "Layout"]
