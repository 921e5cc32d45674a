"""Online teacher–student simulations at finite N, measured like the theory.

A two-layer student ``ŷ = Σ_k v_k g(λ_k)``, ``λ_k = w_k·x/√N`` learns a teacher
``y = Σ_m v*_m g(ν_m) + σ ζ``, ``ν_m = w*_m·x/√N`` from a fresh Gaussian input
``x ~ N(0, I_N)`` at every step (batch 1, docs/theory.md §1). Time is ``α = steps/N``.

Rules (docs/theory.md §2; ``e = ŷ − y``; all updates use the values before the step)::

    bp, fa, afa:      w_k ← w_k − (η/√N) f_k g'(λ_k) e x           v_k ← v_k − (η_v/N) e g(λ_k)
                      f_k = v_k (bp), b_k fixed (fa), b_k = w_k·F/√N (afa)
    pepita:           λ̃_k = λ_k − e b_k   (second pass on x̃ = x − F e)
                      w_k ← w_k − (η/√N) [g(λ_k) − g(λ̃_k)] x̃        v_k ← v_k − (η_v/N) e g(λ̃_k)
    pepita-forward:   the same with presynaptic term x instead of x̃

The learning rate of the first layer scales as ``η/√N`` and that of the second layer as
``η_v/N``, so that the order parameters move by O(1) per unit α.

Any :class:`theory.rules.Rule` simulates too (``"rule": Rule`` or ``"file.py:NAME"``, with
``rule_params``): ``w_k ← (1 − ηκ/N) w_k − (η/√N) δ_k x``, ``v_k ← v_k − (η_v/N) e g(λ_k)``
(or fixed), δ_k the Rule's sympy signal — the step loop of every rule, built-in or not, is
generated from its Rule by :mod:`simulations.kernelgen`.

How it runs: every seed runs on one thread (seeds in parallel, see
:mod:`simulations.ensemble`); a ``nogil`` numba kernel advances a seed by a block of steps
without allocating, drawing the inputs itself (xoshiro256++ and numpy's ziggurat, ~2 ns per
normal) and fusing each first-layer update with the next forward pass. Between blocks the
driver records the order parameters on the grid ``record_alphas(record, alpha_max)`` and
checks for divergence.

Public API: :func:`simulate` (config dict → :class:`SimulationResult`),
:func:`validate_config`, :func:`initial_weights`, :func:`standard_normal`,
:class:`SimulationResult` (``save``/``load``/``initial_state``/``mean``/``std``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

import numpy as np
from numba import njit

from theory.activation_kernels import FM
from theory.activation_kernels import g as _g  # noqa: F401
from theory.activation_kernels import gp as _gp  # noqa: F401
from theory.observables import ACTIVATIONS, eps_g
from theory.state import OrderParameters, record_alphas

from . import kernelgen
from .ensemble import (
    Divergence,
    ProgressBar,
    ensemble_stats,
    init_generator,
    mc_test_generator,
    run_parallel,
    sample_state,
    samples_bar,
)

# the config checks and the results live in their own modules (re-exported here: this is
# the committee's simulation module, theory.models.COMMITTEE.simulation)
from .sim_config import (
    DEFAULTS,
    RULES,
    _int,  # noqa: F401
    _load_weights,
    block_steps,
    model_module,
    rule_relative_to,
    validate_config,
)
from .sim_results import (
    SimulationResult,
    _from_json,  # noqa: F401
)

__all__ = [
    "RULES",
    "simulate",
    "validate_config",
    "SimulationResult",
    "initial_weights",
    "standard_normal",
    "DEFAULTS",
    "rule_relative_to",
]


# ======================================================================= initial weights
@dataclass
class Weights:
    """Concrete weights of one seed (mutated in place by the kernel, except w_star, F)."""

    w: np.ndarray  # (K, N)
    w_star: np.ndarray  # (M, N)
    v: np.ndarray  # (K,)
    v_star: np.ndarray  # (M,)
    F: np.ndarray  # (N,) adaptive feedback vector (zeros when unused)
    b: np.ndarray  # (K,) feedback: fixed for fa; w F/√N for adaptive rules

    def copy(self) -> Weights:
        return Weights(
            *(np.array(getattr(self, f.name), dtype=float, order="C") for f in fields(self))
        )

    def order_parameters(self, feedback: str) -> OrderParameters:
        """The order parameters the ODE solver takes (docs/theory.md §6); ``feedback`` is the
        rule's feedback kind ("v", "fixed", "adaptive") or a built-in rule name."""
        feedback = kernelgen.BUILTIN.get(feedback, feedback)
        if feedback == "adaptive":
            return OrderParameters.from_weights(self.w, self.w_star, self.v, self.v_star, F=self.F)
        if feedback == "fixed":
            return OrderParameters.from_weights(self.w, self.w_star, self.v, self.v_star, b=self.b)
        return OrderParameters.from_weights(self.w, self.w_star, self.v, self.v_star)


