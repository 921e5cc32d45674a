"""Real networks trained by forward-only and backprop rules, measured like the theory.

Depends on ``theory.state`` / ``theory.observables`` only (numpy + numba), never on the
integrator or on sympy.
"""
