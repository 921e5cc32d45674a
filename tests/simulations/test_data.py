"""MNIST / CIFAR-10 loaders: the offline subset, the split, and rejection of bad files."""

import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest
from mnist_data import FIXTURE_DIR, FULL_DIR, needs_full_mnist

from simulations.data import (
    default_mnist_dir,
    load_cifar10,
    load_dataset,
    load_mnist,
    read_idx,
    stratified_split,
)


def _idx_bytes(arr, type_code=0x08):
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return head + arr.tobytes()


def _write_mnist(d, n=50, prefix="t10k", gz=True, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    lab = np.arange(n, dtype=np.uint8) % 10
    for kind, arr in (("images-idx3", img), ("labels-idx1", lab)):
        name = f"{prefix}-{kind}-ubyte"
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(d / (name + ".gz"), "wb") as fh:
                fh.write(data)
        else:
            (d / name).write_bytes(data)
    return img, lab


# ----------------------------------------------------------------------------- offline subset


@needs_full_mnist
def test_offline_mnist_subset_is_stratified_scaled_and_fixed():
    assert default_mnist_dir() == FULL_DIR
    assert (default_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file()
    # split="subset": the 10,000-image test set split, also where the training files exist
    d = load_dataset("mnist", n_train=8000, n_test=2000, split="subset")
    assert d.x_train.shape == (8000, 784) and d.x_test.shape == (2000, 784)
    assert d.x_train.dtype == np.float32
    assert d.x_train.min() >= 0.0 and d.x_train.max() == 1.0
    full = load_mnist()["test"][1]
    share = np.bincount(full, minlength=10) / full.size
    # stratified: every class within one example of its exact share
    assert np.all(np.abs(np.bincount(d.y_train, minlength=10) - 8000 * share) <= 1)
    assert np.all(np.abs(np.bincount(d.y_test, minlength=10) - 2000 * share) <= 1)
    again = load_dataset("mnist", n_train=8000, n_test=2000, split="subset")
    assert np.array_equal(again.y_train, d.y_train) and np.array_equal(again.x_test, d.x_test)


def test_fixture_is_the_documented_sample_and_splits_like_the_full_set():
    """The shipped 1000-image fixture: its bytes are those tests/data/README.md records, its
    class counts those of a stratified sample of the test set, and load_dataset splits it
    like the full set (stratified, scaled, fixed)."""
    digests = {
        "t10k-images-idx3-ubyte.gz": (
            "961d9d172fa392c3c5bc5d3640a730f1064475f0ea5a6d11b225150d700a3bc4"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "6cd5bf70352e4572c886e4e8dcc4b5ce7a68bdd1f3168c284f64c599dab051c8"
        ),
    }
    for name, digest in digests.items():
        assert hashlib.sha256((FIXTURE_DIR / name).read_bytes()).hexdigest() == digest
    readme = (FIXTURE_DIR.parent / "README.md").read_text()
    assert all(d in readme for d in digests.values())
    x, y = load_mnist(FIXTURE_DIR)["test"]
    assert x.shape == (1000, 784) and x.dtype == np.float32 and x.max() == 1.0
    # 1000 × the test set's class shares (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
    # 1009 of 10,000), largest-remainder rounded
    assert np.bincount(y, minlength=10).tolist() == [98, 114, 103, 101, 98, 89, 96, 103, 97, 101]
    d = load_dataset("mnist", dir=FIXTURE_DIR, n_train=800, n_test=200)
    assert d.x_train.shape == (800, 784) and "1000-image test set" in d.source
    share = np.bincount(y, minlength=10) / y.size
    assert np.all(np.abs(np.bincount(d.y_train, minlength=10) - 800 * share) <= 1)
    assert np.all(np.abs(np.bincount(d.y_test, minlength=10) - 200 * share) <= 1)
    again = load_dataset("mnist", dir=FIXTURE_DIR, n_train=800, n_test=200)
    assert np.array_equal(again.x_test, d.x_test)


def test_stratified_split_disjoint_and_seeded():
    y = np.repeat(np.arange(10), 30)
    a, b = stratified_split(y, 200, 50, seed=3)
    assert len(set(a) & set(b)) == 0 and a.size == 200 and b.size == 50
    a2, _ = stratified_split(y, 200, 50, seed=3)
    a3, _ = stratified_split(y, 200, 50, seed=4)
    assert np.array_equal(a, a2) and not np.array_equal(a, a3)
    with pytest.raises(ValueError, match="at most"):
        stratified_split(y, 250, 100)


def test_env_var_and_config_dir_override(tmp_path, monkeypatch):
    img, lab = _write_mnist(tmp_path, n=40, gz=False)
    monkeypatch.setenv("ODEFLOW_MNIST_DIR", str(tmp_path))
    d = load_dataset("mnist", n_train=30, n_test=10)
    assert d.x_train.shape == (30, 784) and str(tmp_path) in d.source
    x, y = load_mnist(tmp_path)["test"]
    assert np.allclose(x * 255, img.reshape(40, -1)) and np.array_equal(y, lab)
    monkeypatch.delenv("ODEFLOW_MNIST_DIR")
    d2 = load_dataset("mnist", dir=str(tmp_path), n_train=20, n_test=20)
    assert d2.x_test.shape == (20, 784)


def test_official_split_used_when_training_files_present(tmp_path):
    _write_mnist(tmp_path, n=60, prefix="train", seed=1)
    _write_mnist(tmp_path, n=30, prefix="t10k", seed=2)
    d = load_dataset("mnist", dir=tmp_path, n_train=None, n_test=None)
    assert d.x_train.shape[0] == 60 and d.x_test.shape[0] == 30 and "official" in d.source
    d = load_dataset("mnist", dir=tmp_path, n_train=20, n_test=10, split="subset")
    assert d.x_train.shape[0] == 20 and "stratified" in d.source


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "problem, match",
    [
        ("magic", "magic"),
        ("truncated", "truncated"),
        ("header", "truncated"),
        ("dims", "dimensions"),
        ("not_gzip", "gzip"),
    ],
)
def test_corrupted_idx_rejected_with_file_name(tmp_path, problem, match):
    _write_mnist(tmp_path, n=20, gz=False)
    f = tmp_path / "t10k-images-idx3-ubyte"
    raw = f.read_bytes()
    if problem == "magic":
        raw = b"\x08\x03\x00\x00" + raw[4:]
    elif problem == "truncated":
        raw = raw[:-100]
    elif problem == "header":
        raw = raw[:9]
    elif problem == "dims":
        raw = raw[:3] + b"\x02" + raw[4:12] + raw[16:]
    elif problem == "not_gzip":
        f.unlink()
        f = tmp_path / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        load_mnist(tmp_path)
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_missing_and_inconsistent_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_mnist(tmp_path / "nowhere")
    _write_mnist(tmp_path, n=20)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*not found"):
        load_mnist(tmp_path)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(_idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(ValueError, match="19 labels"):
        load_mnist(tmp_path)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(_idx_bytes(np.full(20, 12, np.uint8)))
    with pytest.raises(ValueError, match="0..9"):
        load_mnist(tmp_path)


def test_read_idx_other_types(tmp_path):
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    p = tmp_path / "x.idx"
    p.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3) + arr.tobytes())
    assert np.array_equal(read_idx(p), arr)


