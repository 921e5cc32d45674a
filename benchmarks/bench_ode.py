"""Benchmarks of the order-parameter integrator (odeflow), measured in one run.

    python benchmarks/bench_ode.py            # all four
    python benchmarks/bench_ode.py --skip-cold
    python benchmarks/bench_ode.py --quadrature-only   # (5) only
    python benchmarks/bench_ode.py --engine-only       # (6) only
    python benchmarks/bench_ode.py --speed-only        # (7) only

(1) K = M = 8, erf, BP: one Euler step with the generated rhs vs a straightforward njit
    baseline that loops over every (i, k, a, b) tuple (i, k students, a, b over the K + M
    units) and evaluates the closed-form I4 of docs/theory.md §4 for each (target: ours ≤ 1/4).
(2) K = M = 2: a whole α = 0 → 10⁴ Euler integration at dt = 0.01 with odeflow.solve, after
    compilation (target < 1 s).
(3) scipy.integrate.solve_ivp (RK45) on the NumPy right-hand side theory.reference.rhs vs
    odeflow's dopri5 at equal rtol/atol (target ≥ 50× faster).
(4) Derive + compile time vs run time, and cache hits: second build_system call in the same
    process, and a fresh process when the on-disk caches exist (measured in subprocesses
    with empty ODEFLOW_CACHE_DIR and NUMBA_CACHE_DIR).
(5) The quadrature backend (theory.codegen_quad): time per right-hand-side evaluation of
    exact PEPITA and of BP (forced quadrature) at K = M = 2 and 4 with the default rule,
    against the closed-form BP rhs measured in the same run (the baseline), the marginal
    Gauss–Hermite scheme (BP, n = 24 default and n = 16) with its error against the closed
    form, and the whole α = 0 → 20 exact-PEPITA integration at K = M = 2 (dopri5; target
    < 10 s).
(6) The tableau-driven Runge–Kutta engine (odeflow.rk) against the hand-unrolled euler,
    rk4 and dopri5 kernels of the previous commit (BASELINE_COMMIT, loaded with git show),
    BP erf at K = M = 2 and 8, same run, through the kernel protocol (target: new/old ≤
    1.10), the new tables tsit5 and bs3 beside them, and the compile time of every loop on
    a cold numba cache (target: no worse; skipped with --skip-cold).
(7) Issue 23, in one run: the per-node cost of the generated quadrature right-hand side
    against a NumPy implementation at the same Sobol nodes (benchmarks/quad_numpy.py,
    vectorised over the nodes) for tanh (BP), relu (BP) and exact PEPITA (erf), K = M = 2
    and 4 (target ≤ 1.5×); and the cost of one Euler step of odeflow's integration loop (the
    kernel as solve runs it: rhs, checks, bookkeeping) against the naive closed-form
    baseline of (1) (nn2pp's way: every (i, k, a, b) tuple), K = M = 2, 4, 8, 10 (target
    ≤ 0.6 at K = M = 2). BLAS runs on one thread here (as numba's loops do), so the NumPy
    side is not slowed by idle BLAS threads competing for the same cores.
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # before numpy: see (7)

import numpy as np  # noqa: E402
from naive_baseline import baseline_euler, baseline_rhs  # noqa: E402
from numba import njit  # noqa: E402


@njit
def generated_euler(rhs, y, p, dt, nsteps):
    dy = np.empty_like(y)
    for _ in range(nsteps):
        rhs(y, p, dy)
        for j in range(y.shape[0]):
            y[j] += dt * dy[j]


def _best(f, repeat=5):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _state(K, M, seed=0, N=2000):
    from theory.state import OrderParameters

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(K, N))
    ws = rng.normal(size=(M, N))
    return OrderParameters.from_weights(w, ws, 0.3 * rng.normal(size=K), np.ones(M))


def bench_step_cost(K=8, M=8, nsteps=2000):
    import odeflow
    from theory.codegen import build_system

    st = _state(K, M)
    t = time.perf_counter()
    system = build_system("bp", K, M)
    t_build = time.perf_counter() - t
    eta, eta_v, dt = 0.5, 0.5, 1e-3
    p = system.params(st, eta, eta_v, 0.0)
    y0 = system.layout.pack(st)
    # the two right-hand sides agree
    dy_gen = np.empty_like(y0)
    system.rhs(y0, p, dy_gen)
    dy_base = np.empty_like(y0)
    baseline_rhs(
        y0,
        st.T,
        st.v_star,
        eta,
        eta_v,
        0.0,
        K,
        M,
        np.empty((K + M, K + M)),
        np.empty(K + M),
        dy_base,
    )
    agree = float(np.max(np.abs(dy_gen - dy_base)))
    generated_euler(system.rhs, y0.copy(), p, dt, 2)
    baseline_euler(y0.copy(), st.T, st.v_star, eta, eta_v, 0.0, K, M, dt, 2)
    t_gen = _best(lambda: generated_euler(system.rhs, y0.copy(), p, dt, nsteps)) / nsteps
    nb = max(nsteps // 10, 50)
    t_base = (
        _best(
            lambda: baseline_euler(y0.copy(), st.T, st.v_star, eta, eta_v, 0.0, K, M, dt, nb),
            repeat=3,
        )
        / nb
    )
    # odeflow's own Euler loop (with the per-step stop checks: ε_g, covariance Cholesky)
    odeflow.solve(system, st, eta=eta, alpha_max=dt * 10, method="euler", dt=dt)
    t = time.perf_counter()
    r = odeflow.solve(
        system,
        st,
        eta=eta,
        alpha_max=dt * nsteps,
        method="euler",
        dt=dt,
        record={"alpha": [0.0, dt * nsteps]},
    )
    t_solve = (time.perf_counter() - t) / r.n_steps
    return dict(
        K=K,
        M=M,
        build_s=t_build,
        max_abs_diff=agree,
        generated_step_us=t_gen * 1e6,
        baseline_step_us=t_base * 1e6,
        solve_step_us=t_solve * 1e6,
        ratio=t_gen / t_base,
        ratio_solve=t_solve / t_base,
    )


def bench_long_euler():
    import odeflow

    st = _state(2, 2)
    odeflow.solve("bp", st, eta=0.5, alpha_max=1.0, method="euler", dt=0.01)  # compile
    t = time.perf_counter()
    r = odeflow.solve("bp", st, eta=0.5, alpha_max=1e4, method="euler", dt=0.01)
    wall = time.perf_counter() - t
    return dict(wall_s=wall, n_steps=r.n_steps, status=r.message, eg_final=float(r.eg[-1]))


def bench_scipy(alpha_max=100.0, rtol=1e-6, atol=1e-9):
    from scipy.integrate import solve_ivp

    import odeflow
    from theory import reference
    from theory.codegen import build_system

    st = _state(2, 2)
    system = build_system("bp", 2, 2)
    lay = system.layout
    eta = 0.5

    def fun(t, y):
        d = reference.rhs(lay.state(y, st), "bp", eta, eta, 0.0, "erf")
        iu = np.triu_indices(2)
        return np.concatenate([d["Q"][iu], d["R"].ravel(), d["v"]])

    y0 = lay.pack(st)
    # sanity: the reference and the generated rhs agree
    dy = np.empty_like(y0)
    system.rhs(y0, system.params(st, eta, eta, 0.0), dy)
    agree = float(np.max(np.abs(fun(0.0, y0) - dy)))
    t = time.perf_counter()
    sol = solve_ivp(fun, (0.0, alpha_max), y0, method="RK45", rtol=rtol, atol=atol)
    t_scipy = time.perf_counter() - t
    odeflow.solve(system, st, eta=eta, alpha_max=1.0)  # compile
    t_ours = _best(
        lambda: odeflow.solve(
            system,
            st,
            eta=eta,
            alpha_max=alpha_max,
            rtol=rtol,
            atol=atol,
            record={"alpha": [0.0, alpha_max]},
        )
    )
    r = odeflow.solve(
        system,
        st,
        eta=eta,
        alpha_max=alpha_max,
        rtol=rtol,
        atol=atol,
        record={"alpha": [0.0, alpha_max]},
    )
    return dict(
        alpha_max=alpha_max,
        rtol=rtol,
        atol=atol,
        rhs_agree=agree,
        scipy_s=t_scipy,
        scipy_nfev=int(sol.nfev),
        ours_s=t_ours,
        ours_nfev=r.nfev,
        final_diff=float(np.max(np.abs(sol.y[:, -1] - lay.pack(r.final)))),
        speedup=t_scipy / t_ours,
    )


# ------------------------------------------------------------------------ (4) caches
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import odeflow
t_import = time.perf_counter() - t0
from theory.codegen import build_system
from theory.state import OrderParameters
out = {"import_odeflow_s": t_import}
for K in KS:
    t = time.perf_counter(); s = build_system("bp", K, K); tb = time.perf_counter() - t
    t = time.perf_counter(); build_system("bp", K, K); t2 = time.perf_counter() - t
    st = OrderParameters.from_spec(K, K, R=0.01, v=0.1)
    t = time.perf_counter()
    odeflow.solve(s, st, eta=0.5, alpha_max=10.0)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    odeflow.solve(s, st, eta=0.5, alpha_max=10.0)
    t_run = time.perf_counter() - t
    out[f"K{K}"] = dict(build_s=tb, timings={k: v for k, v in s.timings.items()},
                        second_build_s=t2, first_solve_s=t_first, run_s=t_run)
print("JSON" + json.dumps(out))
"""


