"""Real-data loaders: MNIST (IDX, gzip or not) and CIFAR-10 (python batches).

Where the files are
-------------------
Each data set has one folder (:func:`simulations.datasets.dataset_dir`), first match wins:

1. an explicit ``directory`` argument (config key ``data.dir``);
2. ``$ODEFLOW_MNIST_DIR`` (``$ODEFLOW_CIFAR10_DIR`` for CIFAR-10);
3. ``$ODEFLOW_DATA/mnist`` (``$ODEFLOW_DATA/cifar10``);
4. the user cache, ``~/.cache/odeflow/data/mnist`` (``$XDG_CACHE_HOME`` respected).

``download=True`` (config key ``data.download``, or ``python -m simulations.datasets mnist``)
fetches what is missing into that folder, SHA-256 verified (:mod:`simulations.datasets`).
Without it a missing folder or file is a :class:`~simulations.datasets.DataError` (a
``ValueError``) saying where the files go and how to get them.

MNIST: the four official files (``train-images-idx3-ubyte[.gz]``,
``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
``t10k-labels-idx1-ubyte[.gz]``). When the training files are present, ``split="auto"``
uses the official 60,000/10,000 split (optionally subsampled, stratified, to ``n_train`` /
``n_test``). With only the two test files (the *test* set, 10,000 images), ``split="auto"``
is a fixed, seeded, stratified split of it (default 8000 train / 2000 test,
``split_seed=0``, independent of the run seed so every run sees the same split); the
README's MNIST table uses that split (``split="subset"``) whatever files are present.

CIFAR-10: a folder holding ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (the
"python version" of the data set; the download extracts them there).

All inputs are flattened to float32 rows scaled to [0, 1]; labels are int64 in 0..9.
Malformed or missing files raise :class:`ValueError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import DataError, dataset_dir, fetch

__all__ = [
    "Dataset",
    "teacher_student_task",
    "read_idx",
    "load_mnist",
    "load_cifar10",
    "stratified_split",
    "default_mnist_dir",
    "load_dataset",
    "DATASETS",
    "DataError",
]

#: dataset names accepted by :func:`load_dataset` (``teacher-student`` is built by
#: :func:`teacher_student_task`)
DATASETS = ("mnist", "cifar10", "teacher-student")

# IDX type codes -> numpy big-endian dtypes (the format is big-endian throughout)
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass
class Dataset:
    """A train/test split of a classification data set.

    Attributes
    ----------
    x_train, x_test : float32 arrays (n, d), inputs in [0, 1] (MNIST, CIFAR-10)
    y_train, y_test : int64 arrays (n,), class indices
    n_classes : int
    name : str
    source : str, where the data came from (directory and split used)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    source: str = ""

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]


