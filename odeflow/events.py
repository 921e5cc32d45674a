"""Events on the order-parameter trajectory, the dense solution, and the plateau exit.

Events (``odeflow.solve(..., events=...)``) follow ``scipy.integrate.solve_ivp``'s
convention: an event is a function ``event(alpha, state) -> float`` whose zeros are the
events, with optional attributes

- ``terminal`` (bool or int, default False): stop the integration at the first (or the
  ``terminal``-th) occurrence;
- ``direction`` (default 0): +1 counts only crossings from negative to positive, −1 only
  from positive to negative, 0 both.

``state`` is a :class:`StateView` of the order parameters (``Q, R, v, b, T, v_star, y``
and ``eg``, computed on demand), so conditions read like the physics::

    def specialised(alpha, s):            # the student has left the symmetric plateau
        return specialisation(s.Q, s.R, s.T) - 0.5
    specialised.direction = 1

How events are located. The compiled integrators hand every accepted step to this module
(:func:`odeflow.solvers._store_segment`). On each step ``[α_n, α_n + h]`` the event
function is evaluated at both ends; a sign change in the requested direction (``g_n < 0 ≤
g_{n+1}`` upwards, ``g_n > 0 ≥ g_{n+1}`` downwards) is then located by Brent's method
(``scipy.optimize.brentq``, ``xtol = 1e-12 h``) on an interpolant of the step:

- methods whose tableau has a dense output (dopri5, tsit5, bs3): that interpolant, the same
  one their record points come from, ``y(θ) = y_n + Σ_k θ^k q_k``, θ = (α − α_n)/h,
  ``q_k = h Σ_j P_j,k−1 k_j`` (:mod:`odeflow.tableaux`; 4th order for dopri5 and tsit5,
  3rd for bs3);
- euler, rk4: the cubic Hermite interpolant through ``y_n, y_{n+1}`` and the slopes
  ``f(y_n), f(y_{n+1})`` (3rd order: for rk4 the event time is then accurate to O(h⁴)).

So an event is found even when it falls between record points, and its α is as accurate as
the integration. A sign change that enters and leaves within one step is missed (as in
scipy). When a terminal event occurs, the run stops there: ``Result.status`` is 1,
``reason`` "event", ``final`` is the state at the event and records after it are dropped.

Dense output (``dense_output=True``, dopri5, tsit5, bs3): ``Result.sol`` is a
:class:`DenseSolution`,
``sol(alpha)`` the flat state at any α in ``[0, alpha_final]`` from the stored continuous
extension of every step (like ``solve_ivp(dense_output=True)``).

Plateau exit: :func:`plateau_exit` is an event (the specialisation measure crossing a level
upwards, or ε_g falling below a fraction of its plateau value), and
:func:`exit_alpha` applies the same criterion to recorded trajectories (a simulation's, per
seed), so that escape times from theory and experiment are measured alike;
:func:`path_exit_alpha` does it for every path of an SDE ensemble (or every seed of a
simulation) and :func:`exit_times` summarises the distribution (mean, std, fraction that
escaped), docs/finite-size.md.
"""

from __future__ import annotations

import numpy as np

from theory.observables import specialisation

from . import solvers as S

__all__ = [
    "StateView",
    "RecordView",
    "DenseSolution",
    "plateau_exit",
    "exit_alpha",
    "simulation_exit_alpha",
    "path_exit_alpha",
    "ExitTimes",
    "exit_times",
    "EventTracker",
    "SEGMENTS_PER_CALL",
]

#: steps the compiled loop runs between two visits of the event tracker
SEGMENTS_PER_CALL = 256


class StateView:
    """Order parameters of one point of the trajectory, as an event function sees them.

    Attributes ``alpha``, ``y`` (flat state), ``Q, R, v, b`` (views unpacked from ``y`` by
    the system's layout; ``b`` None without feedback, the constant ``b`` for fixed
    feedback), ``T, v_star`` (constants of the run), ``eg`` (ε_g, computed on first use).
    """

    __slots__ = ("alpha", "y", "_parts", "_tracker", "_eg")

    def __init__(self, alpha, y, tracker):
        self.alpha = float(alpha)
        self.y = y
        self._tracker = tracker
        self._parts = None
        self._eg = None

    def _part(self, name):
        if self._parts is None:
            self._parts = self._tracker.layout.unpack(self.y)
        return self._parts.get(name)

    @property
    def Q(self):
        return self._part("Q")

    @property
    def R(self):
        return self._part("R")

    @property
    def v(self):
        return self._part("v")

    @property
    def b(self):
        b = self._part("b")
        return self._tracker.init.b if b is None else b

    @property
    def T(self):
        return self._tracker.init.T

    @property
    def v_star(self):
        return self._tracker.init.v_star

    @property
    def eg(self) -> float:
        if self._eg is None:
            self._eg = float(self._tracker.system.eg(self.y, self._tracker.p))
        return self._eg


