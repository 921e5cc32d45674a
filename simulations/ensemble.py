"""Ensembles of independent runs: seeds and random streams, parallel execution on threads,
divergence criteria, and statistics over the seeds that did not diverge.

This module knows nothing about the network; :mod:`simulations.teacher_student` gives it a
function that runs one seed.

Random streams
--------------
Every seed ``s`` owns one sample stream (the inputs ``x`` and the teacher noise ``ζ`` of
every step, in that order), a xoshiro256++ generator whose state is drawn from
``SeedSequence([s, _SAMPLE_TAG])`` (the generator itself lives in the numba kernels of
:mod:`simulations.teacher_student`). The initial weights come from numpy generators seeded
with ``SeedSequence([init_seed])`` when ``same_init`` is true (identical initial state for
all seeds, different samples) and ``SeedSequence([init_seed, s, _INIT_TAG])`` otherwise.
Each seed runs sequentially on one thread, so a run is reproducible from its seed alone,
whatever the record grid, the block size and the number of threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from theory.divergence import EG_MAX, Y_MAX
from theory.runtime.progress import ProgressBar  # noqa: F401 (the one bar; re-exported)

__all__ = [
    "seed_list",
    "init_generator",
    "sample_state",
    "mc_test_generator",
    "Divergence",
    "ProgressBar",
    "run_parallel",
    "ensemble_stats",
    "Stopped",
]

# Tags mixed into the seed sequences so that the init, sample and test streams of the same
# integer seed are unrelated.
_SAMPLE_TAG = 0x5A3D1E
_INIT_TAG = 0x1417
_TEST_TAG = 0x7E57


def _generator(entropy) -> np.random.Generator:
    # SFC64 is the fastest of numpy's bit generators here (~10% faster than PCG64 for
    # standard_normal), and generating the inputs is the floor of a simulation's cost.
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy)))


def seed_list(seeds) -> list[int]:
    """The list of seeds from a config's ``seeds`` entry.

    ``seeds`` is a positive int ``n`` (seeds ``0, …, n−1``) or a non-empty list of distinct
    non-negative ints.
    """
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a positive int or a list of ints, got {seeds!r}")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds (number of seeds) must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    if isinstance(seeds, (list, tuple, np.ndarray)):
        out = []
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"seeds must be non-negative ints, got {s!r} in {list(seeds)!r}")
            out.append(int(s))
        if not out:
            raise ValueError("seeds must not be an empty list")
        if len(set(out)) != len(out):
            raise ValueError(f"seeds must be distinct, got {out}")
        return out
    raise ValueError(f"seeds must be a positive int or a list of ints, got {seeds!r}")


def init_generator(init_seed: int, seed: int, same_init: bool) -> np.random.Generator:
    """Generator for the initial weights of ``seed`` (shared by all seeds if ``same_init``)."""
    if same_init:
        return _generator([int(init_seed)])
    return _generator([int(init_seed), int(seed), _INIT_TAG])


def sample_state(seed: int) -> np.ndarray:
    """Initial xoshiro256++ state (4 uint64, not all zero) of the sample stream of ``seed``."""
    st = np.random.SeedSequence([int(seed), _SAMPLE_TAG]).generate_state(4, np.uint64)
    if not st.any():  # the one state xoshiro must avoid (probability 2^-256)
        st[0] = 1
    return st


def mc_test_generator(init_seed: int) -> np.random.Generator:
    """Generator for the fixed Monte Carlo test set (shared by all seeds)."""
    return _generator([int(init_seed), _TEST_TAG])


@dataclass(frozen=True)
class Divergence:
    """When a run counts as diverged (and is stopped).

    A run is diverged as soon as any of: a non-finite error or weight; ``|w_k|²/N > q_max``
    for some k; ``ε_g > eg_max`` (checked exactly at record points, and between them
    whenever a cheap upper bound on ``ε_g`` exceeds ``eg_max``).
    """

    # the one criterion shared with the ODE integrator (theory.divergence)
    eg_max: float = EG_MAX
    q_max: float = Y_MAX

    @classmethod
    def from_config(cls, d) -> Divergence:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"divergence must be a dict with keys eg_max, q_max, got {d!r}")
        unknown = set(d) - {"eg_max", "q_max"}
        if unknown:
            raise ValueError(f"unknown divergence keys {sorted(unknown)}; allowed: eg_max, q_max")
        kw = {}
        for k, val in d.items():
            try:
                val = float(val)
            except (TypeError, ValueError):
                raise ValueError(
                    f"divergence[{k!r}] must be a positive number, got {val!r}"
                ) from None
            if not val > 0:
                raise ValueError(f"divergence[{k!r}] must be a positive number, got {val!r}")
            kw[k] = val
        return cls(**kw)

    def to_dict(self) -> dict:
        return {"eg_max": self.eg_max, "q_max": self.q_max}


class Stopped(Exception):
    """Raised inside a worker by ``report`` once the ensemble has been told to stop."""


def samples_bar(progress, total: int, label: str):
    """The ensemble's progress bar from a simulate() ``progress`` argument: ``True`` draws the
    one bar over ``total`` samples, a :class:`ProgressBar` is used as given, falsy means none."""
    if progress is True:
        return ProgressBar(
            total, label=label, delay=0.0, min_interval=0.2, unit="samples", rate=True
        )
    return progress or None


def run_parallel(fn, n_tasks: int, threads: int | None = None, progress=None, total_work: int = 1):
    """Run ``fn(i, report)`` for ``i = 0 … n_tasks−1`` on a pool of threads.

    The heavy parts of ``fn`` (numpy's generators filling preallocated buffers and the
    ``nogil`` numba kernels) release the GIL, so threads give real parallelism without
    copying the state to other processes. ``report(n)`` adds ``n`` units of work done
    (samples) to the shared counter shown by ``progress`` (a :class:`ProgressBar` or None).

    Ctrl-C: the main thread waits in short slices (so KeyboardInterrupt reaches it), then
    sets a stop flag; every worker sees it at its next ``report`` (between two kernel
    blocks, ~1 ms) and ends by raising :class:`Stopped`; the pool is joined and the
    KeyboardInterrupt re-raised — within a fraction of a second.

    Returns the list of results in task order. An exception in a task is re-raised.
    """
    threads = n_tasks if threads is None else max(1, min(int(threads), n_tasks))
    done = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def report(n):
        if stop.is_set():
            raise Stopped()
        with lock:
            done[0] += n
        if threads == 1 and progress:  # no polling thread: draw from the worker
            progress.update(done[0])

    if threads == 1:
        results = [fn(i, report) for i in range(n_tasks)]
        if progress:
            progress.close(done[0])
        return results
    pool = ThreadPoolExecutor(max_workers=threads)
    futures = [pool.submit(fn, i, report) for i in range(n_tasks)]
    try:
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            if progress:
                progress.update(done[0])
            for f in futures:  # a failed task stops the others at once
                if f.done() and not f.cancelled() and f.exception() is not None:
                    raise f.exception()
    except BaseException:
        stop.set()
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    if progress:
        progress.close(done[0])
    return [f.result() for f in futures]


def ensemble_stats(x: np.ndarray, diverged: np.ndarray):
    """Mean and standard deviation over seeds (axis 0) of the seeds that did not diverge.

    Parameters
    ----------
    x : (S, ...) array
        Per-seed trajectories (NaN after a seed's divergence).
    diverged : (S,) bool array

    Returns
    -------
    mean, std : arrays of shape ``x.shape[1:]``
        ``std`` is the sample standard deviation (``ddof=1``) of the seed-to-seed spread;
        0 when a single seed is left, NaN when none is.
    n : int
        Number of seeds averaged over (``S − diverged.sum()``).
    """
    x = np.asarray(x, dtype=float)
    ok = ~np.asarray(diverged, dtype=bool)
    n = int(ok.sum())
    if n == 0:
        nan = np.full(x.shape[1:], np.nan)
        return nan, nan.copy(), 0
    xs = x[ok]
    mean = xs.mean(axis=0)
    std = xs.std(axis=0, ddof=1) if n > 1 else np.zeros_like(mean)
    return mean, std, n
