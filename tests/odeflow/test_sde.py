"""Euler–Maruyama ensemble: zero-noise limit, increment statistics, reproducibility."""

import numpy as np
import pytest
from conftest import afa_state, needs_theory
from toy_system import ToySystem, growing_v_A, stable_A, toy_state

import odeflow
from odeflow.sde import chol_psd

SIGMA = np.array([[0.04, 0.012], [0.012, 0.09]])


def _toy(A=None, Sigma=SIGMA):
    return ToySystem(stable_A(adaptive=True) if A is None else A, adaptive=True, Sigma=Sigma)


@pytest.fixture(scope="module")
def toy_init_b():
    return toy_state(b=[0.5, -0.2])


def test_zero_noise_equals_euler_ode(toy_init_b):
    system = _toy(Sigma=np.zeros((2, 2)))
    kw = dict(eta=0.1, alpha_max=3.0, dt=0.01, record={"every": 0.25})
    ode = odeflow.solve(system, toy_init_b, method="euler", **kw)
    sde = odeflow.solve_sde(system, toy_init_b, n_paths=3, seed=0, **kw)
    assert sde.status == 0 and ode.status == 0
    np.testing.assert_array_equal(sde.alpha, ode.alpha)
    for p in range(3):
        np.testing.assert_array_equal(sde.b[p], ode.b)
        np.testing.assert_array_equal(sde.Q[p], ode.Q)
        np.testing.assert_array_equal(sde.eg[p], ode.eg)
    np.testing.assert_array_equal(sde.eg_std, 0.0)


def _cov_tolerance(S, P, nsig=5.0):
    """nsig standard errors of the sample covariance of P Gaussian draws with covariance S:
    Var(Ŝ_kl) ≈ (S_kk S_ll + S_kl²)/P."""
    d = np.diag(S)
    return nsig * np.sqrt((np.outer(d, d) + S**2) / P)


@pytest.mark.parametrize("alpha_max,dt", [(0.01, 0.01), (0.5, 0.01)])
def test_increment_covariance_matches_sigma(toy_init_b, alpha_max, dt):
    # pure noise on b (A = 0): b(α) − b(0) ~ N(0, Σ α) exactly, for one step or many
    n = _toy().layout.n
    system = _toy(A=np.zeros((n, n)))
    P = 4000
    res = odeflow.solve_sde(
        system,
        toy_init_b,
        eta=0.1,
        alpha_max=alpha_max,
        dt=dt,
        n_paths=P,
        seed=12345,
        record={"alpha": [0.0, alpha_max]},
    )
    inc = res.b[:, -1] - res.b[:, 0]
    target = SIGMA * alpha_max
    C = np.cov(inc.T)
    assert np.all(np.abs(C - target) < _cov_tolerance(target, P)), (C, target)
    assert np.all(np.abs(inc.mean(0)) < 5 * np.sqrt(np.diag(target) / P))
    # Q, R, v are deterministic given b (here: constant)
    assert np.ptp(res.Q[:, -1], axis=0).max() == 0.0


def test_chol_psd_handles_singular_and_roundoff():
    L = np.empty((3, 3))
    b = np.array([0.5, 0.0, -1.0])  # b_1 = 0: singular Σ
    S = np.outer(b, b) * np.array([[1, 0.3, 0.2], [0.3, 1, 0.1], [0.2, 0.1, 1]])
    chol_psd(S, L)
    np.testing.assert_allclose(L @ L.T, S, atol=1e-14)
    u = np.array([1.0, 2.0, 3.0])
    S = np.outer(u, u) - 1e-15 * np.eye(3)  # rank one, round-off negative
    chol_psd(S, L)
    assert np.all(np.isfinite(L))
    np.testing.assert_allclose(L @ L.T, np.outer(u, u), atol=1e-12)
    chol_psd(np.zeros((3, 3)), L)
    assert np.all(L == 0)


def test_reproducible_given_seed_and_independent_of_n_paths(toy_init_b):
    system = _toy()
    kw = dict(eta=0.1, alpha_max=2.0, dt=0.01, record={"every": 0.5})
    a = odeflow.solve_sde(system, toy_init_b, n_paths=6, seed=7, **kw)
    b = odeflow.solve_sde(system, toy_init_b, n_paths=6, seed=7, **kw)
    c = odeflow.solve_sde(system, toy_init_b, n_paths=3, seed=7, **kw)
    d = odeflow.solve_sde(system, toy_init_b, n_paths=6, seed=8, **kw)
    np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_array_equal(a.b[:3], c.b)  # path i does not depend on P
    assert not np.allclose(a.b, d.b)
    assert len({tuple(x) for x in a.b[:, -1]}) == 6  # the paths differ