def _event_name(ev, i):
    """How an error message names event ``i``: its ``__name__`` and its index."""
    name = getattr(ev, "__name__", None)
    return f"event {i} ({name!r})" if name else f"event {i}"


def _as_events(events):
    """The events as ``[(event, n_terminal, direction)]``, every attribute validated.

    ``terminal``: a bool (stop at the first occurrence) or a non-negative int (stop at the
    ``terminal``-th; 0 never stops); ``direction``: −1, 0 or +1 (a crossing's sign). A bad
    value raises ValueError naming the event, the attribute and what is allowed, before
    anything is compiled or integrated (:func:`odeflow.solve` calls this first).
    """
    if events is None:
        return []
    if callable(events):
        events = [events]
    try:
        events = list(events)
    except TypeError:
        raise ValueError(
            f"events must be a callable event(alpha, state) or a list of them, got {events!r}"
        ) from None
    out = []
    for i, ev in enumerate(events):
        if not callable(ev):
            raise ValueError(f"event {i} must be a callable event(alpha, state), got {ev!r}")
        who = _event_name(ev, i)
        term = getattr(ev, "terminal", False)
        if isinstance(term, (bool, np.bool_)):
            nterm = 1 if term else 0
        elif isinstance(term, (int, np.integer)) and term >= 0:
            nterm = int(term)
        else:
            raise ValueError(
                f"{who}: terminal must be a bool or a non-negative int (stop at that "
                f"occurrence), got {term!r}"
            )
        direction = getattr(ev, "direction", 0)
        ok = not isinstance(direction, (bool, np.bool_, str))
        if ok:
            try:
                ok = float(direction) in (-1.0, 0.0, 1.0)
            except (TypeError, ValueError):
                ok = False
        if not ok:
            # scipy would take any number's sign; a 5 or 0.5 is more likely a slip
            raise ValueError(
                f"{who}: direction must be a number in {{-1, 0, 1}} (-1 crossings from + "
                f"to -, 1 from - to +, 0 both), got {direction!r}"
            )
        out.append((ev, nterm, float(direction)))
    return out


def dense_eval(seg, th):
    """The dense output of a stored step (rows of :data:`odeflow.rk.SEG_ROWS`: y_n,
    [α_n, h, m], Δ, q_1 … q_m) at θ ∈ [0, 1]: ``y_n + Σ_k θ^k q_k`` (Horner), exactly
    ``y_n + Δ`` at θ = 1."""
    if th >= 1.0:
        return seg[0] + seg[2]
    m = int(seg[1, 2])
    acc = seg[2 + m]
    for k in range(m - 1, 0, -1):
        acc = seg[2 + k] + th * acc
    return seg[0] + th * acc


def _hermite(y0, y1, f0, f1, h, th):
    """Cubic Hermite interpolant of a fixed step at θ ∈ [0, 1]."""
    t2, t3 = th * th, th * th * th
    return (
        (2 * t3 - 3 * t2 + 1) * y0
        + (t3 - 2 * t2 + th) * h * f0
        + (-2 * t3 + 3 * t2) * y1
        + (t3 - t2) * h * f1
    )


