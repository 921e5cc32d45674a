"""What every figure script shares: output layout and parameter records."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from odeflow.api import _jsonable  # one JSON conversion for results and figure records


def save_figure(fig, outdir, name: str, params: dict, data: dict) -> Path:
    """Write ``name.png``, ``name.pdf``, ``name.npz`` (data) and ``name.json`` (parameters).

    Returns the path of the PNG.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    png = outdir / f"{name}.png"
    record = {
        "figure": name,
        "parameters": _jsonable(params),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
    }
    # every file is written under a temporary name (the project's one atomic write,
    # theory.runtime.cli.atomic_path) and the four are renamed only once all four exist, so
    # an interrupted run leaves no partial output (and no PNG without its parameters)
    from contextlib import ExitStack

    from theory.runtime.cli import atomic_path

    final = [png, outdir / f"{name}.pdf", outdir / f"{name}.npz", outdir / f"{name}.json"]
    with ExitStack() as stack:
        tmp = [stack.enter_context(atomic_path(f)) for f in final]
        fig.savefig(tmp[0], dpi=150, bbox_inches="tight")
        fig.savefig(tmp[1], bbox_inches="tight")
        np.savez(tmp[2], **{k: np.asarray(v) for k, v in data.items()})
        tmp[3].write_text(json.dumps(record, indent=2) + "\n")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png
