"""One save/load protocol for every result of the project (numpy only).

:class:`SavedResult` is the base of :class:`odeflow.Result`, :class:`odeflow.SDEResult`
and the simulation ensembles (:class:`simulations.teacher_student.SimulationResult`,
``FFSimulationResult``): ``success``, ``message``, ``save(path)`` and ``load(path)``, with
a **kind tag** in the file. It lives in ``theory`` so that ``odeflow`` and ``simulations``
both may import it (``simulations`` never imports ``odeflow``).

A result class gives

* ``KIND``, the tag written as ``kind`` (``"odeflow.Result"``, …);
* ``to_dict()``, a flat mapping of arrays, numbers and strings plus dictionaries (written
  as JSON text: ``<name>_json`` in ``.npz``, nested in ``.json``);
* ``from_dict(d)`` (a classmethod), its inverse.

Files: ``.npz`` (``np.savez_compressed``, no pickles) or ``.json`` (arrays as nested lists,
NaN and ±inf as null; read back as NaN). :func:`read` turns a missing, truncated or corrupt
file into a ValueError naming the file, and a file of another kind into a ValueError naming
both kinds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["SavedResult", "write", "read", "jsonable"]

FORMATS = (".npz", ".json")


def jsonable(x):
    """``x`` with numpy arrays and scalars turned into lists and Python numbers (for
    ``json.dumps``); dict keys become strings."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _finite_json(x):
    """Arrays as nested lists with NaN/inf as None (valid JSON)."""
    a = np.asarray(x)
    if a.dtype.kind in "fc":
        if a.ndim == 0:
            return float(a) if np.isfinite(a) else None
        return np.where(np.isfinite(a), a, None).tolist()
    return a.tolist()


def write(d: dict, path, kind: str) -> Path:
    """Write the mapping ``d`` (see the module docstring) with its ``kind`` to ``path``."""
    path = Path(path)
    if path.suffix == ".npz":
        out = {"kind": np.array(kind)}
        for k, v in d.items():
            if isinstance(v, dict):
                out[k + "_json"] = np.array(json.dumps(jsonable(v)))
            elif isinstance(v, str):
                out[k] = np.array(v)
            elif v is not None:
                out[k] = np.asarray(v)
        np.savez_compressed(path, **out)
    elif path.suffix == ".json":
        js = {
            k: (jsonable(v) if isinstance(v, (dict, str)) else _finite_json(v))
            for k, v in d.items()
            if v is not None
        }
        js["kind"] = kind
        path.write_text(json.dumps(js))
    else:
        raise ValueError(
            f"unknown output format {path.suffix!r} for {path}; use {' or '.join(FORMATS)}"
        )
    return path


def read(path, kind, allow_untagged: bool = False) -> dict:
    """The mapping stored in ``path`` by :func:`write`, after checking its kind.

    ``kind``: the expected tag (or a tuple of accepted tags). ``allow_untagged``: accept a
    file without a tag (written before tags existed). JSON-text entries (``*_json``) are
    decoded; string arrays become ``str``."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if path.suffix not in FORMATS:
        raise ValueError(
            f"unknown file format {path.suffix!r} for {path}; use {' or '.join(FORMATS)}"
        )
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                d = {}
                for k in z.files:
                    a = z[k]
                    if k.endswith("_json"):
                        d[k[:-5]] = json.loads(str(a))
                    elif a.dtype.kind == "U":
                        d[k] = str(a)
                    else:
                        d[k] = a
        else:
            d = json.loads(path.read_text())
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not a readable {kinds[0]} file (truncated or corrupt?): {exc}"
        ) from None
    found = d.get("kind")
    if found is None and allow_untagged:
        return d
    if found not in kinds:
        raise ValueError(
            f"{path} holds a {found or 'file without a kind tag'!s}, not a {' or '.join(kinds)}"
        )
    return d


class SavedResult:
    """Base of every result: ``success``, ``message``, ``save``, ``load`` (kind-tagged).

    Subclasses define ``KIND`` (class attribute), ``to_dict()`` and the classmethod
    ``from_dict(d)``, and carry ``status`` (>= 0: success) and ``message``. ``ACCEPT``:
    further tags ``load`` accepts (e.g. an older name); ``UNTAGGED_OK``: accept files
    written before kind tags existed."""

    KIND = "result"
    ACCEPT: tuple = ()
    UNTAGGED_OK = False

    @property
    def success(self) -> bool:
        """True when the run reached its end without diverging (``status >= 0``)."""
        return getattr(self, "status", 0) >= 0

    def save(self, path) -> Path:
        """Write to ``.npz`` or ``.json`` (the kind tag ``KIND`` included)."""
        return write(self.to_dict(), path, self.KIND)

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`; ValueError for a missing, truncated,
        corrupt file or one of another kind."""
        d = read(path, (cls.KIND,) + tuple(cls.ACCEPT), allow_untagged=cls.UNTAGGED_OK)
        d.pop("kind", None)
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: incomplete or invalid {cls.KIND} file ({exc})") from None
