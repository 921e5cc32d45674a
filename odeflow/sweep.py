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
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sweep_files import (
    _FINISHED,
    SUMMARY_COLUMNS,
    SweepBusy,
    _atomic_write,  # noqa: F401
    _finished_row,
    _SweepLock,
    _Table,
)
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

_DASK_MISSING = (
    "Dask is not installed: install the optional extra with "
    'pip install -e ".[dask]" (or pip install "dask[distributed]"), or run '
    "without --dask/--scheduler (local worker processes need nothing)"
)


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
    from .api import solve, solve_sde
    from .config import to_solve_args, validate_config

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


# ========================================================================= executors
class _InlineExecutor(cf.Executor):
    """Runs each call at submission, in this process (``workers=0``)."""

    def submit(self, fn, /, *args, **kwargs):
        fut = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            fut.set_exception(exc)
        return fut


#: seconds between two checks of a worker that its parent (the sweep) is still alive
PARENT_POLL = 0.5


def die_with_parent(parent_pid: int, poll: float = PARENT_POLL) -> None:
    """End this (worker) process when ``parent_pid`` ends, even by ``kill -9``.

    A pool worker otherwise outlives a killed sweep forever, blocked on a queue nobody will
    write to. Two guards: on Linux the kernel sends SIGKILL when the parent dies
    (``prctl(PR_SET_PDEATHSIG)``, which works even while a compiled kernel holds the GIL),
    and everywhere a daemon thread checks every ``poll`` seconds that ``os.getppid()`` is
    still ``parent_pid`` (an orphan is re-parented to init or a subreaper).
    """
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, 9)  # 9 = SIGKILL
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # died before the guards were set
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="odeflow-parent-watch", daemon=True).start()


def _pool_init(parent_pid: int, specs) -> None:
    """Initializer of a local worker: die with the sweep, then load the kernels."""
    die_with_parent(parent_pid)
    warm_up(specs)


def _process_pool(workers: int, specs) -> cf.ProcessPoolExecutor:
    import multiprocessing as mp

    # spawn, not fork: the parent may hold numba/simulation threads, and forking a
    # multi-threaded process is unsafe; spawn is also what macOS and Windows do.
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_pool_init,
        initargs=(os.getpid(), specs),
    )


#: seconds to wait for a Dask scheduler to answer before giving up
CONNECT_TIMEOUT = 15.0


def _connect(Client, address: str, timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client`` on the scheduler at ``address``, or ValueError
    "no Dask scheduler at ADDRESS (why)" within about ``timeout`` seconds.

    A plain TCP connection is tried first, so that a refused or unreachable port is said
    at once; then the Dask handshake, bounded, so that a port held by something else (an
    HTTP server, a proxy) fails instead of leaving the sweep waiting at 0/N forever.
    """
    import socket
    from urllib.parse import urlsplit

    if not isinstance(address, str) or not address:
        raise ValueError(
            f"--scheduler must be an address such as tcp://10.0.0.1:8786, got {address!r}"
        )
    u = urlsplit(address if "://" in address else f"tcp://{address}")
    if u.scheme not in ("tcp", "tls"):
        raise ValueError(
            f"no Dask scheduler at {address} (scheme {u.scheme!r}; allowed: "
            "tcp://HOST:PORT or tls://HOST:PORT)"
        )
    try:
        port = u.port
    except ValueError:
        port = None
    if not u.hostname or port is None:
        raise ValueError(
            f"no Dask scheduler at {address} (give HOST:PORT, e.g. tcp://10.0.0.1:8786)"
        )
    try:
        socket.create_connection((u.hostname, port), timeout=min(timeout, 5.0)).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ValueError(f"no Dask scheduler at {address} (cannot connect: {why})") from None
    import asyncio

    try:
        ident = asyncio.run(_identify(address, timeout))
    except Exception as exc:  # noqa: BLE001 -- whatever a non-Dask server makes Dask raise
        # (a proxy's reply read as a frame length has made Dask ask for terabytes: MemoryError)
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ValueError(
            f"no Dask scheduler at {address} (something answers on that port "
            f"but not as a Dask scheduler within {timeout:.0f} s: {why})"
        ) from None
    kind = ident.get("type") if isinstance(ident, dict) else None
    if kind != "Scheduler":
        raise ValueError(f"no Dask scheduler at {address} (it answers as {kind or ident!r})")
    return Client(address, timeout=f"{timeout}s")


async def _identify(address: str, timeout: float):
    """The scheduler's answer to ``identity``, every step bounded by ``timeout``.
    (``Client(address, timeout=…)`` bounds the TCP connect only: a server that accepts
    the connection and never answers the handshake, e.g. an HTTP port, hangs it.)"""
    import asyncio

    from distributed.comm import connect

    comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
        return await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()


def dask_executor(
    address: str = "local", workers: int | None = None, specs=(), processes: bool = True
):
    """A ``concurrent.futures`` executor on a Dask cluster, and a function closing it.

    Parameters
    ----------
    address : str
        "local" for a new ``distributed.LocalCluster`` (``workers`` single-threaded
        workers; ``processes=False`` keeps them as threads of this process), or the
        address of a running scheduler (``tcp://host:8786``).
    specs : list
        Kernels to load on every worker (present and future) before it takes points.

    Raises
    ------
    ImportError
        When ``dask.distributed`` is not installed (with the install line).
    ValueError
        "no Dask scheduler at ADDRESS (…)" when nothing, or something else than a Dask
        scheduler, answers there within :data:`CONNECT_TIMEOUT` seconds.
    """
    try:
        from distributed import Client, LocalCluster, WorkerPlugin
    except ImportError:
        raise ImportError(_DASK_MISSING) from None

    class _Warm(WorkerPlugin):
        name = "odeflow-warm-up"

        def __init__(self, specs):
            self.specs = list(specs)

        def setup(self, worker):
            warm_up(self.specs)

    cluster = None
    if address == "local":
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = _connect(Client, address)
    client.register_plugin(_Warm(specs))
    ex = client.get_executor(pure=False)

    def close():
        client.close()
        if cluster is not None:
            cluster.close()

    return ex, close


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
        from .api import Result, SDEResult

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
