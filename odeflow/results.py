"""The results of :func:`odeflow.solve` (:class:`Result`) and :func:`odeflow.solve_sde`
(:class:`SDEResult`).

Both follow the project's one result protocol (:class:`theory.runtime.results_io.SavedResult`:
``success``, ``message``, ``save``/``load`` with a kind tag). A :class:`Result` carries the
fields every model shares (α, ε_g, Q, R, status, …) and the model's own arrays in
``fields`` (committee: ``v``, ``b``, ``cos_vb``, ``norm_b``; Forward-Forward: ``u``,
``loss``, ``gap``; declared by :mod:`theory.models`), read as attributes (``res.v``,
``res.u``); a field of another model reads as None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theory.runtime.results_io import SavedResult, jsonable
from theory.state import OrderParameters

__all__ = ["Result", "SDEResult", "NO_DENSE_OUTPUT"]


class _NoDenseOutput:
    """``Result.sol`` of a run without dense output: falsy, equal to None, and calling it
    (or any of its methods) says how to get one instead of a TypeError."""

    _MSG = (
        "this result has no dense output: pass dense_output=True to solve (method "
        "'dopri5', 'tsit5' or 'bs3') to evaluate the solution between records"
    )

    def __call__(self, *args, **kwargs):
        raise ValueError(self._MSG)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ValueError(self._MSG)

    def __bool__(self):
        return False

    def __eq__(self, other):
        return other is None or isinstance(other, _NoDenseOutput)

    def __hash__(self):
        return hash(None)

    def __repr__(self):
        return "None (no dense output: pass dense_output=True)"


NO_DENSE_OUTPUT = _NoDenseOutput()


def _model_fields() -> frozenset:
    """Every model-specific result field of every registered model."""
    from theory.models import MODELS

    return frozenset(f for m in MODELS.values() for f in m.result_fields)


@dataclass(eq=False)
class Result(SavedResult):
    """Trajectory of the order parameters, like ``scipy.integrate.solve_ivp``'s result.

    Attributes
    ----------
    alpha : (T,) array
        Recording times actually reached (the requested grid, cut at the stop point).
    eg : (T,) array
        Generalisation error ε_g at each record.
    Q : (T, K, K) array
    R : (T, K, M) array
    fields : dict
        The model's own arrays (:mod:`theory.models`), also read as attributes:

        * committee: ``v`` (T, K); ``b`` (T, K) — the feedback, integrated for adaptive
          rules (AFA), constant for fixed (FA), None for backprop; ``cos_vb``, ``norm_b``
          (T,) — ``cos(v, b)`` (NaN where v or b is 0) and ``|b|``, None without b.
        * Forward-Forward: ``u`` (T, K) label weights, ``loss`` and ``gap`` (T,) — mean
          loss and goodness gap ``E[G⁺ − G⁻]``.
        * deep student (docs/deep.md): ``v`` (T, K_{L−1}); ``W``, a list of read-out
          matrix trajectories ``(T, K_{i+2}, K_{i+1})`` (stored as ``W0``, ``W1``, … with
          ``W_count``); ``b`` (FA: fixed, PEPITA/AFA: integrated, else None);
          ``cos_delta`` (T, L − 1), the cosine of each hidden layer's signal with BP's.

        A field of another model reads as None (``res.v`` of an FF run).
    model : str
        The model (committee, ff: theory.models.MODELS).
    status : int
        0 reached alpha_max, 1 converged (ε_g < eg_tol) or stopped by a terminal event, -1
        stopped early (see ``reason``).
    reason : str
        "alpha_max", "converged", "event", "diverged", "max_steps" or "step_underflow".
    message : str
        A sentence describing how the run ended.
    success : bool
        ``status >= 0``.
    nfev, n_steps, n_rejected : int
        Right-hand-side evaluations, accepted steps, rejected steps (dopri5).
    alpha_final : float
        α of :attr:`final` (alpha_max, the convergence point, or the last good step).
    init, final : OrderParameters
        Initial state and last accepted state (the state that failed a divergence check is
        never accepted, so ``final`` is always physical).
    params : dict
        Everything needed to reproduce the run (model, rule, K, M, activation, the model's
        parameters, method, …) and ``system``, the provenance of the compiled system.
    timings : dict
        Seconds: ``system`` (build or cache hit), ``run`` (integration, incl. first-call
        compilation of the solver loop).
    alpha_events : list of arrays or None
        With ``events``: for each event, the α of its occurrences (like solve_ivp's
        ``t_events``; :mod:`odeflow.events`).
    state_events : list of arrays or None
        For each event, the flat states at its occurrences, shape (n_i, n) (like
        ``y_events``); :meth:`event_state` gives them as OrderParameters.
    sol : odeflow.events.DenseSolution
        With ``dense_output=True`` (dopri5): ``sol(alpha)``, the solution at any α in
        ``[0, alpha_final]``. Without it, a falsy placeholder equal to None whose call
        raises a ValueError saying to pass ``dense_output=True``.
    """

    KIND = "odeflow.Result"

    alpha: np.ndarray
    eg: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    status: int
    reason: str
    message: str
    nfev: int
    n_steps: int
    n_rejected: int
    alpha_final: float
    init: OrderParameters
    final: OrderParameters
    params: dict
    fields: dict = field(default_factory=dict)
    model: str = "committee"
    timings: dict = field(default_factory=dict)
    alpha_events: list | None = None
    state_events: list | None = None
    sol: Any = NO_DENSE_OUTPUT
    layout: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.sol is None:
            self.sol = NO_DENSE_OUTPUT

    def __getattr__(self, name):
        # only called when normal lookup fails: the model's own fields
        if name.startswith("_") or name in ("fields", "model"):
            raise AttributeError(name)
        f = self.__dict__.get("fields") or {}
        if name in f:
            return f[name]
        if name in _model_fields():
            return None
        raise AttributeError(
            f"{type(self).__name__} of model {self.__dict__.get('model')!r} "
            f"has no attribute {name!r}"
        )

    def event_state(self, i: int, j: int = 0) -> OrderParameters:
        """The :class:`OrderParameters` at occurrence ``j`` of event ``i``."""
        if self.state_events is None:
            raise ValueError("this run had no events (pass events=... to solve)")
        y = np.asarray(self.state_events[i][j], dtype=float)
        lay = self.layout
        if lay is None:  # a loaded result: the model's layout that fits y
            from theory.models import get

            mk = get(self.model).layout
            if self.params.get("widths") is not None:  # a deep student (docs/deep.md)
                from functools import partial

                mk = partial(mk, widths=self.params["widths"])
            lay = next(
                L
                for L in (mk(self.K, self.M, False), mk(self.K, self.M, True))
                if L.n == y.shape[0]
            )
        return lay.state(y, self.init)

    @property
    def K(self) -> int:
        return self.init.K

    @property
    def M(self) -> int:
        return self.init.M

    def __len__(self):
        return len(self.alpha)

    @property
    def quadrature(self) -> dict | None:
        """For a quadrature-backed run: the options, the rule used (scheme, nodes) and the
        error estimate ``error_init``/``error_final`` — the largest change of the
        right-hand side (absolute ``rhs_abs``, relative to its largest entry ``rhs_rel``)
        and of ε_g (``eg_abs``) when the rule is replaced by the coarser rule
        ``theory.quadrature.coarse_rule`` (Gauss–Hermite n − 2 per field, or Sobol with half
        the points), at the initial and the final state. None for closed forms."""
        return self.params.get("quadrature")

    def state(self, i: int) -> OrderParameters:
        """The :class:`OrderParameters` at record ``i``."""
        from theory.models import get

        kw = dict(Q=self.Q[i], R=self.R[i])
        for name in get(self.model).state_fields:
            val = self.fields.get(name)
            if val is not None:
                kw[name] = [w[i] for w in val] if isinstance(val, list) else val[i]
        return self.init.replace(**kw)

    def __repr__(self):
        return (
            f"Result(rule={self.params.get('rule')!r}, K={self.K}, M={self.M}, "
            f"method={self.params.get('method')!r}, records={len(self.alpha)}, "
            f"status={self.status}, message={self.message!r})"
        )

    # ----------------------------------------------------------------- serialisation
    _ARRAYS = ("alpha", "eg", "Q", "R")
    _SCALARS = (
        "status",
        "reason",
        "message",
        "nfev",
        "n_steps",
        "n_rejected",
        "alpha_final",
        "model",
    )

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self._ARRAYS}
        for k, v in self.fields.items():
            if isinstance(v, list):  # a deep student's W: W0, W1, … and their number
                d[k + "_count"] = len(v)
                d.update({f"{k}{i}": w for i, w in enumerate(v)})
            elif v is not None:
                d[k] = v
        d.update({k: getattr(self, k) for k in self._SCALARS})
        for i, (a, y) in enumerate(zip(self.alpha_events or [], self.state_events or [])):
            d[f"alpha_events_{i}"], d[f"state_events_{i}"] = a, y
        d.update(self.init.to_dict("init_"))
        d.update(self.final.to_dict("final_"))
        d["params"] = self.params
        d["timings"] = self.timings
        return d

    def save(self, path):
        """Write to ``.npz`` (arrays; ``params`` as JSON text) or ``.json`` (kind tag
        ``odeflow.Result``).

        The initial state is stored with prefix ``init_`` (as simulations do), so
        ``OrderParameters.load(path)`` reads it back.
        """
        return super().save(path)

    @classmethod
    def from_dict(cls, d) -> Result:
        from theory.models import get, model_of

        # files written before results named their model: the model of their rule
        model = str(d.get("model") or model_of(d["params"].get("rule")).name)
        fields_ = {
            k: (None if d.get(k) is None else np.asarray(d[k], dtype=float))
            for k in get(model).result_fields
        }
        for k in get(model).result_fields:
            if d.get(k + "_count") is not None:  # a list field (a deep student's W)
                n = int(np.asarray(d[k + "_count"]))
                fields_[k] = [np.asarray(d[f"{k}{i}"], dtype=float) for i in range(n)]
        kw = {k: np.asarray(d[k], dtype=float) for k in cls._ARRAYS}
        ne = len([k for k in d if k.startswith("alpha_events_")])
        if ne:
            kw["alpha_events"] = [
                np.asarray(d[f"alpha_events_{i}"], dtype=float) for i in range(ne)
            ]
            kw["state_events"] = [
                np.asarray(d[f"state_events_{i}"], dtype=float) for i in range(ne)
            ]
        return cls(
            **kw,
            status=int(d["status"]),
            reason=str(d["reason"]),
            message=str(d["message"]),
            nfev=int(d["nfev"]),
            n_steps=int(d["n_steps"]),
            n_rejected=int(d["n_rejected"]),
            alpha_final=float(d["alpha_final"]),
            init=OrderParameters.from_dict(d, "init_"),
            final=OrderParameters.from_dict(d, "final_"),
            fields=fields_,
            model=model,
            params=d["params"],
            timings=d.get("timings", {}),
        )


@dataclass(eq=False)
class SDEResult(SavedResult):
    """An Euler–Maruyama ensemble of order-parameter trajectories (docs/theory.md §5,
    docs/finite-size.md).

    Without ``N`` only AFA's feedback b is noisy (docs/theory.md); with ``N`` every order
    parameter gets the finite-N noise ``Σ(y)/N`` (:mod:`theory.covariance`).

    Attributes
    ----------
    alpha : (T,) array
        Recording times (the full requested grid).
    eg : (P, T) array
        ε_g per path. After a path diverges its remaining entries are NaN and
        ``alive[p, t]`` is False — never silently: see ``diverged`` and ``message``.
    Q, R : (P, T, K, K), (P, T, K, M) arrays
    v, b, u : (P, T, K) arrays or None
        The model's other order parameters (None where the model has none: b without
        adaptive feedback, v and b for Forward-Forward, u for the committee).
    W : list of (P, T, K_{i+2}, K_{i+1}) arrays or None
        A deep student's read-out matrices W[i] per path (docs/deep.md; None for the other
        models), named as in :class:`Result`: ``mean("W0")``, ``std("W1")``, …; saved as
        ``W0``, ``W1``, … with ``W_count`` (and ``W0_mean``, ``W0_std``, …).
    alive : (P, T) bool array
        True where the path has a valid record.
    n_alive : (T,) int array
    eg_mean, eg_std : (T,) arrays
        Mean and standard deviation (ddof = 1) of ε_g over the paths alive at each record.
    b_mean, b_std : (T, K) arrays or None
        The same for b.
    diverged : (P,) bool array
    alpha_stop : (P,) array
        α at which each path stopped (alpha_max for those that finished).
    status : int
        0 all paths reached alpha_max; -1 at least one diverged.
    N : float or None
        The input dimension of the finite-N noise (None: AFA's feedback noise only).
    message, success, nfev (total over paths), init, params, timings

    Methods
    -------
    mean(name), std(name)
        Mean and standard deviation (ddof = 1) over the alive paths of any order parameter
        ("Q", "R", "v", "b", "u", a deep student's "W0", "W1", …) or "eg", at every
        record: arrays (T, …).
    """

    KIND = "odeflow.SDEResult"

    alpha: np.ndarray
    eg: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    v: np.ndarray | None
    b: np.ndarray | None
    alive: np.ndarray
    n_alive: np.ndarray
    eg_mean: np.ndarray
    eg_std: np.ndarray
    b_mean: np.ndarray | None
    b_std: np.ndarray | None
    diverged: np.ndarray
    alpha_stop: np.ndarray
    status: int
    message: str
    nfev: int
    init: OrderParameters
    params: dict
    timings: dict = field(default_factory=dict)
    u: np.ndarray | None = None
    N: float | None = None
    W: list | None = None

    #: the order parameters a result may carry (None where the model has none)
    NAMES = ("Q", "R", "v", "b", "u")

    @property
    def n_paths(self) -> int:
        return self.eg.shape[0]

    def _w_names(self) -> list:
        return [f"W{i}" for i in range(len(self.W or ()))]

    def _series(self, name):
        if name == "eg":
            return self.eg
        if name in self._w_names():
            return self.W[int(name[1:])]
        if name not in self.NAMES:
            allowed = ", ".join(("eg",) + self.NAMES + tuple(self._w_names()))
            raise ValueError(f"unknown order parameter {name!r}; allowed: {allowed}")
        x = getattr(self, name)
        if x is None:
            have = ["eg"] + [k for k in self.NAMES if getattr(self, k) is not None]
            raise ValueError(
                f"this result has no {name!r} (rule {self.params.get('rule')!r}); it has "
                f"{', '.join(have)}"
            )
        return x

    def _stats(self, name):
        x = np.asarray(self._series(name), dtype=float)
        m = self.alive.reshape(self.alive.shape + (1,) * (x.ndim - 2))
        cnt = m.sum(axis=0)
        xs = np.where(m, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = xs.sum(axis=0) / cnt
            var = np.where(m, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(cnt - 1, 1)
        return mean, np.sqrt(var)

    def mean(self, name: str) -> np.ndarray:
        """Mean over the alive paths of ``name`` ("eg", "Q", "R", "v", "b", "u", "W0", …)
        at every record (NaN where no path is alive)."""
        return self._stats(name)[0]

    def std(self, name: str) -> np.ndarray:
        """Standard deviation (ddof = 1; 0 for one path) over the alive paths of ``name``."""
        return self._stats(name)[1]

    def state(self, path: int, i: int) -> OrderParameters:
        """The :class:`OrderParameters` of path ``path`` at record ``i``."""
        if not self.alive[path, i]:
            raise ValueError(
                f"path {path} diverged at α = {self.alpha_stop[path]:.4g} "
                f"before record {i} (α = {self.alpha[i]:.4g})"
            )
        kw = {k: getattr(self, k)[path, i] for k in self.NAMES if getattr(self, k) is not None}
        if self.W is not None:
            kw["W"] = [w[path, i] for w in self.W]
        return self.init.replace(**kw)

    def __repr__(self):
        n = "" if self.N is None else f", N={self.N:g}"
        return (
            f"SDEResult(rule={self.params.get('rule')!r}, n_paths={self.n_paths}{n}, "
            f"records={len(self.alpha)}, status={self.status}, message={self.message!r})"
        )

    _ARRAYS = (
        "alpha",
        "eg",
        "Q",
        "R",
        "v",
        "b",
        "alive",
        "n_alive",
        "eg_mean",
        "eg_std",
        "b_mean",
        "b_std",
        "diverged",
        "alpha_stop",
        "u",
    )
    _OPTIONAL = ("v", "b", "b_mean", "b_std", "u")

    def to_dict(self) -> dict:
        """Every array (those the model lacks are left out), ``<name>_mean`` and
        ``<name>_std`` of every order parameter it has, status, message, nfev, ``N``
        (when set), the initial state, params and timings."""
        d = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        for k in self.NAMES:
            if getattr(self, k) is not None and k != "b":  # b_mean, b_std are fields
                d[f"{k}_mean"], d[f"{k}_std"] = self._stats(k)
        if self.W is not None:  # a deep student's read-out matrices, as Result stores W
            d["W_count"] = len(self.W)
            for k in self._w_names():
                d[k] = self._series(k)
                d[f"{k}_mean"], d[f"{k}_std"] = self._stats(k)
        d.update(status=self.status, message=self.message, nfev=self.nfev)
        if self.N is not None:
            d["N"] = float(self.N)
        d.update(self.init.to_dict("init_"))
        d["params"] = self.params
        d["timings"] = self.timings
        return d

    def save(self, path):
        """Write to ``.npz`` or ``.json`` (NaNs after divergence are kept as NaN)."""
        return super().save(path)

    @classmethod
    def from_dict(cls, d) -> SDEResult:
        kw = {}
        for k in cls._ARRAYS:
            if k not in d or d[k] is None:
                if k in cls._OPTIONAL:
                    kw[k] = None
                    continue
                raise KeyError(k)
            a = np.asarray(d[k])
            if k in ("alive", "diverged"):
                a = a.astype(bool)
            elif k == "n_alive":
                a = a.astype(int)
            else:
                a = np.asarray(d[k], dtype=float)
            kw[k] = a
        N = d.get("N")
        if d.get("W_count") is not None:
            n = int(np.asarray(d["W_count"]))
            kw["W"] = [np.asarray(d[f"W{i}"], dtype=float) for i in range(n)]
        return cls(
            **kw,
            status=int(d["status"]),
            message=str(d["message"]),
            nfev=int(d["nfev"]),
            init=OrderParameters.from_dict(d, "init_"),
            params=d["params"],
            timings=d.get("timings", {}),
            N=None if N is None else float(np.asarray(N)),
        )


# kept for ``from odeflow.api import _jsonable`` (figures)
_jsonable = jsonable
