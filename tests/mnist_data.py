"""Which MNIST the tests run on: the full official test set when it is present, else the
1000-image fixture shipped in ``tests/data/mnist-1k`` (a fresh clone needs no download).

* ``FULL_DIR``: the folder of the full 10,000-image test set (``ODEFLOW_MNIST_DIR``,
  ``ODEFLOW_DATA/mnist`` or the user cache, never a path next to the repository), or None.
* ``needs_full_mnist``: skip marker for tests whose expectations were measured on the full
  set (the 8000/2000 split) and are covered on the fixture by a twin with its own bounds.
* ``mnist(n_train, n_test)``: that split of the full set, or on the fixture at most
  800/200 (the fixture's stratified split), so one test body serves both.

``tests/conftest.py`` points ``ODEFLOW_MNIST_DIR`` at the fixture when the full set is
absent, so config-driven runs (``simulations train``, figures) find it too.
"""

from pathlib import Path

import pytest

from simulations.data import load_dataset, read_idx
from simulations.datasets import dataset_dir

FIXTURE_DIR = Path(__file__).resolve().parent / "data" / "mnist-1k"
#: train/test sizes of the fixture's split (all 1000 images)
FIXTURE_SPLIT = (800, 200)


def _full_dir():
    d = dataset_dir("mnist")
    for name in ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"):
        try:
            if (
                (d / name).is_file()
                and read_idx(d / name, ndim=1).size == 10000
                and any(
                    (d / f).is_file()
                    for f in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")
                )
            ):
                return d
        except ValueError:
            return None
    return None


FULL_DIR = _full_dir()
FULL = FULL_DIR is not None
WHERE = (
    f"full MNIST test set in {FULL_DIR}"
    if FULL
    else f"MNIST fixture {FIXTURE_DIR} (1000 images; full-data tests skip: get the full set "
    f"with `python -m simulations.datasets mnist` or set ODEFLOW_DATA)"
)

needs_full_mnist = pytest.mark.skipif(
    not FULL,
    reason="needs the full 10,000-image MNIST test set (python -m simulations.datasets "
    "mnist, or ODEFLOW_DATA / ODEFLOW_MNIST_DIR); the 1000-image fixture "
    "runs the same code",
)


def mnist(n_train: int = 8000, n_test: int = 2000):
    """The stratified split of the test set (``split="subset"``, the condition every
    threshold was measured under); on the fixture at most :data:`FIXTURE_SPLIT`."""
    if FULL:
        return load_dataset("mnist", dir=FULL_DIR, n_train=n_train, n_test=n_test, split="subset")
    return load_dataset(
        "mnist",
        dir=FIXTURE_DIR,
        n_train=min(n_train, FIXTURE_SPLIT[0]),
        n_test=min(n_test, FIXTURE_SPLIT[1]),
        split="subset",
    )


def sizes(n_train: int, n_test: int) -> dict:
    """``{"n_train": …, "n_test": …}`` for a config's ``data``: as given on the full set,
    capped at :data:`FIXTURE_SPLIT` on the fixture."""
    if FULL:
        return {"n_train": n_train, "n_test": n_test}
    return {"n_train": min(n_train, FIXTURE_SPLIT[0]), "n_test": min(n_test, FIXTURE_SPLIT[1])}


def bound(full: float, fixture: float) -> float:
    """The accuracy bound for the data in use (each measured on its own data)."""
    return full if FULL else fixture