def bench_cold_warm(Ks=(2, 8)):
    with tempfile.TemporaryDirectory() as d:
        env = {
            **os.environ,
            "ODEFLOW_CACHE_DIR": os.path.join(d, "gen"),
            "NUMBA_CACHE_DIR": os.path.join(d, "numba"),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        code = _CHILD.replace("KS", repr(tuple(Ks)))
        res = []
        for _ in range(2):
            t = time.perf_counter()
            p = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=d
            )
            wall = time.perf_counter() - t
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("JSON")][-1]
            r = json.loads(line[4:])
            r["process_wall_s"] = wall
            res.append(r)
        return {"cold": res[0], "warm": res[1]}


# ------------------------------------------------------------------- (5) quadrature
def _pepita_state(K, M, sigma_F=0.03, N=1000, seed=0):
    from theory.state import OrderParameters

    rng = np.random.default_rng(seed)
    w, ws = rng.normal(size=(K, N)), rng.normal(size=(M, N))
    return OrderParameters.from_weights(
        w, ws, 0.1 * rng.normal(size=K), np.ones(M), F=sigma_F * rng.normal(size=N)
    )


def bench_quadrature(Ks=(2, 4)):
    import odeflow
    from theory.codegen import build_system

    out = {}
    for K in Ks:
        st = _pepita_state(K, K)
        row = {}
        closed = build_system("bp", K, K)
        p = closed.params(st, 1.0, 1.0, 0.0)
        y = closed.layout.pack(st)
        dy = np.empty_like(y)
        closed.rhs(y, p, dy)
        n = 200
        row["closed_bp_us"] = _best(lambda: [closed.rhs(y, p, dy) for _ in range(n)]) / n * 1e6
        ref = dy.copy()  # the closed-form BP rhs: accuracy oracle
        for name, rule, q in (
            ("quad_bp", "bp", True),
            ("pepita", "pepita", None),
            ("marg_bp", "bp", "marginal"),
            ("marg16_bp", "bp", {"scheme": "marginal", "n": 16}),
        ):
            s = build_system(rule, K, K, quadrature=q)
            p = s.params(st, 1.0, 1.0, 0.0)
            y = s.layout.pack(st)
            dy = np.empty_like(y)
            s.rhs(y, p, dy)
            reps = 5 if K == 2 or not name.startswith("marg") else 1
            row[name + "_ms"] = (
                _best(lambda: [s.rhs(y, p, dy) for _ in range(reps)], repeat=3) / reps * 1e3
            )
            row[name + "_rule"] = s.describe_rule(0.0)
            if rule == "bp":
                row[name + "_err"] = float(np.max(np.abs(dy - ref)) / np.max(np.abs(ref)))
        out[K] = row
    st = _pepita_state(2, 2)
    odeflow.solve("pepita", st, eta=1.0, alpha_max=0.1)  # compile the loop
    t = time.perf_counter()
    r = odeflow.solve("pepita", st, eta=1.0, alpha_max=20.0, record={"every": 1.0})
    out["pepita_run"] = dict(
        wall_s=time.perf_counter() - t,
        nfev=r.nfev,
        n_steps=r.n_steps,
        message=r.message,
        eg_final=float(r.eg[-1]),
        error_final=r.quadrature["error_final"]["rhs_rel"],
    )
    return out