# ----------------------------------------------------------------------------- IDX files


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(
            f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'raw'} data ({exc})"
        ) from exc


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed, by the ``.gz`` suffix).

    Layout: two zero bytes, a type code (0x08 = uint8, …), the number of dimensions, then
    one big-endian uint32 per dimension, then the data in C order.

    Parameters
    ----------
    path : str or Path
    ndim : expected number of dimensions (3 for images, 1 for labels), or None

    Raises
    ------
    ValueError
        naming the file, if it is missing, not gzip, has a wrong magic number, the wrong
        number of dimensions, or is shorter/longer than its header says.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs 4)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x0000TTNN "
            f"with type TT in {{{', '.join(f'0x{k:02x}' for k in _IDX_DTYPES)}}})"
        )
    dtype, nd = _IDX_DTYPES[raw[2]], raw[3]
    if ndim is not None and nd != ndim:
        raise ValueError(
            f"{path}: IDX file has {nd} dimensions, expected {ndim} (magic 0x{magic:08x})"
        )
    header = 4 + 4 * nd
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, needs {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have != need:
        kind = "truncated" if have < need else "oversized"
        raise ValueError(
            f"{path}: {kind} IDX file: header says shape {shape} "
            f"({need} data bytes) but {have} bytes follow"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _find(directory: Path, stem: str) -> Path | None:
    # accept both the official hyphenated names and the dotted ones some mirrors use
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        p = directory / name
        if p.is_file():
            return p
    return None


def default_mnist_dir() -> Path:
    """The MNIST folder when none is given: ``$ODEFLOW_MNIST_DIR``, ``$ODEFLOW_DATA/mnist``
    or ``~/.cache/odeflow/data/mnist`` (see :func:`simulations.datasets.dataset_dir`)."""
    return dataset_dir("mnist")


_HOWTO = (
    "download them with `python -m simulations.datasets {name}` (or download=True, "
    "config key data.download: true), or put them there by hand, or point "
    "ODEFLOW_DATA / {env} (config key data.dir) at a folder holding them"
)


_CACHE: dict = {}


def load_mnist(directory=None, download: bool = False, mirrors=None) -> dict:
    """Every MNIST part present in ``directory``.

    Parameters
    ----------
    directory : folder of the IDX files (default :func:`default_mnist_dir`)
    download : fetch the four files into that folder first if any is missing
        (:func:`simulations.datasets.fetch`: SHA-256 verified, atomic, resumable)
    mirrors : base URLs to download from (default ``$ODEFLOW_MNIST_MIRRORS`` or the
        known public mirrors)

    Returns
    -------
    dict with keys ``"test"`` and, if the training files are present, ``"train"``; each
    value is ``(x, y)`` with ``x`` float32 (n, 784) in [0, 1] and ``y`` int64 (n,).

    Raises
    ------
    ValueError
        (:class:`~simulations.datasets.DataError`) if the directory or the test files are
        missing (saying where they go and how to get them), or any file is malformed.
    """
    directory = dataset_dir("mnist", directory)
    if download:
        fetch("mnist", directory, mirrors)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: MNIST directory not found; it should hold "
            f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (and the "
            f"two train-* files for the official split): "
            + _HOWTO.format(name="mnist", env="ODEFLOW_MNIST_DIR")
        )
    out = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        fi = _find(directory, f"{prefix}-images-idx3-ubyte")
        fl = _find(directory, f"{prefix}-labels-idx1-ubyte")
        if fi is None and fl is None and part == "train":
            continue
        if fi is None or fl is None:
            missing = f"{prefix}-{'images-idx3' if fi is None else 'labels-idx1'}-ubyte[.gz]"
            raise DataError(
                f"{directory / missing}: file not found (MNIST needs "
                f"{prefix}-images-idx3-ubyte and {prefix}-labels-idx1-ubyte; "
                + _HOWTO.format(name="mnist", env="ODEFLOW_MNIST_DIR")
                + ")"
            )
        key = (str(fi.resolve()), fi.stat().st_mtime, str(fl.resolve()), fl.stat().st_mtime)
        if key not in _CACHE:
            img = read_idx(fi, ndim=3)
            lab = read_idx(fl, ndim=1)
            if img.dtype != np.uint8 or lab.dtype != np.uint8:
                raise ValueError(f"{fi}: MNIST files must hold unsigned bytes (type 0x08)")
            if img.shape[0] != lab.shape[0]:
                raise ValueError(f"{fl}: {lab.shape[0]} labels but {fi} has {img.shape[0]} images")
            if lab.size and lab.max() > 9:
                raise ValueError(f"{fl}: labels must be 0..9, found {int(lab.max())}")
            x = img.reshape(img.shape[0], -1).astype(np.float32) / np.float32(255.0)
            x.setflags(write=False)
            y = lab.astype(np.int64)
            y.setflags(write=False)
            _CACHE[key] = (x, y)
        out[part] = _CACHE[key]
    return out


# ----------------------------------------------------------------------------- CIFAR-10


def _read_cifar_batch(path: Path):
    if not path.is_file():
        raise ValueError(
            f"{path}: file not found (CIFAR-10 needs data_batch_1..5 and "
            f"test_batch from the python version of the dataset)"
        )
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # pickle raises many types on garbage input
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc!r})") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{path}: CIFAR-10 batch has data of shape {data.shape} and "
            f"{labels.shape[0]} labels (expected (n, 3072) and n)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be 0..9")
    return data.astype(np.float32) / np.float32(255.0), labels


