"""theory.cache: a corrupt generated module or corrupt numba cache files are detected,
repaired (regenerated / recompiled) and reported with the cache directory; the sympy-free
fast path gives the same parameter vector and the same trajectories as the slow path."""

import numpy as np
import pytest

from theory import cache

# A tiny generated-module stand-in: numba compiles it in a fraction of a second.
SRC = """import numpy as np
from numba import njit

@njit(cache=True)
def rhs(y, p, dy):
    for i in range(y.shape[0]):
        dy[i] = -p[0] * y[i]

@njit(cache=True)
def eg(y, p):
    return 0.5 * (y * y).sum()

noise = None
"""


def _warm(mod):
    y = np.ones(3)
    dy = np.empty(3)
    mod.rhs(y, np.array([2.0]), dy)
    assert dy.tolist() == [-2.0, -2.0, -2.0]  # the hand value of -p0·y
    assert mod.eg(y, np.zeros(1)) == 1.5


def _load(path, calls):
    def make():
        calls.append(1)
        return SRC

    return cache.load_module(path, make, cache.module_name(path), _warm)


@pytest.fixture
def built(tmp_path):
    path = tmp_path / "sys_toy_erf_0123.py"
    calls = []
    _load(path, calls)
    assert calls == [1]  # generated once…
    _load(path, calls)
    assert calls == [1]  # …then found verified in the cache
    assert (tmp_path / "sys_toy_erf_0123.py.sha256").exists()
    assert list((tmp_path / "__pycache__").glob("sys_toy_erf_0123.*.nbi"))
    return path


@pytest.mark.parametrize("damage", ["append", "empty", "truncate"])
def test_corrupt_module_is_regenerated_and_reported(built, capsys, damage):
    text = built.read_text()
    built.write_text(
        {"append": text + "garbage(\n", "empty": "", "truncate": text[: len(text) // 2]}[damage]
    )
    calls = []
    mod, cached = _load(built, calls)
    assert calls == [1] and not cached
    assert built.read_text() == SRC
    err = capsys.readouterr().err
    assert f"repairing the code cache in {built.parent}" in err
    assert "content hash mismatch" in err


def test_garbage_numba_cache_files_are_cleared_and_recompiled(built, capsys):
    for f in (built.parent / "__pycache__").glob("sys_toy_erf_0123.*"):
        f.write_bytes(b"garbage\n")
    mod, _ = _load(built, [])  # _warm checks the values it computes
    err = capsys.readouterr().err
    assert f"repairing the code cache in {built.parent}" in err
    assert "numba cache file(s)" in err


def test_missing_hash_regenerates_silently(built, capsys):
    (built.parent / "sys_toy_erf_0123.py.sha256").unlink()  # e.g. a cache from before
    calls = []
    _load(built, calls)
    assert calls == [1] and capsys.readouterr().err == ""


def test_fast_path_matches_codegen_system():
    """The sympy-free parameter vector equals theory.codegen.System.params for every
    closed-form built-in rule (the oracle), and a fast-path system integrates bit-identically."""
    import odeflow
    from theory.codegen import build_system
    from theory.rules import RULES

    st = cache._ref_state()
    for name in RULES:
        slow = build_system(name, 2, 2)
        if hasattr(slow, "error_estimate"):  # quadrature systems (pepita*): no fast path
            cache.remember(name, "erf", slow)
            assert cache.cached_system(name, 2, 2, "erf") is None, name
            continue
        info = cache.RuleInfo(slow.rule.name, slow.rule.feedback, dict(slow.rule.params))
        np.testing.assert_array_equal(
            cache.param_vector(info, 2, 2, st, 0.3, 0.2, 0.1), slow.params(st, 0.3, 0.2, 0.1)
        )
        cache.remember(name, "erf", slow)
        fast = cache.cached_system(name, 2, 2, "erf")
        assert isinstance(fast, cache.CachedSystem), name
        a = odeflow.solve(slow, st, eta=0.3, alpha_max=5.0, record={"every": 1.0})
        b = odeflow.solve(fast, st, eta=0.3, alpha_max=5.0, record={"every": 1.0})
        np.testing.assert_array_equal(a.eg, b.eg)


def test_fast_path_refuses_a_changed_parameter_layout(tmp_path, monkeypatch):
    import json

    from theory.codegen import build_system

    slow = build_system("fa", 2, 2)
    cache.remember("fa", "erf", slow)
    idx = cache._index_path("fa", "erf")
    entry = json.loads(idx.read_text())
    entry["p_ref"][-1] += 1.0  # as if System.params had changed
    idx.write_text(json.dumps(entry))
    assert cache.cached_system("fa", 2, 2, "erf") is None
    cache.remember("fa", "erf", slow)
    assert cache.cached_system("fa", 2, 2, "erf") is not None


@pytest.fixture
def verbose():
    from theory.runtime import cli

    old = cli.verbose()
    cli.set_verbose(True)
    yield
    cli.set_verbose(old)


def test_cold_compile_note_before_compiling_and_only_when_cold(tmp_path, capsys, verbose):
    """A cold numba cache: one line on stderr *before* the kernels compile (issue 21: cold
    compiles were silent for 10-15 s); warm cache, or quiet: nothing."""
    from theory.runtime import cli

    path = tmp_path / "sys_toy_erf_0123.py"
    seen = []

    def warm(mod):
        seen.append(capsys.readouterr().err)  # what was said before the compile started
        _warm(mod)

    cache.load_module(path, lambda: SRC, cache.module_name(path), warm)
    assert "compiling the generated 'toy_erf' kernels (one-time" in seen[0]
    times = (tmp_path / "compile_seconds.json").read_text()
    assert '"sys"' in times  # the measured compile, the next cold note's estimate
    cache.load_module(path, lambda: SRC, cache.module_name(path), warm)
    assert "compiling" not in seen[1] + capsys.readouterr().err  # warm: silent
    cli.set_verbose(False)
    cold = tmp_path / "sys_quiet_erf_4567.py"
    cache.load_module(cold, lambda: SRC, cache.module_name(cold), warm)
    assert "compiling" not in seen[2] + capsys.readouterr().err  # --quiet: silent


def test_cold_compile_note_of_a_real_system(tmp_path):
    """End to end, in a fresh process with a fresh ODEFLOW_CACHE_DIR: the note comes before
    the system is built; a second process with the same cache says nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from theory.runtime import cli\n"
        "cli.set_verbose(True)\n"
        "from theory.codegen import build_system\n"
        "build_system('bp', 1, 1, 'erf')\n"
        "print('BUILT', file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["ODEFLOW_CACHE_DIR"] = str(tmp_path)
    root = Path(__file__).resolve().parents[2]

    def run():
        r = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        return r.stderr.splitlines()

    lines = run()
    note = [i for i, s in enumerate(lines) if "compiling the generated 'bp_erf' kernels" in s]
    assert len(note) == 1 and note[0] < lines.index("BUILT"), lines
    lines = run()
    assert not any("compiling the generated" in s for s in lines), lines
