"""Numba-compiled integration loops for the order-parameter ODEs ``dy/dα = f(y; p)``.

Every method is one ``@njit`` function that runs the *whole* integration loop (no Python
work per step). The system's right-hand side ``rhs(y, p, dy)`` and its generalisation error
``eg(y, p)`` (numba dispatchers) are passed in as arguments, typed as first-class function
values (:data:`RHS_TYPE`, :data:`EG_TYPE`): each loop has exactly one compiled signature,
shared by every system, compiled once and cached on disk; a new system only needs its own
rhs compiled (which ``theory.codegen`` caches too). See
``tests/odeflow/test_solvers.py::test_kernels_compile_once``.

Kernel protocol
---------------
All three kernels (:func:`euler_kernel`, :func:`rk4_kernel`, :func:`dopri5_kernel`) share one
calling convention so that :mod:`odeflow.api` can drive them in chunks (to draw a progress
bar between chunks) without changing the result::

    kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts, max_call_steps)

``y`` (float64[n]) is the current state, updated in place; it always holds the *last
accepted state that passed the stop checks*. ``rec_alpha`` are the recording times,
``rec_y`` (float64[T, n]) and ``rec_eg`` (float64[T]) receive the records. ``fs`` (float
state) and ``ist`` (integer state) carry everything else across calls (current α, step
size, controller memory, record counter, counters, stop code); see the ``F_*`` and ``I_*``
indices below. ``work`` is scratch space of shape (8, n). ``opts`` holds
``[alpha_max, dt_or_rtol, atol, eg_tol, diverge_threshold, psd_rtol, max_steps, nQ, K, M,
T (M·M)]`` (:func:`make_opts`).
A call returns after at most ``max_call_steps`` steps, or earlier when the run has stopped
(``ist[I_CODE] != 0``).

Stop conditions (checked on the candidate new state)
----------------------------------------------------
- divergence: a non-finite entry (``CODE_NONFINITE``), ``max|y| > diverge_threshold``
  (``CODE_YMAX``), ``ε_g > diverge_threshold`` or non-finite (``CODE_EG``), or the field
  covariance ``C = [[Q, R], [Rᵀ, T]]`` losing positive semi-definiteness (``CODE_PSD``): a
  Cholesky factorisation of ``C + psd_rtol·max(1, max_a C_aa)·I`` fails. This contains the
  test on ``Q`` (the first K(K+1)/2 entries of y, upper triangle row-major; a Gram matrix
  ``w·wᵀ/N``) and also catches ``|R_km| > √(Q_kk T_mm)``. An indefinite C is unphysical and
  signals that the step size or the learning rate is too large; checking all of C is also
  what guarantees that every accepted state is a valid ``OrderParameters``. The failing
  state is *not* accepted.
- convergence: ``ε_g < eg_tol`` (``CODE_CONVERGED``); that state is accepted.
- budget: ``max_steps`` steps taken (``CODE_MAX_STEPS``); dopri5 step-size underflow
  (``CODE_H_UNDERFLOW``).
Records are written only on the requested grid, so a stopped run simply has fewer records.
dopri5 runs every check after every step. The fixed-step methods run the cheap checks
(finite, max|y|) every step and the others every :data:`CHECK_EVERY` steps, on every
recording time and on the last step; after a failure ``y`` is reset to the last state that
passes all checks, so every record and the final state are always valid.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

# --------------------------------------------------------------------- numba signatures
# The system's functions are passed as *first-class function values* (numba FunctionType),
# not as dispatcher types: the loops are then compiled once for every system (a call goes
# through a function pointer, which costs nothing next to an order-parameter rhs), the
# compiled loops are cached on disk (``cache=True``), and LLVM does not re-optimise the
# generated rhs inside each loop (it would, inlined, for every stage of dopri5).
_arr = types.float64[::1]
_arr2 = types.float64[:, ::1]
_iarr = types.int64[::1]
RHS_TYPE = types.FunctionType(types.void(_arr, _arr, _arr))          # rhs(y, p, dy)
EG_TYPE = types.FunctionType(types.float64(_arr, _arr))             # eg(y, p) -> float
NOISE_TYPE = types.FunctionType(types.void(_arr, _arr, _arr2))      # noise(y, p, S)
#: kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts, max_call_steps)
KERNEL_SIGNATURE = types.void(RHS_TYPE, EG_TYPE, _arr, _arr, _arr, _arr2, _arr, _arr, _iarr,
                              _arr2, _arr, types.int64)



class _LazyKernel:
    """An integration loop compiled with :data:`KERNEL_SIGNATURE` (or loaded from numba's
    disk cache) on first use, not at import: a command loads only the integrator it runs
    (each cached loop costs ~0.1 s to load). Calls and attributes (``signatures``,
    ``stats``, …) go to the numba dispatcher."""

    def __init__(self, py_func):
        self.py_func = py_func
        self._disp = None
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__

    def dispatcher(self):
        if self._disp is None:
            self._disp = njit(KERNEL_SIGNATURE, cache=True)(self.py_func)
        return self._disp

    def __call__(self, *args):
        return self.dispatcher()(*args)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("py_func", "_disp"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)


_lazy_kernel = _LazyKernel

# ------------------------------------------------------------------ state-array indices
# float state fs
F_ALPHA = 0       # current α (of the accepted state y)
F_H = 1           # dopri5: proposed next step size
F_ERROLD = 2      # dopri5: previous accepted error norm (PI controller memory)
F_SEG = 3         # fixed-step: α of the last point landed on exactly (start of the segment)
F_EG = 4          # ε_g of the accepted state
F_STOP_ALPHA = 5  # α of the state that triggered a stop
F_STOP_VALUE = 6  # the offending value (ε_g, max|y|, min pivot of Q, …)
F_GOOD_ALPHA = 7  # fixed-step: α of the last state that passed the full checks
N_FS = 8
# integer state ist
I_NEXT_REC = 0    # index of the next record to write (= number of records written)
I_NFEV = 1        # number of rhs evaluations
I_NSTEPS = 2      # number of accepted steps
I_CODE = 3        # stop code (0 = still running)
I_NSEG = 4        # fixed-step: steps taken since F_SEG
I_REJECTED = 5    # dopri5: 1 if the last attempted step was rejected
I_NREJECT = 6     # dopri5: number of rejected steps
I_STARTED = 7     # 1 once the initial record/check has been done
I_SINCE_CHECK = 8  # fixed-step: steps accepted since the last full check
I_NSEG_OUT = 9    # accepted steps written to the segment buffer (odeflow.events) this call
N_IST = 10
# opts
O_ALPHA_MAX, O_DT, O_RTOL, O_ATOL, O_EG_TOL, O_THRESH, O_PSD_RTOL, O_MAX_STEPS, O_NQ, O_K = \
    0, 1, 1, 2, 3, 4, 5, 6, 7, 8
O_M = 9
O_T = 10          # T (M·M, row-major) follows: the constant block of the field covariance
N_OPTS = 10       # plus M·M

# stop codes
CODE_RUNNING = 0
CODE_DONE = 1
CODE_CONVERGED = 2
CODE_NONFINITE = -1
CODE_YMAX = -2
CODE_EG = -3
CODE_PSD = -4
CODE_MAX_STEPS = -5
CODE_H_UNDERFLOW = -6

#: fixed-step methods run the full stop checks (ε_g, covariance Cholesky, eg_tol) every
#: CHECK_EVERY steps and on every recording time and the last step; the cheap checks
#: (finite, max|y|) run every step. This keeps the per-step overhead small next to a K = 2
#: rhs; the full-check failure point is resolved to CHECK_EVERY·dt.
CHECK_EVERY = 8

#: fixed-step landing tolerance: a remaining distance up to dt·(1 + LAND_RTOL) to the next
#: record point is covered by one (slightly adjusted) step, so round-off in α never produces
#: a spurious tiny extra step.
LAND_RTOL = 1e-8


def make_opts(alpha_max, dt_or_rtol, atol, eg_tol, diverge_threshold, psd_rtol, max_steps,
              nQ, K, T) -> np.ndarray:
    """Pack the solver options into the float64 vector the kernels read (see ``O_*``).

    ``T`` (M×M) is the teacher overlap, needed for the positive semi-definiteness test of the
    full field covariance ``[[Q, R], [Rᵀ, T]]``.
    """
    T = np.asarray(T, dtype=float)
    M = T.shape[0]
    o = np.empty(N_OPTS + M * M)
    o[O_ALPHA_MAX] = alpha_max
    o[O_DT] = dt_or_rtol
    o[O_ATOL] = atol
    o[O_EG_TOL] = -1.0 if eg_tol is None else eg_tol   # negative: no convergence test
    o[O_THRESH] = diverge_threshold
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
    :func:`_store_segment`; used by :mod:`odeflow.events` for events and dense output).
    """
    fs = np.zeros(N_FS)
    ist = np.zeros(N_IST, dtype=np.int64)
    work = np.zeros((WORK_ROWS + SEG_ROWS * segments, n))
    return fs, ist, work


