"""The quadrature tolerance is re-checked during the run (theory.tolerance.live, called by
odeflow.solve between pieces of steps): a rule that meets rtol at the initial state and
misses it later stops the run there (explicit scheme) or is refined (auto).

The case: tanh BP, K = M = 2, a student that starts small (Q = 0.05) and grows towards the
teacher. Tensor Gauss–Hermite's error grows with the student's field variance: n = 8 meets
rtol = 0.02 at the start (estimate 0.017) and misses it later on. The oracle of "misses
it" is not the estimate: the true rhs error of the rule (against Gauss–Hermite n = 40,
itself checked against n = 32) at a state of a reference trajectory."""

import numpy as np
import pytest

import odeflow
from theory.codegen_quad import build_quad_system
from theory.state import OrderParameters

INIT = OrderParameters.from_spec(2, 2, Q=0.05, R=0.0, T=1.0, v=0.2, v_star=1.0)
KW = dict(activation="tanh", eta=1.0, alpha_max=12.0, record={"every": 1.0})


def _rhs(state, n):
    s = build_quad_system("bp", 2, 2, "tanh", {"scheme": "gauss-hermite", "n": n})
    y = s.layout.pack(state)
    dy = np.empty_like(y)
    s.rhs(y, s.params(state, 1.0, 1.0, 0.0), dy)
    return dy


def _true_rel_error(state, n, scale):
    ref = _rhs(state, 40)
    # the reference itself: n = 32 and 40 agree far below the errors measured here
    assert np.max(np.abs(_rhs(state, 32) - ref)) < 1e-3 * scale
    return np.max(np.abs(_rhs(state, n) - ref)) / scale


@pytest.mark.slow
def test_explicit_rule_that_stops_meeting_rtol_stops_the_run_there():
    q = {"scheme": "gauss-hermite", "n": 8, "rtol": 0.02}
    res = odeflow.solve("bp", INIT, quadrature=q, **KW)
    quad = res.params["quadrature"]
    assert quad["error_init"]["rhs_rel"] <= 0.02  # accepted up front
    assert res.status == -1 and res.reason == "quadrature"
    for part in ("'gauss-hermite'", "n = 8", "exceeds rtol = 0.02", "would meet it"):
        assert part in res.message
    # stopped during the run, at a state where the rule still met rtol (not at alpha_max:
    # without the live check the run reaches α = 12 and only the post-run check objects)
    assert 1.0 < res.alpha_final < 8.0
    assert quad["live"]["checks"][-2][1] <= 0.02 < quad["live"]["checks"][-1][1]
    assert len(quad["live"]["checks"]) >= 2
    # the oracle: along a trustworthy trajectory (GH n = 20), the rule's true error grows
    # past rtol; rhs scale as the estimate's (the largest rhs entry at the initial state)
    ref = odeflow.solve(
        "bp", INIT, quadrature={"scheme": "gauss-hermite", "n": 20, "rtol": 1e-2}, **KW
    )
    scale = np.max(np.abs(_rhs(INIT, 40)))
    assert _true_rel_error(INIT, 8, scale) <= 0.02
    late = ref.final  # α = 12
    assert _true_rel_error(late, 8, scale) > 0.02


@pytest.mark.slow
def test_auto_refines_its_rule_during_the_run():
    # auto at rtol = 2e-3 picks the marginal scheme (n = 8) at the start; its error grows
    # with the student's variance (0.058 at α ≈ 4.4), and the run must refine rather than
    # go on (with n = 8 it diverged spuriously at α ≈ 9)
    kw = dict(KW, alpha_max=6.0)
    res = odeflow.solve("bp", INIT, quadrature={"rtol": 2e-3}, **kw)
    quad = res.params["quadrature"]
    live = quad["live"]
    assert res.status == 0, res.message
    assert live["refined"], live
    first = live["refined"][0]
    assert first["estimate"] > 2e-3 and first["to"]["nodes"] > first["from"]["nodes"]
    assert quad["rule"]["nodes"] == live["refined"][-1]["to"]["nodes"]
    assert live["checks"][-1][1] <= 2e-3  # (relative to the initial rhs scale)
    # the refined trajectory agrees with a fine fixed rule (GH n = 20, estimate ≤ 1.1e-3 of
    # the rhs scale along this run) within the integrator's and rules' accuracy
    ref = odeflow.solve(
        "bp", INIT, quadrature={"scheme": "gauss-hermite", "n": 20, "rtol": 1e-2}, **kw
    )
    assert np.max(np.abs(res.Q[-1] - ref.Q[-1])) < 2e-3


@pytest.mark.slow  # ~15 s cold: an afa Gauss–Hermite system of its own
def test_stop_at_the_first_live_check_keeps_the_initial_record():
    # GH n = 24 meets rtol = 1e-5 at the start and misses it at the first live check
    # (α ≈ 5.7, estimate 1.6e-5): the run goes back to its first snapshot, α = 0, taken
    # before the α = 0 record was written. The records up to the stop stay (they used to be
    # dropped: an empty result); the oracle is the closed-form ε_g of the initial state
    init = OrderParameters.from_spec(
        2, 2, R=[[0.03, -0.01], [0.02, 0.01]], v=0.1, b=[0.3, -0.2], c=[0.1, 0.0], sigma_F2=0.09
    )
    q = {"scheme": "gauss-hermite", "n": 24, "rtol": 1e-5}
    res = odeflow.solve("afa", init, eta=0.5, alpha_max=20, quadrature=q)
    assert res.status == -1 and res.reason == "quadrature"
    assert "stopped at α = 0," in res.message
    closed = odeflow.solve("afa", init, eta=0.5, alpha_max=20)
    np.testing.assert_array_equal(res.alpha, [0.0])
    assert res.eg[0] == pytest.approx(closed.eg[0], rel=1e-5)
