"""odeflow.sweep: validation before running, executors (local processes, in-process, Dask)
agree exactly, resuming after a kill, failing points recorded, CLI exit codes.

Oracles: every sweep point is compared with the same run done directly through
``odeflow.solve`` / ``solve_sde`` / ``simulations.simulate`` (bit-identical: same inputs,
same deterministic kernels), and the set of points a resumed sweep runs with the set the
killed one had not finished (read from the directory before resuming).
"""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from odeflow.sweep import load_sweep, point_key, sweep

ROOT = Path(__file__).resolve().parents[2]
HAVE_DASK = importlib.util.find_spec("distributed") is not None

INIT = {
    "Q": [[1.0, 0.02], [0.02, 1.0]],
    "R": [[0.03, -0.01], [0.02, 0.01]],
    "T": [[1.0, 0.0], [0.0, 1.0]],
    "v": [0.1, -0.05],
    "v_star": [1.0, 1.0],
    "b": [0.25, -0.31],
    "c": [0.12, 0.28],
    "sigma_F2": 0.09,
}
ODE = {"rule": "afa", "eta": 0.5, "alpha_max": 5, "record": {"every": 0.5}, "init": INIT}
SDE = {
    "rule": "afa",
    "eta": 0.5,
    "alpha_max": 2,
    "dt": 0.01,
    "n_paths": 3,
    "record": {"every": 0.5},
    "init": INIT,
}


def _rows(d):
    with open(Path(d) / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "odeflow", "sweep", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


# ------------------------------------------------------------------ the sweep file
def test_axes_forms_order_and_keys():
    sw = load_sweep(
        {
            "base": ODE,
            "grid": {"eta": {"log": [0.1, 1.0, 3]}, "init.sigma_F2": {"linspace": [0.01, 0.03, 2]}},
            "zip": {"eta_v": [0.1, 0.2], "alpha_max": {"range": [3, 5]}},
        }
    )
    assert sw.kind == "solve" and sw.shape == (3, 2, 2) and len(sw) == 12
    assert sw.names == ("eta", "init.sigma_F2", "eta_v", "alpha_max")
    np.testing.assert_allclose([p.values["eta"] for p in sw.points[::4]], [0.1, 0.1**0.5, 1])
    # C order: the last axis (the zip group) varies fastest, its keys together
    p = sw.points[5]
    assert p.values == {
        "eta": pytest.approx(0.1**0.5),
        "init.sigma_F2": 0.01,
        "eta_v": 0.2,
        "alpha_max": 4,
    }
    assert p.config["init"]["sigma_F2"] == 0.01 and p.config["eta_v"] == 0.2
    assert sw.base["init"]["sigma_F2"] == 0.09  # the base is not mutated
    # the key ignores key order, 1 vs 1.0 and the description
    a = point_key("solve", {"eta": 1, "alpha_max": 5.0, "description": "x"})
    assert a == point_key("solve", {"alpha_max": 5, "eta": 1.0})
    assert a != point_key("sde", {"alpha_max": 5, "eta": 1.0})
    assert a != point_key("solve", {"alpha_max": 5, "eta": 1.1})


def test_kind_inference_and_seeds():
    assert load_sweep({"base": SDE, "seeds": 3}).kind == "sde"
    sw = load_sweep({"base": SDE, "seeds": {"range": [2, 4]}})
    assert [p.config["seed"] for p in sw.points] == [2, 3]
    sim = {"rule": "afa", "N": 100, "alpha_max": 1}
    sw = load_sweep({"base": sim, "seeds": [5, 7]})
    assert sw.kind == "simulate"
    assert [(p.config["init"]["seed"], p.config["seeds"]) for p in sw.points] == [
        (5, [5]),
        (7, [7]),
    ]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"grid": {"etaa": [0.1]}}, "unknown config keys etaa"),
        ({"grid": {"eta": []}}, "axis 'eta' is empty"),
        ({"grid": {"eta": {"range": [3, 3]}}}, "axis 'eta' is empty"),
        ({"grid": {"eta": {"range": [0, 1.5]}}}, "range must be"),
        ({"grid": {"eta": {"log": [0, 1, 3]}}}, "log needs first and last > 0"),
        ({"grid": {"init.foo": [1]}}, "unknown init keys foo"),
        ({"grid": {"eta.x": [1]}}, "not an object"),
        ({"zip": {"eta": [1, 2], "eta_v": [1]}}, "same length"),
        ({"seeds": 3}, "deterministic"),
        ({"grid": {"eta": [1]}, "zip": {"eta": [2]}}, "swept more than once"),
        ({"grid": {"eta": [1]}, "kind": "ode"}, "unknown sweep kind"),
        ({"grids": {}}, "unknown sweep keys grids"),
    ],
)
def test_invalid_sweep_rejected_before_running(tmp_path, bad, match):
    spec = {"base": ODE, **bad}
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        sweep(spec, out, workers=0)
    assert not out.exists()  # nothing ran, nothing was written


