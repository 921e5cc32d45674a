"""Forward-Forward theory (theory/ff.py, docs/ff-theory.md): the derived signals, the
quadrature of every FF expectation against Monte Carlo (theory/ff_mc.py, written by hand
from §9), the label-weight drift at u = 0 against an independent 1-d integral, and the
errors for bad input."""

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import erf, expit

import odeflow
from theory.ff import build_ff_system, observables, signals
from theory.ff_mc import ff_monte_carlo
from theory.state import OrderParameters


def _state(K, M, seed, u_scale=0.4, scale=1.2, v_star=None):
    """A state like those of the learning curves: the overlaps of random vectors in D = 12
    dimensions (Q, T ≈ I up to O(1/√D)), each student vector partly aligned with one
    teacher vector (|R| ~ 0.5), lengths² ~ scale², label weights ~ u_scale·N(0, 1)."""
    rng = np.random.default_rng(seed)
    D = 12
    A = rng.standard_normal((K + M, D)) / math.sqrt(D)
    for k in range(K):
        A[k] = 0.5 * A[K + k % M] * rng.choice([-1, 1]) + 0.87 * A[k]
    A *= scale
    C = A @ A.T
    vs = np.array([1.0, -0.7, 0.5][:M]) if v_star is None else np.asarray(v_star, float)
    return OrderParameters(
        Q=C[:K, :K],
        R=C[:K, K:],
        T=C[K:, K:],
        v=np.zeros(K),
        v_star=vs,
        u=u_scale * rng.standard_normal(K),
    )


def _compare_to_mc(K, M, act, seed, n, tol_fn, theta=1.0, eta=1.0, eta_u=0.7, v_star=None):
    st = _state(K, M, seed, v_star=v_star)
    sysm = build_ff_system(K, M, act)
    d = sysm.evaluate(st, eta=eta, eta_u=eta_u, theta=theta)
    obs = sysm.state_observables(st, theta=theta)
    mc = ff_monte_carlo(
        st.Q,
        st.R,
        st.T,
        st.u,
        st.v_star,
        theta=theta,
        eta=eta,
        eta_u=eta_u,
        activation=act,
        n=n,
        seed=seed + 100,
    )
    for name, val in (
        ("dQ", d["Q"]),
        ("dR", d["R"]),
        ("du", d["u"]),
        ("eg", obs["eg"]),
        ("loss", obs["loss"]),
        ("gap", obs["gap"]),
    ):
        err = np.abs(np.asarray(val) - mc[name])
        tol = tol_fn(mc[name + "_se"])
        print(
            f"{name}: max |quadrature − MC| {np.max(err):.2e}, MC SE {np.max(mc[name + '_se']):.1e}"
        )
        assert np.all(err <= tol), (K, M, act, name, val, mc[name], mc[name + "_se"])


# Default suite: 10⁶ samples. The tolerance is 4.5 standard errors of the MC estimate
# (each of ~20 compared numbers fails by chance with probability 7e-6) plus 2e-4 for the
# quadrature itself (measured ≲ 1e-4 against 10⁷ samples in the slow test below).
# (ReLU is checked in the slow test only: its generated module costs another ~20 s of
# numba compilation.)
@pytest.mark.parametrize(
    "K,M,act,v_star",
    [(1, 1, "erf", None), (2, 1, "erf", None), (2, 2, "erf", None), (2, 2, "erf", (1.0, 1.0))],
)
def test_quadrature_matches_monte_carlo(K, M, act, v_star):
    _compare_to_mc(
        K, M, act, seed=K + 10 * M, n=1_000_000, tol_fn=lambda se: 4.5 * se + 2e-4, v_star=v_star
    )


