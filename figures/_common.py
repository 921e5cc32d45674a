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
    import os

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    png = outdir / f"{name}.png"
    record = {
        "figure": name,
        "parameters": _jsonable(params),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
    }
    # every file is written under a temporary name and renamed once all four exist, so an
    # interrupted run leaves no partial output (and no PNG without its parameters)
    final = [png, outdir / f"{name}.pdf", outdir / f"{name}.npz", outdir / f"{name}.json"]
    tmp = [f.with_name(f".{f.stem}.part{os.getpid()}{f.suffix}") for f in final]
    try:
        fig.savefig(tmp[0], dpi=150, bbox_inches="tight")
        fig.savefig(tmp[1], bbox_inches="tight")
        np.savez(tmp[2], **{k: np.asarray(v) for k, v in data.items()})
        tmp[3].write_text(json.dumps(record, indent=2) + "\n")
        from theory.runtime.cli import check_interrupted

        check_interrupted()  # Ctrl-C swallowed during the work: commit nothing
        for t, f in zip(tmp, final):
            os.replace(t, f)
    finally:
        for t in tmp:
            if t.exists():
                t.unlink()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png
