"""Per-epoch time of supervised FF with and without the Adam subnormal flush (a script).

Dead ReLU units get zero gradient rows; their Adam first moment decays as 0.9^t into
float32 subnormals after a few hundred steps, and subnormal arithmetic is slow on x86
(``simulations.forward_forward._Adam``). This trains the same FF network twice, once with
the plain Adam update (``_Adam.flush = False``) and once with the flush, and prints the
seconds of every epoch (training only: the per-epoch evaluation is skipped by timing the
batches), the fraction of subnormal first-moment entries at the end, the ratio of the last
epochs' time to the first ones', and whether the final weights are bit-identical. First it
times one first-moment update on normal and on subnormal entries: the slow path exists on
Intel cores (measured on an Intel Xeon with AVX-512: ratio 2.5–2.8, and without the flush
the last three of 8 epochs of 2 × 1000 took 1.4–1.55 × the first three, with it
0.6–0.7 ×; docs/mnist.md); AMD Zen cores have none (measured: ratio ≈ 1.0), so there the
flush changes nothing but also costs nothing.

Usage: ``python benchmarks/bench_ff_epochs.py [--width 1000] [--epochs 8] [--quick]``
(``--quick``: 2×256, 4 epochs). Needs the MNIST test set (``$ODEFLOW_MNIST_DIR``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simulations import forward_forward as ff  # noqa: E402
from simulations.data import load_dataset  # noqa: E402


class _Timer:
    """Progress callback: wall time of each epoch's batches (evaluation excluded)."""

    def __init__(self):
        self.epoch_s, self._t, self._ep = [], None, None

    def __call__(self, epoch, batch, n_batches, info):
        now = time.perf_counter()
        if info.get("epoch_done"):
            return
        if epoch != self._ep:
            self._ep, self._t0 = epoch, now
            self.epoch_s.append(0.0)
        self.epoch_s[-1] = now - self._t0


def _run(data, width, epochs, flush):
    ff._Adam.flush = flush
    seen = []
    orig = ff._Adam.__init__

    def init(self, *a, **k):  # keep the optimisers to count subnormals at the end
        orig(self, *a, **k)
        seen.append(self)

    ff._Adam.__init__ = init
    try:
        timer = _Timer()
        cfg = ff.FFConfig(hidden=[width, width], epochs=epochs, lr=0.003, eval_train=200)
        r = ff.train_ff(data, cfg, progress=timer)
    finally:
        ff._Adam.__init__, ff._Adam.flush = orig, True
    tiny = np.finfo(np.float32).tiny
    sub = [float(np.mean((o.m != 0) & (np.abs(o.m) < tiny))) for o in seen]
    return timer.epoch_s, sub, r


def subnormal_cost(n=1_000_000, reps=50):
    """Seconds per Adam-like first-moment update on normal vs subnormal float32 entries
    (whether this CPU has a slow path for subnormals at all)."""
    out = {}
    g = np.zeros(n, np.float32)
    v = np.full(n, 1e-6, np.float32)
    for name, val in (("normal", 1e-3), ("subnormal", 1e-40)):
        m = np.full(n, val, np.float32)
        t = time.perf_counter()
        for _ in range(reps):
            m *= 0.9
            m += 0.1 * g
            m[:] = val
            _ = m / (np.sqrt(v) + 1e-8)
        out[name] = (time.perf_counter() - t) / reps
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.width, a.epochs = 256, 4
    c = subnormal_cost()
    print(
        f"first-moment update on 10⁶ entries: normal {1e3 * c['normal']:.2f} ms, subnormal "
        f"{1e3 * c['subnormal']:.2f} ms (ratio {c['subnormal'] / c['normal']:.2f})",
        flush=True,
    )
    data = load_dataset(name="mnist", n_train=8000, n_test=2000, split="subset")
    res = {}
    for flush in (False, True):
        t0 = time.time()
        res[flush] = _run(data, a.width, a.epochs, flush)
        ep, sub, r = res[flush]
        print(
            f"flush={flush!s:5}: epoch seconds (batches only) "
            + ", ".join(f"{s:.1f}" for s in ep)
            + f"; last/first 3 epochs {np.mean(ep[-3:]) / np.mean(ep[:3]):.2f}; "
            + "subnormal m entries per layer "
            + ", ".join(f"{100 * s:.0f} %" for s in sub)
            + f"; test acc {100 * r.test_acc[-1]:.2f} % ({time.time() - t0:.0f} s)",
            flush=True,
        )
    same = all(np.array_equal(u, v) for u, v in zip(res[False][2].weights, res[True][2].weights))
    print(f"final weights bit-identical with and without the flush: {same}")


if __name__ == "__main__":
    main()
