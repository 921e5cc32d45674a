"""The integrators on the linear toy system dy/dα = A y (exact solution expm(αA) y0)."""

import numpy as np
import pytest
from numba import njit
from toy_system import ToySystem, growing_v_A, stable_A

import odeflow
from odeflow import solvers as S
from theory.state import Layout


def _flat(res, system):
    """The recorded trajectory as flat vectors (T, n)."""
    iu = np.triu_indices(system.K)
    parts = [res.Q[:, iu[0], iu[1]], res.R.reshape(len(res.alpha), -1), res.v]
    if system.layout.adaptive_b:
        parts.append(res.b)
    return np.concatenate(parts, axis=1)


def _err(system, init, **kw):
    res = odeflow.solve(system, init, eta=0.1, **kw)
    assert res.status == 0, res.message
    exact = system.exact(system.layout.pack(init), res.alpha)
    return np.max(np.abs(_flat(res, system) - exact)), res


@pytest.mark.parametrize("method,order,dts", [("euler", 1, (0.02, 0.01)), ("rk4", 4, (0.2, 0.1))])
def test_fixed_step_convergence_order(toy, toy_init, method, order, dts):
    errs = [
        _err(toy, toy_init, method=method, dt=dt, alpha_max=4.0, record={"every": 0.4})[0]
        for dt in dts
    ]
    ratio = errs[0] / errs[1]
    assert errs[1] < errs[0]
    # halving dt divides the global error by 2^order (within 15 %)
    assert 2**order * 0.85 < ratio < 2**order * 1.15, (errs, ratio)


@pytest.mark.parametrize("rtol", [1e-5, 1e-8, 1e-11])
def test_dopri5_meets_rtol(toy, toy_init, rtol):
    err, res = _err(
        toy,
        toy_init,
        method="dopri5",
        rtol=rtol,
        atol=rtol * 1e-2,
        alpha_max=10.0,
        record={"every": 0.37},
    )
    ymax = np.max(np.abs(toy.layout.pack(toy_init)))
    # global error of a tolerance-controlled method: a modest multiple of rtol·|y|
    assert err < 10 * rtol * ymax + 1e-13, (err, rtol)
    assert res.n_steps < 2000


def test_dopri5_dense_output_between_steps(toy, toy_init):
    # records much denser than the steps: all of them come from the continuous extension
    err, res = _err(
        toy,
        toy_init,
        method="dopri5",
        rtol=1e-9,
        atol=1e-12,
        alpha_max=5.0,
        record={"every": 0.004},
    )
    assert res.n_steps < len(res.alpha) / 3
    assert err < 1e-8


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_records_land_exactly_on_requested_alpha(toy, toy_init, method):
    grid = [0.0, 0.05, 0.13, 0.2, 0.71, 1.0, 2.3333]
    res = odeflow.solve(
        toy, toy_init, eta=0.1, method=method, dt=0.03, alpha_max=2.5, record={"alpha": grid}
    )
    assert res.alpha.tolist() == grid
    assert res.alpha_final == 2.5
    # the states are those at exactly those α (the fixed-step error stays O(dt^p))
    exact = toy.exact(toy.layout.pack(toy_init), res.alpha)
    tol = {"euler": 2e-2, "rk4": 1e-6, "dopri5": 1e-7}[method]
    assert np.max(np.abs(_flat(res, toy) - exact)) < tol


def test_fixed_step_count_with_landing(toy, toy_init):
    # dt divides the record spacing: no extra landing steps; otherwise one extra per record
    res = odeflow.solve(
        toy, toy_init, eta=0.1, method="euler", dt=0.01, alpha_max=1.0, record={"every": 0.1}
    )
    assert res.n_steps == 100
    res = odeflow.solve(
        toy, toy_init, eta=0.1, method="euler", dt=0.03, alpha_max=0.3, record={"every": 0.1}
    )
    assert res.n_steps == 12  # 3 full steps + 1 landing step per interval of 0.1


