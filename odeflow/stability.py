"""Linear stability of the symmetric plateau (Saad & Solla 1995): the escape rate λ that
:func:`odeflow.events.plateau_exit` measures, ``α_exit ≈ const + ln(1/a)/λ``.

It integrates and evaluates the right-hand side, so it sits above :mod:`odeflow.api`
(which uses :mod:`odeflow.events`): events → api → stability, one way.
"""

from __future__ import annotations

import numpy as np

from .api import solve
from .inputs import as_state as _as_state
from .inputs import get_system

__all__ = ["escape_rate"]


def escape_rate(
    rule,
    init,
    *,
    eta,
    eta_v=None,
    sigma=0.0,
    activation="erf",
    alpha_plateau=300.0,
    rule_params=None,
):
    """Linear stability of the symmetric plateau: ``(λ, fixed point, ε_g there)``.

    The symmetric fixed point is found by integrating from the symmetrised ``init`` (every
    ``R_km`` replaced by their mean, so the run stays on the symmetric manifold up to
    round-off) to ``alpha_plateau`` and polishing with a root finder
    (``scipy.optimize.root`` on the right-hand side, over Q, R and v if it learns); λ is
    the largest real part of the eigenvalues of the Jacobian there (central differences).
    An initial asymmetry ``a`` along the unstable direction grows like ``a e^{λα}``, so the
    plateau exit obeys ``α_exit ≈ const + ln(1/a)/λ`` (Saad & Solla 1995) — the law that
    :func:`plateau_exit` measures.
    """
    from scipy.optimize import root

    state = _as_state(init)
    eta_v = eta if eta_v is None else eta_v
    sym = state.replace(R=np.full_like(state.R, state.R.mean()))
    r = solve(
        rule,
        sym,
        eta=eta,
        eta_v=eta_v,
        sigma=sigma,
        activation=activation,
        alpha_max=alpha_plateau,
        record={"alpha": [0.0, alpha_plateau]},
        rule_params=rule_params,
        rtol=1e-12,
        atol=1e-14,
    )
    system = get_system(rule, state.K, state.M, activation)
    p = np.ascontiguousarray(system.params(sym, eta, eta_v, sigma, **(rule_params or {})))
    lay = system.layout
    y0 = np.ascontiguousarray(lay.pack(r.final), dtype=float)
    free = np.arange(lay.nQ + state.K * state.M)
    if eta_v > 0:
        free = np.r_[free, np.arange(lay.slices["v"].start, lay.slices["v"].stop)]

    def f(z):
        y = y0.copy()
        y[free] = z
        dy = np.empty_like(y)
        system.rhs(y, p, dy)
        return dy[free]

    sol = root(f, y0[free], method="hybr", options={"xtol": 1e-14})
    y = y0.copy()
    y[free] = sol.x
    h = 1e-6
    J = np.empty((len(free), len(free)))
    for j in range(len(free)):
        e = np.zeros(len(free))
        e[j] = h
        J[:, j] = (f(sol.x + e) - f(sol.x - e)) / (2 * h)
    lam = float(np.max(np.linalg.eigvals(J).real))
    return lam, lay.state(y, state), float(system.eg(y, p))