def test_invalid_sweep_cli_exit_2(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"base": ODE, "grid": {"eta": [0.5], "alpha_maxx": [1, 2]}}))
    r = _cli(f, "-o", tmp_path / "out", "--quiet")
    assert r.returncode == 2, r.stderr
    assert "alpha_maxx" in r.stderr and not (tmp_path / "out").exists()


def test_simulation_validator_used(tmp_path):
    sim = {"rule": "afa", "N": 100, "alpha_max": 1}
    with pytest.raises(ValueError, match=r"point 1 \(eta = -1\): eta must be >= 0"):
        sweep({"base": sim, "grid": {"eta": [1.0, -1.0]}}, tmp_path / "o", workers=0)
    with pytest.raises(ValueError, match="unknown init keys"):
        load_sweep({"base": sim, "grid": {"init.w_scal": [1.0]}})


# ------------------------------------------------------------------------- running
def test_failing_point_recorded_rest_finish(tmp_path):
    from odeflow import solve
    from odeflow.api import Result

    spec = {"base": ODE, "grid": {"alpha_max": [3, -1, 4], "eta": [0.3, 0.6]}}
    res = sweep(spec, tmp_path, workers=0)
    st = res.statuses
    assert st == ["ok", "ok", "failed", "failed", "ok", "ok"]
    assert res.exit_code == 1
    rows = _rows(tmp_path)
    assert [r["status"] for r in rows] == st
    for r in rows[2:4]:
        assert "alpha_max must be a positive finite number, got -1" in r["message"]
        assert r["file"] == "" and not (tmp_path / "points" / f"{r['key']}.npz").exists()
    # the others hold exactly what a direct solve gives
    direct = solve("afa", INIT, eta=0.6, alpha_max=4, record={"every": 0.5})
    got = res.load(5)
    assert isinstance(got, Result)
    np.testing.assert_array_equal(got.eg, direct.eg)
    assert float(rows[5]["eg_final"]) == direct.eg[-1]
    assert float(rows[5]["alpha_final"]) == 4.0 and rows[5]["eta"] == "0.6"


def test_diverged_point_is_flagged(tmp_path):
    # linear units: at η = 30 the order parameters overflow (erf's bounded ε_g would let the
    # one divergence criterion, ε_g > threshold, run on: theory.divergence)
    base = dict(ODE, activation="linear", diverge_threshold=2.0, alpha_max=50)
    spec = {"base": base, "grid": {"eta": [0.5, 30.0]}}
    res = sweep(spec, tmp_path, workers=0)
    assert res.statuses == ["ok", "diverged"] and res.exit_code == 1
    d = res.column("diverged")
    assert list(d) == [0.0, 1.0]
    a = res.column("alpha_diverged")
    assert np.isnan(a[0]) and 0 < a[1] < 50
    assert res.load(1).reason == "diverged"


def test_process_pool_equals_direct(tmp_path):
    """Two spawned worker processes give bit-identical results to direct calls."""
    from odeflow import solve_sde

    spec = {"base": SDE, "grid": {"eta": [0.3, 0.6]}, "seeds": 2}
    res = sweep(spec, tmp_path, workers=2)
    assert res.exit_code == 0 and res.n_run == 4
    for p in res.sweep.points:
        d = solve_sde(
            "afa",
            INIT,
            eta=p.values["eta"],
            alpha_max=2,
            dt=0.01,
            n_paths=3,
            seed=p.values["seed"],
            record={"every": 0.5},
        )
        np.testing.assert_array_equal(res.load(p.index).eg, d.eg)
    assert res.column("eg_final")[0] != res.column("eg_final")[1]  # the seeds differ


@pytest.mark.skipif(
    not HAVE_DASK,
    reason='dask.distributed not installed: pip install -e ".[dask]" to run the Dask executor test',
)
def test_dask_local_cluster_identical_to_local(tmp_path):
    from odeflow.sweep import _warm_specs, dask_executor

    spec = {"base": SDE, "grid": {"eta": [0.3, 0.6]}, "seeds": [1, 2]}
    loc = sweep(spec, tmp_path / "local", workers=0)
    ex, close = dask_executor(
        "local", workers=2, processes=False, specs=_warm_specs(load_sweep(spec))
    )
    try:
        dk = sweep(spec, tmp_path / "dask", executor=ex)
    finally:
        close()
    assert dk.exit_code == 0 and dk.n_run == 4
    for name in ("eg_final", "eg_std", "cos_vb_final", "norm_b_final"):
        np.testing.assert_array_equal(dk.column(name), loc.column(name))
    for i in range(4):
        np.testing.assert_array_equal(dk.load(i).b, loc.load(i).b)


