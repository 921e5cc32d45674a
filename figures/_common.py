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
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(outdir / f"{name}.pdf", bbox_inches="tight")
    np.savez(outdir / f"{name}.npz", **{k: np.asarray(v) for k, v in data.items()})
    record = {"figure": name, "parameters": _jsonable(params),
              "created": time.strftime("%Y-%m-%d %H:%M:%S"),
              "python": platform.python_version()}
    (outdir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return png
