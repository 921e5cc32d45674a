"""Sweep files: parsing, axes, points and their keys (see :mod:`odeflow.sweep` for the
format). Pure data handling: nothing here runs a point.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "KINDS",
    "Sweep",
    "SweepPoint",
    "load_sweep",
    "axis_values",
    "set_dotted",
    "point_key",
    "infer_kind",
]

#: the commands a sweep can run
KINDS = ("solve", "sde", "simulate")
_SWEEP_KEYS = ("kind", "base", "grid", "zip", "seeds", "description")


# ================================================================== the sweep file
@dataclass(frozen=True)
class SweepPoint:
    """One point: its position, swept values, full config and key (hash)."""

    index: int
    values: dict
    config: dict
    key: str


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: ``kind``, ``base``, the axes and every point.

    Attributes
    ----------
    kind : str
    base : dict
    axes : list of (names, values)
        ``names`` is a tuple of dotted keys (one for a grid axis, several for a zip group,
        ``("seed",)`` for replicates); ``values`` a list of tuples, one per position.
    points : list of SweepPoint
        C order over ``axes``.
    spec : dict
        The sweep as given, with ``kind`` filled in.
    """

    kind: str
    base: dict
    axes: list
    points: list
    spec: dict

    @property
    def names(self) -> tuple:
        """Every swept name, in axis order."""
        return tuple(n for names, _ in self.axes for n in names)

    @property
    def shape(self) -> tuple:
        return tuple(len(vals) for _, vals in self.axes)

    def __len__(self):
        return len(self.points)


def infer_kind(base: Mapping) -> str:
    """``sde`` if the base has ``n_paths`` (a finite-N SDE has ``N`` too), ``simulate`` if
    it has ``N``, else ``solve``."""
    if "n_paths" in base:
        return "sde"
    if "N" in base:
        return "simulate"
    return "solve"


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def axis_values(name: str, spec) -> list:
    """The values of one axis from its spec (list, values, range, linspace, log)."""
    if isinstance(spec, list):
        vals = spec
    elif isinstance(spec, Mapping):
        if len(spec) != 1:
            raise ValueError(
                f"axis {name!r}: give exactly one of values, range, linspace, "
                f"log, got {sorted(spec)}"
            )
        ((form, arg),) = spec.items()
        if form == "values":
            if not isinstance(arg, list):
                raise ValueError(f"axis {name!r}: values must be a list, got {arg!r}")
            vals = arg
        elif form == "range":
            if not (isinstance(arg, list) and len(arg) in (2, 3) and all(map(_is_int, arg))):
                raise ValueError(
                    f"axis {name!r}: range must be [start, stop] or [start, "
                    f"stop, step] with integers (like Python's range), got "
                    f"{arg!r}; use linspace or log for real numbers"
                )
            if len(arg) == 3 and arg[2] == 0:
                raise ValueError(f"axis {name!r}: range step must not be 0")
            vals = list(range(*arg))
        elif form in ("linspace", "log"):
            if not (
                isinstance(arg, list)
                and len(arg) == 3
                and _is_num(arg[0])
                and _is_num(arg[1])
                and _is_int(arg[2])
                and arg[2] >= 1
                and all(map(math.isfinite, arg[:2]))
            ):
                raise ValueError(
                    f"axis {name!r}: {form} must be [first, last, n] with "
                    f"finite numbers and an integer n >= 1, got {arg!r}"
                )
            a, b, n = float(arg[0]), float(arg[1]), int(arg[2])
            if form == "log":
                if not (a > 0 and b > 0):
                    raise ValueError(f"axis {name!r}: log needs first and last > 0, got {arg!r}")
                vals = np.geomspace(a, b, n)
            else:
                vals = np.linspace(a, b, n)
            vals = [float(v) for v in vals]
            if n == 1:
                vals = [a]
        else:
            raise ValueError(
                f"axis {name!r}: unknown form {form!r}; allowed: values, range, "
                "linspace, log (or a plain list)"
            )
    else:
        raise ValueError(
            f"axis {name!r} must be a list or an object such as "
            f'{{"range": [0, 8]}}, {{"log": [0.01, 0.1, 7]}}, got {spec!r}'
        )
    if len(vals) == 0:
        raise ValueError(f"axis {name!r} is empty: give at least one value")
    return list(vals)


