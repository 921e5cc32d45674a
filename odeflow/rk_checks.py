"""The kernel protocol's data and its stop checks: indices of the state arrays ``fs``,
``ist`` and ``opts``, the stop codes, the layout of ``work`` (scratch rows and the buffer of
accepted steps for :mod:`odeflow.events`), and the numba functions that store a step
segment and test a candidate state (finite, ``max|y|``, ε_g, positive semi-definiteness
of the field covariance).

Split from :mod:`odeflow.rk` (the loops) by job. Every numba function here uses only this
module's own constants, so numba's disk cache (keyed by this file) is always consistent;
the loops of :mod:`odeflow.rk` carry a fingerprint of this file in their names
(:func:`odeflow.rk._named`), so a change here recompiles them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ------------------------------------------------------------------ state-array indices
# float state fs
F_ALPHA = 0  # current α (of the accepted state y)
F_H = 1  # adaptive: proposed next step size
F_ERROLD = 2  # adaptive: previous accepted error norm (PI controller memory)
F_SEG = 3  # fixed-step: α of the last point landed on exactly (start of the segment)
F_EG = 4  # ε_g of the accepted state
F_STOP_ALPHA = 5  # α of the state that triggered a stop
F_STOP_VALUE = 6  # the offending value (ε_g, max|y|, min pivot of Q, …)
F_GOOD_ALPHA = 7  # fixed-step: α of the last state that passed the full checks
F_REPLAY = 8  # fixed-step: steps ending at α ≤ this get the full checks (after a rewind)
N_FS = 9
# integer state ist
I_NEXT_REC = 0  # index of the next record to write (= number of records written)
I_NFEV = 1  # number of rhs evaluations
I_NSTEPS = 2  # number of accepted steps
I_CODE = 3  # stop code (0 = still running)
I_NSEG = 4  # fixed-step: steps taken since F_SEG
I_REJECTED = 5  # adaptive: 1 if the last attempted step was rejected
I_NREJECT = 6  # adaptive: number of rejected steps
I_STARTED = 7  # 1 once the initial record/check has been done
I_SINCE_CHECK = 8  # fixed-step: steps accepted since the last full check
I_NSEG_OUT = 9  # accepted steps written to the segment buffer (odeflow.events) this call
N_IST = 10
# opts
O_ALPHA_MAX, O_DT, O_RTOL, O_ATOL, O_EG_TOL, O_THRESH, O_PSD_RTOL, O_MAX_STEPS, O_NQ, O_K = (
    0,
    1,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
)
O_M = 9
O_YMAX = 10  # the order-parameter overflow guard (theory.divergence); O_THRESH is ε_g's
O_T = 11  # T (M·M, row-major) follows: the constant block of the field covariance
N_OPTS = 11  # plus M·M

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
#: (finite, max|y|) run every step. When a full check fails, the loop goes back to the last
#: fully checked state and takes the same steps again with the full checks on every one
#: (:func:`odeflow.rk_checks._rewind`: the steps are deterministic, so the failure is located to
#: the step, as if every step were checked). The full checks (ε_g, a Cholesky) cost more
#: than a K = M = 2 rhs; once every 64 steps they are ~1 % of a step.
CHECK_EVERY = 64
#: the same with a segment buffer (events, dense output), where a rewind would take back
#: steps the driver may already have consumed: no rewind, failure located to this many steps
CHECK_EVERY_SEG = 8

#: fixed-step landing tolerance: a remaining distance up to dt·(1 + LAND_RTOL) to the next
#: record point is covered by one (slightly adjusted) step, so round-off in α never produces
#: a spurious tiny extra step.
LAND_RTOL = 1e-8


# ------------------------------------------------------------- step segments (events)
#: rows of ``work`` the kernels use as scratch (stages, trial states); rows beyond hold
#: step segments. A table needs stages + 4 rows (see the factories).
WORK_ROWS = 12
#: rows per stored step: y_n; [α_n, h, m, 0…]; Δ = y_{n+1} − y_n; then either (m > 0) the
#: dense-output coefficients q_1 … q_m of y(θ) = y_n + Σ_k θ^k q_k, q_k = h Σ_j P_j,k−1 k_j,
#: or (m = 0, a table without P) f(y_n), for a cubic Hermite interpolant (odeflow.events)
SEG_ROWS = 7
#: most powers of θ a table's dense output may have
MAX_DENSE_TERMS = SEG_ROWS - 3


@njit(cache=True)
def _segment_base(work, ist):
    """Row of the next free segment of ``work``'s buffer, or −1 if it has none or is full
    (the driver, odeflow.events, empties it between calls and never asks for more)."""
    base = WORK_ROWS + SEG_ROWS * ist[I_NSEG_OUT]
    if base + SEG_ROWS > work.shape[0]:
        return -1
    ist[I_NSEG_OUT] += 1
    work[base + 1, :] = 0.0
    return base


@njit(cache=True)
def _store_hermite_segment(work, ist, a, h, y, ynew, f0):
    """Store an accepted step ``(α_n, h, y_n, y_{n+1}, f(y_n))`` (m = 0)."""
    base = _segment_base(work, ist)
    if base < 0:
        return
    work[base + 1, 0] = a
    work[base + 1, 1] = h
    for i in range(y.shape[0]):
        work[base, i] = y[i]
        work[base + 2, i] = ynew[i] - y[i]
        work[base + 3, i] = f0[i]


@njit(cache=True)
def _store_dense_segment(work, ist, a, h, y, ynew, q):
    """Store an accepted step and its dense-output coefficients ``q`` (m, n)."""
    base = _segment_base(work, ist)
    if base < 0:
        return
    m = q.shape[0]
    work[base + 1, 0] = a
    work[base + 1, 1] = h
    work[base + 1, 2] = m
    for i in range(y.shape[0]):
        work[base, i] = y[i]
        work[base + 2, i] = ynew[i] - y[i]
        for k in range(m):
            work[base + 3 + k, i] = q[k, i]


# ------------------------------------------------------------------------ stop checks
@njit(cache=True)
def _cov_entry(y, opts, K, M, nQ, i, j):
    """Entry (i, j) of the field covariance ``C = [[Q, R], [Rᵀ, T]]`` read from the packed
    state (Q upper triangle row-major at 0, R row-major at nQ) and T from ``opts``."""
    if i > j:
        i, j = j, i
    if j < K:  # Q_ij, i <= j: index i*K - i(i-1)/2 + (j - i)
        return y[i * K - (i * (i - 1)) // 2 + (j - i)]
    if i < K:  # R_i,(j-K)
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
    # C's lower triangle into L first (entry (i, j), i >= j, is the same number
    # _cov_entry(…, j, i) reads), then an in-place Cholesky: no index arithmetic or branch
    # per entry inside the O(n³) loop
    q = 0
    for a in range(K):
        for c in range(a, K):
            L[c, a] = y[q]
            q += 1
    for a in range(K):
        for m in range(M):
            L[K + m, a] = y[nQ + a * M + m]
    for m in range(M):
        for m2 in range(m + 1):
            L[K + m, K + m2] = opts[O_T + m2 * M + m]
    scale = 1.0
    for a in range(n):
        if L[a, a] > scale:
            scale = L[a, a]
    tol = opts[O_PSD_RTOL] * scale
    minpiv = np.inf
    for j in range(n):
        s = L[j, j] + tol
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if s < minpiv:
            minpiv = s
        if not s > 0.0:
            return s
        ljj = np.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, n):
            t = L[i, j]
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / ljj
    return minpiv


@njit(cache=True)
def cheap_check(y, opts):
    """Every-step checks: non-finite entries, then ``max|y|`` above the overflow guard
    (``opts[O_YMAX]``, :func:`theory.divergence.overflow_guard`)."""
    thresh = opts[O_YMAX]
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
    """The costlier checks: ``ε_g`` finite and below the divergence threshold
    (``opts[O_THRESH]``: the one criterion, :mod:`theory.divergence`), then positive
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


