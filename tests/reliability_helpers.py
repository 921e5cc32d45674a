"""Helpers of the reliability tests (issue 11): run a command as a new user would, in a
subprocess from the repository root, and interrupt it like Ctrl-C."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("ODEFLOW_CACHE_DIR", str(REPO / ".odeflow-cache"))
    return e


def run(args, timeout=300, **kw):
    """``python -m ARGS`` to completion; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def interrupt(args, marker: str, start_timeout=240.0, stop_timeout=20.0):
    """Start ``python -m ARGS``, wait until ``marker`` appears on its stderr (the work has
    begun), send SIGINT (what Ctrl-C sends) and measure how long it takes to exit.

    Returns ``(returncode, seconds from SIGINT to exit, stderr)``. The process is killed
    (and the test fails on the returned time) if it does not stop within ``stop_timeout``.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", *map(str, args)],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    buf = bytearray()
    seen = threading.Event()

    def reader():
        while True:
            ch = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
            if not ch:
                break
            buf.extend(ch)
            if marker.encode() in buf:
                seen.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    t0 = time.monotonic()
    while not seen.is_set():
        if proc.poll() is not None or time.monotonic() - t0 > start_timeout:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{marker!r} never appeared; stderr: {bytes(buf)!r}")
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the computation
    t_int = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=stop_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    dt = time.monotonic() - t_int
    th.join(timeout=5)
    return proc.returncode, dt, bytes(buf).decode(errors="replace")
