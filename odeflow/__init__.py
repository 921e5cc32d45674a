"""odeflow: numba-accelerated integration of the order-parameter ODEs (and the AFA
feedback SDE) of two-layer teacher–student networks trained by forward-only rules.

    >>> import odeflow
    >>> from theory.state import OrderParameters
    >>> init = OrderParameters.from_spec(2, 2, R=0.01, v=0.1)
    >>> res = odeflow.solve("bp", init, eta=0.5, alpha_max=1e3)      # doctest: +SKIP
    >>> res.alpha, res.eg, res.status, res.message                    # doctest: +SKIP

See :func:`odeflow.solve`, :func:`odeflow.solve_sde` and ``python -m odeflow --help``.
"""
__all__ = ["solve", "solve_sde", "Result", "SDEResult", "METHODS", "SDE_METHODS"]


def __getattr__(name):
    # lazy (PEP 562): ``python -m odeflow --help`` and the config checks must not pay for
    # importing numba and loading the compiled integrators
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'odeflow' has no attribute {name!r}")
