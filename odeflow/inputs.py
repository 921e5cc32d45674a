"""Input checks of :func:`odeflow.solve` and :func:`odeflow.solve_sde`, and the system
behind a rule.

Every argument is checked before anything is compiled or integrated, with the same
messages as the command line (:mod:`odeflow.config`): a ValueError naming the argument
and what is allowed. The model's own parameters (η, η_v, σ for the committee; η, η_u, θ
for Forward-Forward) are checked by the model's one validator,
:meth:`theory.models.Model.check_params`.
"""

from __future__ import annotations

import math

import numpy as np

from theory.models import MODELS, deep_requested, model_of
from theory.runtime import cli
from theory.state import OrderParameters, record_alphas

__all__ = [
    "get_system",
    "check_run",
    "positive",
    "record_grid",
    "dt_note",
    "rule_name",
    "params_vector",
    "quad_report",
    "select_quadrature",
    "check_bool",
    "deep_init",
]


def get_system(rule, K: int, M: int, activation="erf", quadrature=None, widths=None):
    """The compiled system for ``rule`` (a name, a ``theory.rules.Rule``, or a prebuilt
    system, :class:`theory.system.System`), built by its model (:mod:`theory.models`).
    ``quadrature``: see :func:`odeflow.solve`. ``widths``: the hidden widths of a deep
    student (docs/deep.md; then the deep model builds it)."""
    if all(hasattr(rule, a) for a in ("rhs", "eg", "layout", "params")):
        if (rule.layout.K, rule.layout.M) != (K, M):
            raise ValueError(
                f"the system was built for K={rule.layout.K}, M={rule.layout.M} "
                f"but the initial state has K={K}, M={M}"
            )
        return rule
    if widths is not None:
        return MODELS["deep"].build(rule, K, M, activation, quadrature, widths=widths)
    return model_of(rule).build(rule, K, M, activation, quadrature)


def deep_init(init, widths):
    """The initial state of a deep student, its shapes checked against ``widths``:
    ValueError naming the key, the expected and the given shape. A mapping without ``W``
    gets ``W = []`` when ``widths = [K1]`` (the two-layer network)."""
    from theory.deep import check_widths

    widths = None if widths is None else check_widths(widths)
    out = init
    if isinstance(init, OrderParameters):
        if widths is not None and init.W is None and len(widths) == 1:
            out = init = init.replace(W=[])
        d = {"Q": init.Q, "v": init.v, "W": init.W, "B": init.B, "d": init.d}
        d = {k: v for k, v in d.items() if v is not None}
    elif isinstance(init, dict):
        out = d = dict(init)
        if "W" not in d and widths is not None and len(widths) == 1:
            d["W"] = []
    else:
        return init  # the model's check_init names what is wrong
    if widths is None or "W" not in d:
        return out
    L = len(widths)
    W = d["W"]
    if not isinstance(W, (list, tuple)) or len(W) != L - 1:
        n = len(W) if isinstance(W, (list, tuple)) else type(W).__name__
        raise ValueError(
            f"init W must be a list of {L - 1} read-out matrices for widths {widths}, got {n}"
        )
    expected = {"Q": (widths[0], widths[0]), "v": (widths[-1],)}
    for i in range(L - 1):
        expected[f"W[{i}]"] = (widths[i + 1], widths[i])
    if d.get("B") is not None:
        for i in range(L - 1):
            expected[f"B[{i}]"] = (widths[i], widths[i + 1])
    if d.get("d") is not None:
        for i in range(L):
            expected[f"d[{i}]"] = (widths[i],)
    for key, shape in expected.items():
        name, _, idx = key.partition("[")
        val = d.get(name)
        if val is None:
            continue
        try:
            if idx:
                val = val[int(idx[:-1])]
            got = np.shape(np.asarray(val, dtype=float))
        except (IndexError, TypeError, ValueError):
            raise ValueError(f"init {key}: expected an array of shape {shape}") from None
        if got != shape:
            raise ValueError(
                f"init {key} must have shape {shape} for widths {widths}, got shape {got}"
            )
    return out


def check_bool(name, x) -> bool:
    """``x`` if it is a boolean (True/False, numpy bool), else ValueError."""
    if not isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {x!r}")
    return bool(x)


def positive(name, x, allow_none=False):
    """``x`` as a positive finite float (None passes with ``allow_none``); strings,
    booleans and None are refused, never converted."""
    if x is None and allow_none:
        return None
    if isinstance(x, (bool, np.bool_, str)) or x is None:
        raise ValueError(f"{name} must be a positive number, got {x!r}")
    try:
        xf = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {x!r}") from None
    if not (math.isfinite(xf) and xf > 0):
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return xf


def check_run(rule, init, rule_params, given: dict, widths=None):
    """``(model, state, model parameters, (eta, eta_v, sigma, rule_params))``.

    ``given``: the model parameters as passed (None = not given); the state from ``init``
    (an OrderParameters or a dict of arrays) checked against the model (FF needs ``u``,
    has no ``v``). ``widths`` (or an init with ``W``) selects the deep model."""
    name = rule_name(rule)
    if deep_requested(init, widths) and not hasattr(rule, "rhs"):
        model = MODELS["deep"]
        from theory.deep import resolve_deep_rule

        name = resolve_deep_rule(rule)[0]  # ValueError naming the deep rules
        init = deep_init(init, widths)
    else:
        model = model_of(rule)
    if rule_params is not None and not isinstance(rule_params, dict):
        raise ValueError(f"rule_params must be a dict of numbers, got {rule_params!r}")
    state = model.check_init(init, name)
    mp = model.check_params(given, K=state.K, rule_name=name)
    return model, state, mp, model.system_args(mp, rule_params)


