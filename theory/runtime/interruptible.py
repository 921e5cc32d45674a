"""Long compiled calls that Ctrl-C stops within a fraction of a second.

A numba kernel holds the thread that called it until it returns, and CPython delivers
KeyboardInterrupt only between bytecodes of the main thread: one right-hand side of a large
system (the closed-form committee at K = 1000 is O(K⁴): hours) would make Ctrl-C wait for
it. :func:`call` therefore runs the kernel in a worker thread (the kernel must be compiled
with ``nogil=True``, so that the main thread keeps running) while the main thread waits in
slices of :data:`POLL_SECONDS`. On KeyboardInterrupt the main thread calls ``abort()``,
which sets a flag the kernels poll in their outer loops (the *abort slot* below); they
return at once, the main thread joins the worker and re-raises KeyboardInterrupt. The
caller discards whatever the aborted call left in its arrays.

The abort slot
--------------
A kernel's parameter vector ``p`` has a length fixed by its own layout (``n_p``). A driver
that wants a kernel to be abortable passes ``p`` with ONE extra trailing entry,
:class:`Abort` (0.0: run; non-zero: abort). A kernel that supports it recognises
the slot by the exact length ``p.shape[0] == n_p + 1`` — never by a value, so a ``p``
built without the slot (tests, warm-up calls) is never mistaken for an aborted one — and
when it finds the slot set, fills ``dy`` with NaN and returns. Systems that support it
declare ``polls_abort = True`` (:func:`polls_abort`); others get their plain ``p``.

Standard library only (the rest of :mod:`theory.runtime` stays import-light); the slot is
a NumPy array the caller owns.
"""

from __future__ import annotations

import threading
import time

from . import cli

__all__ = ["POLL_SECONDS", "call", "polls_abort", "Abort"]

#: the main thread's waiting slice: Ctrl-C is seen within this, plus one outer-loop
#: iteration of the kernel (one (k, l) sum of the closed form: ~25 ms at K = 1000, where
#: the whole rhs takes hours; measured stop 0.24–0.28 s after the interrupt there)
POLL_SECONDS = 0.05


def polls_abort(system) -> bool:
    """Whether ``system``'s kernels poll the abort slot (module docstring)."""
    return bool(getattr(system, "polls_abort", False))


class Abort:
    """The abort slot of one run: ``p`` extended by one entry (when the system polls it).

    ``p`` is what the kernels get; :meth:`set` raises the flag, :meth:`clear` lowers it.
    """

    def __init__(self, system, p):
        import numpy as np

        self.active = polls_abort(system)
        self.p = np.append(p, 0.0) if self.active else p

    def set(self) -> None:
        if self.active:
            self.p[-1] = 1.0

    def clear(self) -> None:
        if self.active:
            self.p[-1] = 0.0


def _wait(finished: threading.Event, poll: float, deadline=None, check=True) -> None:
    # an Event, not Thread.join: a KeyboardInterrupt inside join(timeout) can leave the
    # Thread object marking a running worker as stopped (CPython 3.11's bpo-45274 cleanup
    # releases the tstate lock the worker still holds)
    while not finished.wait(poll):
        if check:
            cli.check_interrupted()  # a Ctrl-C whose exception was swallowed on the way
        if deadline is not None and time.perf_counter() > deadline[0]:
            deadline[1]()
            deadline = None
    if check:
        cli.check_interrupted()


def call(fn, abort, *, poll: float = POLL_SECONDS, notice=None):
    """``fn()`` in a worker thread; Ctrl-C in the main thread stops it through ``abort()``.

    Parameters
    ----------
    fn : callable
        The long call (a ``nogil`` numba kernel on arrays the caller owns).
    abort : callable
        Called once on KeyboardInterrupt, before joining the worker: it must make ``fn``
        return soon (set the abort slot the kernels poll).
    poll : float
        Seconds per waiting slice of the main thread.
    notice : (seconds, callable), optional
        Call ``callable()`` once if ``fn`` is still running after ``seconds`` (to say why
        nothing happens yet).

    Returns ``fn()``'s value, re-raises its exception. On KeyboardInterrupt: ``abort()``,
    join the worker (a second Ctrl-C while joining abandons it: the thread is a daemon),
    re-raise. Outside the main thread ``fn()`` runs directly (only the main thread receives
    KeyboardInterrupt).
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    box = {}
    finished = threading.Event()

    def work():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc
        finally:
            finished.set()

    th = threading.Thread(target=work, name="odeflow-kernel", daemon=True)
    deadline = None if notice is None else [time.perf_counter() + notice[0], notice[1]]
    th.start()
    try:
        _wait(finished, poll, deadline)
    except KeyboardInterrupt:
        abort()
        # the kernels return within one outer-loop iteration
        _wait(finished, poll, check=False)
        raise
    if "error" in box:
        raise box["error"]
    return box.get("value")