# ------------------------------------------------------------- step segments (events)
#: rows of ``work`` the kernels use as scratch; rows beyond hold step segments
WORK_ROWS = 8
#: rows per stored step: y_n, [α_n, h, 0…], then Δ = y_{n+1} − y_n and (dopri5 only) the
#: continuous-extension coefficients r3, r4, r5 (see dopri5_kernel); fixed-step methods put
#: f(y_n) in the r3 row (for a cubic Hermite interpolant)
SEG_ROWS = 6


@njit(cache=True)
def _store_segment(work, ist, a, h, y, ynew, r3, r4, r5):
    """Write an accepted step ``(α_n, h, y_n, y_{n+1})`` (and dopri5's continuous-extension
    coefficients) to the segment buffer of ``work`` if it has one and room left; the driver
    (odeflow.events) empties it between calls and never asks for more steps than fit."""
    j = ist[I_NSEG_OUT]
    base = WORK_ROWS + SEG_ROWS * j
    if base + SEG_ROWS > work.shape[0]:
        return
    n = y.shape[0]
    work[base + 1, :] = 0.0
    work[base + 1, 0] = a
    work[base + 1, 1] = h
    for i in range(n):
        work[base, i] = y[i]
        work[base + 2, i] = ynew[i] - y[i]
        work[base + 3, i] = r3[i]
        work[base + 4, i] = r4[i]
        work[base + 5, i] = r5[i]
    ist[I_NSEG_OUT] = j + 1


