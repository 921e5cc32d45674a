"""
A sweep over two learning rates
===============================

``odeflow.sweep`` runs one config over a grid of parameters on local worker processes (or
a Dask cluster), writes one row per point to ``summary.csv`` and each point's full result
to ``points/``, and skips finished points when it is run again. Here: AFA's ε_g at
α = 10 over a 4 × 3 grid of the first- and second-layer learning rates.
"""

import tempfile

import matplotlib.pyplot as plt
import numpy as np

from odeflow.sweep import sweep

init = {
    "Q": [[1, 0], [0, 1]],
    "R": [[0.03, -0.01], [0.02, 0.01]],
    "T": [[1, 0], [0, 1]],
    "v": [0.1, 0.1],
    "v_star": [1, 1],
    "b": [0.3, -0.2],
    "c": [0.1, 0.0],
    "sigma_F2": 0.09,
}
etas, eta_vs = [0.25, 0.5, 1.0, 2.0], [0.2, 0.6, 1.0]
spec = {
    "kind": "solve",
    "base": {"rule": "afa", "eta": 0.5, "alpha_max": 10, "init": init},
    "grid": {"eta": etas, "eta_v": eta_vs},
}

outdir = tempfile.mkdtemp()
res = sweep(spec, outdir, workers=2)
print(f"{res.n_run} points run, {res.n_skipped} skipped")
eg = res.grid("eg_final")  # shape (len(etas), len(eta_vs)), the grid's axes
print(np.round(eg, 4))

# %%
# ε_g at α = 10 on the grid.
fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
im = ax.imshow(eg.T, origin="lower", aspect="auto", cmap="viridis")
ax.set_xticks(range(len(etas)), [str(e) for e in etas])
ax.set_yticks(range(len(eta_vs)), [str(e) for e in eta_vs])
ax.set(xlabel="η (first layer)", ylabel="η_v (second layer)", title="AFA: ε_g at α = 10")
fig.colorbar(im, ax=ax)
plt.show()
