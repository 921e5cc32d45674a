"""Online Forward-Forward in the teacher–student setting, at finite N (docs/ff-theory.md).

One FF layer of K units sees a fresh Gaussian input ``x ~ N(0, I_N)`` at every step (batch
1) and a label ``ℓ = ±1`` through label weights ``u_k`` (O(1) numbers, like a second-layer
weight)::

    λ_k = w_k·x/√N,   λ_k^ℓ = λ_k + u_k ℓ,   h_k^ℓ = g(λ_k^ℓ),   G^ℓ = Σ_k (h_k^ℓ)²

The label comes from a teacher, ``y = sign(Σ_m v*_m g*(ν_m))``, ``ν_m = w*_m·x/√N``, with
``g*(z) = erf(z/√2)`` whatever the student's activation (a ReLU teacher would give the
label 0 on half the inputs; for M = 1, ``y = sign(v*_1 ν_1)``). Positive pass ``ℓ = y``,
negative pass ``ℓ = −y`` (same x, wrong label), loss
``L = softplus(θ − G⁺) + softplus(G⁻ − θ)``, signals
``a_k^+ = −2 s(θ − G⁺) h_k^+ g'(λ_k^+)``, ``a_k^− = 2 s(G⁻ − θ) h_k^− g'(λ_k^−)`` (s the
logistic function), and the updates (values before the step)::

    w_k ← w_k − (η/√N) (a_k^+ + a_k^−) x          u_k ← u_k − (η_u/N) y (a_k^+ − a_k^−)

The kernel is written by hand from these formulas (it shares nothing with the theory's
generated code, so that comparing them tests both). It follows
:mod:`simulations.teacher_student`: one ``nogil`` numba kernel per block of steps, no
allocation, inputs drawn inside the kernel (xoshiro256++ + ziggurat), each first-layer
update fused with the next forward pass. Between blocks the driver records the order
parameters ``Q = w wᵀ/N``, ``R = w w*ᵀ/N``, ``u`` and checks for divergence; ε_g, the mean
loss and the goodness gap of every record are then evaluated from the measured order
parameters by the theory's quadrature (:func:`theory.ff.observables`), and optionally
measured on a fixed Monte Carlo test set (``mc_test`` inputs: ``eg_mc``).

Public API: :func:`simulate_ff` (config dict → :class:`FFSimulationResult`),
:func:`validate_ff_config`. ``python -m simulations run`` dispatches here for
``"rule": "ff"``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theory.activation_names import is_user
from theory.models import get as get_model
from theory.quadrature import factor
from theory.state import OrderParameters, record_alphas

from .ensemble import (
    Divergence,
    ensemble_stats,
    init_generator,
    mc_test_generator,
    run_parallel,
    sample_state,
    samples_bar,
    seed_list,
)

# the config checks, block size and results of the other teacher–student rules
from .kernelgen import resolve_activation
from .sim_config import _MC_MAX_DOUBLES, _int, _num, block_steps
from .sim_results import EnsembleResult

# the input generator (xoshiro256++ + ziggurat) the committee's kernels use too

__all__ = [
    "simulate_ff",
    "validate_ff_config",
    "FFSimulationResult",
    "FF_DEFAULTS",
    "FF_ACTIVATIONS",
    "ff_signals_np",
    "simulate",
    "validate_config",
]

#: student activations of the FF layer, in the order of their kernel codes
FF_ACTIVATIONS = ("erf", "linear", "relu", "tanh", "sigmoid")

FF_DEFAULTS = {
    "K": 2,
    "M": 1,
    "activation": "erf",
    "eta": 1.0,  # first layer, scaled η/√N
    "eta_u": 1.0,  # label weights, scaled η_u/N
    "theta": None,  # None: K/2 (half the largest erf goodness, docs/ff-theory.md)
    "record": None,  # None: 101 points
    "seeds": 1,
    "same_init": True,
    "init": {},
    "mc_test": 0,
    "quadrature": True,  # ε_g, loss, gap of every record from the order parameters
    "divergence": {},
    "threads": None,
    "description": "",
}
_REQUIRED = ("rule", "N", "alpha_max")
_INIT_DEFAULTS = {"seed": 0, "w_scale": 1.0, "w_star_scale": 1.0, "u_scale": 0.1, "v_star": 1.0}
_INIT_KEYS = set(_INIT_DEFAULTS) | {"u", "state"}


# ================================================================================ config
def validate_ff_config(config) -> dict:
    """Check an FF simulation config; return a normalised copy with defaults filled in.

    Keys: ``rule`` ("ff"), ``N``, ``alpha_max`` (required); ``K`` (2), ``M`` (1),
    ``activation`` (the student's: a built-in name, "erf", "linear", "relu", "tanh" or
    "sigmoid", or an expression of z such as "z*tanh(z)" from the activation registry),
    ``eta``, ``eta_u``,
    ``theta`` (> 0; default K/2), ``record``, ``seeds``, ``same_init``, ``init``
    (``seed``, ``w_scale``, ``w_star_scale``, ``u_scale``, ``v_star`` (number or M numbers,
    none zero), ``u`` (a number or K numbers), ``state`` (``{"Q", "R", "T"}``: build the
    weights with exactly these overlaps instead of drawing them, e.g. to start several N
    from one state)), ``mc_test``, ``divergence``, ``threads``,
    ``description``, ``quadrature`` (true: evaluate ε_g, loss and gap of every record
    from the measured order parameters with the theory's quadrature — its cost grows like
    ``n^K``; false: only the test-set measurements of ``mc_test``).

    Raises
    ------
    ValueError
        Naming the offending key and what is allowed.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    allowed = set(_REQUIRED) | set(FF_DEFAULTS)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"unknown config keys {unknown} for rule 'ff'; allowed keys: "
            f"{sorted(allowed)} (FF has label weights u with rate eta_u and a "
            "threshold theta instead of a second layer v)"
        )
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ValueError(f"config is missing required keys {missing} (required: {list(_REQUIRED)})")
    if config["rule"] != "ff":
        raise ValueError(f"validate_ff_config handles rule 'ff' only, got {config['rule']!r}")
    cfg = dict(FF_DEFAULTS)
    cfg.update(config)
    cfg["init"] = dict(cfg["init"] or {})
    # a built-in name, or any expression of z (the activation registry, theory.activations)
    try:
        cfg["activation"] = resolve_activation(cfg["activation"])
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"unsupported activation {cfg['activation']!r} for rule 'ff': {exc}"
        ) from None
    cfg["N"], cfg["K"], cfg["M"] = _int(cfg, "N"), _int(cfg, "K"), _int(cfg, "M")
    K, M, N = cfg["K"], cfg["M"], cfg["N"]
    # η, η_u, θ (default K/2): the FF model's one validator (theory.models), the same as
    # odeflow.solve's
    mp = get_model("ff").check_params(
        {k: cfg[k] for k in ("eta", "eta_u", "theta")}, K=K, rule_name="ff"
    )
    cfg.update({k: mp[k] for k in ("eta", "eta_u", "theta")})
    cfg["alpha_max"] = _num(cfg, "alpha_max", lo=0.0, strict=True)
    if round(cfg["alpha_max"] * N) < 1:
        raise ValueError(f"alpha_max * N must be at least one step, got {cfg['alpha_max']} * {N}")
    if cfg["record"] is None:
        cfg["record"] = {"every": cfg["alpha_max"] / 100}
    record_alphas(cfg["record"], cfg["alpha_max"])
    cfg["seeds"] = seed_list(cfg["seeds"])
    for key in ("same_init", "quadrature"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"{key} must be true or false, got {cfg[key]!r}")
    if not cfg["quadrature"] and not cfg["mc_test"]:
        raise ValueError("quadrature: false needs mc_test > 0 (otherwise nothing measures ε_g)")
    cfg["mc_test"] = _int(cfg, "mc_test", lo=0)
    if cfg["mc_test"] * N > _MC_MAX_DOUBLES:
        raise ValueError(
            f"mc_test={cfg['mc_test']} test inputs of dimension N={N} are too "
            f"many; keep mc_test*N <= {_MC_MAX_DOUBLES}"
        )
    if cfg["threads"] is not None:
        cfg["threads"] = _int(cfg, "threads")
    if not isinstance(cfg["description"], str):
        raise ValueError("description must be a string")
    cfg["divergence"] = Divergence.from_config(cfg["divergence"] or {}).to_dict()
    init = cfg["init"]
    bad = sorted(set(init) - _INIT_KEYS)
    if bad:
        raise ValueError(f"unknown init keys {bad} for rule 'ff'; allowed: {sorted(_INIT_KEYS)}")
    for k, val in _INIT_DEFAULTS.items():
        init.setdefault(k, val)
    for key in ("w_scale", "w_star_scale", "u_scale"):
        init[key] = _num(init, key, lo=0.0)
    init["seed"] = _int(init, "seed", lo=0)
    vs = np.asarray(init["v_star"], dtype=float)
    if not (vs.ndim == 0 or vs.shape == (M,)) or not np.all(np.isfinite(vs)) or np.any(vs == 0):
        raise ValueError(
            f"init.v_star must be a non-zero number or a list of M={M} non-zero "
            f"numbers, got {init['v_star']!r}"
        )
    if "u" in init:
        a = np.asarray(init["u"], dtype=float)
        if a.shape not in ((), (K,)) or not np.all(np.isfinite(a)):
            raise ValueError(
                f"init.u must be a number (every unit) or a list of K={K} "
                f"numbers, got {init['u']!r}"
            )
    if "state" in init:
        init["state"] = _check_init_state(init["state"], K, M, N)
    return cfg


