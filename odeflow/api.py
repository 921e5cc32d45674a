"""The public API: :func:`solve` (deterministic ODEs; :func:`odeflow.solve_sde`, the
stochastic paths, is in :mod:`odeflow.sde_solve` and shares this module's driver); results
are in :mod:`odeflow.results`, the input checks in :mod:`odeflow.inputs`.

``solve`` integrates ``dy/dα = f(y; p)`` for the flat order-parameter vector
``y`` of a system (:class:`theory.system.System`) built by the rule's model
(:mod:`theory.models`: derived from the rule, compiled once per process, cached on disk).
Nothing here depends on which model it is: the model's parameters, initial state and
result fields are declared by the model. The integration loop is compiled
(:mod:`odeflow.solvers`); Python only runs between chunks of steps, to draw the progress
bar. The loop runs in a worker thread that Ctrl-C aborts even inside one long right-hand
side (:func:`_interruptible_call`, :mod:`theory.runtime.interruptible`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from theory.divergence import EG_MAX
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
from .inputs import (
    select_quadrature as _select_quadrature,
)
from .results import Result, _jsonable
from .status import STATUS_DOC, first_nonfinite
from .status import describe as stop_message

__all__ = ["solve", "Result", "get_system", "METHODS", "SDE_METHODS"]

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
def _drive(call, fs, ist, alpha_max, max_steps, bar, chunk0=1, between=None):
    """Run a compiled kernel in chunks until it stops, adapting the chunk length so that
    one chunk takes about ``_CHUNK_SECONDS``. Always chunked (with or without a progress
    bar): Python regains control between chunks, so Ctrl-C (KeyboardInterrupt) stops a run
    within a fraction of a second; inside one chunk too, when ``call`` is
    :func:`_interruptible_call` (a chunk is at least one step, i.e. several right-hand
    sides, which take hours at K = 1000). The first chunk is ``chunk0`` steps (one: even a huge
    system shows its progress, and its cost per step, early). Chunking does not change the
    result: the kernels carry all their state in ``fs``/``ist``/``work``. One state is the
    one-path case of :func:`_drive_paths`, the driver of the SDE ensembles. With
    ``between`` (the live quadrature re-check, :class:`_LiveQuadrature`), a chunk runs in
    pieces and ``between(k)`` after each piece of k steps returns the next piece's length."""
    piece = [1]

    def chunk(steps):
        if between is None:
            call(steps)
            return
        left = steps
        while left > 0 and ist[S.I_CODE] == S.CODE_RUNNING:
            k = min(left, piece[0])
            call(k)
            left -= k
            piece[0] = between(k)

    _drive_paths(lambda a, z, steps: chunk(steps), 1, fs[None, :], ist[None, :], bar, chunk0)


