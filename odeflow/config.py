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
    description   free text (ignored)

``sde`` (:data:`SDE_KEYS`) takes the same keys minus ``rtol, atol, eg_tol, max_steps``,
plus ``n_paths`` (required), ``seed`` and ``method`` = "euler-maruyama"; ``dt`` is required.

``init`` may be omitted when the command line gives ``--init-from SIM.npz``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from theory.state import FIELDS, OrderParameters

__all__ = ["SOLVE_KEYS", "SDE_KEYS", "INIT_KEYS", "load_config", "validate_config",
           "to_solve_args", "to_sde_args", "ConfigError"]

_COMMON = ("rule", "K", "M", "activation", "eta", "eta_v", "sigma", "alpha_max", "dt",
           "record", "diverge_threshold", "init", "description", "quadrature")
SOLVE_KEYS = _COMMON + ("method", "rtol", "atol", "eg_tol", "max_steps")
SDE_KEYS = _COMMON + ("method", "n_paths", "seed")
INIT_KEYS = FIELDS
_REQUIRED = {"solve": ("rule", "eta", "alpha_max"),
             "sde": ("rule", "eta", "alpha_max", "dt", "n_paths")}
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
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path} must hold a JSON object {{...}}, got {type(cfg).__name__}")
    return cfg


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
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        extra = ""
        other = [k for k in unknown if k in set(SOLVE_KEYS) | set(SDE_KEYS)]
        if other:
            extra = (f" ({', '.join(other)} belong to the other command: 'solve' and 'sde' "
                     "configs differ)")
        raise ConfigError(f"unknown config keys {', '.join(unknown)}{extra}; allowed keys for "
                          f"'{command}': {', '.join(allowed)}")
    missing = [k for k in _REQUIRED[command] if k not in cfg]
    if missing:
        raise ConfigError(f"config is missing required keys {', '.join(missing)} "
                          f"(required for '{command}': {', '.join(_REQUIRED[command])})")
    out = dict(cfg)
    out.pop("description", None)
    if init_from is not None:
        try:
            init = OrderParameters.load(init_from)
        except (OSError, KeyError) as exc:
            raise ConfigError(f"cannot read an initial state from {init_from}: {exc}") from None
    elif "init" in cfg:
        raw = cfg["init"]
        if not isinstance(raw, Mapping):
            raise ConfigError("init must be an object with arrays Q, R, T, v, v_star "
                              "(and b, c, sigma_F2 as the rule needs)")
        bad = sorted(set(raw) - set(INIT_KEYS))
        if bad:
            raise ConfigError(f"unknown init keys {', '.join(bad)}; allowed: "
                              f"{', '.join(INIT_KEYS)}")
        init = OrderParameters.from_dict(raw)
    else:
        raise ConfigError("no initial state: give 'init' in the config or --init-from SIM.npz")
    for name, val in (("K", init.K), ("M", init.M)):
        if name in cfg and cfg[name] != val:
            raise ConfigError(f"config says {name} = {cfg[name]!r} but the initial state has "
                              f"{name} = {val}")
    out["init"] = init
    out["K"], out["M"] = init.K, init.M
    if not isinstance(out["rule"], str):
        raise ConfigError(f"rule must be a name such as 'bp', 'fa', 'afa', got {out['rule']!r}")
    return out


def to_solve_args(cfg: Mapping) -> tuple:
    """``(rule, init, kwargs)`` for :func:`odeflow.solve` from a validated config."""
    kw = {k: v for k, v in cfg.items() if k not in ("rule", "init", "K", "M")}
    return cfg["rule"], cfg["init"], kw


def to_sde_args(cfg: Mapping) -> tuple:
    """``(rule, init, kwargs)`` for :func:`odeflow.solve_sde` from a validated config."""
    return to_solve_args(cfg)