# ------------------------------------------------------------------------ stop checks
@njit(cache=True)
def _cov_entry(y, opts, K, M, nQ, i, j):
    """Entry (i, j) of the field covariance ``C = [[Q, R], [Rᵀ, T]]`` read from the packed
    state (Q upper triangle row-major at 0, R row-major at nQ) and T from ``opts``."""
    if i > j:
        i, j = j, i
    if j < K:                      # Q_ij, i <= j: index i*K - i(i-1)/2 + (j - i)
        return y[i * K - (i * (i - 1)) // 2 + (j - i)]
    if i < K:                      # R_i,(j-K)
        return y[nQ + i * M + (j - K)]
    return opts[O_T + (i - K) * M + (j - K)]


@njit(cache=True)
def cov_min_pivot(y, opts, L):
    """Smallest Cholesky pivot of ``C + tol·I``, ``C = [[Q, R], [Rᵀ, T]]`` (≤ 0 ⇔ C is not
    positive semi-definite within tol).

    ``C`` is the covariance of the local fields ``(λ, ν)``; it contains ``Q`` (a Gram
    matrix ``w·wᵀ/N``), and every state that passes also passes
    ``theory.state.OrderParameters`` validation. ``tol = psd_rtol · max(1, max_a C_aa)``.
    ``L`` is (K+M)×(K+M) scratch (no allocation per step).
    """
    K = np.int64(opts[O_K])
    M = np.int64(opts[O_M])
    nQ = np.int64(opts[O_NQ])
    n = K + M
    scale = 1.0
    for a in range(n):
        d = _cov_entry(y, opts, K, M, nQ, a, a)
        if d > scale:
            scale = d
    tol = opts[O_PSD_RTOL] * scale
    minpiv = np.inf
    for j in range(n):
        s = _cov_entry(y, opts, K, M, nQ, j, j) + tol
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if s < minpiv:
            minpiv = s
        if not s > 0.0:
            return s
        ljj = np.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, n):
            t = _cov_entry(y, opts, K, M, nQ, i, j)
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / ljj
    return minpiv


@njit(cache=True)
def cheap_check(y, opts):
    """Every-step checks: non-finite entries, then ``max|y| > diverge_threshold``."""
    thresh = opts[O_THRESH]
    ymax = 0.0
    for i in range(y.shape[0]):
        a = abs(y[i])
        if not np.isfinite(a):
            return CODE_NONFINITE, a
        if a > ymax:
            ymax = a
    if ymax > thresh:
        return CODE_YMAX, ymax
    return CODE_RUNNING, 0.0


@njit(cache=True)
def full_check(y, egv, opts, L):
    """The costlier checks: ``ε_g`` finite and below the threshold, then positive
    semi-definiteness of the field covariance."""
    if not np.isfinite(egv) or egv > opts[O_THRESH]:
        return CODE_EG, egv
    piv = cov_min_pivot(y, opts, L)
    if not piv > 0.0:
        return CODE_PSD, piv
    return CODE_RUNNING, 0.0


