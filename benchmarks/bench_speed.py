"""Section (7) of ``bench_ode.py`` (issue 23), in its own module: the per-node cost of the
generated quadrature right-hand side against NumPy at the same nodes, and one Euler step
of odeflow's integration loop against the naive closed-form baseline. Run through
``python benchmarks/bench_ode.py`` (all sections, one run) or ``--speed-only``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from naive_baseline import baseline_euler

HERE = Path(__file__).resolve().parent


def _state(K, M, seed=0, N=2000):
    from theory.state import OrderParameters

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(K, N))
    ws = rng.normal(size=(M, N))
    return OrderParameters.from_weights(w, ws, 0.3 * rng.normal(size=K), np.ones(M))


def _best(f, repeat=5):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _best_short(f, repeat=40):
    """Minimum over many short runs (each a few ms): on a loaded machine the least
    disturbed run is the one that measures the code."""
    return _best(f, repeat)


def bench_per_node(Ks=(2, 4), P=1 << 13):
    """ns per node of the generated rhs and of NumPy at the same Sobol nodes."""
    sys.path.insert(0, str(HERE))
    from quad_numpy import NumpyQuad

    from theory.codegen_quad import build_quad_system
    from theory.quadrature import make_rule
    from theory.state import OrderParameters

    out = []
    for label, rule, act in (
        ("tanh", "bp", "tanh"),
        ("relu", "bp", "relu"),
        ("PEPITA", "pepita", "erf"),
    ):
        for K in Ks:
            rng = np.random.default_rng(K)
            N = 500
            ws = rng.normal(size=(K, N))
            w = rng.normal(size=(K, N)) + 0.5 * ws
            st = OrderParameters.from_weights(
                w, ws, 0.3 * rng.normal(size=K), np.ones(K), F=0.05 * rng.normal(size=N)
            )
            system = build_quad_system(rule, K, K, act, {"scheme": "sobol", "n": P})
            if system.rule.feedback != "adaptive":
                st = st.replace(b=None, c=None, sigma_F2=None, F_norm2=None)
            p = system.params(st, 0.7, 0.4, 0.0)
            y = system.layout.pack(st)
            dy = np.empty_like(y)
            system.rhs(y, p, dy)
            nq = NumpyQuad(rule, act)
            qr = make_rule(2 * K, "sobol", P, 0)
            ref = nq.rhs(st, 0.7, 0.4, 0.0, qr.nodes, qr.weights)
            t_gen = _best_short(lambda: system.rhs(y, p, dy)) / P
            t_np = _best_short(lambda: nq.rhs(st, 0.7, 0.4, 0.0, qr.nodes, qr.weights), 20) / P
            out.append(
                dict(
                    label=label,
                    K=K,
                    gen_ns=t_gen * 1e9,
                    np_ns=t_np * 1e9,
                    ratio=t_gen / t_np,
                    agree=float(np.max(np.abs(dy - ref)) / np.max(np.abs(ref))),
                )
            )
    return out


def bench_step_ratio(Ks=(2, 4, 8, 10)):
    """µs per Euler step of odeflow's loop (through the kernel protocol, as solve runs it)
    and of the naive closed-form baseline, BP erf."""
    from odeflow import solvers as S
    from theory.codegen import build_system

    out = []
    for K in Ks:
        st = _state(K, K)
        system = build_system("bp", K, K)
        eta, dt = 0.5, 1e-3
        p = system.params(st, eta, eta, 0.0)
        y0 = system.layout.pack(st)
        ns = {2: 4000, 4: 400}.get(K, 20)  # a few ms per run
        kern = S.KERNELS["euler"]
        opts = S.make_opts(dt * ns, dt, 1.0, None, 1e4, 1e-9, 1 << 62, system.layout.nQ, K, st.T)
        rec = np.array([0.0, dt * ns])

        def run():
            fs, ist, work = S.new_state(len(y0))
            y = y0.copy()
            rec_y, rec_eg = np.zeros((2, len(y0))), np.zeros(2)
            kern(system.rhs, system.eg, p, y, rec, rec_y, rec_eg, fs, ist, work, opts, 1 << 40)

        def base():
            baseline_euler(y0.copy(), st.T, st.v_star, eta, eta, 0.0, K, K, dt, ns)

        run()
        base()
        t_k, t_b = _best_short(run) / ns, _best_short(base) / ns
        out.append(dict(K=K, step_us=t_k * 1e6, naive_us=t_b * 1e6, ratio=t_k / t_b))
    return out


def print_speed(rn, rs):
    print("(7) per-node cost of the generated quadrature rhs vs NumPy at the same 2^13 nodes")
    for r in rn:
        ok = "OK" if r["ratio"] <= 1.5 else "MISSED"
        print(
            f"    {r['label']:6s} K = M = {r['K']}: generated {r['gen_ns']:7.1f} ns/node, "
            f"NumPy {r['np_ns']:7.1f} ns/node, ratio {r['ratio']:5.2f} (target ≤ 1.5: {ok}; "
            f"agree to {r['agree']:.0e})"
        )
    print("    one Euler step of odeflow's loop vs the naive closed-form baseline (BP erf)")
    for r in rs:
        tgt = f" (target ≤ 0.6: {'OK' if r['ratio'] <= 0.6 else 'MISSED'})" if r["K"] == 2 else ""
        print(
            f"    K = M = {r['K']:2d}: loop {r['step_us']:9.3f} µs/step, naive "
            f"{r['naive_us']:9.3f} µs/step, ratio {r['ratio']:.3f}{tgt}"
        )
    print()
