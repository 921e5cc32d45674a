"""Type and range checks of a ``python -m simulations train`` config, before any data is
loaded or any network built: every wrong value is a ValueError naming its key (dotted:
``ff.theta``, ``mirror.steps``) and what is allowed, never a TypeError from deep inside a
trainer, a value silently converted (``"yes"`` as true, ``"0.1"`` as a number) or a NaN
that trains at chance.

The trainers' own ``__post_init__`` checks stay (the Python API uses them); these are the
same rules stated for JSON.
"""

from __future__ import annotations

import json
import math

__all__ = ["check_train_config"]


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_list(lo):
    return lambda x: isinstance(x, list) and all(_int(v) and v >= lo for v in x)


#: name → (test, what is allowed)
NUMBER_GT0 = (lambda x: _num(x) and x > 0, "a finite number > 0")
NUMBER_GE0 = (lambda x: _num(x) and x >= 0, "a finite number >= 0")
UNIT = (lambda x: _num(x) and 0 <= x < 1, "a number in [0, 1)")
INT_GE0 = (lambda x: _int(x) and x >= 0, "an integer >= 0")
INT_GE1 = (lambda x: _int(x) and x >= 1, "an integer >= 1")
BOOL = (lambda x: isinstance(x, bool), "true or false (a JSON boolean)")


def _choice(*allowed):
    return (
        lambda x: x in allowed and isinstance(x, str),
        "one of " + ", ".join(f'"{a}"' for a in allowed),
    )


#: the ``ff`` block (every FF rule takes the subset listed in simulations.train)
FF_CHECKS = {
    "optimizer": _choice("adam", "sgd"),
    "theta": NUMBER_GT0,
    "negatives": _choice("random", "hardest"),
    "label_scale": NUMBER_GT0,
    "n_blur": INT_GE0,
    "head_layers": (
        lambda x: x is None or (_int_list(0)(x) and len(x) > 0),
        "null or a non-empty list of layer indices (integers >= 0)",
    ),
    "head_epochs": INT_GE0,
    "head_lr": NUMBER_GT0,
    "eval_train": INT_GE1,
    "goodness": _choice("sum", "mean"),
    "peer_norm": NUMBER_GE0,
    "peer_momentum": UNIT,
    "head_readout": BOOL,
    # ff-recurrent
    "steps": (
        lambda x: _int(x) and x >= 2,
        "an integer, steps >= 2 (the bottom-up pass, then at least two damped steps)",
    ),
    "damping": UNIT,
    "window": (
        lambda x: isinstance(x, list) and len(x) == 2 and all(_int(v) for v in x),
        "a list [t1, t2] of two integers, 1 <= t1 <= t2 <= steps",
    ),
    # ff-topdown
    "sign": (lambda x: _int(x) and x in (1, -1), "1 (negative x − F e) or -1 (x + F e)"),
    "cos_every": INT_GE0,
    "cos_batch": INT_GE1,
    "train_hidden": BOOL,
}

#: the deep-network keys (top level)
DEEP_CHECKS = {
    "dropout": UNIT,
    "lr_decay_epochs": (_int_list(0), "a list of epochs (integers >= 0)"),
    "lr_decay": NUMBER_GT0,
    "F_scale": NUMBER_GT0,
    "normalize": BOOL,
    "freeze_hidden": BOOL,
    "mirror": (
        lambda x: x is None or isinstance(x, dict),
        'null or an object {"pre_epochs", "steps", "lr", "decay", "noise_std", "batch"}',
    ),
}

MIRROR_CHECKS = {
    "pre_epochs": INT_GE0,
    "steps": INT_GE0,
    "lr": NUMBER_GT0,
    "decay": UNIT,
    "noise_std": NUMBER_GT0,
    "batch": INT_GE1,
}


def _show(x) -> str:
    try:
        return json.dumps(x)
    except (TypeError, ValueError):
        return repr(x)


def _check_block(block: dict, checks: dict, prefix: str) -> None:
    for key, val in block.items():
        if key not in checks:
            continue  # unknown keys are reported by the caller
        ok, allowed = checks[key]
        if not ok(val):
            raise ValueError(f"{prefix}{key} must be {allowed}, got {_show(val)}")


def check_train_config(cfg: dict) -> None:
    """Check the types and ranges of a train config's values (keys already known).

    Raises
    ------
    ValueError
        ``"<key> must be <allowed>, got <value>"`` for the first wrong value.
    """
    layers = cfg.get("layers", [256])
    # a deep rule with no hidden layer is softmax regression on the inputs (the table's
    # linear baseline); FF trains hidden layers, so it needs at least one
    linear_ok = not str(cfg.get("rule", "")).startswith("ff")
    if not (isinstance(layers, list) and (layers or linear_ok) and _int_list(1)(layers)):
        alt = ", or [] (softmax regression on the inputs)" if linear_ok else ""
        raise ValueError(
            f"layers must be a non-empty list of hidden widths (integers >= 1){alt}, "
            f"got {_show(layers)}"
        )
    if "ff" in cfg:
        ff = cfg["ff"]
        if not isinstance(ff, dict):
            raise ValueError(f"ff must be an object of Forward-Forward options, got {_show(ff)}")
        _check_block(ff, FF_CHECKS, "ff.")
    _check_block(cfg, DEEP_CHECKS, "")
    if isinstance(cfg.get("mirror"), dict):
        bad = sorted(set(cfg["mirror"]) - set(MIRROR_CHECKS))
        if bad:
            raise ValueError(f"unknown mirror keys {bad}; allowed: {', '.join(MIRROR_CHECKS)}")
        _check_block(cfg["mirror"], MIRROR_CHECKS, "mirror.")
