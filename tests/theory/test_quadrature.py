"""The quadrature backend (theory.quadrature, theory.codegen_quad) against independent
oracles: exact Gaussian moments, the closed-form systems of theory.codegen (erf, linear)
and Monte Carlo for activations without closed forms."""

import math

import numpy as np
import pytest
import sympy as sp
from theory_helpers import random_state

from theory.activations import get_activation, z
from theory.codegen import build_system
from theory.quadrature import coarse_rule, expect, factor, make_rule
from theory.state import OrderParameters


def moderate_state(K, M, rng, adaptive=True):
    """A random valid state in the physical range of a run from w, w* ~ N(0, I): overlaps
    of Gaussian vectors in d = 400 dimensions with scales U(0.5, 1.0), so Q_kk, T_mm ≲ 1.1
    (tensor Gauss–Hermite converges slowly for erf at large field variance — see
    docs/quadrature.md — so the 1e-8 comparison is made where runs actually are)."""
    d = 400
    w = rng.normal(size=(K, d)) * rng.uniform(0.5, 1.0, size=(K, 1))
    ws = rng.normal(size=(M, d)) * rng.uniform(0.5, 1.0, size=(M, 1))
    # correlate students with teachers (R up to ~0.5) as during learning
    w = w + rng.uniform(0.0, 0.7, size=(K, M)) @ ws / math.sqrt(M)
    w *= 1.0 / np.maximum(1.0, np.linalg.norm(w, axis=1, keepdims=True) / math.sqrt(d * 1.05))
    return OrderParameters(
        Q=w @ w.T / d,
        R=w @ ws.T / d,
        T=ws @ ws.T / d,
        v=rng.normal(size=K),
        v_star=rng.normal(size=M),
        b=rng.normal(size=K),
        c=(rng.normal(size=M) if adaptive else None),
        sigma_F2=(rng.uniform(0.01, 1.0) if adaptive else None),
    )


def _flat(d, keys=("Q", "R", "v", "b")):
    return np.concatenate([np.ravel(d[k]) for k in keys if k in d])


# ------------------------------------------------------------------------- the rules
def test_gauss_hermite_moments_are_exact():
    # n-point GH integrates polynomials of degree ≤ 2n−1 exactly: E[ξ^4] = 3, E[ξ^6] = 15
    r = make_rule(2, "gauss-hermite", 4)
    X = r.nodes
    assert r.size == 16 and abs(r.weights.sum() - 1) < 1e-14
    assert abs(r.weights @ X[:, 0] ** 4 - 3) < 1e-12
    assert abs(r.weights @ (X[:, 0] ** 6 * X[:, 1] ** 2) - 15) < 1e-11


def test_expect_matches_gaussian_moments_and_singular_covariance():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    C = A @ A.T
    # Isserlis: E[z0 z1 z2²] = C01 C22 + 2 C02 C12, exact with 4 nodes per field
    got = expect(lambda Z: Z[:, 0] * Z[:, 1] * Z[:, 2] ** 2, C, make_rule(3, "gauss-hermite", 4))
    assert got == pytest.approx(C[0, 1] * C[2, 2] + 2 * C[0, 2] * C[1, 2], rel=1e-12)
    # a singular (PSD, rank 1) covariance goes through the eigen-factor fallback
    u = np.array([1.0, 2.0, -1.0])
    S = np.outer(u, u)
    L = factor(S)
    assert np.allclose(L @ L.T, S, atol=1e-12)
    got = expect(lambda Z: Z[:, 0] * Z[:, 1], S, make_rule(3, "gauss-hermite", 3))
    assert got == pytest.approx(2.0, rel=1e-12)


def test_sobol_rule_converges_like_qmc():
    # E[erf(z1/√2) erf(z2/√2)] closed form (2/π) asin(C12 / √((1+C11)(1+C22)))
    C = np.array([[1.0, 0.6], [0.6, 2.0]])
    exact = 2 / math.pi * math.asin(0.6 / math.sqrt(2 * 3))
    from scipy.special import erf

    f = lambda Z: erf(Z[:, 0] / math.sqrt(2)) * erf(Z[:, 1] / math.sqrt(2))  # noqa: E731
    err = abs(expect(f, C, make_rule(2, "sobol", 1 << 14)) - exact)
    # scrambled Sobol: error ~ 1/n (×logs) — 1e-3 is ≥ 10× the observed error at 2^14
    assert err < 1e-3
    assert coarse_rule(make_rule(2, "sobol", 1 << 14)).n == 1 << 13


