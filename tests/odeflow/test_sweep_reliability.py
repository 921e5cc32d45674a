"""Sweeps under faults (issue 21): kill -9 of the sweep, a wrong --scheduler, a huge dry run,
corrupt result files on resume, two sweeps in one directory, a full disk.

Oracles: the process table (/proc via psutil) for orphaned workers; the directory listing
for "nothing written" and "no temporary file left"; results of points re-run after their
files were damaged compared with the same points run directly by ``odeflow.solve``.
"""

import errno
import functools
import http.server
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from odeflow.sweep import SweepBusy, sweep

ROOT = Path(__file__).resolve().parents[2]
HAVE_DASK = importlib.util.find_spec("distributed") is not None

INIT = {
    "Q": [[1.0, 0.02], [0.02, 1.0]],
    "R": [[0.03, -0.01], [0.02, 0.01]],
    "T": [[1.0, 0.0], [0.0, 1.0]],
    "v": [0.1, -0.05],
    "v_star": [1.0, 1.0],
}
ODE = {"rule": "bp", "eta": 0.5, "alpha_max": 2, "record": {"every": 0.5}, "init": INIT}
SPEC = {"base": ODE, "grid": {"eta": [0.3, 0.5, 0.7]}}


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _cli(*args, timeout=180, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "odeflow", "sweep", *map(str, args)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _write(path, obj):
    Path(path).write_text(json.dumps(obj))
    return path


def _leftovers(d):
    return sorted(
        str(p.relative_to(d)) for p in Path(d).rglob(".*") if ".part" in p.name or ".tmp" in p.name
    )


# ------------------------------------------------------------------------ kill -9
def test_workers_die_with_a_killed_sweep(tmp_path):
    psutil = pytest.importorskip("psutil")
    # points long enough that the workers are busy (or warming up) when the parent dies
    spec = {
        "base": dict(ODE, alpha_max=2000, record={"every": 1.0}),
        "grid": {"eta": [0.1, 0.2, 0.3, 0.4]},
    }
    f = _write(tmp_path / "s.json", spec)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odeflow",
            "sweep",
            str(f),
            "-o",
            str(tmp_path / "out"),
            "--workers",
            "2",
            "--quiet",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers = []
        while time.monotonic() < deadline:
            kids = parent.children(recursive=True)
            workers = [k for k in kids if "resource_tracker" not in " ".join(k.cmdline())]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the sweep never started its worker processes"
        time.sleep(1.0)  # let the initializers install their guards
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived the killed sweep: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------- --scheduler
@pytest.mark.slow  # ~16 s, mostly the connection timeout it checks
@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed not installed")
def test_scheduler_that_is_an_http_server(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        addr = f"tcp://127.0.0.1:{srv.server_address[1]}"
        f = _write(tmp_path / "s.json", SPEC)
        t0 = time.monotonic()
        r = _cli(f, "-o", tmp_path / "out", "--scheduler", addr, timeout=150)
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.returncode == 2, r.stderr
    assert f"no Dask scheduler at {addr}" in r.stderr
    assert time.monotonic() - t0 < 120
    assert not (tmp_path / "out").exists()  # nothing written before connecting


@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed not installed")
def test_scheduler_that_sends_garbage(tmp_path):
    """A server (e.g. a proxy) that answers at once with bytes Dask reads as a huge frame
    length: before, "out of memory"; now the same "no Dask scheduler" message."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        conns = []
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.sendall(b"\xff" * 64 + b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            conns.append(c)
        for c in conns:
            c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    addr = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    try:
        f = _write(tmp_path / "s.json", SPEC)
        r = _cli(f, "-o", tmp_path / "out", "--scheduler", addr, timeout=150)
    finally:
        stop.set()
        th.join()
        srv.close()
    assert r.returncode == 2, r.stderr
    assert f"no Dask scheduler at {addr}" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed not installed")
def test_scheduler_on_a_closed_port(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    f = _write(tmp_path / "s.json", SPEC)
    r = _cli(f, "-o", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 2, r.stderr
    assert f"no Dask scheduler at tcp://127.0.0.1:{port} (cannot connect" in r.stderr
    assert "cannot write" not in r.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- dry run
def test_dry_run_of_a_million_points_says_its_size_at_once(tmp_path):
    spec = {
        "base": ODE,
        "grid": {"eta": {"linspace": [0.1, 1.0, 1000]}, "eta_v": {"linspace": [0.1, 1.0, 1000]}},
    }
    f = _write(tmp_path / "big.json", spec)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odeflow",
            "sweep",
            str(f),
            "-o",
            str(tmp_path / "out"),
            "--dry-run",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = []

    def read():
        for _ in range(3):
            lines.append(proc.stdout.readline())

    th = threading.Thread(target=read, daemon=True)
    th.start()
    th.join(60)  # generous for a loaded machine; before: nothing for > 180 s
    proc.kill()
    proc.wait()
    assert len(lines) == 3, lines
    assert "1000000 solve points over eta[1000] × eta_v[1000]" in lines[0]
    # the listing streams: the first points are there, in C order
    assert lines[1].split()[0] == "0" and "'eta': 0.1, 'eta_v': 0.1}" in lines[1]
    assert lines[2].split()[0] == "1"
    assert not (tmp_path / "out").exists()


def test_dry_run_names_an_invalid_point(tmp_path):
    f = _write(tmp_path / "s.json", {"base": ODE, "grid": {"eta": [0.5, "x"]}})
    r = _cli(f, "-o", tmp_path / "out", "--dry-run")
    assert r.returncode == 2
    assert 'point 1 (eta = "x")' in r.stderr and "eta must be a number" in r.stderr


# ------------------------------------------------------------------------ resume
def test_resume_reruns_truncated_and_empty_point_files(tmp_path, capsys):
    from odeflow import solve
    from odeflow.config import to_solve_args, validate_config

    out = tmp_path / "out"
    res = sweep(SPEC, out, workers=0)
    assert res.exit_code == 0 and res.n_run == 3
    p0, p2 = res.path(0), res.path(2)
    data = p0.read_bytes()
    p0.write_bytes(data[: len(data) // 2])  # truncated
    p2.write_bytes(b"")  # emptied
    again = sweep(SPEC, out, workers=0)
    assert again.n_run == 2 and again.n_skipped == 1 and again.broken == [0, 2]
    assert "2 run now (2 of them again" in again.summary()
    for i in (0, 2):  # the re-run results are the real ones
        cfg = validate_config(again.sweep.points[i].config, "solve")
        rule, init, kw = to_solve_args(cfg)
        direct = solve(rule, init, **kw)
        np.testing.assert_array_equal(again.load(i).eg, direct.eg)
    # a third run trusts the repaired files
    assert sweep(SPEC, out, workers=0).n_run == 0


def test_resume_cli_says_which_points_ran_again(tmp_path):
    f = _write(tmp_path / "s.json", SPEC)
    out = tmp_path / "out"
    assert _cli(f, "-o", out, "--workers", "0", "--quiet").returncode == 0
    npz = sorted((out / "points").glob("*.npz"))[0]
    npz.write_bytes(npz.read_bytes()[:100])
    r = _cli(f, "-o", out, "--workers", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1 point(s) recorded as finished had a missing, truncated or corrupt" in r.stderr
    assert "1 run now" in r.stdout


# -------------------------------------------------------------------------- lock
def test_second_sweep_into_a_busy_directory_refuses(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "earlier"}
        _write(out / "sweep.lock", lock)
        with pytest.raises(SweepBusy, match=rf"another sweep \(PID {holder.pid} on host"):
            sweep(SPEC, out, workers=0)
        assert not (out / "points").exists() or not any((out / "points").iterdir())
        f = _write(tmp_path / "s.json", SPEC)
        r = _cli(f, "-o", out, "--workers", "0", "--quiet")
        assert r.returncode == 2
        assert f"another sweep (PID {holder.pid}" in r.stderr and "sweep.lock" in r.stderr
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and is taken over
    r = _cli(f, "-o", out, "--workers", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "taking over the stale lock" in r.stderr and "no longer running" in r.stderr
    assert "3 run now" in r.stdout
    assert not (out / "sweep.lock").exists()  # released at the end


def test_two_concurrent_cli_sweeps_one_refuses(tmp_path):
    spec = {"base": dict(ODE, alpha_max=300), "grid": {"eta": [0.1, 0.2, 0.3, 0.4]}}
    f = _write(tmp_path / "s.json", spec)
    out = tmp_path / "out"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odeflow",
            "sweep",
            str(f),
            "-o",
            str(out),
            "--workers",
            "0",
            "--quiet",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "sweep.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / "sweep.lock").exists()
        r = _cli(f, "-o", out, "--workers", "0", "--quiet")
        assert first.poll() is None, "the first sweep ended too early for this test"
        assert r.returncode == 2
        assert f"another sweep (PID {first.pid} on host {socket.gethostname()}" in r.stderr
    finally:
        first.kill()
        first.wait()


# ----------------------------------------------------------------- a full disk
def _full_disk(monkeypatch, victim):
    """Path.write_bytes writes half of the data, then fails with ENOSPC, for files whose
    final name ends with ``victim`` (the temporary name carries the suffix)."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name.endswith(victim) or victim in self.name:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    from odeflow.__main__ import main

    f = _write(tmp_path / "s.json", SPEC)
    out = tmp_path / "out"
    _full_disk(monkeypatch, ".npz")
    with pytest.raises(OSError) as ei:
        sweep(SPEC, out, workers=0)
    assert ei.value.errno == errno.ENOSPC
    assert ei.value.filename.startswith(str(out / "points")) and ei.value.filename.endswith(".npz")
    assert _leftovers(out) == []
    assert not (out / "sweep.lock").exists()
    # the command line: exit 2, the file named
    code = main(["sweep", str(f), "-o", str(out), "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot write {out / 'points'}" in err and "No space left on device" in err
    assert _leftovers(out) == []


def test_atomic_path_failure_names_the_output(tmp_path):
    from theory.runtime import cli

    target = tmp_path / "res.npz"
    with pytest.raises(OSError) as ei:
        with cli.atomic_path(target) as tmp:
            np.savez(tmp, x=np.arange(10))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert ei.value.filename == str(target) and ei.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    # through run_command: the message names the output
    code = cli.run_command("prog", lambda: cli.atomic_write(target, b"") or 0)
    assert code == 0 and target.read_bytes() == b""
