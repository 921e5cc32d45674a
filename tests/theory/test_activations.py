"""Activations beyond erf/linear: symbolic data (theory.activations) and the numpy
observables (theory.observables) against hand values and Monte Carlo."""

import math

import numpy as np
import pytest
import sympy as sp

from theory.activations import get_activation, z
from theory.observables import I2_matrix, eps_g
from theory.quadrature import expect, make_rule


def test_builtin_derivatives():
    assert get_activation("relu").deriv == sp.Heaviside(z)
    t = get_activation("tanh")
    assert sp.simplify(t.deriv - (1 - sp.tanh(z) ** 2)) == 0
    s = get_activation("sigmoid")
    sig = 1 / (1 + sp.exp(-z))
    # the built-in is written through tanh (no overflow) but is the logistic function
    for x in (-30.0, -1.3, 0.0, 0.7, 25.0):
        assert float(s.expr.subs(z, x)) == pytest.approx(float(sig.subs(z, x)), rel=1e-14)
        assert float(s.deriv.subs(z, x)) == pytest.approx(
            float(sp.diff(sig, z).subs(z, x)), rel=1e-12, abs=1e-300
        )
    assert not get_activation("relu").smooth and get_activation("tanh").smooth


def test_relu_I2_is_the_arc_cosine_kernel():
    # hand values: E[relu(a)²] = C_aa/2; independent fields: E[relu(a)] E[relu(b)] =
    # √(C_aa C_bb)/(2π); anti-aligned fields (a = −b): 0
    C = np.array([[2.0, 0.0, -1.0], [0.0, 0.5, 0.0], [-1.0, 0.0, 0.5]])
    I = I2_matrix(C, "relu")
    assert I[0, 0] == pytest.approx(1.0, rel=1e-14)
    assert I[0, 1] == pytest.approx(1.0 / (2 * math.pi), rel=1e-14)
    # a = z0, c = z2 with C02 = −1 = −√(2·0.5): perfectly anti-correlated → 0
    assert abs(I[0, 2]) < 1e-12
    # a generic covariance: the kernel against the quadrature backend (Sobol, 2^20
    # points: ~1e-4 error for this kinked integrand) and Monte Carlo
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    C = A @ A.T / 3
    got = expect(
        lambda Z: np.maximum(Z[:, 0], 0) * np.maximum(Z[:, 1], 0),
        C[:2, :2],
        make_rule(2, "sobol", 1 << 20),
    )
    assert got == pytest.approx(I2_matrix(C, "relu")[0, 1], rel=1e-3)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_eps_g_against_monte_carlo(act):
    rng = np.random.default_rng(1)
    K, M = 2, 2
    A = rng.normal(size=(K + M, 6))
    C = A @ A.T / 6
    v, vs = rng.normal(size=K), rng.normal(size=M)
    g, _ = get_activation(act).numpy()
    n = 1_000_000
    Z = rng.multivariate_normal(np.zeros(K + M), C, size=n)
    err = 0.5 * (g(Z[:, :K]) @ v - g(Z[:, K:]) @ vs) ** 2
    mc, se = err.mean(), err.std() / math.sqrt(n)
    got = eps_g(C[:K, :K], C[:K, K:], C[K:, K:], v, vs, act)
    assert abs(got - mc) < 5 * se, (got, mc, se)
    # stacks (time, seed) work and give the same numbers
    st = eps_g(np.broadcast_to(C[:K, :K], (3, 2, K, K)), C[:K, K:], C[K:, K:], v, vs, act)
    assert st.shape == (3, 2) and np.allclose(st, got, rtol=1e-12)