def test_reproducible_across_chunks(toy_init_b):
    """More steps than one kernel call: still reproducible (the noise depends only on the
    seed and the step index)."""
    from odeflow.sde import CHUNK_STEPS

    system = _toy()
    kw = dict(eta=0.1, alpha_max=(CHUNK_STEPS + 500) * 1e-3, dt=1e-3, record={"log": 20})
    a = odeflow.solve_sde(system, toy_init_b, n_paths=2, seed=3, **kw)
    b = odeflow.solve_sde(system, toy_init_b, n_paths=2, seed=3, progress=True, **kw)
    np.testing.assert_array_equal(a.b, b.b)


def test_divergent_paths_are_flagged_not_silent(toy_init_b):
    system = _toy(A=growing_v_A(rate=0.8, adaptive=True))
    res = odeflow.solve_sde(
        system,
        toy_init_b,
        eta=0.1,
        alpha_max=30.0,
        dt=0.01,
        n_paths=4,
        seed=0,
        record={"every": 1.0},
    )
    assert res.status == -1 and not res.success
    assert res.diverged.all() and "4 of 4 paths diverged" in res.message
    assert np.all(res.alpha_stop < 30)
    # records after the stop are NaN *and* flagged
    assert np.array_equal(np.isnan(res.eg), ~res.alive)
    assert res.n_alive[0] == 4 and res.n_alive[-1] == 0
    with pytest.raises(ValueError, match="diverged"):
        res.state(0, len(res.alpha) - 1)


def test_sde_bad_inputs(toy_init_b, toy):
    system = _toy()
    kw = dict(eta=0.1, alpha_max=1.0, dt=0.01, n_paths=2, seed=0)
    with pytest.raises(ValueError, match="unknown SDE method 'milstein'; allowed: euler-maruyama"):
        odeflow.solve_sde(system, toy_init_b, method="milstein", **kw)
    with pytest.raises(ValueError, match="n_paths"):
        odeflow.solve_sde(system, toy_init_b, **{**kw, "n_paths": 0})
    with pytest.raises(ValueError, match="dt"):
        odeflow.solve_sde(system, toy_init_b, **{**kw, "dt": -1.0})
    with pytest.raises(ValueError, match="no stochastic feedback"):
        odeflow.solve_sde(toy, toy_state(), **kw)


def test_sde_save_load(tmp_path, toy_init_b):
    res = odeflow.solve_sde(
        _toy(),
        toy_init_b,
        eta=0.1,
        alpha_max=1.0,
        dt=0.01,
        n_paths=3,
        seed=1,
        record={"every": 0.5},
    )
    for ext in ("npz", "json"):
        path = res.save(tmp_path / f"sde.{ext}")
        back = odeflow.SDEResult.load(path)
        np.testing.assert_array_equal(back.b, res.b)
        np.testing.assert_array_equal(back.eg_mean, res.eg_mean)
        assert back.params == res.params and back.message == res.message
        assert back.alive.dtype == bool


# ------------------------------------------------------------------- real AFA system
@needs_theory
def test_afa_zero_feedback_noise_collapses_onto_ode():
    """σ_F² → 0: the noise on b vanishes and every path follows the (Euler) ODE."""
    st = afa_state(sigma_F=0.3)
    st0 = st.replace(sigma_F2=1e-12)
    kw = dict(eta=0.5, alpha_max=10.0, dt=0.01, record={"every": 0.5})
    ode = odeflow.solve("afa", st0, method="euler", **kw)
    sde = odeflow.solve_sde("afa", st0, n_paths=8, seed=0, **kw)
    assert sde.status == 0
    assert np.max(np.abs(sde.eg_mean - ode.eg)) < 1e-6
    assert np.max(sde.eg_std) < 1e-6
    # with the physical σ_F² the paths do spread
    sde1 = odeflow.solve_sde("afa", st, n_paths=8, seed=0, **kw)
    assert np.max(sde1.eg_std) > 1e-3


