"""Models as data: what is learned, which parameters it takes, which system it builds.

A :class:`Model` declares, for one network family,

* its **parameters** (names, defaults, allowed ranges) and the one validator of them
  (:meth:`Model.check_params`), used alike by :func:`odeflow.solve`, ``python -m odeflow
  solve|sde|sweep`` and the simulation configs of ``python -m simulations run`` and
  ``odeflow compare``;
* its **initial state** (required and refused :class:`~theory.state.OrderParameters`
  fields, :meth:`Model.check_init`);
* how to **build its system** (:class:`theory.system.System`) for a rule, K, M, activation
  and quadrature (:meth:`Model.build`) and the layout of its flat state;
* its **result fields**: the layout's own fields beyond Q and R (``state_fields``) and the
  named observables of :meth:`System.observables` (``observables``), which
  :class:`odeflow.Result` carries as attributes; ``compare_fields``, those a simulation
  measures too;
* its **simulation entry point**, a module of :mod:`simulations` with ``simulate`` and
  ``validate_config`` (named here so that simulations dispatch without importing odeflow).

Registered: ``committee`` (the two-layer network of docs/theory.md §1–5: bp, fa, afa,
pepita, pepita-forward and any :class:`theory.rules.Rule`), ``ff`` (one
Forward-Forward layer, docs/ff-theory.md) and ``deep`` (a wide first layer with a finite
deep read-out, docs/deep.md; chosen by ``widths`` or an initial state with ``W``,
:func:`deep_requested`, since it shares the committee's rule names). :func:`model_of`
maps a rule (a name, a Rule, a system) to its model: a rule name listed in
:data:`RULE_MODELS` belongs to that model, anything else to the committee. A new model
is one :func:`register` call (docs/architecture.md).

This module imports neither sympy nor numba: the builders import them when called.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .state import INIT_FIELDS, OrderParameters

__all__ = [
    "Model",
    "Param",
    "MODELS",
    "RULE_MODELS",
    "register",
    "model_of",
    "get",
    "check_number",
    "type_name",
    "deep_requested",
]


# ---------------------------------------------------------------------------- checks
def type_name(x) -> str:
    """How a wrong value is named in an error message (JSON terms)."""
    return {
        bool: "a boolean",
        str: "a string",
        type(None): "null",
        list: "a list",
        tuple: "a list",
        dict: "an object",
    }.get(type(x), type(x).__name__)


def _shown(x) -> str:
    try:
        return json.dumps(x)
    except (TypeError, ValueError):
        return repr(x)


def check_number(name: str, x, lo=None, strict: bool = False) -> float:
    """``x`` as a float, or ValueError naming ``name`` and what is allowed.

    Accepts Python and numpy integers and floats; refuses booleans, strings, None, lists
    and non-finite values (no silent conversion of ``"0.5"``). ``lo``: lower bound
    (``> lo`` when ``strict``, else ``>= lo``)."""
    if isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf":
        x = x.item()  # a 0-d array of a number is that number
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type_name(x)} ({_shown(x)})")
    xf = float(x)
    if not math.isfinite(xf):
        raise ValueError(f"{name} must be a finite number, got {xf}")
    if lo is not None and (xf <= lo if strict else xf < lo):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {lo:g}, got {xf:g}")
    return xf


def _check_numeric_tree(name: str, x) -> None:
    """An init value: a number or a (nested) list / array of numbers."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iuf":
            raise ValueError(f"{name} must hold numbers, got an array of {x.dtype}")
        return
    if isinstance(x, (list, tuple)):
        for item in x:
            _check_numeric_tree(name, item)
        return
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"{name} must be a number or a list of numbers, got {type_name(x)} ({_shown(x)})"
        )


