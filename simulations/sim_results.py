"""Results of the simulation ensembles: :class:`EnsembleResult` (the base shared with the
Forward-Forward ensemble) and :class:`SimulationResult` (the committee's).

Every ensemble result follows the project's one result protocol
(:class:`theory.runtime.results_io.SavedResult`): ``success``, ``message``, ``save``/``load`` with
a kind tag in the file (files written before the tags existed are still read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

from theory.observables import cos_vb, norm_b
from theory.runtime.results_io import SavedResult
from theory.state import OrderParameters

from . import kernelgen
from .ensemble import ensemble_stats
from .sim_config import RULES, _jsonable_config

__all__ = ["EnsembleResult", "SimulationResult", "load_result"]


_ARRAY_FIELDS = (
    "alpha",
    "steps",
    "seeds",
    "Q",
    "R",
    "v",
    "b",
    "T",
    "v_star",
    "c",
    "sigma_F2",
    "eg",
    "eg_mean",
    "eg_std",
    "diverged",
    "alpha_diverged",
    "eg_mc",
    "eg_mc_se",
    "Q0",
    "R0",
    "v0",
    "b0",
    "w",
    "w_star",
    "F",
)
# per-seed observables that get ``<name>_mean`` / ``<name>_std`` in the saved file
_STAT_FIELDS = ("Q", "R", "v", "b", "eg_mc", "cos_vb", "norm_b")


class EnsembleResult(SavedResult):
    """What every ensemble result (:class:`SimulationResult`, the FF ensemble's
    ``FFSimulationResult``) offers on top of its per-seed fields: statistics over the
    non-diverged seeds, ``success``/``message``, and ``save``/``load``
    (:class:`theory.runtime.results_io.SavedResult`: ``to_arrays()`` plus the config, kind-tagged).
    """

    UNTAGGED_OK = True  # files written before results carried a kind tag

    def mean(self, name: str) -> np.ndarray:
        """Mean over the non-diverged seeds of a per-seed trajectory (e.g. ``'Q'``)."""
        return ensemble_stats(getattr(self, name), self.diverged)[0]

    def std(self, name: str) -> np.ndarray:
        """Sample std (ddof=1) over the non-diverged seeds of a per-seed trajectory."""
        return ensemble_stats(getattr(self, name), self.diverged)[1]

    @property
    def success(self) -> bool:
        """True when at least one seed did not diverge."""
        return int(self.n_mean) > 0

    @property
    def message(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """:meth:`to_arrays` with the config as a dict (``config_json`` in ``.npz``)."""
        d = self.to_arrays()
        d.pop("config_json", None)
        d.pop("kind", None)
        d["config"] = _jsonable_config(self.config)
        return d

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)


@dataclass(eq=False)
class SimulationResult(EnsembleResult):
    """Trajectories of an ensemble of simulations, on the record grid ``alpha``.

    Shapes: S seeds, T record times, K student and M teacher hidden units.

    Attributes
    ----------
    alpha : (T,) array
        Record times ``α`` (from ``record_alphas(config['record'], alpha_max)``); the state
        is recorded after ``steps = round(α N)`` samples.
    steps : (T,) int array
    seeds : (S,) int array
    Q, R, v : (S, T, K, K), (S, T, K, M), (S, T, K) arrays
        Measured order parameters ``Q = w wᵀ/N``, ``R = w w*ᵀ/N`` and second layer.
    b : (S, T, K) array or None
        ``w F/√N`` (afa, pepita, pepita-forward), the fixed feedback (fa), None (bp).
    T : (S, M, M) array
        ``w* w*ᵀ/N`` (constant in time).
    v_star : (S, M) array
    c : (S, M) array or None
        ``w* F/√N`` (adaptive rules only; constant).
    sigma_F2 : (S,) array or None
        ``F·F/N`` (adaptive rules only; constant).
    eg : (S, T) array
        ``ε_g`` from the measured order parameters, exact formula
        (:func:`theory.observables.eps_g`).
    eg_mean, eg_std : (T,) arrays
        Mean and sample std (ddof=1) over the ``n_mean`` seeds that did not diverge.
    n_mean : int
        Number of seeds in the mean (``S − diverged.sum()``).
    diverged : (S,) bool array
        Seeds stopped because their state became non-finite or exceeded the thresholds
        ``config['divergence']``; their entries at α >= ``alpha_diverged`` are NaN.
    alpha_diverged : (S,) array
        α at which divergence was detected (NaN if not diverged): the exact step when the
        error became non-finite, otherwise the end of the block (at most N/4 steps, 0.25
        in α) in which a threshold was crossed.
    eg_mc, eg_mc_se : (S, T) arrays or None
        Monte Carlo test error on ``config['mc_test']`` fixed inputs (noise-free) and its
        standard error.
    Q0, R0, v0 : (S, K, K), (S, K, M), (S, K); b0 : (S, K) or None
        Initial state of every seed (what :meth:`initial_state` returns).
    w : (S, T, K, N) array or None
        Recorded student weights (only with ``record_weights: true``); ``w_star`` (S, M, N)
        and ``F`` (S, N) are then the teacher and feedback at the end of the run.
    config : dict
        The validated config, defaults filled in.
    init : OrderParameters
        Initial state of seed index 0 (the form the ODE solver takes).
    """

    KIND = "simulations.SimulationResult"

    alpha: np.ndarray
    steps: np.ndarray
    seeds: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    v: np.ndarray
    b: np.ndarray | None
    T: np.ndarray
    v_star: np.ndarray
    c: np.ndarray | None
    sigma_F2: np.ndarray | None
    eg: np.ndarray
    eg_mean: np.ndarray
    eg_std: np.ndarray
    n_mean: int
    diverged: np.ndarray
    alpha_diverged: np.ndarray
    config: dict
    init: OrderParameters
    Q0: np.ndarray
    R0: np.ndarray
    v0: np.ndarray
    b0: np.ndarray | None = None
    eg_mc: np.ndarray | None = None
    eg_mc_se: np.ndarray | None = None
    w: np.ndarray | None = None
    w_star: np.ndarray | None = None
    F: np.ndarray | None = None

    # ------------------------------------------------------------------------ derived
    @property
    def rule(self) -> str:
        """The rule's name (a built-in name, or the name of a Rule)."""
        r = self.config["rule"]
        if isinstance(r, str):
            return r if r in RULES else kernelgen.resolve_rule(r).name
        return r["name"] if isinstance(r, dict) else r.name

    @property
    def cos_vb(self) -> np.ndarray | None:
        """(S, T) cosine between ``v`` and ``b`` (None for bp)."""
        return None if self.b is None else cos_vb(self.v, self.b)

    @property
    def norm_b(self) -> np.ndarray | None:
        """(S, T) ``|b|`` (None for bp)."""
        return None if self.b is None else norm_b(self.b)

    def initial_state(self, seed: int = 0) -> OrderParameters:
        """Measured initial order parameters of seed *index* ``seed`` (0 … S−1).

        For afa/pepita* it carries ``b, c, sigma_F2``; for fa the fixed ``b``; for bp none.
        """
        S = len(self.seeds)
        if not 0 <= seed < S:
            raise IndexError(
                f"seed index {seed} out of range for {S} seeds (seeds = {list(self.seeds)})"
            )
        kw = {}
        if self.c is not None:
            # ‖F‖² = N σ_F² (exact PEPITA's ODE needs it; recorded as init_F_norm2)
            kw = dict(
                b=self.b0[seed],
                c=self.c[seed],
                sigma_F2=float(self.sigma_F2[seed]),
                F_norm2=float(self.sigma_F2[seed]) * self.config["N"],
            )
        elif self.b0 is not None:
            kw = dict(b=self.b0[seed])
        return OrderParameters(
            Q=self.Q0[seed],
            R=self.R0[seed],
            T=self.T[seed],
            v=self.v0[seed],
            v_star=self.v_star[seed],
            **kw,
        )

    def summary(self) -> str:
        S = len(self.seeds)
        nd = int(self.diverged.sum())
        s = (
            f"{self.rule}: N={self.config['N']} K={self.config['K']} M={self.config['M']}, "
            f"{S} seeds, alpha 0..{self.alpha[-1]:g} ({len(self.alpha)} records); "
        )
        if nd:
            at = ", ".join(f"{a:.3g}" for a in self.alpha_diverged[self.diverged])
            s += f"{nd} diverged (at alpha {at}); "
        if self.n_mean:
            s += (
                f"final eps_g = {self.eg_mean[-1]:.4g} ± {self.eg_std[-1]:.2g} (over "
                f"{self.n_mean} seeds)"
            )
        else:
            s += "no seed left to average"
        return s

    # ---------------------------------------------------------------------------- I/O
    def to_arrays(self) -> dict:
        """Every array of the result (None fields omitted), plus ``<obs>_mean/_std``,
        ``cos_vb``, ``norm_b``, the initial state of seed 0 as ``init_*`` and the config
        as a JSON string ``config_json``."""
        d = {}
        for name in _ARRAY_FIELDS:
            val = getattr(self, name)
            if val is not None:
                d[name] = np.asarray(val)
        d["n_mean"] = np.asarray(self.n_mean)
        if self.b is not None:
            d["cos_vb"], d["norm_b"] = self.cos_vb, self.norm_b
        for name in _STAT_FIELDS:
            if name in d:
                d[name + "_mean"], d[name + "_std"], _ = ensemble_stats(d[name], self.diverged)
        d.update(self.init.to_dict(prefix="init_"))
        d["config_json"] = np.asarray(json.dumps(_jsonable_config(self.config)))
        return d

    def save(self, path):
        """Write to ``path``: ``.npz`` (readable by ``OrderParameters.load`` for the initial
        state), or ``.json`` (nested lists, NaN as null), with the kind tag."""
        return super().save(path)


