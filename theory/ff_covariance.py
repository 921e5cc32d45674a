"""Finite N for Forward-Forward: Σ(y) = Cov[f] of the per-sample increments of Q, R and u
(:mod:`theory.covariance` for the committee; the kernel: :mod:`theory.ff_cov_kernels`).

The expectations use FF's own quadrature (:mod:`theory.ff`: the label's jump is an exact
split of the outer integral), with fewer λ nodes than the drift
(:data:`NOISE_NODES`): Σ only sets the size of the fluctuations. FF has no feedback
field, so Σ does not depend on N; the SDE's noise is Σ/N. The η² term of f_Q is kept (its
fluctuation through δ_k δ_l is O(1), like that of δ_k λ_l); only the fluctuation of x·x/N
around 1 is dropped (module docstring of :mod:`theory.covariance`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["build_ff_covariance", "ff_covariance", "FFCovariance", "NOISE_NODES"]

FF_COV_VERSION = "1"
#: λ nodes of Σ's quadrature per student unit (the drift's: theory.ff.default_nodes);
#: measured at K = M = 2: 0.25 % max relative error of Σ (12 nodes: 7 %; 32: 8e-5)
NOISE_NODES = {"n_lam": 20}


@dataclass
class FFCovariance:
    """The compiled Σ(y) of Forward-Forward at K, M: ``cov(y, p, S)``,
    ``moments(y, p, m, S)`` (also E[f], the drift), ``params``
    (:meth:`theory.ff.FFSystem.params` with the noise node counts)."""

    K: int
    M: int
    activation: str
    system: object  # the FFSystem with the noise node counts (its params vector)
    cov: object
    moments: object
    source_path: Path
    timings: dict

    @property
    def layout(self):
        return self.system.layout

    def dim(self, sigma: float) -> int:
        return self.K + self.M

    def params(self, state, eta, eta_v=None, sigma=0.0, *, N=None, qrule=None, **rule_params):
        """FF's parameter vector (``eta_u``, ``theta`` in ``rule_params``); N is not used
        (no feedback field) and ``qrule`` must be None (FF has its own split rule)."""
        if qrule is not None:
            raise ValueError(
                "noise_quadrature does not apply to rule 'ff' (its own split rule: "
                "theory.ff_covariance.NOISE_NODES)"
            )
        return self.system.params(state, eta, eta_v, sigma, **rule_params)

    def describe_rule(self, p) -> dict:
        return {"scheme": "ff split rule", **dict(self.system.nodes)}

    def evaluate(self, state, eta, eta_u=None, theta=None):
        p = self.params(state, eta, None, 0.0, eta_u=eta_u, theta=theta)
        y = np.ascontiguousarray(self.layout.pack(state), dtype=float)
        m = np.empty(y.shape[0])
        S = np.empty((y.shape[0], y.shape[0]))
        self.moments(y, p, m, S)
        return m, S


def _source(activation, digest):
    from .emit import emit_module
    from .ff import _HEADER, _generated_functions, check_activation

    entry = '''@njit(cache=True, nogil=True)
def cov(y, p, S):
    """S ← Σ = Cov[f] (n×n) at the flat FF state y."""
    _ff_cov(y, p, np.empty(y.shape[0]), S)
'''
    return emit_module(
        generator="theory.ff_covariance",
        version=FF_COV_VERSION,
        key=digest,
        comments=[f"activation={check_activation(activation).name!r}"],
        constants={"_HEADER": _HEADER},
        functions=_generated_functions(activation),
        kernels=["ff_rules", "ff_kernels", "ff_cov_kernels"],
        after=[entry],
    )


_SYSTEMS: dict = {}


def build_ff_covariance(K: int, M: int, activation="erf", nodes=None) -> FFCovariance:
    """The compiled Σ(y) of Forward-Forward at K, M and ``activation``; ``nodes``: node
    counts (:func:`theory.ff.default_nodes` keys) replacing :data:`NOISE_NODES`."""
    import sympy as sp

    from .cache import digest_of, generated_path, load_module, module_name, source_fingerprint
    from .ff import build_ff_system, check_activation, default_nodes

    act = check_activation(activation)
    key = (act.key, K, M, tuple(sorted((nodes or {}).items())))
    if key in _SYSTEMS:
        return _SYSTEMS[key]
    t0 = time.perf_counter()
    fp = source_fingerprint(
        (
            "ff.py",
            "ff_rules.py",
            "ff_kernels.py",
            "ff_cov_kernels.py",
            "ff_covariance.py",
            "emit.py",
            "activations.py",
        )
    )
    path = generated_path("ffcov", FF_COV_VERSION, fp, sp.srepr(act.expr), label=act.key)
    digest = digest_of(path)
    mod, cached = load_module(
        path,
        lambda: _source(activation, digest),
        module_name(path),
        lambda m: None,
        required=("cov", "_ff_cov"),
    )
    base = default_nodes(K, M, activation)
    nd = {**base, **NOISE_NODES}
    if nd["split_lam"]:  # a kinked activation's split rule keeps its own node count
        nd["n_lam"] = base["n_lam"]
    nd.update(nodes or {})
    system = build_ff_system(K, M, activation, nodes=nd)
    out = FFCovariance(
        K,
        M,
        act.name,
        system,
        mod.cov,
        mod._ff_cov,
        path,
        {"compile": time.perf_counter() - t0, "source_cached": cached},
    )
    _SYSTEMS[key] = out
    return out


def ff_covariance(state, *, eta, eta_u=None, theta=None, activation="erf", nodes=None):
    """``(E[f], Σ, labels)`` of Forward-Forward at ``state`` (flat layout Q, R, u);
    ``nodes`` as :func:`build_ff_covariance`."""
    fc = build_ff_covariance(state.K, state.M, activation, nodes)
    m, S = fc.evaluate(state, eta, eta_u, theta)
    K, M = state.K, state.M
    names = [f"Q[{k},{l}]" for k in range(K) for l in range(k, K)]
    names += [f"R[{k},{m_}]" for k in range(K) for m_ in range(M)] + [f"u[{k}]" for k in range(K)]
    return m, S, names
