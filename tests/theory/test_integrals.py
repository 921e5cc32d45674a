"""The closed-form Gaussian averages and the AFA drift against Monte Carlo estimates.

Tolerance: 5 standard errors of the Monte Carlo mean (estimated from the same samples),
so a correct formula fails with probability < 1e-6 per check; seeds are fixed.
"""

from itertools import combinations_with_replacement

import numpy as np
import pytest
from scipy.special import erf

from theory.codegen import build_system
from theory.integrals import ARITY, kernel
from theory.state import OrderParameters

N_MC = 2_000_000


def g(z, act):
    return erf(z / np.sqrt(2)) if act == "erf" else z


def gp(z, act):
    return np.sqrt(2 / np.pi) * np.exp(-(z**2) / 2) if act == "erf" else np.ones_like(z)


def random_cov(n, rng):
    X = rng.normal(size=(n, n + 2)) * rng.uniform(0.4, 1.4, size=(n, 1))
    return X @ X.T / (n + 2)


def mc_mean(samples):
    return samples.mean(), samples.std(ddof=1) / np.sqrt(samples.size)


@pytest.mark.parametrize("activation", ["erf", "linear"])
@pytest.mark.parametrize("name", ["I2", "I3", "I4", "J2"])
def test_average_matches_monte_carlo(name, activation):
    rng = np.random.default_rng(abs(hash((name, activation))) % 2**32)
    n = ARITY[name]
    C = random_cov(n, rng)
    z = rng.multivariate_normal(np.zeros(n), C, size=N_MC, method="cholesky").T
    integrand = {
        "I2": lambda: g(z[0], activation) * g(z[1], activation),
        "J2": lambda: gp(z[0], activation) * gp(z[1], activation),
        "I3": lambda: gp(z[0], activation) * z[1] * g(z[2], activation),
        "I4": lambda: (
            gp(z[0], activation) * gp(z[1], activation) * g(z[2], activation) * g(z[3], activation)
        ),
    }[name]()
    est, se = mc_mean(integrand)
    args = [C[i, j] for i, j in combinations_with_replacement(range(n), 2)]
    exact = kernel(name, activation)(*args)
    assert abs(est - exact) < 5 * se + 1e-12, (est, exact, se)


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_afa_drift_matches_monte_carlo(activation):
    """db_k/dα = −η √N E[δ_k φ] with δ_k = b_k g'(λ_k) e: at leading order E[δ_k φ] is
    linear in the φ cross-covariances (b, c)/√N, so sampling the fields with cross-covariances
    b, c themselves (and any Var φ making the covariance valid) estimates the drift exactly."""
    rng = np.random.default_rng(7)
    K, M = 2, 3
    C0 = random_cov(K + M, rng)
    b, c = rng.normal(size=K) * 0.5, rng.normal(size=M) * 0.5
    bc = np.concatenate([b, c])
    s = bc @ np.linalg.solve(C0, bc) + 0.5
    C = np.block([[C0, bc[:, None]], [bc[None, :], np.array([[s]])]])
    st = OrderParameters(
        Q=C0[:K, :K],
        R=C0[:K, K:],
        T=C0[K:, K:],
        v=rng.normal(size=K),
        v_star=rng.normal(size=M),
        b=b,
        c=c,
        sigma_F2=0.3,
    )
    eta, sigma = 0.7, 0.2
    db = build_system("afa", K, M, activation).evaluate(st, eta, 0.5, sigma)["b"]
    z = rng.multivariate_normal(np.zeros(K + M + 1), C, size=N_MC, method="cholesky").T
    lam, nu, phi = z[:K], z[K : K + M], z[-1]
    e = st.v @ g(lam, activation) - st.v_star @ g(nu, activation) - sigma * rng.normal(size=N_MC)
    for kk in range(K):
        est, se = mc_mean(-eta * b[kk] * gp(lam[kk], activation) * e * phi)
        assert abs(est - db[kk]) < 5 * se, (kk, est, db[kk], se)