def initial_weights(cfg: dict, seed: int) -> Weights:
    """Initial weights of ``seed`` for a validated config (see :func:`validate_config`).

    Draw order (fixed, whatever the rule, so that bp/fa/afa/pepita runs with the same seeds
    start from the same w, w*, v): ``w* ~ w_star_scale·N(0,1)``, ``w ~ w_scale·N(0,1)``,
    ``v ~ v_scale·N(0,1)``, ``F ~ sigma_F·N(0,1)``, ``b ~ b_scale·N(0,1)``.
    """
    N, K, M = cfg["N"], cfg["K"], cfg["M"]
    init = cfg["init"]
    rng = init_generator(init["seed"], seed, cfg["same_init"])
    if "weights" in init:
        d = _load_weights(init["weights"])
        F = d["F"] if "F" in d else cfg["sigma_F"] * rng.standard_normal(N)
        b = d["b"] if "b" in d else cfg["b_scale"] * rng.standard_normal(K)
        W = Weights(d["w"], d["w_star"], d["v"], d["v_star"], F, b)
        expected = {"w": (K, N), "w_star": (M, N), "v": (K,), "v_star": (M,), "F": (N,), "b": (K,)}
        for name, shape in expected.items():
            if getattr(W, name).shape != shape:
                raise ValueError(
                    f"init.weights: {name} must have shape {shape}, got {getattr(W, name).shape}"
                )
        return W.copy()
    w_star = init["w_star_scale"] * rng.standard_normal((M, N))
    w = init["w_scale"] * rng.standard_normal((K, N))
    v = init["v_scale"] * rng.standard_normal(K)
    F = cfg["sigma_F"] * rng.standard_normal(N)
    b = cfg["b_scale"] * rng.standard_normal(K)
    if "v" in init:
        v = np.asarray(init["v"], dtype=float)
    if "b" in init:
        b = np.asarray(init["b"], dtype=float)
    v_star = np.broadcast_to(np.asarray(init["v_star"], dtype=float), (M,))
    W = Weights(w, w_star, v, v_star, F, b).copy()
    if kernelgen.resolve_rule(cfg["rule"]).feedback == "adaptive":
        W.b[:] = W.w @ W.F / math.sqrt(N)
    return W


# ======================================================================= random numbers
# The inputs are generated inside the kernel: numpy's Generator costs ~8 ns per normal here,
# which would be 3/4 of a step's cost. xoshiro256++ (Blackman & Vigna 2019; all 64 output
# bits are good, which the ziggurat needs since it uses the low 8 bits as the layer index)
# feeding numpy's own 256-layer ziggurat algorithm (Marsaglia & Tsang 2000, as in
# numpy/random/src/distributions/distributions.c) costs ~2.2 ns per normal. The tables
# are rebuilt below from the same recursion numpy uses; they agree with numpy's to ~1e-11
# relative (checked by feeding numpy's raw SFC64 stream through this ziggurat).
_ZIG_R = 3.6541528853610087963519472518  # start of the tail
_ZIG_INV_R = 1.0 / _ZIG_R
_ZIG_V = 4.92867323399e-3  # area of each layer


