"""Cost of relu's exact moments (the marginal scheme for relu, theory.relu_kernels) against
scrambled Sobol, per right-hand side, BP at K = 2, 3, 4, 6, 8 and M = 2, in one run
(docs/quadrature.md, "ReLU: exact moments").

    python benchmarks/bench_relu_exact.py [--repeat 2]

For each K: ms per ``rhs`` call (best of 3 batches) of the exact moments with n = 8 and 24
Gauss–Legendre nodes and of Sobol with 2^14 and 2^16 points, at one state (random
w, w* with N = 60), the ratio exact(n = 8) / Sobol 2^14, the Sobol-node equivalents
``theory.tolerance.relu_cost`` assigns (the cost ``auto`` compares with its budget), and
the largest difference between the exact moments and Sobol 2^16 relative to the rhs scale
(Sobol's own error, ~1e-4). Repeated ``--repeat`` times: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from theory.codegen import build_system
from theory.quadrature import make_rule
from theory.state import OrderParameters
from theory.tolerance import relu_cost


def _time(system, st, qr, rep):
    p = system.params(st, 0.8, 0.5, 0.0, qrule=qr)
    y = system.layout.pack(st)
    dy = np.empty_like(y)
    system.rhs(y, p, dy)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(rep):
            system.rhs(y, p, dy)
        best = min(best, (time.perf_counter() - t) / rep)
    return best * 1e3, dy.copy()


def run(Ks=(2, 3, 4, 6, 8), M=2):
    print("K  exact8  exact24  sobol14  sobol16  exact8/sobol14  relu_cost(8)  |exact-sobol16|")
    for K in Ks:
        rng = np.random.default_rng(K)
        w, ws = rng.normal(size=(K, 60)), rng.normal(size=(M, 60))
        st = OrderParameters.from_weights(w, ws, 0.3 * rng.normal(size=K), np.ones(M))
        ex = build_system("bp", K, M, "relu", quadrature={"scheme": "marginal", "n": 8})
        so = build_system("bp", K, M, "relu", quadrature={"scheme": "sobol", "n": 1 << 14})
        t8, f8 = _time(ex, st, make_rule(K + M, "marginal", 8), 20)
        t24, _ = _time(ex, st, make_rule(K + M, "marginal", 24), 20)
        s14, _ = _time(so, st, make_rule(K + M, "sobol", 1 << 14), 5)
        s16, fs = _time(so, st, make_rule(K + M, "sobol", 1 << 16), 3)
        err = np.max(np.abs(f8 - fs)) / np.max(np.abs(f8))
        print(
            f"{K}  {t8:6.2f}  {t24:7.2f}  {s14:7.2f}  {s16:7.2f}  {t8 / s14:14.2f}  "
            f"{relu_cost(K, M, False, 8):12d}  {err:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    for i in range(args.repeat):
        print(f"run {i + 1}")
        run()
