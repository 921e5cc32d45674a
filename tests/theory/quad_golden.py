"""Golden right-hand sides of the generated quadrature kernels, for the test that the
per-node code rewrite (one transcendental per field and node, first-pass values reused,
CSE across the rule's expressions) changed nothing but round-off.

``python tests/theory/quad_golden.py`` (run once, on the code *before* that rewrite)
wrote ``data/quad_rhs_golden.npz``; :func:`cases` lists what it holds."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data") / "quad_rhs_golden.npz"
RULES = ("bp", "fa", "afa", "pepita", "pepita-forward")
ACTS = ("tanh", "relu", "erf", "sigmoid", "z*tanh(z)")
SIZES = ((2, 2), (3, 2))
SIGMAS = (0.0, 0.3)
N_NODES = 256


def state(K, M, seed):
    """A state along a learning curve: grown weights (Q_kk up to ~3), R up to ~1."""
    from theory.state import OrderParameters

    rng = np.random.default_rng(seed)
    d = 400
    ws = rng.normal(size=(M, d))
    w = rng.normal(size=(K, d)) * rng.uniform(0.5, 1.5, size=(K, 1))
    w = w + rng.uniform(0.0, 1.0, size=(K, M)) @ ws / math.sqrt(M)
    return OrderParameters(
        Q=w @ w.T / d,
        R=w @ ws.T / d,
        T=ws @ ws.T / d,
        v=rng.normal(size=K),
        v_star=rng.normal(size=M),
        b=rng.normal(size=K),
        c=rng.normal(size=M),
        sigma_F2=0.05,
        F_norm2=0.05 * d,
    )


def cases():
    """(key, rule, activation, K, M, sigma) of every golden case (afa with relu: Stein)."""
    out = []
    for rule in RULES:
        for act in ACTS:
            for K, M in SIZES:
                for sigma in SIGMAS:
                    out.append((f"{rule}|{act}|{K}{M}|{sigma}", rule, act, K, M, sigma))
    return out


def evaluate(rule, act, K, M, sigma):
    """(rhs, eg, noise or None) of the generated system at the case's state, η = 0.7,
    η_v = 0.4 (unequal rates), Sobol with N_NODES points."""
    from theory.codegen_quad import build_quad_system

    sysm = build_quad_system(rule, K, M, act, {"scheme": "sobol", "n": N_NODES})
    st = state(K, M, 10 * K + M)
    if sysm.rule.feedback != "adaptive":
        st = st.replace(c=None, sigma_F2=None, F_norm2=None)
    p = sysm.params(st, 0.7, 0.4, sigma)
    y = sysm.layout.pack(st)
    dy = np.empty_like(y)
    sysm.rhs(y, p, dy)
    eg = float(sysm.eg(y, p))
    S = None
    if sysm.noise is not None:
        S = np.empty((K, K))
        sysm.noise(y, p, S)
    return dy, eg, S


def main():
    out = {}
    for key, rule, act, K, M, sigma in cases():
        dy, eg, S = evaluate(rule, act, K, M, sigma)
        out[key + "|rhs"] = dy
        out[key + "|eg"] = np.array([eg])
        if S is not None:
            out[key + "|noise"] = S
        print(key, "ok", file=sys.stderr)
    np.savez_compressed(DATA, **out)


if __name__ == "__main__":
    main()