def _print_quadrature(r5):
    print("(5) quadrature backend: one right-hand-side evaluation (default rule)")
    for K in (2, 4):
        row = r5[K]
        print(
            f"    K = M = {K}: closed-form BP {row['closed_bp_us']:9.1f} µs | quadrature BP "
            f"{row['quad_bp_ms']:7.2f} ms | exact PEPITA {row['pepita_ms']:7.2f} ms "
            f"({row['pepita_rule']['scheme']}, {row['pepita_rule']['nodes']} nodes; "
            f"PEPITA/closed-form BP = {row['pepita_ms'] * 1e3 / row['closed_bp_us']:.0f}×)"
        )
    print(
        "    marginal Gauss–Hermite (theory.codegen_marginal), BP, against the closed-form "
        "rhs of the same state:"
    )
    for K in (2, 4):
        row = r5[K]
        for name in ("quad_bp", "marg16_bp", "marg_bp"):
            rl = row[name + "_rule"]
            ms = row[name + "_ms"]
            print(
                f"    K = M = {K}: {rl['scheme']:8s} n = {rl['n']:6d} ({rl['nodes']:9d} nodes) "
                f"{ms:8.2f} ms = {ms * 1e3 / row['closed_bp_us']:6.0f}× closed form, "
                f"relative error {row[name + '_err']:.1e}"
            )
    pr = r5["pepita_run"]
    print(
        f"    exact PEPITA K = M = 2, α = 0 → 20 (dopri5): {pr['wall_s']:.2f} s, "
        f"{pr['nfev']} rhs evaluations, {pr['n_steps']} steps (target < 10 s: "
        f"{'OK' if pr['wall_s'] < 10 else 'MISSED'}); quadrature error estimate at the end "
        f"{pr['error_final']:.1e} relative\n"
    )