# -------------------------------------------------- step helpers inlined into the loops
@njit  # no own cache: compiled into the loops (odeflow.rk._named)
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


@njit  # no own cache: compiled into the loops (odeflow.rk._named)
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


@njit  # no own cache: compiled into the loops (odeflow.rk._named)
def _accept(
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
    check_every,
    rewind=False,
):
    """Check a fixed-step candidate ``ynew`` at α = ``anew``; accept, record, set stop codes.

    Cheap checks every step; the full checks (ε_g, covariance, eg_tol) every
    ``check_every`` steps and always on a recording time, at alpha_max and on the last
    budgeted step, so every recorded state has passed all checks. Returns True if the run
    continues. With ``rewind``, a full check that fails after unchecked steps does not stop
    the run: :func:`_rewind` goes back to the last fully checked state (``fs[F_ALPHA]`` is
    then not ``anew``), and the steps up to ``anew`` are taken again, each fully checked.
    """
    code, val = cheap_check(ynew, opts)
    if code != CODE_RUNNING:
        if rewind and ist[I_SINCE_CHECK] > 0:
            _rewind(y, fs, ist, ygood, anew)
            return True
        _stop_fixed(eg, p, y, fs, ist, opts, L, ygood, code, anew, val)
        return False
    r = ist[I_NEXT_REC]
    is_rec = landed and r < rec_alpha.shape[0] and rec_alpha[r] == anew
    last = anew >= opts[O_ALPHA_MAX] or ist[I_NSTEPS] + 1 >= opts[O_MAX_STEPS]
    full = is_rec or last or ist[I_SINCE_CHECK] + 1 >= check_every or anew <= fs[F_REPLAY]
    egv = 0.0
    if full:
        egv = eg(ynew, p)
        code, val = full_check(ynew, egv, opts, L)
        if code != CODE_RUNNING:
            if rewind and ist[I_SINCE_CHECK] > 0:
                _rewind(y, fs, ist, ygood, anew)
                return True
            _stop_fixed(eg, p, y, fs, ist, opts, L, ygood, code, anew, val)
            return False
        if rewind and ist[I_SINCE_CHECK] > 0 and opts[O_EG_TOL] > 0 and egv < opts[O_EG_TOL]:
            _rewind(y, fs, ist, ygood, anew)  # convergence, too, located to the step
            return True
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


@njit  # no own cache: compiled into the loops (odeflow.rk._named)
def _rewind(y, fs, ist, ygood, anew):
    """Back to the last fully checked state (``ygood``): α, the step counters and the
    segment's step count as they were there; steps ending at α ≤ ``anew`` (where a full
    check failed) are then fully checked (``F_REPLAY``). No record was written and no
    landing made since (both are fully checked steps), so the same steps follow."""
    m = ist[I_SINCE_CHECK]
    y[:] = ygood
    fs[F_ALPHA] = fs[F_GOOD_ALPHA]
    ist[I_NSEG] -= m
    ist[I_NSTEPS] -= m
    ist[I_SINCE_CHECK] = 0
    fs[F_REPLAY] = anew


@njit  # no own cache: compiled into the loops (odeflow.rk._named)
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


@njit  # no own cache: compiled into the loops (odeflow.rk._named)
def _after_fixed_step(landed, fs, ist):
    if landed:
        fs[F_SEG] = fs[F_ALPHA]
        ist[I_NSEG] = 0
    else:
        ist[I_NSEG] += 1