def _ziggurat_tables():
    m = 2.0**52
    ki = np.zeros(256, np.int64)
    wi = np.zeros(256)
    fi = np.zeros(256)
    dn = tn = _ZIG_R
    q = _ZIG_V / math.exp(-0.5 * dn * dn)
    ki[0] = int((dn / q) * m)
    wi[0], wi[255] = q / m, dn / m
    fi[0], fi[255] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_ZIG_V / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = int((dn / tn) * m)
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / m
    return ki, wi, fi


_ZIG_KI, _ZIG_WI, _ZIG_FI = _ziggurat_tables()
# uint64 constants: numba turns uint64 (op) int64 into float64, so every shift amount and
# mask must be a uint64 itself.
_U1, _U8, _U11, _U17, _U19, _U23, _U41, _U45 = (
    np.uint64(k) for k in (1, 8, 11, 17, 19, 23, 41, 45)
)
_MASK8 = np.uint64(0xFF)
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53


@njit(cache=True, nogil=True, inline="always")
def _xoshiro(s0, s1, s2, s3):
    """One xoshiro256++ output and the next state."""
    a = s0 + s3
    result = ((a << _U23) | (a >> _U41)) + s0
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _U45) | (s3 >> _U19)
    return result, s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _normal_slow(idx, rabs, x, st):
    """The ziggurat's rare branches (0.7% of draws): wedge test, tail, or a fresh draw."""
    s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
    while True:
        if idx == 0:  # tail beyond r (Marsaglia 1964)
            while True:
                u, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
                xx = -_ZIG_INV_R * math.log1p(-(np.float64(u >> _U11) * _TO_UNIT))
                u, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
                yy = -math.log1p(-(np.float64(u >> _U11) * _TO_UNIT))
                if yy + yy > xx * xx:
                    x = -(_ZIG_R + xx) if (rabs >> _U8) & _U1 else _ZIG_R + xx
                    st[0], st[1], st[2], st[3] = s0, s1, s2, s3
                    return x
        else:  # wedge: accept under the density
            u, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
            f0, f1 = _ZIG_FI[idx - 1], _ZIG_FI[idx]
            if (f0 - f1) * (np.float64(u >> _U11) * _TO_UNIT) + f1 < math.exp(-0.5 * x * x):
                st[0], st[1], st[2], st[3] = s0, s1, s2, s3
                return x
        r, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
        idx = np.int64(r & _MASK8)
        r >>= _U8
        rabs = (r >> _U1) & _MASK52
        x = np.float64(np.int64(rabs)) * _ZIG_WI[idx]
        x = x - 2.0 * np.float64(np.int64(r & _U1)) * x
        if np.int64(rabs) < _ZIG_KI[idx]:
            st[0], st[1], st[2], st[3] = s0, s1, s2, s3
            return x


@njit(cache=True, nogil=True)
def _fill_normal(st, out):
    """Fill ``out`` with standard normals from the xoshiro256++ state ``st`` (updated).

    The fast path of the ziggurat is written inline, branch-free for the sign (a
    mispredicted sign branch would cost as much as the generator); the state lives in
    registers and goes through memory only on the rare slow path.
    """
    s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
    for i in range(out.shape[0]):
        r, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
        idx = np.int64(r & _MASK8)
        r >>= _U8
        rabs = (r >> _U1) & _MASK52
        x = np.float64(np.int64(rabs)) * _ZIG_WI[idx]
        x = x - 2.0 * np.float64(np.int64(r & _U1)) * x
        if np.int64(rabs) >= _ZIG_KI[idx]:
            st[0], st[1], st[2], st[3] = s0, s1, s2, s3
            x = _normal_slow(idx, rabs, x, st)
            s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
        out[i] = x
    st[0], st[1], st[2], st[3] = s0, s1, s2, s3


def standard_normal(st: np.ndarray, size) -> np.ndarray:
    """``size`` standard normals from the xoshiro256++ state ``st`` (advanced in place)."""
    out = np.empty(size)
    _fill_normal(st, out.reshape(-1))
    return out


# =============================================================================== kernels
# ``reassoc`` lets LLVM vectorise the dot-product reductions; the other fast-math flags
# (nnan, ninf) are left off on purpose: they would let the compiler delete the
# non-finite checks the divergence detection relies on.
# the built-in activations' numba forms come from the activation registry's kernel module
# (re-exported here under the names the generated step loops and tests import)
_FM = FM