# ------------------------------------------------------- (6) the RK engine vs baseline
#: the commit whose hand-unrolled kernels (euler_kernel, rk4_kernel, dopri5_kernel in
#: odeflow/solvers.py) are the speed baseline of the tableau-driven engine
BASELINE_COMMIT = "6d5b9d9"


def _baseline_solvers():
    """The previous commit's odeflow/solvers.py as a module (``git show``), written to a
    fixed temporary path so numba's disk cache of its loops is reused between runs."""
    import importlib.util

    src = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:odeflow/solvers.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    d = Path(tempfile.gettempdir()) / "odeflow_bench_baseline"
    d.mkdir(exist_ok=True)
    path = d / f"solvers_{BASELINE_COMMIT}.py"
    if not path.exists() or path.read_text() != src:
        path.write_text(src)
    name = f"_odeflow_solvers_{BASELINE_COMMIT}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _kernel_run(mod, kernel, system, p, y0, T, alpha_max, step, adaptive):
    """One whole integration through the kernel protocol (records at 0 and alpha_max)."""
    lay = system.layout
    opts = mod.make_opts(
        alpha_max, step, 1e-9 if adaptive else 1.0, None, 1e6, 1e-9, 1 << 40, lay.nQ, lay.K, T
    )
    fs, ist, work = mod.new_state(len(y0))
    rec = np.array([0.0, alpha_max])
    y = y0.copy()
    rec_y = np.zeros((2, len(y0)))
    rec_eg = np.zeros(2)
    kernel(system.rhs, system.eg, p, y, rec, rec_y, rec_eg, fs, ist, work, opts, 1 << 40)
    return y, int(ist[mod.I_NSTEPS]), int(ist[mod.I_NFEV]), int(ist[mod.I_CODE])


def bench_engine(Ks=(2, 8), repeat=7):
    """CPU seconds per integration: the tableau engine against the baseline kernels, same
    system, same protocol, interleaved repeats (best of ``repeat``). CPU time of this
    process (``time.process_time``), not wall time: on a machine shared with other jobs
    the wall time of a 5 ms run varies by a factor 3, its CPU time by a few per cent."""
    from odeflow import solvers as new
    from theory.codegen import build_system

    old = _baseline_solvers()
    out = {}
    for K in Ks:
        st = _state(K, K)
        system = build_system("bp", K, K)
        p = np.ascontiguousarray(system.params(st, 0.5, 0.5, 0.0))
        y0 = np.ascontiguousarray(system.layout.pack(st))
        # sized so that one run takes ~0.02–0.2 s at either K (shorter runs are at the mercy
        # of the other processes on a shared machine)
        amax = 200.0 if K == 2 else 10.0
        cases = [
            ("euler", 1e-3 if K == 2 else 1e-2, False),
            ("rk4", 4e-3 if K == 2 else 4e-2, False),
            ("dopri5", 1e-10, True),
            ("tsit5", 1e-10, True),
            ("bs3", 1e-7, True),
        ]
        for method, step, adaptive in cases:
            amax_m = amax * 10 if adaptive else amax
            kn = new.KERNELS[method]
            ko = getattr(old, f"{method}_kernel", None)
            args = (system, p, y0, st.T, amax_m, step, adaptive)
            yn, nn, fn, cn = _kernel_run(new, kn, *args)  # compile / load
            row = dict(steps=nn, nfev=fn, code=cn)
            tn, to = [], []
            if ko is not None:
                yo, no, _, _ = _kernel_run(old, ko, *args)
                row.update(old_steps=no, max_diff=float(np.max(np.abs(yn - yo))))
            for _ in range(repeat):
                t = time.process_time()
                _kernel_run(new, kn, *args)
                tn.append(time.process_time() - t)
                if ko is not None:
                    t = time.process_time()
                    _kernel_run(old, ko, *args)
                    to.append(time.process_time() - t)
            row["new_s"] = min(tn)
            if to:
                row["old_s"] = min(to)
                row["ratio"] = row["new_s"] / row["old_s"]
            out[(K, method)] = row
    return out


