"""The compiled explicit Runge–Kutta engine: one step routine driven by a Butcher tableau.

Every method of :func:`odeflow.solve` is a table (:mod:`odeflow.tableaux`); this module
turns a table into an integration loop that runs the *whole* integration in numba (no
Python work per step): :func:`make_fixed_kernel` (steps of a given size, landing exactly
on the recording times) and :func:`make_adaptive_kernel` (embedded error estimate, PI step
control, FSAL, dense output from the table's ``P``). The coefficients live only in the
tables: a factory binds a table's arrays to one generic stage loop as compile-time
constants (a numba closure), so LLVM sees the same straight-line arithmetic as a
hand-unrolled kernel, and the compiled loop is cached on disk under a name that includes
the table's fingerprint (a changed coefficient compiles a new loop).

The calling convention (the *kernel protocol*), the state arrays ``fs``/``ist``/``opts``
and the stop conditions are documented in :mod:`odeflow.solvers`, the façade the rest of
odeflow imports; the protocol's constants and the stop checks are in
:mod:`odeflow.rk_checks`. numba's disk cache tracks only the file a function is defined in,
so the loops' names carry a fingerprint of that file (:func:`_named`); the step helpers
the loops inline (``_start``, ``_accept``, ``_rewind``, …) live there too, under that
fingerprint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import njit, types

from .rk_checks import (  # noqa: F401  (the protocol's names, re-exported)
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
    LAND_RTOL,
    MAX_DENSE_TERMS,
    N_FS,
    N_IST,
    N_OPTS,
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
    SEG_ROWS,
    WORK_ROWS,
    _accept,
    _after_fixed_step,
    _cov_entry,
    _rewind,
    _segment_base,
    _start,
    _stop_fixed,
    _store_dense_segment,
    _store_hermite_segment,
    cheap_check,
    check_state,
    cov_min_pivot,
    fixed_step_size,
    full_check,
)

# --------------------------------------------------------------------- numba signatures
# The system's functions are passed as *first-class function values* (numba FunctionType),
# not as dispatcher types: the loops are then compiled once for every system (a call goes
# through a function pointer, which costs nothing next to an order-parameter rhs), the
# compiled loops are cached on disk (``cache=True``), and LLVM does not re-optimise the
# generated rhs inside each loop (it would, inlined, for every stage of dopri5).
_arr = types.float64[::1]
_arr2 = types.float64[:, ::1]
_iarr = types.int64[::1]
RHS_TYPE = types.FunctionType(types.void(_arr, _arr, _arr))  # rhs(y, p, dy)
EG_TYPE = types.FunctionType(types.float64(_arr, _arr))  # eg(y, p) -> float
NOISE_TYPE = types.FunctionType(types.void(_arr, _arr, _arr2))  # noise(y, p, S)
#: kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts, max_call_steps)
KERNEL_SIGNATURE = types.void(
    RHS_TYPE, EG_TYPE, _arr, _arr, _arr, _arr2, _arr, _arr, _iarr, _arr2, _arr, types.int64
)


class _LazyKernel:
    """An integration loop compiled with :data:`KERNEL_SIGNATURE` (or loaded from numba's
    disk cache) on first use, not at import: a command loads only the integrator it runs
    (each cached loop costs ~0.1 s to load). Calls and attributes (``signatures``,
    ``stats``, …) go to the numba dispatcher. Corrupt cache files are deleted and the loop
    recompiled (``theory.cache.load_numba``)."""

    def __init__(self, py_func):
        self.py_func = py_func
        self._disp = None
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__

    def dispatcher(self):
        if self._disp is None:
            from theory.cache import load_numba

            self._disp = load_numba(
                # nogil: theory.runtime.interruptible runs it in a worker thread (Ctrl-C)
                lambda: njit(KERNEL_SIGNATURE, cache=True, nogil=True)(self.py_func),
                __file__,
                self.__name__,
                f"the {self.__name__} loop",
            )
        return self._disp

    def __call__(self, *args):
        return self.dispatcher()(*args)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("py_func", "_disp"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)


# ------------------------------------------------------------------- the RK engine
# Step-size controller (Hairer's DOPRI5 defaults): PI control with β = BETA,
#   h_new = h / clip(err^a / (SAFE · err_old^β), 1/FAC_MAX, 1/FAC_MIN),  a = 1/(q+1) − 0.75 β,
# q the order of the embedded error estimate; so h_new/h ∈ [FAC_MIN, FAC_MAX] = [0.2, 10]
# after an accepted step (no increase right after a rejection).
SAFE, FAC_MIN, FAC_MAX, BETA = 0.9, 0.2, 10.0, 0.04
#: an adaptive loop declares divergence only when a step shorter than H_FAIL_RTOL·max(1, α)
#: fails the stop checks (longer failing steps are retried with half the step)
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
def _initial_step(rhs, p, y, f0, y1, f1, alpha_max, rtol, atol, expo):
    """Starting step size (Hairer, Nørsett & Wanner I, §II.4, algorithm HINIT);
    ``expo = 1/(order + 1)``."""
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
        h1 = (0.01 / dm) ** expo
    return min(100.0 * h0, h1, alpha_max)


@njit(cache=True, inline="always")
def _combine(y, work, w, nw, h, out):
    """``out = y + h Σ_{j<nw} w_j k_j`` with the stages ``k_j = work[j]`` (summed in stage
    order, as a hand-unrolled formula would)."""
    for i in range(y.shape[0]):
        acc = 0.0
        for j in range(nw):
            acc += w[j] * work[j, i]
        out[i] = y[i] + h * acc


@njit(cache=True, inline="always")
def _weighted(work, w, nw, h, out):
    """``out = h Σ_{j<nw} w_j k_j`` (the error estimate of an embedded pair)."""
    for i in range(out.shape[0]):
        acc = 0.0
        for j in range(nw):
            acc += w[j] * work[j, i]
        out[i] = h * acc


@njit(cache=True, inline="always")
def _stages(rhs, p, y, work, A, s, h, yt, ylast):
    """Stages 2 … s of one step from ``y`` (stage 1, ``f(y)``, already in ``work[0]``):
    ``k_j = f(y + h Σ_{l<j} A_jl k_l)`` into ``work[j]``; the argument of the last stage
    goes to ``ylast`` (for an FSAL table that is y_{n+1}), the others to ``yt``."""
    for j in range(1, s):
        dst = ylast if j == s - 1 else yt
        _combine(y, work, A[j], j, h, dst)
        rhs(dst, p, work[j])


@njit(cache=True)
def _dense_coeffs(work, P, h, q):
    """``q_k = h Σ_j P_j,k k_j`` (k = 0 … m−1): y(θ) = y_n + Σ_k θ^(k+1) q_k."""
    s, m = P.shape
    for k in range(m):
        for i in range(q.shape[1]):
            acc = 0.0
            for j in range(s):
                acc += P[j, k] * work[j, i]
            q[k, i] = h * acc


@njit(cache=True)
def _dense_point(y, q, th, out):
    """``out = y + Σ_k θ^(k+1) q_k`` (Horner)."""
    m = q.shape[0]
    for i in range(y.shape[0]):
        acc = q[m - 1, i]
        for k in range(m - 2, -1, -1):
            acc = q[k, i] + th * acc
        out[i] = y[i] + th * acc


#: fingerprint of odeflow/rk_checks.py (see _named)
_CHECKS_FP = hashlib.sha256(Path(__file__).with_name("rk_checks.py").read_bytes()).hexdigest()[:8]


def _check_table(tab, rows):
    if rows > WORK_ROWS:
        raise ValueError(
            f"tableau {tab.name} has {tab.stages} stages; the engine's scratch "
            f"holds {WORK_ROWS - 4} (raise WORK_ROWS)"
        )
    if tab.P is not None and tab.P.shape[1] > MAX_DENSE_TERMS:
        raise ValueError(
            f"tableau {tab.name}: dense output with {tab.P.shape[1]} powers of "
            f"θ; the segment buffer holds {MAX_DENSE_TERMS} (raise SEG_ROWS)"
        )


def _named(py_func, prefix, tab):
    """Name a generated loop after its table, the table's fingerprint and that of
    :mod:`odeflow.rk_checks`: numba's disk cache files are named after the function and
    keyed by this file only, so every table (and every change of one of its coefficients,
    or of the protocol's constants and checks in the other file) gets its own cache entry.
    The step helpers above (``_accept``, …) have no cache of their own for the same
    reason: they use the other file's constants and live only inside the cached loops."""
    name = f"{prefix}_{tab.name}_{tab.fingerprint()}_{_CHECKS_FP}"
    py_func.__name__ = py_func.__qualname__ = name
    py_func.__doc__ = f"{tab.description} ({prefix.replace('_', ' ')} loop)"
    return _LazyKernel(py_func)


def make_fixed_kernel(tab):
    """The fixed-step loop of a table: ``y_{n+1} = y_n + h Σ_j b_j k_j`` with steps of
    ``dt`` that land exactly on every recording time (:func:`fixed_step_size`).

    Only the stages up to the last non-zero ``b_j`` are evaluated. Cheap stop checks every
    step, the full checks every :data:`CHECK_EVERY` steps (:func:`_accept`). With a segment
    buffer every accepted step is stored with ``f(y_n)`` for a Hermite interpolant.
    """
    s = tab.b_stages
    _check_table(tab, s + 4)
    A = np.ascontiguousarray(tab.A[:s, :s])
    b = np.ascontiguousarray(tab.b[:s])

    def kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts, max_call_steps):
        kq = np.int64(opts[O_K] + opts[O_M])
        L = np.empty((kq, kq))
        ygood = work[WORK_ROWS - 1]
        if ist[I_STARTED] == 0:
            _start(eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, opts, L, ygood)
        k0 = work[0]
        yt = work[s]
        ynew = work[s + 1]
        yold = work[s + 2]
        seg = work.shape[0] > WORK_ROWS
        done = 0
        while done < max_call_steps:
            if ist[I_CODE] != CODE_RUNNING:
                break
            if not seg:
                # the plain steps (no record or alpha_max to land on, no full check due,
                # not the last budgeted step) in a tight loop: rhs, update, cheap checks;
                # the same arithmetic and counters as the general path below, without its
                # per-step decisions (a quarter of an Euler step at K = M = 2)
                m = _plain_steps(
                    rhs,
                    eg,
                    p,
                    y,
                    work,
                    A,
                    b,
                    fs,
                    ist,
                    rec_alpha,
                    opts,
                    ynew,
                    yt,
                    L,
                    ygood,
                    max_call_steps - done,
                )
                done += m
                if m > 0 or ist[I_CODE] != CODE_RUNNING:
                    continue
            done += 1
            h, anew, landed = fixed_step_size(fs, ist, rec_alpha, opts)
            rhs(y, p, k0)
            if s > 1:  # a compile-time constant: no call for Euler
                _stages(rhs, p, y, work, A, s, h, yt, yt)
            ist[I_NFEV] += s
            _combine(y, work, b, s, h, ynew)
            a0 = fs[F_ALPHA]
            if seg:
                yold[:] = y
            ok = _accept(
                eg,
                p,
                y,
                ynew,
                anew,
                rec_alpha,
                rec_y,
                rec_eg,
                fs,
                ist,
                opts,
                landed,
                L,
                ygood,
                CHECK_EVERY_SEG if seg else CHECK_EVERY,
                not seg,
            )
            if seg and fs[F_ALPHA] == anew:  # accepted: keep the step for events
                _store_hermite_segment(work, ist, a0, anew - a0, yold, y, k0)
            if not ok:
                break
            if fs[F_ALPHA] == anew:  # (not after a rewind)
                _after_fixed_step(landed, fs, ist)

    return _named(kernel, "fixed", tab)


