"""Benchmark of the teacher–student simulation kernels (a script, not a test).

For N = 1000 and 10⁴, K = M = 2 and 8, one seed on one thread, prints samples (steps) per
second of

  numba     the simulation kernel as ``simulate`` runs it (inputs drawn inside the ``nogil``
            kernel: xoshiro256++ + ziggurat, then fields, error and in-place updates);
  numpy     a straightforward NumPy per-step loop (``Generator.standard_normal(N)`` and a few
            matrix-vector products per step);
  floor     generating the Gaussian inputs alone (N + 1 normals per step) with the same
            in-kernel generator, in the same blocks;
  npgen     the same with numpy's fastest Generator (SFC64) filling a preallocated buffer,
            for reference;

and the ratios numba/numpy (target >= 10 at N = 1000) and numba-time/floor-time (target
<= 2). Finally the 2-thread throughput of ``simulate`` on an ensemble.

Usage: ``python benchmarks/bench_simulations.py [--quick]``
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simulations import teacher_student as ts  # noqa: E402
from simulations.ensemble import sample_state  # noqa: E402


def _weights(N, K, M, rng):
    return (
        rng.standard_normal((K, N)),
        rng.standard_normal((M, N)),
        0.1 * rng.standard_normal(K),
        np.ones(M),
        0.3 * rng.standard_normal(N),
    )


def bench_numba(rule, N, K, M, steps):
    rng = np.random.default_rng(0)
    w, w_star, v, v_star, F = _weights(N, K, M, rng)
    b = w @ F / math.sqrt(N)
    st = sample_state(0)
    B = ts.block_steps(N)
    x = np.empty((2, N))
    work = np.zeros((6, max(K, M)))
    from simulations.kernelgen import resolve_rule

    run_block = ts._kernel(resolve_rule(rule))  # the kernel generated from the rule's Rule
    rp = np.zeros(1)
    run_block(
        0, 1, st, x, w.copy(), w_star, v.copy(), v_star, F, b.copy(), 0.5, 0.5, 0.0, rp, work
    )  # compile / load cache
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        done += run_block(0, B, st, x, w, w_star, v, v_star, F, b, 0.5, 0.5, 0.0, rp, work)
    return done / (time.perf_counter() - t0)


def bench_floor(N, steps):
    st = sample_state(0)
    B = ts.block_steps(N)
    X = np.empty(B * (N + 1))
    ts._fill_normal(st, X[:1])
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        ts._fill_normal(st, X)
        done += B
    return done / (time.perf_counter() - t0)


def bench_npgen(N, steps):
    rx = np.random.Generator(np.random.SFC64(0))
    B = ts.block_steps(N)
    X = np.empty(B * (N + 1))
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        rx.standard_normal(out=X)
        done += B
    return done / (time.perf_counter() - t0)


def bench_numpy(rule, N, K, M, steps):
    """The obvious NumPy implementation, one step at a time (bp or afa)."""
    from scipy.special import erf

    rng = np.random.default_rng(0)
    w, w_star, v, v_star, F = _weights(N, K, M, rng)
    rx = np.random.default_rng(1)
    sqN = math.sqrt(N)
    eta = eta_v = 0.5
    t0 = time.perf_counter()
    for _ in range(steps):
        x = rx.standard_normal(N)
        lam = w @ x / sqN
        nu = w_star @ x / sqN
        g = erf(lam / math.sqrt(2))
        e = v @ g - v_star @ erf(nu / math.sqrt(2))
        gp = math.sqrt(2 / math.pi) * np.exp(-(lam**2) / 2)
        f = v if rule == "bp" else w @ F / sqN
        w -= (eta / sqN) * np.outer(f * gp * e, x)
        v -= (eta_v / N) * e * g
    return steps / (time.perf_counter() - t0)


def best_of(fn, *args, repeats=3):
    """Best rate of a few repeats: the machine may be shared, the best run is the least
    disturbed one."""
    return max(fn(*args) for _ in range(repeats))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    print(
        f"teacher-student simulation benchmark (1 thread; numpy {np.__version__}; "
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f})"
    )
    print(
        f"{'rule':>6} {'N':>6} {'K=M':>4} | {'numba':>10} {'numpy':>10} {'floor':>10} "
        f"{'npgen':>10} | {'numba/numpy':>11} {'time/floor':>10}   (samples/s)"
    )
    for N in (1000, 10_000):
        for K in (2, 8):
            for rule in ("bp", "afa"):
                steps = (20_000 if N == 1000 else 2_000) // (4 if quick else 1)
                fast = best_of(bench_numba, rule, N, K, K, steps)
                slow = best_of(bench_numpy, rule, N, K, K, max(steps // 10, 200))
                floor = best_of(bench_floor, N, steps)
                npgen = best_of(bench_npgen, N, steps)
                print(
                    f"{rule:>6} {N:>6} {K:>4} | {fast:10.4g} {slow:10.4g} {floor:10.4g} "
                    f"{npgen:10.4g} | {fast / slow:11.1f} {floor / fast:10.2f}"
                )
    # the whole pipeline, 2 threads
    for rule in ("afa", "pepita-forward"):
        cfg = dict(
            rule=rule,
            N=1000,
            K=2,
            M=2,
            alpha_max=5 if quick else 20,
            seeds=4,
            record={"every": 0.5},
        )
        ts.simulate(dict(cfg, alpha_max=0.01, seeds=1))
        t0 = time.perf_counter()
        ts.simulate(cfg)
        dt = time.perf_counter() - t0
        n = cfg["alpha_max"] * cfg["N"] * cfg["seeds"]
        print(
            f"simulate({rule}, N=1000, K=M=2, 4 seeds, alpha_max={cfg['alpha_max']}): "
            f"{dt:.2f} s, {n / dt:.4g} samples/s over all threads"
        )


if __name__ == "__main__":
    main()