def load_result(cls, path):
    """``cls.load(path)`` (kept for callers of the former function)."""
    return cls.load(path)


def _from_dict(cls, d):
    """A result dataclass ``cls`` (:class:`SimulationResult`, or another ensemble result
    with ``config``, ``init``, ``n_mean``, ``diverged``, ``steps``, ``seeds`` fields) from
    the mapping :func:`theory.runtime.results_io.read` returns."""
    d = {k: (_from_json(v) if isinstance(v, list) else v) for k, v in d.items()}
    kw = {}
    for f in fields(cls):
        if f.name == "config":
            kw["config"] = d["config"]
        elif f.name == "init":
            kw["init"] = OrderParameters.from_dict(d, prefix="init_")
        elif f.name == "n_mean":
            kw["n_mean"] = int(d["n_mean"])
        elif f.name in d and d[f.name] is not None:
            kw[f.name] = np.asarray(d[f.name])
        else:
            kw[f.name] = None
    kw["diverged"] = kw["diverged"].astype(bool)
    for name in ("steps", "seeds"):
        kw[name] = kw[name].astype(np.int64)
    return cls(**kw)


def _to_json(a):
    a = np.asarray(a)
    if a.dtype.kind in "fc":
        return (
            np.where(np.isfinite(a), a, None).tolist()
            if a.ndim
            else (float(a) if np.isfinite(a) else None)
        )
    return a.tolist()


def _from_json(x):
    a = np.asarray(x)
    if a.dtype == object:
        a = np.array(np.where(a == None, np.nan, a), dtype=float)  # noqa: E711
    return a