def _check_init_state(st, K, M, N) -> dict:
    """``init.state = {"Q", "R", "T"}``: the initial overlaps the weights are built to
    have exactly (``_exact_weights``); a valid covariance of ``(w*, w)``."""
    if not isinstance(st, dict) or set(st) != {"Q", "R", "T"}:
        raise ValueError(
            "init.state must be a dict with exactly the keys Q (K×K), R (K×M) "
            f"and T (M×M), got {st!r}"
        )
    out = {}
    for key, shape in (("Q", (K, K)), ("R", (K, M)), ("T", (M, M))):
        try:
            a = np.asarray(st[key], dtype=float)
        except (TypeError, ValueError):
            a = np.asarray(np.nan)  # a string or ragged list: reported just below
        if a.shape != shape or not np.all(np.isfinite(a)):
            raise ValueError(
                f"init.state.{key} must be a {shape[0]}×{shape[1]} array of "
                f"finite numbers (nested lists), got {st[key]!r}"
            )
        out[key] = a.tolist()
    C = _state_covariance(out)
    if not np.allclose(C, C.T, atol=1e-12):
        raise ValueError("init.state: Q and T must be symmetric")
    ev = np.linalg.eigvalsh(C)
    if ev[0] < -1e-10 * max(1.0, ev[-1]):
        raise ValueError(
            "init.state is not a valid overlap matrix: [[T, Rᵀ], [R, Q]] must be "
            f"positive semi-definite (smallest eigenvalue {ev[0]:.3g})"
        )
    if N < K + M:
        raise ValueError(f"init.state needs N >= K + M = {K + M}, got N = {N}")
    return out