@njit(cache=True, nogil=True, inline="always", fastmath=_FM)
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


# The fused step loop (``run_block``) is generated per rule from its theory.rules.Rule by
# simulations.kernelgen (template KERNEL_TEMPLATE there); it inlines _dot and _fill_normal
# from this module and g, g' from theory.activation_kernels (or the user activation's).
def _kernel(sim_rule, activation="erf"):
    """The compiled step loop of a rule (compiled or loaded once, before threads start);
    one kernel serves every built-in activation, a user activation has its own."""
    return kernelgen.load_kernel(sim_rule, activation).run_block


# ============================================================================= one seed
def _measure(W: Weights, adaptive: bool, N: int):
    """Q, R, v, b of the current weights (b = w F/√N measured exactly for adaptive rules)."""
    Q = W.w @ W.w.T / N
    R = W.w @ W.w_star.T / N
    b = W.w @ W.F / math.sqrt(N) if adaptive else W.b.copy()
    return Q, R, W.v.copy(), b


def _eg_upper_bound(qd, v, v_star, Tdiag, act):
    """Cauchy–Schwarz bound ε_g ≤ ½ (Σ_k |v_k| √E g(λ_k)² + Σ_m |v*_m| √E g(ν_m)²)².

    Needs only |w_k|²/N, so it is checked after every block; the exact ε_g is computed only
    when this bound exceeds the threshold.
    """
    if act == "erf":
        s_st = np.sqrt((2 / np.pi) * np.arcsin(qd / (1 + qd)))
        s_te = np.sqrt((2 / np.pi) * np.arcsin(Tdiag / (1 + Tdiag)))
    elif act == "relu":  # E[relu(z)²] = q/2
        s_st, s_te = np.sqrt(qd / 2), np.sqrt(Tdiag / 2)
    elif act == "tanh":  # |g| ≤ min(1, |z|)
        s_st, s_te = np.sqrt(np.minimum(1.0, qd)), np.sqrt(np.minimum(1.0, Tdiag))
    elif act == "sigmoid":  # 0 < g < 1
        s_st, s_te = np.ones_like(qd), np.ones_like(Tdiag)
    elif act == "linear":
        s_st, s_te = np.sqrt(qd), np.sqrt(Tdiag)
    else:  # a user activation: E g(z)² by
        s_st, s_te = _rms_g(qd, act), _rms_g(Tdiag, act)  # Gauss–Hermite
    return 0.5 * (np.abs(v) @ s_st + np.abs(v_star) @ s_te) ** 2


def _rms_g(q, act):
    """√E[g(z)²], z ~ N(0, q), by 48-node Gauss–Hermite (user activations)."""
    x, w = np.polynomial.hermite_e.hermegauss(48)
    g = _g_np(np.sqrt(np.clip(q, 0.0, None))[..., None] * x, act)
    return np.sqrt(np.sum(w * g * g, axis=-1) / w.sum())


def _g_np(z, act):
    if act not in ACTIVATIONS:  # a user activation: from the registry's sympy form
        from theory.activations import get_activation

        return get_activation(act).numpy()[0](z)
    if act == "erf":
        from scipy.special import erf

        return erf(z / math.sqrt(2))
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        return 0.5 + 0.5 * np.tanh(0.5 * z)
    return z


