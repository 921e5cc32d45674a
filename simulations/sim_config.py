"""Configs of the teacher–student simulations (``python -m simulations run``): defaults,
checks, and the dispatch of a rule to its model's simulation module.

:func:`validate_config` checks a committee config (bp, fa, afa, pepita, pepita-forward or
any :class:`theory.rules.Rule`); a rule of another model (:data:`theory.models.RULE_MODELS`,
e.g. Forward-Forward) goes to the ``validate_config`` of that model's simulation module
(:attr:`theory.models.Model.simulation`), found by name: no rule name is tested here.
"""

from __future__ import annotations

import importlib
import math
import os

import numpy as np

from theory.models import model_of
from theory.state import record_alphas

from . import kernelgen
from .ensemble import Divergence, seed_list

__all__ = [
    "RULES",
    "ADAPTIVE",
    "DEFAULTS",
    "validate_config",
    "block_steps",
    "rule_relative_to",
    "model_module",
]

#: the module of the committee's simulations (theory.models: COMMITTEE.simulation)
_HERE = "simulations.teacher_student"


def model_module(config):
    """The simulation module of ``config``'s rule when its model is not the committee
    (its ``simulate`` and ``validate_config`` take over), else None. A config with
    ``"widths"`` is a deep student (:mod:`simulations.deep_student`) whatever its rule."""
    if isinstance(config, dict) and "widths" in config:
        return importlib.import_module("simulations.deep_student")
    rule = config.get("rule") if isinstance(config, dict) else None
    if rule in ("dfa", "pepita-hebbian"):  # rules only the deep student simulates
        raise ValueError(
            f'rule {rule!r} is simulated by the deep student: give "widths": [K1, K2, ...] '
            "(the hidden widths; [K] for a two-layer network)"
        )
    model = model_of(rule)
    if not model.simulation:
        raise ValueError(f"rule {rule!r} (model {model.name!r}) has no simulation")
    return None if model.simulation == _HERE else importlib.import_module(model.simulation)


#: built-in learning rules (any theory.rules.Rule, or "file.py:NAME", simulates too: the
#: kernel of every rule is generated from its Rule by simulations.kernelgen)
RULES = ("bp", "fa", "afa", "pepita", "pepita-forward")
#: built-in rules whose feedback is the adaptive overlap b = w F/√N
ADAPTIVE = ("afa", "pepita", "pepita-forward")

#: defaults of the optional config keys (``rule``, ``N`` and ``alpha_max`` are required)
DEFAULTS = {
    "K": 2,
    "M": 2,
    "activation": "erf",
    "eta": 0.5,
    "eta_v": 0.5,
    "sigma": 0.0,  # output noise of the teacher
    "sigma_F": 0.3,  # entries of F ~ N(0, sigma_F²) (afa, pepita, pepita-forward)
    "b_scale": 1.0,  # entries of FA's fixed b ~ N(0, b_scale²): O(1) like v*, so FA's
    # feedback has the same scale as BP's (v ~ v*)
    "record": None,  # None: 101 points, {"every": alpha_max/100}
    "seeds": 1,
    "same_init": True,
    "init": {},
    "mc_test": 0,  # size of a fixed Monte Carlo test set (0: none)
    "divergence": {},  # {"eg_max": 1e4, "q_max": 1e6}
    "threads": None,  # None: os.cpu_count()
    "record_weights": False,
    "rule_params": {},  # values of a Rule's own parameters (e.g. weight decay kappa)
    "description": "",
}
_REQUIRED = ("rule", "N", "alpha_max")
_INIT_DEFAULTS = {"seed": 0, "w_scale": 1.0, "w_star_scale": 1.0, "v_scale": 0.1, "v_star": 1.0}
_INIT_KEYS = set(_INIT_DEFAULTS) | {"v", "b", "weights"}

# Steps per kernel call: ~2^18 input components (~1 ms of work, so the per-block Python
# overhead of ~10 µs is ~1%), but at most N/4 steps so that the divergence checks between
# blocks resolve α to 0.25 at small N.
_BLOCK_DOUBLES = 1 << 18


