"""Rebuild ``tests/data/mnist-1k/`` from the official MNIST test set (how the fixture was made).

``python tests/data/make_mnist_fixture.py DIR`` with DIR holding ``t10k-images-idx3-ubyte.gz``
and ``t10k-labels-idx1-ubyte.gz`` (e.g. after ``python -m simulations.datasets mnist``): a
stratified sample of 1000 images (100 × the class shares, largest-remainder rounding,
``stratified_split(y, 1000, 0, seed=0)``), in the sampled (shuffled) order, written as
gzipped IDX files under the official names with a zero gzip time stamp, so the bytes are
reproducible. The SHA-256 of the two files are recorded in ``README.md`` here.
"""

import gzip
import hashlib
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from simulations.data import read_idx, stratified_split  # noqa: E402

N = 1000


def _write(path: Path, arr: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as fh,
    ):
        fh.write(head + arr.astype(np.uint8).tobytes())


def main(src: str) -> None:
    src = Path(src)
    img = read_idx(src / "t10k-images-idx3-ubyte.gz", ndim=3)
    lab = read_idx(src / "t10k-labels-idx1-ubyte.gz", ndim=1)
    idx, _ = stratified_split(lab, N, 0, seed=0)
    out = HERE / "mnist-1k"
    out.mkdir(exist_ok=True)
    _write(out / "t10k-images-idx3-ubyte.gz", img[idx])
    _write(out / "t10k-labels-idx1-ubyte.gz", lab[idx])
    for f in sorted(out.glob("*.gz")):
        print(hashlib.sha256(f.read_bytes()).hexdigest(), f.name)
    print("class counts:", np.bincount(lab[idx], minlength=10).tolist())


if __name__ == "__main__":
    main(sys.argv[1])