# ------------------------------------------------------ systems against closed forms
def _compare_closed(
    rule, K, M, act, n, n_states, sigma, seed, tol, states=moderate_state, scheme="gauss-hermite"
):
    rng = np.random.default_rng(seed)
    closed = build_system(rule, K, M, act)
    quad = build_system(rule, K, M, act, quadrature={"scheme": scheme, "n": n})
    assert getattr(quad, "backend", None) == "quadrature" and not hasattr(closed, "backend")
    worst = 0.0
    for _ in range(n_states):
        st = states(K, M, rng, adaptive=(rule == "afa"))
        if rule == "bp":
            st = st.replace(b=None)
        eta, eta_v = rng.uniform(0.2, 1.5, size=2)
        a = _flat(closed.evaluate(st, eta, eta_v, sigma))
        b = _flat(quad.evaluate(st, eta, eta_v, sigma))
        worst = max(worst, np.max(np.abs(a - b)) / np.max(np.abs(a)))
        assert quad.eps_g(st) == pytest.approx(closed.eps_g(st), rel=tol, abs=1e-14)
        if rule == "afa":
            Sa = closed.noise_covariance(st, eta, eta_v, sigma)
            Sb = quad.noise_covariance(st, eta, eta_v, sigma)
            worst = max(worst, np.max(np.abs(Sa - Sb)) / np.max(np.abs(Sa)))
    assert worst < tol, f"{rule} {act} K={K} M={M}: max relative difference {worst:.3g}"
    return worst


# AFA exercises every equation (Q, R, v, the b drift and the noise Σ); bp and fa (one more
# generated module each to compile) run with -m slow
_RULES = [
    pytest.param("bp", marks=pytest.mark.slow),
    pytest.param("fa", marks=pytest.mark.slow),
    "afa",
]


@pytest.mark.parametrize("rule", _RULES)
@pytest.mark.parametrize("K,M", [(1, 1), (2, 2), (3, 2)])
def test_quadrature_equals_closed_form_linear(rule, K, M):
    # linear g: every integrand is a polynomial of degree ≤ 6 in the fields (δδ·e² for
    # AFA's noise with σ): 4 Gauss–Hermite nodes per field integrate it exactly, so only
    # round-off remains (tolerance 1e-8 relative as the issue asks; observed ~1e-12)
    _compare_closed(rule, K, M, "linear", 4, 50, 0.3, 1, 1e-8, states=random_state)


@pytest.mark.parametrize("rule", _RULES)
def test_quadrature_equals_closed_form_erf_small(rule, request):
    # K = M = 1 with output noise (3 Gaussian variables), 60 nodes per field: at field
    # variances ≲ 1.1 Gauss–Hermite reaches ~1e-10 for erf (measured: 40 nodes give
    # 7e-9 at Q = 1), so 1e-8 relative (the issue's tolerance) holds with margin.
    # 50 states with -m slow, 10 in the default suite
    slow = request.config.getoption("-m", default="") == "slow"
    _compare_closed(rule, 1, 1, "erf", 60, 50 if slow or rule != "afa" else 10, 0.3, 2, 1e-8)


def test_quadrature_equals_closed_form_erf_2x2_cheap():
    # K = M = 2 without noise (4 variables), 44 nodes per field (3.7·10⁶ nodes, ~1 s an
    # evaluation); 2 states here, 50 in the slow test below
    _compare_closed("afa", 2, 2, "erf", 44, 2, 0.0, 3, 1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["bp", "fa", "afa"])
def test_quadrature_equals_closed_form_erf_slow(rule):
    # 50 random valid states, σ = 0 so that the fields are K + M = 4 Gaussian variables;
    # 50 nodes per field (6·10⁶ nodes): with 44, AFA's worst state reached 2.2e-8 (its
    # noise covariance Σ converges last), bp and fa < 1e-8 (measured)
    _compare_closed(rule, 2, 2, "erf", 50, 50, 0.0, 4, 1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["bp", "fa", "afa"])
