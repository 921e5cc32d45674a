"""The integrators of the order-parameter ODEs ``dy/dα = f(y; p)``: the kernel protocol.

Every method is a Butcher tableau (:mod:`odeflow.tableaux`) run by one compiled explicit
Runge–Kutta engine (:mod:`odeflow.rk`): a fixed-step loop for tables without an error
estimate (euler, rk4) and an adaptive loop for embedded pairs (dopri5, tsit5, bs3). Each
loop is one ``@njit`` function that runs the *whole* integration (no Python work per
step). The system's right-hand side ``rhs(y, p, dy)`` and its generalisation error
``eg(y, p)`` (numba dispatchers) are passed in as arguments, typed as first-class function
values (:data:`RHS_TYPE`, :data:`EG_TYPE`): each loop has exactly one compiled signature,
shared by every system, compiled on first use and cached on disk; a new system only needs
its own rhs compiled (which ``theory.codegen`` caches too). See
``tests/odeflow/test_solvers.py::test_kernels_compile_once``.

Kernel protocol
---------------
All kernels (:data:`KERNELS`) share one calling convention so that :mod:`odeflow.api` can
drive them in chunks (to draw a progress bar between chunks) without changing the result::

    kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts, max_call_steps)

``y`` (float64[n]) is the current state, updated in place; it always holds the *last
accepted state that passed the stop checks*. ``rec_alpha`` are the recording times,
``rec_y`` (float64[T, n]) and ``rec_eg`` (float64[T]) receive the records. ``fs`` (float
state) and ``ist`` (integer state) carry everything else across calls (current α, step
size, controller memory, record counter, counters, stop code); see the ``F_*`` and ``I_*``
indices in :mod:`odeflow.rk`. ``work`` is scratch space of shape (WORK_ROWS, n), followed
by an optional buffer of accepted steps for :mod:`odeflow.events` (:func:`new_state`).
``opts`` holds ``[alpha_max, dt_or_rtol, atol, eg_tol, diverge_threshold, psd_rtol,
max_steps, nQ, K, M, y_max, T (M·M)]`` (:func:`make_opts`). A call returns after at most
``max_call_steps`` steps, or earlier when the run has stopped (``ist[I_CODE] != 0``; the
codes and their messages are :class:`odeflow.status.Stop`).

Stop conditions (checked on the candidate new state)
----------------------------------------------------
- divergence (:mod:`theory.divergence`: one criterion for ODE and simulations):
  ``ε_g > diverge_threshold`` or non-finite (``CODE_EG``); as guards, a non-finite entry
  (``CODE_NONFINITE``), ``max|y| > y_max`` (``CODE_YMAX``, numerical overflow), or the field
  covariance ``C = [[Q, R], [Rᵀ, T]]`` losing positive semi-definiteness (``CODE_PSD``): a
  Cholesky factorisation of ``C + psd_rtol·max(1, max_a C_aa)·I`` fails. This contains the
  test on ``Q`` (the first K(K+1)/2 entries of y, upper triangle row-major; a Gram matrix
  ``w·wᵀ/N``) and also catches ``|R_km| > √(Q_kk T_mm)``. An indefinite C is unphysical and
  signals that the step size or the learning rate is too large; checking all of C is also
  what guarantees that every accepted state is a valid ``OrderParameters``. The failing
  state is *not* accepted.
- convergence: ``ε_g < eg_tol`` (``CODE_CONVERGED``); that state is accepted.
- budget: ``max_steps`` steps taken (``CODE_MAX_STEPS``); adaptive step-size underflow
  (``CODE_H_UNDERFLOW``).
Records are written only on the requested grid, so a stopped run simply has fewer records.
The adaptive loops run every check after every step. The fixed-step loops run the cheap
checks (finite, max|y|) every step and the others every :data:`CHECK_EVERY` steps, on every
recording time and on the last step; a failure (or eg_tol convergence) after unchecked
steps sends the loop back to the last fully checked state to take the same steps again,
each fully checked, so the stop is located to the step (with a segment buffer, for events,
there is no going back: every :data:`CHECK_EVERY_SEG` steps). After a failure ``y`` is
the last state that passes all checks, so every record and the final state are valid.
"""

from __future__ import annotations

import numpy as np

from theory.divergence import overflow_guard

