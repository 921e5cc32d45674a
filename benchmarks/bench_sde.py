"""Benchmark of the finite-N SDE (odeflow.solve_sde with N, issue 24), measured in one run.

    python benchmarks/bench_sde.py [--paths 32] [--alpha 20] [--dt 0.01]

BP, erf, K = M = 2, η = η_v = 1, from w, w* ~ N(0, I), v ~ 0.1 N(0, 1), α = 0 → 20, after
compilation, one thread:

* the ODE: ``odeflow.solve`` with dopri5 (the default) and with Euler at the SDE's dt;
* the SDE per path (total / n_paths) with Σ refactored every step (``noise_every=1``),
  every 5 steps (Δα = 0.05 at dt = 0.01, the fixed default of earlier versions), with the
  adaptive refresh (``noise_every=None``, the default; the mean number of Σ evaluations per
  path is printed), the same with the O(1/N) drift (``drift_correction=True``: one more
  drift per step, one more quadrature per refresh) and every 20 steps; the AFA-only
  feedback noise for reference (rule afa, no N), and AFA at N = 500 (σ_F = 0.3) with the
  default refresh against AFA's ODE;
* one evaluation of Σ(y) (the default Sobol-1024 rule) and of the drift.

Target (issue 24): SDE cost per path ≤ 20× the ODE's, at the default settings. The ratio
is printed against both ODE timings; with a fixed interval the cost of a path is dominated
by Σ(y) (a quadrature over 1024 nodes) and scales with ``1/noise_every``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def _state(afa=False):
    from theory.state import OrderParameters

    rng = np.random.default_rng(0)
    K = M = 2
    N = 1000
    w = rng.standard_normal((K, N))
    ws = rng.standard_normal((M, N))
    kw = dict(
        Q=w @ w.T / N,
        R=w @ ws.T / N,
        T=ws @ ws.T / N,
        v=0.1 * rng.standard_normal(K),
        v_star=np.ones(M),
    )
    if afa:
        F = 0.3 * rng.standard_normal(N)
        kw.update(b=w @ F / np.sqrt(N), c=ws @ F / np.sqrt(N), sigma_F2=float(F @ F / N))
    return OrderParameters(**kw)


def _best(fn, reps=3):
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=20.0)
    ap.add_argument("--dt", type=float, default=0.01)
    args = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import numba

    numba.set_num_threads(1)
    import odeflow
    from theory.covariance import build_covariance

    st = _state()
    A, P, dt = args.alpha, args.paths, args.dt
    rec = {"every": 1.0}
    ode = lambda m, **k: odeflow.solve("bp", st, eta=1.0, alpha_max=A, method=m, record=rec, **k)  # noqa: E731
    ode("dopri5")
    ode("euler", dt=dt)

    def sde(every, rule="bp", state=st, N=500, corr=False):
        kw = dict(N=N, noise_every=every, drift_correction=corr) if N else {}
        return odeflow.solve_sde(
            rule, state, eta=1.0, alpha_max=A, dt=dt, n_paths=P, seed=1, record=rec, **kw
        )

    # the machine is shared and its load drifts: each SDE timing is bracketed by ODE
    # timings (best of each, interleaved), and the ratio uses those
    for every, corr in ((1, False), (5, False), (None, False), (None, True), (20, False)):
        r = sde(every, corr=corr)
        t_dopri = t_euler = t = np.inf
        for _ in range(2):
            t_dopri = min(t_dopri, _best(lambda: ode("dopri5")))
            t_euler = min(t_euler, _best(lambda: ode("euler", dt=dt)))
            t = min(t, _best(lambda e=every, c=corr: sde(e, corr=c), reps=1) / P)
        label = f"noise_every={every:<3}" if every else "adaptive (default)"
        label += " + O(1/N) drift" if corr else ""
        label += f" {r.params['noise_evaluations']:6.0f} Σ/path"
        print(
            f"SDE bp N=500 {label}: {t * 1e3:8.2f} ms per path = "
            f"{t / t_dopri:6.1f}× dopri5 ({t_dopri * 1e3:.2f} ms), {t / t_euler:6.1f}× euler "
            f"dt={dt:g} ({t_euler * 1e3:.2f} ms) (target ≤ 20×)",
            flush=True,
        )
    sa = _state(afa=True)
    sde(1, "afa", sa, None)
    t = _best(lambda: sde(1, "afa", sa, None), reps=2) / P
    print(
        f"SDE afa, feedback noise only (no N): {t * 1e3:8.2f} ms per path = "
        f"{t / t_dopri:6.1f}× dopri5 (bp's)"
    )
    # AFA at finite N (σ_F = 0.3: b's noise is O(1), Σ moves with it) against AFA's own ODE
    ode_afa = lambda: odeflow.solve("afa", sa, eta=1.0, alpha_max=A, record=rec)  # noqa: E731
    ode_afa()
    r = sde(None, "afa", sa)
    t_da = t = np.inf
    for _ in range(2):
        t_da = min(t_da, _best(ode_afa))
        t = min(t, _best(lambda: sde(None, "afa", sa), reps=1) / P)
    print(
        f"SDE afa N=500 adaptive (default) {r.params['noise_evaluations']:6.0f} Σ/path: "
        f"{t * 1e3:8.2f} ms per path = {t / t_da:6.1f}× dopri5 ({t_da * 1e3:.2f} ms) "
        "(target ≤ 20×)"
    )

    cs = build_covariance("bp", 2, 2)
    pc = cs.params(st, 1.0, 1.0, 0.0, N=500)
    y = cs.layout.pack(st)
    S = np.empty((y.size, y.size))
    sysd = odeflow.get_system("bp", 2, 2)
    p = sysd.params(st, 1.0, 1.0, 0.0)
    dy = np.empty_like(y)
    n = 200
    t_cov = _best(lambda: [cs.cov(y, pc, S) for _ in range(n)]) / n
    t_rhs = _best(lambda: [sysd.rhs(y, p, dy) for _ in range(n * 10)]) / (n * 10)
    print(
        f"one Σ(y) (Sobol 1024 nodes): {t_cov * 1e6:.1f} µs; one drift (closed form): "
        f"{t_rhs * 1e6:.2f} µs"
    )


if __name__ == "__main__":
    main()
