"""Running one point of a sweep: the run, its summary row, and the kernels' warm-up.

:func:`run_point` is what every executor (local processes, threads, Dask) calls for one
point; it never raises for a failing point. :func:`warm_up` loads the compiled kernels a
sweep needs once per worker, so that points pay their integration only
(:mod:`odeflow.sweep`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .sweep_spec import Sweep, _canon, _is_num

__all__ = ["run_point", "warm_up"]


# ================================================================ running one point
#: config keys that select which compiled kernels a point needs
_KERNEL_KEYS = ("rule", "activation", "method", "quadrature")


def _warm_specs(sw: Sweep) -> list:
    """One short run per distinct set of kernels of a sweep: ``(kind, config)`` with the
    config of the first point that needs them, cut to α = 10⁻³ (one path for ``sde``)."""
    if sw.kind == "simulate":
        return [("simulate", None)]
    out, seen = [], set()
    for p in sw.points:
        c = p.config
        init = c.get("init") if isinstance(c.get("init"), Mapping) else {}
        sig = json.dumps(
            _canon(
                [c.get(k) for k in _KERNEL_KEYS]
                + [len(init.get("v", [])), len(init.get("v_star", []))]
            )
        )
        if sig in seen:
            continue
        seen.add(sig)
        short = dict(c, alpha_max=1e-3, record={"alpha": [0.0, 1e-3]})
        if "dt" in c and _is_num(c["dt"]):
            short["dt"] = min(float(c["dt"]), 1e-4)
        if sw.kind == "sde":
            short["n_paths"] = 1
        out.append((sw.kind, short))
    return out


def warm_up(specs) -> None:
    """Load (compile, or read numba's cache) every kernel a sweep needs, in this process,
    by running each of ``specs`` (from :func:`_warm_specs`) for a moment.

    Run once per worker (as the process pool's initializer, or on every Dask worker), so
    that points pay their integration only. Errors are ignored: the point that needs the
    kernel reports them.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        # Ctrl-C goes to the whole process group: let the parent alone handle it
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:
            pass
    for kind, cfg in specs:
        try:
            if kind == "simulate":
                # compile or load the rule's simulation kernel (the point runs it later)
                from simulations.kernelgen import resolve_activation, resolve_rule
                from simulations.teacher_student import _kernel

                _kernel(
                    resolve_rule(cfg["rule"]),
                    resolve_activation(cfg.get("activation", "erf")),
                )
            else:
                _run(kind, cfg)
        except Exception:  # noqa: BLE001 -- warm-up only; the point reports its own error
            pass


def _last_finite(x):
    x = np.asarray(x, dtype=float)
    return float(x[-1]) if x.size else math.nan


def _summarise(kind: str, res) -> dict:
    """The summary row of a result (status, final ε_g, divergence, alignment)."""
    from theory.observables import cos_vb, norm_b

    nan = math.nan
    if kind == "solve":
        diverged = res.reason == "diverged"
        return dict(
            status="ok" if res.success else res.reason,
            eg_final=_last_finite(res.eg),
            eg_std=nan,
            diverged=float(diverged),
            alpha_final=float(res.alpha_final),
            alpha_diverged=float(res.alpha_final) if diverged else nan,
            cos_vb_final=nan if res.cos_vb is None else _last_finite(res.cos_vb),
            norm_b_final=nan if res.norm_b is None else _last_finite(res.norm_b),
            message=res.message,
        )
    if kind == "sde":
        alive = res.alive[:, -1]
        c = nb = np.empty(0)  # no feedback vector b (bp, a deep read-out): no alignment
        if res.b is not None:
            with np.errstate(invalid="ignore"):
                c = cos_vb(res.v[alive, -1], res.b[alive, -1])
                nb = norm_b(res.b[alive, -1])
        d = res.diverged
        return dict(
            status="ok" if res.success else "diverged",
            eg_final=float(res.eg_mean[-1]),
            eg_std=float(res.eg_std[-1]),
            diverged=float(d.mean()),
            alpha_final=float(res.alpha[-1]),
            alpha_diverged=float(res.alpha_stop[d].min()) if d.any() else nan,
            cos_vb_final=float(np.nanmean(c)) if c.size else nan,
            norm_b_final=float(np.mean(nb)) if nb.size else nan,
            message=res.message,
        )
    # simulate
    d = np.asarray(res.diverged, dtype=bool)
    ok = ~d
    c = res.cos_vb
    nb = res.norm_b
    return dict(
        status="diverged" if d.any() else "ok",
        eg_final=float(res.eg_mean[-1]),
        eg_std=float(res.eg_std[-1]),
        diverged=float(d.mean()),
        alpha_final=float(res.alpha[-1]),
        alpha_diverged=float(np.nanmin(res.alpha_diverged)) if d.any() else nan,
        cos_vb_final=float(np.nanmean(c[ok, -1])) if c is not None and ok.any() else nan,
        norm_b_final=float(np.mean(nb[ok, -1])) if nb is not None and ok.any() else nan,
        message=res.summary(),
    )


def _run(kind: str, config: dict):
    if kind == "simulate":
        from simulations.teacher_student import simulate

        cfg = dict(config)
        # one thread per point: the sweep already keeps every core busy with points (the
        # result does not depend on threads: each seed is its own sequential stream)
        cfg.setdefault("threads", 1)
        return simulate(cfg)
    from .api import solve
    from .config import to_solve_args, validate_config
    from .sde_solve import solve_sde

    cfg = validate_config(config, kind)
    rule, init, kw = to_solve_args(cfg)
    return (solve if kind == "solve" else solve_sde)(rule, init, **kw)


def run_point(kind: str, config: dict) -> tuple:
    """Run one point; never raises for a failing point.

    Returns
    -------
    (row, payload) : (dict, bytes or None)
        ``row``: the summary columns (``status`` "failed" with the error as ``message`` if
        the run raised); ``payload``: the result's ``.npz`` file as bytes (None if failed).
    """
    t0 = time.perf_counter()
    try:
        res = _run(kind, config)
        row = _summarise(kind, res)
        with tempfile.TemporaryDirectory(prefix="odeflow-sweep-") as tmp:
            f = Path(tmp) / "point.npz"
            res.save(f)
            payload = f.read_bytes()
    except Exception as exc:  # noqa: BLE001 -- a failing point must not stop the others
        row = dict(status="failed", message=f"{type(exc).__name__}: {exc}")
        payload = None
    row["wall_time"] = time.perf_counter() - t0
    return row, payload