def _state_covariance(st) -> np.ndarray:
    Q, R, T = (np.asarray(st[k], dtype=float) for k in ("Q", "R", "T"))
    return np.block([[T, R.T], [R, Q]])


def _exact_weights(st, N, rng):
    """``(w, w*)`` whose overlaps are exactly ``Q, R, T`` of ``st``: an orthonormal basis
    of K + M random directions (QR of a Gaussian N × (K + M) matrix, scaled so that
    ``b bᵀ/N = I``) times a factor of the covariance ``[[T, Rᵀ], [R, Q]]`` (Cholesky; the
    eigen-factor when it is singular). Used to start several N from the same state."""
    C = _state_covariance(st)
    M = len(st["T"])
    q, _ = np.linalg.qr(rng.standard_normal((N, C.shape[0])))
    W = factor(C) @ (q.T * math.sqrt(N))
    return W[M:], W[:M]


# ======================================================================= initial weights
def initial_ff_weights(cfg: dict, seed: int):
    """``(w, w_star, u, v_star)`` of ``seed``; draw order ``w*``, ``w``, ``u``."""
    N, K, M = cfg["N"], cfg["K"], cfg["M"]
    init = cfg["init"]
    rng = init_generator(init["seed"], seed, cfg["same_init"])
    if "state" in init:
        w, w_star = _exact_weights(init["state"], N, rng)
    else:
        w_star = init["w_star_scale"] * rng.standard_normal((M, N))
        w = init["w_scale"] * rng.standard_normal((K, N))
    u = init["u_scale"] * rng.standard_normal(K)
    if "u" in init:
        u = np.array(np.broadcast_to(np.asarray(init["u"], dtype=float), (K,)))
    v_star = np.array(np.broadcast_to(np.asarray(init["v_star"], dtype=float), (M,)))
    return (np.ascontiguousarray(w), np.ascontiguousarray(w_star), np.ascontiguousarray(u), v_star)


