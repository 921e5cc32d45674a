"""The run-time conventions every layer of odeflow shares: exit codes, status lines and
interrupts of the commands (:mod:`.cli`), the one atomic write (:func:`.cli.atomic_write`),
the one progress bar (:mod:`.progress`) and the one saved-result format with its kind tag
(:mod:`.results_io`).

``theory`` is the bottom of the stack — ``odeflow`` and ``simulations`` build on it and never
on each other's internals — so what all of them must do the same way is defined here, once.
Nothing here imports numba or sympy; :mod:`.cli` and :mod:`.progress` import only the
standard library, so every command's ``--help`` stays fast.
"""
