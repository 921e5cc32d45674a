"""Command-line plumbing shared by every command (``python -m odeflow``, ``python -m
simulations``, ``python -m figures``): exit codes, output-path checks, atomic writes,
memory estimates and "what is happening" messages on stderr.

Part of :mod:`theory.runtime`, the conventions every layer shares; it imports nothing but
the standard library.

Exit codes (one convention for every command)
---------------------------------------------
======  =====================================================================
``0``   success
``1``   the run stopped early: diverged, or a step budget ran out (the output
        is still written, with the trajectory up to the stop)
``2``   bad input: command line, config, input file, output path, a size
        that does not fit in memory (the message says what and what is allowed)
``130`` interrupted (Ctrl-C); no output file is left behind
======  =====================================================================
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_CODES",
    "check_output",
    "check_output_dir",
    "atomic_path",
    "atomic_write",
    "available_memory",
    "check_memory",
    "fmt_bytes",
    "set_verbose",
    "verbose",
    "status",
    "activity",
    "run_command",
    "exit",
    "load_npz",
    "rule_relative_to",
]

EXIT_OK = 0
EXIT_STOPPED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: the convention as text, for every command's ``--help``
EXIT_CODES = (
    "exit status: 0 ok, 1 stopped early or diverged (output still written), "
    "2 bad input, 130 interrupted (Ctrl-C; no output written)"
)


# --------------------------------------------------------------------------- outputs
def _writable_dir(d: Path, what: str, path) -> None:
    if not d.exists():
        raise ValueError(f"{what} {path}: directory {d} does not exist (create it first)")
    if not d.is_dir():
        raise ValueError(f"{what} {path}: {d} is a file, not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: directory {d} is not writable")


def check_output(path, suffixes=(".npz",), what: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written: its extension is one of
    ``suffixes``, its directory exists and is writable, and it is not a directory.

    Raises
    ------
    ValueError
        Saying what is wrong and what is allowed.
    """
    path = Path(path)
    if suffixes and path.suffix not in suffixes:
        raise ValueError(
            f"{what} {path}: the file name must end in "
            f"{' or '.join(suffixes)} (got {path.suffix or 'no extension'!r})"
        )
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give a file name")
    _writable_dir(path.parent if str(path.parent) else Path("."), what, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path} exists and is not writable")
    return path


def check_output_dir(path, what: str = "output directory") -> Path:
    """Check that ``path`` is a writable directory or can be created (its nearest existing
    ancestor is a writable directory)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} {path} exists and is a file, not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{what} {path} is not writable")
        return path
    anc = path.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{what} {path}: {anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} cannot be created: {anc} is not writable")
    return path


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` (same extension, so ``np.savez`` and
    friends write exactly there); on success it is renamed to ``path`` (atomic on POSIX),
    on any exception (``KeyboardInterrupt`` included) it is removed. A reader therefore
    sees the old file, the complete new file, or nothing — never a partial output.

    An ``OSError`` that names no file (a full disk: ``write`` fails with ENOSPC on an open
    file) is re-raised naming ``path``, so the message says which output failed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.part{os.getpid()}{path.suffix}")
    try:
        yield tmp
        check_interrupted()
        os.replace(tmp, path)
    except OSError as exc:
        if getattr(exc, "filename", None) in (None, str(tmp), tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def atomic_write(path, data) -> None:
    """Write ``data`` (bytes or str) to ``path`` atomically (see :func:`atomic_path`): the
    one atomic write of the project, so that no error leaves a temporary file behind.
    No fsync: surviving a killed *process* needs only the atomic rename."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            data = data.encode()
        tmp.write_bytes(data)


# ---------------------------------------------------------------------------- memory
def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


#: fraction of the available memory a run may plan to use
MEMORY_FRACTION = 0.8
#: estimates above this are announced on stderr (when verbose)
ANNOUNCE_BYTES = 200e6


def check_memory(nbytes: float, what: str, hint: str = "") -> None:
    """Refuse (ValueError) a run whose arrays need more than :data:`MEMORY_FRACTION` of
    the available memory, with the estimate; announce large ones on stderr."""
    avail = available_memory()
    if avail is not None and nbytes > MEMORY_FRACTION * avail:
        raise ValueError(
            f"{what} needs about {fmt_bytes(nbytes)} of memory but only "
            f"{fmt_bytes(avail)} is available" + (f"; {hint}" if hint else "")
        )
    if nbytes > ANNOUNCE_BYTES:
        status(f"{what} will use about {fmt_bytes(nbytes)} of memory")


# -------------------------------------------------------------------------- messages
_VERBOSE = False


def set_verbose(flag: bool) -> None:
    """Turn the stderr status messages of :func:`status` / :func:`activity` on or off
    (the commands turn them on unless ``--quiet``; library use is silent by default)."""
    global _VERBOSE
    _VERBOSE = bool(flag)


def verbose() -> bool:
    return _VERBOSE


def status(msg: str) -> None:
    """One line on stderr (when verbose); also a checkpoint for a swallowed Ctrl-C."""
    check_interrupted()
    if _VERBOSE:
        print(msg, file=sys.stderr, flush=True)