# ======================================================================= numpy reference
def _builtin_np(activation: str):
    """(g, g') of a built-in activation, vectorised numpy (the kernel's forms)."""
    from scipy.special import erf, expit

    if activation == "erf":
        return (
            lambda z: erf(z / math.sqrt(2)),
            lambda z: math.sqrt(2.0 / math.pi) * np.exp(-0.5 * z * z),
        )
    if activation == "linear":
        return (lambda z: z), (lambda z: np.ones_like(z))
    if activation == "tanh":
        return np.tanh, (lambda z: 1.0 - np.tanh(z) ** 2)
    if activation == "sigmoid":
        return expit, (lambda z: expit(z) * (1.0 - expit(z)))
    return (lambda z: np.maximum(z, 0.0)), (lambda z: (z > 0).astype(float))


def ff_signals_np(lam, y, u, theta, activation="erf"):
    """The FF quantities of §9 for arrays of fields, in plain numpy (no numba).

    ``lam`` (n, K) fields, ``y`` (n,) labels ±1, ``u`` (K,). Returns a dict with ``a_plus``,
    ``a_minus`` (n, K), ``G_plus``, ``G_minus`` (true and wrong label), ``loss`` and
    ``yhat = sign(G^{+1} − G^{−1})`` (0 for a tie). ``activation``: a built-in name or a
    user activation's canonical name (its registry expression, vectorised).
    """
    from scipy.special import expit

    lam = np.asarray(lam, dtype=float)
    y = np.asarray(y, dtype=float)[:, None]
    if is_user(activation):
        from theory.activations import get_activation

        g, gp = get_activation(activation).numpy()
    else:
        g, gp = _builtin_np(activation)
    zp, zm = lam + u * y, lam - u * y
    hp, hm = g(zp), g(zm)
    Gp, Gm = (hp**2).sum(1), (hm**2).sum(1)
    ap = -2 * expit(theta - Gp)[:, None] * hp * gp(zp)
    am = 2 * expit(Gm - theta)[:, None] * hm * gp(zm)
    loss = np.logaddexp(0, theta - Gp) + np.logaddexp(0, Gm - theta)
    Gl1 = (g(lam + u) ** 2).sum(1)
    Gl0 = (g(lam - u) ** 2).sum(1)
    return dict(a_plus=ap, a_minus=am, G_plus=Gp, G_minus=Gm, loss=loss, yhat=np.sign(Gl1 - Gl0))


# ======================================================================== the step loop
#: version of the generated FF step-loop modules (user activations)
FF_KERNEL_VERSION = "1"
_FF_KERNELS: dict = {}
_FF_LOCK = threading.Lock()