class DenseSolution:
    """``sol(alpha)``: the solution at any α in ``[alpha_min, alpha_max]``.

    Built from the continuous extension of every accepted step (the interpolant the method
    records with: 4th order for dopri5 and tsit5, 3rd for bs3). ``sol(a)`` returns the flat
    state (n,) for a scalar and (len, n) for an array (time first, like the records);
    :meth:`state` an OrderParameters and :meth:`eg` ε_g.
    """

    def __init__(self, alpha0, h, seg, layout, init, eg_fn, p, alpha_end=None):
        self.alpha0 = np.asarray(alpha0, dtype=float)  # (S,) step starts
        self.h = np.asarray(h, dtype=float)  # (S,)
        self.seg = np.asarray(seg, dtype=float)  # (S, SEG_ROWS, n)
        self.layout, self.init, self._eg, self._p = layout, init, eg_fn, p
        # a run stopped by a terminal event ends inside its last step
        self._end = float(self.alpha0[-1] + self.h[-1]) if alpha_end is None else float(alpha_end)

    @property
    def alpha_min(self) -> float:
        return float(self.alpha0[0]) if len(self.alpha0) else 0.0

    @property
    def alpha_max(self) -> float:
        return self._end

    def __call__(self, alpha):
        a = np.asarray(alpha, dtype=float)
        flat = np.atleast_1d(a)
        lo, hi = self.alpha_min, self.alpha_max
        tol = 1e-12 * max(1.0, abs(hi))
        if np.any(flat < lo - tol) or np.any(flat > hi + tol) or not np.all(np.isfinite(flat)):
            raise ValueError(
                f"sol(alpha) is defined on [{lo:.6g}, {hi:.6g}], got "
                f"{flat.min():.6g}..{flat.max():.6g}"
            )
        idx = np.clip(np.searchsorted(self.alpha0, flat, side="right") - 1, 0, len(self.alpha0) - 1)
        th = np.clip((flat - self.alpha0[idx]) / self.h[idx], 0.0, 1.0)
        out = np.array([dense_eval(self.seg[i], t) for i, t in zip(idx, th)])
        return out[0] if a.ndim == 0 else out

    def state(self, alpha):
        """The :class:`OrderParameters` at a scalar α."""
        return self.layout.state(self(float(alpha)), self.init)

    def eg(self, alpha):
        """ε_g at α (scalar or array)."""
        y = np.atleast_2d(self(alpha))
        out = np.array([self._eg(np.ascontiguousarray(r), self._p) for r in y])
        return out[0] if np.ndim(alpha) == 0 else out