#: the largest finite double: |y_i| ≤ it is false exactly for non-finite y_i
_MAX_FINITE = float(np.finfo(np.float64).max)


@njit(inline="always")  # no own cache: compiled into the loops (see _named)
def _plain_steps(rhs, eg, p, y, work, A, b, fs, ist, rec_alpha, opts, ynew, yt, L, ygood, nmax):
    """Up to ``nmax`` fixed steps that neither land (on a record or alpha_max), nor need
    the full checks, nor are the last budgeted step; returns how many were taken (0: the
    next step needs :func:`_accept`). Each is what the general path does for such a step:
    ``α_new = α_seg + (n_seg + 1) dt``, the stages, ``y + h Σ b_j k_j``, the cheap checks
    (a failure stops the run as there), then the counters. ``A``, ``b``: the table's
    coefficients up to its last non-zero ``b_j`` (so ``b.shape[0]`` stages)."""
    s = b.shape[0]
    k = min(
        CHECK_EVERY - 1 - ist[I_SINCE_CHECK],
        np.int64(opts[O_MAX_STEPS]) - 1 - ist[I_NSTEPS],
        nmax,
    )
    if k <= 0 or fs[F_ALPHA] < fs[F_REPLAY]:  # (replaying after a rewind: every step checked)
        return 0
    dt = opts[O_DT]
    amax = opts[O_ALPHA_MAX]
    r = ist[I_NEXT_REC]
    target = amax
    if r < rec_alpha.shape[0] and rec_alpha[r] < amax:
        target = rec_alpha[r]
    thresh = opts[O_YMAX]
    if not thresh <= _MAX_FINITE:  # (inf or NaN: then only non-finite entries fail)
        thresh = _MAX_FINITE
    k0 = work[0]
    n = y.shape[0]
    # the counters and α live in locals during the loop and go back to ist/fs after it (and
    # before a stop): through the rhs's function pointer the compiler cannot keep array
    # entries in registers, so per-step loads and stores of them are a tenth of a K = 2 step
    seg0 = fs[F_SEG]
    nseg = ist[I_NSEG]
    a = fs[F_ALPHA]
    taken = 0
    for _ in range(k):
        if target - a <= dt * (1.0 + LAND_RTOL):  # this step lands: the general path
            break
        anew = seg0 + (nseg + 1) * dt
        h = anew - a
        rhs(y, p, k0)
        if s > 1:
            _stages(rhs, p, y, work, A, s, h, yt, yt)
        _combine(y, work, b, s, h, ynew)
        # the cheap checks folded into one comparison per entry (false for NaN and ±inf
        # too); cheap_check, which tells the failures apart, runs only on a failure
        fine = True
        for i in range(n):
            if not abs(ynew[i]) <= thresh:
                fine = False
        if not fine:
            _write_back(fs, ist, a, nseg, taken, s)
            ist[I_NFEV] += s
            if ist[I_SINCE_CHECK] > 0:  # as _accept: locate the failure to the step
                _rewind(y, fs, ist, ygood, anew)
                return taken
            code, val = cheap_check(ynew, opts)
            _stop_fixed(eg, p, y, fs, ist, opts, L, ygood, code, anew, val)
            return taken
        for i in range(n):
            y[i] = ynew[i]
        a = anew
        nseg += 1
        taken += 1
    _write_back(fs, ist, a, nseg, taken, s)
    return taken


