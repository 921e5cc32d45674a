"""Run configurations (JSON) for ``python -m odeflow``: loading and validation.

A config is a JSON object. Keys for ``solve`` (:data:`SOLVE_KEYS`)::

    rule          "bp" | "fa" | "afa" | "pepita" | "pepita-forward"    (required)
    K, M          ints, optional; checked against init
    activation    "erf" (default) | "linear" | "relu" | "tanh" | "sigmoid"
    quadrature    null (auto) | false | true | scheme | {"scheme", "n", "seed"}
    eta           first-layer learning rate η                          (required)
    eta_v         second-layer learning rate η_v (default: eta)
    sigma         teacher output-noise std σ (default 0)
    alpha_max     final α                                              (required)
    method        "dopri5" (default) | "rk4" | "euler"
    dt            step (required for rk4/euler; optional first step for dopri5)
    rtol, atol    dopri5 tolerances (default 1e-8, 1e-10)
    record        {"every": dα} | {"log": n, "min": α_min} | {"alpha": [...]} | dα
    eg_tol        stop when ε_g < eg_tol (optional)
    max_steps, diverge_threshold
    init          {"Q", "R", "T", "v", "v_star", "b" (FA, AFA), "c", "sigma_F2" (AFA),
                   "F_norm2" (pepita)}
    eta_u, theta  rule ff (Forward-Forward): label-weight rate, goodness threshold > 0
                  (default K/2), instead of eta_v and sigma; its init is {"Q", "R", "T",
                  "u", "v_star"} (no v, b, c, sigma_F2, F_norm2)
    widths        deep student (docs/deep.md): hidden widths [K1, K2, …]; its init adds
                  "W" (list of read-out matrices, W[0] of shape K2×K1), FA's "b" (last
                  width) and "B", DFA's "d"; also selected by an init with "W"
    eta_W         deep student: the read-out matrices' rate (default eta_v)

The rule's model (:mod:`theory.models`) checks its parameters (numbers only: ``"0.5"``,
``true``, ``null`` are refused naming the key) and its initial state, with the same
validator :func:`odeflow.solve` uses.
    rule_params   {"name": number}: values of a Rule's own parameters (e.g. weight decay)
    description   free text (ignored)

``sde`` (:data:`SDE_KEYS`) takes the same keys minus ``rtol, atol, eg_tol, max_steps``,
plus ``n_paths`` (required), ``seed`` and ``method`` = "euler-maruyama"; ``dt`` is required.
``"N": 500`` gives every order parameter its finite-N noise Σ(y)/N (any rule, also "ff";
docs/finite-size.md), with ``noise_quadrature`` (as ``quadrature``), ``noise_every``
(refactor Σ every this many steps; default null: adaptively, as Σ changes) and
``noise_rtol`` (the adaptive refresh's tolerance, default 0.05) and ``drift_correction``
(true: the drift to O(1/N), bp/fa and such user rules); without ``N`` only AFA's feedback
is noisy.
A deep student (``widths`` / an init with ``"W"``, ``eta_W``) needs ``N``: every order
parameter, every read-out matrix included, gets its finite-N noise (docs/deep.md).

``init`` may be omitted when the command line gives ``--init-from SIM.npz``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from theory.models import MODELS, check_number, deep_requested, model_of
from theory.runtime import cli
from theory.state import INIT_FIELDS, OrderParameters

__all__ = [
    "SOLVE_KEYS",
    "SDE_KEYS",
    "INIT_KEYS",
    "load_config",
    "validate_config",
    "to_solve_args",
    "to_sde_args",
    "ConfigError",
]

_COMMON = (
    "rule",
    "K",
    "M",
    "activation",
    "alpha_max",
    "dt",
    "record",
    "diverge_threshold",
    "init",
    "description",
    "quadrature",
    "rule_params",
)
#: the parameters of every registered model (theory.models): checked by the rule's model
MODEL_KEYS = ("eta", "eta_v", "sigma", "eta_u", "theta", "eta_W")
SOLVE_KEYS = (
    _COMMON[:4]
    + ("eta", "eta_v", "sigma")
    + _COMMON[4:]
    + ("method", "rtol", "atol", "eg_tol", "max_steps", "eta_u", "theta", "widths")
)
SDE_KEYS = (
    _COMMON[:4]
    + ("eta", "eta_v", "sigma")
    + _COMMON[4:]
    + (
        "method",
        "n_paths",
        "seed",
        "N",
        "noise_quadrature",
        "noise_every",
        "noise_rtol",
        "drift_correction",
        "widths",
    )
)
INIT_KEYS = INIT_FIELDS
_REQUIRED = {
    "solve": ("rule", "eta", "alpha_max"),
    "sde": ("rule", "eta", "alpha_max", "dt", "n_paths"),
}
_ALLOWED = {"solve": SOLVE_KEYS, "sde": SDE_KEYS}


class ConfigError(ValueError):
    """An invalid configuration (a ValueError, so API callers can catch either)."""


def load_config(path) -> dict:
    """Read a JSON config file (not yet validated)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (JSON) file") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path} must hold a JSON object {{...}}, got {type(cfg).__name__}")
    return cfg


