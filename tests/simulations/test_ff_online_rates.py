"""The FF simulation (simulations/ff_online.py) and the FF ODE (theory/ff.py) with unequal
rates η ≠ η_u: each rate acts on its own weights. With η = 0.5 and η_u = 2 from a state of
a learning curve (grown weights, Q_kk ≈ 2), the simulation's mean increments of Q, R and u
over α ∈ [0, 1] follow the ODE with these rates, and are far from the ODE with the two rates
swapped — so a simulation kernel (or an ODE) that swaps η and η_u fails here.

Checked by mutation (issue 23): swapping ``eta`` and ``eta_u`` in ``_ff_block`` of
simulations/ff_online.py makes the first test fail (the increments of u are 4× off).
"""

import math

import numpy as np

import odeflow
from simulations.teacher_student import simulate

STATE = {"Q": [[2.0, 0.3], [0.3, 2.2]], "R": [[0.6], [0.4]], "T": [[1.0]]}
U0 = [0.5, 0.3]
ETA, ETA_U, THETA = 0.5, 2.0, 1.5


def _ode(init, eta, eta_u, alphas):
    res = odeflow.solve(
        "ff",
        init,
        eta=eta,
        eta_u=eta_u,
        theta=THETA,
        alpha_max=float(alphas[-1]),
        record={"alpha": alphas},
        method="rk4",  # the drift is smooth: rk4 with dα = 0.25 is ~1e-5 from dopri5
        dt=0.25,
    )
    assert res.status == 0, res.message
    return res


def test_unequal_rates_simulation_follows_the_ode():
    sim = simulate(
        {
            "rule": "ff",
            "N": 2000,
            "K": 2,
            "M": 1,
            "activation": "erf",
            "eta": ETA,
            "eta_u": ETA_U,
            "theta": THETA,
            "alpha_max": 1.0,
            "record": {"every": 0.5},
            "seeds": 8,
            "same_init": True,
            "init": {"state": STATE, "u": U0, "v_star": 1.0},
            "quadrature": False,  # ε_g is not compared here; measured on a few inputs
            "mc_test": 100,
        }
    )
    assert not sim.diverged.any()
    init = sim.initial_state(0)
    ode = _ode(init, ETA, ETA_U, sim.alpha)
    swapped = _ode(init, ETA_U, ETA, sim.alpha)
    S = len(sim.seeds)
    for name in ("Q", "R", "u"):
        mean = sim.mean(name)[1:]
        se = sim.std(name)[1:] / math.sqrt(S)
        # finite-N allowance: the 1/N offset of the mean (docs/ff-theory.md: a few SE at
        # N = 1000 over α ≤ 10; here α ≤ 1) — 0.004 absolute
        tol = 4.0 * se + 0.004
        ours = getattr(ode, name)[1:]
        other = getattr(swapped, name)[1:]
        print(
            name,
            "max |sim − ODE|",
            np.max(np.abs(mean - ours)),
            "swapped",
            np.max(np.abs(mean - other)),
            "SE",
            np.max(se),
        )
        assert np.all(np.abs(mean - ours) <= tol), (name, mean, ours, se)
        # the swapped rates are resolved: some component is far outside the tolerance
        assert np.max(np.abs(mean - other) - tol) > 0.02, (name, mean, other)
