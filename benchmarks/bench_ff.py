"""Forward-Forward quadrature: seconds per right-hand side and accuracy against Monte Carlo,
old rule against new, in one run.

    python benchmarks/bench_ff.py [--mc 4e6] [--repeats 3] [--K 2 4 6]

At a state of a real learning curve for each K (K = 2: M = 1, θ = 2, α = 20, Q_kk ≈ 6.5;
K = 4 and 6: M = 2, θ = K/2, α = 15 — measured in online FF simulations, as in
tests/theory/test_ff_accuracy.py), with η = 1, η_u = 0.3:

* ``old``: tensor Gauss–Hermite over the student fields with the node counts of
  FF_CODEGEN_VERSION 3 (32 per field at K = 2, 18 at K = 4, 10 at K = 6);
* ``new``: the default rule (theory.ff.default_nodes: the split rule at K = 2, M = 1;
  2^15 scrambled Sobol points split at the label's jump beyond), and its error estimate.

Prints seconds per rhs (best of ``--repeats``), per ε_g evaluation, the largest absolute
difference of the drift from ``--mc`` Monte Carlo samples (theory/ff_mc.py) and the same in
Monte Carlo standard errors (z), and the ratio old/new of the rhs time. A rule is accurate
when its z stays ≲ 4 at every sample size; the old rule's z grows like √n.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "tests" / "theory"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import numpy as np  # noqa: E402
from test_ff_accuracy import K2_GROWN, K4, K6, _flat, _state  # noqa: E402

from theory.ff import build_ff_system  # noqa: E402
from theory.ff_mc import ff_monte_carlo  # noqa: E402

ETA, ETA_U = 1.0, 0.3
CASES = {2: K2_GROWN, 4: K4, 6: K6}
OLD = {
    2: {"split_lam": 0, "n_qmc": 0, "n_lam": 32, "n_eg": 48},
    4: {"split_lam": 0, "n_qmc": 0, "n_lam": 18},
    6: {"split_lam": 0, "n_qmc": 0, "n_lam": 10},
}


def _time(f, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mc", type=float, default=4e6, help="Monte Carlo samples per state")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--K", type=int, nargs="+", default=[2, 4, 6])
    a = ap.parse_args(argv)
    print(
        f"{'K':>2} {'rule':<4} {'s/rhs':>8} {'s/eg':>7} {'max|Δ|':>9} {'max z':>6} "
        f"{'ε_g−MC':>9} {'estimate':>9}"
    )
    warm = build_ff_system(2, 1, "erf")  # compile rhs and ε_g outside the timings
    st0 = _state(K2_GROWN)
    warm.eg(warm.layout.pack(st0), warm.params(st0, ETA, theta=2.0))
    for K in a.K:
        case = CASES[K]
        st = _state(case)
        th = case["theta"]
        mc = ff_monte_carlo(
            st.Q, st.R, st.T, st.u, st.v_star, theta=th, eta=ETA, eta_u=ETA_U, n=int(a.mc)
        )
        m = _flat(K, mc["dQ"], mc["dR"], mc["du"])
        se = _flat(K, mc["dQ_se"], mc["dR_se"], mc["du_se"])
        times = {}
        for name, nodes in (("old", OLD[K]), ("new", None)):
            s = build_ff_system(K, st.M, "erf", nodes=nodes)
            p = s.params(st, ETA, theta=th, eta_u=ETA_U)
            y = s.layout.pack(st)
            dy = np.empty_like(y)
            s.rhs(y, p, dy)  # compile
            t_rhs, _ = _time(lambda: s.rhs(y, p, dy), a.repeats)
            t_eg, eg = _time(lambda: s.eg(y, p), 1)
            times[name] = t_rhs
            est = ""
            if name == "new":
                e = s.error_estimate(st, ETA, theta=th, eta_u=ETA_U)
                est = f"{e['rhs_abs']:9.1e}"
            d = np.abs(dy - m)
            print(
                f"{K:>2} {name:<4} {t_rhs:8.3f} {t_eg:7.3f} {d.max():9.2e} "
                f"{(d / se).max():6.1f} {eg - mc['eg']:9.1e} {est}"
            )
        print(
            f"   rhs time old/new = {times['old'] / times['new']:.1f}  "
            f"(MC: {a.mc:.0e} samples, SE ≤ {se.max():.1e})"
        )


if __name__ == "__main__":
    main()