def block_steps(N: int) -> int:
    """Number of online steps per kernel call at input dimension ``N``."""
    return int(max(1, min(_BLOCK_DOUBLES // N, N // 4)))


# Above this many doubles the Monte Carlo test set is refused (memory): n·N·8 bytes.
_MC_MAX_DOUBLES = 1 << 26


# ================================================================================ config
def _num(cfg, key, lo=None, strict=False):
    val = cfg[key]
    if isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating)):
        raise ValueError(f"{key} must be a number, got {val!r}")
    val = float(val)
    if not math.isfinite(val):
        raise ValueError(f"{key} must be finite, got {val}")
    if lo is not None and (val <= lo if strict else val < lo):
        raise ValueError(f"{key} must be {'>' if strict else '>='} {lo}, got {val}")
    return val


def _int(cfg, key, lo=1):
    val = cfg[key]
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
        if isinstance(val, float) and val.is_integer():
            val = int(val)
        else:
            raise ValueError(f"{key} must be an integer >= {lo}, got {val!r}")
    if val < lo:
        raise ValueError(f"{key} must be an integer >= {lo}, got {val}")
    return int(val)


_WEIGHTS_EXPECTED = (
    "a .npz file with float arrays w (K, N), w_star (M, N), v (K,), "
    "v_star (M,), optionally F (N,) and b (K,) (np.savez(path, w=…, "
    "w_star=…, v=…, v_star=…))"
)


def _load_weights(path):
    from theory.runtime.cli import load_npz

    if not isinstance(path, str):
        raise ValueError(f"init.weights must be a file name (string), got {path!r}")
    raw = load_npz(path, "init.weights", _WEIGHTS_EXPECTED)
    if "config_json" in raw and "w" not in raw:
        raise ValueError(
            f"init.weights: {path} is a simulation output, not a weights file "
            "(to start the ODE from a simulation, use python -m odeflow solve "
            f"--init-from); it should be {_WEIGHTS_EXPECTED}"
        )
    missing = [k for k in ("w", "w_star", "v", "v_star") if k not in raw]
    if missing:
        raise ValueError(
            f"init.weights file {path!r} lacks arrays {missing}; it should be {_WEIGHTS_EXPECTED}"
        )
    d = {}
    for k in ("w", "w_star", "v", "v_star", "F", "b"):
        if k in raw:
            if raw[k].dtype.kind not in "biuf":
                raise ValueError(
                    f"init.weights: array {k} in {path} holds {raw[k].dtype} "
                    f"values, not numbers; it should be {_WEIGHTS_EXPECTED}"
                )
            d[k] = np.asarray(raw[k], dtype=float)
    return d


# Long on purpose: one check per config key, in the order of DEFAULTS, so a reader finds every rule
# for a key in one place
def validate_config(config) -> dict:
    """Check a simulation config and return a normalised copy with every default filled in.

    Keys (see :data:`DEFAULTS`): ``rule`` (one of :data:`RULES`, a
    :class:`theory.rules.Rule`, or ``"path/to/file.py:NAME"`` naming a Rule defined in a
    Python file, relative paths taken from the current directory), ``rule_params`` (values
    of the Rule's parameters), ``N``, ``K``, ``M``,
    ``activation`` (``erf``, ``linear``, ``relu``, ``tanh``, ``sigmoid``), ``eta``,
    ``eta_v``, ``sigma``, ``sigma_F``,
    ``b_scale``, ``alpha_max``, ``record``, ``seeds``, ``same_init``, ``init``, ``mc_test``,
    ``divergence``, ``threads``, ``record_weights``, ``description``.

    ``init`` is ``{"seed", "w_scale", "w_star_scale", "v_scale", "v_star", "v", "b"}``
    (``w, w* ~ N(0, scale²)`` entrywise, ``v ~ v_scale·N(0, 1)`` unless ``v`` is given,
    ``v_star`` scalar or list of M, ``b`` an explicit FA feedback) or
    ``{"weights": "file.npz"}`` with arrays ``w, w_star, v, v_star`` and optionally ``F, b``
    (then ``N, K, M`` default to the shapes found there).

    Raises
    ------
    ValueError
        Naming the offending key and the allowed values.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    other = model_module(config)  # another model: its own module's checks
    if other is not None:
        return other.validate_config(config)
    allowed = set(_REQUIRED) | set(DEFAULTS)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed keys: {sorted(allowed)}")
    from_file = isinstance(config.get("init"), dict) and "weights" in config["init"]
    missing = [k for k in _REQUIRED if k not in config and not (k == "N" and from_file)]
    if missing:
        raise ValueError(f"config is missing required keys {missing} (required: {list(_REQUIRED)})")
    cfg = {k: v for k, v in DEFAULTS.items()}
    cfg.update(config)
    cfg["init"] = dict(cfg["init"] or {})
    cfg["divergence"] = dict(cfg["divergence"] or {})

    sim_rule = kernelgen.resolve_rule(cfg["rule"])  # ValueError if unknown
    if not isinstance(cfg["rule_params"], dict):
        raise ValueError(f"rule_params must be a dict of numbers, got {cfg['rule_params']!r}")
    for k, v in cfg["rule_params"].items():  # before params_vector's float(): name the key
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"rule_params.{k} must be a finite number, got {v!r}")
    kernelgen.params_vector(sim_rule, cfg["rule_params"])  # ValueError if unknown names
    cfg["rule_params"] = {k: _num(cfg["rule_params"], k) for k in cfg["rule_params"]}
    # a built-in name or any expression of z (theory.activations, the registry the ODEs
    # use too); canonical name: the built-in, or "user:<expr>"
    cfg["activation"] = kernelgen.resolve_activation(cfg["activation"])

    init = cfg["init"]
    if not isinstance(init, dict):
        raise ValueError(f"init must be a dict, got {init!r}")
    bad = sorted(set(init) - _INIT_KEYS)
    if bad:
        raise ValueError(f"unknown init keys {bad}; allowed: {sorted(_INIT_KEYS)}")
    if "weights" in init:
        others = sorted(set(init) - {"weights", "seed"})
        if others:
            raise ValueError(
                f"init: 'weights' cannot be combined with {others} (only 'seed', "
                "used to draw F or b when the file lacks them)"
            )
        if "same_init" in config and not config["same_init"]:
            raise ValueError(
                "same_init: false needs random initial weights; init.weights "
                "gives one fixed initial state"
            )
        cfg["same_init"] = True
        wts = _load_weights(init["weights"])
        shapes = {
            "N": wts["w"].shape[1] if wts["w"].ndim == 2 else None,
            "K": wts["w"].shape[0] if wts["w"].ndim == 2 else None,
            "M": wts["w_star"].shape[0] if wts["w_star"].ndim == 2 else None,
        }
        if None in shapes.values():
            raise ValueError("init.weights: w and w_star must be 2-d arrays (K, N), (M, N)")
        for k, n in shapes.items():
            if k in config and config[k] != n:
                raise ValueError(
                    f"config {k}={config[k]} disagrees with init.weights "
                    f"({k}={n} from the arrays in {init['weights']!r})"
                )
            cfg[k] = n
    for k, val in _INIT_DEFAULTS.items():
        if "weights" not in init or k == "seed":
            init.setdefault(k, val)

    cfg["N"], cfg["K"], cfg["M"] = _int(cfg, "N"), _int(cfg, "K"), _int(cfg, "M")
    K, M, N = cfg["K"], cfg["M"], cfg["N"]
    # η, η_v, σ: the committee's one validator (theory.models), as odeflow.solve's
    cfg.update(model_of(cfg["rule"]).check_params({k: cfg[k] for k in ("eta", "eta_v", "sigma")}))
    for key in ("sigma_F", "b_scale"):
        cfg[key] = _num(cfg, key, lo=0.0)
    cfg["alpha_max"] = _num(cfg, "alpha_max", lo=0.0, strict=True)
    if round(cfg["alpha_max"] * N) < 1:
        raise ValueError(f"alpha_max * N must be at least one step, got {cfg['alpha_max']} * {N}")
    if cfg["record"] is None:
        cfg["record"] = {"every": cfg["alpha_max"] / 100}
    record_alphas(cfg["record"], cfg["alpha_max"])  # raises ValueError if malformed
    cfg["seeds"] = seed_list(cfg["seeds"])
    if not isinstance(cfg["same_init"], bool):
        raise ValueError(f"same_init must be true or false, got {cfg['same_init']!r}")
    if not isinstance(cfg["record_weights"], bool):
        raise ValueError(f"record_weights must be true or false, got {cfg['record_weights']!r}")
    cfg["mc_test"] = _int(cfg, "mc_test", lo=0)
    if cfg["mc_test"] * N > _MC_MAX_DOUBLES:
        raise ValueError(
            f"mc_test={cfg['mc_test']} test inputs of dimension N={N} need "
            f"{cfg['mc_test'] * N * 8 / 2**30:.1f} GiB; keep mc_test*N <= "
            f"{_MC_MAX_DOUBLES}"
        )
    if cfg["threads"] is not None:
        cfg["threads"] = _int(cfg, "threads")
    if not isinstance(cfg["description"], str):
        raise ValueError("description must be a string")
    cfg["divergence"] = Divergence.from_config(cfg["divergence"]).to_dict()

    if "weights" not in init:
        for key in ("w_scale", "w_star_scale", "v_scale"):
            init[key] = _num(init, key, lo=0.0)
        init["seed"] = _int(init, "seed", lo=0)
        vs = np.asarray(init["v_star"], dtype=float)
        if not (vs.ndim == 0 or vs.shape == (M,)) or not np.all(np.isfinite(vs)):
            raise ValueError(
                f"init.v_star must be a number or a list of M={M} numbers, got {init['v_star']!r}"
            )
        for key, n in (("v", K), ("b", K)):
            if key in init:
                a = np.asarray(init[key], dtype=float)
                if a.shape != (n,) or not np.all(np.isfinite(a)):
                    raise ValueError(
                        f"init.{key} must be a list of K={K} numbers, got {init[key]!r}"
                    )
    else:
        init["seed"] = _int(init, "seed", lo=0)
    return cfg


def _jsonable_config(cfg: dict) -> dict:
    """The config with a Rule object replaced by its description (name, delta, …)."""
    if isinstance(cfg.get("rule"), str) or isinstance(cfg.get("rule"), dict):
        return cfg
    return {**cfg, "rule": kernelgen.resolve_rule(cfg["rule"]).describe()}


def rule_relative_to(config: dict, base_dir) -> dict:
    """``config`` with a relative ``"rule": "file.py:NAME"`` made relative to ``base_dir``.

    The command-line tools call this with the directory of the config file, so that a
    config and the rule file next to it can be moved together; a config dict passed to
    :func:`simulate` resolves a relative path from the current directory.
    """
    r = config.get("rule") if isinstance(config, dict) else None
    if not isinstance(r, str) or r in RULES or ":" not in r:
        return config
    path, _, name = r.rpartition(":")
    if os.path.isabs(path):
        return config
    return {**config, "rule": f"{os.path.join(str(base_dir), path)}:{name}"}