def _run_seed(cfg, i, report, alphas, rec_steps, X_test, sim_rule=None):
    """Run seed number ``i`` of the ensemble; returns a dict of its trajectories."""
    seed = cfg["seeds"][i]
    N, K, M = cfg["N"], cfg["K"], cfg["M"]
    sim_rule = sim_rule or kernelgen.resolve_rule(cfg["rule"])
    act = cfg["activation"]
    run_block = _kernel(sim_rule, act)
    act_code = kernelgen.activation_code(act)
    rp = kernelgen.params_vector(sim_rule, cfg.get("rule_params"))
    adaptive = sim_rule.feedback == "adaptive"
    div = Divergence(**cfg["divergence"])
    W = initial_weights(cfg, seed)
    init_state = W.order_parameters(sim_rule.feedback)
    T_mat = W.w_star @ W.w_star.T / N
    st = sample_state(seed)
    nT = len(alphas)
    out = {
        "Q": np.full((nT, K, K), np.nan),
        "R": np.full((nT, K, M), np.nan),
        "v": np.full((nT, K), np.nan),
        "b": np.full((nT, K), np.nan),
        "eg": np.full(nT, np.nan),
        "init": init_state,
        "diverged": False,
        "alpha_diverged": np.nan,
    }
    if X_test is not None:
        out["eg_mc"] = np.full(nT, np.nan)
        out["eg_mc_se"] = np.full(nT, np.nan)
        y_test = _g_np(X_test @ W.w_star.T / math.sqrt(N), act) @ W.v_star
    if cfg["record_weights"]:
        out["w"] = np.full((nT, K, N), np.nan)
    B = block_steps(N)
    xbuf = np.empty((2, N))
    work = np.zeros((6, max(K, M)))
    eta, eta_v, sigma = cfg["eta"], cfg["eta_v"], cfg["sigma"]
    Tdiag = np.diag(T_mat).copy()

    def diverge(step):
        out["diverged"] = True
        out["alpha_diverged"] = step / N

    step, r = 0, 0
    n_total = int(rec_steps[-1])
    while True:
        # record every grid point that falls on the current step
        while r < nT and rec_steps[r] == step:
            Q, R, v, b = _measure(W, adaptive, N)
            eg = float(eps_g(Q, R, T_mat, v, W.v_star, act))
            if not (np.all(np.isfinite(Q)) and np.isfinite(eg)) or eg > div.eg_max:
                diverge(step)
                break
            out["Q"][r], out["R"][r], out["v"][r], out["b"][r], out["eg"][r] = Q, R, v, b, eg
            if X_test is not None:
                err = 0.5 * (_g_np(X_test @ W.w.T / math.sqrt(N), act) @ W.v - y_test) ** 2
                out["eg_mc"][r] = err.mean()
                out["eg_mc_se"][r] = err.std(ddof=1) / math.sqrt(len(err))
            if cfg["record_weights"]:
                out["w"][r] = W.w
            r += 1
        if out["diverged"] or step >= n_total:
            break
        n = min(B, int(rec_steps[r]) - step)
        done = run_block(
            act_code,
            n,
            st,
            xbuf,
            W.w,
            W.w_star,
            W.v,
            W.v_star,
            W.F,
            W.b,
            eta,
            eta_v,
            sigma,
            rp,
            work,
        )
        report(done)
        if done < n:  # non-finite error inside the block
            diverge(step + done)
            break
        step += n
        qd = work[5, :K]
        if not (np.all(np.isfinite(qd)) and np.all(np.isfinite(W.v))) or np.any(qd > div.q_max):
            diverge(step)
            break
        if _eg_upper_bound(qd, W.v, W.v_star, Tdiag, act) > div.eg_max:
            Q, R, v, _ = _measure(W, adaptive, N)
            if float(eps_g(Q, R, T_mat, v, W.v_star, act)) > div.eg_max:
                diverge(step)
                break
    if out["diverged"]:
        report(n_total - step)  # keep the progress bar honest
    out["T"] = T_mat
    out["v_star"] = W.v_star.copy()
    out["c"] = W.w_star @ W.F / math.sqrt(N)
    out["sigma_F2"] = float(W.F @ W.F / N)
    out["fixed_b"] = W.b.copy()
    if cfg["record_weights"]:
        out["w_star"] = W.w_star.copy()
        out["F"] = W.F.copy()
    return out