from .rk import (  # noqa: F401  (the protocol's names, re-exported)
    CHECK_EVERY,
    CHECK_EVERY_SEG,
    CODE_CONVERGED,
    CODE_DONE,
    CODE_EG,
    CODE_H_UNDERFLOW,
    CODE_MAX_STEPS,
    CODE_NONFINITE,
    CODE_PSD,
    CODE_RUNNING,
    CODE_YMAX,
    EG_TYPE,
    F_ALPHA,
    F_EG,
    F_ERROLD,
    F_GOOD_ALPHA,
    F_H,
    F_REPLAY,
    F_SEG,
    F_STOP_ALPHA,
    F_STOP_VALUE,
    I_CODE,
    I_NEXT_REC,
    I_NFEV,
    I_NREJECT,
    I_NSEG,
    I_NSEG_OUT,
    I_NSTEPS,
    I_REJECTED,
    I_SINCE_CHECK,
    I_STARTED,
    KERNEL_SIGNATURE,
    LAND_RTOL,
    N_FS,
    N_IST,
    N_OPTS,
    NOISE_TYPE,
    O_ALPHA_MAX,
    O_ATOL,
    O_DT,
    O_EG_TOL,
    O_K,
    O_M,
    O_MAX_STEPS,
    O_NQ,
    O_PSD_RTOL,
    O_RTOL,
    O_T,
    O_THRESH,
    O_YMAX,
    RHS_TYPE,
    SEG_ROWS,
    WORK_ROWS,
    cheap_check,
    check_state,
    cov_min_pivot,
    full_check,
    make_adaptive_kernel,
    make_fixed_kernel,
)
from .tableaux import TABLEAUX


def make_opts(
    alpha_max,
    dt_or_rtol,
    atol,
    eg_tol,
    diverge_threshold,
    psd_rtol,
    max_steps,
    nQ,
    K,
    T,
    y_max=None,
) -> np.ndarray:
    """Pack the solver options into the float64 vector the kernels read (see ``O_*``).

    ``diverge_threshold`` is the ε_g threshold (the one divergence criterion,
    :mod:`theory.divergence`); ``y_max`` the order-parameter overflow guard (default
    :func:`theory.divergence.overflow_guard` of the threshold). ``T`` (M×M) is the teacher
    overlap, needed for the positive semi-definiteness test of the full field covariance
    ``[[Q, R], [Rᵀ, T]]``.
    """
    T = np.asarray(T, dtype=float)
    M = T.shape[0]
    o = np.empty(N_OPTS + M * M)
    o[O_ALPHA_MAX] = alpha_max
    o[O_DT] = dt_or_rtol
    o[O_ATOL] = atol
    o[O_EG_TOL] = -1.0 if eg_tol is None else eg_tol  # negative: no convergence test
    o[O_THRESH] = diverge_threshold
    o[O_YMAX] = overflow_guard(diverge_threshold) if y_max is None else y_max
    o[O_PSD_RTOL] = psd_rtol
    o[O_MAX_STEPS] = max_steps
    o[O_NQ] = nQ
    o[O_K] = K
    o[O_M] = M
    o[O_T:] = T.ravel()
    return o


def scratch_size(opts) -> int:
    """Side of the Cholesky scratch matrix the checks need: K + M."""
    return int(opts[O_K] + opts[O_M])


def new_state(n: int, segments: int = 0):
    """Fresh ``(fs, ist, work)`` arrays for a run starting at α = 0.

    ``segments > 0`` appends a buffer for that many accepted steps to ``work`` (see
    :data:`SEG_ROWS`; used by :mod:`odeflow.events` for events and dense output).
    """
    fs = np.zeros(N_FS)
    ist = np.zeros(N_IST, dtype=np.int64)
    work = np.zeros((WORK_ROWS + SEG_ROWS * segments, n))
    return fs, ist, work


def kernel_for(tab):
    """The compiled loop (lazy) of a tableau: adaptive if it has error weights."""
    return make_adaptive_kernel(tab) if tab.adaptive else make_fixed_kernel(tab)


#: method name → lazily compiled integration loop
KERNELS = {name: kernel_for(tab) for name, tab in TABLEAUX.items()}
METHODS = tuple(KERNELS)
#: methods without an error estimate (they need dt)
FIXED_STEP = tuple(name for name, tab in TABLEAUX.items() if not tab.adaptive)
#: methods with a dense output (``solve(dense_output=True)``)
DENSE_METHODS = tuple(name for name, tab in TABLEAUX.items() if tab.P is not None)

euler_kernel, rk4_kernel, dopri5_kernel = KERNELS["euler"], KERNELS["rk4"], KERNELS["dopri5"]
