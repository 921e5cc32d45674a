"""odeflow's mathematics: order parameters, learning rules as symbolic data, the derivation
of their ODEs (sympy) and the generated numba code.

Importing ``theory`` or ``theory.state`` does not import sympy; ``theory.rules``,
``theory.derive``, ``theory.codegen``, ``theory.activations`` and ``theory.codegen_quad``
(the Gaussian-quadrature backend for any activation and for exact PEPITA) do;
``theory.quadrature`` (fixed Gaussian rules) needs numpy, scipy and numba only.

Generated code: one printer and emitter (``theory.emit``); the rule-independent numba loops
are real modules (``theory.*_kernels``) that every generated module includes; one cache
(``theory.cache``: verified modules, one key helper ``generated_path``).
"""

__all__ = ["OrderParameters", "Layout"]


def __getattr__(name):
    # lazy (PEP 562): ``theory.runtime.cli`` (every command's --help) must not pay for numpy
    if name in __all__:
        from . import state

        return getattr(state, name)
    raise AttributeError(f"module 'theory' has no attribute {name!r}")
