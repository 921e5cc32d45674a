"""A NumPy implementation of the full-field quadrature right-hand side (the equations of
:mod:`theory.codegen_quad`), vectorised over the nodes of the same rule.

Two uses: the baseline of ``bench_ode.py``'s per-node cost (generated numba code against
NumPy at the same nodes, target ≤ 1.5×), and an independent oracle for the generated
kernels (``tests/theory/test_quad_fast_code.py``): the rule's δ, its derivatives and the
second-layer signal come from :func:`sympy.lambdify` of the activation's own g and g'
(:func:`theory.quad_expr.concrete`), not from the generated per-node code.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from theory import rules as R
from theory.activations import get_activation
from theory.quad_expr import LAM, B, E, V, concrete, needs_stein
from theory.quadrature import factor

_MODULES = [
    {"Heaviside": lambda x, h0=0.5: np.where(x > 0, 1.0, np.where(x < 0, 0.0, h0))},
    "numpy",
    "scipy",
]


class NumpyQuad:
    """``rhs(state, eta, eta_v, sigma, nodes, weights)`` of ``rule`` with ``activation``
    (bp, fa, afa without Stein's lemma, pepita, pepita-forward; no rule parameters)."""

    def __init__(self, rule, activation):
        self.rule = R.get_rule(rule)
        self.act = get_activation(activation)
        self.adaptive = self.rule.feedback == "adaptive"
        self.xt = self.rule.presynaptic == "x_tilde"
        if needs_stein(self.rule, self.act) or self.rule.params:
            raise NotImplementedError("the NumPy reference covers the rules without Stein/params")
        z = sp.Symbol("z", real=True)
        args = (LAM, E, V, B)
        delta = concrete(self.rule.delta, self.act)
        self.g = sp.lambdify(z, self.act.expr, modules=_MODULES)
        self.gp = sp.lambdify(z, self.act.deriv, modules=_MODULES)
        self.delta = sp.lambdify(args, delta, modules=_MODULES)
        self.sig = sp.lambdify(args, concrete(self.rule.v_signal, self.act), modules=_MODULES)
        self.dl = sp.lambdify(args, sp.diff(delta, LAM), modules=_MODULES)
        self.de = sp.lambdify(args, sp.diff(delta, E), modules=_MODULES)

    def rhs(self, st, eta, eta_v, sigma, nodes, weights):
        """The flat dy/dα (layout of :class:`theory.state.Layout`: Q upper triangle, R, v,
        then b when adaptive) at the nodes ``nodes`` (P, D) with ``weights`` (P,)."""
        K, M = st.K, st.M
        NU = K + M
        C = np.block([[st.Q, st.R], [st.R.T, st.T]])
        A = np.concatenate([st.v, -st.v_star])
        b = st.b if st.b is not None else np.zeros(K)
        Bv = np.concatenate([b, st.c if self.adaptive else np.zeros(M)])
        Z = nodes[:, :NU] @ factor(C).T
        w = weights
        e = self.g(Z) @ A
        if nodes.shape[1] > NU:
            e = e - sigma * nodes[:, NU]
        ones = np.ones_like(e)
        lam = Z[:, :K]
        d = np.stack([self.delta(lam[:, k], e, A[k], Bv[k]) * ones for k in range(K)], 1)
        s = np.stack([self.sig(lam[:, k], e, A[k], Bv[k]) * ones for k in range(K)], 1)
        Pk = lam - e[:, None] * Bv[None, :K] if self.xt else lam
        Pm = Z[:, K:] - e[:, None] * Bv[None, K:] if self.xt else Z[:, K:]
        wd = d * w[:, None]
        aQ = wd.T @ Pk
        aQ = aQ + aQ.T
        aDD = wd.T @ d
        if self.xt:
            aDD = aDD + st.sigma_F2 * (wd * (e * e)[:, None]).T @ d
        kappa = float(self.rule.weight_decay)
        dQ = -eta * aQ + eta * eta * aDD - 2 * eta * kappa * st.Q
        dR = -eta * (wd.T @ Pm) - eta * kappa * st.R
        dv = -eta_v * ((w * e) @ s) if self.rule.second_layer == "sgd" else np.zeros(K)
        out = [dQ[np.triu_indices(K)], dR.ravel(), dv]
        if self.adaptive:
            eb = (self.gp(Z) * ones[:, None]) @ (A * Bv)
            dl = np.stack([self.dl(lam[:, k], e, A[k], Bv[k]) * ones for k in range(K)], 1)
            de = np.stack([self.de(lam[:, k], e, A[k], Bv[k]) * ones for k in range(K)], 1)
            aB = w @ (Bv[None, :K] * dl + de * eb[:, None])
            db = -eta * aB - eta * kappa * st.b
            if self.xt:
                db = db + eta * st.F_norm2 * ((w * e) @ d)
            out.append(db)
        return np.concatenate(out)
