"""The data folder and the verified download, against a local HTTP server on 127.0.0.1
(started here, random port; the network is never used): a good file, a corrupted one, a
connection dropped mid-file (resumed, or restarted when the server ignores ranges), a 404
on the first mirror, every mirror down; MNIST and CIFAR-10 end to end."""

import gzip
import hashlib
import io
import os
import pickle
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from mnist_data import FULL_DIR

from simulations import datasets as ds
from simulations.data import load_cifar10, load_dataset, load_mnist

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "mnist-1k"


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (bytes, mode)``; mode "ok", "drop" (the first
    request sends half the bytes, then closes), "drop-norange" (same, and Range is
    ignored: always 200 with the whole file). Logs (path, Range header) in server.log."""

    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        rng = self.headers.get("Range")
        srv.log.append((self.path, rng))
        if self.path not in srv.routes:
            self.send_error(404, "Not Found")
            return
        data, mode = srv.routes[self.path]
        first = sum(p == self.path for p, _ in srv.log) == 1
        start = 0
        if rng and mode == "drop-badrange":  # answers a range with the wrong one
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if rng and mode != "drop-norange":
            start = int(rng.split("=")[1].split("-")[0])
        if start >= len(data) and start:
            self.send_error(416, "Range Not Satisfiable")
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode.startswith("drop") and first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.routes, srv.log = {}, []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No data variable from the caller's environment; the user cache in tmp_path."""
    for v in (
        "ODEFLOW_DATA",
        "ODEFLOW_MNIST_DIR",
        "ODEFLOW_CIFAR10_DIR",
        "ODEFLOW_MNIST_MIRRORS",
        "ODEFLOW_CIFAR10_MIRRORS",
    ):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _spec(name, data):
    return ds.RemoteFile(name, hashlib.sha256(data).hexdigest())


PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


# ----------------------------------------------------------------------------- folders


def test_folders_env_and_default(no_env, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "odeflow" / "data"
    assert ds.dataset_dir("mnist") == cache / "mnist"
    assert ds.dataset_dir("cifar10") == cache / "cifar10"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ds.dataset_dir("mnist") == tmp_path / "home" / ".cache" / "odeflow" / "data" / "mnist"
    monkeypatch.setenv("ODEFLOW_DATA", str(tmp_path / "d"))
    assert ds.dataset_dir("mnist") == tmp_path / "d" / "mnist"
    monkeypatch.setenv("ODEFLOW_MNIST_DIR", str(tmp_path / "m"))  # the alias wins
    assert ds.dataset_dir("mnist") == tmp_path / "m"
    assert ds.dataset_dir("cifar10") == tmp_path / "d" / "cifar10"
    assert ds.dataset_dir("mnist", tmp_path / "x") == tmp_path / "x"
    # the default never looks next to the source tree (the workplace's ../shared)
    assert "shared" not in str(ds.dataset_dir("cifar10"))
    with pytest.raises(ValueError, match="allowed: mnist, cifar10"):
        ds.dataset_dir("fashion")


def test_mirror_list_from_argument_env_or_default(no_env, monkeypatch):
    assert ds.mirrors_for("mnist") == ds.MIRRORS["mnist"]
    monkeypatch.setenv("ODEFLOW_MNIST_MIRRORS", "http://a/, http://b/")
    assert ds.mirrors_for("mnist") == ("http://a/", "http://b/")
    assert ds.mirrors_for("mnist", "http://c/") == ("http://c/",)
    with pytest.raises(ValueError, match="empty mirror list"):
        ds.mirrors_for("mnist", [])


def test_missing_data_says_where_and_how(no_env, tmp_path):
    with pytest.raises(ds.DataError) as info:
        load_mnist()
    msg = str(info.value)
    assert str(tmp_path / "cache" / "odeflow" / "data" / "mnist") in msg
    assert "python -m simulations.datasets mnist" in msg and "ODEFLOW_DATA" in msg
    with pytest.raises(ValueError, match="ODEFLOW_CIFAR10_DIR"):
        load_cifar10()


# ----------------------------------------------------------------------------- download


def test_good_file(server, tmp_path, capsys):
    server.routes["/m/f.bin"] = (PAYLOAD, "ok")
    path = ds.download_file(_spec("f.bin", PAYLOAD), [server.url + "/m/"], tmp_path)
    assert path == tmp_path / "f.bin" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    err = capsys.readouterr().err
    assert f"wrote {path}" in err and "SHA-256 verified" in err
    # a verified file is not fetched again
    n = len(server.log)
    ds.download_file(_spec("f.bin", PAYLOAD), [server.url + "/m/"], tmp_path)
    assert len(server.log) == n


def test_corrupted_file_goes_to_next_mirror_and_leaves_nothing(server, tmp_path):
    bad = bytearray(PAYLOAD)
    bad[1000] ^= 1
    server.routes["/a/f.bin"] = (bytes(bad), "ok")
    server.routes["/b/f.bin"] = (PAYLOAD, "ok")
    spec = _spec("f.bin", PAYLOAD)
    with pytest.raises(ds.DataError) as info:
        ds.download_file(spec, [server.url + "/a/"], tmp_path / "one")
    assert "checksum mismatch" in str(info.value) and str(tmp_path / "one") in str(info.value)
    assert list((tmp_path / "one").iterdir()) == []  # neither f.bin nor f.bin.part
    path = ds.download_file(spec, [server.url + "/a/", server.url + "/b/"], tmp_path / "two")
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.log][-2:] == ["/a/f.bin", "/b/f.bin"]