def test_quadrature_equals_closed_form_erf_3x2_full_tensor_slow(rule):
    # K = 3, M = 2 with the *full* tensor rule over all 5 fields: 1e-8 would need ~44
    # nodes per field (1.6·10⁸ nodes an evaluation); at 24 (8·10⁶ nodes, ~3 s) the measured
    # worst error over these 10 states is 1.7e-5, so this asserts 5e-5. The issue's 1e-8
    # criterion at (3, 2) is met by the marginal scheme (the tests below).
    _compare_closed(rule, 3, 2, "erf", 24, 10, 0.0, 5, 5e-5)


# --------------------------------------------- the marginal scheme (theory.codegen_marginal)
# Each expectation is integrated over only the (≤ 4) fields it depends on, with n nodes
# per field on the 4-field subsets and 3n, 3n, 4n on the 3-, 2- and 1-field ones.
# Measured at (K, M) = (3, 2), erf, worst of these 50 states (rhs, ε_g and AFA's noise Σ),
# n = 12 / 16 / 20 / 24: bp 2.6e-6 / 3.2e-8 / 3.9e-10 / 5.5e-12, fa 3.7e-6 / 7.0e-8 /
# 1.3e-9 / 2.3e-11, afa 5.9e-6 / 1.3e-7 / 2.7e-9 / 5.5e-11; n = 24 leaves a factor ≥ 100 of
# margin under the issue's 1e-8 (1.1·10⁶ nodes, ~0.05 s an evaluation).
MARGINAL_N_1E8 = 24


@pytest.mark.slow  # ~27 s: a 3x2 marginal system from cold (1x1 cases stay in the default suite)
def test_marginal_equals_closed_form_erf_3x2_afa():
    # the issue's criterion for (K, M) = (3, 2): 50 random valid states, 1e-8 relative on
    # every right-hand side entry, ε_g and (AFA) the noise covariance Σ of b
    _compare_closed("afa", 3, 2, "erf", MARGINAL_N_1E8, 50, 0.0, 5, 1e-8, scheme="marginal")


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_marginal_equals_closed_form_erf_3x2_slow(rule):
    # the same criterion for bp and fa (one more generated module each to compile)
    _compare_closed(rule, 3, 2, "erf", MARGINAL_N_1E8, 50, 0.0, 5, 1e-8, scheme="marginal")


@pytest.mark.parametrize("rule", _RULES)
@pytest.mark.parametrize("K,M", [(1, 1), (2, 2), (3, 2)])
def test_marginal_equals_closed_form_linear(rule, K, M):
    # linear g: each marginal integrand is a polynomial of degree ≤ 4 per field (h_k h_l
    # g_u g_u' with k = l = u = u'), so 4 nodes per field are exact; the output noise enters
    # analytically (σ² E[h_k h_l]): only round-off remains (observed ~1e-15)
    _compare_closed(
        rule, K, M, "linear", 4, 50, 0.3, 11, 1e-12, states=random_state, scheme="marginal"
    )


@pytest.mark.parametrize("rule", _RULES)
def test_marginal_equals_closed_form_erf_small(rule):
    # the issue's criterion at (1, 1) (with output noise σ = 0.3) and (2, 2) (without):
    # 50 random valid states each, 1e-8 relative (measured at n = 24: ≤ 1e-14 at (1, 1),
    # ≤ 5.1e-12 at (2, 2))
    _compare_closed(rule, 1, 1, "erf", MARGINAL_N_1E8, 50, 0.3, 12, 1e-8, scheme="marginal")
    _compare_closed(rule, 2, 2, "erf", MARGINAL_N_1E8, 50, 0.0, 13, 1e-8, scheme="marginal")