@njit(cache=True)
def check_state(y, egv, opts, L):
    """All divergence checks on a candidate state: returns ``(code, offending value)``.

    Order: non-finite entries, ``max|y|``, ``ε_g``, positive semi-definiteness of the field
    covariance ``[[Q, R], [Rᵀ, T]]``.
    """
    code, val = cheap_check(y, opts)
    if code != CODE_RUNNING:
        return code, val
    return full_check(y, egv, opts, L)


@njit(cache=True)
def _start(eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, opts, L, ygood):
    """First call only: evaluate ε_g at α = 0, check the initial state, record α = 0."""
    ist[I_STARTED] = 1
    egv = eg(y, p)
    fs[F_EG] = egv
    code, val = check_state(y, egv, opts, L)
    if code != CODE_RUNNING:
        ist[I_CODE] = code
        fs[F_STOP_ALPHA] = fs[F_ALPHA]
        fs[F_STOP_VALUE] = val
        return
    ygood[:] = y
    fs[F_GOOD_ALPHA] = fs[F_ALPHA]
    nrec = rec_alpha.shape[0]
    while ist[I_NEXT_REC] < nrec and rec_alpha[ist[I_NEXT_REC]] <= fs[F_ALPHA]:
        r = ist[I_NEXT_REC]
        rec_y[r, :] = y
        rec_eg[r] = egv
        ist[I_NEXT_REC] = r + 1
    if opts[O_EG_TOL] > 0 and egv < opts[O_EG_TOL]:
        ist[I_CODE] = CODE_CONVERGED
        fs[F_STOP_ALPHA] = fs[F_ALPHA]
        fs[F_STOP_VALUE] = egv
        return
    if fs[F_ALPHA] >= opts[O_ALPHA_MAX]:
        ist[I_CODE] = CODE_DONE


@njit(cache=True)
def _stop_fixed(eg, p, y, fs, ist, opts, L, ygood, code, anew, val):
    """Stop a fixed-step run whose candidate at ``anew`` failed; leave in ``y`` the last
    state that passes *all* checks (``y`` itself, or the saved ``ygood`` if ``y`` was not
    fully checked and fails), so that ``final`` is always a valid state."""
    ist[I_CODE] = code
    fs[F_STOP_ALPHA] = anew
    fs[F_STOP_VALUE] = val
    if ist[I_SINCE_CHECK] > 0:
        egy = eg(y, p)
        c2, _ = check_state(y, egy, opts, L)
        if c2 == CODE_RUNNING:
            fs[F_EG] = egy
        else:
            y[:] = ygood
            fs[F_ALPHA] = fs[F_GOOD_ALPHA]
            fs[F_EG] = eg(y, p)


@njit(cache=True)
def _accept(eg, p, y, ynew, anew, rec_alpha, rec_y, rec_eg, fs, ist, opts, landed, L, ygood,
            check_every):
    """Check a fixed-step candidate ``ynew`` at α = ``anew``; accept, record, set stop codes.

    Cheap checks every step; the full checks (ε_g, covariance, eg_tol) every
    ``check_every`` steps and always on a recording time, at alpha_max and on the last
    budgeted step, so every recorded state has passed all checks. Returns True if the run
    continues.
    """
    code, val = cheap_check(ynew, opts)
    if code != CODE_RUNNING:
        _stop_fixed(eg, p, y, fs, ist, opts, L, ygood, code, anew, val)
        return False
    r = ist[I_NEXT_REC]
    is_rec = landed and r < rec_alpha.shape[0] and rec_alpha[r] == anew
    last = anew >= opts[O_ALPHA_MAX] or ist[I_NSTEPS] + 1 >= opts[O_MAX_STEPS]
    full = is_rec or last or ist[I_SINCE_CHECK] + 1 >= check_every
    egv = 0.0
    if full:
        egv = eg(ynew, p)
        code, val = full_check(ynew, egv, opts, L)
        if code != CODE_RUNNING:
            _stop_fixed(eg, p, y, fs, ist, opts, L, ygood, code, anew, val)
            return False
    y[:] = ynew
    fs[F_ALPHA] = anew
    ist[I_NSTEPS] += 1
    if not full:
        ist[I_SINCE_CHECK] += 1
        return True
    ist[I_SINCE_CHECK] = 0
    ygood[:] = y
    fs[F_GOOD_ALPHA] = anew
    fs[F_EG] = egv
    if is_rec:
        rec_y[r, :] = y
        rec_eg[r] = egv
        ist[I_NEXT_REC] = r + 1
    if opts[O_EG_TOL] > 0 and egv < opts[O_EG_TOL]:
        ist[I_CODE] = CODE_CONVERGED
        fs[F_STOP_ALPHA] = anew
        fs[F_STOP_VALUE] = egv
        return False
    if anew >= opts[O_ALPHA_MAX]:
        ist[I_CODE] = CODE_DONE
        return False
    if ist[I_NSTEPS] >= opts[O_MAX_STEPS]:
        ist[I_CODE] = CODE_MAX_STEPS
        fs[F_STOP_ALPHA] = anew
        fs[F_STOP_VALUE] = opts[O_MAX_STEPS]
        return False
    return True