def _print_engine(r6):
    print(
        f"(6) the tableau-driven RK engine (odeflow.rk) vs the hand-unrolled kernels of "
        f"commit {BASELINE_COMMIT}, BP erf, same run (CPU time, best of 7, interleaved)"
    )
    for (K, method), row in r6.items():
        line = (
            f"    K = M = {K} {method:7s} {row['steps']:7d} steps {row['nfev']:8d} rhs "
            f"new {row['new_s'] * 1e3:8.2f} ms"
        )
        if "old_s" in row:
            ok = "OK" if row["ratio"] <= 1.10 else "SLOWER"
            line += (
                f" | old {row['old_s'] * 1e3:8.2f} ms | new/old = {row['ratio']:.3f} "
                f"(target ≤ 1.10: {ok}); final states differ by {row['max_diff']:.1e}"
            )
        else:
            line += " (new method, no baseline)"
        print(line)
    print()


_COMPILE_CHILD = r"""
import json, sys, time
sys.path.insert(0, BENCH)
from numba import njit
njit(lambda x: x + 1)(1)                  # numba's own start-up, not charged to a loop
import bench_ode
from odeflow import solvers as new
mod = new if SIDE == "new" else bench_ode._baseline_solvers()
out = {}
for method in ("euler", "rk4", "dopri5", "tsit5", "bs3"):
    k = mod.KERNELS.get(method)
    if k is not None:
        t = time.process_time(); k.dispatcher(); out[method] = time.process_time() - t
print("JSON" + json.dumps(out))
"""


