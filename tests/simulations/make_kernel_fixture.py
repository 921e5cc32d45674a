"""Write ``data/kernel_reference.npz``: trajectories of the hand-written integer-code kernel
(commit b7e8bde, before the simulation kernel was generated from ``theory.rules.Rule``).

``test_kernel_codegen.py`` checks that the generated kernels reproduce them bit for bit on
the CPU they were recorded on. Run from the repository root (at that commit):
``python tests/simulations/make_kernel_fixture.py``.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from numba.core import config as nbconfig  # noqa: E402
import llvmlite.binding as ll  # noqa: E402

from simulations.teacher_student import simulate  # noqa: E402

CASES = {
    "bp": dict(rule="bp"),
    "fa": dict(rule="fa"),
    "afa": dict(rule="afa"),
    "pepita": dict(rule="pepita", sigma_F=0.05),
    "pepita-forward": dict(rule="pepita-forward", sigma_F=0.05),
    "fa_linear_noise": dict(rule="fa", activation="linear", sigma=0.3),
}
BASE = dict(N=200, K=2, M=3, alpha_max=3.0, record={"every": 0.5}, seeds=[0, 5], threads=1,
            record_weights=True, eta=0.7, eta_v=0.4)


def main():
    out = {}
    for name, over in CASES.items():
        r = simulate({**BASE, **over})
        out[f"{name}_w"] = r.w[:, -1]      # final weights: every step went into them
        out[f"{name}_v"] = r.v
        if r.b is not None:
            out[f"{name}_b"] = r.b
    out["cpu"] = np.asarray(ll.get_host_cpu_name())
    path = os.path.join(os.path.dirname(__file__), "data", "kernel_reference.npz")
    np.savez_compressed(path, **out)
    print("wrote", path, {k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
