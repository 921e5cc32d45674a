"""Online deep teacher–student simulations at finite N (docs/deep.md).

A student with a wide first layer and a finite deep read-out,
``λ = W₁x/√N``, ``h₁ = g(λ)``, ``a_{ℓ+1} = W_{ℓ+1} h_ℓ``, ``ŷ = v·h_{L−1}``, hidden widths
``widths = [K₁, …, K_{L−1}]``, learns the two-layer teacher ``y = v*·g(w*x/√N) + σζ`` from a
fresh Gaussian input at every step, with any of the rules ``bp, fa, dfa, afa, pepita,
pepita-forward, pepita-hebbian`` (the update table is in :mod:`simulations.deep_kernel`).
Rates: ``W₁`` step ``η/√N``, every read-out matrix ``η_W/N``, ``v`` ``η_v/N``.

What is measured at every record: ``Q = W₁W₁ᵀ/N``, ``R = W₁w*ᵀ/N``, ``v``, every ``W[i]``,
``b = W₁F/√N`` (afa, pepita*: exactly, from the weights); once: ``T``, ``c = w*F/√N``,
``σ_F² = F·F/N`` and the fixed feedback (FA's ``b``, ``B``; DFA's ``d``). ε_g and the
per-layer alignment ``cos_delta`` are then evaluated from the measured order parameters by a
Monte Carlo over the Gaussian fields (:func:`simulations.deep_observables.mc_observables`,
``mc_fields`` fixed samples, the same for every record and seed): the fields are exactly
Gaussian given the weights, so this equals a test-set average without its O(N) cost per
sample, and it needs no formula of the theory.

``python -m simulations run`` comes here for any config with ``"widths"``;
``widths = [K]`` is the two-layer network (and reproduces :mod:`simulations.teacher_student`
for bp, fa, afa, pepita, pepita-forward with the same seeds: same draws, same input stream).

Public API: :func:`simulate`, :func:`validate_config`, :class:`DeepSimulationResult`,
:func:`initial_deep_weights`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from theory.quadrature import factor
from theory.state import OrderParameters, record_alphas

from . import deep_kernel
from .deep_kernelgen import resolve_deep_rule
from .deep_observables import field_normals, mc_observables
from .ensemble import (
    Divergence,
    ProgressBar,
    ensemble_stats,
    init_generator,
    run_parallel,
    sample_state,
    seed_list,
)
from .sim_config import _int, _num, block_steps
from .sim_results import EnsembleResult

__all__ = [
    "DEEP_RULES",
    "DEEP_DEFAULTS",
    "simulate",
    "validate_config",
    "initial_deep_weights",
    "DeepSimulationResult",
]

#: rules of the deep student
DEEP_RULES = tuple(deep_kernel.RULE_CODES)
#: rules whose first-layer feedback is the adaptive overlap b = W₁F/√N
DEEP_ADAPTIVE = ("afa", "pepita", "pepita-forward", "pepita-hebbian")
_ACTS = deep_kernel.ACTS

DEEP_DEFAULTS = {
    "K": None,  # optional; must equal widths[0] when given
    "M": 2,
    "activation": "erf",
    "eta": 0.5,
    "eta_v": 0.5,
    "eta_W": None,  # None: eta_v
    "sigma": 0.0,
    "sigma_F": 0.3,
    "b_scale": 1.0,  # FA's b ~ b_scale N(0,1), B[i] ~ b_scale/√K_in N(0,1); DFA's d
    "record": None,
    "seeds": 1,
    "same_init": True,
    "init": {},
    "rule_params": {},  # a user deep rule's parameters (theory.deep_rules)
    "mc_fields": 1 << 14,  # quasi-Monte Carlo points of the fields for ε_g and cos_delta
    "divergence": {},
    "threads": None,
    "description": "",
}
_REQUIRED = ("rule", "N", "alpha_max", "widths")
_INIT_DEFAULTS = {
    "seed": 0,
    "w_scale": 1.0,
    "w_star_scale": 1.0,
    "v_scale": 0.1,
    "v_star": 1.0,
    "W_scale": 1.0,  # W[i] entries ~ W_scale/√K_in N(0,1): a_{ℓ+1} of O(1)
}
_INIT_KEYS = set(_INIT_DEFAULTS) | {"v", "b", "W", "B", "d", "state"}


# ================================================================================ config
def _matrix(val, shape, name):
    """``val`` as a float array of ``shape`` with finite entries, else a ValueError naming
    the key, the expected and the given shape."""
    try:
        a = np.asarray(val, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an array of shape {shape} (nested lists of numbers), got {val!r}"
        ) from None
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite numbers, got {val!r}")
    return a


def _matrix_list(val, shapes, name):
    if not isinstance(val, (list, tuple)) or len(val) != len(shapes):
        raise ValueError(
            f"{name} must be a list of {len(shapes)} arrays of shapes {shapes}, got {val!r}"
        )
    return [_matrix(x, s, f"{name}[{i}]").tolist() for i, (x, s) in enumerate(zip(val, shapes))]


def _widths(val):
    if (
        not isinstance(val, (list, tuple))
        or not val
        or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in val)
    ):
        raise ValueError(
            f"widths must be a non-empty list of positive integers [K1, K2, ...] (the hidden "
            f"widths; [K] is the two-layer network), got {val!r}"
        )
    return [int(k) for k in val]


# Long on purpose: one check per config key, in the order of DEEP_DEFAULTS
def validate_config(config) -> dict:
    """Check a deep simulation config; return a normalised copy with defaults filled in.

    Keys: ``rule`` (one of :data:`DEEP_RULES`), ``N``, ``alpha_max``, ``widths``
    (``[K₁, …, K_{L−1}]``) required; ``K`` (if given, = ``widths[0]``), ``M``,
    ``activation`` (erf, linear, relu, tanh, sigmoid), ``eta``, ``eta_v``, ``eta_W``
    (default ``eta_v``), ``sigma``, ``sigma_F`` (F's entries, afa/pepita*), ``b_scale``
    (FA/DFA feedback scale), ``record``, ``seeds``, ``same_init``, ``init``, ``mc_fields``,
    ``divergence``, ``threads``, ``description``.

    ``init``: ``seed``, ``w_scale``, ``w_star_scale``, ``v_scale``, ``v_star``, ``W_scale``;
    explicit ``v`` (K_{L−1}), ``W`` (list, ``W[i]`` of shape ``(K_{i+2}, K_{i+1})``), FA's
    ``b`` (K_{L−1}) and ``B`` (``B[i]`` of shape ``(K_{i+1}, K_{i+2})``), DFA's ``d``
    (``d[l]`` of length ``K_{l+1}``); ``state`` = ``{"Q", "R", "T"}`` (+ ``"b"``, ``"c"``
    for afa/pepita*) builds W₁, w* (and F) with exactly these overlaps, so that runs at
    several N start from one state.

    Raises
    ------
    ValueError
        Naming the key, what was given and what is allowed.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    allowed = set(_REQUIRED) | set(DEEP_DEFAULTS)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"unknown config keys {unknown} for a deep student (widths given); allowed "
            f"keys: {sorted(allowed)}"
        )
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ValueError(f"config is missing required keys {missing} (required: {list(_REQUIRED)})")
    cfg = dict(DEEP_DEFAULTS)
    cfg.update(config)
    cfg["init"] = dict(cfg["init"] or {})
    sim_rule = resolve_deep_rule(cfg["rule"])  # ValueError naming the allowed rules
    if not isinstance(cfg["rule_params"], dict):
        raise ValueError(f"rule_params must be an object of numbers, got {cfg['rule_params']!r}")
    sim_rule.rp(cfg["rule_params"])  # unknown names, non-numbers
    widths = cfg["widths"] = _widths(cfg["widths"])
    if cfg["K"] is not None and _int(cfg, "K") != widths[0]:
        raise ValueError(f"K={cfg['K']} disagrees with widths[0]={widths[0]} (K is the old name)")
    cfg["K"] = widths[0]
    if cfg["activation"] not in _ACTS:
        raise ValueError(
            f"unsupported activation {cfg['activation']!r} for a deep student; allowed: "
            f"{', '.join(_ACTS)}"
        )
    cfg["N"], cfg["M"] = _int(cfg, "N"), _int(cfg, "M")
    N = cfg["N"]
    if cfg["eta_W"] is None:
        cfg["eta_W"] = cfg["eta_v"]
    for key in ("eta", "eta_v", "eta_W", "sigma", "sigma_F", "b_scale"):
        cfg[key] = _num(cfg, key, lo=0.0)
    cfg["alpha_max"] = _num(cfg, "alpha_max", lo=0.0, strict=True)
    if round(cfg["alpha_max"] * N) < 1:
        raise ValueError(f"alpha_max * N must be at least one step, got {cfg['alpha_max']} * {N}")
    if cfg["record"] is None:
        cfg["record"] = {"every": cfg["alpha_max"] / 100}
    if record_alphas(cfg["record"], cfg["alpha_max"])[0] != 0.0:
        raise ValueError("record must include alpha = 0 (the initial state is measured there)")
    cfg["seeds"] = seed_list(cfg["seeds"])
    if not isinstance(cfg["same_init"], bool):
        raise ValueError(f"same_init must be true or false, got {cfg['same_init']!r}")
    cfg["mc_fields"] = _int(cfg, "mc_fields", lo=100)
    if cfg["threads"] is not None:
        cfg["threads"] = _int(cfg, "threads")
    if not isinstance(cfg["description"], str):
        raise ValueError("description must be a string")
    cfg["divergence"] = Divergence.from_config(cfg["divergence"] or {}).to_dict()
    _validate_init(cfg)
    return cfg


