"""What every compiled order-parameter system offers besides its kernels (sympy-free).

A system (:class:`theory.codegen.System`, :class:`theory.codegen_quad.QuadSystem`,
:class:`theory.cache.CachedSystem`) holds compiled ``rhs(y, p, dy)``, ``eg(y, p)`` and
``noise(y, p, S)`` (or None), a :class:`theory.state.Layout` and a ``params(state, eta,
eta_v, sigma, **kw)`` that builds the parameter vector ``p``. :class:`SystemMethods`
evaluates them at an :class:`theory.state.OrderParameters`, once for all three.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SystemMethods"]


class SystemMethods:
    """``evaluate``, ``noise_covariance`` and ``eps_g`` on top of ``rhs``, ``eg``, ``noise``,
    ``layout`` and ``params``."""

    def evaluate(self, state, eta, eta_v=None, sigma=0.0, **kw):
        """The right-hand side at ``state`` as arrays ``{"Q", "R", "v"[, "b"]}`` (d/dα);
        ``kw``: rule parameters (and, for quadrature systems, ``qrule``)."""
        p = self.params(state, eta, eta_v, sigma, **kw)
        y = self.layout.pack(state)
        dy = np.empty_like(y)
        self.rhs(y, p, dy)
        return self.layout.unpack(dy)

    def noise_covariance(self, state, eta, eta_v=None, sigma=0.0, **rule_params):
        """Σ_kl = η² σ_F² E[δ_k δ_l], the covariance per unit α of the noise on the adaptive
        feedback b (adaptive-feedback rules only)."""
        if self.noise is None:
            raise ValueError(f"rule {self.rule.name!r} has no stochastic feedback; "
                             "only adaptive-feedback rules (e.g. 'afa') do")
        p = self.params(state, eta, eta_v, sigma, **rule_params)
        S = np.empty((self.K, self.K))
        self.noise(self.layout.pack(state), p, S)
        return S

    def eps_g(self, state) -> float:
        """ε_g at ``state`` from the generated code."""
        p = self.params(state, 0.0, 0.0, 0.0)
        return float(self.eg(self.layout.pack(state), p))
