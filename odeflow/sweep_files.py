"""The files of a sweep directory (see :mod:`odeflow.sweep`): atomic writes,
``summary.csv``, each point's ``.json`` record and the check of its ``.npz`` before a
resumed sweep trusts it, and ``sweep.lock`` (one live sweep per directory).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

from .sweep_spec import SweepPoint, _canon, _is_int

__all__ = ["SUMMARY_COLUMNS", "SweepBusy"]

#: result columns of summary.csv (after ``index, key`` and the swept names)
SUMMARY_COLUMNS = (
    "status",
    "eg_final",
    "eg_std",
    "diverged",
    "alpha_final",
    "alpha_diverged",
    "cos_vb_final",
    "norm_b_final",
    "wall_time",
    "message",
    "file",
)
#: statuses counted as finished (skipped on a re-run)
_FINISHED = ("ok", "diverged", "max_steps", "step_underflow")


def _atomic_write(path: Path, data: bytes) -> None:
    """The project's one atomic write (:func:`theory.runtime.cli.atomic_write`): a killed sweep
    leaves either the complete file or none, and a failed write (full disk) no temporary
    file, with an error naming ``path``."""
    from theory.runtime.cli import atomic_write

    atomic_write(path, data)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(_canon(v))
    return str(v)


class _Table:
    """summary.csv: header, rows appended as points finish, rewritten in order at the end."""

    def __init__(self, path: Path, names):
        self.path = path
        self.header = ["index", "key", *names, *SUMMARY_COLUMNS]
        self.names = names

    def _line(self, point: SweepPoint, row: dict) -> list:
        return [
            point.index,
            point.key,
            *(_cell(point.values[n]) for n in self.names),
            *(_cell(row.get(c)) for c in SUMMARY_COLUMNS),
        ]

    def write_all(self, points, rows) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.header)
        for p, r in zip(points, rows):
            if r is not None:
                w.writerow(self._line(p, r))
        _atomic_write(self.path, buf.getvalue().encode())

    def append(self, point, row) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow(self._line(point, row))


def _read_doc(path: Path):
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) and isinstance(doc.get("row"), dict) else None
    except (OSError, ValueError):
        return None  # unreadable: treat as not done (it is rewritten atomically)


def _npz_intact(path: Path, record) -> bool:
    """Whether a point's ``.npz`` is the file its ``.json`` recorded (size, SHA-256); a
    file from before checksums were recorded must at least be a readable zip archive."""
    try:
        if isinstance(record, dict):
            if path.stat().st_size != record.get("size"):
                return False
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest() == record.get("sha256")
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def _finished_row(pdir: Path, key: str, retry_failed: bool):
    """``(row, done)`` of a point from an earlier run: ``row`` as recorded (None if there
    is none), ``done`` whether it may be skipped (finished, and its result file intact)."""
    doc = _read_doc(pdir / f"{key}.json")
    if doc is None:
        return None, False
    row = doc["row"]
    st = row.get("status")
    if st == "failed":
        return row, not retry_failed
    if st not in _FINISHED:
        return row, False
    return row, _npz_intact(pdir / f"{key}.npz", doc.get("npz"))


class SweepBusy(ValueError):
    """Another live sweep holds the directory's lock."""


class _SweepLock:
    """``DIR/sweep.lock`` (JSON: pid, host, started): one sweep per directory at a time.

    Taken with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+). A lock whose PID is dead on
    this host is stale (a sweep killed by ``kill -9``) and taken over, with a note on
    stderr; a live one, or one from another host (which cannot be checked from here),
    makes the new sweep refuse with :class:`SweepBusy`, saying who holds it.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / "sweep.lock"
        self.held = False

    def acquire(self) -> None:
        import socket

        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._read()
                if other is None:
                    # being written by its holder right now, or garbage: look again shortly
                    time.sleep(0.2)
                    other = self._read()
                if other is not None and not self._stale(other, me["host"]):
                    raise SweepBusy(
                        f"another sweep (PID {other.get('pid')} on host {other.get('host')},"
                        f" since {other.get('started')}) is writing to {self.path.parent}; "
                        "wait for it to finish, or use another output directory (if that "
                        f"sweep is dead, delete {self.path})"
                    ) from None
                why = (
                    "unreadable"
                    if other is None
                    else f"PID {other.get('pid')} is no longer running"
                )
                print(
                    f"odeflow sweep: taking over the stale lock {self.path} ({why})",
                    file=sys.stderr,
                    flush=True,
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise SweepBusy(f"cannot take the lock {self.path} (another sweep keeps taking it)")

    def _read(self):
        try:
            d = json.loads(self.path.read_text())
            return d if isinstance(d, dict) else None
        except (OSError, ValueError):
            return None

    @staticmethod
    def _stale(other: dict, host: str) -> bool:
        pid = other.get("pid")
        if other.get("host") != host or not _is_int(pid):
            return False
        if pid == os.getpid():
            return False  # this process: a sweep() still running in another thread
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
