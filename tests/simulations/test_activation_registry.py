"""One activation registry for the ODEs and every simulation kernel (theory.activations,
theory.activation_kernels).

Oracles: the registry's sympy expression of each built-in activation (vectorised by
sympy, an independent code path) for the kernels' hand-tuned numba forms; and, for a user
activation in the online FF simulation, a plain-numpy FF step loop on the same input
stream (docs/ff-theory.md §1).
"""

import numpy as np
import pytest

from simulations.ensemble import sample_state
from simulations.ff_online import ff_signals_np, simulate_ff, step_kernel
from simulations.kernelgen import resolve_activation
from simulations.teacher_student import standard_normal
from theory.activation_kernels import g, gp
from theory.activation_names import ACTIVATIONS, is_user
from theory.activations import get_activation


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_forms_equal_the_registry_expressions(name):
    """g and g' of the kernels equal the registry's sympy forms (ReLU's g'(0) aside: the
    kernels use the subgradient 0 there, sympy's Heaviside ½; z = 0 is not sampled)."""
    z = np.concatenate([np.linspace(-8.0, 8.0, 401) + 1e-3, [-30.0, 30.0]])
    code = ACTIVATIONS.index(name)
    g_np, gp_np = get_activation(name).numpy()
    got = np.array([g(float(x), code) for x in z])
    gotp = np.array([gp(float(x), code) for x in z])
    np.testing.assert_allclose(got, np.broadcast_to(g_np(z), z.shape), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gotp, np.broadcast_to(gp_np(z), z.shape), rtol=1e-12, atol=1e-15)


def _ff_steps_numpy(activation, n_steps, st, w, w_star, u, v_star, eta, eta_u, theta):
    """Plain-numpy online FF steps (docs/ff-theory.md §1), the same input stream."""
    from scipy.special import erf

    N = w.shape[1]
    for _ in range(n_steps):
        x = standard_normal(st, N)
        lam = w @ x / np.sqrt(N)
        y = 1.0 if v_star @ erf(w_star @ x / np.sqrt(N) / np.sqrt(2)) >= 0 else -1.0
        s = ff_signals_np(lam[None], np.array([y]), u, theta, activation)
        ap, am = s["a_plus"][0], s["a_minus"][0]
        w -= (eta / np.sqrt(N)) * np.outer(ap + am, x)
        u -= (eta_u / N) * y * (ap - am)
    return w, u


@pytest.mark.parametrize("activation", ["tanh", "user:tanh(z) + z/10"])
def test_ff_step_loop_equals_numpy(activation):
    """The FF step loop, for a built-in (the registry's numba form) and for a user
    activation (a generated module), equals plain numpy step by step (tolerance: 300
    steps of round-off at N = 40, ~1e-13 measured)."""
    name = resolve_activation(activation)
    assert is_user(name) == activation.startswith("user:")
    rng = np.random.default_rng(0)
    N, K, M = 40, 3, 2
    w, w_star = rng.standard_normal((K, N)), rng.standard_normal((M, N))
    u, v_star = 0.3 * rng.standard_normal(K), np.ones(M)
    eta, eta_u, theta = 0.7, 1.3, 1.5
    st0 = sample_state(5)
    w1, u1, st1 = w.copy(), u.copy(), st0.copy()
    code = ACTIVATIONS.index(name) if not is_user(name) else -1
    xb, work = np.zeros((2, N)), np.zeros((6, max(K, M)))
    done = step_kernel(name)._ff_block(
        code, 300, st1, xb, w1, w_star, u1, v_star, eta, eta_u, theta, work
    )
    assert done == 300
    w2, u2 = _ff_steps_numpy(
        name, 300, st0.copy(), w.copy(), w_star, u.copy(), v_star, eta, eta_u, theta
    )
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-10)
    np.testing.assert_allclose(u1, u2, rtol=0, atol=1e-10)
    assert np.abs(u1 - u).max() > 1e-3  # the label weights moved


def test_ff_simulation_takes_a_user_activation():
    """simulate_ff with a user activation runs (its own generated step loop) and learns."""
    cfg = dict(
        rule="ff",
        N=200,
        K=2,
        M=1,
        eta=1.0,
        eta_u=1.0,
        theta=1.0,
        alpha_max=2.0,
        seeds=[1, 2],
        record={"every": 1.0},
        quadrature=False,
        mc_test=200,
        init={"seed": 3, "u_scale": 0.1},
        activation="tanh(z) + z/10",
    )
    sim = simulate_ff(cfg)
    assert is_user(sim.config["activation"])
    assert step_kernel(sim.config["activation"]) is not step_kernel("tanh")
    assert np.all(np.isfinite(sim.u)) and not np.allclose(sim.u[:, -1], sim.u[:, 0])


def test_ff_refuses_what_is_not_an_activation():
    with pytest.raises(ValueError, match="unsupported activation 'softsign' for rule 'ff'"):
        simulate_ff(dict(rule="ff", N=100, K=2, M=1, eta=1.0, alpha_max=1.0, activation="softsign"))
