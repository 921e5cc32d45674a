"""odeflow's mathematics: order parameters, learning rules as symbolic data, the derivation
of their ODEs (sympy) and the generated numba code.

Importing ``theory`` or ``theory.state`` does not import sympy; ``theory.rules``,
``theory.derive``, ``theory.codegen``, ``theory.activations`` and ``theory.codegen_quad``
(the Gaussian-quadrature backend for any activation and for exact PEPITA) do;
``theory.quadrature`` (fixed Gaussian rules) needs numpy, scipy and numba only.
"""
from .state import OrderParameters, Layout  # noqa: F401

__all__ = ["OrderParameters", "Layout"]
