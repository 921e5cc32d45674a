"""Benchmark of the deep-student simulation kernel against the two-layer kernel (a script,
not a test).

One seed on one thread, M = 2, prints samples (steps) per second of

  two-layer  the committee's generated kernel (``simulations.teacher_student``), K = K₁;
  deep       ``simulations.deep_kernel.deep_block`` for the given widths and rule;

and their ratio (deep/two-layer; the target is ≈ 1 at the same K₁: the O(K₁N) first layer
dominates, the read-out costs O(Σ K_ℓ K_{ℓ+1}) per step). Then the cost of one record's
Monte Carlo observables (ε_g and cos_delta over ``mc_fields`` samples).

Usage: ``python benchmarks/bench_deep_sim.py [--quick]``
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simulations import deep_kernel  # noqa: E402
from simulations import teacher_student as ts  # noqa: E402
from simulations.deep_observables import field_normals, mc_observables  # noqa: E402
from simulations.deep_student import initial_deep_weights, validate_config  # noqa: E402
from simulations.ensemble import sample_state  # noqa: E402
from simulations.kernelgen import resolve_rule  # noqa: E402


def bench_two_layer(rule, N, K, steps):
    cfg = validate_config(dict(rule=rule, N=N, alpha_max=1, widths=[K]))
    W = initial_deep_weights(cfg, 0)
    run_block = ts._kernel(resolve_rule(rule))
    st, x, work, rp = sample_state(0), np.empty((2, N)), np.zeros((6, max(K, 2))), np.zeros(1)
    args = (W.w, W.w_star, W.v, W.v_star, W.F, W.b1, 0.5, 0.5, 0.0, rp, work)
    run_block(0, 1, st, x, *args)  # compile / load
    B = ts.block_steps(N)
    t0, done = time.perf_counter(), 0
    while done < steps:
        done += run_block(0, B, st, x, *args)
    return done / (time.perf_counter() - t0)


def bench_deep(rule, N, widths, steps):
    cfg = validate_config(dict(rule=rule, N=N, alpha_max=1, widths=widths, sigma_F=0.01))
    W = initial_deep_weights(cfg, 0)
    Km, nl = max(widths), len(widths)
    st, x = sample_state(0), np.empty((2, N))
    lay, work = np.zeros((4, nl, Km)), np.zeros((6, max(Km, 2)))
    code = deep_kernel.RULE_CODES[rule]
    args = (W.w, W.w_star, W.v, W.v_star, W.F, W.b1, W.widths, W.Wr, W.fb_b, W.fB, W.fd,
            0.5, 0.5, 0.5, 0.0, lay, work)  # fmt: skip
    deep_kernel.deep_block(code, 0, 1, st, x, *args)
    B = ts.block_steps(N)
    t0, done = time.perf_counter(), 0
    while done < steps:
        done += deep_kernel.deep_block(code, 0, B, st, x, *args)
    return done / (time.perf_counter() - t0)


def bench_observables(rule, widths, n):
    cfg = validate_config(dict(rule=rule, N=100, alpha_max=1, widths=widths))
    W = initial_deep_weights(cfg, 0)
    Q, R, T = W.w @ W.w.T / 100, W.w @ W.w_star.T / 100, W.w_star @ W.w_star.T / 100
    z = field_normals(n, widths[0] + 2)
    kw = dict(b=W.b1, fb_b=W.fb_b, fB=W.fB, fd=W.fd)
    mc_observables(Q, R, T, W.v, W.v_star, W.Wr, W.widths, rule, "erf", z[:10], **kw)
    t0 = time.perf_counter()
    mc_observables(Q, R, T, W.v, W.v_star, W.Wr, W.widths, rule, "erf", z, **kw)
    return time.perf_counter() - t0


def main(quick=False):
    steps = 20_000 if quick else 100_000
    print(f"{'rule':8s} {'N':>6s} {'widths':>10s} {'two-layer/s':>12s} {'deep/s':>12s} ratio")
    for N in (1000, 4000):
        for rule in ("bp", "pepita"):
            for widths in ([2], [2, 2], [4, 4, 2]):
                two = bench_two_layer(rule, N, widths[0], steps)
                deep = bench_deep(rule, N, widths, steps)
                print(f"{rule:8s} {N:6d} {str(widths):>10s} {two:12.4g} {deep:12.4g} "
                      f"{deep / two:5.2f}")  # fmt: skip
    n = 1 << 16
    for widths in ([2, 2], [4, 4, 2]):
        t = bench_observables("pepita", widths, n)
        print(f"observables (pepita, widths={widths}, {n} field samples): {1e3 * t:.1f} ms/record")
    return 0


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv))