# =============================================================================== simulate
def _check_memory(cfg, S, T):
    """Refuse up front an ensemble whose records cannot fit in memory (with the
    estimate): per seed and record Q, R, v, b, ε_g (and w with record_weights), kept
    about three times (per-seed arrays, stacked result, statistics written with it)."""
    from theory.runtime.cli import check_memory

    N, K, M = cfg["N"], cfg["K"], cfg["M"]
    per = K * K + K * M + 2 * K + 3 + (K * N if cfg["record_weights"] else 0)
    nbytes = 3 * 8 * S * T * per + 8 * (K + M + 2) * N * min(S, cfg["threads"] or 2)
    check_memory(
        nbytes,
        f"simulations run with N = {N}, K = {K}, M = {M}, {S} seeds and {T} records",
        hint="record fewer points (record) or use fewer seeds",
    )


def simulate(config: dict, progress: bool | ProgressBar | None = None) -> SimulationResult:
    """Run an ensemble of online teacher–student simulations.

    Parameters
    ----------
    config : dict
        See :func:`validate_config` (validated here; ValueError on problems).
    progress : bool or ProgressBar, optional
        True: draw a progress bar on stderr.

    Returns
    -------
    SimulationResult
        Per-seed trajectories on the grid ``record_alphas(config['record'], alpha_max)``,
        ensemble mean/std over the non-diverged seeds, divergence flags, initial states.

    Notes
    -----
    Seeds run in parallel on ``config['threads']`` threads (default: all cores); each seed
    is sequential and reproducible from its seed alone (see :mod:`simulations.ensemble`).
    """
    other = model_module(config)  # a rule of another model: that model's simulation
    if other is not None:
        return other.simulate(config, progress=progress)
    cfg = validate_config(config)
    N = cfg["N"]
    sim_rule = kernelgen.resolve_rule(cfg["rule"])
    rule = sim_rule.name
    alphas = record_alphas(cfg["record"], cfg["alpha_max"])
    # the state at α is the state after round(α N) samples
    rec_steps = np.rint(alphas * N).astype(np.int64)
    S = len(cfg["seeds"])
    _check_memory(cfg, S, len(alphas))
    X_test = None
    if cfg["mc_test"]:
        X_test = mc_test_generator(cfg["init"]["seed"]).standard_normal((cfg["mc_test"], N))
    _kernel(sim_rule, cfg["activation"])  # compile / load the kernel before threads start
    threads = cfg["threads"] or os.cpu_count() or 1
    bar = samples_bar(progress, S * int(rec_steps[-1]), f"{rule} N={N}")
    outs = run_parallel(
        lambda i, report: _run_seed(cfg, i, report, alphas, rec_steps, X_test, sim_rule),
        S,
        threads=threads,
        progress=bar,
    )

    def stack(key):
        return np.stack([o[key] for o in outs])

    diverged = np.array([o["diverged"] for o in outs], dtype=bool)
    eg = stack("eg")
    eg_mean, eg_std, n_mean = ensemble_stats(eg, diverged)
    adaptive, fa = sim_rule.feedback == "adaptive", sim_rule.feedback == "fixed"
    inits = [o["init"] for o in outs]
    res = SimulationResult(
        alpha=alphas,
        steps=rec_steps,
        seeds=np.array(cfg["seeds"], dtype=np.int64),
        Q=stack("Q"),
        R=stack("R"),
        v=stack("v"),
        b=stack("b") if (adaptive or fa) else None,
        T=stack("T"),
        v_star=stack("v_star"),
        c=stack("c") if adaptive else None,
        sigma_F2=np.array([o["sigma_F2"] for o in outs]) if adaptive else None,
        eg=eg,
        eg_mean=eg_mean,
        eg_std=eg_std,
        n_mean=n_mean,
        diverged=diverged,
        alpha_diverged=np.array([o["alpha_diverged"] for o in outs]),
        config=cfg,
        init=inits[0],
        Q0=np.stack([s.Q for s in inits]),
        R0=np.stack([s.R for s in inits]),
        v0=np.stack([s.v for s in inits]),
        b0=np.stack([s.b for s in inits]) if (adaptive or fa) else None,
        eg_mc=stack("eg_mc") if X_test is not None else None,
        eg_mc_se=stack("eg_mc_se") if X_test is not None else None,
        w=stack("w") if cfg["record_weights"] else None,
        w_star=stack("w_star") if cfg["record_weights"] else None,
        F=stack("F") if cfg["record_weights"] and adaptive else None,
    )
    return res
