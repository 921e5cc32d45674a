"""Euler–Maruyama ensembles: the stochastic feedback of AFA (docs/theory.md §5), and the
finite-N diffusion of every order parameter (docs/finite-size.md).

Feedback noise only (:func:`em_kernel`, ``solve_sde`` without N). The adaptive feedback
``b_k = w_k·F/√N`` does not self-average: per unit α it receives Gaussian noise with
covariance ``Σ(y)`` (K×K, ``system.noise``). The state obeys

    dy = f(y) dα + G(y) dB_α,      G = [0; …; 0; chol Σ(y)]   (noise only on the b block)

so Q, R, v are deterministic given the path of b. Euler–Maruyama (strong order 1/2, weak
order 1)::

    y_{n+1} = y_n + h f(y_n) + √h · [0, …, 0, L(y_n) ξ_n],   L Lᵀ = Σ(y_n),  ξ_n ~ N(0, I_K)

with the same step grid as the Euler loop of :mod:`odeflow.rk` (steps land exactly on
recording times), so with Σ ≡ 0 every path equals the deterministic Euler solution bit for
bit. Only Euler–Maruyama is provided: the noise is multiplicative (Σ depends on b), so a
strong order-1 scheme (Milstein) would need the derivatives of chol Σ, which the generated
code does not provide, and the weak-order gain of a stochastic Heun step is irrelevant when
dt is chosen small enough for the deterministic Euler error (O(dt)) anyway.

Finite N (:func:`em_full_kernel`, ``solve_sde(..., N=...)``): the same scheme on every
order parameter with the n×n covariance ``Σ(y)/N``, ``Σ = Cov[f]`` of the per-sample
increments (:mod:`theory.covariance`, :mod:`theory.ff_covariance`)::

    y_{n+1} = y_n + h f(y_n) + √(h/N) L ξ_n,    L Lᵀ = Σ(y_m),  ξ_n ~ N(0, I_n)

with Σ (a quadrature, most of a step's cost) refreshed at steps m: every step, every k
steps, or — the default — adaptively, when it has moved by a tolerance
(:func:`refresh_sigma`). With the O(1/N) drift (``corr = 1``) the drift part takes a Heun
step instead, so that dt adds no drift error next to the O(1/N) terms it resolves.

Measured against simulation ensembles (24 sample streams from one measured initial state,
erf, K = M = 2, η = η_v = 1, 96 SDE paths, dt = 0.02, Σ every 2 steps;
tests/odeflow/test_sde_finite_n.py), where the simulations' spread of ε_g exceeds 0.003:
BP N = 2000, std ratio SDE/sim 0.92–1.07, means within 0.44 SE; AFA (σ_F = 0.3) N = 500,
0.89–1.05, means within 1.0 SE; BP N = 500, 0.81–1.37 up to α = 16 but 1.49–3.29 over
α = 16.5–20, the end of the plateau escape, where the SDE has a heavier tail of late
escapers than the simulations (docs/finite-size.md), means within 1.4 SE.
Forward-Forward (K = 2, M = 1, θ = 1, N = 500, 32 paths): see docs/finite-size.md.
Late in learning (BP, N = 500, 64 paths, α = 22–40, after the escape): the SDE's mean ε_g is
0.988–0.999 of the simulations' (their SE ≈ 1.3–2 %), the ODE's 1.017–1.031 — the noise
shifts the mean the right way — and the SDE's spread 0.92–1.04 of theirs. During the
escape (α = 8–16) the SDE's mean is 2–9 % above the simulations' (the ODE's 5–16 %): the
escape is a little late, and its spread 0.85–0.92 of theirs. So the issue's "SDE mean 3 %
above, spread 20–40 % above late in learning" was not reproduced with this Σ (an exact
Cov[f] with the η² term, not a leading-order approximation of it).

Reproducibility
---------------
Paths run in parallel (``numba.prange``). Each path has a base seed ``b_i`` from
``np.random.SeedSequence(seed).spawn(n_paths)``, and its Gaussian numbers come from a
counter-based stream: step n uses the pairs ``c = n·⌈K/2⌉ + j`` (j < K/2), each the
Box–Muller transform of the SplitMix64 outputs at positions ``2c + 1`` and ``2c + 2`` of
the stream seeded with ``b_i`` (:func:`counter_normal_pair`). A path's noise therefore depends only
on its base seed and the step index, not on which thread runs it nor on how the run is cut into
kernel calls: the driver (``odeflow.solve_sde``) can return to Python as often as it needs (Ctrl-C,
progress bar) at any K, and the ensemble is reproducible for a given ``seed``,
``n_paths``, dt and recording grid (and independent of the number of threads).

Singular Σ
----------
Σ is positive semi-definite but singular whenever some ``b_k = 0`` (Σ_kl ∝ b_k b_l S_kl) or
σ_F² = 0. :func:`chol_psd` is a Cholesky factorisation that drops a direction whose pivot
is below ``1e-12·max(Σ_kk)`` (for a PSD matrix the rest of that column is then negligible
too); a slightly negative pivot from round-off is treated the same way.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from .rk import (
    CODE_RUNNING,
    EG_TYPE,
    F_ALPHA,
    I_CODE,
    I_NEXT_REC,
    I_NFEV,
    I_NSTEPS,
    I_STARTED,
    NOISE_TYPE,
    O_K,
    O_M,
    RHS_TYPE,
    _accept,
    _after_fixed_step,
    _start,
    fixed_step_size,
)

_arr = types.float64[::1]
_arr2 = types.float64[:, ::1]
_arr3 = types.float64[:, :, ::1]
_iarr2 = types.int64[:, ::1]
#: em_kernel(rhs, eg, noise, p, Y, rec_alpha, rec_y, rec_eg, FS, IST, opts, seeds, b0, steps)
EM_SIGNATURE = types.void(
    RHS_TYPE,
    EG_TYPE,
    NOISE_TYPE,
    _arr,
    _arr2,
    _arr,
    _arr3,
    _arr2,
    _arr2,
    _iarr2,
    _arr,
    types.int64[::1],
    types.int64,
    types.int64,
)
#: em_full_kernel(rhs, eg, cov, drift1, p, pc, Y, rec_alpha, rec_y, rec_eg, FS, IST, opts,
#:                seeds, inv_n, every, ctl, LS, SS, NX, C1, corr, steps)
EM_FULL_SIGNATURE = types.void(
    RHS_TYPE,
    EG_TYPE,
    NOISE_TYPE,
    RHS_TYPE,
    _arr,
    _arr,
    _arr2,
    _arr,
    _arr3,
    _arr2,
    _arr2,
    _iarr2,
    _arr,
    types.int64[::1],
    types.float64,
    types.int64,
    _arr,
    _arr3,
    _arr3,
    _iarr2,
    _arr2,
    types.int64,
    types.int64,
)
#: ``NX[i]`` of :func:`em_full_kernel`: the step of path i's next refresh of Σ, the current
#: interval (steps), the number of evaluations of Σ so far
NX_NEXT, NX_INTERVAL, NX_COUNT = 0, 1, 2
#: ``ctl`` of :func:`em_full_kernel` (adaptive refresh): tolerance, the first and the
#: largest interval (steps)
C_RTOL, C_FIRST, C_MAX = 0, 1, 2


def _drop_stale_cache():
    """Numba's on-disk cache tracks only the file a function is defined in. ``em_kernel``
    links helpers from ``rk.py``; if that file is newer than the cached kernel, drop
    the cache entry so the kernel is rebuilt with the current helpers."""
    import os
    from pathlib import Path

    here = Path(__file__).resolve()
    srcs = [here.with_name(f) for f in ("rk.py", "rk_checks.py")]
    dirs = [here.parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    try:
        t_src = max(f.stat().st_mtime for f in srcs if f.exists())
        for d in dirs:
            for f in d.rglob("sde.em_*kernel-*.nbi") if d.exists() else ():
                if f.stat().st_mtime < t_src:
                    f.unlink()
    except OSError:
        pass


_drop_stale_cache()

#: formerly the fixed steps per kernel call that the noise stream depended on; now the
#: driver adapts the length of every call to its duration and the result does not depend
#: on it (kept as the value ``SDEResult.params['chunk_steps']`` records)
CHUNK_STEPS = 4096

_PHI = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi
_U53 = 2.0**-53


@njit(cache=True)
def _mix64(z):
    """SplitMix64's output function (Steele, Lea & Flood 2014)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def counter_normal_pair(base, counter):
    """Standard normal pair number ``counter`` (≥ 0) of the stream with seed ``base``
    (uint64): Box–Muller, ``√(−2 ln u1) (cos 2π u2, sin 2π u2)``, on the 53-bit uniforms
    u1 ∈ (0, 1], u2 ∈ [0, 1) from SplitMix64 outputs ``2·counter + 1`` and ``2·counter + 2``
    of that stream."""
    z = base + np.uint64(2 * counter + 1) * _PHI
    u1 = 1.0 - (_mix64(z) >> np.uint64(11)) * _U53
    u2 = (_mix64(z + _PHI) >> np.uint64(11)) * _U53
    r = np.sqrt(-2.0 * np.log(u1))
    return r * np.cos(_TWO_PI * u2), r * np.sin(_TWO_PI * u2)


