"""Parameter sweeps: one base config, a grid over its keys, every point run once.

    >>> from odeflow.sweep import sweep
    >>> res = sweep({"base": {...}, "grid": {"eta": [0.2, 0.5]}}, "out/sweep")  # doctest: +SKIP
    >>> res.column("eg_final"), res.exit_code                                   # doctest: +SKIP

or ``python -m odeflow sweep SWEEP.json -o DIR [--workers N] [--dask local |
--scheduler ADDRESS] [--quiet] [--dry-run]``.

Sweep file
----------
A JSON object::

    {"kind":  "solve" | "sde" | "simulate"          (optional, see below)
     "base":  {...}                                  a config of that command
     "grid":  {"eta": [0.2, 0.5],                    an axis per key (outer product)
               "init.seed": {"range": [0, 8]},
               "sigma_F": {"log": [0.01, 0.1, 7]}},
     "zip":   {"eta": [...], "eta_v": [...]}         keys varied *together* (one axis);
              or a list of such objects              (several zipped axes)
     "seeds": 4 | [3, 5, 7] | {"range": [0, 4]}      independent replicates (one axis)
     "description": "free text"}

``base`` is a config of ``python -m odeflow solve`` (``kind: "solve"``),
``python -m odeflow sde`` (``"sde"``) or ``python -m simulations run`` (``"simulate"``).
Without ``kind`` it is inferred from the base: a simulation config has ``N``, an SDE config
has ``n_paths``, anything else is an ODE (``solve``) config.

Axis values: a JSON list, or ``{"values": [...]}``, ``{"range": [start, stop(, step)]}``
(integers, like Python's ``range``), ``{"linspace": [a, b, n]}`` or ``{"log": [a, b, n]}``
(``n`` geometrically spaced values from ``a`` to ``b``, both > 0). Dotted names reach
nested keys (``"init.seed"``, ``"record.every"``, ``"divergence.eg_max"``). ``seeds``
sets the kind's seed: ``seed`` for ``sde``; ``init.seed`` and ``seeds: [s]`` for
``simulate`` (an independent network per replicate); ``solve`` is deterministic and
refuses ``seeds``. Points enumerate the axes in C order: the ``grid`` keys in the order
written, then each ``zip`` group, then ``seeds``.

Before any point runs, every point's config is checked with the validator its command uses
(``odeflow.config.validate_config`` or ``simulations.teacher_student.validate_config``), so
an unknown key, an empty axis or a malformed range raises ``ValueError`` (exit code 2) and
nothing runs. Values that only the solver rejects (e.g. a negative ``alpha_max`` in an ODE
config) make that point fail, with its message, while the others run.

Output directory
----------------
``DIR/sweep.json`` (the sweep as given, plus ``kind``), ``DIR/points/<key>.npz`` (the
point's full result, exactly what its command writes), ``DIR/points/<key>.json`` (its row
and config) and ``DIR/summary.csv``: one row per point with ``index, key``, the swept values,
``status`` ("ok", "diverged", "max_steps", "step_underflow" or "failed"), ``eg_final``,
``eg_std``, ``diverged`` (fraction of runs that diverged: 0/1 for an ODE, over paths for
``sde``, over seeds for ``simulate``), ``alpha_final``, ``alpha_diverged``,
``cos_vb_final``, ``norm_b_final``, ``wall_time`` (seconds), ``message`` and ``file``.
Rows are appended as points finish; the table is rewritten in point order at the end.

``<key>`` is a hash of the kind and the point's normalised config (key order, ``1`` vs
``1.0`` and ``description`` do not matter). Files are written atomically (temporary file,
then rename), so a point's ``.json`` exists only once its result is complete: re-running a
sweep (same or extended grid, same directory) skips every point already finished ("ok" or
stopped early) and re-runs those that failed (``retry_failed=False`` keeps them). A point's
``.json`` records the size and SHA-256 of its ``.npz``; a resumed sweep checks them and
runs again (and says so: ``SweepResult.broken``) every point whose result file is missing,
truncated or corrupt. ``DIR/sweep.lock`` (PID, host, start time) keeps a second sweep out of
a directory in use: it refuses with the holder's PID and host (``SweepBusy``, exit 2); a
lock left by a dead process of this host (``kill -9``) is taken over. Nothing is written
into the directory before the workers (or the Dask scheduler) are there.

Executors
---------
Points run on a ``concurrent.futures`` executor. The default is a pool of local worker
processes (all cores); each worker loads the compiled kernels of the sweep once, when it
starts (:func:`warm_up`), so a point costs its integration only. ``workers=0`` runs the
points in this process. ``dask="local"`` starts a ``distributed.LocalCluster``;
``dask="tcp://host:8786"`` (``--scheduler``) connects to a running Dask scheduler (for
instance one started by ``dask-jobqueue`` on a Slurm cluster); any other
``concurrent.futures.Executor`` can be passed as ``executor``. Local workers die with the
sweep, even when it is killed with ``kill -9`` (:func:`die_with_parent`). A ``--scheduler``
address is probed first, with a bounded handshake: nothing, or something other than a Dask
scheduler, there is "no Dask scheduler at ADDRESS (…)" (exit 2) within seconds. Workers send each
result back to this process, which writes every file: no shared file system is needed. Dask is an
optional extra (``pip install -e ".[dask]"``), imported only when asked for.

This module is, with :mod:`odeflow.compare`, a bridge from ``odeflow`` to ``simulations``:
``simulations`` is imported lazily, only for ``simulate`` sweeps.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sweep_executors import (
    _DASK_MISSING,  # noqa: F401
    CONNECT_TIMEOUT,  # noqa: F401
    PARENT_POLL,  # noqa: F401
    _InlineExecutor,
    _process_pool,
    dask_executor,
    die_with_parent,
)
from .sweep_files import (
    _FINISHED,
    SUMMARY_COLUMNS,
    SweepBusy,
    _atomic_write,  # noqa: F401
    _finished_row,
    _SweepLock,
    _Table,
)
from .sweep_points import _run, _summarise, _warm_specs, run_point, warm_up  # noqa: F401
from .sweep_spec import (
    KINDS,
    Sweep,
    SweepPoint,
    _canon,
    _is_int,
    _is_num,  # noqa: F401
    axis_values,
    infer_kind,
    load_sweep,
    point_key,
)

__all__ = [
    "KINDS",
    "SUMMARY_COLUMNS",
    "Sweep",
    "SweepPoint",
    "SweepResult",
    "load_sweep",
    "sweep",
    "run_point",
    "warm_up",
    "point_key",
    "infer_kind",
    "axis_values",
    "dask_executor",
    "SweepBusy",
    "die_with_parent",
]


# ============================================================================ results
@dataclass
class SweepResult:
    """What a sweep did; the data live in ``directory``.

    Attributes
    ----------
    directory : Path
    sweep : Sweep
    rows : list of dict or None
        Summary row of each point (None for a point that did not run: interrupted).
    n_run, n_skipped : int
        Points run now, and points found finished from an earlier run.
    interrupted : bool
    wall_time : float
    broken : list of int
        Points recorded as finished whose result file was missing, truncated or corrupt
        (its size or SHA-256 differ from those in its ``.json``): run again.
    """

    directory: Path
    sweep: Sweep
    rows: list
    n_run: int = 0
    n_skipped: int = 0
    interrupted: bool = False
    wall_time: float = 0.0
    broken: list = field(default_factory=list)

    @property
    def statuses(self) -> list:
        return [None if r is None else r["status"] for r in self.rows]

    def count(self, status: str) -> int:
        return sum(s == status for s in self.statuses)

    @property
    def exit_code(self) -> int:
        """0 every point ok; 1 some failed or stopped early; 130 interrupted."""
        if self.interrupted:
            return 130
        return 0 if all(s == "ok" for s in self.statuses) else 1

    def column(self, name: str) -> np.ndarray:
        """One summary column over the points (float where numeric, NaN where missing);
        also a swept name (its values)."""
        if name in self.sweep.names:
            vals = [p.values[name] for p in self.sweep.points]
        else:
            vals = [None if r is None else r.get(name) for r in self.rows]
        if all(v is None or _is_num(v) for v in vals):
            return np.array([math.nan if v is None else float(v) for v in vals])
        return np.array(vals, dtype=object)

    def grid(self, name: str) -> np.ndarray:
        """:meth:`column` reshaped to the sweep's axes (``sweep.shape``)."""
        return self.column(name).reshape(self.sweep.shape)

    def path(self, index: int) -> Path:
        return self.directory / "points" / f"{self.sweep.points[index].key}.npz"

    def load(self, index: int):
        """The full result of point ``index`` (``Result``, ``SDEResult`` or
        ``SimulationResult``)."""
        p = self.path(index)
        if not p.exists():
            raise ValueError(f"point {index} has no result ({self.statuses[index]}): {p}")
        if self.sweep.kind == "simulate":
            from simulations.teacher_student import SimulationResult

            return SimulationResult.load(p)
        from .results import Result, SDEResult

        return (Result if self.sweep.kind == "solve" else SDEResult).load(p)

    def summary(self) -> str:
        n = len(self.rows)
        done = sum(r is not None for r in self.rows)
        parts = [
            f"{self.count(s)} {s}" for s in ("ok",) + _FINISHED[1:] + ("failed",) if self.count(s)
        ]
        again = (
            f" ({len(self.broken)} of them again: their result file was missing, "
            "truncated or corrupt)"
            if self.broken
            else ""
        )
        return (
            f"sweep {self.sweep.kind}: {done}/{n} points ({', '.join(parts) or 'none'}); "
            f"{self.n_run} run now{again}, {self.n_skipped} already done"
            f"{'; INTERRUPTED' if self.interrupted else ''}; {self.wall_time:.1f} s; "
            f"{self.directory / 'summary.csv'}"
        )


