"""The public API: Result fields and persistence, inputs, and the real BP/FA/AFA systems."""

import time

import numpy as np
import pytest
from conftest import afa_state, needs_theory
from toy_system import ToySystem, stable_A, toy_state

import odeflow
from theory.state import OrderParameters


def test_result_fields_and_shapes(toy, toy_init):
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=2.0, record={"every": 0.5})
    T = 5
    assert res.alpha.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert res.eg.shape == (T,) and res.Q.shape == (T, 2, 2) and res.R.shape == (T, 2, 2)
    assert res.v.shape == (T, 2)
    assert res.b is None and res.cos_vb is None and res.norm_b is None  # feedback "v"
    assert res.status == 0 and res.success and res.reason == "alpha_max"
    assert res.nfev > 0 and res.n_steps > 0
    assert res.init is toy_init and res.alpha_final == 2.0
    np.testing.assert_allclose(res.final.Q, res.Q[-1])
    s = res.state(2)
    assert isinstance(s, OrderParameters)
    np.testing.assert_array_equal(s.R, res.R[2])
    np.testing.assert_array_equal(s.T, toy_init.T)
    np.testing.assert_allclose(res.Q, np.swapaxes(res.Q, 1, 2))  # symmetric
    assert res.params["method"] == "dopri5" and res.params["eta_v"] == 0.1
    assert res.params["record"] == {"every": 0.5}


def test_default_record_grid_is_log(toy, toy_init):
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=100.0)
    assert len(res.alpha) == 201 and res.alpha[0] == 0 and res.alpha[-1] == 100.0
    assert np.allclose(np.diff(np.log(res.alpha[1:])), np.log(1e4) / 199)


def test_record_every_with_roundoff_reaches_alpha_max(toy, toy_init):
    # 3 × 0.1 = 0.30000000000000004 > 0.3: the last record must still be alpha_max
    res = odeflow.solve(
        toy, toy_init, eta=0.1, method="rk4", dt=0.01, alpha_max=0.3, record={"every": 0.1}
    )
    assert res.alpha[-1] == 0.3 and len(res.alpha) == 4 and res.status == 0


def test_record_as_list(toy, toy_init):
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=2.0, record=[0.0, 0.3, 2.0])
    assert res.alpha.tolist() == [0.0, 0.3, 2.0]
    assert res.params["record"] == {"alpha": [0.0, 0.3, 2.0]}


def test_init_as_dict_and_mismatched_system(toy):
    d = toy_state().to_dict()
    res = odeflow.solve(toy, {k: v.tolist() for k, v in d.items()}, eta=0.1, alpha_max=1.0)
    assert res.status == 0
    with pytest.raises(ValueError, match="K=2, M=2"):
        odeflow.solve(toy, toy_state(K=3, M=2), eta=0.1, alpha_max=1.0)
    with pytest.raises(ValueError, match="init must be"):
        odeflow.solve(toy, [1, 2, 3], eta=0.1, alpha_max=1.0)


@pytest.mark.parametrize("ext", ["npz", "json"])
def test_save_load_roundtrip(tmp_path, toy_init, ext):
    system = ToySystem(stable_A(adaptive=True), adaptive=True)
    init = toy_state(b=[0.3, -0.1])
    res = odeflow.solve(
        system,
        init,
        eta=0.1,
        alpha_max=3.0,
        method="rk4",
        dt=0.01,
        record={"every": 0.5},
        eg_tol=1e-12,
    )
    path = res.save(tmp_path / f"out.{ext}")
    back = odeflow.Result.load(path)
    for k in ("alpha", "eg", "Q", "R", "v", "b", "cos_vb", "norm_b"):
        np.testing.assert_array_equal(getattr(back, k), getattr(res, k), err_msg=k)
    for k in ("status", "reason", "message", "nfev", "n_steps", "alpha_final", "params"):
        assert getattr(back, k) == getattr(res, k), k
    np.testing.assert_array_equal(back.final.b, res.final.b)
    assert back.init.sigma_F2 == init.sigma_F2
    if ext == "npz":  # the initial state is readable as a simulation-style init_ file
        np.testing.assert_array_equal(OrderParameters.load(path).Q, init.Q)
    with pytest.raises(ValueError, match="unknown output format"):
        res.save(tmp_path / "out.txt")