def load_cifar10(directory=None, download: bool = False, mirrors=None) -> dict:
    """CIFAR-10 python batches from ``directory`` (default ``$ODEFLOW_CIFAR10_DIR``,
    ``$ODEFLOW_DATA/cifar10`` or ``~/.cache/odeflow/data/cifar10``).

    ``download=True`` fetches ``cifar-10-python.tar.gz`` (SHA-256 verified) into that folder
    and extracts the batches there first if they are missing.

    Returns ``{"train": (x, y), "test": (x, y)}``, ``x`` float32 (n, 3072) in [0, 1]
    (channel-major, as stored), ``y`` int64.
    """
    directory = dataset_dir("cifar10", directory)
    if download:
        fetch("cifar10", directory, mirrors)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: CIFAR-10 directory not found; it should hold "
            f"data_batch_1..5 and test_batch: "
            + _HOWTO.format(name="cifar10", env="ODEFLOW_CIFAR10_DIR")
        )
    parts = [_read_cifar_batch(directory / f"data_batch_{i}") for i in range(1, 6)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return {"train": (x, y), "test": _read_cifar_batch(directory / "test_batch")}


# ----------------------------------------------------------------------------- splits


def stratified_split(y, n_train: int, n_test: int = 0, seed: int = 0):
    """Indices of a stratified (per-class proportional) random train/test split.

    Each class contributes ``round(n * share)`` examples (largest-remainder rounding so the
    totals are exact); the two index sets are disjoint.

    Returns
    -------
    (idx_train, idx_test) : int arrays, each sorted in a random (seeded) order.
    """
    y = np.asarray(y)
    n_train, n_test = int(n_train), int(n_test)
    if n_train < 0 or n_test < 0 or n_train + n_test > y.size:
        raise ValueError(
            f"stratified_split: n_train={n_train} + n_test={n_test} must be "
            f"non-negative and at most the {y.size} examples available"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)

    def quotas(n, avail):
        exact = n * avail / avail.sum() if avail.sum() else np.zeros_like(avail, float)
        q = np.minimum(np.floor(exact).astype(int), avail)
        rem = n - q.sum()
        order = np.argsort(-(exact - q), kind="stable")
        i = 0
        while rem > 0:
            c = order[i % len(order)]
            if q[c] < avail[c]:
                q[c] += 1
                rem -= 1
            i += 1
        return q

    q_train = quotas(n_train, counts)
    q_test = quotas(n_test, counts - q_train)
    tr, te = [], []
    for c, a, b in zip(classes, q_train, q_test, strict=True):
        idx = rng.permutation(np.flatnonzero(y == c))
        tr.append(idx[:a])
        te.append(idx[a : a + b])
    tr = np.concatenate(tr)
    te = np.concatenate(te)
    return rng.permutation(tr), rng.permutation(te)


def load_dataset(
    name: str = "mnist",
    dir=None,
    n_train: int | None = 8000,
    n_test: int | None = 2000,
    split: str = "auto",
    split_seed: int = 0,
    download: bool = False,
    **kwargs,
) -> Dataset:
    """Load a named data set as a :class:`Dataset`.

    Parameters
    ----------
    name : "mnist", "cifar10" or "teacher-student" (the last is synthetic; extra keyword
        arguments go to :func:`teacher_student_task`)
    dir : directory of the files (default: see module docstring)
    n_train, n_test : sizes; None = everything available in that part
    split : "auto" (official train/test if the training files exist, else a split of the
        test set), "official" (require the training files) or "subset" (always split the
        test set, the offline default)
    split_seed : seed of the stratified split (fixed, independent of the run seed)
    download : fetch missing MNIST / CIFAR-10 files into the folder first
        (:func:`simulations.datasets.fetch`)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")
    if split not in ("auto", "official", "subset"):
        raise ValueError(f"data.split must be 'auto', 'official' or 'subset', not {split!r}")
    if name == "teacher-student":
        kw = dict(kwargs)
        kw.setdefault("seed", split_seed)
        return teacher_student_task(n_train=n_train or 8000, n_test=n_test or 2000, **kw)
    if kwargs:
        raise ValueError(
            f"unknown data keys {sorted(kwargs)} for {name!r}; allowed: "
            f"name, dir, n_train, n_test, split, split_seed, download"
        )
    if not isinstance(download, bool):
        raise ValueError(f"data.download must be true or false, not {download!r}")
    where = str(dataset_dir(name, dir))
    if name == "mnist":
        parts = load_mnist(dir, download=download)
    else:
        parts = load_cifar10(dir, download=download)
    if split == "official" and "train" not in parts:
        raise ValueError(
            f"{where}: split='official' needs the training files "
            f"(train-images-idx3-ubyte, train-labels-idx1-ubyte)"
        )
    if "train" in parts and split != "subset":
        (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
        ntr = ytr.size if n_train is None else int(n_train)
        nte = yte.size if n_test is None else int(n_test)
        itr, _ = (
            stratified_split(ytr, ntr, 0, split_seed)
            if ntr < ytr.size
            else (np.arange(ytr.size), None)
        )
        ite, _ = (
            stratified_split(yte, nte, 0, split_seed + 1)
            if nte < yte.size
            else (np.arange(yte.size), None)
        )
        x_train, y_train, x_test, y_test = xtr[itr], ytr[itr], xte[ite], yte[ite]
        how = f"official split, {ntr}/{nte}"
    else:
        x, y = parts["test"]
        ntr = 8000 if n_train is None else int(n_train)
        nte = (y.size - ntr) if n_test is None else int(n_test)
        itr, ite = stratified_split(y, ntr, nte, split_seed)
        x_train, y_train, x_test, y_test = x[itr], y[itr], x[ite], y[ite]
        how = f"stratified split of the {y.size}-image test set, {ntr}/{nte}, seed {split_seed}"
    return Dataset(x_train, y_train, x_test, y_test, 10, name, f"{where} ({how})")


# ----------------------------------------------------------------------------- teacher–student


def teacher_student_task(
    N: int = 100,
    M: int = 2,
    kind: str = "sign",
    n_train: int = 8000,
    n_test: int = 2000,
    seed: int = 0,
    input_scale: float = 1.0,
):
    """Synthetic classification from a committee-machine teacher (see module docstring).

    Returns a :class:`simulations.data.Dataset` whose inputs have ``n_classes`` leading zero
    components (label slots for FF) followed by ``x ~ N(0, input_scale² I_N)``.
    """
    if kind not in ("sign", "argmax"):
        raise ValueError(f"teacher kind must be 'sign' or 'argmax', not {kind!r}")
    N, M = int(N), int(M)
    if N < 1 or M < 1 or (kind == "argmax" and M < 2):
        raise ValueError("need N >= 1, M >= 1 (M >= 2 for kind='argmax')")
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal((M, N))
    v_star = np.ones(M)
    C = 2 if kind == "sign" else M

    def sample(n):
        x = rng.standard_normal((n, N))
        nu = x @ w_star.T / math.sqrt(N)
        if kind == "sign":
            y = (erf(nu / math.sqrt(2.0)) @ v_star > 0).astype(np.int64)
        else:
            y = nu.argmax(1).astype(np.int64)
        z = np.zeros((n, C + N), np.float32)
        z[:, C:] = input_scale * x
        return z, y

    xtr, ytr = sample(int(n_train))
    xte, yte = sample(int(n_test))
    return Dataset(
        xtr,
        ytr,
        xte,
        yte,
        C,
        "teacher-student",
        f"teacher-student N={N} M={M} kind={kind} seed={seed}",
    )