def _validate_init(cfg):
    init, widths, M, N = cfg["init"], cfg["widths"], cfg["M"], cfg["N"]
    sim_rule = resolve_deep_rule(cfg["rule"])
    rule = sim_rule.name
    K1, Kl = widths[0], widths[-1]
    bad = sorted(set(init) - _INIT_KEYS)
    if bad:
        raise ValueError(
            f"unknown init keys {bad} for a deep student; allowed: {sorted(_INIT_KEYS)}"
        )
    for k, val in _INIT_DEFAULTS.items():
        init.setdefault(k, val)
    for key in ("w_scale", "w_star_scale", "v_scale", "W_scale"):
        init[key] = _num(init, key, lo=0.0)
    init["seed"] = _int(init, "seed", lo=0)
    vs = np.asarray(init["v_star"], dtype=float)
    if not (vs.ndim == 0 or vs.shape == (M,)) or not np.all(np.isfinite(vs)):
        raise ValueError(
            f"init.v_star must be a number or a list of M={M} numbers, got {init['v_star']!r}"
        )
    W_shapes = [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    if "v" in init:
        init["v"] = _matrix(init["v"], (Kl,), "init.v").tolist()
    if "W" in init:
        init["W"] = _matrix_list(init["W"], W_shapes, "init.W")
    only = {"b": sim_rule.fixed_chain, "B": sim_rule.fixed_chain, "d": sim_rule.direct}
    for key, ok in only.items():
        if key in init and not ok:
            owner = "dfa (feedback 'direct')" if key == "d" else "fa (feedback 'fixed')"
            raise ValueError(f"init.{key} is the fixed feedback of {owner}, not of {rule}")
    if "b" in init:
        init["b"] = _matrix(init["b"], (Kl,), "init.b").tolist()
    if "B" in init:
        init["B"] = _matrix_list(init["B"], [(b, a) for a, b in W_shapes], "init.B")
    if "d" in init:
        init["d"] = _matrix_list(init["d"], [(k,) for k in widths], "init.d")
    if "state" in init:
        st = init["state"]
        keys = {"Q", "R", "T"} | ({"b", "c"} if sim_rule.adaptive else set())
        if not isinstance(st, dict) or not {"Q", "R", "T"} <= set(st) or set(st) - keys:
            raise ValueError(
                f"init.state must be a dict with the keys Q ({K1}×{K1}), R ({K1}×{M}), T "
                f"({M}×{M}) (and b ({K1}), c ({M}) for afa/pepita*), got {st!r}"
            )
        shapes = {"Q": (K1, K1), "R": (K1, M), "T": (M, M), "b": (K1,), "c": (M,)}
        out = {k: _matrix(st[k], shapes[k], f"init.state.{k}").tolist() for k in st}
        if ("b" in out) != ("c" in out):
            raise ValueError("init.state: give both b and c (F is built from them) or neither")
        C = _state_covariance(out, cfg["sigma_F"] ** 2, N)
        if not np.allclose(C, C.T, atol=1e-12):
            raise ValueError("init.state: Q and T must be symmetric")
        if np.linalg.eigvalsh(C)[0] < -1e-10 * max(1.0, float(np.abs(C).max())):
            raise ValueError(
                "init.state is not a valid overlap matrix: [[T, Rᵀ], [R, Q]] (with F's "
                "overlaps b/√N, c/√N, sigma_F²) must be positive semi-definite"
            )
        if N < C.shape[0]:
            raise ValueError(f"init.state needs N >= {C.shape[0]}, got N = {N}")
        init["state"] = out


def _state_covariance(st, sF2, N):
    """Covariance of the rows (w*, W₁[, F]) normalised by N."""
    Q, R, T = (np.asarray(st[k], dtype=float) for k in ("Q", "R", "T"))
    C = np.block([[T, R.T], [R, Q]])
    if "b" in st:
        f = np.concatenate([st["c"], st["b"]]) / math.sqrt(N)
        C = np.block([[C, f[:, None]], [f[None, :], np.array([[sF2]])]])
    return C


# ======================================================================= initial weights
@dataclass
class DeepWeights:
    """Concrete weights of one seed (the kernel mutates w, v, Wr, b1 in place)."""

    w: np.ndarray  # (K1, N)
    w_star: np.ndarray  # (M, N)
    v: np.ndarray  # (K_last,)
    v_star: np.ndarray  # (M,)
    F: np.ndarray  # (N,)
    b1: np.ndarray  # (K1,) = w F/√N
    fb_b: np.ndarray  # (K_last,) FA
    Wr: np.ndarray  # (max(L−2, 1), Kmax, Kmax)
    fB: np.ndarray  # (max(L−2, 1), Kmax, Kmax) FA's B[i] in [:K_{i+1}, :K_{i+2}]
    fd: np.ndarray  # (L−1, Kmax) DFA
    widths: np.ndarray  # (L−1,) int64

    def W(self):
        wd = self.widths
        return [self.Wr[i, : wd[i + 1], : wd[i]].copy() for i in range(len(wd) - 1)]

    def B(self):
        wd = self.widths
        return [self.fB[i, : wd[i], : wd[i + 1]].copy() for i in range(len(wd) - 1)]

    def d(self):
        return [self.fd[i, :k].copy() for i, k in enumerate(self.widths)]


def initial_deep_weights(cfg: dict, seed: int) -> DeepWeights:
    """Weights of ``seed`` for a validated config.

    Draw order (fixed whatever the rule; for ``widths = [K]`` the first five are
    :func:`simulations.teacher_student.initial_weights`'s): ``w*``, ``W₁`` (or both from
    ``init.state``), ``v``, ``F ~ σ_F N(0,1)``, FA's ``b``, then ``W[i]``, ``B[i]``, ``d[l]``.
    """
    N, M, wd = cfg["N"], cfg["M"], cfg["widths"]
    K1, Kl, Km = wd[0], wd[-1], max(wd)
    init = cfg["init"]
    rng = init_generator(init["seed"], seed, cfg["same_init"])
    F = None
    if "state" in init:
        st = init["state"]
        C = _state_covariance(st, cfg["sigma_F"] ** 2, N)
        q, _ = np.linalg.qr(rng.standard_normal((N, C.shape[0])))
        rows = factor(C) @ (q.T * math.sqrt(N))
        w_star, w = rows[:M], rows[M : M + K1]
        if "b" in st:
            F = rows[-1]
    else:
        w_star = init["w_star_scale"] * rng.standard_normal((M, N))
        w = init["w_scale"] * rng.standard_normal((K1, N))
    v = init["v_scale"] * rng.standard_normal(Kl)
    F_drawn = cfg["sigma_F"] * rng.standard_normal(N)
    F = F_drawn if F is None else F
    fb_b = cfg["b_scale"] * rng.standard_normal(Kl)
    nW = max(len(wd) - 1, 1)
    Wr, fB, fd = np.zeros((nW, Km, Km)), np.zeros((nW, Km, Km)), np.zeros((len(wd), Km))
    for i in range(len(wd) - 1):
        Wr[i, : wd[i + 1], : wd[i]] = (
            init["W_scale"] / math.sqrt(wd[i]) * rng.standard_normal((wd[i + 1], wd[i]))
        )
    for i in range(len(wd) - 1):
        fB[i, : wd[i], : wd[i + 1]] = (
            cfg["b_scale"] / math.sqrt(wd[i]) * rng.standard_normal((wd[i], wd[i + 1]))
        )
    for i, k in enumerate(wd):
        fd[i, :k] = cfg["b_scale"] * rng.standard_normal(k)
    if "v" in init:
        v = np.asarray(init["v"], dtype=float)
    if "b" in init:
        fb_b = np.asarray(init["b"], dtype=float)
    for i, m in enumerate(init.get("W", [])):
        Wr[i, : wd[i + 1], : wd[i]] = m
    for i, m in enumerate(init.get("B", [])):
        fB[i, : wd[i], : wd[i + 1]] = m
    for i, dv in enumerate(init.get("d", [])):
        fd[i, : wd[i]] = dv
    v_star = np.array(np.broadcast_to(np.asarray(init["v_star"], dtype=float), (M,)))
    c = np.ascontiguousarray
    b1 = w @ F / math.sqrt(N)
    return DeepWeights(
        c(w), c(w_star), c(v, dtype=float), v_star, c(F), b1, c(fb_b, dtype=float), Wr, fB, fd,
        np.asarray(wd, dtype=np.int64),
    )  # fmt: skip


# ============================================================================= one seed
def _run_seed(cfg, sim_rule, i, report, alphas, rec_steps, z):
    """Run seed number ``i``; returns a dict of its trajectories."""
    seed = cfg["seeds"][i]
    N, M, wd = cfg["N"], cfg["M"], cfg["widths"]
    K1, Kl, nl = wd[0], wd[-1], len(wd)
    act = cfg["activation"]
    code, act_code = sim_rule.code, _ACTS.index(act)
    kern, rp = sim_rule.kernel(), sim_rule.rp(cfg["rule_params"])
    adaptive = sim_rule.adaptive
    div = Divergence(**cfg["divergence"])
    Wt = initial_deep_weights(cfg, seed)
    T_mat = Wt.w_star @ Wt.w_star.T / N
    st = sample_state(seed)
    nT = len(alphas)
    out = {
        "Q": np.full((nT, K1, K1), np.nan),
        "R": np.full((nT, K1, M), np.nan),
        "v": np.full((nT, Kl), np.nan),
        "W": [np.full((nT, wd[j + 1], wd[j]), np.nan) for j in range(nl - 1)],
        "b": np.full((nT, K1), np.nan),
        "eg": np.full(nT, np.nan),
        "cos_delta": np.full((nT, nl), np.nan),
        "diverged": False,
        "alpha_diverged": np.nan,
        "T": T_mat,
        "v_star": Wt.v_star.copy(),
        "c": Wt.w_star @ Wt.F / math.sqrt(N),
        "sigma_F2": float(Wt.F @ Wt.F / N),
        "fb_b": Wt.fb_b.copy(),
        "B": Wt.B(),
        "d": Wt.d(),
    }
    B_ = block_steps(N)
    xbuf = np.empty((2, N))
    Km = max(wd)
    lay = np.zeros((4, nl, Km))
    work = np.zeros((6, max(Km, M, K1)))
    step, r = 0, 0
    n_total = int(rec_steps[-1])
    while True:
        while r < nT and rec_steps[r] == step:
            Q = Wt.w @ Wt.w.T / N
            R = Wt.w @ Wt.w_star.T / N
            b = Wt.w @ Wt.F / math.sqrt(N)
            W = Wt.W()
            ok = np.all(np.isfinite(Q)) and np.all(np.isfinite(Wt.v)) and np.all(np.isfinite(Wt.Wr))
            if ok:
                eg, cos = mc_observables(
                    Q, R, T_mat, Wt.v, Wt.v_star, Wt.Wr, Wt.widths, code, act, z, cfg["sigma"],
                    b=b, fb_b=Wt.fb_b, fB=Wt.fB, fd=Wt.fd, kernel=kern, rp=rp,
                )  # fmt: skip
                ok = np.isfinite(eg) and eg <= div.eg_max
            if not ok:
                out["diverged"], out["alpha_diverged"] = True, step / N
                break
            out["Q"][r], out["R"][r], out["v"][r], out["b"][r] = Q, R, Wt.v, b
            for j in range(nl - 1):
                out["W"][j][r] = W[j]
            out["eg"][r], out["cos_delta"][r] = eg, cos
            r += 1
        if out["diverged"] or step >= n_total:
            break
        n = min(B_, int(rec_steps[r]) - step)
        done = kern.deep_block(
            code, act_code, n, st, xbuf, Wt.w, Wt.w_star, Wt.v, Wt.v_star, Wt.F, Wt.b1,
            Wt.widths, Wt.Wr, Wt.fb_b, Wt.fB, Wt.fd, cfg["eta"], cfg["eta_v"], cfg["eta_W"],
            cfg["sigma"], lay, work, rp,
        )  # fmt: skip
        report(done)
        qd = work[5, :K1]
        finite = (
            np.all(np.isfinite(qd)) and np.all(np.isfinite(Wt.v)) and np.all(np.isfinite(Wt.Wr))
        )
        if done < n or not finite or np.any(qd > div.q_max) or np.abs(Wt.Wr).max() > div.q_max:
            out["diverged"], out["alpha_diverged"] = True, (step + done) / N
            break
        step += n
    if out["diverged"]:
        report(max(n_total - step, 0))
    if not adaptive:
        out["b"] = None
    return out


# ================================================================================ result
_LISTS = ("W", "B", "d")
_ARRAYS = (
    "alpha", "steps", "seeds", "widths", "Q", "R", "v", "b", "T", "v_star", "c", "sigma_F2",
    "fb_b", "eg", "eg_mean", "eg_std", "cos_delta", "diverged", "alpha_diverged",
)  # fmt: skip
_STATS = ("Q", "R", "v", "b", "cos_delta")


@dataclass(eq=False)
class DeepSimulationResult(EnsembleResult):
    """Trajectories of an ensemble of deep-student simulations (S seeds, T records).

    Attributes
    ----------
    alpha, steps, seeds : (T,), (T,), (S,) arrays
    widths : (L−1,) int array
    Q, R, v : (S, T, K₁, K₁), (S, T, K₁, M), (S, T, K_{L−1}) arrays
    W : list of (S, T, K_{i+2}, K_{i+1}) arrays (``W0``, ``W1``, … in files)
    b : (S, T, K₁) array or None
        ``W₁F/√N`` (afa, pepita*), measured from the weights.
    T, v_star : (S, M, M), (S, M); c, sigma_F2 : (S, M), (S,) or None (afa, pepita*)
    fb_b, B : FA's fixed ``b`` (S, K_{L−1}) and ``B`` (list of (S, K_{i+1}, K_{i+2})), or None
    d : DFA's fixed ``d`` (list of (S, K_{l+1})), or None
    eg, cos_delta : (S, T), (S, T, L−1)
        ε_g and the alignment of every hidden layer's signal with BP's, Monte Carlo over
        the fields of the measured order parameters (``config['mc_fields']`` samples).
    eg_mean, eg_std, n_mean, diverged, alpha_diverged, config : as in SimulationResult.
    """

    KIND = "simulations.DeepSimulationResult"

    alpha: np.ndarray
    steps: np.ndarray
    seeds: np.ndarray
    widths: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    v: np.ndarray
    W: list
    b: np.ndarray | None
    T: np.ndarray
    v_star: np.ndarray
    c: np.ndarray | None
    sigma_F2: np.ndarray | None
    fb_b: np.ndarray | None
    B: list | None
    d: list | None
    eg: np.ndarray
    eg_mean: np.ndarray
    eg_std: np.ndarray
    cos_delta: np.ndarray
    n_mean: int
    diverged: np.ndarray
    alpha_diverged: np.ndarray
    config: dict

    @property
    def rule(self) -> str:
        """The rule's name (a built-in name, or a user DeepRule's name)."""
        r = self.config["rule"]
        if isinstance(r, dict):
            return r["name"]
        if r in DEEP_RULES:
            return r
        try:
            return resolve_deep_rule(r).name
        except ValueError:  # a rule file that has moved since: its spec names it
            return r

    def mean(self, name: str, i: int | None = None) -> np.ndarray:
        """Mean over the non-diverged seeds (``name='W', i=j``: of ``W[j]``)."""
        x = getattr(self, name) if i is None else getattr(self, name)[i]
        return ensemble_stats(x, self.diverged)[0]

    def std(self, name: str, i: int | None = None) -> np.ndarray:
        x = getattr(self, name) if i is None else getattr(self, name)[i]
        return ensemble_stats(x, self.diverged)[1]

    def initial_state(self, seed: int = 0) -> OrderParameters:
        """The measured initial state of seed index ``seed``, as ``odeflow.solve`` takes it
        for a deep student (docs/deep.md names): Q, R, T, v, v_star, W (a tuple, empty for
        widths = [K]) and b, c, sigma_F2, F_norm2 (afa, pepita*), b, B (fa) or d (dfa)."""
        S = len(self.seeds)
        if not 0 <= seed < S:
            raise IndexError(f"seed index {seed} out of range for {S} seeds")
        kw = {}
        if self.b is not None:
            s2 = float(self.sigma_F2[seed])
            kw = dict(b=self.b[seed, 0], c=self.c[seed], sigma_F2=s2)
            kw["F_norm2"] = s2 * self.config["N"]
        if self.fb_b is not None:
            kw = dict(b=self.fb_b[seed], B=tuple(x[seed] for x in self.B or []))
        if self.d is not None:
            kw = dict(d=tuple(x[seed] for x in self.d))
        return OrderParameters(
            Q=self.Q[seed, 0],
            R=self.R[seed, 0],
            T=self.T[seed],
            v=self.v[seed, 0],
            v_star=self.v_star[seed],
            W=tuple(w[seed, 0] for w in self.W),
            **kw,
        )

    def summary(self) -> str:
        c = self.config
        s = (
            f"{self.rule} (deep, widths={c['widths']}): N={c['N']} M={c['M']}, "
            f"{len(self.seeds)} seeds, alpha 0..{self.alpha[-1]:g} ({len(self.alpha)} records); "
        )
        nd = int(self.diverged.sum())
        if nd:
            s += f"{nd} diverged; "
        if self.n_mean:
            s += f"final eps_g = {self.eg_mean[-1]:.4g} ± {self.eg_std[-1]:.2g}"
        else:
            s += "no seed left to average"
        return s

    def to_arrays(self) -> dict:
        d = {k: np.asarray(getattr(self, k)) for k in _ARRAYS if getattr(self, k) is not None}
        for name in _LISTS:
            for i, x in enumerate(getattr(self, name) or []):
                d[f"{name}{i}"] = np.asarray(x)
        d["n_mean"] = np.asarray(self.n_mean)
        for name in _STATS + tuple(f"W{i}" for i in range(len(self.W))):
            if name in d:
                d[name + "_mean"], d[name + "_std"], _ = ensemble_stats(d[name], self.diverged)
        d["config_json"] = np.asarray(json.dumps(self.config))
        return d

    @classmethod
    def from_dict(cls, d):
        from .sim_results import _from_json

        d = {k: (_from_json(v) if isinstance(v, list) else v) for k, v in d.items()}
        nl = len(np.asarray(d["widths"]))
        kw = {k: (np.asarray(d[k]) if k in d and d[k] is not None else None) for k in _ARRAYS}
        for name, n in (("W", nl - 1), ("B", nl - 1), ("d", nl)):
            kw[name] = [np.asarray(d[f"{name}{i}"]) for i in range(n) if f"{name}{i}" in d]
            if name != "W" and not kw[name]:
                kw[name] = None
        kw["n_mean"] = int(d["n_mean"])
        kw["config"] = d["config"]
        kw["diverged"] = kw["diverged"].astype(bool)
        for name in ("steps", "seeds", "widths"):
            kw[name] = kw[name].astype(np.int64)
        return cls(**kw)


# =============================================================================== simulate
def simulate(config: dict, progress=None) -> DeepSimulationResult:
    """Run an ensemble of online deep teacher–student simulations.

    Parameters
    ----------
    config : dict
        See :func:`validate_config` (validated here; ValueError on problems).
    progress : bool or ProgressBar, optional

    Returns
    -------
    DeepSimulationResult
    """
    cfg = validate_config(config)
    sim_rule = resolve_deep_rule(cfg["rule"])
    N, rule, wd = cfg["N"], sim_rule.name, cfg["widths"]
    alphas = record_alphas(cfg["record"], cfg["alpha_max"])
    rec_steps = np.rint(alphas * N).astype(np.int64)
    S = len(cfg["seeds"])
    z = field_normals(cfg["mc_fields"], wd[0] + cfg["M"], cfg["init"]["seed"])
    sim_rule.kernel().warmup()  # compile / load the kernels before the threads start
    threads = cfg["threads"] or os.cpu_count() or 1
    bar = progress
    if progress is True:
        bar = ProgressBar(
            S * int(rec_steps[-1]), label=f"{rule} widths={wd} N={N}", delay=0.0,
            min_interval=0.2, unit="samples", rate=True,
        )  # fmt: skip
    elif not progress:
        bar = None
    outs = run_parallel(
        lambda i, report: _run_seed(cfg, sim_rule, i, report, alphas, rec_steps, z),
        S,
        threads=threads,
        progress=bar,
    )

    def stack(key):
        return np.stack([o[key] for o in outs])

    diverged = np.array([o["diverged"] for o in outs], dtype=bool)
    eg = stack("eg")
    eg_mean, eg_std, n_mean = ensemble_stats(eg, diverged)
    adaptive = sim_rule.adaptive
    nl = len(wd)
    fixed, direct = sim_rule.fixed_chain, sim_rule.direct
    return DeepSimulationResult(
        alpha=alphas,
        steps=rec_steps,
        seeds=np.array(cfg["seeds"], dtype=np.int64),
        widths=np.array(wd, dtype=np.int64),
        Q=stack("Q"),
        R=stack("R"),
        v=stack("v"),
        W=[np.stack([o["W"][j] for o in outs]) for j in range(nl - 1)],
        b=stack("b") if adaptive else None,
        T=stack("T"),
        v_star=stack("v_star"),
        c=stack("c") if adaptive else None,
        sigma_F2=np.array([o["sigma_F2"] for o in outs]) if adaptive else None,
        fb_b=stack("fb_b") if fixed else None,
        B=[np.stack([o["B"][j] for o in outs]) for j in range(nl - 1)] if fixed else None,
        d=[np.stack([o["d"][j] for o in outs]) for j in range(nl)] if direct else None,
        eg=eg,
        eg_mean=eg_mean,
        eg_std=eg_std,
        cos_delta=stack("cos_delta"),
        n_mean=n_mean,
        diverged=diverged,
        alpha_diverged=np.array([o["alpha_diverged"] for o in outs]),
        config={**cfg, "rule": sim_rule.describe()} if not isinstance(cfg["rule"], str) else cfg,
    )