class EventTracker:
    """Consumes the steps the compiled loop stores and finds events on them (used by
    :func:`odeflow.solve`; see the module docstring)."""

    def __init__(self, events, system, p, init, method, dense_output):
        self.events = _as_events(events)
        self.system, self.p, self.init = system, p, init
        self.layout = system.layout
        self.method = method
        # steps without a dense output are interpolated by cubic Hermite (odeflow.rk)
        self.hermite = S.TABLEAUX[method].P is None
        self.dense = bool(dense_output)
        self.alpha_events = [[] for _ in self.events]
        self.y_events = [[] for _ in self.events]
        self.count = [0] * len(self.events)
        self.terminal = None  # (alpha, y, event index) once one fires
        self._g_prev = None
        self._dense = []
        self._pending = None  # fixed step: last segment, awaiting f(y_{n+1})

    @property
    def active(self) -> bool:
        return bool(self.events) or self.dense

    def _g(self, i, alpha, y):
        val = self.events[i][0](alpha, StateView(alpha, y, self))
        try:
            val = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"event {i} must return a number, got {val!r}") from None
        return val

    def start(self, alpha, y):
        y = np.array(y, dtype=float)
        self._g_prev = [self._g(i, alpha, y) for i in range(len(self.events))]

    def _f(self, y):
        dy = np.empty_like(y)
        self.system.rhs(np.ascontiguousarray(y), self.p, dy)
        return dy

    def drive(self, call, fs, ist, work, bar=None):
        """Run the compiled loop (``call(steps)``) in chunks, consuming its stored steps,
        until it stops or a terminal event fires."""
        cap = (work.shape[0] - S.WORK_ROWS) // S.SEG_ROWS
        while ist[S.I_CODE] == S.CODE_RUNNING and self.terminal is None:
            ist[S.I_NSEG_OUT] = 0
            call(cap)
            self._consume(work, int(ist[S.I_NSEG_OUT]), fs)
            ist[S.I_NSEG_OUT] = 0
            if bar is not None:
                bar.update(fs[S.F_ALPHA])
        if self.hermite and self._pending is not None and self.terminal is None:
            a0, h, y0, y1, f0 = self._pending  # last step: its end slope now
            self._segment_fixed(a0, h, y0, y1, f0, self._f(y1))
            self._pending = None

    def _consume(self, work, nseg, fs):
        base = S.WORK_ROWS
        for j in range(nseg):
            if self.terminal is not None:
                return
            rows = work[base + S.SEG_ROWS * j : base + S.SEG_ROWS * (j + 1)]
            a0, h = float(rows[1, 0]), float(rows[1, 1])
            if self.hermite:
                y0 = rows[0].copy()
                y1 = y0 + rows[2]
                f0 = rows[3].copy()
                if self._pending is not None:
                    pa, ph, py0, py1, pf0 = self._pending
                    self._segment_fixed(pa, ph, py0, py1, pf0, f0)
                    if self.terminal is not None:
                        return
                self._pending = (a0, h, y0, y1, f0)
            else:
                seg = rows.copy()
                if self.dense:
                    self._dense.append((a0, h, seg))
                if self.events:
                    self._segment(a0, h, lambda th, seg=seg: dense_eval(seg, th), seg[0] + seg[2])

    def _segment_fixed(self, a0, h, y0, y1, f0, f1):
        if self.events:
            self._segment(a0, h, lambda th: _hermite(y0, y1, f0, f1, h, th), y1)

    def _segment(self, a0, h, interp, y1):
        from scipy.optimize import brentq

        a1 = a0 + h
        g1 = [self._g(i, a1, y1) for i in range(len(self.events))]
        found = []
        for i, (_ev, _nterm, direction) in enumerate(self.events):
            g0 = self._g_prev[i]
            up = g0 < 0 <= g1[i]
            down = g0 > 0 >= g1[i]
            if not ((up and direction >= 0) or (down and direction <= 0)):
                continue
            if g1[i] == 0:
                th = 1.0
            else:
                th = brentq(
                    lambda t: self._g(i, a0 + t * h, interp(t)),  # noqa: B023 (called here)
                    0.0,
                    1.0,
                    xtol=1e-12,
                    rtol=4 * np.finfo(float).eps,
                )
            found.append((th, i))
        for th, i in sorted(found):
            alpha = a0 + th * h
            y = np.asarray(interp(th), dtype=float)
            self.alpha_events[i].append(alpha)
            self.y_events[i].append(y)
            self.count[i] += 1
            nterm = self.events[i][1]
            if nterm and self.count[i] >= nterm:
                self.terminal = (alpha, y, i)
                break
        self._g_prev = g1

    def results(self):
        """``(alpha_events, state_events)``: per event, an array of α and one of flat states."""
        n = self.layout.n
        alphas = [np.asarray(a, dtype=float) for a in self.alpha_events]
        ys = [np.asarray(y, dtype=float).reshape(-1, n) for y in self.y_events]
        return alphas, ys

    def dense_solution(self, alpha_end):
        """The :class:`DenseSolution` on ``[0, alpha_end]`` (None without dense output)."""
        segs = [s for s in self._dense if s[0] < alpha_end]
        if not self.dense or not segs:
            return None
        return DenseSolution(
            np.array([s[0] for s in segs]),
            np.array([s[1] for s in segs]),
            np.stack([s[2] for s in segs]),
            self.layout,
            self.init,
            self.system.eg,
            self.p,
            alpha_end=alpha_end,
        )


# ======================================================================== plateau exit
def plateau_exit(
    measure: str = "specialisation",
    level: float = 0.5,
    *,
    plateau_eg: float | None = None,
    fraction: float = 0.5,
    terminal: bool = False,
):
    """An event marking the escape from the symmetric plateau (Saad & Solla 1995).

    Parameters
    ----------
    measure : {"specialisation", "eg"}
        "specialisation": the specialisation measure
        (:func:`theory.observables.specialisation`, 0 on the symmetric plateau, → 1 once
        each student unit has aligned with one teacher unit) crosses ``level`` upwards.
        "eg": ε_g falls below ``fraction × plateau_eg`` (``plateau_eg`` required: e.g. the
        ε_g of the symmetric fixed point, or the plateau found by
        ``figures.saad_solla.plateau``).
    terminal : bool
        Stop the integration at the exit.

    Returns
    -------
    callable event(alpha, state) with ``direction`` and ``terminal`` set, and attributes
    ``measure``, ``level``/``threshold`` used by :func:`exit_alpha` to apply the same
    criterion to recorded trajectories.
    """
    if measure == "specialisation":
        level = float(level)
        if not 0 < level < 1:
            raise ValueError(
                f"level must lie in (0, 1) for the specialisation measure, got {level}"
            )

        def event(alpha, s):
            return float(specialisation(s.Q, s.R, s.T)) - level

        event.direction = 1
        event.threshold = level
    elif measure == "eg":
        if plateau_eg is None or not plateau_eg > 0:
            raise ValueError("plateau_exit(measure='eg') needs plateau_eg > 0 (ε_g on the plateau)")
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
        thr = float(fraction) * float(plateau_eg)

        def event(alpha, s):
            return s.eg - thr

        event.direction = -1
        event.threshold = thr
    else:
        raise ValueError(f"measure must be 'specialisation' or 'eg', got {measure!r}")
    event.terminal = bool(terminal)
    event.measure = measure
    event.__name__ = f"plateau_exit_{measure}"
    return event