@njit(inline="always")  # no own cache: compiled into the loops (see _named)
def _write_back(fs, ist, a, nseg, taken, s):
    """The counters of ``taken`` plain steps of ``s`` stages each, and α, into fs/ist."""
    fs[F_ALPHA] = a
    ist[I_NSEG] = nseg
    ist[I_NFEV] += s * taken
    ist[I_NSTEPS] += taken
    ist[I_SINCE_CHECK] += taken


# Long on purpose: a factory around one numba loop: the loop must be one function (no per-step
# Python, nothing numba cannot inline); its parts are commented
def make_adaptive_kernel(tab):
    """The adaptive loop of a table with error weights ``e``: PI step control, FSAL, dense
    output. One step from ``(α_n, y_n)`` with size h::

        y_{n+1} = y_n + h Σ_j b_j k_j,     err = h Σ_j e_j k_j
        ‖err‖   = sqrt( mean_i [err_i / (atol + rtol max(|y_n,i|, |y_{n+1},i|))]² )

    The step is accepted when ‖err‖ ≤ 1; the next step is
    ``h · clip(0.9 ‖err‖^(−a) ‖err_old‖^β, 0.2, 10)``, a = 1/(q+1) − 0.75β, β = 0.04, q the
    embedded order (PI control, Hairer's DOPRI5; no increase right after a rejection). A
    step never passes ``alpha_max``, so the last accepted state is exactly at
    ``alpha_max``. Recording times inside an accepted step are filled from the table's
    dense output ``y(θ) = y_n + h Σ_k θ^(k+1) Σ_j P_jk k_j``.

    A candidate that fails the divergence checks is rejected and retried with h/2 (a long
    step can jump out of the physical region although the solution does not); the run stops
    only when a step shorter than ``H_FAIL_RTOL·max(1, α)`` still fails, which locates a
    genuine threshold crossing by bisection. A non-finite error norm (a stage overflowed)
    likewise retries with h/10. A step below ``1e-14·max(1, α)`` stops the run with
    ``CODE_H_UNDERFLOW``.
    """
    if tab.e is None:
        raise ValueError(f"tableau {tab.name} has no error estimate; use make_fixed_kernel")
    s = tab.stages
    _check_table(tab, s + 1)
    A = np.ascontiguousarray(tab.A)
    b = np.ascontiguousarray(tab.b)
    e = np.ascontiguousarray(tab.e)
    fsal = bool(tab.fsal)
    dense = tab.P is not None
    P = np.ascontiguousarray(tab.P if dense else np.zeros((s, 1)))
    m = P.shape[1] if dense else 0
    expo1 = 1.0 / (tab.error_order + 1) - 0.75 * BETA
    expo_init = 1.0 / (tab.order + 1)

    # Long on purpose: the compiled integration loop itself (see make_adaptive_kernel)
    def kernel(rhs, eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, work, opts, max_call_steps):
        kq = np.int64(opts[O_K] + opts[O_M])
        L = np.empty((kq, kq))
        n = y.shape[0]
        yt = work[s]
        if ist[I_STARTED] == 0:
            _start(eg, p, y, rec_alpha, rec_y, rec_eg, fs, ist, opts, L, np.empty(n))
            if ist[I_CODE] != CODE_RUNNING:
                return
            rhs(y, p, work[0])  # k1 = f(y0); kept in work[0] across calls
            ist[I_NFEV] += 1
            if not fs[F_H] > 0.0:  # no user-supplied first step: Hairer's HINIT
                fs[F_H] = _initial_step(
                    rhs,
                    p,
                    y,
                    work[0],
                    yt,
                    work[1],
                    opts[O_ALPHA_MAX],
                    opts[O_RTOL],
                    opts[O_ATOL],
                    expo_init,
                )
                ist[I_NFEV] += 1
            fs[F_ERROLD] = 1e-4
        rtol = opts[O_RTOL]
        atol = opts[O_ATOL]
        amax = opts[O_ALPHA_MAX]
        nrec = rec_alpha.shape[0]
        ynew = np.empty(n)
        errv = np.empty(n)
        seg = work.shape[0] > WORK_ROWS
        q = np.empty((m, n))
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
            # ---- stages (FSAL: the last stage's argument is y_{n+1} itself)
            if fsal:
                _stages(rhs, p, y, work, A, s, h, yt, ynew)
                ist[I_NFEV] += s - 1
            else:
                _stages(rhs, p, y, work, A, s, h, yt, yt)
                _combine(y, work, b, s, h, ynew)
                ist[I_NFEV] += s - 1
            _weighted(work, e, s, h, errv)  # h Σ e_j k_j = y_{n+1} − ŷ_{n+1}
            err = _err_norm(y, ynew, errv, rtol, atol)
            hfail = H_FAIL_RTOL * max(1.0, abs(a))
            if not np.isfinite(err):
                # a stage overflowed or produced NaN: shrink hard and retry; if even a tiny
                # step does, the state itself is where the right-hand side breaks down
                if h <= hfail:
                    ist[I_CODE] = CODE_NONFINITE
                    fs[F_STOP_ALPHA] = a + h
                    fs[F_STOP_VALUE] = err
                    break
                fs[F_H] = max(0.1 * h, 0.5 * hfail)
                ist[I_REJECTED] = 1
                ist[I_NREJECT] += 1
                continue
            fac11 = err**expo1
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
                    # does not cross (or crosses later): retry with half the step, which
                    # also locates a genuine crossing to within H_FAIL_RTOL by bisection
                    fs[F_H] = 0.5 * h
                    ist[I_REJECTED] = 1
                    ist[I_NREJECT] += 1
                    continue
                ist[I_CODE] = code
                fs[F_STOP_ALPHA] = anew
                fs[F_STOP_VALUE] = val
                break
            # ---- records in (a, anew]: dense output inside the step
            r = ist[I_NEXT_REC]
            have_q = False
            while r < nrec and rec_alpha[r] <= anew:
                ra = rec_alpha[r]
                if ra >= anew:
                    rec_y[r, :] = ynew
                    rec_eg[r] = egv
                else:
                    if not have_q:
                        _dense_coeffs(work, P, h, q)
                        have_q = True
                    _dense_point(y, q, (ra - a) / h, rec_y[r])
                    rec_eg[r] = eg(rec_y[r], p)
                r += 1
            ist[I_NEXT_REC] = r
            if seg:  # keep the step for events and dense output
                if m > 0:
                    if not have_q:
                        _dense_coeffs(work, P, h, q)
                    _store_dense_segment(work, ist, a, anew - a, y, ynew, q)
                else:
                    _store_hermite_segment(work, ist, a, anew - a, y, ynew, work[0])
            # ---- accept
            y[:] = ynew
            if fsal:
                work[0, :] = work[s - 1]
            else:
                rhs(y, p, work[0])
                ist[I_NFEV] += 1
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

    return _named(kernel, "adaptive", tab)