@njit(cache=True)
def fixed_step_size(fs, ist, rec_alpha, opts):
    """The next fixed step ``(h, α_new, landed)``.

    α is computed as ``α_seg + n·dt`` from the last landing point (no accumulation of
    round-off over 10⁶ steps). The target is the next record point (or ``alpha_max``); when
    it is within ``dt·(1 + LAND_RTOL)`` the step is shortened to land on it exactly.
    """
    dt = opts[O_DT]
    amax = opts[O_ALPHA_MAX]
    r = ist[I_NEXT_REC]
    target = amax
    if r < rec_alpha.shape[0] and rec_alpha[r] < amax:
        target = rec_alpha[r]
    a = fs[F_ALPHA]
    remaining = target - a
    if remaining <= dt * (1.0 + LAND_RTOL):
        return remaining, target, True
    anew = fs[F_SEG] + (ist[I_NSEG] + 1) * dt
    return anew - a, anew, False


@njit(cache=True)
def _after_fixed_step(landed, fs, ist):
    if landed:
        fs[F_SEG] = fs[F_ALPHA]
        ist[I_NSEG] = 0
    else:
        ist[I_NSEG] += 1


# ------------------------------------------------------------------------------ euler
@_lazy_kernel
def euler_kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts,
                 max_call_steps):
    """Explicit Euler, fixed step: ``y_{n+1} = y_n + h f(y_n)``; global error O(h).

    Steps land exactly on every recording time (see :func:`fixed_step_size`).
    """
    kq = np.int64(opts[O_K] + opts[O_M])
    L = np.empty((kq, kq))
    ygood = work[7]
    if ist[I_STARTED] == 0:
        _start(eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, opts, L, ygood)
    f = work[0]
    ynew = work[1]
    yold = work[2]
    seg = work.shape[0] > WORK_ROWS
    n = y.shape[0]
    for _ in range(max_call_steps):
        if ist[I_CODE] != CODE_RUNNING:
            break
        h, anew, landed = fixed_step_size(fs, ist, rec_alpha, opts)
        rhs(y, p, f)
        ist[I_NFEV] += 1
        for i in range(n):
            ynew[i] = y[i] + h * f[i]
        a0 = fs[F_ALPHA]
        if seg:
            yold[:] = y
        ok = _accept(eg, p, y, ynew, anew, rec_alpha, rec_y, rec_eg, fs, ist, opts, landed,
                     L, ygood, CHECK_EVERY)
        if seg and fs[F_ALPHA] == anew:                  # accepted: keep the step for events
            _store_segment(work, ist, a0, anew - a0, yold, y, f, f, f)
        if not ok:
            break
        _after_fixed_step(landed, fs, ist)


# -------------------------------------------------------------------------------- rk4
@_lazy_kernel
def rk4_kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts,
               max_call_steps):
    """Classical fourth-order Runge–Kutta, fixed step; global error O(h⁴).

    .. math::
        k_1 = f(y_n),\\; k_2 = f(y_n + \\tfrac h2 k_1),\\; k_3 = f(y_n + \\tfrac h2 k_2),\\;
        k_4 = f(y_n + h k_3),\\quad y_{n+1} = y_n + \\tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4)
    """
    kq = np.int64(opts[O_K] + opts[O_M])
    L = np.empty((kq, kq))
    ygood = work[7]
    if ist[I_STARTED] == 0:
        _start(eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, opts, L, ygood)
    k1, k2, k3, k4, yt, ynew = work[0], work[1], work[2], work[3], work[4], work[5]
    yold = work[6]
    seg = work.shape[0] > WORK_ROWS
    n = y.shape[0]
    for _ in range(max_call_steps):
        if ist[I_CODE] != CODE_RUNNING:
            break
        h, anew, landed = fixed_step_size(fs, ist, rec_alpha, opts)
        rhs(y, p, k1)
        for i in range(n):
            yt[i] = y[i] + 0.5 * h * k1[i]
        rhs(yt, p, k2)
        for i in range(n):
            yt[i] = y[i] + 0.5 * h * k2[i]
        rhs(yt, p, k3)
        for i in range(n):
            yt[i] = y[i] + h * k3[i]
        rhs(yt, p, k4)
        ist[I_NFEV] += 4
        for i in range(n):
            ynew[i] = y[i] + (h / 6.0) * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
        a0 = fs[F_ALPHA]
        if seg:
            yold[:] = y
        ok = _accept(eg, p, y, ynew, anew, rec_alpha, rec_y, rec_eg, fs, ist, opts, landed,
                     L, ygood, CHECK_EVERY)
        if seg and fs[F_ALPHA] == anew:                  # accepted: keep the step for events
            _store_segment(work, ist, a0, anew - a0, yold, y, k1, k1, k1)
        if not ok:
            break
        _after_fixed_step(landed, fs, ist)