@pytest.mark.parametrize("mode", ["drop", "drop-norange"])
def test_dropped_connection_resumes_or_restarts(server, tmp_path, capsys, mode):
    server.routes["/m/f.bin"] = (PAYLOAD, mode)
    path = ds.download_file(_spec("f.bin", PAYLOAD), [server.url + "/m"], tmp_path)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    assert len(server.log) == 2
    # the second request asks for the rest (the server of "drop-norange" ignores it and
    # sends the whole file again, which replaces the partial one)
    assert server.log[1][1] == f"bytes={len(PAYLOAD) // 2}-"
    err = capsys.readouterr().err
    assert "connection dropped" not in err and "(resuming)" in err


def test_wrong_range_answer_restarts_from_zero(server, tmp_path):
    """A 206 for another range than asked is not appended: the partial file is dropped and
    the next attempt fetches the whole file."""
    server.routes["/m/f.bin"] = (PAYLOAD, "drop-badrange")
    path = ds.download_file(_spec("f.bin", PAYLOAD), [server.url + "/m/"], tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.log] == [None, f"bytes={len(PAYLOAD) // 2}-", None]


def test_interrupted_part_file_resumes_in_a_later_run(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:12345])
    server.routes["/m/f.bin"] = (PAYLOAD, "ok")
    path = ds.download_file(_spec("f.bin", PAYLOAD), [server.url + "/m/"], tmp_path)
    assert path.read_bytes() == PAYLOAD and server.log == [("/m/f.bin", "bytes=12345-")]


def test_404_on_first_mirror_uses_the_second(server, tmp_path):
    server.routes["/b/f.bin"] = (PAYLOAD, "ok")
    path = ds.download_file(
        _spec("f.bin", PAYLOAD), [server.url + "/a/", server.url + "/b/"], tmp_path
    )
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.log] == ["/a/f.bin", "/b/f.bin"]


