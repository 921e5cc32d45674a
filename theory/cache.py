"""The on-disk cache of generated code: verification, repair, and a sympy-free fast path.

Generated modules (``theory.codegen``) live in :func:`cache_dir` (``$ODEFLOW_CACHE_DIR``,
default ``~/.cache/odeflow``); numba keeps its compiled machine code for them in
``<cache_dir>/__pycache__``.

Verification
------------
A module ``sys_<rule>_<act>_<digest>.py`` is written atomically (temporary file, then
rename) and *then* its SHA-256 is written, also atomically, to ``<module>.sha256``. A
module is used only if that hash matches its content, it imports, defines ``rhs``, ``eg``
and ``noise``, and its kernels compile or load. Otherwise:

* hash missing or wrong (a module truncated, emptied, edited, or with garbage appended):
  the module is regenerated (atomically overwritten — a concurrent process importing it
  sees the old or the new complete file, both the same code);
* import or compilation fails (garbage in numba's cache files, or in the module itself):
  numba's cache files of that module are deleted, the module regenerated, and it is
  imported again under a fresh name — once; a second failure is a real error.

Every repair is said on stderr, naming the cache directory.

Fast path (start-up time)
-------------------------
Deriving a rule needs sympy (~0.3 s to import, more to derive), although on a cache hit
nothing is derived. For a *built-in* rule named by a string, :func:`cached_system` finds
the module without sympy: after every slow build, :func:`remember` writes an index entry
``idx_<rule>_<act>_<srchash>.json`` (``srchash``: SHA-256 of every ``theory/*.py`` source,
so any change to the generator or to the built-in rule definitions invalidates it) with the
module's name and hash, the rule's feedback kind and parameters, and the parameter vector
``p`` for a reference state (:func:`param_vector`, which :class:`theory.codegen.System`
uses too: one layout). The fast path rebuilds ``p`` for that state and uses the entry only
if it is identical (so a change to the parameter layout can never be used silently); any
doubt returns None and the caller takes the slow path.

This module imports no generator (the dependency points one way: generators → cache);
``CachedSystem.derivation`` derives with :mod:`theory.derive` when asked for.

Cache keys
----------
Every generated module's path is :func:`generated_path` (prefix, generator version,
:func:`source_fingerprint` of the generator's sources and kernel modules, and the inputs:
rule key, activation key and expression).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from .state import Layout, OrderParameters
from .system import SystemMethods

__all__ = [
    "cache_dir",
    "write_module",
    "verify_module",
    "clear_numba_cache",
    "load_module",
    "remember",
    "cached_system",
    "CachedSystem",
    "param_vector",
    "RuleInfo",
    "source_fingerprint",
    "generated_path",
    "digest_of",
]

_REQUIRED = ("rhs", "eg", "noise")


def cache_dir() -> Path:
    """Where generated modules live: ``$ODEFLOW_CACHE_DIR`` or ``~/.cache/odeflow``."""
    d = Path(os.environ.get("ODEFLOW_CACHE_DIR", Path.home() / ".cache" / "odeflow"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _atomic_write(path: Path, text: str) -> None:
    # the project's one atomic write: no temporary file is left behind on any error, and a
    # full disk names the cache file that failed
    from .runtime.cli import atomic_write

    atomic_write(path, text)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_module(path, source: str) -> None:
    """Write a generated module, then (last) its content hash; both atomically."""
    path = Path(path)
    _atomic_write(path, source)
    _atomic_write(_hash_path(path), _sha(source) + "\n")


def verify_module(path) -> str | None:
    """None if ``path`` exists and matches its recorded hash, else the reason."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable ({exc})"
    try:
        want = _hash_path(path).read_text().strip()
    except OSError:
        return "no content hash"
    if _sha(text) != want:
        return "content hash mismatch (truncated, edited or garbage appended)"
    return None


