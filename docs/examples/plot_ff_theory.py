"""
Forward-Forward in the teacher–student setting
==============================================

One Forward-Forward layer of K = 2 units classifies the sign of a teacher's output
(M = 1) online: the label enters through label weights ``u``, the positive pass shows the
true label and the negative pass the wrong one, and each unit's goodness ``g(λ)²`` is
pushed above the threshold θ on the positive pass and below it on the negative one. As
N → ∞ the overlaps Q, R and the label weights u obey ODEs whose averages odeflow computes
by quadrature split at the label's jump; ε_g = P(ŷ ≠ y) falls from 1/2.
"""

import matplotlib.pyplot as plt

import odeflow
from odeflow import OrderParameters

init = OrderParameters(
    Q=[[1, 0], [0, 1]], R=[[0.01], [0.0]], T=[[1]], v=[0, 0], v_star=[1], u=[0.1, -0.05]
)
res = odeflow.solve("ff", init, eta=1.0, eta_u=1.0, theta=1.0, alpha_max=20, record={"every": 0.5})
print(res.message)
print(f"ε_g: {res.eg[0]:.3f} → {res.eg[-1]:.3f}; label weights u(20) = {res.u[-1]}")

# %%
# The error, the label weights and the goodness gap E[G⁺ − G⁻].

fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), layout="constrained")
axes[0].plot(res.alpha, res.eg)
axes[0].set(xlabel="α", ylabel="ε_g")
axes[1].plot(res.alpha, res.u)
axes[1].set(xlabel="α", ylabel="u_k")
axes[2].plot(res.alpha, res.gap)
axes[2].set(xlabel="α", ylabel="goodness gap")
plt.show()