@contextmanager
def activity(
    msg: str,
    delay: float = 0.5,
    heartbeat: float = 15.0,
    force: bool = False,
    announce: bool = True,
):
    """Say ``msg …`` on stderr if the block takes longer than ``delay`` seconds, then
    ``… still <msg> (12 s)`` every ``heartbeat`` seconds, and ``msg: done in X s`` at the
    end (only if the start was said). Silent unless verbose (or ``force``).

    ``announce=False``: the caller has already said ``msg …`` itself (e.g. with a counter
    ``[1/3]``): only the heartbeats are printed, so the start is said once."""
    if not (_VERBOSE or force):
        yield
        return
    import threading

    t0 = time.perf_counter()
    said = threading.Event()
    stop = threading.Event()

    def talk():
        if stop.wait(delay):
            return
        if announce:
            print(f"{msg} …", file=sys.stderr, flush=True)
            said.set()
        while not stop.wait(heartbeat):
            print(
                f"  … still {msg[:1].lower() + msg[1:]} ({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    th = threading.Thread(target=talk, daemon=True)
    th.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        th.join()
        if said.is_set() and ok:
            print(f"{msg}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- the wrapper
_INTERRUPTED = [False]


def _on_sigint(signum, frame):
    _INTERRUPTED[0] = True
    raise KeyboardInterrupt


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed under :func:`run_command`, even when
    the exception our handler raised was swallowed on the way (e.g. it landed inside a
    ctypes callback while numba compiled, where Python only prints and ignores it).
    Called at checkpoints: progress messages and before any output file is committed."""
    if _INTERRUPTED[0]:
        raise KeyboardInterrupt


def run_command(prog: str, fn, *args, **kwargs) -> int:
    """Run ``fn(*args, **kwargs) -> int`` with the exit-code convention: a ValueError
    (bad input) becomes a one-line message and 2, Ctrl-C a message and 130; an OSError
    while reading or writing a named file becomes a message and 2.

    Ctrl-C is recognised by a flag set in our own SIGINT handler, not only by the
    exception type: an interrupt during the import of a C extension can surface as a
    different exception (numba's import turns it into an ImportError)."""
    import signal

    old = None
    _INTERRUPTED[0] = False
    try:
        old = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: keep the default handler
        pass
    try:
        code = int(fn(*args, **kwargs))
        check_interrupted()  # an interrupt swallowed after the last checkpoint
        return code
    except BaseException as exc:
        if _INTERRUPTED[0] or isinstance(exc, KeyboardInterrupt):
            print(f"\n{prog}: interrupted; no output written", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        if isinstance(exc, ValueError):
            print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        if isinstance(exc, MemoryError):
            print(
                f"{prog}: error: out of memory (reduce the problem size)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_BAD_INPUT
        if isinstance(exc, OSError):
            name = f" {exc.filename}:" if getattr(exc, "filename", None) else ""
            print(f"{prog}: error:{name} {exc.strerror or exc}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        raise
    finally:
        _INTERRUPTED[0] = False  # handled: later library calls are not affected
        if old is not None:
            signal.signal(signal.SIGINT, old)


# ----------------------------------------------------------------------- input files
def rule_relative_to(config: dict, base_dir) -> dict:
    """``config`` with a relative ``"rule": "file.py:NAME"`` made relative to ``base_dir``.

    Every command calls this with the folder of its config (or sweep) file, so that a
    config and the rule file beside it can be moved together; a config dict given to the
    Python API resolves a relative path from the current directory. (Here, not in
    :mod:`theory.rules`, so that a command with a built-in rule never imports sympy.)
    """
    r = config.get("rule") if isinstance(config, dict) else None
    if not isinstance(r, str) or ":" not in r:
        return config  # a built-in name, or not a string (checked later)
    path, _, name = r.rpartition(":")
    if not path or os.path.isabs(path):
        return config
    return {**config, "rule": f"{os.path.join(str(base_dir), path)}:{name}"}


def load_npz(path, what: str, expected: str) -> dict:
    """All arrays of a NumPy ``.npz`` archive, read eagerly; never unpickles.

    Parameters
    ----------
    path : path
    what : str
        What the file is for (``"--init-from"``, ``"init.weights"``), for the messages.
    expected : str
        What the file should hold, said when it does not.

    Raises
    ------
    ValueError
        The file is missing or unreadable, is not a ``.npz`` archive (e.g. a text or pickle
        file), is truncated or corrupt, or holds object arrays (pickles are never loaded).
    """
    import zipfile
    import zlib

    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if magic != b"PK\x03\x04":
        raise ValueError(f"{what}: {path} is not a NumPy .npz archive; it should be {expected}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise ValueError(
            f"{what}: {path} is truncated or corrupt ({exc}); it should be {expected}"
        ) from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(
                f"{what}: {path} holds Python objects (pickles are never "
                f"loaded); it should be {expected}"
            ) from None
        raise ValueError(
            f"{what}: {path} cannot be read ({exc}); it should be {expected}"
        ) from None


def exit(code: int):
    """End the process with ``code``. After Ctrl-C (130) this is ``os._exit``: a
    KeyboardInterrupt that landed inside a C extension's initialisation makes CPython
    re-kill itself with SIGINT at shutdown even when it was caught, which a parent would
    see as "killed by signal 2" instead of the documented exit status 130."""
    if code == EXIT_INTERRUPTED:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)