# ======================================================================== progress
class _Bar:
    """``sweep [██████░░░░] 12/40 points, 1 failed  4.1s < ETA 9.3s`` on stderr."""

    def __init__(self, total, done, enabled, stream=None, width=24):
        self.total, self.done0, self.done = total, done, done
        self.enabled = enabled and total > 0
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.t0 = time.perf_counter()
        self.failed = 0
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._last_frac = -1.0
        self.draw()

    def step(self, failed: bool):
        self.done += 1
        self.failed += failed
        self.draw()

    def draw(self, end=False):
        if not self.enabled:
            return
        frac = self.done / self.total
        if not self.tty and not end and frac - self._last_frac < 0.1 and frac < 1:
            return
        self._last_frac = frac
        el = time.perf_counter() - self.t0
        ran = self.done - self.done0
        left = self.total - self.done
        eta = f"ETA {el / ran * left:.1f}s" if ran else "ETA ?"
        fill = int(round(frac * self.width))
        fail = f", {self.failed} failed" if self.failed else ""
        line = (
            f"sweep [{'█' * fill}{'░' * (self.width - fill)}] {self.done}/{self.total} "
            f"points{fail}  {el:.1f}s < {eta}"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# =============================================================================== sweep
# Long on purpose: the docstring and the one control flow of a sweep (lock, resume, submit, collect,
# summary); the steps are helpers in sweep_files.py
def sweep(
    spec,
    outdir,
    *,
    workers: int | None = None,
    executor: cf.Executor | None = None,
    dask: str | None = None,
    retry_failed: bool = True,
    progress: bool = False,
    on_point=None,
) -> SweepResult:
    """Run every point of a sweep not yet finished in ``outdir``.

    Parameters
    ----------
    spec : dict, path or Sweep
        The sweep (see the module docstring); validated entirely before anything runs.
    outdir : path
        The sweep's directory (created); earlier results there are reused.
    workers : int, optional
        Local worker processes (default: all cores, at most one per point to run);
        0 runs the points in this process. With ``dask="local"``: the LocalCluster's
        worker count.
    executor : concurrent.futures.Executor, optional
        Run the points there instead (not shut down here).
    dask : str, optional
        "local" (a ``distributed.LocalCluster``) or a scheduler address.
    retry_failed : bool
        Re-run points recorded as failed by an earlier run.
    progress : bool
        Progress bar on stderr.
    on_point : callable(index, row), optional
        Called in this process after each point's files are written.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        An invalid sweep (nothing has run).
    KeyboardInterrupt
        Re-raised after the finished points' files and the summary are written and the
        workers stopped.
    """
    t0 = time.perf_counter()
    sw = spec if isinstance(spec, Sweep) else load_sweep(spec)
    if executor is not None and dask is not None:
        raise ValueError("give either an executor or dask, not both")
    if workers is not None and (not _is_int(workers) or workers < 0):
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    out = Path(outdir)
    pdir = out / "points"
    rows: list = [None] * len(sw.points)
    todo, broken = [], []
    for p in sw.points:
        row, ok = _finished_row(pdir, p.key, retry_failed)
        if ok:
            rows[p.index] = row
        else:
            todo.append(p)
            if row is not None and row.get("status") in _FINISHED:
                broken.append(p)
    res = SweepResult(
        out, sw, rows, n_skipped=len(sw.points) - len(todo), broken=[p.index for p in broken]
    )

    # connect (or start the workers) before anything is written into the directory: a
    # wrong --scheduler must leave no trace there
    close = None
    ex = executor
    if not todo:
        pass
    elif ex is None and dask is not None:
        ex, close = dask_executor(dask, workers, _warm_specs(sw))
    elif ex is None:
        n = (os.cpu_count() or 1) if workers is None else workers
        if n == 0:
            ex = _InlineExecutor()  # kernels load on first use, once per process
        else:
            ex = _process_pool(min(n, len(todo)), _warm_specs(sw))
        close = ex.shutdown

    lock = None
    try:
        pdir.mkdir(parents=True, exist_ok=True)
        lock = _SweepLock(out)
        lock.acquire()
        _atomic_write(out / "sweep.json", (json.dumps(sw.spec, indent=1) + "\n").encode())
        for stale in [*pdir.glob(".*.tmp*"), *pdir.glob(".*.part*")]:
            stale.unlink(missing_ok=True)  # left by a write that was killed half-way
        table = _Table(out / "summary.csv", sw.names)
        table.write_all(sw.points, rows)
    except BaseException:
        if lock is not None:
            lock.release()
        if close is not None:
            close()
        raise
    bar = _Bar(len(sw.points), res.n_skipped, progress)

    def record(p: SweepPoint, row: dict, payload):
        doc = {
            "index": p.index,
            "key": p.key,
            "kind": sw.kind,
            "values": _canon(p.values),
            "row": row,
            "config": _canon(p.config),
        }
        if payload is not None:
            _atomic_write(pdir / f"{p.key}.npz", payload)
            row["file"] = f"points/{p.key}.npz"
            # what resuming checks before trusting the file (a truncated or emptied .npz)
            doc["npz"] = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        _atomic_write(pdir / f"{p.key}.json", json.dumps(doc, indent=1, allow_nan=True).encode())
        rows[p.index] = row
        res.n_run += 1
        table.append(p, row)
        bar.step(row["status"] == "failed")
        if on_point is not None:
            on_point(p.index, row)

    futures = {}
    try:
        for p in todo:
            futures[ex.submit(run_point, sw.kind, p.config)] = p
        for fut in cf.as_completed(futures):
            p = futures.pop(fut)
            try:
                row, payload = fut.result()
            except Exception as exc:  # noqa: BLE001 -- e.g. a worker process died
                row, payload = (
                    dict(
                        status="failed", wall_time=math.nan, message=f"{type(exc).__name__}: {exc}"
                    ),
                    None,
                )
            record(p, row, payload)
    except KeyboardInterrupt:
        res.interrupted = True
        for f in futures:
            f.cancel()
        if isinstance(ex, cf.ProcessPoolExecutor):
            # stop the running points now (their results would be lost anyway);
            # there is no public API for this
            for proc in list(getattr(ex, "_processes", {}).values()):
                proc.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            close = None
        raise
    finally:
        bar.close()
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 -- closing must not mask the results
                pass
        try:
            table.write_all(sw.points, rows)
        finally:
            lock.release()
        res.wall_time = time.perf_counter() - t0
    return res
