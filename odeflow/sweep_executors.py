"""Executors for sweeps: the inline executor, a local process pool whose workers die
with the sweep (even by ``kill -9``), and Dask clusters reached with a bounded probe
(:mod:`odeflow.sweep`).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time

from .sweep_points import warm_up

__all__ = ["dask_executor", "die_with_parent", "PARENT_POLL", "CONNECT_TIMEOUT"]

_DASK_MISSING = (
    "Dask is not installed: install the optional extra with "
    'pip install -e ".[dask]" (or pip install "dask[distributed]"), or run '
    "without --dask/--scheduler (local worker processes need nothing)"
)


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