def clear_numba_cache(path, function: str = "*") -> list:
    """Delete numba's cache files of a module's functions (``<stem>.<function>-*.nbi|nbc``
    in ``__pycache__`` next to it, or in ``$NUMBA_CACHE_DIR``); returns the paths."""
    path = Path(path)
    gone = []
    dirs = [path.parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    pattern = f"{path.stem}.*.nb[ic]" if function == "*" else f"{path.stem}.{function}-*.nb[ic]"
    for d in dirs:
        files = list(d.rglob(pattern)) if d.exists() else []
        for f in files:
            try:
                f.unlink()
                gone.append(f)
            except OSError:
                pass
    return gone


def load_numba(load, source_file, function: str, what: str):
    """``load()`` (which compiles or loads a cached numba function); if numba's cache
    files are corrupt (loading raises), delete them, say so, and ``load()`` again."""
    try:
        return load()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        gone = clear_numba_cache(source_file, function)
        if not gone:
            raise
        _say(
            f"odeflow: repairing numba's cache of {what} in {gone[0].parent}: "
            f"{type(exc).__name__}: {str(exc)[:120]}; deleted {len(gone)} cache file(s); "
            "recompiling"
        )
        return load()


def module_name(path) -> str:
    """The ``sys.modules`` name of a generated module: always the same for the same file,
    because numba's cached code refers to its module by name."""
    return f"_odeflow_generated_{Path(path).stem}"


def _import(path: Path, modname: str, required=_REQUIRED):
    name = modname
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    missing = [a for a in required if not hasattr(mod, a)]
    if missing:
        raise ImportError(f"generated module lacks {', '.join(missing)}")
    return mod


def _numba_cached(path: Path) -> bool:
    """Whether numba has cached machine code of any function of the module at ``path`` (its
    ``<stem>.*.nbi`` index next to it, or in ``$NUMBA_CACHE_DIR``)."""
    dirs = [path.parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    return any(d.exists() and next(d.rglob(f"{path.stem}.*.nbi"), None) for d in dirs)


#: seconds the last cold compile of each kind of module took (``<prefix>`` of its file name)
_COMPILE_TIMES = "compile_seconds.json"


def _kind_and_label(path: Path) -> tuple[str, str]:
    """``("sys", "bp_erf")`` from ``sys_bp_erf_<digest>.py`` (:func:`generated_path`)."""
    parts = path.stem.split("_")
    if len(parts) >= 3:
        return parts[0], "_".join(parts[1:-1])
    return parts[0], path.stem


def _compile_note(path: Path):
    """On a cold numba cache, say *before* compiling that a one-time compile is coming
    (with the last measured duration of this kind of module, when known); returns the
    kind of module to time, or None (warm cache, or nothing to say)."""
    from .runtime import cli

    if not cli.verbose() or _numba_cached(path):
        return None
    kind, label = _kind_and_label(path)
    try:
        last = json.loads((path.parent / _COMPILE_TIMES).read_text()).get(kind)
    except (OSError, ValueError, AttributeError):
        last = None
    est = f", ~{last:.0f} s" if isinstance(last, (int, float)) and last >= 1 else ""
    cli.status(f"odeflow: compiling the generated {label!r} kernels (one-time{est}) …")
    return kind


def _record_compile(path: Path, kind, seconds: float) -> None:
    """Remember how long a cold compile took (the estimate of the next note); best effort."""
    if kind is None:
        return
    f = path.parent / _COMPILE_TIMES
    try:
        times = json.loads(f.read_text())
        times = times if isinstance(times, dict) else {}
    except (OSError, ValueError):
        times = {}
    times[kind] = round(float(seconds), 1)
    try:
        _atomic_write(f, json.dumps(times, sort_keys=True) + "\n")
    except (OSError, ValueError):
        pass  # only an estimate: a read-only or full cache must not fail the run


def load_module(path, make_source, modname: str, warm, required=_REQUIRED):
    """Import a generated module, generating, verifying and repairing as needed.

    Parameters
    ----------
    path : Path
        Where the module lives (or will).
    make_source : callable () -> str
        Generates the module's source (only called when needed).
    modname : str
        Module name for ``sys.modules``.
    warm : callable (module) -> None
        Compiles the module's kernels (or loads them from numba's cache).
    required : tuple of str
        Names the module must define (default: an ODE system's ``rhs, eg, noise``).

    Returns
    -------
    (module, source_cached) : the module and whether its source came from the cache.
    """
    path = Path(path)
    problem = verify_module(path)
    cached = problem is None
    if problem not in (None, "missing", "no content hash"):
        _say(
            f"odeflow: repairing the code cache in {path.parent}: {path.name}: {problem}; "
            "regenerating it"
        )
    if not cached:
        write_module(path, make_source())
    try:
        mod = _import(path, modname, required)
        kind = _compile_note(path)  # before the compile: it can take tens of seconds
        t0 = time.perf_counter()
        warm(mod)
        _record_compile(path, kind, time.perf_counter() - t0)
        return mod, cached
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # corrupt numba cache files, or module
        gone = clear_numba_cache(path)
        _say(
            f"odeflow: repairing the code cache in {path.parent}: {path.name} failed to "
            f"load ({type(exc).__name__}: {str(exc)[:120]}); deleted {len(gone)} numba "
            "cache file(s) and regenerated the module; recompiling"
        )
        write_module(path, make_source())
        mod = _import(path, modname, required)
        warm(mod)
        return mod, False


# ------------------------------------------------------------------------ cache keys
@cache
def source_fingerprint(names: tuple) -> str:
    """Hash of the generator sources ``names`` (files of the ``theory`` package, or paths):
    part of every generated module's cache key, so a change to a generator or to a kernel
    module it includes regenerates the module."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in names:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def generated_path(
    prefix: str, version: str, fingerprint: str, *parts: str, label: str = ""
) -> Path:
    """Cache path ``<cache_dir>/<prefix>_<label>_<digest>.py`` of a generated module; the
    digest covers the generator's ``version``, its source ``fingerprint`` and the inputs
    ``parts`` (strings: the rule's key, the activation's key and expression, …)."""
    digest = _sha("|".join([version, fingerprint, *parts]))[:16]
    safe = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in label)
    return cache_dir() / (f"{prefix}_{safe}_{digest}.py" if safe else f"{prefix}_{digest}.py")


def digest_of(path) -> str:
    """The digest part of a :func:`generated_path` (the key written in the module)."""
    return Path(path).stem.rsplit("_", 1)[1]


# --------------------------------------------------------------------------- fast path
@dataclass(frozen=True)
class RuleInfo:
    """What the numerics need of a :class:`theory.rules.Rule` (no sympy)."""

    name: str
    feedback: str
    params: dict = field(default_factory=dict)


def param_vector(
    rule, K: int, M: int, state: OrderParameters, eta, eta_v=None, sigma=0.0, **rule_params
) -> np.ndarray:
    """The parameter vector ``p`` of the generated kernels — the same as
    :meth:`theory.codegen.System.params` (which the index entry checks, see the module
    docstring)::

        p = [K, M, eta, eta_v, sigma, sigma_F2, T (M·M), v_star (M), c (M), b (K, fixed
             feedback), rule parameters (sorted by name)]
    """
    if (state.K, state.M) != (K, M):
        raise ValueError(
            f"state has K={state.K}, M={state.M} but the system was built for K={K}, M={M}"
        )
    eta_v = eta if eta_v is None else eta_v
    for name, val in (("eta", eta), ("eta_v", eta_v), ("sigma", sigma)):
        if not np.isfinite(val) or val < 0.0:
            raise ValueError(f"{name} must be a finite number >= 0.0, got {val}")
    fb = rule.feedback
    if fb == "fixed":
        state.require("b", why=f" by rule {rule.name!r} (fixed feedback)")
    elif fb == "adaptive":
        state.require(
            "b", "c", "sigma_F2", why=f" by rule {rule.name!r} (adaptive feedback b = wF/√N)"
        )
    unknown = set(rule_params) - set(rule.params)
    if unknown:
        raise ValueError(
            f"unknown rule parameters {sorted(unknown)} for rule "
            f"{rule.name!r}; it has {sorted(rule.params)}"
        )
    rp = {**rule.params, **rule_params}
    return np.concatenate(
        [
            [K, M, eta, eta_v, sigma, state.sigma_F2 if state.sigma_F2 is not None else 0.0],
            state.T.ravel(),
            state.v_star,
            state.c if state.c is not None else np.zeros(M),
            state.b if (state.b is not None and fb == "fixed") else np.zeros(K),
            [rp[name] for name in sorted(rp)],
        ]
    ).astype(float)


def _ref_state() -> OrderParameters:
    """A fixed state with every field set, to compare parameter vectors."""
    return OrderParameters(
        Q=np.array([[1.0, 0.1], [0.1, 0.9]]),
        R=np.array([[0.2, 0.3], [0.4, 0.5]]),
        T=np.array([[1.0, 0.25], [0.25, 1.5]]),
        v=np.array([0.6, 0.7]),
        v_star=np.array([1.1, 1.2]),
        b=np.array([0.8, 0.9]),
        c=np.array([0.35, 0.45]),
        sigma_F2=0.09,
    )


_REF_RATES = (0.125, 0.375, 0.0625)


@cache
def _source_hash() -> str:
    """SHA-256 of every ``theory/*.py``: the generator, the derivation and the built-in
    rule definitions (and anything else in the package, to be safe)."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


_NAME = re.compile(r"[A-Za-z0-9_\-]+")


def _index_path(rule: str, activation: str) -> Path:
    return cache_dir() / f"idx_{rule}_{activation}_{_source_hash()}.json"


def remember(rule_name: str, activation: str, system) -> None:
    """Record a freshly built system of a *built-in* rule named ``rule_name`` so that the
    next process finds it without sympy (:func:`cached_system`)."""
    if not (
        isinstance(rule_name, str)
        and _NAME.fullmatch(rule_name)
        and isinstance(activation, str)
        and _NAME.fullmatch(activation)
    ):
        return
    if hasattr(system, "error_estimate"):  # quadrature systems have another layout
        return
    try:
        from .rules import RULES

        if RULES.get(rule_name) != system.rule:
            return
        rule = system.rule
        # System.params is param_vector (one source): the entry records its layout so
        # that a reader with another layout takes the slow path
        ref = param_vector(rule, 2, 2, _ref_state(), *_REF_RATES)
        path = Path(system.source_path)
        entry = {
            "rule": rule.name,
            "feedback": rule.feedback,
            "params": dict(rule.params),
            "activation": activation,
            "module": path.name,
            "sha256": _sha(path.read_text()),
            "p_ref": [float(x) for x in ref],
        }
        _atomic_write(_index_path(rule_name, activation), json.dumps(entry))
    except Exception:  # the index is an optimisation: never fail a run over it
        pass


@dataclass
class CachedSystem(SystemMethods):
    """A compiled system loaded from the cache without sympy; behaves like
    :class:`theory.codegen.System` (``derivation`` is derived on first access)."""

    #: its rhs polls the abort slot (theory.runtime.interruptible; theory.codegen)
    polls_abort = True

    rule: RuleInfo
    K: int
    M: int
    activation: str
    layout: Layout
    rhs: object
    eg: object
    noise: object
    source_path: Path
    timings: dict = field(default_factory=dict)

    def params(self, state, eta, eta_v=None, sigma=0.0, **rule_params):
        return param_vector(self.rule, self.K, self.M, state, eta, eta_v, sigma, **rule_params)

    @property
    def derivation(self):
        # the template sums behind the code (imports sympy: only when asked for)
        from .derive import derive
        from .rules import get_rule

        return derive(get_rule(self.rule.name), self.activation)


_LOADED: dict = {}


def _warm(mod, adaptive: bool, n_params: int) -> None:
    """Compile the kernels (or load numba's cached machine code) with a 1×1 system."""
    layout = Layout(1, 1, adaptive)
    y = np.zeros(layout.n)
    p = np.zeros(6 + 1 + 2 + 1 + n_params)
    p[0] = p[1] = 1
    mod.rhs(y, p, np.empty_like(y))
    mod.eg(y, p)
    if mod.noise is not None:
        mod.noise(y, p, np.empty((1, 1)))


def cached_system(rule: str, K: int, M: int, activation: str = "erf"):
    """The system of built-in rule ``rule`` from the cache, without sympy, or None when
    the cache has no valid entry for it (then build it with ``theory.codegen``)."""
    if not (
        isinstance(rule, str)
        and _NAME.fullmatch(rule)
        and isinstance(activation, str)
        and _NAME.fullmatch(activation)
    ):
        return None
    try:
        idx = _index_path(rule, activation)
        if not idx.exists():
            return None
        entry = json.loads(idx.read_text())
        info = RuleInfo(entry["rule"], entry["feedback"], dict(entry["params"]))
        ref = param_vector(info, 2, 2, _ref_state(), *_REF_RATES)
        if ref.tolist() != entry["p_ref"]:
            return None  # the parameter layout changed: take the slow path
        path = idx.parent / entry["module"]
        if verify_module(path) is not None or _sha(path.read_text()) != entry["sha256"]:
            return None  # the slow path regenerates (and says so)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from .state import _check_size

    K, M = _check_size("K", K), _check_size("M", M)
    t0 = time.perf_counter()
    key = (rule, activation)
    if key not in _LOADED:
        try:
            mod = _import(path, module_name(path))
            _warm(mod, info.feedback == "adaptive", len(info.params))
        except KeyboardInterrupt:
            raise
        except Exception:  # e.g. garbage in numba's cache: the slow path repairs
            return None
        _LOADED[key] = (info, mod)
    info, mod = _LOADED[key]
    return CachedSystem(
        info,
        K,
        M,
        activation,
        Layout(K, M, info.feedback == "adaptive"),
        mod.rhs,
        mod.eg,
        mod.noise,
        path,
        {"derive": 0.0, "codegen": 0.0, "compile": time.perf_counter() - t0, "source_cached": True},
    )