@dataclass(frozen=True)
class Param:
    """One parameter of a model: ``default`` None means required unless ``fallback``
    names another parameter whose value it takes (``eta_v`` defaults to ``eta``);
    ``lo``/``strict``: its lower bound; ``fixed``: the only value allowed (FF's σ = 0);
    ``default_per_unit``: a default of ``default_per_unit · K`` (FF's θ = K/2)."""

    name: str
    doc: str
    default: float | None = None
    fallback: str | None = None
    lo: float | None = 0.0
    strict: bool = False
    fixed: float | None = None
    default_per_unit: float | None = None

    def required(self) -> bool:
        return (
            self.default is None
            and self.fallback is None
            and self.default_per_unit is None
            and self.fixed is None
        )


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Model:
    """A model: see the module docstring. The callables are given by name so that this
    registry stays free of sympy and numba.

    Attributes
    ----------
    name : str
    description : str
    params : tuple of Param
        The parameters a user gives (rates, thresholds), in order.
    init_required, init_refused : tuple of str
        Fields of the initial state it needs, and those it has no use for (refused rather
        than silently ignored); ``init_note`` says why.
    state_fields, observables, compare_fields : tuple of str
        The result's own arrays: layout fields beyond Q, R; named observables; the ones
        ``odeflow compare`` sets against a simulation.
    build : callable ``(rule, K, M, activation, quadrature) -> System``
    layout : callable ``(K, M, adaptive_b=False) -> layout``
    simulation : str
        Module of :mod:`simulations` with ``simulate(config, progress)`` and
        ``validate_config(config)`` ("" for a model without simulations).
    system_args : callable ``(params, rule_params) -> (eta, eta_v, sigma, rule_params)``
        How the validated parameters enter :meth:`System.params` (default: ``eta``,
        ``eta_v``, ``sigma`` where the model has them, and the rule parameters).
    rules : tuple of str
        Rule names that belong to this model (:data:`RULE_MODELS`).
    """

    name: str
    description: str
    params: tuple
    build: Callable
    layout: Callable
    init_required: tuple = ("Q", "R", "T", "v", "v_star")
    init_refused: tuple = ()
    init_note: str = ""
    state_fields: tuple = ()
    observables: tuple = ()
    compare_fields: tuple = ()
    simulation: str = ""
    system_args: Callable = None
    rules: tuple = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.system_args is None:  # η, η_v, σ as the committee's kernels take them
            object.__setattr__(self, "system_args", _rates)

    @property
    def param_names(self) -> tuple:
        return tuple(p.name for p in self.params)

    @property
    def result_fields(self) -> tuple:
        """Every model-specific array of a result (state fields, then observables)."""
        return tuple(dict.fromkeys(self.state_fields + self.observables))

    # ------------------------------------------------------------------ parameters
    def check_params(self, given: Mapping, K: int | None = None, rule_name: str = "") -> dict:
        """The one validator of this model's parameters.

        ``given``: name → value, None meaning "not given" (then the default applies).
        Names of *other* models' parameters given with a value are refused (FF has no
        ``eta_v``; the committee no ``theta``). Returns every parameter of the model with
        its value (defaults filled; ``default_per_unit`` needs ``K``)."""
        who = f"rule {rule_name!r}" if rule_name else f"model {self.name!r}"
        mine = set(self.param_names)
        for k, v in given.items():
            if k not in mine and v is not None:
                if k == "sigma" and _is_zero(v):
                    continue  # σ = 0 is "no noise": nothing to ignore
                owner = [m.name for m in MODELS.values() if k in m.param_names]
                where = f" (a parameter of model {owner[0]!r})" if owner else ""
                raise ValueError(
                    f"{k}{where} does not apply to {who}; it takes {', '.join(self.param_names)}"
                )
        out = {}
        for p in self.params:
            val = given.get(p.name)
            if p.fixed is not None:
                if val is not None:
                    check_number(p.name, val)
                    if float(val) != p.fixed:
                        raise ValueError(
                            f"{who} {p.doc}: {p.name} must be {p.fixed:g}, got {_shown(val)}"
                        )
                out[p.name] = p.fixed
                continue
            if val is None:
                if p.fallback is not None:
                    out[p.name] = out[p.fallback]
                    continue
                if p.default_per_unit is not None and K is not None:
                    out[p.name] = p.default_per_unit * K
                    continue
                if p.default is not None:
                    out[p.name] = float(p.default)
                    continue
                if p.default_per_unit is not None:
                    out[p.name] = None  # filled once K is known
                    continue
                raise ValueError(f"{p.name} ({p.doc}) is required for {who}: give a number")
            try:
                out[p.name] = check_number(p.name, val, p.lo, p.strict)
            except ValueError as exc:
                raise ValueError(f"{exc} ({p.name}: {p.doc})") from None
        return out

    # ------------------------------------------------------------------ initial state
    def check_init(self, init, rule_name: str = "") -> OrderParameters:
        """An :class:`OrderParameters` from ``init`` (one, or a mapping of arrays as in a
        JSON config), checked for this model: value types, required fields (FF asks for
        its label weights ``u``), refused fields."""
        who = f"rule {rule_name!r}" if rule_name else f"model {self.name!r}"
        if isinstance(init, Mapping):
            bad = sorted(set(init) - set(INIT_FIELDS))
            if bad:
                raise ValueError(
                    f"unknown init keys {', '.join(bad)}; allowed: {', '.join(INIT_FIELDS)}"
                )
            for k, v in init.items():
                _check_numeric_tree(f"init.{k}", v)
            refused = [k for k in self.init_refused if k in init]
            if refused:
                raise ValueError(
                    f"init keys {', '.join(refused)} do not apply to {who}: {self.init_note}"
                )
            missing = [k for k in self.init_required if k not in init]
            if missing:
                raise ValueError(self._missing(missing, who))
            try:
                state = OrderParameters.from_dict(init)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"init: {exc}") from None
        elif isinstance(init, OrderParameters):
            state = init
        else:
            raise ValueError(
                "init must be an OrderParameters or a dict of arrays "
                f"{', '.join(self.init_required)} (see the model {self.name!r}),"
                f" got {type(init).__name__}"
            )
        missing = [k for k in self.init_required if getattr(state, k) is None]
        if missing:
            raise ValueError(self._missing(missing, who))
        refused = [
            k
            for k in self.init_refused
            if getattr(state, k) is not None and not _is_zero(getattr(state, k))
        ]
        if refused:
            raise ValueError(
                f"the initial state has {', '.join(refused)}, which do not apply "
                f"to {who}: {self.init_note}"
            )
        return state

    def _missing(self, missing, who) -> str:
        hint = self.extra.get("missing_hint", {})
        parts = [hint.get(k, k) for k in missing]
        return (
            f"{who} needs {', '.join(parts)} in the initial state (init keys "
            f"{', '.join(self.init_required)})"
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "params": list(self.param_names),
            "init": list(self.init_required),
            "fields": list(self.result_fields),
            "simulation": self.simulation,
        }