# The issue's criterion: ≥ 10⁷ samples, agreement to 1e-3 absolute. The Monte Carlo can
# only resolve 1e-3 where its standard error is well below it, so each case draws enough
# samples for SE ≲ 2e-4 on most quantities (erf, tanh: 2·10⁷; ReLU: 4·10⁷); where the
# per-sample spread is larger still (the linear activation: unbounded goodness, SE of dR
# 4e-4 even at 10⁸ samples) the bound is 4.5 SE instead of 1e-3. Cases: both label modes
# (v* = (1, 1) at M = 2: the label is the sign of ν₁ + ν₂, one split half-line; v* =
# (1, −0.7): the general outer rule), K up to 4, and every activation family.
_MC_CASES = [
    (1, 1, "erf", None, 2e7),
    (2, 1, "erf", None, 2e7),
    (2, 2, "erf", None, 2e7),
    (2, 2, "erf", (1.0, 1.0), 2e7),
    (4, 1, "erf", None, 2e7),
    (4, 2, "erf", None, 2e7),
    (4, 2, "erf", (1.0, 1.0), 2e7),
    (1, 1, "relu", None, 4e7),
    (2, 1, "relu", None, 4e7),
    (2, 1, "tanh", None, 2e7),
    (2, 1, "linear", None, 1e8),
]


@pytest.mark.slow
@pytest.mark.parametrize("K,M,act,v_star,n", _MC_CASES)
def test_quadrature_matches_monte_carlo_1e7(K, M, act, v_star, n):
    _compare_to_mc(
        K,
        M,
        act,
        seed=3 + K + 10 * M,
        n=int(n),
        tol_fn=lambda se: np.maximum(1e-3, 4.5 * se),
        v_star=v_star,
    )


def test_signals_are_the_derivatives_of_the_loss():
    """The sympy signals equal §9's hand formulas a⁺ = −2 s(θ−G⁺) h⁺ g'(λ⁺),
    a⁻ = 2 s(G⁻−θ) h⁻ g'(λ⁻) at random points (erf)."""
    import sympy as sp

    sig = signals("erf")
    syms = {s.name: s for s in sig["a_plus"].free_symbols | sig["a_minus"].free_symbols}
    f_ap = sp.lambdify(
        [syms["lam_p"], syms["G_p"], syms["theta"]],
        sig["a_plus"],
        modules=[{"sigmoid": expit}, "scipy", "numpy"],
    )
    f_am = sp.lambdify(
        [syms["lam_m"], syms["G_m"], syms["theta"]],
        sig["a_minus"],
        modules=[{"sigmoid": expit}, "scipy", "numpy"],
    )
    rng = np.random.default_rng(0)
    for lam, G, th in rng.normal(size=(20, 3)) * [1.5, 1.0, 0.5] + [0, 1, 1]:
        h = erf(lam / math.sqrt(2))
        gp = math.sqrt(2 / math.pi) * math.exp(-lam * lam / 2)
        assert f_ap(lam, G, th) == pytest.approx(-2 * expit(th - G) * h * gp, rel=1e-12)
        assert f_am(lam, G, th) == pytest.approx(2 * expit(G - th) * h * gp, rel=1e-12)


def _du_at_u0_independent(Q, R, T, eta_u):
    """2 η_u E[y g(λ) g'(λ)] for M = 1, y = sign(ν), by a 1-d scipy integral over λ:
    E[sign ν | λ] = 2Φ(μ/σ) − 1 with μ = Rλ/Q, σ² = T − R²/Q."""
    mu_c, s2 = R / Q, T - R * R / Q

    def f(lam):
        g = erf(lam / math.sqrt(2))
        gp = math.sqrt(2 / math.pi) * math.exp(-lam * lam / 2)
        ey = erf(mu_c * lam / math.sqrt(2 * s2))  # 2Φ(x) − 1 = erf(x/√2)
        return g * gp * ey * math.exp(-lam * lam / (2 * Q)) / math.sqrt(2 * math.pi * Q)

    val, _ = integrate.quad(f, -12 * math.sqrt(Q), 12 * math.sqrt(Q), epsabs=1e-13, limit=200)
    return 2 * eta_u * val