def exit_alpha(alpha, values, threshold, direction):
    """First α at which a recorded trajectory ``values(α)`` crosses ``threshold`` in
    ``direction`` (+1 upwards, −1 downwards), by linear interpolation between the two records
    around the crossing; NaN if it never does. Works on stacks ``(..., T)`` (e.g. seeds)."""
    alpha = np.asarray(alpha, dtype=float)
    v = np.asarray(values, dtype=float)
    d = (v - threshold) * (1.0 if direction >= 0 else -1.0)  # crossing: d goes − → ≥ 0
    out = np.full(v.shape[:-1], np.nan)
    for idx in np.ndindex(out.shape):
        row = d[idx]
        cross = np.nonzero((row[:-1] < 0) & (row[1:] >= 0))[0]
        if len(cross):
            j = cross[0]
            t = row[j] / (row[j] - row[j + 1])
            out[idx] = alpha[j] + t * (alpha[j + 1] - alpha[j])
    return out


class RecordView:
    """One recorded point ``(seed, t)`` of a simulation, seen as an event sees a
    :class:`StateView`: ``alpha, Q, R, v, b, T, v_star, eg`` (no flat ``y``: a simulation
    records the order parameters, not the ODE's state vector)."""

    __slots__ = ("alpha", "_sim", "_s", "_t")

    def __init__(self, sim, s, t):
        self._sim, self._s, self._t = sim, s, t
        self.alpha = float(sim.alpha[t])

    def _traj(self, name):
        arr = getattr(self._sim, name, None)
        return None if arr is None else np.asarray(arr)[self._s, self._t]

    @property
    def Q(self):
        return self._traj("Q")

    @property
    def R(self):
        return self._traj("R")

    @property
    def v(self):
        return self._traj("v")

    @property
    def b(self):
        b = getattr(self._sim, "b", None)
        if b is None:
            return None
        b = np.asarray(b)
        return b[self._s, self._t] if b.ndim == 3 else b[self._s]  # fixed feedback: (S, K)

    @property
    def T(self):
        return np.asarray(self._sim.T)[self._s]

    @property
    def v_star(self):
        return np.asarray(self._sim.v_star)[self._s]

    @property
    def eg(self) -> float:
        return float(np.asarray(self._sim.eg)[self._s, self._t])

    @property
    def y(self):
        raise AttributeError(
            "a simulation's record has no flat ODE state y: read Q, R, v, b, T, v_star or eg"
        )


def simulation_exit_alpha(sim, event):
    """The first occurrence of ``event`` on every seed of a ``SimulationResult`` (shape
    (S,), NaN for seeds where it never occurs or that diverged first), on the recorded
    trajectories.

    An event made by :func:`plateau_exit` applies its criterion to the whole record at once.
    Any other event ``event(alpha, state)`` (with an optional ``direction``) is evaluated at
    every record with ``state`` a :class:`RecordView` (``Q, R, v, b, T, v_star, eg``), and
    its zero is located by linear interpolation between the two records around the sign
    change in the requested direction (0: either), as :func:`exit_alpha` does.
    """
    if getattr(event, "measure", None) in ("specialisation", "eg"):
        if event.measure == "specialisation":
            vals = specialisation(sim.Q, sim.R, np.asarray(sim.T)[:, None])
        else:
            vals = sim.eg
        return exit_alpha(sim.alpha, vals, event.threshold, event.direction)
    ((ev, _nterm, direction),) = _as_events([event])
    eg = np.asarray(sim.eg, dtype=float)
    g = np.full(eg.shape, np.nan)  # (S, T); NaN records (diverged seeds) never cross
    for s, t in np.ndindex(g.shape):
        if not np.isfinite(eg[s, t]):
            continue
        val = ev(float(sim.alpha[t]), RecordView(sim, s, t))
        try:
            g[s, t] = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"{_event_name(ev, 0)} must return a number, got {val!r}") from None
    if direction != 0:
        return exit_alpha(sim.alpha, g, 0.0, direction)
    return np.fmin(exit_alpha(sim.alpha, g, 0.0, 1), exit_alpha(sim.alpha, g, 0.0, -1))