def step_kernel(activation: str):
    """The module holding the FF step loop ``_ff_block`` (and ``_warmup``) for ``activation``.

    Built-in activations share :mod:`simulations.ff_kernel` (``g``, ``g'`` from the
    registry's :mod:`theory.activation_kernels`, selected by ``act``). A user activation gets
    a generated module: that file's step loop with ``_g``/``_gp`` printed from the
    activation's sympy expression (the same printer as the committee's kernels,
    :func:`simulations.kernelgen.activation_functions`), cached on disk keyed by the sources
    and the expression (:mod:`theory.cache`), compiled once per process."""
    if not is_user(activation):
        from . import ff_kernel

        return ff_kernel
    import sympy as sp

    from theory.activations import get_activation
    from theory.cache import digest_of, generated_path, load_module, module_name, source_fingerprint
    from theory.emit import emit_module, include

    from . import kernelgen

    act = get_activation(activation)
    parts = (act.key, sp.srepr(act.expr))
    with _FF_LOCK:
        if parts in _FF_KERNELS:
            return _FF_KERNELS[parts]
        here = Path(__file__).parent
        src = here / "ff_kernel.py"
        fp = source_fingerprint(
            (
                str(src),
                str(here / "ff_online.py"),
                str(here / "kernelgen.py"),
                "emit.py",
                "activations.py",
                "activation_kernels.py",
            )
        )
        path = generated_path("ffsim", FF_KERNEL_VERSION, fp, *parts, label=f"ff_{act.key}")
        digest = digest_of(path)

        def source():
            _, functions = kernelgen.activation_functions(activation)
            return emit_module(
                generator="simulations.ff_online",
                version=FF_KERNEL_VERSION,
                key=digest,
                comments=[f"FF step loop, activation {activation}"],
                imports=["from theory.activation_kernels import FM as _FM"],
                functions=functions,
                after=[include(src)],
            )

        mod, _ = load_module(
            path, source, module_name(path), lambda m: m._warmup(), required=("_ff_block",)
        )
        _FF_KERNELS[parts] = mod
        return mod


# ============================================================================= one seed
def _run_seed(cfg, i, report, alphas, rec_steps, X_test):
    seed = cfg["seeds"][i]
    N, K, M = cfg["N"], cfg["K"], cfg["M"]
    act = FF_ACTIVATIONS.index(cfg["activation"]) if not is_user(cfg["activation"]) else -1
    ff_block = step_kernel(cfg["activation"])._ff_block
    div = Divergence(**cfg["divergence"])
    w, w_star, u, v_star = initial_ff_weights(cfg, seed)
    T_mat = w_star @ w_star.T / N
    st = sample_state(seed)
    nT = len(alphas)
    out = {
        "Q": np.full((nT, K, K), np.nan),
        "R": np.full((nT, K, M), np.nan),
        "u": np.full((nT, K), np.nan),
        "diverged": False,
        "alpha_diverged": np.nan,
        "T": T_mat,
        "v_star": v_star,
    }
    if X_test is not None:
        for key in ("eg_mc", "eg_mc_se", "loss_mc", "gap_mc"):
            out[key] = np.full(nT, np.nan)
        nu = X_test @ w_star.T / math.sqrt(N)
        from scipy.special import erf

        y_test = np.where(erf(nu / math.sqrt(2)) @ v_star >= 0, 1.0, -1.0)
    B = block_steps(N)
    xbuf = np.empty((2, N))
    work = np.zeros((6, max(K, M)))
    step, r = 0, 0
    n_total = int(rec_steps[-1])
    while True:
        while r < nT and rec_steps[r] == step:
            out["Q"][r] = w @ w.T / N
            out["R"][r] = w @ w_star.T / N
            out["u"][r] = u
            if X_test is not None:
                sig = ff_signals_np(
                    X_test @ w.T / math.sqrt(N), y_test, u, cfg["theta"], cfg["activation"]
                )
                err = np.where(sig["yhat"] == 0, 0.5, (sig["yhat"] != y_test).astype(float))
                out["eg_mc"][r] = err.mean()
                out["eg_mc_se"][r] = err.std(ddof=1) / math.sqrt(len(err))
                out["loss_mc"][r] = sig["loss"].mean()
                out["gap_mc"][r] = (sig["G_plus"] - sig["G_minus"]).mean()
            r += 1
        if step >= n_total:
            break
        n = min(B, int(rec_steps[r]) - step)
        done = ff_block(
            act, n, st, xbuf, w, w_star, u, v_star, cfg["eta"], cfg["eta_u"], cfg["theta"], work
        )
        report(done)
        qd = work[5, :K]
        if (
            done < n
            or not (np.all(np.isfinite(qd)) and np.all(np.isfinite(u)))
            or np.any(qd > div.q_max)
        ):
            out["diverged"] = True
            out["alpha_diverged"] = (step + done) / N
            report(n_total - step - done)
            for key in ("Q", "R", "u"):
                out[key][r:] = np.nan
            break
        step += n
    out["init"] = OrderParameters(
        Q=out["Q"][0], R=out["R"][0], T=T_mat, v=np.zeros(K), v_star=v_star, u=out["u"][0]
    )
    # ε_g, loss and gap from the measured order parameters (numba, nogil: runs in the
    # worker thread like the simulation itself)
    from theory.ff import observables

    for key in ("eg", "loss", "gap"):
        out[key] = np.full(nT, np.nan)
    ok = np.isfinite(out["u"]).all(axis=-1)
    if ok.any() and cfg["quadrature"]:
        obs = observables(
            out["Q"][ok],
            out["R"][ok],
            T_mat,
            out["u"][ok],
            v_star,
            theta=cfg["theta"],
            activation=cfg["activation"],
        )
        for key in ("eg", "loss", "gap"):
            out[key][ok] = obs[key]
    return out