@pytest.mark.parametrize(
    "rule,act",
    [
        # ~22 s cold: the 1x1 marginal system of its own
        pytest.param("bp", "tanh", marks=pytest.mark.slow),
        pytest.param("fa", "tanh", marks=pytest.mark.slow),
        pytest.param("afa", "sigmoid", marks=pytest.mark.slow),
    ],
)  # h' through g'' of sigmoid
def test_marginal_equals_full_tensor_rule_at_1x1(rule, act, monkeypatch):
    # An identity without a closed form: at K = M = 1 the full tensor rule over (λ, ν, ζ)
    # with the Cholesky factor (λ = L₀₀ ξ₀ depends on ξ₀ alone; ζ the last coordinate)
    # integrates a function of λ alone with exactly the 1-D rule, and one of (λ, ν) with
    # exactly the 2-D rule — the nodes of the marginal scheme when every subset gets the
    # same n (the scheme normally gives the 1- and 2-field subsets 4n and 3n nodes; set
    # to n here). So the two schemes, written independently (δ and ∂δ/∂λ by sympy over
    # all fields vs h, h' from g, g', g'' per field), agree to round-off at any n, for any
    # activation (the nodes the marginal scheme prunes weigh < 1e-18). n = 30, σ = 0.3.
    import theory.quadrature as TQ

    monkeypatch.setattr(TQ, "MARGINAL_N_FACTOR", {1: 1, 2: 1, 3: 1, 4: 1})
    rng = np.random.default_rng(14)
    full = build_system(rule, 1, 1, act, quadrature={"scheme": "gauss-hermite", "n": 30})
    marg = build_system(rule, 1, 1, act, quadrature={"scheme": "marginal", "n": 30})
    for _ in range(5):
        st = random_state(1, 1, rng, adaptive=(rule == "afa"))
        if rule == "bp":
            st = st.replace(b=None)
        a = _flat(full.evaluate(st, 0.9, 0.6, 0.3))
        b = _flat(marg.evaluate(st, 0.9, 0.6, 0.3))
        assert np.max(np.abs(a - b)) / np.max(np.abs(a)) < 1e-12
        # ε_g has E[g(ν)²], a function of ν alone, which the full rule integrates over two
        # coordinates (ν = L₁₀ξ₀ + L₁₁ξ₁): equal only up to the rules' own errors, which
        # for tanh (poles at ±iπ/2: Gauss–Hermite converges like exp(−d√(2n))) reach 1e-5
        # relative at n = 30 and field variances ~2 (observed); 1e-4 leaves margin
        assert marg.eps_g(st) == pytest.approx(full.eps_g(st), rel=1e-4)
        if rule == "afa":
            assert np.allclose(
                marg.noise_covariance(st, 0.9, 0.6, 0.3),
                full.noise_covariance(st, 0.9, 0.6, 0.3),
                rtol=1e-12,
                atol=0,
            )


def test_marginal_at_a_singular_covariance():
    # student 0 equal to teacher 0 (w_0 = w*_0): C is singular, so the subsets holding
    # both fields go through the eigen-factor fallback (every field evaluated at the
    # innermost node level). Against the closed forms, n = 24: measured 6.7e-11 (rhs) and
    # 2.7e-10 (Σ), so 1e-8 as in the issue's criterion
    rng = np.random.default_rng(2)
    d = 400
    ws = rng.normal(size=(2, d)) * 0.9
    w = np.vstack([ws[0], 0.6 * rng.normal(size=d) + 0.3 * ws[1]])
    st = OrderParameters(
        Q=w @ w.T / d,
        R=w @ ws.T / d,
        T=ws @ ws.T / d,
        v=rng.normal(size=2),
        v_star=rng.normal(size=2),
        b=rng.normal(size=2),
        c=rng.normal(size=2),
        sigma_F2=0.5,
    )
    assert abs(np.linalg.eigvalsh(st.field_covariance())[0]) < 1e-12
    closed = build_system("afa", 2, 2)
    marg = build_system("afa", 2, 2, quadrature={"scheme": "marginal", "n": MARGINAL_N_1E8})
    a, b = _flat(closed.evaluate(st, 0.8, 0.5)), _flat(marg.evaluate(st, 0.8, 0.5))
    assert np.max(np.abs(a - b)) / np.max(np.abs(a)) < 1e-8
    Sa, Sb = closed.noise_covariance(st, 0.8, 0.5), marg.noise_covariance(st, 0.8, 0.5)
    assert np.max(np.abs(Sa - Sb)) / np.max(np.abs(Sa)) < 1e-8


