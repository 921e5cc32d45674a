"""The one divergence criterion of the ODE integrator (:func:`odeflow.solve`) and the
simulations (:mod:`simulations.teacher_student`), in one place so both read the same numbers.

A run has *diverged* when the generalisation error passes a threshold::

    ε_g > EG_MAX  (= 10⁴ by default; ``solve(diverge_threshold=…)``,
                   ``simulate({"divergence": {"eg_max": …}})``)

The order parameters are checked too, but only as a guard against numerical overflow
(weights that grow while ε_g stays bounded, e.g. saturated erf units)::

    max |order parameter| > Y_MAX  (ODE: every entry of the state; 10⁶ by default, never
                                    below the ε_g threshold)
    Q_kk = |w_k|²/N > Y_MAX        (simulations: ``q_max``)

(until this module existed the ODE stopped on ``max|y| > 10⁴`` when asked for 10⁴, before
ε_g got there: for exact PEPITA at σ_F = 0.05 at α = 7.52 where the simulations, on ε_g,
diverge at 7.85–7.89 and the ODE on ε_g at 7.90.) Nothing here imports odeflow or the
simulations.
"""

from __future__ import annotations

__all__ = ["EG_MAX", "Y_MAX", "overflow_guard"]

#: ε_g above which a run (ODE or simulation) counts as diverged
EG_MAX = 1e4
#: order-parameter magnitude above which a run stops as a numerical overflow guard
Y_MAX = 1e6


def overflow_guard(eg_max: float) -> float:
    """The order-parameter guard that goes with an ε_g threshold ``eg_max``:
    ``max(Y_MAX, eg_max)`` (a guard below the criterion would pre-empt it)."""
    return max(Y_MAX, float(eg_max))