def rule_name(rule) -> str:
    """The name of a rule given as a name, a Rule or a system."""
    if isinstance(rule, str):
        return rule
    r = getattr(rule, "rule", rule)
    return getattr(r, "name", str(r))


def feedback(system) -> str:
    return getattr(system.rule, "feedback", "adaptive" if system.layout.adaptive_b else "v")


def params_vector(system, state, eta, eta_v, sigma, rule_params):
    """``system.params(...)`` as a contiguous float array."""
    if rule_params:
        return np.ascontiguousarray(
            system.params(state, eta, eta_v, sigma, **rule_params), dtype=float
        )
    return np.ascontiguousarray(system.params(state, eta, eta_v, sigma), dtype=float)


def _scheme_options(system) -> bool:
    """Whether ``system`` integrates with one of the committee's schemes (its options name
    a ``scheme``: :mod:`theory.tolerance` selects and re-checks those; FF's node rules
    carry their own estimate, :mod:`theory.ff_tolerance`)."""
    q = getattr(system, "quadrature", None)
    return isinstance(q, dict) and "scheme" in q and hasattr(system, "error_estimate")


def select_quadrature(system, state, eta, eta_v, sigma, rule_params):
    """``(system, selection)``: for a quadrature system, the one whose rule meets the
    tolerance ``rtol`` at the initial state (:func:`theory.tolerance.select`: ``auto``
    picks scheme and n, an explicit scheme that cannot meet it is refused with a
    ValueError); other systems pass unchanged with ``selection`` None."""
    if not _scheme_options(system):
        return system, None
    from theory.tolerance import select

    system, sel = select(system, state, eta, eta_v, sigma, rule_params)
    if sel.get("warning"):
        cli.status(f"warning: {sel['warning']}")
    return system, sel


def quad_report(
    system, state, final, eta, eta_v, sigma, rule_params, selection=None, alphas=None, records=None
):
    """The quadrature rule used and its error estimate at the initial and final states
    (None for closed-form systems): see ``theory.codegen_quad.QuadSystem.error_estimate``.
    With the recorded states (``alphas``, ``records``), the estimate is re-checked along
    the run (:func:`theory.tolerance.recheck`): ``out["failure"]`` holds the message when
    a state misses rtol (the caller then reports status −1)."""
    if not hasattr(system, "error_estimate"):
        return None
    rp = dict(rule_params or {})
    out = {
        "options": dict(system.quadrature),
        "rule": (
            system.describe_rule(sigma)
            if hasattr(system, "describe_rule")
            else system.rule_for(sigma).describe()
        ),
    }
    if selection:
        out["selection"] = selection
        if selection.get("warning"):
            out["warning"] = selection["warning"]
    for name, st in (("init", state), ("final", final)):
        try:
            out[f"error_{name}"] = system.error_estimate(st, eta, eta_v, sigma, **rp)
        except ValueError as exc:  # e.g. a final state at the edge of validity
            out[f"error_{name}"] = str(exc)
    if alphas is not None and len(alphas) > 1 and _scheme_options(system):
        from theory.tolerance import recheck

        checks, failure = recheck(system, alphas, records, state, eta, eta_v, sigma, rp)
        out["checks"] = checks
        # an explicit rule that met rtol at the start and misses it later fails the run
        # (status −1); auto's choice, or its fallback, says so in a warning
        sel = (selection or {}).get("selected", {})
        met = sel.get("meets", True) and not (selection or {}).get("auto")
        if failure and met:
            out["failure"] = failure
        elif failure:
            out["warning_final"] = failure
    return out


def as_state(init) -> OrderParameters:
    """An OrderParameters from ``init`` (one, or a dict of arrays)."""
    if isinstance(init, OrderParameters):
        return init
    if isinstance(init, dict):
        return OrderParameters.from_dict(init)
    raise ValueError(
        "init must be an OrderParameters or a dict of arrays Q, R, T, v, v_star "
        f"(b, c, sigma_F2 as the rule needs), got {type(init).__name__}"
    )


def record_grid(record, alpha_max):
    """Recording times from ``record`` (default: 0 and 200 log-spaced α), clipped to
    ``[0, alpha_max]`` so that round-off in ``k·dα`` never puts a record past the end."""
    if record is None:
        record = {"log": 200, "min": min(1e-2, alpha_max / 1e3)}
    elif isinstance(record, (list, tuple, np.ndarray)):  # like solve_ivp's t_eval
        record = {"alpha": [float(a) for a in np.ravel(record)]}
    rec = np.asarray(record_alphas(record, alpha_max), dtype=float)
    rec = np.minimum(rec, alpha_max)
    if abs(rec[-1] - alpha_max) <= 1e-9 * alpha_max:
        rec[-1] = alpha_max
    if np.any(np.diff(rec) <= 0):
        raise ValueError("record times must be strictly increasing within [0, alpha_max]")
    return rec, record


def dt_note(dt, rec):
    """Say (stderr, and in ``params['notes']``) when the fixed step dt is longer than the
    spacing of the records: steps are then shortened to land on every record."""
    if dt is None or len(rec) < 2:
        return None
    gap = float(np.min(np.diff(rec)))
    if dt <= gap * (1 + 1e-12):
        return None
    note = (
        f"dt = {dt:.4g} is larger than the smallest record spacing {gap:.4g}: steps are "
        "shortened there to land on every record time"
    )
    cli.status(f"note: {note}")
    return note
