"""odeflow: numba-accelerated integration of the order-parameter ODEs (and the AFA
feedback SDE) of two-layer teacher–student networks trained by forward-only rules, and
the one public surface of the project.

    >>> import odeflow
    >>> init = odeflow.OrderParameters.from_spec(2, 2, R=0.01, v=0.1)
    >>> res = odeflow.solve("bp", init, eta=0.5, alpha_max=1e3)      # doctest: +SKIP
    >>> res.alpha, res.eg, res.status, res.message                    # doctest: +SKIP

What it offers (see ``dir(odeflow)``):

=====================  ==============================================================
``solve``              the ODEs of a rule from an initial state (:mod:`odeflow.api`)
``solve_sde``          the Euler–Maruyama ensemble of AFA's feedback noise
``simulate``           the finite-N simulation ensemble (:mod:`simulations`)
``compare``            simulation against ODE from the same measured state
``sweep``              a config over a grid of parameters (:mod:`odeflow.sweep`)
``plateau_exit``       an event: the exit from the symmetric plateau (:mod:`odeflow.events`)
``escape_rate``        its linear-stability theory λ (:mod:`odeflow.stability`)
``OrderParameters``    the state (:mod:`theory.state`)
``Rule``               a learning rule as sympy data (:mod:`theory.rules`)
``activations``        the activation registry (:mod:`theory.activations`)
``models``             the model registry (:mod:`theory.models`)
``Result``,            results of ``solve`` / ``solve_sde`` / ``compare`` / ``sweep``
``SDEResult``,
``Comparison``,
``SweepResult``
=====================  ==============================================================

Every name is imported on first use (PEP 562): ``import odeflow`` and ``python -m odeflow
--help`` import neither numba nor sympy.
"""

import sys
import types

#: public name → (module, attribute; None for the module itself)
_LAZY = {
    "solve": ("odeflow.api", "solve"),
    "solve_sde": ("odeflow.sde_solve", "solve_sde"),
    "get_system": ("odeflow.api", "get_system"),
    "METHODS": ("odeflow.api", "METHODS"),
    "SDE_METHODS": ("odeflow.api", "SDE_METHODS"),
    "Result": ("odeflow.results", "Result"),
    "SDEResult": ("odeflow.results", "SDEResult"),
    "compare": ("odeflow.compare", "compare"),
    "Comparison": ("odeflow.compare", "Comparison"),
    "sweep": ("odeflow.sweep", "sweep"),
    "SweepResult": ("odeflow.sweep", "SweepResult"),
    "load_sweep": ("odeflow.sweep", "load_sweep"),
    "plateau_exit": ("odeflow.events", "plateau_exit"),
    "escape_rate": ("odeflow.stability", "escape_rate"),
    "simulate": ("simulations.teacher_student", "simulate"),
    "OrderParameters": ("theory.state", "OrderParameters"),
    "Rule": ("theory.rules", "Rule"),
    "activations": ("theory.activations", None),
    "models": ("theory.models", None),
}

__all__ = list(_LAZY)


def __getattr__(name):
    # lazy (PEP 562): ``python -m odeflow --help`` and the config checks must not pay for
    # importing numba and loading the compiled integrators
    if name not in _LAZY:
        raise AttributeError(f"module 'odeflow' has no attribute {name!r}")
    import importlib

    mod, attr = _LAZY[name]
    obj = importlib.import_module(mod)
    if attr is not None:
        obj = getattr(obj, attr)
    globals()[name] = obj
    return obj


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The ``odeflow`` package: ``odeflow.sweep`` and ``odeflow.compare`` are the functions
    of the submodules of the same names. The import system binds a submodule to its
    package's attribute when it first loads it (``from odeflow.sweep import …``); the
    function is bound instead (the submodule stays in ``sys.modules``, where ``from
    odeflow.sweep import …`` and pickling find it)."""

    def __setattr__(self, name, value):
        if name in ("sweep", "compare") and isinstance(value, types.ModuleType):
            value = getattr(value, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