def test_divergence_is_detected_and_reported(toy_init):
    unstable = ToySystem(growing_v_A(rate=0.8))
    for method in ("euler", "rk4", "dopri5"):
        res = odeflow.solve(
            unstable,
            toy_init,
            eta=0.1,
            method=method,
            dt=0.01,
            alpha_max=100.0,
            record={"every": 1.0},
            diverge_threshold=1e6,
        )
        assert res.status == -1 and not res.success and res.reason == "diverged"
        assert "diverged at α" in res.message and "threshold" in res.message
        # ε_g = ½|y|² passes 1e6 when |v| ~ 1.4e3: at ln(1.4e3/|v0|)/0.8 ≈ 9.9
        assert 9.5 < res.alpha_final < 10.5
        assert len(res.alpha) == int(res.alpha_final) + 1  # cut, not NaN-filled
        assert np.all(np.isfinite(res.eg)) and np.all(np.isfinite(res.Q))
        assert res.final.Q.shape == (2, 2)


def test_nonfinite_state_is_detected(toy_init):
    res = odeflow.solve(
        ToySystem(growing_v_A(rate=100.0)),
        toy_init,
        eta=0.1,
        method="euler",
        dt=1.0,
        alpha_max=1e3,
        diverge_threshold=1e308,
    )
    assert res.status == -1
    assert "non-finite" in res.message or "exceeds" in res.message


def test_loss_of_positive_semidefiniteness_is_detected(toy_init):
    # dQ00/dα = -Q11 (Q11 constant = 1): Q00 = 1 - α and det Q = (1 - α) - 0.04 < 0 after
    # 0.96; the field covariance (Q - R Rᵀ ≥ 0 with T = I) goes indefinite slightly earlier
    lay = Layout(2, 2)
    A = np.zeros((lay.n, lay.n))
    A[0, 2] = -1.0  # packed Q: [Q00, Q01, Q11]
    for method in ("euler", "dopri5"):
        res = odeflow.solve(
            ToySystem(A),
            toy_init,
            eta=0.1,
            method=method,
            dt=0.01,
            alpha_max=3.0,
            record={"every": 0.1},
        )
        assert res.status == -1 and res.reason == "diverged"
        assert "positive semi-definite" in res.message
        # (fixed-step: the full checks run every CHECK_EVERY steps, and a failure sends the
        # loop back to the last checked state to take the steps again, each checked: the
        # final state is the last step before the crossing, α = 0.95 at dt = 0.01, not up
        # to CHECK_EVERY steps earlier)
        assert 0.95 - 1e-9 < res.alpha_final <= 0.96 + 1e-9
        assert "field covariance" in res.message
        assert np.linalg.eigvalsh(res.final.field_covariance())[0] > -1e-9


def test_eg_tol_stops_with_status_1(toy, toy_init):
    for method in ("euler", "rk4", "dopri5"):
        res = odeflow.solve(
            toy,
            toy_init,
            eta=0.1,
            method=method,
            dt=0.01,
            alpha_max=200.0,
            record={"every": 0.5},
            eg_tol=1e-3,
        )
        assert res.status == 1 and res.success and res.reason == "converged"
        assert "converged at α" in res.message
        final_eg = float(toy.eg(toy.layout.pack(res.final), np.zeros(1)))
        assert final_eg < 1e-3
        assert np.all(res.eg >= 1e-3)  # every earlier record is above tolerance
        assert res.alpha[-1] <= res.alpha_final < 200