def test_dask_missing_gives_install_line(monkeypatch):
    from odeflow.sweep import dask_executor

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(ImportError, match=r'pip install -e "\.\[dask\]"'):
        dask_executor("local")


def test_simulate_sweep_equals_simulate(tmp_path):
    from simulations.teacher_student import simulate

    base = {
        "rule": "afa",
        "N": 200,
        "alpha_max": 2,
        "record": {"every": 0.5},
        "sigma_F": 0.3,
        "seeds": 2,
    }
    res = sweep({"base": base, "grid": {"eta": [0.4, 0.8]}}, tmp_path, workers=0)
    assert res.exit_code == 0
    d = simulate({**base, "eta": 0.8, "threads": 1})
    np.testing.assert_array_equal(res.load(1).eg, d.eg)
    assert res.column("eg_final")[1] == d.eg_mean[-1]
    assert res.column("diverged")[1] == 0.0


def test_kill_then_resume_runs_only_missing(tmp_path):
    """SIGKILL a CLI sweep part-way (the process group: parent and worker), then re-run:
    exactly the points without a finished record run, and the results are complete."""
    spec = {
        "base": dict(ODE, method="rk4", dt=2e-4, alpha_max=5),
        "grid": {"eta": {"linspace": [0.3, 0.75, 10]}},
    }
    f = tmp_path / "s.json"
    f.write_text(json.dumps(spec))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odeflow",
            "sweep",
            str(f),
            "-o",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pts = out / "points"
    t0 = time.time()
    while time.time() - t0 < 90:
        if pts.exists() and len(list(pts.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {json.loads(p.read_text())["index"] for p in pts.glob("*.json")}
    assert 3 <= len(done) < 10, f"kill did not land mid-sweep ({len(done)} points done)"
    summary = _rows(out)
    assert {int(r["index"]) for r in summary} == done  # the table lists what finished
    ran = []
    res = sweep(f, out, workers=0, on_point=lambda i, row: ran.append(i))
    assert sorted(ran) == sorted(set(range(10)) - done)
    assert res.n_skipped == len(done) and res.exit_code == 0
    assert len(_rows(out)) == 10 and len(list(pts.glob("*.npz"))) == 10
    assert not list(pts.glob(".*.tmp*"))  # a killed write's temp file is cleaned up
    # every point is right, whichever run computed it
    from odeflow import solve

    for i in (min(done), max(ran)):
        p = res.sweep.points[i]
        d = solve(
            "afa",
            INIT,
            eta=p.values["eta"],
            alpha_max=5,
            method="rk4",
            dt=2e-4,
            record={"every": 0.5},
        )
        np.testing.assert_array_equal(res.load(i).eg, d.eg)
    # a third run does nothing
    again = sweep(f, out, workers=0)
    assert again.n_run == 0 and again.n_skipped == 10


def test_cli_runs_and_exit_codes(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"base": ODE, "grid": {"alpha_max": [1, -2, 2]}}))
    r = _cli(f, "-o", tmp_path / "b", "--workers", "0")
    assert r.returncode == 1, r.stderr
    assert "3/3 points (2 ok, 1 failed)" in r.stdout
    assert "alpha_max must be a positive finite number" in r.stderr
    assert "sweep [" in r.stderr and "3/3 points, 1 failed" in r.stderr  # the progress bar


def test_ctrl_c_exits_130_keeps_points_stops_workers(tmp_path):
    """SIGINT to the process group (what Ctrl-C does): exit 130, finished points kept,
    every worker process gone."""
    spec = {
        "base": dict(ODE, method="rk4", dt=2e-4, alpha_max=5),
        "grid": {"eta": {"linspace": [0.3, 0.75, 10]}},
    }
    f = tmp_path / "s.json"
    f.write_text(json.dumps(spec))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odeflow",
            "sweep",
            str(f),
            "-o",
            str(out),
            "--workers",
            "2",
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pts = out / "points"
    t0 = time.time()
    while time.time() - t0 < 90 and not (pts.exists() and list(pts.glob("*.json"))):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=60)
    assert rc == 130 and "interrupted" in proc.stderr.read()
    done = len(list(pts.glob("*.json")))
    assert 1 <= done < 10 and len(_rows(out)) == done
    for _ in range(100):  # the workers are terminated, not left running
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("worker processes still alive after the sweep exited")