@needs_theory
def test_afa_noise_covariance_used_on_first_step():
    """One EM step of the real system: sample covariance of Δb vs Σ(y0)·dt."""
    from theory.codegen import build_system

    st = afa_state(sigma_F=0.3)
    system = build_system("afa", 2, 2)
    p = system.params(st, 0.5, 0.5, 0.0)
    y0 = system.layout.pack(st)
    Sig = np.empty((2, 2))
    system.noise(y0, p, Sig)
    dy = np.empty_like(y0)
    system.rhs(y0, p, dy)
    dt, P = 0.01, 4000
    res = odeflow.solve_sde(
        "afa", st, eta=0.5, alpha_max=dt, dt=dt, n_paths=P, seed=99, record={"alpha": [0.0, dt]}
    )
    inc = res.b[:, 1] - res.b[:, 0] - dt * dy[system.layout.slices["b"]]
    C = np.cov(inc.T)
    assert np.all(np.abs(C - Sig * dt) < _cov_tolerance(Sig * dt, P)), (C, Sig * dt)


@needs_theory
@pytest.mark.slow
def test_afa_sde_spread_science_5_4():
    """docs/theory.md §7: the seed-to-seed spread of ε_g peaks around 0.013 near α ≈ 10."""
    st = afa_state(sigma_F=0.3)
    res = odeflow.solve_sde(
        "afa", st, eta=0.5, alpha_max=20.0, dt=0.005, n_paths=400, seed=0, record={"every": 0.5}
    )
    assert res.status == 0
    k = int(np.argmax(res.eg_std))
    assert 0.007 < res.eg_std[k] < 0.025 and 4 < res.alpha[k] < 16


def test_result_independent_of_call_length(toy_init_b):
    """The kernel may return after any step (so the driver can check Ctrl-C and draw the
    bar at any K): a run cut into calls of 1, 7 and 1000 steps is bit-identical."""
    from odeflow import solvers as S
    from odeflow.sde import base_seeds, em_kernel

    system = _toy()
    lay = system.layout
    p = np.ascontiguousarray(system.params(toy_init_b, 0.1, 0.1, 0.0))
    y0 = lay.pack(toy_init_b)
    rec = np.linspace(0.0, 0.5, 6)
    seeds = base_seeds(11, 3).view(np.int64)
    opts = S.make_opts(0.5, 0.01, 1.0, None, 1e6, 1e-9, 1 << 62, lay.nQ, lay.K, toy_init_b.T)
    out = []
    for steps in (1, 7, 1000):
        Y = np.tile(y0, (3, 1))
        rec_y, rec_eg = np.zeros((3, len(rec), lay.n)), np.zeros((3, len(rec)))
        FS, IST = np.zeros((3, S.N_FS)), np.zeros((3, S.N_IST), dtype=np.int64)
        while np.any(IST[:, S.I_CODE] == S.CODE_RUNNING):
            em_kernel(
                system.rhs,
                system.eg,
                system.noise,
                p,
                Y,
                rec,
                rec_y,
                rec_eg,
                FS,
                IST,
                opts,
                seeds,
                lay.slices["b"].start,
                steps,
            )
        assert np.all(IST[:, S.I_NSTEPS] == 50)
        out.append(rec_y)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    assert not np.array_equal(out[0][0], out[0][1])  # paths differ


def test_counter_normals_are_standard_normal():
    """Mean, variance, kurtosis and lag-1 correlation of 2·10⁵ draws (both numbers of every
    Box–Muller pair) within 5 standard errors of N(0, 1) (s.e. of the mean 1/√n, of the
    variance √(2/n), of the 4th moment √(96/n), of a correlation 1/√n); different seeds
    give uncorrelated streams."""
    from numba import njit

    from odeflow.sde import fill_normals

    @njit
    def draws(base, n):
        out = np.empty(n)
        fill_normals(np.uint64(base), 0, out)
        return out

    n = 200_000
    z = draws(12345, n)
    se = 1 / np.sqrt(n)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * np.sqrt(2) * se
    assert abs(np.mean(z**4) - 3) < 5 * np.sqrt(96) * se
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 * se
    assert abs(np.corrcoef(z, draws(12346, n))[0, 1]) < 5 * se
    # the pairs of one step: odd K drops the last sine, the rest is the same stream
    odd = np.empty(5)
    fill_normals(np.uint64(12345), 0, odd)
    np.testing.assert_array_equal(odd, z[:5])