class _PathStack:
    """An SDE ensemble (:class:`odeflow.results.SDEResult`) seen as a simulation's records:
    per-path ``eg, Q, R, v, b`` and the constants ``T, v_star`` repeated per path, so that
    :func:`simulation_exit_alpha` applies unchanged (paths play the role of seeds)."""

    def __init__(self, res):
        self.alpha = np.asarray(res.alpha, dtype=float)
        self.eg = np.asarray(res.eg, dtype=float)
        P = self.eg.shape[0]
        for name in ("Q", "R", "v", "b"):
            setattr(self, name, getattr(res, name, None))
        init = res.init
        self.T = np.broadcast_to(np.asarray(init.T, dtype=float), (P,) + np.shape(init.T))
        self.v_star = np.broadcast_to(
            np.asarray(init.v_star, dtype=float), (P,) + np.shape(init.v_star)
        )
        alive = getattr(res, "alive", None)
        if alive is not None:  # a diverged path's records never cross
            self.eg = np.where(np.asarray(alive, dtype=bool), self.eg, np.nan)


def path_exit_alpha(result, event):
    """The first occurrence of ``event`` on every path of an ensemble, shape (P,).

    ``result`` is an :class:`odeflow.results.SDEResult` (paths of ``odeflow.solve_sde``)
    or a simulation ensemble (``simulations``' ``SimulationResult``, seeds): the same
    criterion on the recorded trajectories as :func:`simulation_exit_alpha` (linear
    interpolation between the two records around the crossing), NaN for a path that never
    crosses by the end of its record or that diverged first. With :func:`exit_times` this
    gives the distribution of plateau escape times at finite N.
    """
    if not hasattr(result, "alpha") or not hasattr(result, "eg"):
        raise ValueError(
            "path_exit_alpha needs an ensemble result with alpha and per-path eg "
            f"(SDEResult or SimulationResult), got {type(result).__name__}"
        )
    if np.ndim(getattr(result, "T", None)) == 2:  # constants of one run: an SDE ensemble
        result = _PathStack(result)
    elif getattr(result, "T", None) is None:
        result = _PathStack(result)
    return simulation_exit_alpha(result, event)


class ExitTimes:
    """The distribution of escape times over the paths (or seeds) of an ensemble.

    Attributes
    ----------
    alpha : (P,) array
        Per path: the exit α, NaN where the path did not exit within its record.
    n, n_exited : int
        Paths in all, paths that exited.
    fraction : float
        ``n_exited / n``.
    mean, std, sem : float
        Over the paths that exited (``std`` with ddof = 1, ``sem = std/√n_exited``); NaN
        when none (or, for std and sem, one) exited. If some paths did not exit the mean is
        biased low (a censored sample): compare ``fraction`` first.
    median : float
    """

    __slots__ = ("alpha", "n", "n_exited", "fraction", "mean", "std", "sem", "median")

    def __init__(self, alpha):
        a = np.asarray(alpha, dtype=float).ravel()
        ok = a[np.isfinite(a)]
        self.alpha = a
        self.n, self.n_exited = int(a.size), int(ok.size)
        self.fraction = self.n_exited / self.n if self.n else float("nan")
        self.mean = float(ok.mean()) if ok.size else float("nan")
        self.median = float(np.median(ok)) if ok.size else float("nan")
        self.std = float(ok.std(ddof=1)) if ok.size > 1 else float("nan")
        self.sem = self.std / np.sqrt(ok.size) if ok.size > 1 else float("nan")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if k != "alpha"} | {
            "alpha": self.alpha.tolist()
        }

    def __repr__(self):
        return (
            f"ExitTimes(mean={self.mean:.4g}, std={self.std:.4g}, exited={self.n_exited}/{self.n})"
        )


def exit_times(result, event) -> ExitTimes:
    """:func:`path_exit_alpha` of ``result`` summarised as :class:`ExitTimes` (mean, std,
    standard error, fraction of paths that escaped)."""
    return ExitTimes(path_exit_alpha(result, event))
