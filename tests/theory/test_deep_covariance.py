"""Finite N for the deep student: the covariance Σ = Cov[f] of the per-sample increments of
every order parameter (theory.deep.DeepSystem.covariance) against the sample covariance of
an independent plain-numpy Monte Carlo of the increments (tests/theory/test_deep_mc.py's
``increments``, written from the weight-space updates, with √N φ sampled in full).

Tolerances: the standard error of each sample-covariance entry is estimated from the same
samples (SE² = Var[(f_i − m_i)(f_j − m_j)]/n). With ~150–170 correlated entries per case a
3-SE band on every entry would fail by chance in a sizeable fraction of seeds, so every
entry must lie within 4 SE (chance ≈ 1% per case) and at least 97% of them within 3 SE
(99.7% expected). The quadrature's own error (2¹⁷ Sobol points) is ≲ 1e-4 relative,
below the SE (≈ 1e-3 relative at 10⁶ samples).
"""

import numpy as np
import pytest
from test_deep_mc import increments, make_state

from theory.deep import build_deep_system

Q17 = {"scheme": "sobol", "n": 1 << 17}


def mc_covariance(rule, st, eta, eta_v, eta_W, sigma, n, chunk=20_000, seed=7):
    """Sample mean, covariance and per-entry standard error of the increments (two passes
    over the same stream: the mean, then the centred products and their squares)."""

    def chunks():
        rng = np.random.default_rng(seed)
        for i in range(0, n, chunk):
            yield increments(rule, st, eta, eta_v, eta_W, sigma, min(chunk, n - i), rng, "sample")

    mean = sum(f.sum(0) for f in chunks()) / n
    s1 = s2 = 0.0
    for f in chunks():
        d = f - mean
        gij = d[:, :, None] * d[:, None, :]
        s1 = s1 + gij.sum(0)
        s2 = s2 + (gij * gij).sum(0)
    S = s1 / n
    se = np.sqrt(np.maximum(s2 / n - S**2, 0.0) / n)
    return mean, S, se


def check(rule, widths, n=1_000_000):
    st = make_state(widths, 2)
    if rule == "fa":
        st = st.replace(b=np.linspace(-0.8, 1.1, widths[-1]))
    eta, eta_v, eta_W, sigma = 0.7, 0.5, 0.3, 0.2
    system = build_deep_system(rule, widths, 2, "erf", Q17)
    m, S = system.covariance(st, eta, eta_v, sigma, eta_W=eta_W, N=400)
    drift = system.layout.pack(st) * 0
    system.rhs(system.layout.pack(st), system.params(st, eta, eta_v, sigma, eta_W=eta_W), drift)
    # the mean of f is the ODE's right-hand side: the same nodes, to round-off, except b,
    # whose drift the ODE takes by Stein's lemma (E[∂A]) and Σ by regression (E[A βᵀz]):
    # equal for the Gaussian, equal to the rule's accuracy on its nodes (measured ~2e-7)
    nb = len(m) - (st.K if "b" in system.layout.slices else 0)
    np.testing.assert_allclose(m[:nb], drift[:nb], rtol=0, atol=1e-12)
    np.testing.assert_allclose(m[nb:], drift[nb:], rtol=0, atol=1e-5)
    mm, Smc, se = mc_covariance(rule, st, eta, eta_v, eta_W, sigma, n)
    iu = np.triu_indices(len(m))
    z = np.abs(S - Smc)[iu] / se[iu]
    return z, S, Smc


@pytest.mark.slow  # ~10–20 s per rule (two passes over 10⁶ samples)
@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "afa", "pepita", "pepita-hebbian"])
def test_covariance_matches_monte_carlo_L3(rule):
    z, S, Smc = check(rule, [2, 3])
    print(f"{rule}: max |Σ − Σ_MC|/SE = {z.max():.2f}, within 3 SE: {np.mean(z < 3):.3f}")
    assert z.max() < 4.0, (rule, z.max())
    assert np.mean(z < 3.0) >= 0.97, (rule, np.mean(z < 3.0))
    assert np.abs(S).max() > 1e-2  # a real covariance, not zeros


def test_covariance_is_symmetric_psd_and_its_mean_is_the_drift():
    """Quick (default suite): Σ is symmetric positive semi-definite (a covariance) and its
    mean is the ODE's right-hand side; at a user's rule restating bp it equals bp's Σ."""
    from theory.deep_rules import DeepRule, a, f, gp

    st = make_state([2, 3], 2)
    small = {"scheme": "sobol", "n": 1 << 12}
    bp = build_deep_system("bp", [2, 3], 2, "erf", small)
    user = build_deep_system(DeepRule("my-bp", gp(a) * f), [2, 3], 2, "erf", small)
    m, S = bp.covariance(st, 0.7, 0.5, 0.2, eta_W=0.3, N=1000)
    np.testing.assert_allclose(S, S.T, atol=0)
    assert np.linalg.eigvalsh(S).min() > -1e-12 * np.abs(S).max()
    m2, S2 = user.covariance(st, 0.7, 0.5, 0.2, eta_W=0.3, N=1000)
    np.testing.assert_allclose(S2, S, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m2, m, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"N must be >= 1"):
        bp.covariance(st, 0.7, N=0.5)


def test_noise_system_interface():
    """The interface a finite-N Euler–Maruyama loop uses (that of
    theory.covariance.noise_system): ``cov(y, params(..., N=…), S)`` writes the Σ of
    :meth:`covariance`; ‖F‖² is the state's F_norm2, else N σ_F² (afa without F_norm2:
    its b block grows linearly with N, the O(N) feedback noise of docs/theory.md §5)."""
    st = make_state([2, 3], 2)
    small = {"scheme": "sobol", "n": 1 << 12}
    ns = build_deep_system("afa", [2, 3], 2, "erf", small).noise_system()
    pc = ns.params(st, 0.7, 0.5, 0.0, N=400, eta_W=0.3)
    S = np.empty((ns.layout.n, ns.layout.n))
    ns.cov(ns.layout.pack(st), pc, S)
    np.testing.assert_allclose(S, ns.evaluate(st, 0.7, 0.5, 0.0, N=400, eta_W=0.3)[1], atol=0)
    assert ns.dim(0.0) == 4 and ns.describe_rule(pc)["scheme"] == "sobol"
    free = st.replace(F_norm2=None)
    tr = [np.trace(ns.evaluate(free, 0.7, N=N)[1][-2:, -2:]) for N in (1000, 2000, 3000)]
    # Σ_bb = η² E[A Aᵀ] (N σ_F² − (b,c)ᵀC⁻¹(b,c)) + O(1): linear in N, growing
    assert tr[1] - tr[0] > 0
    assert abs((tr[2] - tr[1]) / (tr[1] - tr[0]) - 1) < 1e-9
