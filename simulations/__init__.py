"""Real networks trained by forward-only and backprop rules, measured like the theory.

Depends on ``theory.state`` / ``theory.observables`` (numpy + numba), never on the
integrator; ``theory.rules`` (sympy) only to generate the kernel of a user's Rule
(:mod:`simulations.kernelgen`; built-in rules load theirs from the cache without sympy).
"""