# ----------------------------------------------------------------------------- dopri5
# Dormand–Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Nørsett & Wanner, Solving ODEs
# I, Table II.5.2). Nodes c, coupling a, 5th-order weights b (= last row of a: FSAL), and
# error weights e = b - b̂ (b̂ the embedded 4th-order weights).
C2, C3, C4, C5 = 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0
A21 = 1.0 / 5.0
A31, A32 = 3.0 / 40.0, 9.0 / 40.0
A41, A42, A43 = 44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0
A51, A52, A53, A54 = 19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0
A61, A62, A63, A64, A65 = (9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0,
                           -5103.0 / 18656.0)
B1, B3, B4, B5, B6 = 35.0 / 384.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0
E1, E3, E4, E5, E6, E7 = (71.0 / 57600.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0,
                          22.0 / 525.0, -1.0 / 40.0)
# dense output (Hairer's CONTD5 coefficients, 4th-order continuous extension)
D1, D3, D4, D5, D6, D7 = (-12715105075.0 / 11282082432.0, 87487479700.0 / 32700410799.0,
                          -10690763975.0 / 1880347072.0, 701980252875.0 / 199316789632.0,
                          -1453857185.0 / 822651844.0, 69997945.0 / 29380423.0)
# step-size controller (Hairer's DOPRI5 defaults): PI control with β = 0.04,
# h_new = h · clip(safe · err^(-α_exp) · err_old^β, 1/10, 5), α_exp = 1/5 − 0.75 β
SAFE, FAC_MIN, FAC_MAX, BETA = 0.9, 0.2, 10.0, 0.04
EXPO1 = 0.2 - BETA * 0.75
#: dopri5 declares divergence only when a step shorter than H_FAIL_RTOL·max(1, α) fails the
#: stop checks (longer failing steps are retried with half the step)
H_FAIL_RTOL = 1e-9


@njit(cache=True)
def _err_norm(y0, y1, errvec, rtol, atol):
    """Hairer's error norm: ``sqrt( mean_i ( err_i / (atol + rtol·max(|y0_i|, |y1_i|)) )² )``."""
    n = y0.shape[0]
    s = 0.0
    for i in range(n):
        sc = atol + rtol * max(abs(y0[i]), abs(y1[i]))
        t = errvec[i] / sc
        s += t * t
    return np.sqrt(s / n)


@njit(cache=True)
def _initial_step(rhs, p, y, f0, y1, f1, alpha_max, rtol, atol):
    """Starting step size (Hairer, Nørsett & Wanner I, §II.4, algorithm HINIT; order 5)."""
    n = y.shape[0]
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d0 += (y[i] / sc) ** 2
        d1 += (f0[i] / sc) ** 2
    d0 = np.sqrt(d0 / n)
    d1 = np.sqrt(d1 / n)
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, alpha_max)
    for i in range(n):
        y1[i] = y[i] + h0 * f0[i]
    rhs(y1, p, f1)
    d2 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d2 += ((f1[i] - f0[i]) / sc) ** 2
    d2 = np.sqrt(d2 / n) / h0
    dm = max(d1, d2)
    if not np.isfinite(dm):
        h1 = h0 * 1e-3
    elif dm <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dm) ** 0.2
    return min(100.0 * h0, h1, alpha_max)