class _LiveQuadrature:
    """The live tolerance re-check of a quadrature run (:func:`theory.tolerance.live`),
    run between chunks of steps: each time the state has moved by
    :data:`theory.tolerance.RECHECK_MOVE` (relative, max norm) since the last state that
    passed, and where the run stops. A miss takes the run back to that state (``y``,
    ``fs``, ``ist``, ``work`` as they were; the rhs count keeps growing) and either
    continues with the finer rule ``auto`` picks there (``system``, ``p``) or stops it
    (``failure``: solve reports status −1). Returns True when the rule changed."""

    def __init__(self, system0, system, qsel, state, args, p_of, y, fs, ist, work, rec):
        self.system0, self.system, self.p_of = system0, system, p_of
        self.rec = rec  # the record α's (a stop keeps those already written up to its α)
        self.state, self.args = state, args  # (eta, eta_v, sigma, rule_params)
        self.auto = bool((qsel or {}).get("auto"))
        # a rule that did not meet rtol at the start (auto's fallback, with its warning)
        # is not re-checked live: the post-run re-check reports it
        self.active = bool((qsel or {}).get("selected", {}).get("meets", True))
        self.warning = None
        self.arrays = (y, fs, ist, work)
        self.p = p_of(system)
        f0 = np.empty_like(y)
        system.rhs(y, self.p, f0)
        self.scale = float(np.max(np.abs(f0)))
        self.snap = tuple(a.copy() for a in self.arrays)
        self.checks, self.refined, self.failure = [], [], None
        self.ypiece, self.piece = y.copy(), 1

    def next_piece(self) -> int:
        """Steps in the next piece of a chunk: doubled while a piece moves the state by
        less than a quarter of RECHECK_MOVE, halved above half of it (so the checks come
        about every RECHECK_MOVE of movement, not once per 0.1 s chunk)."""
        from theory.tolerance import RECHECK_MOVE

        y = self.arrays[0]
        d = np.max(np.abs(y - self.ypiece)) / max(1.0, float(np.max(np.abs(self.ypiece))))
        self.ypiece = y.copy()
        if d < RECHECK_MOVE / 4:
            self.piece = min(2 * self.piece, 1 << 40)
        elif d > RECHECK_MOVE / 2:
            self.piece = max(1, self.piece // 2)
        return self.piece

    def __call__(self) -> bool:
        from theory.tolerance import RECHECK_MOVE, live

        y, fs, ist, work = self.arrays
        ylast = self.snap[0]
        move = np.max(np.abs(y - ylast)) / max(1.0, float(np.max(np.abs(ylast))))
        stopped = int(ist[S.I_CODE]) != S.CODE_RUNNING
        if not self.active or not (move >= RECHECK_MOVE or stopped):
            return False
        if not np.all(np.isfinite(y)):
            return False
        alpha = float(fs[S.F_ALPHA])
        verdict, val, e = live(
            self.system0,
            self.system,
            self.state,
            y,
            alpha,
            *self.args,
            scale=self.scale,
            auto=self.auto,
        )
        self.checks.append((alpha, e))
        if verdict in ("ok", "skip"):
            self.snap = tuple(a.copy() for a in self.arrays)
            return False
        if verdict == "warn":  # auto, nothing affordable meets rtol here: go on, say so
            self.warning, self.active = val, False
            return False
        nfev, written = int(ist[S.I_NFEV]), int(ist[S.I_NEXT_REC])
        for a, saved in zip(self.arrays, self.snap):
            a[...] = saved
        ist[S.I_NFEV] = nfev
        if verdict == "stop":
            # the records up to the restored α were written from states that met rtol; the
            # first snapshot precedes even the α = 0 record, which a stop there would drop
            keep = int(np.searchsorted(self.rec[:written], float(fs[S.F_ALPHA]), side="right"))
            ist[S.I_NEXT_REC] = max(int(ist[S.I_NEXT_REC]), keep)
            self.failure = f"{val}; stopped at α = {_fmt(float(fs[S.F_ALPHA]))}, the last "
            self.failure += "state that met it"
            ist[S.I_CODE] = S.CODE_DONE  # ends the loop; solve reports the failure
            return False
        old = self.system.describe_rule(self.args[2])
        self.system = val[0]
        self.p = self.p_of(self.system)
        if ist[S.I_STARTED]:  # the adaptive loops keep f(y) between calls: the new rule's
            self.system.rhs(y, self.p, work[0])
        new = self.system.describe_rule(self.args[2])
        self.refined.append({"alpha": alpha, "estimate": e, "from": old, "to": new})
        return True


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


def _announce_cost(
    rule, system, activation, eta, eta_v, sigma, rule_params, method, progress=False
):
    """Say up front (stderr: in the commands and with ``progress=True``) how long one step
    will take for a large system."""
    if not (cli.verbose() or progress) or system.layout.K + system.layout.M <= _ESTIMATE_ABOVE:
        return
    if getattr(system, "model", "") == "deep":  # the cost law below is the committee's
        return
    t = _rhs_cost(rule, system, activation, eta, eta_v, sigma, rule_params)
    if t is None:
        return
    tab = S.TABLEAUX[method]  # rhs evaluations per step: stages, one
    per_step = (len(tab.b) - int(tab.fsal)) * t  # fewer when the last is reused (FSAL)
    msg = (
        f"estimate: one evaluation of the right-hand side takes ~{_dur(t)} at "
        f"K = {system.layout.K}, M = {system.layout.M} (cost ∝ K²(K+M)²), so one "
        f"{method} step ~{_dur(per_step)}"
    )
    if per_step > 1:
        msg += f"; progress is seen between steps, {_ctrl_c(system)}"
    _say(msg, progress)


#: seconds after which a first step still running is explained (and its cost measured)
_NOTICE_SECONDS = 0.5


def _dur(seconds: float) -> str:
    """``0.52 s``, ``86.3 s``, ``4 h 25 min``, ``1.1 days``: estimates people can read."""
    if seconds < 100:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        h, m = divmod(int(round(seconds / 60)), 60)
        return f"{h} h {m} min"
    return f"{seconds / 86400:.3g} days"


def _ctrl_c(system) -> str:
    from theory.runtime.interruptible import polls_abort

    if polls_abort(system):
        return "Ctrl-C stops within 0.5 s"
    return "Ctrl-C is seen between steps"


def _say(msg: str, progress: bool) -> None:
    """A status line on stderr: in the commands (verbose) and with ``progress=True``."""
    if cli.verbose():
        cli.status(msg)
    elif progress:
        print(msg, file=sys.stderr, flush=True)


def _interruptible_call(kernel, system, p, arrays, ist, progress, method):
    """``call(steps)`` for :func:`_drive`: the compiled loop on the run's ``arrays`` in a
    worker thread, so that Ctrl-C stops it within a fraction of a second even when one
    right-hand side takes hours (:mod:`theory.runtime.interruptible`: the main thread
    raises the abort slot that the generated kernels poll, then re-raises
    KeyboardInterrupt; the aborted arrays are discarded with the run).

    Visible: if the first call is still running after :data:`_NOTICE_SECONDS`, say so at
    once; when it returns (and again after the second call, if that is long too), give the
    measured cost of one right-hand side and of one step."""
    from theory.runtime import interruptible

    bound = {"system": system, "ab": interruptible.Abort(system, p)}
    ncall = [0]
    lay = system.layout
    where = f"{_rule_name(system)} at K = {lay.K}, M = {lay.M}"
    tab = S.TABLEAUX[method]
    stages = len(tab.b) - int(tab.fsal)  # evaluations per step (the last reused: FSAL)

    def slow():
        _say(
            f"{where}: the first {method} step is still running after {_NOTICE_SECONDS} s "
            "(one right-hand side is slow here; Ctrl-C stops it); measuring its cost …",
            progress,
        )

    def call(steps):
        sysb, ab = bound["system"], bound["ab"]
        fn = lambda: kernel(sysb.rhs, sysb.eg, ab.p, *arrays, steps)  # noqa: E731
        i = ncall[0]
        ncall[0] += 1
        if i > 1:
            interruptible.call(fn, ab.set)
            return
        t0, n0 = time.perf_counter(), int(ist[S.I_NFEV])
        interruptible.call(fn, ab.set, notice=(_NOTICE_SECONDS, slow) if i == 0 else None)
        dt, nfev = time.perf_counter() - t0, int(ist[S.I_NFEV]) - n0
        if dt > _NOTICE_SECONDS and nfev > 0:
            # the first call may include one-time work (numba compiling a signature on first
            # use), so the second call, if long too, refines the estimate
            what = "the first step, with any one-time compile" if i == 0 else "the next steps"
            _say(
                f"{where}: one right-hand side takes ~{_dur(dt / nfev)} ({nfev} in "
                f"{_dur(dt)}, {what}); every {method} step needs {stages} of them "
                f"(~{_dur(stages * dt / nfev)}; more when a step is rejected); progress is "
                f"seen between steps, {_ctrl_c(system)}",
                progress,
            )

    def rebind(system, p):
        # the live quadrature re-check swapped the rule: the next calls run the new one
        bound["system"], bound["ab"] = system, interruptible.Abort(system, p)

    call.rebind = rebind
    return call


def _import_sde():
    from . import sde

    return sde


def _check_memory(T, n, K, M, paths, what, work_per_path=0):
    """Refuse up front a run whose records cannot fit in memory: the flat records
    (T × n doubles per path) plus their unpacked copies (Q as a full K×K matrix), plus
    ``work_per_path`` bytes of working arrays per path (the finite-N SDE's n×n factors)."""
    per = T * (n + K * K + K * M + 3 * K + 2) * 8
    cli.check_memory(
        2 * paths * per + paths * work_per_path,
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
    diverge_threshold=None,
    rule_params=None,
    progress=False,
    quadrature=None,
    events=None,
    dense_output=False,
    eta_u=None,
    theta=None,
    eta_W=None,
    widths=None,
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
    diverge_threshold : float, optional
        The divergence criterion, the same as the simulations' (:mod:`theory.divergence`):
        stop (status -1, reason "diverged") when ε_g exceeds it (default
        ``theory.divergence.EG_MAX`` = 10⁴, the simulations' ``eg_max``). Guards stop the
        run as diverged too: a non-finite state, an order parameter above
        ``max(theory.divergence.Y_MAX, diverge_threshold)`` (10⁶: numerical overflow), Q
        losing positive semi-definiteness. The message gives ε_g and the largest order
        parameter (in absolute value) of the last accepted state either way.
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
    eta_W, widths : optional
        A deep student (docs/deep.md, :mod:`theory.deep`): hidden widths ``[K1, K2, …]``
        (also selected by an init with read-out matrices ``W``) and the read-out matrices'
        rate η_W (scaled η_W/N; default eta_v). Rules bp, fa, dfa, afa, pepita,
        pepita-forward, pepita-hebbian; the result carries ``v``, ``W`` (a list of
        ``(T, K_{i+2}, K_{i+1})`` trajectories), ``b`` and ``cos_delta`` (T, L − 1).

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
    if diverge_threshold is None:
        diverge_threshold = EG_MAX
    diverge_threshold = _positive("diverge_threshold", diverge_threshold)
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    max_steps = int(max_steps)
    dense_output = check_bool("dense_output", dense_output)
    from .events import _as_events

    _as_events(events)  # a bad event fails here, before anything is compiled
    # the model's one validator (theory.models): its parameters and its initial state
    model, state, mparams, (eta, eta_v, sigma, rule_params) = check_run(
        rule,
        init,
        rule_params,
        dict(eta=eta, eta_v=eta_v, sigma=sigma, eta_u=eta_u, theta=theta, eta_W=eta_W),
        widths=widths,
    )
    rec, record_spec = _record_grid(record, alpha_max)

    note = _dt_note(dt, rec) if method in S.FIXED_STEP else None
    widths = state.widths if model.name == "deep" else None
    system0 = system = get_system(rule, state.K, state.M, activation, quadrature, widths=widths)
    # the quadrature rule that meets its tolerance at the initial state (theory.tolerance)
    system, qsel = _select_quadrature(system, state, eta, eta_v, sigma, rule_params)
    t_sys = time.perf_counter()
    _check_memory(len(rec), system.layout.n, state.K, state.M, 1, "odeflow solve")
    p = _params_vector(system, state, eta, eta_v, sigma, rule_params)
    _announce_cost(rule, system, activation, eta, eta_v, sigma, rule_params, method, progress)
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

    call = _interruptible_call(
        kernel, system, p, (y, rec, rec_y, rec_eg, fs, ist, work, opts), ist, progress, method
    )
    bar = ProgressBar(alpha_max, label=f"{_rule_name(system)} {method}", enabled=progress)
    live = None
    if qsel is not None and not tracker.active:  # (events keep their own p: no live swap)
        live = _LiveQuadrature(
            system0,
            system,
            qsel,
            state,
            (eta, eta_v, sigma, rule_params),
            lambda s: _params_vector(s, state, eta, eta_v, sigma, rule_params),
            y,
            fs,
            ist,
            work,
            rec,
        )

    def between(k):
        nonlocal system, p
        if live():  # a finer rule from here on
            system, p = live.system, live.p
            call.rebind(system, p)
        return live.next_piece()

    if tracker.active:
        tracker.start(0.0, y)
        tracker.drive(call, fs, ist, work, bar if progress else None)
    else:
        _drive(call, fs, ist, alpha_max, max_steps, bar, between=between if live else None)
    code = int(ist[S.I_CODE])
    nr = int(ist[S.I_NEXT_REC])
    if tracker.terminal is None:
        status, reason, message = _message(code, fs, ist, opts, method)
        if code == S.CODE_NONFINITE:  # say which order parameter broke down first
            what = first_nonfinite(system, p, y)
            if what is not None:
                message += f"; first non-finite: {what}"
        if code in (S.CODE_EG, S.CODE_YMAX):  # both criteria's numbers, whichever stopped
            message += (
                f" (last accepted state, α = {_fmt(float(fs[S.F_ALPHA]))}: ε_g = "
                f"{float(fs[S.F_EG]):.4g}, max |order parameter| = "
                f"{float(np.max(np.abs(y))):.4g}; criterion ε_g > {diverge_threshold:.3g}, "
                f"overflow guard max|y| > {float(opts[S.O_YMAX]):.3g})"
            )
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
        **({"widths": widths} if widths is not None else {}),
        alpha_max=alpha_max,
        method=method,
        dt=dt,
        rtol=None if method in S.FIXED_STEP else rtol,
        atol=None if method in S.FIXED_STEP else atol,
        record=_jsonable(record_spec),
        eg_tol=eg_tol,
        max_steps=max_steps,
        diverge_threshold=diverge_threshold,
        overflow_guard=float(opts[S.O_YMAX]),
        rule_params=dict(rule_params or {}),
        system=_jsonable(describe(system)),
    )
    quad = _quad_report(
        system, state, final, eta, eta_v, sigma, rule_params, qsel, rec[:nr], rec_y[:nr]
    )
    if live is not None:
        quad["live"] = {"checks": live.checks, "refined": live.refined}
        if live.warning:
            quad["warning_live"] = live.warning
            message = f"{message}; warning: {live.warning}"
        if live.failure:  # stopped during the run: the state where the rule still held
            status, reason, message = -1, "quadrature", live.failure
    if quad is not None:
        params["quadrature"] = quad
        if quad.get("failure") and not (
            live and live.failure
        ):  # the rule missed its tolerance along the run
            status, reason = -1, "quadrature"
            message = f"{quad['failure']}; the solver: {message}"
        elif quad.get("warning"):
            message = f"{message}; {quad['warning']}"
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


# ------------------------------------------------------------------------ the driver
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