def test_all_mirrors_down_names_files_mirrors_and_folder(no_env, tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/mnist/"
    with pytest.raises(ds.DataError) as info:
        load_mnist(
            download=True,
            mirrors=[dead],
        )
    msg = str(info.value)
    folder = tmp_path / "cache" / "odeflow" / "data" / "mnist"
    for f in ds.FILES["mnist"]:
        assert f.name in msg
    assert dead in msg and f"Put the files in {folder}" in msg
    assert not any(folder.iterdir())  # no partial file kept from a failed connection


# ----------------------------------------------------------------------------- data sets


def test_mnist_end_to_end_with_fixture_files(server, tmp_path, monkeypatch, capsys):
    """load_mnist(download=True) fetches the files of FILES["mnist"] and reads them (here
    the shipped 1000-image fixture stands in for the real files, with its own digests)."""
    files = []
    for f in sorted(FIXTURE.glob("*.gz")):
        data = f.read_bytes()
        server.routes["/mnist/" + f.name] = (data, "ok")
        raw = gzip.decompress(data)
        # published digest wrong on purpose: the decompressed-content digest must suffice
        files.append(ds.RemoteFile(f.name, "0" * 64, hashlib.sha256(raw).hexdigest()))
    monkeypatch.setitem(ds.FILES, "mnist", tuple(files))
    monkeypatch.setenv("ODEFLOW_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ODEFLOW_MNIST_MIRRORS", server.url + "/mnist/")
    monkeypatch.delenv("ODEFLOW_MNIST_DIR", raising=False)
    d = load_dataset("mnist", n_train=800, n_test=200, download=True)
    assert d.x_train.shape == (800, 784) and str(tmp_path / "data" / "mnist") in d.source
    ref = load_mnist(FIXTURE)["test"]
    got = load_mnist(tmp_path / "data" / "mnist")["test"]
    assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1])
    assert capsys.readouterr().err.count("SHA-256 verified") == 2


def test_published_digests_match_the_official_test_files():
    """The digests in FILES["mnist"] (published; content digests cross-checked against
    several projects) accept the official t10k files where the full test set is present."""
    d = FULL_DIR
    if d is None:
        pytest.skip("official MNIST test files absent (python -m simulations.datasets mnist)")
    specs = {f.name: f for f in ds.FILES["mnist"]}
    present = [n for n in specs if n.startswith("t10k") and (d / n).is_file()]
    if len(present) < 2:
        pytest.skip(f"gzipped official MNIST test files not in {d}")
    for n in present:
        assert ds.verify(d / n, specs[n]), n
    # and reject the 1000-image fixture under the same names
    assert not ds.verify(FIXTURE / "t10k-labels-idx1-ubyte.gz", specs["t10k-labels-idx1-ubyte.gz"])


def _cifar_tarball():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        for name in names:
            obj = {
                b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8),
                b"labels": list(rng.integers(0, 10, 6)),
            }
            raw = pickle.dumps(obj)
            info = tarfile.TarInfo("cifar-10-batches-py/" + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        evil = tarfile.TarInfo("../evil")  # outside the batches folder: ignored
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    return buf.getvalue()


def test_cifar10_download_verify_extract(server, tmp_path, monkeypatch):
    tgz = _cifar_tarball()
    server.routes["/kriz/cifar-10-python.tar.gz"] = (tgz, "drop")
    monkeypatch.setitem(ds.FILES, "cifar10", (_spec("cifar-10-python.tar.gz", tgz),))
    folder = tmp_path / "c10"
    parts = load_cifar10(folder, download=True, mirrors=[server.url + "/kriz/"])
    assert parts["train"][0].shape == (30, 3072) and parts["test"][0].shape == (6, 3072)
    assert (folder / "batches.meta").is_file() and not (tmp_path / "evil").exists()
    assert not any(p.name.endswith(".part") for p in folder.iterdir())
    n = len(server.log)
    load_cifar10(folder, download=True, mirrors=[server.url + "/kriz/"])
    assert len(server.log) == n  # extracted batches present: nothing fetched


def test_cli_where_and_failure(no_env, tmp_path, capsys):
    assert ds.main(["mnist", "--where"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache" / "odeflow" / "data" / "mnist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    assert ds.main(["cifar10", "--dir", str(tmp_path / "c"), "--mirror", dead]) == 1
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and dead in err and os.fspath(tmp_path / "c") in err