def test_max_steps_budget(toy, toy_init):
    res = odeflow.solve(
        toy,
        toy_init,
        eta=0.1,
        method="euler",
        dt=0.01,
        alpha_max=10.0,
        max_steps=50,
        record={"every": 0.1},
    )
    assert res.status == -1 and res.reason == "max_steps" and "max_steps" in res.message
    assert res.n_steps == 50 and abs(res.alpha_final - 0.5) < 1e-12


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(method="rk45", alpha_max=1.0), "unknown method 'rk45'; allowed: euler, rk4, dopri5"),
        (dict(method="euler", alpha_max=1.0), "give dt"),
        (dict(method="rk4", dt=0.0, alpha_max=1.0), "dt must be a positive"),
        (dict(method="rk4", dt=-0.1, alpha_max=1.0), "dt must be a positive"),
        (dict(method="dopri5", alpha_max=0.0), "alpha_max must be a positive"),
        (dict(method="dopri5", alpha_max=-1.0), "alpha_max must be a positive"),
        (dict(method="dopri5", alpha_max=1.0, rtol=0.0), "rtol must be a positive"),
        (dict(method="dopri5", alpha_max=1.0, eg_tol=-1.0), "eg_tol must be a positive"),
        (dict(method="dopri5", alpha_max=1.0, max_steps=0), "max_steps must be a positive"),
    ],
)
def test_bad_inputs_raise(toy, toy_init, kw, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        odeflow.solve(toy, toy_init, eta=0.1, **kw)


def test_chunked_run_equals_single_call(toy, toy_init):
    """The progress-bar path (many kernel calls) gives bit-identical results."""
    for method in ("euler", "dopri5"):
        kw = dict(eta=0.1, method=method, dt=0.001, alpha_max=30.0, record={"log": 50})
        a = odeflow.solve(toy, toy_init, progress=False, **kw)
        b = odeflow.solve(toy, toy_init, progress=True, **kw)
        assert np.array_equal(a.Q, b.Q) and np.array_equal(a.eg, b.eg)
        assert a.n_steps == b.n_steps


@njit(cache=True)
def _other_rhs(y, p, dy):
    for i in range(y.shape[0]):
        dy[i] = -0.5 * y[i]


def test_kernels_compile_once(toy, toy_init):
    """One compiled signature per loop, shared by all systems; no recompilation on reuse."""
    other = ToySystem(stable_A())
    other.rhs = _other_rhs
    for system in (toy, other, toy):
        for method in ("euler", "rk4", "dopri5"):
            odeflow.solve(system, toy_init, eta=0.1, method=method, dt=0.1, alpha_max=1.0)
    for method, kernel in S.KERNELS.items():
        assert len(kernel.signatures) == 1, (method, kernel.signatures)
        hits = sum(kernel.stats.cache_hits.values())
        misses = sum(kernel.stats.cache_misses.values())
        assert hits + misses <= 1  # loaded from disk or compiled, once per process


def test_covariance_psd_check_kernel():
    T = np.eye(2)
    opts = S.make_opts(1.0, 0.1, 1.0, None, 1e6, 1e-9, 10, 3, 2, T)
    L = np.empty((4, 4))
    y = np.array([1.0, 0.5, 1.0, 0.1, 0.0, 0.0, 0.1, 0, 0])  # Q = [[1, .5], [.5, 1]]
    assert S.cov_min_pivot(y, opts, L) > 0
    y[1] = 1.0  # Q singular: PSD within tolerance…
    y[3:7] = 0.0  # …with R = 0
    assert S.cov_min_pivot(y, opts, L) > 0
    y[1] = 1.001  # Q indefinite
    assert S.cov_min_pivot(y, opts, L) <= 0
    y[1] = 0.0
    y[3] = 1.01  # |R_00| > sqrt(Q_00 T_00)
    assert S.cov_min_pivot(y, opts, L) <= 0
    assert S.check_state(y, 0.1, opts, L)[0] == S.CODE_PSD


@pytest.mark.parametrize("method", ["dopri5", "rk4", "euler"])
def test_nonfinite_message_names_the_order_parameter(toy_init, method):
    """A right-hand side that is NaN in one component (a singular rule's expectation): the
    message says which order parameter broke down, not only "learning rate too large?"
    (issue 21). Oracle: the toy's A has a NaN only in the row of R[1,0]."""
    lay = Layout(2, 2)
    A = stable_A().copy()
    i = lay.slices["R"].start + 1 * 2 + 0  # R is stored row-major: R[1,0] at start + 1·M + 0
    A[i, 0] = np.nan
    res = odeflow.solve(ToySystem(A), toy_init, eta=0.1, method=method, dt=0.01, alpha_max=1.0)
    assert res.status == -1 and res.reason == "diverged", res.message
    assert "non-finite" in res.message and "R[1,0]" in res.message, res.message
    assert "Q[" not in res.message and "v[" not in res.message