def test_adaptive_b_observables(toy_init):
    system = ToySystem(stable_A(adaptive=True), adaptive=True)
    init = toy_state(b=[0.3, -0.1])
    res = odeflow.solve(system, init, eta=0.1, alpha_max=1.0, record={"every": 0.5})
    assert res.b.shape == (3, 2)
    np.testing.assert_allclose(res.norm_b, np.linalg.norm(res.b, axis=1))
    c = np.sum(res.v * res.b, 1) / np.linalg.norm(res.v, axis=1) / res.norm_b
    np.testing.assert_allclose(res.cos_vb, c)


# ---------------------------------------------------------------------- real systems
@needs_theory
@pytest.mark.parametrize("rule", ["bp", "fa", "afa"])
def test_methods_agree_on_real_systems(rule):
    """euler (small dt), rk4 and dopri5 from the same state agree to what the steps imply.

    Reference: dopri5 at rtol 1e-11. rk4 at dt = 0.05 has a global error ~ C dt⁴; Euler's is
    first order, so halving dt halves its error (checked), and at dt = 1e-3 it is < 1e-3.
    """
    st = afa_state()
    if rule == "bp":
        st = st.replace(b=None, c=None, sigma_F2=None)
    kw = dict(eta=0.5, alpha_max=20.0, record={"every": 1.0})
    ref = odeflow.solve(rule, st, method="dopri5", rtol=1e-11, atol=1e-13, **kw)
    d5 = odeflow.solve(rule, st, method="dopri5", rtol=1e-7, atol=1e-10, **kw)
    rk = odeflow.solve(rule, st, method="rk4", dt=0.05, **kw)
    eu1 = odeflow.solve(rule, st, method="euler", dt=2e-3, **kw)
    eu2 = odeflow.solve(rule, st, method="euler", dt=1e-3, **kw)
    for r in (ref, d5, rk, eu1, eu2):
        assert r.status == 0, r.message

    def dist(a):
        d = [
            np.max(np.abs(a.Q - ref.Q)),
            np.max(np.abs(a.R - ref.R)),
            np.max(np.abs(a.v - ref.v)),
            np.max(np.abs(a.eg - ref.eg)),
        ]
        if ref.b is not None:
            d.append(np.max(np.abs(a.b - ref.b)))
        return max(d)

    assert dist(d5) < 1e-5
    assert dist(rk) < 1e-5
    e1, e2 = dist(eu1), dist(eu2)
    assert e2 < 1e-2 and 1.7 < e1 / e2 < 2.3, (e1, e2)
    # ε_g from the generated code agrees with theory's numpy observables
    from theory.observables import eps_g

    np.testing.assert_allclose(
        ref.eg, eps_g(ref.Q, ref.R, st.T, ref.v, st.v_star), rtol=1e-10, atol=1e-13
    )
    if rule == "fa":
        np.testing.assert_array_equal(ref.b, np.tile(st.b, (len(ref.alpha), 1)))
    if rule == "bp":
        assert ref.b is None


@needs_theory
def test_long_dopri5_run_is_routine():
    """α = 10⁴ through the plateau: a few thousand adaptive steps, well under a second."""
    st = OrderParameters.from_spec(2, 2, Q=1.0, R=1e-3, v=0.1)
    st = st.replace(R=np.array([[1e-3, 0.0], [0.0, 2e-3]]))
    odeflow.solve("bp", st, eta=0.5, alpha_max=1.0)  # warm up
    t = time.perf_counter()
    res = odeflow.solve("bp", st, eta=0.5, alpha_max=1e4)
    wall = time.perf_counter() - t
    assert res.status == 0 and res.alpha[-1] == 1e4
    assert res.n_steps < 20000 and wall < 2.0, (res.n_steps, wall)
    assert res.eg[-1] < 1e-6  # specialised, learnt


@needs_theory
def test_real_system_missing_feedback_raises():
    st = OrderParameters.from_spec(2, 2)
    with pytest.raises(ValueError, match="b"):
        odeflow.solve("fa", st, eta=0.5, alpha_max=1.0)
    with pytest.raises(ValueError, match="unknown rule"):
        odeflow.solve("nope", st, eta=0.5, alpha_max=1.0)


@needs_theory
def test_real_divergence_large_learning_rate():
    st = afa_state()
    st = st.replace(b=None, c=None, sigma_F2=None)
    res = odeflow.solve("bp", st, eta=60.0, alpha_max=200.0, method="euler", dt=0.05)
    assert res.status == -1 and res.reason == "diverged", res.message
    assert np.all(np.isfinite(res.eg)) and len(res.alpha) >= 1
    assert res.alpha[-1] <= res.alpha_final