def _check_name(name):
    if not isinstance(name, str) or not name or any(not p for p in name.split(".")):
        raise ValueError(
            f"swept key {name!r} must be a key name, dotted for nested keys "
            '(e.g. "eta", "init.seed")'
        )


def set_dotted(cfg: dict, name: str, value) -> None:
    """``cfg[a][b] = value`` for ``name = "a.b"`` (creating missing objects)."""
    parts = name.split(".")
    d = cfg
    for i, p in enumerate(parts[:-1]):
        nxt = d.get(p)
        if nxt is None:
            nxt = d[p] = {}
        if not isinstance(nxt, dict):
            raise ValueError(
                f"swept key {name!r}: {'.'.join(parts[: i + 1])} is "
                f"{nxt!r}, not an object, so it has no key {parts[i + 1]!r}"
            )
        d = nxt
    d[parts[-1]] = value


def _canon(x):
    """JSON-ready normal form: numpy → Python, integral floats → int, sorted keys later."""
    if isinstance(x, Mapping):
        return {str(k): _canon(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_canon(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


def point_key(kind: str, config: Mapping) -> str:
    """Hash (16 hex digits) of the kind and the normalised point config."""
    cfg = {k: v for k, v in config.items() if k != "description"}
    text = json.dumps(
        {"kind": kind, "config": _canon(cfg)}, sort_keys=True, separators=(",", ":"), allow_nan=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _validate_point(kind: str, cfg: dict) -> None:
    """The command's own config validation (ValueError with its message); a rule file is
    loaded now (once per file), so that one failing at import stops the sweep before any
    point runs, instead of failing every point."""
    r = cfg.get("rule")
    if isinstance(r, str) and ":" in r:
        if "widths" in cfg:  # a deep student's rule file defines a DeepRule
            from theory.deep_rules import load_deep_rule as load_rule
        else:
            from theory.rules import load_rule

        load_rule(r)
    if kind == "simulate":
        from simulations.teacher_student import validate_config as sim_validate

        sim_validate(copy.deepcopy(cfg))
    else:
        from .config import validate_config

        validate_config(cfg, kind)


class _PointMaker:
    """Builds point ``index`` from its combination of axis values, validating its config."""

    def __init__(self, kind, base, axes):
        self.kind, self.base, self.axes = kind, base, axes
        self.shape = tuple(len(vals) for _, vals in axes)

    def combo(self, index: int) -> tuple:
        idx = np.unravel_index(index, self.shape) if self.shape else ()
        return tuple(vals[i] for (_, vals), i in zip(self.axes, idx))

    def __call__(self, index: int, combo) -> SweepPoint:
        kind = self.kind
        cfg = copy.deepcopy(self.base)
        values = {}
        for (ns, _), vs in zip(self.axes, combo):
            for n, v in zip(ns, vs):
                values[n] = v
                if n == "seed" and ns == ("seed",):
                    if kind == "sde":
                        cfg["seed"] = v
                    else:
                        set_dotted(cfg, "init.seed", v)
                        cfg["seeds"] = [v]
                else:
                    set_dotted(cfg, n, copy.deepcopy(v))
        try:
            _validate_point(kind, cfg)
        except ValueError as exc:
            where = ", ".join(f"{n} = {json.dumps(_canon(v))}" for n, v in values.items())
            raise ValueError(f"point {index} ({where or 'the base'}): {exc}") from None
        return SweepPoint(index, values, cfg, point_key(kind, cfg))


class _LazyPoints(Sequence):
    """The points of a sweep, each built and validated when read (C order)."""

    def __init__(self, make: _PointMaker):
        self.make = make
        self.n = math.prod(make.shape)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.make(i, self.make.combo(i))

    def __iter__(self):
        for i, c in enumerate(itertools.product(*[vals for _, vals in self.make.axes])):
            yield self.make(i, c)


def load_sweep(spec, lazy: bool = False) -> Sweep:
    """Read (a path) and validate a sweep; every point's config is checked.

    With ``lazy=True`` only the sweep file and its axes are checked now: ``points`` is then
    a sequence that builds (and validates) each point when it is read, so the size of a
    10⁶-point grid is known at once and its listing can stream (``--dry-run``).

    A relative ``"rule": "file.py:NAME"`` in the base is taken relative to the sweep
    file's folder (when ``spec`` is a path), as in every other command.

    Raises
    ------
    ValueError
        Unknown sweep keys, unknown kind, an empty or malformed axis, a key swept twice,
        zipped axes of different lengths, ``seeds`` for a deterministic ``solve`` sweep, or
        a point whose config its command rejects (the message names the point).
    """
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        try:
            spec = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read sweep file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if isinstance(spec, Mapping) and isinstance(spec.get("base"), Mapping):
            from theory.runtime.cli import rule_relative_to

            spec = dict(spec, base=rule_relative_to(dict(spec["base"]), path.resolve().parent))
    if not isinstance(spec, Mapping):
        raise ValueError(f"a sweep must be a JSON object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(_SWEEP_KEYS))
    if unknown:
        raise ValueError(
            f"unknown sweep keys {', '.join(unknown)}; allowed: {', '.join(_SWEEP_KEYS)}"
        )
    base = spec.get("base")
    if not isinstance(base, Mapping):
        raise ValueError(
            'a sweep needs "base": an object holding the config of an odeflow '
            "solve, odeflow sde or simulations run command"
        )
    base = copy.deepcopy(dict(base))
    kind = spec.get("kind") or infer_kind(base)
    if kind not in KINDS:
        raise ValueError(f"unknown sweep kind {kind!r}; allowed: {', '.join(KINDS)}")

    axes = []
    grid = spec.get("grid", {})
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be an object {{key: values}}, got {grid!r}")
    for name, ax in grid.items():
        _check_name(name)
        axes.append(((name,), [(v,) for v in axis_values(name, ax)]))
    zips = spec.get("zip", [])
    if isinstance(zips, Mapping):
        zips = [zips]
    if not isinstance(zips, list):
        raise ValueError(
            "zip must be an object {key: values, ...} (keys varied together) "
            "or a list of such objects"
        )
    for z in zips:
        if not isinstance(z, Mapping) or not z:
            raise ValueError(
                f"each zip group must be a non-empty object {{key: values}}, got {z!r}"
            )
        cols = {}
        for name, ax in z.items():
            _check_name(name)
            cols[name] = axis_values(name, ax)
        lens = {n: len(v) for n, v in cols.items()}
        if len(set(lens.values())) != 1:
            raise ValueError(f"zipped axes must have the same length, got {lens}")
        axes.append((tuple(cols), list(zip(*cols.values()))))
    if spec.get("seeds") is not None:
        if kind == "solve":
            raise ValueError(
                "seeds: an ODE (solve) sweep is deterministic; sweep sde or "
                "simulate configs over seeds, or sweep init values instead"
            )
        s = spec["seeds"]
        if _is_int(s):
            if s < 1:
                raise ValueError(f"seeds must be a positive count, a list or a range, got {s}")
            seeds = list(range(int(s)))
        else:
            seeds = axis_values("seeds", s)
        if not all(_is_int(v) and v >= 0 for v in seeds):
            raise ValueError(f"seeds must be non-negative integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds!r}")
        axes.append((("seed",), [(int(v),) for v in seeds]))
    names = [n for ns, _ in axes for n in ns]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"keys swept more than once: {', '.join(dup)}")

    make = _PointMaker(kind, base, axes)
    points = (
        _LazyPoints(make)
        if lazy
        else [make(i, c) for i, c in enumerate(itertools.product(*[vals for _, vals in axes]))]
    )
    full = dict(copy.deepcopy(dict(spec)), kind=kind)
    return Sweep(kind, base, axes, points, _canon(full))