_INIT_FROM_EXPECTED = (
    "a simulation output (python -m simulations run … -o SIM.npz) or an "
    "odeflow result (.npz) holding the initial state as arrays init_Q, "
    "init_R, init_T, init_v, init_v_star (and init_b, init_c, "
    "init_sigma_F2 for FA/AFA)"
)
#: keys whose value must be a real number (JSON number; not a string, boolean, null or list)
#: (the model's parameters, eta, eta_u, theta, …, are checked by the model's validator)
_NUMBER_KEYS = (
    "alpha_max",
    "dt",
    "rtol",
    "atol",
    "eg_tol",
    "diverge_threshold",
    "N",
    "noise_rtol",
)
#: keys whose value must be an integer
_INT_KEYS = ("K", "M", "max_steps", "n_paths", "seed", "noise_every")
_STR_KEYS = ("rule", "activation", "method")


def _type_name(x) -> str:
    return {
        bool: "a boolean",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "an object",
    }.get(type(x), type(x).__name__)


def _check_types(cfg: Mapping) -> None:
    """Wrong JSON types are errors naming the key (``"eta": "0.5"``, ``true``, ``null``,
    ``[0.5]`` are not numbers), never silently converted."""
    for k in _NUMBER_KEYS:
        if k in cfg and (isinstance(cfg[k], bool) or not isinstance(cfg[k], (int, float))):
            if k in ("dt", "eg_tol", "N", "noise_rtol") and cfg[k] is None:
                continue  # null = not given
            raise ConfigError(
                f"{k} must be a number, got {_type_name(cfg[k])} ({json.dumps(cfg[k])})"
            )
    for k in _INT_KEYS:
        if k in cfg and (isinstance(cfg[k], bool) or not isinstance(cfg[k], int)):
            if k in ("seed", "noise_every") and cfg[k] is None:
                continue  # null = fresh entropy / the adaptive refresh
            raise ConfigError(
                f"{k} must be an integer, got {_type_name(cfg[k])} ({json.dumps(cfg[k])})"
            )
    if "drift_correction" in cfg and not isinstance(cfg["drift_correction"], bool):
        v = cfg["drift_correction"]
        raise ConfigError(
            f"drift_correction must be true or false, got {_type_name(v)} ({json.dumps(v)})"
        )
    for k in _STR_KEYS:
        if k in cfg and not isinstance(cfg[k], str):
            raise ConfigError(
                f"{k} must be a string, got {_type_name(cfg[k])} ({json.dumps(cfg[k])})"
            )
    if "rule_params" in cfg:
        rp = cfg["rule_params"]
        if not isinstance(rp, Mapping):
            raise ConfigError(
                f"rule_params must be an object of numbers (a Rule's own "
                f"parameters), got {_type_name(rp)} ({json.dumps(rp)})"
            )
        for k, v in rp.items():
            try:
                check_number(f"rule_params.{k}", v)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    if "seed" in cfg and isinstance(cfg["seed"], int) and cfg["seed"] < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {cfg['seed']}")


