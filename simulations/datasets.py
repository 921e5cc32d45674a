"""Where the real data sets live, and how they get there: a cache folder and a verified download.

Folders
-------
Every data set has one folder; the first of these that applies is used:

1. an explicit ``directory`` argument (config key ``data.dir``);
2. ``$ODEFLOW_MNIST_DIR`` (MNIST) or ``$ODEFLOW_CIFAR10_DIR`` (CIFAR-10), a folder holding
   the files themselves;
3. ``$ODEFLOW_DATA/mnist`` or ``$ODEFLOW_DATA/cifar10`` when ``ODEFLOW_DATA`` is set;
4. ``<user cache>/odeflow/data/mnist`` (``…/cifar10``), where the user cache is
   ``$XDG_CACHE_HOME`` or ``~/.cache`` (``%LOCALAPPDATA%`` on Windows).

Nothing is ever looked up relative to the source tree.

Download
--------
:func:`fetch` downloads the files of a data set into its folder from the first mirror that
works (``mirrors`` argument, else ``$ODEFLOW_MNIST_MIRRORS`` / ``$ODEFLOW_CIFAR10_MIRRORS``, a
comma- or space-separated list of base URLs, else :data:`MIRRORS`):

* each file goes to ``<name>.part`` first and is renamed into place only after its SHA-256
  matches (no half-written or unverified file ever carries the real name);
* a broken transfer resumes where it stopped (HTTP ``Range``) or, if the server ignores
  ranges, starts again; a file that fails its checksum is deleted and the next mirror tried;
* it says on stderr what it fetched and where it wrote it;
* when every mirror fails it raises :class:`DataError` naming the files, the mirrors tried
  (with what went wrong) and the folder to put the files in by hand.

Only the standard library (``urllib``) is used.

From the command line: ``python -m simulations.datasets mnist`` (or ``cifar10``; ``--dir``,
``--mirror URL`` …, ``--where`` to print the folder and exit).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from theory.runtime.cli import atomic_path

__all__ = [
    "DataError",
    "RemoteFile",
    "FILES",
    "MIRRORS",
    "data_root",
    "dataset_dir",
    "mirrors_for",
    "download_file",
    "fetch",
    "verify",
    "extract_cifar10",
    "main",
]


class DataError(ValueError):
    """Data files missing, unreadable or not downloadable (the message says what to do)."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file and the digests that identify it.

    Attributes
    ----------
    name : file name, the same on every mirror
    sha256 : SHA-256 of the file as published (hex)
    gunzip_sha256 : SHA-256 of its decompressed content, for ``.gz`` files; a mirror that
        recompressed the same data (other gzip header or level) is accepted by this digest
    md5 : the published MD5, kept for reference (not used when a SHA-256 is known)
    size : bytes of the published file, or 0 if unknown (a sanity bound only)
    """

    name: str
    sha256: str
    gunzip_sha256: str = ""
    md5: str = ""
    size: int = 0


# MNIST, Y. LeCun, C. Cortes, C. J. C. Burges. Digests of the gzipped files as distributed by
# the mirrors below (the same values are listed by several independent projects that verify
# these downloads), and of their decompressed IDX content. The published MD5s are the ones
# torchvision checks. The t10k content digests were also recomputed here from a local copy
# (whose gzip wrapper differs from the published one: hence the content digest).
_MNIST = (
    RemoteFile(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        9912422,
    ),
    RemoteFile(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "d53e105ee54ea40749a09fcbcd1e9432",
        28881,
    ),
    RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "9fb629c4189551a2d022fa330f9573f3",
        1648877,
    ),
    RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "ec29112dd5afa0611ce80d1b7f02629c",
        4542,
    ),
)

# CIFAR-10 (A. Krizhevsky, 2009), "CIFAR-10 python version": published MD5 (on the data
# set's page) and the SHA-256 the Keras loader verifies.
_CIFAR10 = (
    RemoteFile(
        "cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        md5="c58f30108f718f92721af3b95e74349a",
        size=170498071,
    ),
)

#: the files of each data set
FILES = {"mnist": _MNIST, "cifar10": _CIFAR10}

#: default mirrors (base URLs; the file name is appended), tried in order
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

_DIR_ENV = {"mnist": "ODEFLOW_MNIST_DIR", "cifar10": "ODEFLOW_CIFAR10_DIR"}
_MIRROR_ENV = {"mnist": "ODEFLOW_MNIST_MIRRORS", "cifar10": "ODEFLOW_CIFAR10_MIRRORS"}
_CHUNK = 1 << 16


def _check_name(name: str) -> None:
    if name not in FILES:
        raise ValueError(f"unknown data set {name!r}; allowed: {', '.join(FILES)}")


# ----------------------------------------------------------------------------- folders


def data_root() -> Path:
    """``$ODEFLOW_DATA``, else ``<user cache>/odeflow/data``.

    The user cache is ``$XDG_CACHE_HOME`` (if set and absolute), else ``~/.cache``; on
    Windows ``%LOCALAPPDATA%``.
    """
    env = os.environ.get("ODEFLOW_DATA")
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "odeflow" / "data"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "odeflow" / "data"


def dataset_dir(name: str, directory=None) -> Path:
    """The folder of data set ``name`` ("mnist" or "cifar10"): ``directory`` if given, else
    ``$ODEFLOW_MNIST_DIR`` / ``$ODEFLOW_CIFAR10_DIR``, else ``data_root() / name``."""
    _check_name(name)
    if directory is not None:
        return Path(directory).expanduser()
    env = os.environ.get(_DIR_ENV[name])
    return Path(env).expanduser() if env else data_root() / name


def mirrors_for(name: str, mirrors=None) -> tuple[str, ...]:
    """The mirror list: ``mirrors`` (a string or a sequence), else the environment variable
    ``ODEFLOW_<NAME>_MIRRORS`` (comma- or space-separated), else :data:`MIRRORS`."""
    _check_name(name)
    if mirrors is None:
        mirrors = os.environ.get(_MIRROR_ENV[name]) or MIRRORS[name]
    if isinstance(mirrors, str):
        mirrors = mirrors.replace(",", " ").split()
    out = tuple(str(m) for m in mirrors if str(m).strip())
    if not out:
        raise ValueError(f"{name}: empty mirror list (give base URLs such as {MIRRORS[name][0]!r})")
    return out


# ----------------------------------------------------------------------------- digests


def _sha256(path: Path, gunzip: bool = False) -> str:
    h = hashlib.sha256()
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path, spec: RemoteFile) -> bool:
    """True if ``path`` is ``spec``'s file: its SHA-256, or (``.gz`` files) the SHA-256 of
    its decompressed content, matches. A file that is not valid gzip does not match."""
    path = Path(path)
    if not path.is_file():
        return False
    if _sha256(path) == spec.sha256:
        return True
    if spec.gunzip_sha256:
        try:
            return _sha256(path, gunzip=True) == spec.gunzip_sha256
        except (OSError, EOFError, gzip.BadGzipFile):
            return False
    return False


# ----------------------------------------------------------------------------- download


def _say(msg: str) -> None:
    print(f"odeflow: {msg}", file=sys.stderr, flush=True)


def _join(base: str, name: str) -> str:
    return base if base.endswith(name) else base.rstrip("/") + "/" + name


def _transfer(url: str, part: Path, timeout: float) -> None:
    """Append ``url``'s bytes to ``part``, resuming at its current size.

    A ``206`` answer whose ``Content-Range`` starts at that size is appended; any ``200``
    answer (the server ignored the range) restarts the file from zero; a ``206`` for
    another range drops the partial file. Raises on HTTP errors and on a transfer shorter
    than the announced length (the bytes received are kept, so the next attempt resumes
    after them).
    """
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "odeflow-data/1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status = getattr(resp, "status", 200)
        crange = resp.headers.get("Content-Range", "")
        if status == 206 and crange.startswith(f"bytes {have}-"):
            mode = "ab"
        elif status == 206:  # a range we did not ask for: start again next time
            part.unlink(missing_ok=True)
            raise ConnectionError(f"server sent range {crange!r}, asked for bytes {have}-")
        else:
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        want = int(length) if length and length.isdigit() else None
        got = 0
        with open(part, mode) as out:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except http.client.IncompleteRead as exc:
                    out.write(exc.partial)
                    got += len(exc.partial)
                    raise ConnectionError(f"connection dropped after {have + got} bytes") from exc
                if not block:
                    break
                out.write(block)
                got += len(block)
        if want is not None and got < want:
            raise ConnectionError(f"connection dropped after {have + got} of {have + want} bytes")


def download_file(
    spec: RemoteFile, mirrors, directory, *, timeout: float = 60.0, attempts: int = 3
) -> Path:
    """Download ``spec`` into ``directory`` from the first mirror that delivers it intact.

    Parameters
    ----------
    spec : the file and its digests
    mirrors : base URLs, tried in order (the file name is appended)
    directory : destination folder (created if needed)
    timeout : seconds of socket inactivity before a transfer counts as broken
    attempts : transfers per mirror; after a broken one the next resumes (HTTP Range)

    Returns
    -------
    the verified file's path, ``directory / spec.name``. An existing verified file is kept.

    Raises
    ------
    DataError
        when no mirror delivers a file with the right SHA-256 (the message lists every
        mirror with what went wrong, and the folder to put the file in by hand).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / spec.name
    if verify(dest, spec):
        return dest
    part = directory / (spec.name + ".part")
    problems = []
    for base in mirrors:
        url = _join(base, spec.name)
        for attempt in range(1, attempts + 1):
            resumed = part.is_file() and part.stat().st_size > 0
            _say(f"downloading {url}" + (" (resuming)" if resumed else ""))
            try:
                _transfer(url, part, timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and part.is_file():  # range past the end: start again
                    part.unlink()
                    continue
                problems.append(f"{url}: HTTP {exc.code} {exc.reason}")
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                problems.append(f"{url}: {reason} (attempt {attempt} of {attempts})")
                continue
            if verify(part, spec):
                os.replace(part, dest)
                _say(f"wrote {dest} ({dest.stat().st_size} bytes, SHA-256 verified)")
                return dest
            size = part.stat().st_size
            part.unlink()  # a wrong file never stays, not even as .part
            problems.append(
                f"{url}: checksum mismatch ({size} bytes; expected SHA-256 {spec.sha256[:16]}…)"
            )
            break
    raise DataError(
        f"could not download {spec.name} into {directory}:\n  "
        + "\n  ".join(problems or ["no mirror given"])
        + f"\nPut {spec.name} in {directory} by hand, or give other mirrors."
    )


# ----------------------------------------------------------------------------- data sets


def _missing_message(name: str, directory: Path, files, mirrors, problems) -> str:
    lines = [
        f"{name}: could not download {', '.join(f.name for f in files)}",
        f"  mirrors tried: {', '.join(mirrors)}",
    ]
    lines += [f"  {p}" for p in problems]
    lines.append(
        f"Put the files in {directory} by hand (or set ODEFLOW_DATA / "
        f"{_DIR_ENV[name]} to a folder holding them), or retry with other mirrors "
        f"({_MIRROR_ENV[name]}=URL1,URL2)."
    )
    return "\n".join(lines)


def fetch(
    name: str, directory=None, mirrors=None, *, timeout: float = 60.0, attempts: int = 3
) -> Path:
    """Make sure data set ``name`` is in its folder, downloading what is missing.

    Parameters
    ----------
    name : "mnist" (the four gzipped IDX files) or "cifar10" (the python-pickle tarball,
        verified, then extracted into the folder: ``data_batch_1`` … ``test_batch``)
    directory : folder (default :func:`dataset_dir`)
    mirrors : base URLs (default :func:`mirrors_for`)

    Returns
    -------
    the folder holding the files.

    Raises
    ------
    DataError
        naming the files that could not be downloaded, the mirrors tried (with each
        failure) and the folder to put the files in by hand.
    """
    directory = dataset_dir(name, directory)
    mirrors = mirrors_for(name, mirrors)
    if (
        name == "cifar10"
        and (directory / "test_batch").is_file()
        and all((directory / f"data_batch_{i}").is_file() for i in range(1, 6))
    ):
        return directory
    files = FILES[name]
    if name == "mnist":
        # a file the user put there uncompressed counts as present (the loader reads both)
        files = tuple(f for f in files if not (directory / f.name[:-3]).is_file())
    missing, problems = [], []
    for spec in files:
        try:
            download_file(spec, mirrors, directory, timeout=timeout, attempts=attempts)
        except DataError as exc:
            missing.append(spec)
            problems += [ln.strip() for ln in str(exc).splitlines()[1:] if ln.startswith("  ")]
    if missing:
        raise DataError(_missing_message(name, directory, missing, mirrors, problems))
    if name == "cifar10":
        extract_cifar10(directory / FILES[name][0].name, directory)
    return directory


def extract_cifar10(archive, directory) -> Path:
    """Extract the batches of ``cifar-10-python.tar.gz`` into ``directory`` (flat).

    Only regular files under ``cifar-10-batches-py/`` are taken, each written under a
    temporary name and renamed, so an interrupted extraction leaves no truncated batch.
    """
    archive, directory = Path(archive), Path(directory)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and m.name.startswith("cifar-10-batches-py/")
                and "/" not in m.name[len("cifar-10-batches-py/") :]
            ]
            if not members:
                raise DataError(f"{archive}: no cifar-10-batches-py/ files inside")
            for m in members:
                target = directory / Path(m.name).name
                # the project's one atomic write: no partial batch file on any error
                with atomic_path(target) as tmp:
                    with tar.extractfile(m) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: cannot be extracted ({exc})") from exc
    _say(f"extracted {len(members)} files into {directory}")
    return directory


# ----------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    """``python -m simulations.datasets {mnist,cifar10} [--dir D] [--mirror URL]… [--where]``"""
    p = argparse.ArgumentParser(
        prog="python -m simulations.datasets",
        description="Download a data set into the odeflow data folder (SHA-256 verified).",
    )
    p.add_argument("name", choices=sorted(FILES))
    p.add_argument("--dir", default=None, help="folder (default: see --where)")
    p.add_argument(
        "--mirror",
        action="append",
        default=None,
        help="base URL to download from (repeatable; default: the known mirrors)",
    )
    p.add_argument("--where", action="store_true", help="print the folder and exit")
    a = p.parse_args(argv)
    folder = dataset_dir(a.name, a.dir)
    if a.where:
        print(folder)
        return 0
    try:
        print(fetch(a.name, folder, a.mirror))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