def test_marginal_scheme_refuses_rules_of_another_shape():
    # exact PEPITA (δ = g(λ) − g(λ̃) is not linear in e, the second pass λ̃, presynaptic x̃)
    for rule in ("pepita", "pepita-forward"):
        with pytest.raises(
            ValueError,
            match=f"'marginal' does not apply to rule '{rule}'.*"
            "use scheme 'auto', 'gauss-hermite' or 'sobol'",
        ):
            build_system(rule, 2, 2, quadrature={"scheme": "marginal"})
    # δ = v_k g'(λ) e² is not linear in e
    from theory.rules import Rule, e, gp, lam, v_k

    sq = Rule("bp-squared", delta=v_k * gp(lam) * e**2)
    with pytest.raises(ValueError, match="'bp-squared'.*not linear in e"):
        build_system(sq, 2, 2, quadrature="marginal")
    # AFA with a kinked g other than relu (which has exact moments): the marginal b drift
    # needs h' = b g'' (a Dirac delta); the other schemes use Stein's lemma
    # (test_afa_relu_b_drift_by_steins_lemma)
    from theory.activations import z as z_

    with pytest.raises(NotImplementedError, match="Dirac delta"):
        build_system("afa", 2, 2, sp.Max(0, z_) + z_ / 10, quadrature="marginal")
    with pytest.raises(ValueError, match="option n"):
        build_system("bp", 2, 2, "erf", quadrature={"scheme": "marginal", "n": 101})
    # K = M = 6 at 60 nodes per field: ~10⁹ nodes over the 4-field subsets, refused
    with pytest.raises(ValueError, match="option n = 60 gives .* marginal nodes at K = 6"):
        build_system("bp", 6, 6, "erf", quadrature={"scheme": "marginal", "n": 60})


# ------------------------------------------------------------- against Monte Carlo
def _mc_bp_rhs(st, act, eta, eta_v, n, rng):
    """BP's dQ, dR, dv by plain Monte Carlo over the fields, with standard errors."""
    g, gp = get_activation(act).numpy()
    C = st.field_covariance()
    K, M = st.K, st.M
    Zs = rng.multivariate_normal(np.zeros(K + M), C, size=n)
    lam, nu = Zs[:, :K], Zs[:, K:]
    e = g(lam) @ st.v - g(nu) @ st.v_star
    d = st.v * gp(lam) * e[:, None]  # δ_k = v_k g'(λ_k) e
    samples = {}
    samples["Q"] = (
        -eta * (d[:, :, None] * lam[:, None, :] + d[:, None, :] * lam[:, :, None])
        + eta**2 * d[:, :, None] * d[:, None, :]
    )
    samples["R"] = -eta * d[:, :, None] * nu[:, None, :]
    samples["v"] = -eta_v * e[:, None] * g(lam)
    return (
        {k: s.mean(axis=0) for k, s in samples.items()},
        {k: s.std(axis=0) / math.sqrt(n) for k, s in samples.items()},
    )


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_quadrature_matches_monte_carlo_without_closed_form(act):
    rng = np.random.default_rng(5)
    st = random_state(2, 2, rng, adaptive=False).replace(b=None)
    sysq = build_system("bp", 2, 2, act)  # no closed form: quadrature
    ode = sysq.evaluate(st, 0.8, 0.5)
    mean, se = _mc_bp_rhs(st, act, 0.8, 0.5, 400_000, rng)
    for k in ("Q", "R", "v"):
        # 5 standard errors of the MC mean (+ the quadrature's own error: the automatic
        # rule is scrambled Sobol, 2^14 points for tanh and 2^16 for the kinked relu,
        # ~1e-4 relative — measured, well below 5 SE here)
        tol = 5 * se[k] + 2e-4 * np.max(np.abs(mean[k]))
        assert np.all(np.abs(ode[k] - mean[k]) <= tol), (k, ode[k], mean[k], se[k])