# ================================================================================ result
_ARRAYS = (
    "alpha",
    "steps",
    "seeds",
    "Q",
    "R",
    "u",
    "T",
    "v_star",
    "eg",
    "eg_mean",
    "eg_std",
    "loss",
    "gap",
    "diverged",
    "alpha_diverged",
    "eg_mc",
    "eg_mc_se",
    "loss_mc",
    "gap_mc",
    "Q0",
    "R0",
    "u0",
)
_STATS = ("Q", "R", "u", "loss", "gap", "eg_mc", "loss_mc", "gap_mc")


@dataclass(eq=False)
class FFSimulationResult(EnsembleResult):
    """Trajectories of an ensemble of online FF simulations (S seeds, T records).

    Attributes
    ----------
    alpha, steps, seeds : (T,), (T,), (S,) arrays
    Q, R, u : (S, T, K, K), (S, T, K, M), (S, T, K) arrays
        Measured ``w wᵀ/N``, ``w w*ᵀ/N`` and the label weights.
    T, v_star : (S, M, M), (S, M) arrays
    eg, loss, gap : (S, T) arrays
        ``ε_g = P(ŷ ≠ y)`` (ties half), mean loss and goodness gap ``E[G⁺ − G⁻]``, each
        evaluated from the measured order parameters (:func:`theory.ff.observables`).
    eg_mean, eg_std : (T,) arrays
        Over the ``n_mean`` seeds that did not diverge.
    diverged, alpha_diverged : (S,) arrays
    eg_mc, eg_mc_se, loss_mc, gap_mc : (S, T) arrays or None
        Test error on ``mc_test`` fixed inputs and its standard error; mean loss and
        goodness gap on the same inputs.
    Q0, R0, u0 : initial states of every seed; ``init`` that of seed index 0.
    config : dict
    """

    KIND = "simulations.FFSimulationResult"

    alpha: np.ndarray
    steps: np.ndarray
    seeds: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    u: np.ndarray
    T: np.ndarray
    v_star: np.ndarray
    eg: np.ndarray
    eg_mean: np.ndarray
    eg_std: np.ndarray
    loss: np.ndarray
    gap: np.ndarray
    n_mean: int
    diverged: np.ndarray
    alpha_diverged: np.ndarray
    config: dict
    init: OrderParameters
    Q0: np.ndarray
    R0: np.ndarray
    u0: np.ndarray
    eg_mc: np.ndarray | None = None
    eg_mc_se: np.ndarray | None = None
    loss_mc: np.ndarray | None = None
    gap_mc: np.ndarray | None = None

    @property
    def rule(self) -> str:
        return "ff"

    def initial_state(self, seed: int = 0) -> OrderParameters:
        """Measured initial order parameters (with ``u``) of seed index ``seed``."""
        S = len(self.seeds)
        if not 0 <= seed < S:
            raise IndexError(f"seed index {seed} out of range for {S} seeds")
        return OrderParameters(
            Q=self.Q0[seed],
            R=self.R0[seed],
            T=self.T[seed],
            v=np.zeros(self.u0.shape[-1]),
            v_star=self.v_star[seed],
            u=self.u0[seed],
        )

    def summary(self) -> str:
        c = self.config
        s = (
            f"ff: N={c['N']} K={c['K']} M={c['M']} {c['activation']} theta={c['theta']:g}, "
            f"{len(self.seeds)} seeds, alpha 0..{self.alpha[-1]:g} ({len(self.alpha)} "
            "records); "
        )
        nd = int(self.diverged.sum())
        if nd:
            s += f"{nd} diverged; "
        if self.n_mean and np.isfinite(self.eg_mean[-1]):
            s += (
                f"final eps_g = {self.eg_mean[-1]:.4g} ± {self.eg_std[-1]:.2g} (over "
                f"{self.n_mean} seeds)"
            )
        elif self.n_mean and self.eg_mc is not None:
            s += (
                f"final test error = {self.mean('eg_mc')[-1]:.4g} ± "
                f"{self.std('eg_mc')[-1]:.2g} (over {self.n_mean} seeds)"
            )
        return s

    def to_arrays(self) -> dict:
        d = {k: np.asarray(getattr(self, k)) for k in _ARRAYS if getattr(self, k) is not None}
        d["n_mean"] = np.asarray(self.n_mean)
        for name in _STATS:
            if name in d:
                d[name + "_mean"], d[name + "_std"], _ = ensemble_stats(d[name], self.diverged)
        d.update(self.init.to_dict(prefix="init_"))
        d["config_json"] = np.asarray(json.dumps(self.config))
        return d