def bench_engine_compile():
    """Compile time of every loop on a cold numba cache (a fresh process with an empty
    NUMBA_CACHE_DIR per side, the loops compiled in the same order), new engine against the
    baseline kernels; then the warm load from that cache. CPU seconds of the process
    (``time.process_time``): on a shared machine the wall time of a compilation varies by
    a factor 2 between identical runs, its CPU time by ~10 %."""
    out = {}
    for side in ("old", "new"):
        with tempfile.TemporaryDirectory() as d:
            env = {
                **os.environ,
                "NUMBA_CACHE_DIR": os.path.join(d, "numba"),
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
            code = _COMPILE_CHILD.replace("BENCH", repr(str(REPO / "benchmarks"))).replace(
                "SIDE", repr(side)
            )
            for which in ("cold", "warm"):
                p = subprocess.run(
                    [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=d
                )
                if p.returncode != 0:
                    raise RuntimeError(p.stderr)
                r = json.loads(
                    [ln for ln in p.stdout.splitlines() if ln.startswith("JSON")][-1][4:]
                )
                for m, t in r.items():
                    out[f"{which}_{side}_{m}"] = t
    return out


def _print_engine_compile(rc):
    print(
        "    compile time (CPU s) of each loop on a cold numba cache (fresh process) / load "
        "when cached:"
    )
    base = ("euler", "rk4", "dopri5")
    for m in base + ("tsit5", "bs3"):
        line = f"      {m:7s} new {rc['cold_new_' + m]:6.2f} s / {rc['warm_new_' + m]:5.2f} s"
        if "cold_old_" + m in rc:
            line += f" | old {rc['cold_old_' + m]:6.2f} s / {rc['warm_old_' + m]:5.2f} s"
        print(line)
    tot_new = sum(rc[f"cold_new_{m}"] for m in base)
    tot_old = sum(rc[f"cold_old_{m}"] for m in base)
    print(
        f"      euler + rk4 + dopri5, cold: new {tot_new:.2f} s, old {tot_old:.2f} s, "
        f"new/old = {tot_new / tot_old:.2f} (target ≤ 1: "
        f"{'OK' if tot_new <= tot_old * 1.05 else 'SLOWER'})\n"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--skip-cold",
        action="store_true",
        help="skip (4), the fresh-process compile/cache measurements",
    )
    ap.add_argument("--K", type=int, default=8, help="K = M for benchmark (1)")
    ap.add_argument(
        "--quadrature-only", action="store_true", help="run only (5), the quadrature backend"
    )
    ap.add_argument(
        "--speed-only",
        action="store_true",
        help="run only (7), the per-node and per-step ratios of issue 23",
    )
    ap.add_argument(
        "--engine-only",
        action="store_true",
        help="run only (6), the RK engine against the previous commit's kernels",
    )
    args = ap.parse_args(argv)

    import bench_speed as speed

    print("odeflow benchmarks (one run; times are best of several repeats)\n")
    if args.quadrature_only:
        _print_quadrature(bench_quadrature())
        return
    if args.speed_only:
        speed.print_speed(speed.bench_per_node(), speed.bench_step_ratio())
        return
    if args.engine_only:
        _print_engine(bench_engine())
        if not args.skip_cold:
            _print_engine_compile(bench_engine_compile())
        return
    r1 = bench_step_cost(args.K, args.K)
    print(f"(1) one Euler step, BP erf K = M = {r1['K']} (rhs agree to {r1['max_abs_diff']:.1e})")
    print(f"    generated rhs        {r1['generated_step_us']:10.2f} µs/step")
    print(f"    naive (i,k,a,b) loop {r1['baseline_step_us']:10.2f} µs/step")
    print(f"    odeflow.solve euler  {r1['solve_step_us']:10.2f} µs/step (incl. stop checks)")
    print(
        f"    ratio generated/naive = {r1['ratio']:.3f}  (target ≤ 0.25: "
        f"{'OK' if r1['ratio'] <= 0.25 else 'MISSED'}); solve/naive = "
        f"{r1['ratio_solve']:.3f}\n"
    )

    r2 = bench_long_euler()
    print(
        f"(2) K = M = 2 BP, α = 0 → 10⁴, Euler dt = 0.01: {r2['wall_s']:.3f} s for "
        f"{r2['n_steps']} steps (target < 1 s: {'OK' if r2['wall_s'] < 1 else 'MISSED'})\n"
    )

    r3 = bench_scipy()
    print(
        f"(3) K = M = 2 BP, α = 0 → {r3['alpha_max']:g}, rtol = {r3['rtol']:g}, "
        f"atol = {r3['atol']:g} (reference vs generated rhs agree to {r3['rhs_agree']:.1e})"
    )
    print(
        f"    scipy solve_ivp RK45 + theory.reference: {r3['scipy_s']:8.3f} s, "
        f"{r3['scipy_nfev']} rhs evaluations"
    )
    print(
        f"    odeflow dopri5:                          {r3['ours_s']:8.4f} s, "
        f"{r3['ours_nfev']} rhs evaluations (final states differ by "
        f"{r3['final_diff']:.1e})"
    )
    print(
        f"    speed-up = {r3['speedup']:.0f}×  (target ≥ 50×: "
        f"{'OK' if r3['speedup'] >= 50 else 'MISSED'})\n"
    )

    _print_quadrature(bench_quadrature())
    speed.print_speed(speed.bench_per_node(), speed.bench_step_ratio())

    _print_engine(bench_engine())
    if not args.skip_cold:
        _print_engine_compile(bench_engine_compile())

    if not args.skip_cold:
        r4 = bench_cold_warm()
        print("(4) derive/compile vs run, and caches (fresh processes, empty caches first)")
        for which in ("cold", "warm"):
            r = r4[which]
            print(
                f"    {which:4s} process: import odeflow {r['import_odeflow_s']:6.2f} s "
                f"(compiles/loads the solver loops); process wall {r['process_wall_s']:.1f} s"
            )
            for K in (2, 8):
                k = r[f"K{K}"]
                tm = k["timings"]
                print(
                    f"      bp K=M={K}: build_system {k['build_s']:7.3f} s; second call "
                    f"{k['second_build_s'] * 1e6:.1f} µs; first solve "
                    f"{k['first_solve_s']:.3f} s; solve α = 0 → 10 {k['run_s'] * 1e3:.2f} ms"
                )
            tm = r["K2"]["timings"]
            print(
                f"      generated module (one per rule, serves every K, M): derive "
                f"{tm.get('derive', 0):.2f} s, codegen {tm.get('codegen', 0):.2f} s, "
                f"compile/load {tm.get('compile', 0):.2f} s (source cached: "
                f"{tm.get('source_cached')})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
