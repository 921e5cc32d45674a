"""Benchmark of the deep-student ODEs (theory.deep), measured in one run.

    python benchmarks/bench_deep.py

(1) K1 = 4, K2 = 4, M = 2 (L = 3), erf, BP, FA, DFA and PEPITA from a random state,
    dopri5 with the default rule (scrambled Sobol, 2^15 points over the 6 fields) to
    α = 50 (target < 60 s each on 2 cores, after compilation), against the two-layer
    solve of the same K1, M and rule with the same quadrature backend (the committee's
    theory.codegen_quad, forced quadrature) in the same run: the time ratio.
(2) Time per right-hand-side evaluation, deep (L = 3) and two-layer (widths = [K1]: the
    same deep kernels) and the committee's quadrature kernels.
(3) Compile/load time of the generated deep module (first solve in this process).

Times are wall clock and CPU time of this process (``time.process_time``): the kernels are
single-threaded, so on an idle machine the two agree; on a shared machine the CPU time is
what the run costs. ``--rules bp`` runs (1) for a subset.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import odeflow  # noqa: E402
from theory.deep import build_deep_system  # noqa: E402
from theory.state import OrderParameters  # noqa: E402

K1, K2, M, ALPHA = 4, 4, 2, 50.0


def state(rule, seed=0):
    rng = np.random.default_rng(seed)
    N = 1000
    w = rng.standard_normal((K1, N))
    ws = rng.standard_normal((M, N))
    F = 0.03 * rng.standard_normal(N)
    st = OrderParameters.from_weights(w, ws, 0.1 * rng.standard_normal(K2), np.ones(M), F=F)
    st = st.replace(
        W=[rng.standard_normal((K2, K1)) / np.sqrt(K1)],
        v=0.1 * rng.standard_normal(K2),
    )
    if rule == "fa":
        st = st.replace(b=rng.standard_normal(K2), B=[rng.standard_normal((K1, K2))])
    elif rule == "dfa":
        st = st.replace(b=None, c=None, d=[rng.standard_normal(K1), rng.standard_normal(K2)])
    return st


def two_layer(st, rule):
    b = st.b if rule in ("afa", "pepita") else (np.ones(K1) if rule in ("fa", "dfa") else None)
    return OrderParameters(
        Q=st.Q, R=st.R, T=st.T, v=0.1 * np.ones(K1), v_star=st.v_star, b=b, c=st.c,
        sigma_F2=st.sigma_F2, F_norm2=st.F_norm2,
    )  # fmt: skip


def rhs_time(system, st, **kw):
    p = system.params(st, 1.0, **kw)
    y = system.layout.pack(st)
    dy = np.empty_like(y)
    system.rhs(y, p, dy)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        system.rhs(y, p, dy)
        n += 1
    return (time.perf_counter() - t0) / n


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default="bp,fa,dfa,pepita")
    ap.add_argument("--skip-rhs", action="store_true", help="skip (2)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    st = state("bp")
    odeflow.solve("bp", st, eta=1.0, alpha_max=0.1, record=[0.0, 0.1])
    print(f"(3) first deep solve in this process (generate/load + compile): "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    print(f"(1) K1 = {K1}, K2 = {K2}, M = {M} (L = 3), dopri5 to alpha = {ALPHA:g}")
    for rule in args.rules.split(","):
        st = state(rule)
        res, t_deep, c_deep = timed(
            lambda: odeflow.solve(rule, st, eta=1.0, alpha_max=ALPHA, record={"every": 5.0})
        )
        two_rule = "fa" if rule == "dfa" else rule
        st2 = two_layer(st, two_rule)
        odeflow.solve(two_rule, st2, eta=1.0, alpha_max=0.1, quadrature="auto")  # compile
        r2, t_two, c_two = timed(
            lambda: odeflow.solve(
                two_rule, st2, eta=1.0, alpha_max=ALPHA, quadrature="auto", record={"every": 5.0}
            )  # fmt: skip
        )
        print(
            f"    {rule:8s} deep {t_deep:6.1f} s wall, {c_deep:6.1f} s CPU ({res.n_steps} steps, "
            f"eg {res.eg[-1]:.4f}, {'OK' if c_deep < 60 else 'OVER 60 s'}) | two-layer "
            f"{two_rule} {t_two:5.1f} s wall, {c_two:5.1f} s CPU ({r2.n_steps} steps) | "
            f"ratio (CPU) {c_deep / c_two:.2f}"
        )
    if args.skip_rhs:
        return
    print("(2) time per rhs evaluation (default Sobol rule)")
    from theory.codegen_quad import build_quad_system

    for rule in ("bp", "pepita"):
        st = state(rule)
        deep = build_deep_system(rule, [K1, K2], M)
        flat = build_deep_system(rule, [K1], M)
        comm = build_quad_system(rule, K1, M, "erf", "auto")
        st2 = two_layer(st, rule)
        td, tf, tc = rhs_time(deep, st), rhs_time(flat, st2.replace(W=[])), rhs_time(comm, st2)
        print(
            f"    {rule:8s} deep L=3 {td * 1e3:7.2f} ms | deep L=2 {tf * 1e3:7.2f} ms | "
            f"committee quadrature {tc * 1e3:7.2f} ms | L=3 / committee {td / tc:.2f}"
        )


if __name__ == "__main__":
    main()