def test_unknown_dataset_and_keys():
    with pytest.raises(ValueError, match="allowed: mnist, cifar10, teacher-student"):
        load_dataset("fashion")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", split="random")
    with pytest.raises(ValueError, match="data.download must be true or false"):
        load_dataset("mnist", download="yes")


# ----------------------------------------------------------------------------- CIFAR-10


def _write_cifar(d, n=8):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, n)),
        }
        with open(d / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_loader(tmp_path, monkeypatch):
    _write_cifar(tmp_path)
    parts = load_cifar10(tmp_path)
    assert parts["train"][0].shape == (40, 3072) and parts["test"][0].shape == (8, 3072)
    assert 0 <= parts["train"][0].min() and parts["train"][0].max() <= 1
    monkeypatch.setenv("ODEFLOW_CIFAR10_DIR", str(tmp_path))
    d = load_dataset("cifar10", n_train=20, n_test=8)
    assert d.x_train.shape == (20, 3072) and d.n_classes == 10


def test_cifar10_bad_files(tmp_path, monkeypatch):
    monkeypatch.delenv("ODEFLOW_CIFAR10_DIR", raising=False)
    monkeypatch.setenv("ODEFLOW_DATA", str(tmp_path / "empty"))  # not the user's cache
    with pytest.raises(ValueError, match="ODEFLOW_CIFAR10_DIR"):
        load_cifar10()
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="data_batch_3.*not a CIFAR-10"):
        load_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="data_batch_3: file not found"):
        load_cifar10(tmp_path)