def test_user_activation_equal_to_a_builtin_matches_it():
    # tanh written by a user as (e^{2z} − 1)/(e^{2z} + 1) is recognised as tanh
    a = get_activation((sp.exp(2 * z) - 1) / (sp.exp(2 * z) + 1))
    assert a.name == "tanh"
    # erf written out by a user keeps the closed-form backend
    assert not hasattr(build_system("bp", 1, 1, sp.erf(z / sp.sqrt(2))), "error_estimate")
    # a genuinely new one: g = z + 0.1 z³ has g' = 1 + 0.3 z² (sympy.diff)
    u = get_activation(z + sp.Rational(1, 10) * z**3)
    assert (
        u.name.startswith("user:") and sp.simplify(u.deriv - (1 + sp.Rational(3, 10) * z**2)) == 0
    )
    # its BP right-hand side, a polynomial integrand, equals Monte Carlo
    rng = np.random.default_rng(7)
    st = random_state(1, 1, rng, adaptive=False).replace(b=None)
    ode = build_system("bp", 1, 1, u).evaluate(st, 0.5, 0.5)
    g = lambda x: x + 0.1 * x**3  # noqa: E731
    Zs = rng.multivariate_normal(np.zeros(2), st.field_covariance(), size=400_000)
    e = st.v[0] * g(Zs[:, 0]) - st.v_star[0] * g(Zs[:, 1])
    dv = -0.5 * e * g(Zs[:, 0])
    assert abs(ode["v"][0] - dv.mean()) < 5 * dv.std() / math.sqrt(len(dv))


# ----------------------------------------------------------------------- bad input
def test_bad_quadrature_options_name_the_option():
    with pytest.raises(ValueError, match="scheme"):
        make_rule(3, "simpson")
    with pytest.raises(ValueError, match="option n"):
        make_rule(3, "gauss-hermite", 1)
    with pytest.raises(ValueError, match="power of two"):
        make_rule(3, "sobol", 1000)
    with pytest.raises(ValueError, match="option n"):
        build_system("bp", 2, 2, "tanh", quadrature={"n": 500})
    with pytest.raises(ValueError, match="unknown quadrature options"):
        build_system("bp", 2, 2, "tanh", quadrature={"nodes": 5})


def test_bad_activation_names_it():
    with pytest.raises(
        ValueError, match="unknown activation 'softplus'.*erf, linear, relu, tanh, sigmoid"
    ):
        get_activation("softplus")
    x = sp.Symbol("x")
    with pytest.raises(ValueError, match=r"not an expression of z alone.*\['x'\]"):
        get_activation(sp.tanh(x))
    with pytest.raises(ValueError, match="does not contain z"):
        get_activation(sp.Integer(3))


@pytest.mark.slow  # ~22 s: an afa-relu quadrature system from cold
def test_afa_relu_b_drift_by_steins_lemma():
    """AFA with relu: δ_k = b_k g'(λ_k) e with g' a step, so ∂δ/∂λ holds a Dirac delta and
    the b drift −η (Σ_j b_j E[∂δ_k/∂λ_j] + Σ_m c_m E[∂δ_k/∂ν_m]) is computed through
    Stein's lemma, ``Bvᵀ C⁻¹ E[z δ_k]``. Oracle: Stein's lemma the other way round, by
    Monte Carlo and without C⁻¹ — an extra Gaussian ψ with Cov(ψ, z) = (b, c) gives
    ``E[δ_k ψ] = Σ_a Cov(ψ, z_a) E[∂δ_k/∂z_a]`` (4·10⁶ samples). Tolerance: 4.5 MC
    standard errors plus 3e-4 for the Sobol rule (2^16 points, ~1e-4 on relu drifts)."""
    rng = np.random.default_rng(11)
    K, M = 2, 2
    st = moderate_state(K, M, rng, adaptive=True)
    eta = 0.8
    sysm = build_system("afa", K, M, "relu")
    db = sysm.evaluate(st, eta, 0.6, 0.0)["b"]
    C = st.field_covariance()
    Bv = np.concatenate([st.b, st.c])
    var_psi = Bv @ np.linalg.solve(C, Bv) + 1.0  # any variance keeping (z, ψ) valid
    J = np.block([[C, Bv[:, None]], [Bv[None, :], np.array([[var_psi]])]])
    Z = np.random.default_rng(12).multivariate_normal(np.zeros(K + M + 1), J, size=4_000_000)
    lam, nu, psi = Z[:, :K], Z[:, K : K + M], Z[:, -1]
    e = np.maximum(lam, 0) @ st.v - np.maximum(nu, 0) @ st.v_star
    vals = -eta * (st.b * (lam > 0) * e[:, None]) * psi[:, None]  # −η δ_k ψ
    ref, se = vals.mean(0), vals.std(0) / math.sqrt(len(vals))
    assert np.all(np.abs(db - ref) <= 4.5 * se + 3e-4), (db, ref, se)
    assert np.max(np.abs(ref)) > 20 * np.max(se)  # a drift the check can see