@njit(cache=True)
def fill_normals(base, first_pair, xi):
    """``xi`` (K,) ← pairs ``first_pair, first_pair + 1, …`` of the stream ``base`` (the
    last pair's second number is dropped when K is odd)."""
    K = xi.shape[0]
    for j in range((K + 1) // 2):
        z0, z1 = counter_normal_pair(base, first_pair + j)
        xi[2 * j] = z0
        if 2 * j + 1 < K:
            xi[2 * j + 1] = z1


def base_seeds(seed, n_paths: int) -> np.ndarray:
    """One 64-bit base seed per path from ``SeedSequence(seed).spawn(n_paths)``."""
    children = np.random.SeedSequence(seed).spawn(n_paths)
    return np.array([c.generate_state(1, dtype=np.uint64)[0] for c in children], dtype=np.uint64)


@njit(cache=True)
def chol_psd(S, L):
    """Lower-triangular ``L`` with ``L Lᵀ = S`` for a positive *semi*-definite S.

    Standard Cholesky–Banachiewicz, except that a pivot ``≤ 1e-12·max(1e-300, max_k S_kk)``
    zeroes its column (the direction carries no noise).
    """
    K = S.shape[0]
    scale = 1e-300
    for k in range(K):
        if S[k, k] > scale:
            scale = S[k, k]
    tol = 1e-12 * scale
    for j in range(K):
        for i in range(K):
            L[i, j] = 0.0
    for j in range(K):
        s = S[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if s <= tol:
            continue  # column j stays zero
        ljj = np.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, K):
            t = 0.5 * (S[i, j] + S[j, i])
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / ljj


@njit(EM_SIGNATURE, parallel=True, cache=True)
def em_kernel(
    rhs, eg, noise, p, Y, rec_alpha, rec_y, rec_eg, FS, IST, opts, seeds, b0, max_call_steps
):
    """Advance every path by at most ``max_call_steps`` Euler–Maruyama steps.

    ``Y`` (P, n) current states; ``rec_y`` (P, T, n), ``rec_eg`` (P, T) records; ``FS``
    (P, N_FS), ``IST`` (P, N_IST) per-path solver state (as in :mod:`odeflow.solvers`);
    ``seeds`` (P,) the paths' base seeds (uint64 bits as int64; :func:`base_seeds`); ``b0``
    the offset of the b block in y. A call may stop after any step: the noise of step n of
    path i is :func:`fill_normals` ``(seeds[i], n·⌈K/2⌉, ξ)``.
    """
    P, n = Y.shape
    K = np.int64(opts[O_K])
    M = np.int64(opts[O_M])
    for ip in prange(P):
        fs = FS[ip]
        ist = IST[ip]
        if ist[I_CODE] != CODE_RUNNING:
            continue
        base = np.uint64(seeds[ip])
        y = Y[ip]
        f = np.empty(n)
        ynew = np.empty(n)
        S = np.empty((K, K))
        Lc = np.empty((K, K))
        xi = np.empty(K)
        Lq = np.empty((K + M, K + M))
        ygood = np.empty(n)  # unused with check_every = 1 (every state fully checked)
        if ist[I_STARTED] == 0:
            _start(eg, p, y, rec_alpha, rec_y[ip], rec_eg[ip], fs, ist, opts, Lq, ygood)
        for _ in range(max_call_steps):
            if ist[I_CODE] != CODE_RUNNING:
                break
            h, anew, landed = fixed_step_size(fs, ist, rec_alpha, opts)
            rhs(y, p, f)
            noise(y, p, S)
            ist[I_NFEV] += 1
            chol_psd(S, Lc)
            fill_normals(base, ist[I_NSTEPS] * ((K + 1) // 2), xi)
            for i in range(n):
                ynew[i] = y[i] + h * f[i]
            sh = np.sqrt(h)
            for k in range(K):
                s = 0.0
                for m in range(k + 1):
                    s += Lc[k, m] * xi[m]
                ynew[b0 + k] += sh * s
            if not _accept(
                eg,
                p,
                y,
                ynew,
                anew,
                rec_alpha,
                rec_y[ip],
                rec_eg[ip],
                fs,
                ist,
                opts,
                landed,
                Lq,
                ygood,
                1,
            ):
                break
            _after_fixed_step(landed, fs, ist)


@njit(cache=True)
def _corrected_drift(rhs, p, y, h, inv_n, c1, f, f2, work):
    """``f`` ← the O(1/N) drift of :func:`em_full_kernel` (``corr = 1``) divided by h, from
    ``f = rhs(y)`` (``f2``, ``work``: scratch)."""
    n = y.shape[0]
    for i in range(n):
        work[i] = y[i] + h * f[i]
    rhs(work, p, f2)
    a = 0.5 * (h - inv_n) / h
    for i in range(n):
        f[i] += a * (f2[i] - f[i]) + inv_n * c1[i]


@njit(cache=True)
def sigma_change(S, Sp):
    """``max_ij |S_ij − Sp_ij| / max_k Sp_kk``: the change of Σ relative to its largest
    variance (∞ when that is not positive or S has a non-finite entry).

    Relative to the largest variance, not entry by entry: a component whose variance is
    small carries little of the noise, and its relative changes are fast exactly when it is
    small (BP from a random start: the Q and R variances, ~1 % of v's, grow tenfold over
    the first α ≈ 10 as v grows) — measured entry by entry they would set every interval
    to one step for no visible gain in the statistics (docs/finite-size.md). The order
    parameters are O(1) by construction (Q, R, T normalised by N; v, b, u, W O(1)), so the
    largest variance is a common scale."""
    n = S.shape[0]
    top = 0.0
    for i in range(n):
        top = max(top, Sp[i, i])
    if not top > 0.0:
        return np.inf
    out = 0.0
    for i in range(n):
        for j in range(i + 1):
            if not np.isfinite(S[i, j]):
                return np.inf
            out = max(out, abs(S[i, j] - Sp[i, j]))
    return out / top


@njit(cache=True)
def next_interval(change, interval, ctl):
    """The next refresh interval (steps) of an adaptive Σ: Σ moved by ``change``
    (:func:`sigma_change`) over the last ``interval`` steps, so ``interval·rtol/change``
    steps move it by ``rtol``; 0.9 of that, at most doubling (the rate is the last
    interval's) and at most ``ctl[C_MAX]`` steps."""
    grow = 2.0
    if change > 0.0:
        grow = min(grow, 0.9 * ctl[C_RTOL] / change)
    return max(np.int64(1), min(np.int64(ctl[C_MAX]), np.int64(interval * grow)))


@njit(cache=True)
def refresh_sigma(cov, y, pc, ctl, nx, step, S, Sp):
    """Adaptive refresh of Σ at ``step``: ``S`` = Σ(y), compared with the previous refresh's
    ``Sp`` (then overwritten with it); ``nx`` gets the next interval and refresh step.

    The change is the one the path actually saw over the last interval — the drift's and
    its own noise's. Both matter: AFA's and PEPITA's feedback b fluctuates by O(1), not
    O(N^{-1/2}), so Σ_bb ∝ b b moves with the noise, and a refresh schedule that followed
    only the drift let the spread of ε_g drift upwards (measured: docs/finite-size.md).
    The interval then adapts so that Σ moves by about ``rtol`` (of its largest variance)
    between refreshes: the Σ a step uses is within ~rtol of Σ at the step's own state."""
    cov(y, pc, S)
    if nx[NX_COUNT] == 0:
        knew = np.int64(ctl[C_FIRST])
    else:
        knew = next_interval(sigma_change(S, Sp), nx[NX_INTERVAL], ctl)
    Sp[:, :] = S
    nx[NX_INTERVAL] = knew
    nx[NX_NEXT] = step + knew
    nx[NX_COUNT] += 1


@njit(EM_FULL_SIGNATURE, parallel=True, cache=True)
def em_full_kernel(
    rhs,
    eg,
    cov,
    drift1,
    p,
    pc,
    Y,
    rec_alpha,
    rec_y,
    rec_eg,
    FS,
    IST,
    opts,
    seeds,
    inv_n,
    every,
    ctl,
    LS,
    SS,
    NX,
    C1,
    corr,
    max_call_steps,
):
    """Finite-N Euler–Maruyama on every order parameter (:mod:`theory.covariance`)::

        y_{n+1} = y_n + h f(y_n) + √(h/N) L ξ_n,    L Lᵀ = Σ(y_m),  ξ_n ~ N(0, I_n)

    ``cov(y, pc, S)`` writes Σ = Cov[f] (n×n); ``inv_n`` = 1/N. m is the step of the last
    refresh of Σ and its factor ``L`` (kept in ``LS`` (P, n, n) between calls):

    * ``every ≥ 1``: every ``every`` steps (m = the last multiple of ``every`` ≤ n;
      ``every = 1``: Σ at every step, the plain scheme);
    * ``every = 0``: adaptive, per path (:func:`refresh_sigma`): each refresh compares Σ
      with the previous refresh's (kept in ``SS``) and sizes the next interval so that Σ
      moves by about ``ctl[C_RTOL]`` of its largest variance between refreshes.

    ``NX`` (P, 3) holds each path's refresh schedule (``NX_NEXT``, ``NX_INTERVAL``) and its
    count of Σ evaluations (``NX_COUNT``); like the noise it depends only on the path's own
    history, so the run is independent of how it is cut into calls. The noise of step n of
    path i is :func:`fill_normals` ``(seeds[i], n·⌈n_y/2⌉, ξ)``: independent of threads and
    of the cuts, as in :func:`em_kernel`.

    ``corr = 1``: the drift to O(1/N) (docs/finite-size.md, "The O(1/N) drift"): the
    increment ``h f`` above becomes ::

        h f(y_n) + ½ (h − 1/N) [f(y_n + h f(y_n)) − f(y_n)] + (h/N) c(y_m)

    i.e. Heun's step (no O(h) drift error of its own) plus h times the discreteness of
    online learning, ``−f′f/(2N)``, with ``f′f ≈ [f(y + h f) − f(y)]/h`` (at h = 1/N this is
    exactly Euler with the sample step), plus the finite-N part of the per-sample mean,
    ``c = drift1(y, pc, ·)`` (:mod:`theory.covariance`), refreshed with Σ and kept per path
    in ``C1`` (P, n). ``corr = 0``: the plain step (``drift1`` and ``C1`` unused). Other
    arguments as :func:`em_kernel`.
    """
    P, n = Y.shape
    K = np.int64(opts[O_K])
    M = np.int64(opts[O_M])
    half = (n + 1) // 2
    for ip in prange(P):
        fs = FS[ip]
        ist = IST[ip]
        if ist[I_CODE] != CODE_RUNNING:
            continue
        base = np.uint64(seeds[ip])
        y = Y[ip]
        Lc = LS[ip]
        nx = NX[ip]
        Sp = SS[ip]
        f = np.empty(n)
        ynew = np.empty(n)
        S = np.empty((n, n))
        xi = np.empty(n)
        Lq = np.empty((K + M, K + M))
        ygood = np.empty(n)
        c1 = C1[ip]
        f2 = np.empty(n)
        if ist[I_STARTED] == 0:
            _start(eg, p, y, rec_alpha, rec_y[ip], rec_eg[ip], fs, ist, opts, Lq, ygood)
        for _ in range(max_call_steps):
            if ist[I_CODE] != CODE_RUNNING:
                break
            h, anew, landed = fixed_step_size(fs, ist, rec_alpha, opts)
            rhs(y, p, f)
            ist[I_NFEV] += 1
            step = ist[I_NSTEPS]
            refreshed = False
            if every > 0 and step % every == 0:
                cov(y, pc, S)
                nx[NX_COUNT] += 1
                chol_psd(S, Lc)
                refreshed = True
            elif every == 0 and step >= nx[NX_NEXT]:
                refresh_sigma(cov, y, pc, ctl, nx, step, S, Sp)
                chol_psd(S, Lc)
                refreshed = True
            if corr:
                if refreshed:
                    drift1(y, pc, c1)
                _corrected_drift(rhs, p, y, h, inv_n, c1, f, f2, ynew)
                ist[I_NFEV] += 1
            fill_normals(base, step * half, xi)
            sh = np.sqrt(h * inv_n)
            for i in range(n):
                s = 0.0
                for j in range(i + 1):
                    s += Lc[i, j] * xi[j]
                ynew[i] = y[i] + h * f[i] + sh * s
            if not _accept(
                eg,
                p,
                y,
                ynew,
                anew,
                rec_alpha,
                rec_y[ip],
                rec_eg[ip],
                fs,
                ist,
                opts,
                landed,
                Lq,
                ygood,
                1,
            ):
                break
            _after_fixed_step(landed, fs, ist)


__all__ = [
    "em_kernel",
    "em_full_kernel",
    "chol_psd",
    "sigma_change",
    "next_interval",
    "refresh_sigma",
    "base_seeds",
    "counter_normal_pair",
    "CHUNK_STEPS",
    "I_NEXT_REC",
    "F_ALPHA",
]
