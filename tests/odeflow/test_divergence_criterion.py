"""One divergence criterion for ODE and simulations (theory.divergence): solve stops when
ε_g passes ``diverge_threshold`` (default EG_MAX = 1e4, the simulations' eg_max); the
order parameters only guard against overflow (max(Y_MAX, threshold))."""

import numpy as np
import pytest
from numba import njit
from scipy.linalg import expm
from scipy.optimize import brentq
from toy_system import ToySystem, growing_v_A

import odeflow
from odeflow import solvers as S
from simulations.ensemble import Divergence
from theory.divergence import EG_MAX, Y_MAX, overflow_guard


def test_one_set_of_numbers_for_ode_and_simulations():
    assert Divergence().eg_max == EG_MAX == 1e4 and Divergence().q_max == Y_MAX == 1e6
    o = S.make_opts(1.0, 0.1, 1.0, None, EG_MAX, 1e-9, 10, 3, 2, np.eye(2))
    assert o[S.O_THRESH] == 1e4 and o[S.O_YMAX] == 1e6
    assert overflow_guard(1e8) == 1e8  # a guard below the criterion would pre-empt it


@pytest.mark.parametrize("method", ["dopri5", "euler"])
def test_solve_stops_where_eg_passes_the_threshold(toy_init, method):
    # ε_g = ½|y|², y(α) = expm(αA) y0 exactly: the default criterion stops at the root of
    # ½|y(α)|² = 1e4 (adaptive: located by bisection to ~1e-9; Euler at dt = 1e-3 is within
    # its O(dt) global error of the exact crossing, ~1 %)
    sysm = ToySystem(growing_v_A(rate=0.8))
    y0 = sysm.layout.pack(toy_init)
    ymax_at = []

    def eg_minus(a):
        y = expm(a * sysm.A) @ y0
        ymax_at.append(np.max(np.abs(y)))
        return 0.5 * y @ y - EG_MAX

    a_star = brentq(eg_minus, 0.0, 50.0, xtol=1e-12)
    res = odeflow.solve(sysm, toy_init, eta=0.1, method=method, dt=1e-3, alpha_max=50.0)
    assert res.reason == "diverged" and res.status == -1
    assert "ε_g" in res.message and "overflow guard" in res.message
    tol = 1e-6 if method == "dopri5" else 0.02
    assert abs(res.alpha_final - a_star) < tol * a_star, (res.alpha_final, a_star)
    assert res.params["diverge_threshold"] == EG_MAX and res.params["overflow_guard"] == Y_MAX


@njit(cache=True)
def _flat_eg(y, p):
    return 0.125


class _BoundedEg(ToySystem):
    """Order parameters grow, ε_g does not (as for saturated erf units)."""

    def __init__(self, A):
        super().__init__(A)
        self.eg = _flat_eg


@pytest.mark.parametrize("threshold, guard", [(None, Y_MAX), (1e8, 1e8)])
def test_order_parameters_are_only_an_overflow_guard(toy_init, threshold, guard):
    kw = {} if threshold is None else {"diverge_threshold": threshold}
    res = odeflow.solve(_BoundedEg(growing_v_A(rate=0.8)), toy_init, eta=0.1, alpha_max=100.0, **kw)
    assert res.reason == "diverged"
    assert "overflow guard" in res.message and f"{guard:.3g}" in res.message
    y = res.final
    # the last accepted state is just below the guard (bisected crossing), far above 1e4
    assert 0.99 * guard < np.max(np.abs(y.v)) <= guard
