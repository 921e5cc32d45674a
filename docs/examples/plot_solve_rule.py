"""
Solve a rule: BP against feedback alignment
===========================================

The order-parameter ODEs of a two-layer student (K = 2 hidden units, erf activation)
learning a two-layer teacher (M = 2) online, for backpropagation and for feedback alignment
with a fixed random feedback ``b``. ``odeflow.solve`` derives the equations of the rule
(or loads them from the code cache), integrates them with adaptive Dormand–Prince and
returns the generalisation error ε_g and the order parameters on a log-spaced grid.
"""

import matplotlib.pyplot as plt

import odeflow
from odeflow import OrderParameters

# a slightly asymmetric start: small overlaps R with the teacher, small second layer v;
# b is FA's fixed feedback (BP ignores it)
init = OrderParameters.from_spec(2, 2, R=[[0.03, -0.01], [0.02, 0.01]], v=0.1, b=[1.0, 0.5])
results = {rule: odeflow.solve(rule, init, eta=0.5, alpha_max=1000) for rule in ("bp", "fa")}
for rule, res in results.items():
    print(f"{rule}: {res.message}; ε_g(α = 1000) = {res.eg[-1]:.2e}")

# %%
# ε_g over α, and the cosine between the second layer v and the feedback b: FA's second
# layer aligns with its fixed feedback ("align, then memorise").

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for rule, res in results.items():
    ax1.loglog(res.alpha[1:], res.eg[1:], label=rule)
ax1.set(xlabel="α", ylabel="ε_g", title="generalisation error")
ax1.legend()
fa = results["fa"]
ax2.semilogx(fa.alpha[1:], fa.cos_vb[1:], color="C1")
ax2.set(xlabel="α", ylabel="cos(v, b)", title="FA: v aligns with b")
plt.show()