@pytest.mark.parametrize("R", [[[0.0], [0.0]], [[0.4], [-0.25]]])
def test_label_weight_drift_at_u0(R):
    """At u = 0, du_k/dα = 2 η_u E[y g(λ_k) g'(λ_k)]: zero when R = 0 (the label carries
    no information about λ), not otherwise (K = 2, M = 1, erf)."""
    R = np.asarray(R)
    st = OrderParameters(
        Q=np.array([[1.3, 0.2], [0.2, 0.8]]),
        R=R,
        T=np.array([[1.1]]),
        v=np.zeros(2),
        v_star=np.array([1.0]),
        u=np.zeros(2),
    )
    eta_u = 0.7
    du = build_ff_system(2, 1).evaluate(st, eta=1.0, eta_u=eta_u, theta=1.0)["u"]
    ref = np.array([_du_at_u0_independent(st.Q[k, k], R[k, 0], 1.1, eta_u) for k in range(2)])
    if not R.any():
        assert np.all(ref == 0) and np.all(np.abs(du) < 1e-13)
    else:
        assert np.all(np.abs(ref) > 1e-2)  # "not zero otherwise"
        assert np.sign(ref[0]) != np.sign(ref[1])  # follows the sign of R_k1
        # the outer ν rule (6 Gauss–Legendre nodes on each of 6 cells of [−8, 8] plus the
        # split at ν = 0) is accurate to ~1e-6 on integrands like this one
        np.testing.assert_allclose(du, ref, rtol=0, atol=1e-6)


def test_symmetric_point_has_no_signal():
    """u = 0 and R = 0: nothing distinguishes the labels, so ε_g = ½ (every prediction is a
    tie) and the goodness gap is 0."""
    obs = observables(np.eye(2), np.zeros((2, 1)), np.eye(1), np.zeros(2), np.ones(1), theta=1.0)
    # the outer ν rule (6-point Gauss–Legendre on 6 cells) integrates φ to ~1e-8
    assert obs["eg"] == pytest.approx(0.5, abs=2e-8)
    assert obs["gap"] == pytest.approx(0.0, abs=1e-12)


def test_bad_input_is_a_clear_value_error():
    st = _state(2, 1, 0)
    for theta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="theta"):
            odeflow.solve("ff", st, eta=1.0, theta=theta, alpha_max=1.0)
    with pytest.raises(ValueError, match="label weights u"):
        odeflow.solve("ff", st.replace(u=None), eta=1.0, theta=1.0, alpha_max=1.0)
    with pytest.raises(ValueError, match="unsupported activation.*'softsign'.*erf, linear, relu"):
        odeflow.solve("ff", st, eta=1.0, theta=1.0, alpha_max=1.0, activation="softsign")
    with pytest.raises(ValueError, match="sigma must be 0"):
        odeflow.solve("ff", st, eta=1.0, theta=1.0, alpha_max=1.0, sigma=0.1)
    with pytest.raises(ValueError, match="v_star non-zero"):
        odeflow.solve("ff", st.replace(v_star=np.zeros(1)), eta=1.0, alpha_max=1.0)


def test_solve_ff_result_round_trip(tmp_path):
    st = _state(2, 1, 1, scale=1.0)
    res = odeflow.solve(
        "ff", st, eta=1.0, eta_u=1.0, theta=1.0, alpha_max=2.0, record={"every": 0.5}
    )
    assert res.status == 0 and res.v is None
    assert res.u.shape == (5, 2) and res.loss.shape == (5,) and res.gap.shape == (5,)
    assert res.params["theta"] == 1.0 and res.params["eta_u"] == 1.0
    # the recorded observables are those of the recorded states
    last = build_ff_system(2, 1).state_observables(res.state(4), theta=1.0)
    assert res.eg[-1] == pytest.approx(last["eg"], abs=1e-12)
    assert res.gap[-1] == pytest.approx(last["gap"], abs=1e-12)
    res.save(tmp_path / "r.npz")
    back = odeflow.Result.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.u, res.u)
    assert back.init.u is not None
