"""``python -m odeflow``: config validation, solve/sde round trips, --init-from."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import afa_state, needs_theory

import odeflow
from odeflow.__main__ import COMMANDS, main
from odeflow.config import SDE_KEYS, SOLVE_KEYS, load_config, validate_config
from theory.state import OrderParameters

CONFIGS = Path(odeflow.__file__).parent / "configs"
REPO = Path(odeflow.__file__).resolve().parents[1]


def _write(tmp_path, cfg, name="cfg.json"):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return p


def _small(cfg, **over):
    cfg = dict(cfg)
    cfg.update(over)
    return cfg


def test_subcommand_registry():
    assert set(COMMANDS) >= {"solve", "sde"}
    for cmd in COMMANDS.values():
        assert callable(cmd.run) and callable(cmd.add_arguments)


@pytest.mark.parametrize(
    "name",
    ["bp_K2M2.json", "fa_K2M2.json", "afa_K2M2.json", "afa_K2M2_sde.json", "pepita_K2M2.json"],
)
def test_example_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    command = "sde" if "n_paths" in cfg else "solve"
    out = validate_config(cfg, command)
    assert isinstance(out["init"], OrderParameters)
    assert (out["K"], out["M"]) == (2, 2)


def test_unknown_key_lists_allowed(tmp_path, capsys):
    cfg = _small(load_config(CONFIGS / "bp_K2M2.json"), learning_rate=0.1)
    rc = main(["solve", str(_write(tmp_path, cfg)), "-o", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown config keys learning_rate" in err
    for k in SOLVE_KEYS:
        assert k in err


def test_config_errors():
    base = load_config(CONFIGS / "bp_K2M2.json")
    with pytest.raises(ValueError, match="K = 3 but the initial state has K = 2"):
        validate_config(_small(base, K=3))
    with pytest.raises(ValueError, match="missing required keys eta"):
        validate_config({k: v for k, v in base.items() if k != "eta"})
    with pytest.raises(ValueError, match="unknown init keys Z"):
        validate_config(_small(base, init={**base["init"], "Z": [1]}))
    # W (a deep student's read-out matrices, docs/deep.md) is an init key now: checked
    with pytest.raises(ValueError, match=r"W\[0\] must be 2-dimensional"):
        validate_config(_small(base, init={**base["init"], "W": [1]}))
    with pytest.raises(ValueError, match="belong to the other command"):
        validate_config(_small(base, n_paths=3), "solve")
    with pytest.raises(ValueError, match="no initial state"):
        validate_config({k: v for k, v in base.items() if k != "init"})
    assert "n_paths" in SDE_KEYS and "rtol" not in SDE_KEYS


@needs_theory
@pytest.mark.parametrize(
    "name,ext", [("bp_K2M2.json", "npz"), ("fa_K2M2.json", "json"), ("afa_K2M2.json", "npz")]
)
def test_solve_roundtrip(tmp_path, capsys, name, ext):
    cfg = _small(load_config(CONFIGS / name), alpha_max=5.0, record={"every": 1.0})
    out = tmp_path / f"out.{ext}"
    rc = main(["solve", str(_write(tmp_path, cfg)), "-o", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    res = odeflow.Result.load(out)
    assert res.params["rule"] == cfg["rule"] and res.alpha.tolist() == [0, 1, 2, 3, 4, 5]
    direct = odeflow.solve(
        cfg["rule"],
        OrderParameters.from_dict(cfg["init"]),
        eta=cfg["eta"],
        eta_v=cfg["eta_v"],
        alpha_max=5.0,
        record={"every": 1.0},
        rtol=cfg["rtol"],
        atol=cfg["atol"],
    )
    np.testing.assert_array_equal(res.eg, direct.eg)


@needs_theory
def test_init_from_simulation_file(tmp_path, capsys):
    st = afa_state(seed=3)
    sim = tmp_path / "sim.npz"
    np.savez(sim, eg=np.zeros(3), **st.to_dict("init_"))  # a simulation-style output
    cfg = _small(load_config(CONFIGS / "afa_K2M2.json"), alpha_max=2.0, record={"every": 1.0})
    del cfg["init"]
    out = tmp_path / "out.npz"
    rc = main(
        ["solve", str(_write(tmp_path, cfg)), "-o", str(out), "--init-from", str(sim), "--quiet"]
    )
    assert rc == 0, capsys.readouterr().err
    res = odeflow.Result.load(out)
    np.testing.assert_array_equal(res.init.R, st.R)
    np.testing.assert_array_equal(res.b[0], st.b)


@needs_theory
def test_sde_roundtrip(tmp_path, capsys):
    cfg = _small(
        load_config(CONFIGS / "afa_K2M2_sde.json"), alpha_max=1.0, n_paths=4, record={"every": 0.5}
    )
    out = tmp_path / "sde.npz"
    rc = main(["sde", str(_write(tmp_path, cfg)), "-o", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    res = odeflow.SDEResult.load(out)
    assert res.eg.shape == (4, 3) and res.params["seed"] == cfg["seed"]


@needs_theory
def test_diverged_run_exit_status_1(tmp_path, capsys):
    cfg = _small(
        load_config(CONFIGS / "bp_K2M2.json"),
        eta=60.0,
        eta_v=60.0,
        method="euler",
        dt=0.05,
        alpha_max=50.0,
        record={"every": 1.0},
    )
    for k in ("rtol", "atol", "eg_tol"):
        cfg.pop(k)
    out = tmp_path / "o.npz"
    rc = main(["solve", str(_write(tmp_path, cfg)), "-o", str(out), "--quiet"])
    assert rc == 1 and "diverged" in capsys.readouterr().out
    assert odeflow.Result.load(out).status == -1


@needs_theory
def test_python_dash_m_entry_point(tmp_path):
    cfg = _small(load_config(CONFIGS / "bp_K2M2.json"), alpha_max=1.0, record={"every": 0.5})
    out = tmp_path / "o.json"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "odeflow", "solve", str(_write(tmp_path, cfg)), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert odeflow.Result.load(out).alpha.tolist() == [0.0, 0.5, 1.0]
    bad = subprocess.run(
        [sys.executable, "-m", "odeflow", "solve", str(tmp_path / "nope.json"), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "cannot read config" in bad.stderr


def test_progress_bar_non_tty_lines():
    import io

    from theory.runtime.progress import ProgressBar

    buf = io.StringIO()
    bar = ProgressBar(100.0, label="bp dopri5", stream=buf, delay=0.0, min_interval=0.0)
    for a in range(0, 101, 5):
        bar.update(float(a))
    bar.close(100.0, note="done")
    lines = buf.getvalue().splitlines()
    assert 5 <= len(lines) <= 13  # at most one line per 10 % off a terminal
    assert lines[-2].startswith("bp dopri5 [") and "100.0%" in lines[-2]
    assert lines[-1] == "done"
    quiet = io.StringIO()
    bar = ProgressBar(1.0, stream=quiet, enabled=False, delay=0.0)
    bar.update(0.5)
    bar.close(1.0, note="x")
    assert quiet.getvalue() == ""
