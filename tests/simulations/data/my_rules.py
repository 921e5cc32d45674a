"""User-defined rules for the tests: written once, simulated and integrated (issue 12)."""

import sympy as sp

from theory.rules import Rule, b_k, e, gp, lam, v_k

kappa = sp.Symbol("kappa")
c_s = sp.Symbol("c_s")

#: feedback alignment with weight decay −(η κ/N) w per step (not a built-in rule)
fa_decay = Rule(
    "fa-decay", delta=b_k * gp(lam) * e, feedback="fixed", weight_decay=kappa, params={"kappa": 0.2}
)
#: adaptive feedback alignment with weight decay (b = w·F/√N decays with w)
afa_decay = Rule(
    "afa-decay",
    delta=b_k * gp(lam) * e,
    feedback="adaptive",
    weight_decay=kappa,
    params={"kappa": 0.1},
)
#: backprop with a scaled signal, a frozen second layer and a constant weight decay
bp_scaled = Rule(
    "bp-scaled",
    delta=-c_s * v_k * gp(lam) * e / 2,
    second_layer="fixed",
    weight_decay=sp.Rational(1, 20),
    params={"c_s": -1.5},
)

not_a_rule = 42