# =============================================================================== simulate
def simulate_ff(config: dict, progress=None) -> FFSimulationResult:
    """Run an ensemble of online FF teacher–student simulations (see the module docstring
    and :func:`validate_ff_config`)."""
    from theory.ff import build_ff_system

    cfg = validate_ff_config(config)
    # generate / compile the theory's quadrature once, before the worker threads use it
    if cfg["quadrature"]:
        build_ff_system(cfg["K"], cfg["M"], cfg["activation"])
    N = cfg["N"]
    alphas = record_alphas(cfg["record"], cfg["alpha_max"])
    rec_steps = np.rint(alphas * N).astype(np.int64)
    S = len(cfg["seeds"])
    X_test = None
    if cfg["mc_test"]:
        X_test = mc_test_generator(cfg["init"]["seed"]).standard_normal((cfg["mc_test"], N))
    step_kernel(cfg["activation"])._warmup()  # compile / load before the threads start
    threads = cfg["threads"] or os.cpu_count() or 1
    bar = samples_bar(progress, S * int(rec_steps[-1]), f"ff N={N}")
    outs = run_parallel(
        lambda i, report: _run_seed(cfg, i, report, alphas, rec_steps, X_test),
        S,
        threads=threads,
        progress=bar,
    )

    def stack(key):
        return np.stack([o[key] for o in outs])

    diverged = np.array([o["diverged"] for o in outs], dtype=bool)
    Q, R, u = stack("Q"), stack("R"), stack("u")
    eg, loss, gap = stack("eg"), stack("loss"), stack("gap")
    eg_mean, eg_std, n_mean = ensemble_stats(eg, diverged)
    inits = [o["init"] for o in outs]
    return FFSimulationResult(
        alpha=alphas,
        steps=rec_steps,
        seeds=np.array(cfg["seeds"], dtype=np.int64),
        Q=Q,
        R=R,
        u=u,
        T=stack("T"),
        v_star=stack("v_star"),
        eg=eg,
        eg_mean=eg_mean,
        eg_std=eg_std,
        loss=loss,
        gap=gap,
        n_mean=n_mean,
        diverged=diverged,
        alpha_diverged=np.array([o["alpha_diverged"] for o in outs]),
        config=cfg,
        init=inits[0],
        Q0=np.stack([s.Q for s in inits]),
        R0=np.stack([s.R for s in inits]),
        u0=np.stack([s.u for s in inits]),
        eg_mc=stack("eg_mc") if X_test is not None else None,
        eg_mc_se=stack("eg_mc_se") if X_test is not None else None,
        loss_mc=stack("loss_mc") if X_test is not None else None,
        gap_mc=stack("gap_mc") if X_test is not None else None,
    )


#: the entry points of this model's simulation module (theory.models: FF.simulation)
simulate = simulate_ff
validate_config = validate_ff_config