def _rates(p, rp=None):
    return p["eta"], p.get("eta_v"), p.get("sigma", 0.0), dict(rp or {})


def _is_zero(x) -> bool:
    try:
        return bool(np.all(np.asarray(x, dtype=float) == 0))
    except (TypeError, ValueError):
        return False


#: model name → Model
MODELS: dict = {}
#: rule name → model name, for the rules that are not the committee's
RULE_MODELS: dict = {}


def register(model: Model) -> Model:
    """Add ``model`` to :data:`MODELS` and its rule names to :data:`RULE_MODELS`."""
    MODELS[model.name] = model
    for r in model.rules:
        RULE_MODELS[r] = model.name
    return model


def get(name: str) -> Model:
    """The model called ``name`` (ValueError naming the registered ones)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return MODELS[name]


def model_of(rule) -> Model:
    """The model of ``rule``: a system (its ``model``), a rule name listed in
    :data:`RULE_MODELS`, or the committee (built-in committee rules, a
    :class:`theory.rules.Rule`, a ``"file.py:NAME"`` or a dict describing one)."""
    name = getattr(rule, "model", None)
    if isinstance(name, str) and name in MODELS and hasattr(rule, "rhs"):
        return MODELS[name]
    if isinstance(rule, str) and rule in RULE_MODELS:
        return MODELS[RULE_MODELS[rule]]
    return MODELS["committee"]


# ------------------------------------------------------------------------ committee
def _committee_build(rule, K, M, activation="erf", quadrature=None):
    """Closed forms from the code cache (no sympy) when possible, else derived by
    :func:`theory.codegen.build_system` (closed forms or quadrature)."""
    fast = isinstance(rule, str) and quadrature is None
    if fast:
        from .cache import cached_system

        system = cached_system(rule, K, M, activation)
        if system is not None:
            return system
    from .codegen import build_system  # imports sympy: only when needed

    system = build_system(rule, K, M, activation, quadrature)
    if fast:  # closed-form systems only (see remember)
        from .cache import remember

        remember(rule, activation, system)
    return system


def _committee_layout(K, M, adaptive_b=False):
    from .state import Layout

    return Layout(K, M, adaptive_b)


COMMITTEE = register(
    Model(
        name="committee",
        description=(
            "two-layer committee ŷ = Σ_k v_k g(λ_k) learning a teacher (docs/theory.md §1-5)"
        ),
        params=(
            Param("eta", "first-layer learning rate η (scaled η/√N)"),
            Param("eta_v", "second-layer learning rate η_v (scaled η_v/N)", fallback="eta"),
            Param("sigma", "teacher output-noise standard deviation σ", default=0.0),
        ),
        init_required=("Q", "R", "T", "v", "v_star"),
        init_refused=("u",),
        init_note="u is the label weights of Forward-Forward (rule 'ff'); the committee has a "
        "second layer v",
        state_fields=("v", "b"),
        observables=("b", "cos_vb", "norm_b"),
        compare_fields=("v", "b"),
        build=_committee_build,
        layout=_committee_layout,
        simulation="simulations.teacher_student",
    )
)


# ------------------------------------------------------------------- Forward-Forward
def _ff_build(rule, K, M, activation="erf", quadrature=None):
    from .ff import build_ff_system

    # FF chooses its own rule; quadrature = {"rtol", "n", "seed"} (theory.ff_tolerance)
    return build_ff_system(K, M, activation, quadrature=quadrature)


def _ff_layout(K, M, adaptive_b=False):
    from .ff import FFLayout

    return FFLayout(K, M)


def _ff_system_args(p, rp=None):
    if rp:
        raise ValueError(
            f"rule 'ff' has no rule_params (got {sorted(rp)}); its parameters "
            "are eta, eta_u and theta"
        )
    return p["eta"], None, 0.0, {"eta_u": p["eta_u"], "theta": p["theta"]}


FF = register(
    Model(
        name="ff",
        description="one Forward-Forward layer with label weights u (docs/ff-theory.md)",
        params=(
            Param("eta", "first-layer learning rate η (scaled η/√N)"),
            Param("eta_u", "label-weight learning rate η_u (scaled η_u/N)", fallback="eta"),
            Param("theta", "goodness threshold θ", lo=0.0, strict=True, default_per_unit=0.5),
            Param("sigma", "has no output noise: its labels are sign(teacher)", fixed=0.0),
        ),
        init_required=("Q", "R", "T", "u", "v_star"),
        init_refused=("v", "b", "c", "sigma_F2", "F_norm2"),
        init_note="rule 'ff' has one layer with label weights u (no second layer v, no feedback "
        "b, c, sigma_F2, F_norm2); its init is Q, R, T, u, v_star",
        state_fields=("u",),
        observables=("loss", "gap"),
        compare_fields=("u", "loss", "gap"),
        build=_ff_build,
        layout=_ff_layout,
        simulation="simulations.ff_online",
        system_args=_ff_system_args,
        rules=("ff",),
        extra={
            "missing_hint": {
                "u": "the label weights u (K numbers, e.g. u ~ 0.1·N(0, 1); "
                "u = 0 is the symmetric point)"
            }
        },
    )
)


# ------------------------------------------------------------------------ deep student
def _deep_build(rule, K, M, activation="erf", quadrature=None, widths=None):
    """The deep system (theory.deep) for hidden ``widths`` (default ``[K]``)."""
    from .deep import build_deep_system

    return build_deep_system(rule, [K] if widths is None else widths, M, activation, quadrature)


def _deep_layout(K, M, adaptive_b=False, widths=None):
    from .deep import DeepLayout

    return DeepLayout(tuple([K] if widths is None else widths), M, adaptive_b)


def _deep_system_args(p, rp=None):
    # rule_params: a user deep rule's parameters (DeepSystem.params checks the names)
    if rp and "eta_W" in rp:
        raise ValueError("eta_W is a parameter of the deep student, not a rule_param")
    return p["eta"], p["eta_v"], p.get("sigma", 0.0), {"eta_W": p["eta_W"], **dict(rp or {})}


def deep_requested(init=None, widths=None) -> bool:
    """Whether a call asks for the deep model: ``widths`` given, or an initial state (an
    OrderParameters or a mapping) with read-out matrices ``W`` (docs/deep.md)."""
    if widths is not None:
        return True
    if isinstance(init, Mapping):
        return "W" in init or "W_count" in init
    return getattr(init, "W", None) is not None


DEEP = register(
    Model(
        name="deep",
        description=(
            "deep student: a wide first layer W1, finite read-out matrices W[i] and v "
            "(docs/deep.md); selected by widths=[K1, K2, …] or an init with W"
        ),
        params=(
            Param("eta", "first-layer learning rate η (scaled η/√N)"),
            Param("eta_v", "last-layer learning rate η_v (scaled η_v/N)", fallback="eta"),
            Param("eta_W", "read-out matrices' learning rate η_W (scaled η_W/N)", fallback="eta_v"),
            Param("sigma", "teacher output-noise standard deviation σ", default=0.0),
        ),
        init_required=("Q", "R", "T", "v", "v_star", "W"),
        init_refused=("u",),
        init_note="u is the label weights of Forward-Forward (rule 'ff'); a deep student has "
        "read-out matrices W and a last layer v",
        state_fields=("v", "W", "b"),
        observables=("b", "cos_delta"),
        compare_fields=("v", "W", "b", "cos_delta"),
        build=_deep_build,
        layout=_deep_layout,
        simulation="simulations.deep_student",
        system_args=_deep_system_args,
        extra={
            "missing_hint": {
                "W": "the read-out matrices W (a list, W[0] of shape K2×K1; W = [] for a "
                "two-layer network)"
            }
        },
    )
)
