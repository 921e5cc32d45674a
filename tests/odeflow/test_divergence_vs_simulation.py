"""One divergence criterion (theory.divergence): the α at which the exact-PEPITA ODE stops
as diverged (ε_g past 10⁴) is the α at which simulated networks do, on the same criterion.

Exact PEPITA at σ_F = 0.05, N = 4000 (‖F‖² ≈ 10), K = M = 2, η = η_v = 0.5 (the
simulations' defaults), four networks from the same initial weights: measured, the
simulations diverge at α = 9.12–9.18 and the ODE at 9.165 (0.2 % from their mean). Under
the former criterion (the ODE stopped when an order parameter passed 10⁴) the ODE stops
at α = 7.72 here, 16 % early, which the 2 % tolerance below rejects (checked by setting the
overflow guard of theory.divergence to 10⁴)."""

import numpy as np
import pytest

import odeflow
from simulations.teacher_student import simulate


@pytest.mark.slow
def test_ode_diverges_where_the_simulations_do():
    sim = simulate(
        dict(rule="pepita", N=4000, sigma_F=0.05, alpha_max=10, seeds=4, record={"every": 0.02})
    )
    assert sim.diverged.all()
    cfg = sim.config
    ode = odeflow.solve(
        "pepita",
        sim.initial_state(0),
        eta=cfg["eta"],
        eta_v=cfg["eta_v"],
        alpha_max=10,
        record={"every": 0.02},
    )
    assert ode.reason == "diverged" and "ε_g" in ode.message
    a_sim = float(np.mean(sim.alpha_diverged))
    # 2 %: the seed-to-seed spread of the simulations' α is ±0.4 % (measured, N = 4000;
    # the recorded α is resolved to 0.02 = 0.2 %); finite-N corrections to the N → ∞ ODE
    # are O(1/√N) ≈ 1.6 % at most
    assert abs(ode.alpha_final - a_sim) < 0.02 * a_sim, (ode.alpha_final, sim.alpha_diverged)
