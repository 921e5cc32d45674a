"""
Theory against simulation
=========================

Finite networks (N = 500 inputs, 8 seeds started from the same weights, different sample
streams) trained online by AFA — PEPITA's first-order form, feedback alignment with the
adaptive feedback ``b = w F/√N`` — against the ODE started from the order parameters
measured in those networks. The mean of the simulations follows the ODE within its
finite-N fluctuations, which shrink like 1/√N.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import odeflow
from odeflow import OrderParameters
from simulations.teacher_student import simulate

sim = simulate(
    {
        "rule": "afa",
        "N": 500,
        "K": 2,
        "M": 2,
        "eta": 0.5,
        "sigma_F": 0.3,
        "alpha_max": 10,
        "seeds": 8,
        "init": {"seed": 1},
    },
    progress=False,
)

# the simulation stores the measured initial state of seed 0 with prefix init_
path = Path(tempfile.mkdtemp()) / "afa.npz"
sim.save(path)
init = OrderParameters.load(path)
ode = odeflow.solve("afa", init, eta=0.5, alpha_max=10, record=list(sim.alpha))
print(
    f"max |mean simulation − ODE| = {abs(sim.eg_mean - ode.eg).max():.4f}, "
    f"largest seed-to-seed std = {sim.eg_std.max():.4f}"
)

# %%
# The ensemble mean ± one standard deviation over seeds, and the ODE.

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.fill_between(
    sim.alpha,
    sim.eg_mean - sim.eg_std,
    sim.eg_mean + sim.eg_std,
    alpha=0.3,
    label="simulations, mean ± std",
)
ax.plot(sim.alpha, sim.eg_mean, "o", ms=3)
ax.plot(ode.alpha, ode.eg, "k-", label="ODE from the measured state")
ax.set(xlabel="α", ylabel="ε_g", title="AFA, N = 500, K = M = 2")
ax.legend()
plt.show()
