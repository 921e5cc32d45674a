"""Rule files (``"rule": "file.py:NAME"``) in every command (issue 21): a file that calls
``sys.exit(0)`` or raises at import is bad input (exit 2, "rule file F failed to import"),
never a silent exit 0; a relative path is taken from the config file's folder, whatever
the current directory.

Oracle: the exit status and message of each command, run as the user runs it (subprocess),
from a current directory that is *not* the config's folder (a path taken from the current
directory would make the message "does not exist" instead).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from theory.rules import load_rule, rule_relative_to

ROOT = Path(__file__).resolve().parents[2]
INIT = {
    "Q": [[1.0, 0.0], [0.0, 1.0]],
    "R": [[0.1, 0.0], [0.0, 0.1]],
    "T": [[1.0, 0.0], [0.0, 1.0]],
    "v": [0.1, 0.1],
    "v_star": [1.0, 1.0],
}
SOLVE = {"rule": "myrule.py:R", "eta": 0.5, "alpha_max": 1, "init": INIT}
SDE = dict(SOLVE, dt=0.01, n_paths=2)
SIM = {"rule": "myrule.py:R", "N": 50, "K": 2, "M": 2, "alpha_max": 1, "seeds": 1}

BODIES = {
    "exit0": ("import sys\nsys.exit(0)\n", "it called sys.exit(0)"),
    "raises": ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
}


def _setup(tmp_path, body, name, cfg):
    d = tmp_path / "cfgdir"
    d.mkdir(exist_ok=True)
    (d / "myrule.py").write_text(body)
    f = d / name
    f.write_text(json.dumps(cfg))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return d, f, elsewhere


def _run(mod, args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", mod, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("which", sorted(BODIES))
@pytest.mark.parametrize("command", ["solve", "sde", "sweep", "run", "compare"])
def test_rule_file_failing_at_import_is_exit_2(tmp_path, command, which):
    body, said = BODIES[which]
    if command == "sweep":
        d, f, cwd = _setup(tmp_path, body, "s.json", {"base": SOLVE, "grid": {"eta": [0.5]}})
        r = _run("odeflow", ["sweep", f, "-o", tmp_path / "out", "--workers", "0"], cwd)
    elif command == "run":
        d, f, cwd = _setup(tmp_path, body, "c.json", SIM)
        r = _run("simulations", ["run", f, "-o", tmp_path / "o.npz"], cwd)
    elif command == "compare":
        d, f, cwd = _setup(tmp_path, body, "c.json", SIM)
        r = _run("odeflow", ["compare", f, "-o", tmp_path / "o.npz"], cwd)
    else:
        d, f, cwd = _setup(tmp_path, body, "c.json", SOLVE if command == "solve" else SDE)
        r = _run("odeflow", [command, f, "-o", tmp_path / "o.npz"], cwd)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert f"rule file {d / 'myrule.py'} failed to import: {said}" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.npz").exists()


def test_load_rule_catches_system_exit_and_any_exception(tmp_path):
    for i, (body, _said) in enumerate(BODIES.values()):
        f = tmp_path / f"r{i}.py"
        f.write_text(body)
        with pytest.raises(ValueError, match=f"rule file .*r{i}.py failed to import: "):
            load_rule(f"{f}:R")
    # base_dir: a relative path is taken from there, not from the current directory
    (tmp_path / "ok.py").write_text("from theory.rules import RULES\nR = RULES['fa']\n")
    assert load_rule("ok.py:R", base_dir=tmp_path).name == "fa"


def test_rule_relative_to():
    assert rule_relative_to({"rule": "r.py:X"}, "/a/b") == {"rule": "/a/b/r.py:X"}
    assert rule_relative_to({"rule": "/abs/r.py:X"}, "/a/b") == {"rule": "/abs/r.py:X"}
    assert rule_relative_to({"rule": "fa"}, "/a/b") == {"rule": "fa"}
    cfg = {"rule": 3}
    assert rule_relative_to(cfg, "/a/b") is cfg
