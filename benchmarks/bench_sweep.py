"""Benchmark of odeflow.sweep (a script, not a test).

200 short ODE points (AFA, K = M = 2, α = 50, dopri5, ``odeflow/configs/afa_K2M2.json``
with η swept over 200 values) run

  per-process  one ``python -m odeflow solve CONFIG -o OUT.npz --quiet`` process per point,
               what a shell loop over configs does; measured on a handful of points (each
               pays the interpreter start, the imports and the kernel loading) and reported
               per point;
  sweep w=1    ``odeflow.sweep.sweep(..., workers=1)``: one worker process, kernels loaded
               once; per point = total wall time (pool start-up included) / 200;
  sweep w=2    the same with two worker processes;

also the steady-state time per point (first to last finished point, worker start-up
excluded) and the time inside the workers;

and prints the ratios per-process / sweep (target >= 10) and w=1 / w=2 (the speed-up of
the second worker; at most 2 on two cores, less when the machine is shared).

Usage: ``python benchmarks/bench_sweep.py [--points 200] [--baseline 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odeflow.sweep import sweep  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--baseline", type=int, default=5, help="processes for the baseline")
    a = ap.parse_args(argv)
    base = json.loads((ROOT / "odeflow/configs/afa_K2M2.json").read_text())
    base.update(alpha_max=50, record={"every": 1.0})
    spec = {"base": base, "grid": {"eta": {"linspace": [0.2, 1.2, a.points]}}}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # warm the on-disk caches once, so every variant below finds compiled kernels
        sweep({"base": base, "grid": {"eta": [0.5]}}, tmp / "warm", workers=0)

        times = []
        for i in range(a.baseline):
            cfg = dict(base, eta=0.2 + i / max(a.baseline - 1, 1))
            f = tmp / f"p{i}.json"
            f.write_text(json.dumps(cfg))
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "odeflow",
                    "solve",
                    str(f),
                    "-o",
                    str(tmp / f"p{i}.npz"),
                    "--quiet",
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - t)
        per_proc = sum(times) / len(times)
        print(
            f"per-process: {per_proc * 1e3:8.1f} ms/point (mean of {a.baseline} "
            f"'python -m odeflow solve' processes; min {min(times) * 1e3:.0f} ms)"
        )

        res, steady = {}, {}
        for w in (1, 2):
            stamps = []
            t = time.perf_counter()
            r = sweep(
                spec,
                tmp / f"w{w}",
                workers=w,
                on_point=lambda i, row: stamps.append(time.perf_counter()),
            )
            wall = time.perf_counter() - t
            # steady state: first to last finished point (worker start-up excluded)
            steady[w] = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
            assert r.exit_code == 0 and r.n_run == a.points, r.summary()
            inside = sum(row["wall_time"] for row in r.rows) / a.points
            res[w] = wall / a.points
            print(
                f"sweep w={w}:  {res[w] * 1e3:8.2f} ms/point (total {wall:.2f} s incl. "
                f"worker start-up; steady state {steady[w] * 1e3:.2f} ms/point; "
                f"{inside * 1e3:.2f} ms/point inside the workers)"
            )
    print(f"per-process / sweep(w=1): {per_proc / res[1]:6.1f}x   (target >= 10)")
    print(f"per-process / sweep(w=2): {per_proc / res[2]:6.1f}x")
    print(
        f"speed-up 1 -> 2 workers:  {res[1] / res[2]:6.2f}x total, "
        f"{steady[1] / steady[2]:.2f}x steady state   (ideal 2 on 2 free cores; this "
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
