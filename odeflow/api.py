"""The public API: :func:`solve` (deterministic ODEs) and :func:`solve_sde` (the AFA
feedback-noise ensemble); their results are in :mod:`odeflow.results`, the input checks in
:mod:`odeflow.inputs`.

``solve`` integrates ``dy/dα = f(y; p)`` for the flat order-parameter vector
``y`` of a system (:class:`theory.system.System`) built by the rule's model
(:mod:`theory.models`: derived from the rule, compiled once per process, cached on disk).
Nothing here depends on which model it is: the model's parameters, initial state and
result fields are declared by the model. The integration loop is compiled
(:mod:`odeflow.solvers`); Python only runs between chunks of steps, to draw the progress
bar.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from theory.runtime import cli
from theory.runtime.progress import ProgressBar
from theory.state import OrderParameters
from theory.system import describe, observables

from . import solvers as S
from .inputs import (
    check_bool,
    check_run,  # noqa: F401 (events)
    get_system,
)
from .inputs import (
    dt_note as _dt_note,
)
from .inputs import (
    params_vector as _params_vector,
)
from .inputs import (
    positive as _positive,
)
from .inputs import (
    quad_report as _quad_report,
)
from .inputs import (
    record_grid as _record_grid,
)
from .inputs import (
    rule_name as _rule_name,
)
from .results import Result, SDEResult, _jsonable
from .status import STATUS_DOC, first_nonfinite
from .status import describe as stop_message

__all__ = ["solve", "solve_sde", "Result", "SDEResult", "get_system", "METHODS", "SDE_METHODS"]

METHODS = S.METHODS
SDE_METHODS = ("euler-maruyama",)

#: relative tolerance of the positive-semi-definiteness test of the field covariance
#: [[Q, R], [Rᵀ, T]] (see solvers.cov_min_pivot); the same as theory.state's check
PSD_RTOL = 1e-9

# target wall time of one compiled chunk when a progress bar is shown
_CHUNK_SECONDS = 0.1


# ----------------------------------------------------------------------------- results
_STATUS_DOC = STATUS_DOC


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _message(code, fs, ist, opts, method):
    """(status, reason, human sentence) for a solver stop code (:class:`odeflow.status.Stop`)."""
    return stop_message(code, fs, ist, opts, method)


# -------------------------------------------------------------------------------- solve
def _drive(call, fs, ist, alpha_max, max_steps, bar, chunk0=1):
    """Run a compiled kernel in chunks until it stops, adapting the chunk length so that
    one chunk takes about ``_CHUNK_SECONDS``. Always chunked (with or without a progress
    bar): Python regains control between chunks, so Ctrl-C (KeyboardInterrupt) stops a run
    within a fraction of a second. The first chunk is ``chunk0`` steps (one: even a huge
    system shows its progress, and its cost per step, early). Chunking does not change the
    result: the kernels carry all their state in ``fs``/``ist``/``work``. One state is the
    one-path case of :func:`_drive_paths`, the driver of the SDE ensembles."""
    _drive_paths(lambda a, z, steps: call(steps), 1, fs[None, :], ist[None, :], bar, chunk0)


def _load_kernel(kernel, what):
    """The compiled loop (loaded from numba's disk cache, or compiled on first use — then
    say so, it takes a while)."""
    load = getattr(kernel, "dispatcher", None)
    if load is None:
        return kernel
    from theory.cache import load_numba

    with cli.activity(f"loading {what} (compiled on first use, then cached)"):
        return load_numba(load, S.__file__, kernel.__name__, what)


#: sizes K + M above which solve estimates the cost of one right-hand-side evaluation
_ESTIMATE_ABOVE = 48


def _rhs_cost(rule, system, activation, eta, eta_v, sigma, rule_params):
    """Seconds per evaluation of the right-hand side at the system's (K, M), extrapolated
    from a timed evaluation at a reduced size (same compiled kernel) with the cost law
    O(K² (K+M)²) of the two-summation-index terms (I4 sums over u1, u2 for every k, l)."""
    K, M = system.layout.K, system.layout.M
    s = (K + M) / 24.0
    k, m = max(1, round(K / s)), max(1, round(M / s))
    small = OrderParameters.from_spec(
        k, m, R=0.01, v=0.1, b=0.1 * np.ones(k), c=0.01 * np.ones(m), sigma_F2=0.09
    )
    if hasattr(rule, "rhs"):  # a prebuilt system: no other size to time
        return None
    sysk = get_system(rule, k, m, activation)
    p = _params_vector(sysk, small, eta, eta_v, sigma, rule_params)
    y = np.ascontiguousarray(sysk.layout.pack(small), dtype=float)
    dy = np.empty_like(y)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.05:
        sysk.rhs(y, p, dy)
        reps += 1
    t = (time.perf_counter() - t0) / reps
    return t * (K / k) ** 2 * ((K + M) / (k + m)) ** 2


def _announce_cost(rule, system, activation, eta, eta_v, sigma, rule_params, method):
    """Say up front (stderr) how long one step will take for a large system."""
    if not cli.verbose() or system.layout.K + system.layout.M <= _ESTIMATE_ABOVE:
        return
    t = _rhs_cost(rule, system, activation, eta, eta_v, sigma, rule_params)
    if t is None:
        return
    tab = S.TABLEAUX[method]  # rhs evaluations per step: stages, one
    per_step = (len(tab.b) - int(tab.fsal)) * t  # fewer when the last is reused (FSAL)
    msg = (
        f"estimate: one evaluation of the right-hand side takes ~{t:.3g} s at "
        f"K = {system.layout.K}, M = {system.layout.M} (cost ∝ K²(K+M)²), so one "
        f"{method} step ~{per_step:.3g} s"
    )
    if per_step > 1:
        msg += "; progress (and Ctrl-C) is seen between steps"
    cli.status(msg)


def _import_sde():
    from . import sde

    return sde


def _check_memory(T, n, K, M, paths, what):
    """Refuse up front a run whose records cannot fit in memory: the flat records
    (T × n doubles per path) plus their unpacked copies (Q as a full K×K matrix)."""
    per = T * (n + K * K + K * M + 3 * K + 2) * 8
    cli.check_memory(
        2 * paths * per,
        f"{what} with K = {K}, M = {M}, {T} records" + (f", {paths} paths" if paths > 1 else ""),
        hint="record fewer points (record) or use a smaller K",
    )


def check_solver_options(method="dopri5", dt=None, rtol=1e-8, atol=1e-10, quadrature=None):
    """Validate the integrator options of :func:`solve` without building anything.

    Returns ``(method, dt, rtol, atol)`` normalised (floats, None where unused); raises
    ValueError naming the option and what is allowed. Used by :func:`solve` and by
    :func:`odeflow.compare.compare`, which must refuse a bad ``rtol`` *before* it runs the
    simulations (issue 21).
    """
    if not isinstance(method, str) or method not in S.KERNELS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(S.METHODS)}")
    if method in S.FIXED_STEP:
        if dt is None:
            raise ValueError(f"method {method!r} is fixed-step: give dt (a positive step in α)")
        dt = _positive("dt", dt)
    else:
        dt = _positive("dt", dt, allow_none=True)
        rtol = _positive("rtol", rtol)
        atol = _positive("atol", atol)
    if quadrature is not None and quadrature is not False:
        from theory.codegen_quad import quad_options

        quad_options(quadrature)  # the form; ranges depend on the rule, checked when built
    return method, dt, rtol, atol


# Long on purpose: about half is the NumPy-style docstring; the body reads top to bottom: check,
# build, integrate, package
def solve(
    rule,
    init,
    *,
    eta,
    eta_v=None,
    sigma=0.0,
    activation="erf",
    alpha_max,
    method="dopri5",
    dt=None,
    rtol=1e-8,
    atol=1e-10,
    record=None,
    eg_tol=None,
    max_steps=10_000_000,
    diverge_threshold=1e6,
    rule_params=None,
    progress=False,
    quadrature=None,
    events=None,
    dense_output=False,
    eta_u=None,
    theta=None,
) -> Result:
    """Integrate the order-parameter ODEs of ``rule`` from ``init`` to ``alpha_max``.

    Parameters
    ----------
    rule : str, theory.rules.Rule or system
        "bp", "fa", "afa", "pepita", "pepita-forward", "ff", a Rule, a rule of a registered
        model (:mod:`theory.models`), or a prebuilt system (:class:`theory.system.System`;
        at least ``rhs``, ``eg``, ``layout``, ``params``, ``rule``). The rule's model
        decides the parameters it takes, what its initial state needs and the result's
        own fields.
    init : OrderParameters or dict of arrays
        Initial state at α = 0; K and M are taken from it. FA needs ``b``; AFA and
        pepita-forward need ``b``, ``c`` and ``sigma_F2``; pepita also ``F_norm2``.
    eta, eta_v : float
        Learning rates of the first layer (η, scaled η/√N) and second layer (η_v, scaled
        η_v/N). ``eta_v`` defaults to ``eta``.
    sigma : float
        Teacher output-noise standard deviation σ.
    activation : {"erf", "linear", "relu", "tanh", "sigmoid"} or sympy expression of z
        (``theory.activations``). erf and linear use closed forms where the rule allows.
    alpha_max : float
        Final time α (samples / N); must be positive.
    quadrature : None, bool, str or dict
        None: closed-form averages where they exist, Gaussian quadrature otherwise
        (``theory.codegen_quad``); False: closed forms only; True, a scheme name
        ("auto", "gauss-hermite", "sobol", "marginal" — the last for rules with
        ``δ = h(λ) e`` such as bp, fa, afa: docs/quadrature.md) or ``{"scheme", "n",
        "seed"}``: force quadrature
        with these options (``theory.quadrature.make_rule``). A quadrature run reports its
        rule and error estimate in ``Result.quadrature``.
    method : {"dopri5", "tsit5", "bs3", "rk4", "euler"}
        Butcher tableaux (:mod:`odeflow.tableaux`). Adaptive, with dense output (``rtol``,
        ``atol``; ``dt`` if given is the first trial step): "dopri5" Dormand–Prince 5(4),
        "tsit5" Tsitouras 5(4), "bs3" Bogacki–Shampine 3(2). Fixed step ``dt`` (required),
        shortened where needed to land exactly on every recording time: "rk4", "euler".
    rtol, atol : float
        Adaptive methods' tolerances; the error test is
        ``‖err_i / (atol + rtol·|y_i|)‖_rms ≤ 1``.
    record : dict or float, optional
        Recording grid (:func:`theory.state.record_alphas`): ``{"every": dα}``,
        ``{"log": n, "min": α_min}``, ``{"alpha": [...]}``, a number dα, or a list of α
        (shorthand for ``{"alpha": [...]}``). Default
        ``{"log": 200, "min": min(0.01, alpha_max/1000)}`` (plus α = 0).
    eg_tol : float, optional
        Stop (status 1) as soon as ε_g < eg_tol.
    max_steps : int
        Budget of accepted steps (status -1, reason "max_steps", when exhausted).
    diverge_threshold : float
        Stop (status -1, reason "diverged") when ``max|y|`` or ε_g exceeds it, when the
        state becomes non-finite, or when Q loses positive semi-definiteness.
    rule_params : dict, optional
        Values of a custom Rule's extra parameters.
    progress : bool
        Draw a progress bar on stderr (for runs longer than 0.5 s).
    events : callable or list of callables, optional
        Conditions ``event(alpha, state) -> float`` located on the interpolant of every
        step (scipy's convention: attributes ``terminal``, ``direction``; see
        :mod:`odeflow.events`, e.g. :func:`odeflow.events.plateau_exit`). Results in
        ``Result.alpha_events``, ``Result.state_events``; a terminal event stops the run
        (status 1, reason "event").
    dense_output : bool
        dopri5, tsit5, bs3: keep every step's continuous extension; ``Result.sol(alpha)``.
    eta_u, theta : float, optional
        Forward-Forward (rule 'ff', docs/ff-theory.md, :mod:`theory.ff`): label-weight rate
        η_u (default eta) and goodness threshold θ > 0 (default K/2). The state needs
        ``u``; the result carries ``u``, ``loss`` and ``gap`` (``v`` is None).

    Returns
    -------
    Result

    Raises
    ------
    ValueError
        Unknown method, missing/non-positive ``dt`` for a fixed-step method, non-positive
        ``alpha_max``, tolerances or thresholds, an invalid ``init``, or a state lacking
        what the rule needs.
    """
    t_start = time.perf_counter()
    method, dt, rtol, atol = check_solver_options(method, dt, rtol, atol)
    alpha_max = _positive("alpha_max", alpha_max)
    eg_tol = _positive("eg_tol", eg_tol, allow_none=True)
    diverge_threshold = _positive("diverge_threshold", diverge_threshold)
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    max_steps = int(max_steps)
    dense_output = check_bool("dense_output", dense_output)
    from .events import _as_events

    _as_events(events)  # a bad event fails here, before anything is compiled
    # the model's one validator (theory.models): its parameters and its initial state
    model, state, mparams, (eta, eta_v, sigma, rule_params) = check_run(
        rule, init, rule_params, dict(eta=eta, eta_v=eta_v, sigma=sigma, eta_u=eta_u, theta=theta)
    )
    rec, record_spec = _record_grid(record, alpha_max)

    note = _dt_note(dt, rec) if method in S.FIXED_STEP else None
    system = get_system(rule, state.K, state.M, activation, quadrature)
    t_sys = time.perf_counter()
    _check_memory(len(rec), system.layout.n, state.K, state.M, 1, "odeflow solve")
    p = _params_vector(system, state, eta, eta_v, sigma, rule_params)
    _announce_cost(rule, system, activation, eta, eta_v, sigma, rule_params, method)
    lay = system.layout
    y = np.ascontiguousarray(lay.pack(state), dtype=float)
    n = y.shape[0]
    T = rec.shape[0]
    rec_y = np.zeros((T, n))
    rec_eg = np.zeros(T)
    opts = S.make_opts(
        alpha_max,
        dt if method in S.FIXED_STEP else rtol,
        atol,
        eg_tol,
        diverge_threshold,
        PSD_RTOL,
        max_steps,
        lay.nQ,
        lay.K,
        state.T,
    )
    from .events import SEGMENTS_PER_CALL, EventTracker

    if dense_output and method not in S.DENSE_METHODS:
        dm = [repr(m) for m in S.DENSE_METHODS]
        raise ValueError(
            f"dense_output needs method {', '.join(dm[:-1])} or {dm[-1]} (a "
            f"continuous extension), got {method!r}; events work with every method"
        )
    tracker = EventTracker(events, system, p, state, method, dense_output)
    fs, ist, work = S.new_state(n, SEGMENTS_PER_CALL if tracker.active else 0)
    if method not in S.FIXED_STEP and dt is not None:
        fs[S.F_H] = dt
    kernel = _load_kernel(S.KERNELS[method], f"the {method} integrator")

    def call(steps):
        kernel(system.rhs, system.eg, p, y, rec, rec_y, rec_eg, fs, ist, work, opts, steps)

    bar = ProgressBar(alpha_max, label=f"{_rule_name(system)} {method}", enabled=progress)
    if tracker.active:
        tracker.start(0.0, y)
        tracker.drive(call, fs, ist, work, bar if progress else None)
    else:
        _drive(call, fs, ist, alpha_max, max_steps, bar)
    code = int(ist[S.I_CODE])
    nr = int(ist[S.I_NEXT_REC])
    if tracker.terminal is None:
        status, reason, message = _message(code, fs, ist, opts, method)
        if code == S.CODE_NONFINITE:  # say which order parameter broke down first
            what = first_nonfinite(system, p, y)
            if what is not None:
                message += f"; first non-finite: {what}"
    else:  # stop at the terminal event (odeflow.events)
        a_ev, y_ev, i_ev = tracker.terminal
        y[:] = y_ev
        fs[S.F_ALPHA] = a_ev
        nr = int(np.searchsorted(rec[:nr], a_ev, side="right"))
        status, reason = 1, "event"
        message = (
            f"stopped by terminal event {i_ev} "
            f"({getattr(tracker.events[i_ev][0], '__name__', 'event')}) at α = "
            f"{_fmt(a_ev)}"
        )
    bar.close(fs[S.F_ALPHA], note=message)

    parts = lay.unpack(rec_y[:nr])
    final = lay.state(y, state)
    ev_alpha = ev_y = None
    if tracker.events:
        ev_alpha, ev_y = tracker.results()
        keep = [a <= fs[S.F_ALPHA] for a in ev_alpha]  # none past a reset of the final state
        ev_alpha = [a[k] for a, k in zip(ev_alpha, keep)]
        ev_y = [yy[k] for yy, k in zip(ev_y, keep)]
    params = dict(
        model=model.name,
        rule=_rule_name(system),
        K=state.K,
        M=state.M,
        activation=getattr(system, "activation", activation),
        **mparams,
        alpha_max=alpha_max,
        method=method,
        dt=dt,
        rtol=None if method in S.FIXED_STEP else rtol,
        atol=None if method in S.FIXED_STEP else atol,
        record=_jsonable(record_spec),
        eg_tol=eg_tol,
        max_steps=max_steps,
        diverge_threshold=diverge_threshold,
        rule_params=dict(rule_params or {}),
        system=_jsonable(describe(system)),
    )
    quad = _quad_report(system, state, final, eta, eta_v, sigma, rule_params)
    if quad is not None:
        params["quadrature"] = quad
    if note:
        params["notes"] = [note]
    t_end = time.perf_counter()
    return Result(
        alpha=rec[:nr].copy(),
        eg=rec_eg[:nr].copy(),
        Q=parts["Q"],
        R=parts["R"],
        fields=_model_fields(model, system, parts, rec_y[:nr], p),
        model=model.name,
        status=status,
        reason=reason,
        message=message,
        nfev=int(ist[S.I_NFEV]),
        n_steps=int(ist[S.I_NSTEPS]),
        n_rejected=int(ist[S.I_NREJECT]),
        alpha_final=float(fs[S.F_ALPHA]),
        init=state,
        final=final,
        params=params,
        timings={"system": t_sys - t_start, "run": t_end - t_sys},
        alpha_events=ev_alpha,
        state_events=ev_y,
        sol=tracker.dense_solution(float(fs[S.F_ALPHA])),
        layout=lay,
    )


def _model_fields(model, system, parts, rec_y, p) -> dict:
    """The model's own result arrays: its layout fields beyond Q and R, then the named
    observables of its system on the records (theory.models.Model.result_fields)."""
    out = {k: parts.get(k) for k in model.state_fields}
    obs = observables(system, rec_y, p) if len(rec_y) else {}
    for k in model.observables:
        val = obs.get(k)
        out[k] = None if val is None else np.asarray(val, dtype=float)
    return out


# ---------------------------------------------------------------------------- solve_sde
def _nan_stats(x, alive):
    """Mean and std (ddof=1, 0 for a single path) over axis 0 of the alive entries."""
    m = alive.reshape(alive.shape + (1,) * (x.ndim - 2))
    cnt = m.sum(axis=0)
    xs = np.where(m, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xs.sum(axis=0) / cnt
        var = np.where(m, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(cnt - 1, 1)
    return mean, np.sqrt(var)


def _drive_paths(call, P, FS, IST, bar, chunk0=1):
    """The one chunking driver (of :func:`solve` through :func:`_drive`, and of
    :func:`solve_sde`): run ``call(a, z, steps)`` — the compiled kernel on states (paths)
    ``a:z`` for at most ``steps`` steps — until every state's stop code (``IST[:, I_CODE]``)
    is set. Paths go in groups of G, ``steps`` per call, both adapted so that one call
    takes about ``_CHUNK_SECONDS``: Python regains control often (Ctrl-C, progress
    ``bar``, updated with the mean α of the paths) whatever K and the number of paths. The
    kernels keep every path's state in ``FS``/``IST`` and a path's noise depends only on
    its base seed and step index (odeflow.sde), so neither the grouping nor the call length
    changes the result."""
    G, steps = P, chunk0
    while np.any(IST[:, S.I_CODE] == S.CODE_RUNNING):
        a = 0
        while a < P:
            z = min(P, a + G)
            t = time.perf_counter()
            call(a, z, steps)
            dt_call = time.perf_counter() - t
            a = z
            bar.update(float(np.mean(FS[:, S.F_ALPHA])))  # mean α over the paths
            if dt_call < 0.5 * _CHUNK_SECONDS:
                if G < P:
                    G = min(2 * G, P)
                else:
                    steps = min(2 * steps, 1 << 40)
            elif dt_call > 2 * _CHUNK_SECONDS:
                if steps > 1:
                    steps = max(steps // 2, 1)
                else:
                    G = max(G // 2, 1)


def _positive_int(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer, float)) or int(x) != x or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(x)


def _noise_system(model, rule, system, state, N, activation, eta, eta_v, sigma, rule_params,
                  noise_quadrature):
    """``(cov, pc)``: the compiled Σ(y) of the rule's model (theory.covariance) and its
    parameter vector at size N."""
    from theory.covariance import noise_system

    if hasattr(rule, "rhs"):
        raise ValueError(
            "solve_sde with N needs a rule (a name or a Rule), not a prebuilt system: "
            "the covariance Σ(y) is built from the rule's signals"
        )
    ns = noise_system(rule, state.K, state.M, activation)
    qrule = None
    if noise_quadrature is not None:
        from theory.codegen_quad import quad_options
        from theory.quadrature import make_rule

        q = quad_options(noise_quadrature)
        dim = ns.dim(sigma)
        if q["scheme"] == "auto":
            q["scheme"] = "sobol"
        qrule = make_rule(dim, q["scheme"], q["n"], q["seed"])
    pc = ns.params(state, eta, eta_v, sigma, N=N, qrule=qrule, **dict(rule_params or {}))
    return ns, np.ascontiguousarray(pc, dtype=float)


# Long on purpose: about half is the docstring; the body reads top to bottom like solve's:
# check, build, integrate (one kernel call site per noise model), package
def solve_sde(
    rule="afa",
    init=None,
    *,
    eta,
    eta_v=None,
    sigma=0.0,
    activation="erf",
    alpha_max,
    dt,
    n_paths,
    seed=None,
    record=None,
    method="euler-maruyama",
    diverge_threshold=1e6,
    rule_params=None,
    progress=False,
    quadrature=None,
    eta_u=None,
    theta=None,
    N=None,
    noise_quadrature=None,
    noise_every=1,
) -> SDEResult:
    """Euler–Maruyama ensemble of the order parameters at finite N (docs/finite-size.md),
    or of AFA's feedback noise alone (docs/theory.md §5).

    Without ``N`` (the behaviour of earlier versions, bit for bit): Q, R and v follow their
    ODEs given the path of b; b gets Gaussian noise with covariance ``Σ(y) dα``
    (``system.noise``, η² σ_F² E[δ_k δ_l]); adaptive-feedback rules only.

    With ``N``: every order parameter y (Q, R, v, b; Q, R, u for Forward-Forward) obeys the
    diffusion approximation

        dy = E[f](y) dα + Σ(y)^{1/2} dB_α / √N,     Σ = Cov[f]

    (``f`` = N × the per-sample increment; :mod:`theory.covariance`), for every rule of the
    committee (bp, fa, afa, pepita, pepita-forward, user rules, any activation) and for
    "ff". The drift is the rule's ODE right-hand side (closed forms where they exist); Σ is
    a fixed Gaussian quadrature (``noise_quadrature``). A path whose field covariance
    ``[[Q, R], [Rᵀ, T]]`` stops being positive semi-definite (rare at N ≥ 100: Q ≈ I is far
    from singular) is stopped there like a divergence (reason in ``message``; statistics use
    the surviving paths), never projected: a projection would bias exactly the paths the
    statistics are about.

    Euler–Maruyama with fixed step ``dt`` (landing exactly on recording times); ``n_paths``
    independent paths in parallel, reproducible for a given ``seed`` (see
    :mod:`odeflow.sde`).

    Parameters are those of :func:`solve` (``eta_u``, ``theta``: Forward-Forward's) plus

    n_paths : int ≥ 1
    seed : int or None
        None: fresh entropy, recorded in ``params['seed']``.
    method : "euler-maruyama"
    N : float ≥ 1, optional
        Input dimension of the finite-N noise on every order parameter (see above).
    noise_quadrature : None, str or dict
        The rule of Σ's expectations (``{"scheme", "n", "seed"}`` as ``quadrature`` of
        :func:`solve`); default :func:`theory.covariance.default_noise_rule` (FF: its own
        split rule). Only with ``N``.
    noise_every : int ≥ 1
        Refactor Σ every this many steps (1: every step, the plain Euler–Maruyama
        scheme). Larger values freeze the diffusion over ``noise_every·dt`` (an O(that)
        error in Σ) to save time. Only with ``N``.

    Returns
    -------
    SDEResult
        ``res.N`` is N (None without it); ``res.mean(name)``, ``res.std(name)``.

    Raises
    ------
    ValueError
        Without N, a rule without adaptive feedback; unknown method, non-positive dt,
        alpha_max, n_paths or N, or an invalid init.
    """
    with cli.activity("loading the Euler–Maruyama kernel (compiled on first use, then cached)"):
        from theory.cache import load_numba

        E = load_numba(
            _import_sde, Path(S.__file__).with_name("sde.py"), "*", "the Euler–Maruyama kernel"
        )

    t_start = time.perf_counter()
    if method not in SDE_METHODS:
        raise ValueError(f"unknown SDE method {method!r}; allowed: {', '.join(SDE_METHODS)}")
    if init is None:
        raise ValueError("solve_sde needs an initial state init (with b, c, sigma_F2)")
    alpha_max = _positive("alpha_max", alpha_max)
    if dt is None:
        raise ValueError("solve_sde is fixed-step (Euler–Maruyama): give dt")
    dt = _positive("dt", dt)
    diverge_threshold = _positive("diverge_threshold", diverge_threshold)
    n_paths = _positive_int("n_paths", n_paths)
    if N is not None:
        from theory.models import check_number

        N = check_number("N", N, 1.0)
        noise_every = _positive_int("noise_every", noise_every)
    elif noise_quadrature is not None or noise_every != 1:
        raise ValueError("noise_quadrature and noise_every apply only with N (finite-N noise)")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))
    model, state, mparams, (eta, eta_v, sigma, rule_params) = check_run(
        rule, init, rule_params, dict(eta=eta, eta_v=eta_v, sigma=sigma, eta_u=eta_u, theta=theta)
    )
    rec, record_spec = _record_grid(record, alpha_max)
    note = _dt_note(dt, rec)
    system = get_system(rule, state.K, state.M, activation, quadrature)
    lay = system.layout
    if N is None and (getattr(system, "noise", None) is None or not lay.adaptive_b):
        raise ValueError(
            f"rule {_rule_name(system)!r} has no stochastic feedback; solve_sde "
            "without N needs an adaptive-feedback rule such as 'afa' (give N for the "
            "finite-N noise of every order parameter, or use solve for the ODEs)"
        )
    p = _params_vector(system, state, eta, eta_v, sigma, rule_params)
    if N is not None:
        ns, pc = _noise_system(
            model, rule, system, state, N, activation, eta, eta_v, sigma, rule_params,
            noise_quadrature,
        )
    t_sys = time.perf_counter()
    y0 = np.ascontiguousarray(lay.pack(state), dtype=float)
    n = y0.shape[0]
    T = rec.shape[0]
    P = n_paths
    _check_memory(T, n, state.K, state.M, P, "odeflow sde")
    Y = np.tile(y0, (P, 1))
    rec_y = np.full((P, T, n), np.nan)
    rec_eg = np.full((P, T), np.nan)
    FS = np.zeros((P, S.N_FS))
    IST = np.zeros((P, S.N_IST), dtype=np.int64)
    opts = S.make_opts(
        alpha_max, dt, 1.0, None, diverge_threshold, PSD_RTOL, 1 << 62, lay.nQ, lay.K, state.T
    )
    seeds = E.base_seeds(seed, P).view(np.int64)
    bar = ProgressBar(alpha_max, label=f"{_rule_name(system)} SDE ×{P}", enabled=progress)
    if N is None:
        b0 = lay.slices["b"].start

        def call(a, z, steps):
            E.em_kernel(
                system.rhs, system.eg, system.noise, p, Y[a:z], rec, rec_y[a:z], rec_eg[a:z],
                FS[a:z], IST[a:z], opts, seeds[a:z], b0, steps,
            )
    else:
        LS = np.zeros((P, n, n))

        def call(a, z, steps):
            E.em_full_kernel(
                system.rhs, system.eg, ns.cov, p, pc, Y[a:z], rec, rec_y[a:z], rec_eg[a:z],
                FS[a:z], IST[a:z], opts, seeds[a:z], 1.0 / N, noise_every, LS[a:z], steps,
            )

    _drive_paths(call, P, FS, IST, bar)

    codes = IST[:, S.I_CODE]
    diverged = codes < 0
    alpha_stop = np.where(diverged, FS[:, S.F_STOP_ALPHA], FS[:, S.F_ALPHA])
    alive = np.arange(T)[None, :] < IST[:, S.I_NEXT_REC][:, None]
    n_alive = alive.sum(axis=0)
    nd = int(diverged.sum())
    if nd == 0:
        status, message = (
            0,
            (
                f"all {P} paths reached α = alpha_max = {_fmt(alpha_max)} "
                f"({int(IST[0, S.I_NSTEPS])} steps each)"
            ),
        )
    else:
        first = int(np.argmin(np.where(diverged, alpha_stop, np.inf)))
        _, _, why = _message(int(codes[first]), FS[first], IST[first], opts, "euler")
        status = -1
        npsd = int(np.sum(codes == S.CODE_PSD))
        psd = f" ({npsd} of them lost a positive semi-definite Q)" if npsd else ""
        message = (
            f"{nd} of {P} paths diverged{psd} (their records stop there; statistics use "
            f"the surviving paths); earliest, path {first}: {why}"
        )
    bar.close(alpha_max if nd == 0 else float(np.max(alpha_stop)), note=message)

    parts = lay.unpack(rec_y)
    eg_mean, eg_std = _nan_stats(rec_eg, alive)
    b_mean = b_std = None
    if parts.get("b") is not None:
        b_mean, b_std = _nan_stats(parts["b"], alive)
    params = dict(
        model=model.name,
        rule=_rule_name(system),
        K=state.K,
        M=state.M,
        activation=getattr(system, "activation", activation),
        **({"eta": eta, "eta_v": eta_v, "sigma": sigma} if N is None else mparams),
        alpha_max=alpha_max,
        method=method,
        dt=dt,
        record=_jsonable(record_spec),
        n_paths=P,
        seed=seed,
        diverge_threshold=diverge_threshold,
        chunk_steps=E.CHUNK_STEPS,
        rule_params=dict(rule_params or {}),
    )
    if N is not None:
        params.update(N=N, noise_every=noise_every, noise_quadrature=ns.describe_rule(pc))
    if note:
        params["notes"] = [note]
    t_end = time.perf_counter()
    return SDEResult(
        alpha=rec.copy(),
        eg=rec_eg,
        Q=parts["Q"],
        R=parts["R"],
        v=parts.get("v"),
        b=parts.get("b"),
        u=parts.get("u"),
        alive=alive,
        n_alive=n_alive,
        eg_mean=eg_mean,
        eg_std=eg_std,
        b_mean=b_mean,
        b_std=b_std,
        diverged=diverged,
        alpha_stop=alpha_stop,
        status=status,
        message=message,
        nfev=int(IST[:, S.I_NFEV].sum()),
        init=state,
        params=params,
        timings={"system": t_sys - t_start, "run": t_end - t_sys},
        N=N,
    )
