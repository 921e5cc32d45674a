"""Local receptive fields cost no more than dense layers (measured in one run).

    python benchmarks/bench_local_fields.py [--repeats 3]

Times one training epoch (2000 MNIST-sized images, batch 64, no evaluation: ``epochs=1``
minus an ``epochs=0`` run of the same config) of supervised FF (1 × 1024) and of BP
(1 × 1024) with dense layers and with local receptive fields (8 × 8 grid, 10 × 10 patches),
interleaved, best of ``--repeats``, and prints the ratio local / dense (target ≤ 1.1: a
local layer is the dense matmul plus one elementwise product of the update per step).
Synthetic inputs (uniform pixels), so no data files are needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from simulations.data import Dataset  # noqa: E402
from simulations.deep import DeepConfig, train_deep  # noqa: E402
from simulations.forward_forward import FFConfig, train_ff  # noqa: E402

LOCAL = [{"field": 10, "grid": 8}]


def _data(n=2000):
    rng = np.random.default_rng(0)
    x = rng.random((n + 10, 784)).astype(np.float32)
    y = rng.integers(0, 10, n + 10)
    return Dataset(x[:n], y[:n], x[n:], y[n:], 10, "synthetic")


def _epoch_time(kind, local, data):
    lf = LOCAL if local else None

    def run(epochs):
        t = time.perf_counter()
        if kind == "ff":
            train_ff(data, FFConfig(hidden=[1024], epochs=epochs, eval_train=10, local_fields=lf))
        else:
            train_deep(data, DeepConfig(hidden=[1024], rule="bp", epochs=epochs, local_fields=lf))
        return time.perf_counter() - t

    return run(1) - run(0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    data = _data()
    for kind in ("ff", "bp"):
        best = {False: np.inf, True: np.inf}
        for _ in range(a.repeats):
            for local in (False, True):
                best[local] = min(best[local], _epoch_time(kind, local, data))
        print(
            f"{kind}: dense {best[False]:.2f} s/epoch, local {best[True]:.2f} s/epoch, "
            f"ratio local/dense {best[True] / best[False]:.2f} (target <= 1.1)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