@_lazy_kernel
def dopri5_kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts,
                  max_call_steps):
    """Adaptive Dormand–Prince 5(4) with PI step-size control and dense output.

    One step from ``(α, y)`` with size h (stages ``k_i = f(y + h Σ_j a_ij k_j)``, FSAL:
    ``k_7 = f(y_{n+1})`` is the next step's ``k_1``)::

        y_{n+1} = y_n + h (b1 k1 + b3 k3 + b4 k4 + b5 k5 + b6 k6)          (order 5)
        err     = h (e1 k1 + e3 k3 + e4 k4 + e5 k5 + e6 k6 + e7 k7)        (y5 − y4)
        ‖err‖   = sqrt( mean_i [err_i / (atol + rtol max(|y_n,i|, |y_{n+1},i|))]² )

    The step is accepted when ‖err‖ ≤ 1; the next step is
    ``h · clip(0.9 ‖err‖^(-0.17) ‖err_old‖^(0.04), 0.2, 10)`` (PI control, Hairer's DOPRI5;
    no increase right after a rejection). A step never passes ``alpha_max``, so the last
    accepted state is exactly at ``alpha_max``. Recording times inside an accepted step
    ``(α_n, α_n + h]`` are filled from the 4th-order continuous extension (CONTD5)::

        θ = (α − α_n)/h,  y(θ) = y_n + θ (Δ + (1−θ)(r3 + θ (r4 + (1−θ) r5)))
        Δ = y_{n+1} − y_n,  r3 = h k1 − Δ,  r4 = Δ − h k7 − r3,  r5 = h Σ_i d_i k_i

    A candidate that fails the divergence checks is rejected and retried with h/2 (a long
    step can jump out of the physical region although the solution does not); the run stops
    only when a step shorter than ``H_FAIL_RTOL·max(1, α)`` still fails, which locates a
    genuine threshold crossing by bisection. A non-finite error norm (a stage overflowed)
    likewise retries with h/10. A step below ``1e-14·max(1, α)`` stops the run with
    ``CODE_H_UNDERFLOW``.
    """
    kq = np.int64(opts[O_K] + opts[O_M])
    L = np.empty((kq, kq))
    if ist[I_STARTED] == 0:
        _start(eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, opts, L, np.empty(y.shape[0]))
        if ist[I_CODE] != CODE_RUNNING:
            return
        # k1 = f(y0) lives in work[0] across calls (FSAL)
        rhs(y, p, work[0])
        ist[I_NFEV] += 1
        if not fs[F_H] > 0.0:   # no user-supplied first step: Hairer's HINIT
            fs[F_H] = _initial_step(rhs, p, y, work[0], work[7], work[1], opts[O_ALPHA_MAX],
                                    opts[O_RTOL], opts[O_ATOL])
            ist[I_NFEV] += 1
        fs[F_ERROLD] = 1e-4
    k1, k2, k3, k4, k5, k6, k7, yt = (work[0], work[1], work[2], work[3], work[4], work[5],
                                      work[6], work[7])
    n = y.shape[0]
    rtol = opts[O_RTOL]
    atol = opts[O_ATOL]
    amax = opts[O_ALPHA_MAX]
    nrec = rec_alpha.shape[0]
    ynew = np.empty(n)
    errv = np.empty(n)
    seg = work.shape[0] > WORK_ROWS
    nc = n if seg else 0
    c3 = np.empty(nc)
    c4 = np.empty(nc)
    c5 = np.empty(nc)
    for _ in range(max_call_steps):
        if ist[I_CODE] != CODE_RUNNING:
            break
        a = fs[F_ALPHA]
        h = fs[F_H]
        last = False
        if a + h >= amax or (amax - (a + h)) < 1e-12 * max(1.0, amax):
            h = amax - a
            last = True
        if h < 1e-14 * max(1.0, abs(a)):
            ist[I_CODE] = CODE_H_UNDERFLOW
            fs[F_STOP_ALPHA] = a
            fs[F_STOP_VALUE] = h
            break
        # ---- stages
        for i in range(n):
            yt[i] = y[i] + h * A21 * k1[i]
        rhs(yt, p, k2)
        for i in range(n):
            yt[i] = y[i] + h * (A31 * k1[i] + A32 * k2[i])
        rhs(yt, p, k3)
        for i in range(n):
            yt[i] = y[i] + h * (A41 * k1[i] + A42 * k2[i] + A43 * k3[i])
        rhs(yt, p, k4)
        for i in range(n):
            yt[i] = y[i] + h * (A51 * k1[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i])
        rhs(yt, p, k5)
        for i in range(n):
            yt[i] = y[i] + h * (A61 * k1[i] + A62 * k2[i] + A63 * k3[i] + A64 * k4[i]
                                + A65 * k5[i])
        rhs(yt, p, k6)
        for i in range(n):
            ynew[i] = y[i] + h * (B1 * k1[i] + B3 * k3[i] + B4 * k4[i] + B5 * k5[i]
                                  + B6 * k6[i])
        rhs(ynew, p, k7)
        ist[I_NFEV] += 6
        for i in range(n):
            errv[i] = h * (E1 * k1[i] + E3 * k3[i] + E4 * k4[i] + E5 * k5[i] + E6 * k6[i]
                           + E7 * k7[i])
        err = _err_norm(y, ynew, errv, rtol, atol)
        hfail = H_FAIL_RTOL * max(1.0, abs(a))
        if not np.isfinite(err):
            # a stage overflowed or produced NaN: shrink hard and retry; if even a tiny step
            # does, the state itself is where the right-hand side breaks down
            if h <= hfail:
                ist[I_CODE] = CODE_NONFINITE
                fs[F_STOP_ALPHA] = a + h
                fs[F_STOP_VALUE] = err
                break
            fs[F_H] = max(0.1 * h, 0.5 * hfail)
            ist[I_REJECTED] = 1
            ist[I_NREJECT] += 1
            continue
        fac11 = err ** EXPO1
        if err > 1.0:
            # reject: h_new = h / min(1/FAC_MIN, fac11/SAFE)
            fs[F_H] = h / min(1.0 / FAC_MIN, fac11 / SAFE)
            ist[I_REJECTED] = 1
            ist[I_NREJECT] += 1
            continue
        # ---- candidate accepted by the error test; now the physical checks
        anew = amax if last else a + h
        egv = eg(ynew, p)
        code, val = check_state(ynew, egv, opts, L)
        if code != CODE_RUNNING:
            if h > hfail:
                # a long step may jump over a physical boundary that the exact solution
                # does not cross (or crosses later): retry with half the step, which also
                # locates a genuine crossing to within H_FAIL_RTOL by bisection
                fs[F_H] = 0.5 * h
                ist[I_REJECTED] = 1
                ist[I_NREJECT] += 1
                continue
            ist[I_CODE] = code
            fs[F_STOP_ALPHA] = anew
            fs[F_STOP_VALUE] = val
            break
        # ---- dense output for the recording times in (a, anew]
        r = ist[I_NEXT_REC]
        while r < nrec and rec_alpha[r] <= anew:
            ra = rec_alpha[r]
            if ra >= anew:
                rec_y[r, :] = ynew
                rec_eg[r] = egv
            else:
                th = (ra - a) / h
                th1 = 1.0 - th
                for i in range(n):
                    dlt = ynew[i] - y[i]
                    r3 = h * k1[i] - dlt
                    r4 = dlt - h * k7[i] - r3
                    r5 = h * (D1 * k1[i] + D3 * k3[i] + D4 * k4[i] + D5 * k5[i]
                              + D6 * k6[i] + D7 * k7[i])
                    rec_y[r, i] = y[i] + th * (dlt + th1 * (r3 + th * (r4 + th1 * r5)))
                rec_eg[r] = eg(rec_y[r], p)
            r += 1
        ist[I_NEXT_REC] = r
        if seg:
            # keep the step and its continuous extension (events, dense output)
            for i in range(n):
                dlt = ynew[i] - y[i]
                c3[i] = h * k1[i] - dlt
                c4[i] = dlt - h * k7[i] - c3[i]
                c5[i] = h * (D1 * k1[i] + D3 * k3[i] + D4 * k4[i] + D5 * k5[i]
                             + D6 * k6[i] + D7 * k7[i])
            _store_segment(work, ist, a, anew - a, y, ynew, c3, c4, c5)
        # ---- accept
        y[:] = ynew
        k1[:] = k7
        fs[F_ALPHA] = anew
        fs[F_EG] = egv
        ist[I_NSTEPS] += 1
        fac = fac11 / fs[F_ERROLD] ** BETA
        fac = max(1.0 / FAC_MAX, min(1.0 / FAC_MIN, fac / SAFE))
        hnew = h / fac
        if ist[I_REJECTED] == 1:
            hnew = min(hnew, h)
        ist[I_REJECTED] = 0
        fs[F_ERROLD] = max(err, 1e-4)
        fs[F_H] = hnew
        if opts[O_EG_TOL] > 0 and egv < opts[O_EG_TOL]:
            ist[I_CODE] = CODE_CONVERGED
            fs[F_STOP_ALPHA] = anew
            fs[F_STOP_VALUE] = egv
            break
        if last:
            ist[I_CODE] = CODE_DONE
            break
        if ist[I_NSTEPS] >= opts[O_MAX_STEPS]:
            ist[I_CODE] = CODE_MAX_STEPS
            fs[F_STOP_ALPHA] = anew
            fs[F_STOP_VALUE] = opts[O_MAX_STEPS]
            break


KERNELS = {"euler": euler_kernel, "rk4": rk4_kernel, "dopri5": dopri5_kernel}
FIXED_STEP = ("euler", "rk4")
METHODS = tuple(KERNELS)