def validate_config(cfg: Mapping, command: str = "solve", init_from=None) -> dict:
    """Check keys and the initial state; return a normalised copy with ``init`` an
    :class:`OrderParameters`.

    Parameters
    ----------
    cfg : mapping
    command : {"solve", "sde"}
    init_from : path, optional
        A simulation output (``.npz``) whose initial state (prefix ``init_``) replaces the
        config's ``init``.
    """
    if command not in _ALLOWED:
        raise ConfigError(f"unknown command {command!r}; allowed: {', '.join(_ALLOWED)}")
    allowed = _ALLOWED[command]
    # every model's parameters pass here; the rule's model refuses those of another model
    unknown = sorted(set(cfg) - set(allowed) - set(MODEL_KEYS))
    if unknown:
        extra = ""
        other = [k for k in unknown if k in set(SOLVE_KEYS) | set(SDE_KEYS)]
        if other:
            extra = (
                f" ({', '.join(other)} belong to the other command: 'solve' and 'sde' "
                "configs differ)"
            )
        raise ConfigError(
            f"unknown config keys {', '.join(unknown)}{extra}; allowed keys for "
            f"'{command}': {', '.join(allowed)}"
        )
    missing = [k for k in _REQUIRED[command] if k not in cfg]
    if missing:
        raise ConfigError(
            f"config is missing required keys {', '.join(missing)} "
            f"(required for '{command}': {', '.join(_REQUIRED[command])})"
        )
    out = dict(cfg)
    out.pop("description", None)
    _check_types(cfg)
    if not isinstance(out["rule"], str):
        raise ConfigError(
            f"rule must be a name such as 'bp', 'fa', 'afa', 'ff', got {out['rule']!r}"
        )
    deep = deep_requested(cfg.get("init"), cfg.get("widths")) or (
        init_from is not None and _npz_has_W(init_from)
    )
    model = MODELS["deep"] if deep else model_of(cfg["rule"])
    if deep:
        from theory.deep import DEEP_RULES, check_widths

        if cfg["rule"] not in DEEP_RULES and ":" not in cfg["rule"]:  # file.py:NAME: later
            raise ConfigError(
                f"rule {cfg['rule']!r} has no deep form; deep rules: {', '.join(DEEP_RULES)} "
                "or 'path/to/file.py:NAME' naming a theory.deep_rules.DeepRule"
            )
        if "widths" in cfg:
            try:
                out["widths"] = check_widths(cfg["widths"])
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    if init_from is not None:
        d = cli.load_npz(init_from, "--init-from", _INIT_FROM_EXPECTED)
        try:
            init = model.check_init(
                OrderParameters.from_dict(d, "init_" if "init_Q" in d else ""), cfg["rule"]
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"--init-from {init_from}: {exc}; it should be {_INIT_FROM_EXPECTED}"
            ) from None
    elif "init" in cfg:
        raw = cfg["init"]
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "init must be an object with arrays "
                f"{', '.join(model.init_required)} (as the rule needs)"
            )
        try:  # types, required and refused keys: the model's check
            if deep:  # shapes against widths, naming the key and both shapes
                from .inputs import deep_init

                raw = deep_init(dict(raw), out.get("widths"))
            init = model.check_init(raw, cfg["rule"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    else:
        raise ConfigError("no initial state: give 'init' in the config or --init-from SIM.npz")
    for name, val in (("K", init.K), ("M", init.M)):
        if name in cfg and cfg[name] != val:
            raise ConfigError(
                f"config says {name} = {cfg[name]!r} but the initial state has {name} = {val}"
            )
    # the model's one validator (theory.models), as odeflow.solve uses it; JSON null is
    # not "not given" here
    for k in MODEL_KEYS:
        if k in cfg and cfg[k] is None:
            raise ConfigError(f"{k} must be a number, got null")
    try:
        model.check_params(
            {k: cfg[k] for k in MODEL_KEYS if k in cfg}, K=init.K, rule_name=cfg["rule"]
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if deep and "widths" in out and init.widths != out["widths"]:
        raise ConfigError(
            f"config says widths = {out['widths']} but the initial state has widths "
            f"{init.widths} (K1 from Q, the others from W)"
        )
    out["init"] = init
    out["K"], out["M"] = init.K, init.M
    return out


def _npz_has_W(path) -> bool:
    """Whether a simulation output holds a deep student's read-out matrices."""
    try:
        import numpy as np

        with np.load(path) as z:
            return any(k in z.files for k in ("init_W_count", "W_count", "W0", "init_W0"))
    except Exception:  # a bad file is reported by the loader, with its own message
        return False


def to_solve_args(cfg: Mapping) -> tuple:
    """``(rule, init, kwargs)`` for :func:`odeflow.solve` from a validated config."""
    kw = {k: v for k, v in cfg.items() if k not in ("rule", "init", "K", "M")}
    return cfg["rule"], cfg["init"], kw


def to_sde_args(cfg: Mapping) -> tuple:
    """``(rule, init, kwargs)`` for :func:`odeflow.solve_sde` from a validated config."""
    return to_solve_args(cfg)
