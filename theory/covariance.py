"""Finite N: the covariance of the per-sample increments of every order parameter
(docs/finite-size.md).

At finite N one online step moves every order parameter y by ``(1/N) f(y; z)``, with ``f`` a
function of the fields of that sample. Over ``dα`` (``N dα`` samples) the drift is ``E[f]``
(the ODEs) and the increments' covariance is ``Cov[f] dα / N``, so to leading order

    dy = E[f](y) dα + (1/√N) Σ(y)^{1/2} dB_α,          Σ = Cov[f]   (all pairs of y)

This module computes ``Σ(y)`` for the committee (every rule of :mod:`theory.rules` that the
quadrature backend takes: bp, fa, afa, pepita, pepita-forward, user rules, any activation).
With ``Δw_k = −(η/√N) δ_k p`` (p = x, or x̃ = x − F e) and ``Δv_k = −(η_v/N) e s_k``, the
per-sample increments times N are

    f_{Q_kl} = −η (δ_k P_l + δ_l P_k) + η² δ_k δ_l (p·p/N)
    f_{R_km} = −η δ_k P*_m
    f_{v_k}  = −η_v e s_k                                       (second layer "sgd")
    f_{b_k}  = −η δ_k (p·F) = −η δ_k (√N φ − [p = x̃] e ‖F‖²)    (adaptive feedback)

(``P_l = w_l·p/√N``, ``P*_m = w*_m·p/√N``, ``p·p/N = 1 + [p = x̃] e² σ_F²``: the table of
§5.5). The deterministic weight-decay terms carry no variance.

The η² term
-----------
``η² δ_k δ_l (p·p/N)`` is O(1/N) per sample like the η term, and its sample-to-sample
fluctuation through δ_k δ_l is O(1) like that of ``δ_k P_l``: it is part of ``f`` and of
``Σ``. Only the fluctuation of ``x·x/N`` around 1 (standard deviation ``√(2/N)``) is
dropped: it changes ``Σ`` by a relative O(1/√N)·O(1/√N) = O(1/N), beyond the leading order.

The O(1/N) drift
----------------
The per-sample increments above are exact except ``x·x/N``, set to 1. Exactly, with the
fields standardised as ``z = L ξ`` (``L Lᵀ = C``), ``x·x/N = (|ξ|² + χ²_{N−NU})/N`` where the
χ² part (the input outside the span of the NU = K + M weight vectors) is independent of the
fields, so the finite-N mean increment is::

    N E_N[Δy] = E[f] + (1/N) c,    c_{Q_kl} = η² E[δ_k δ_l (|ξ|² − NU)],   c_R = c_v = 0

(by Stein's lemma ``c_{Q_kl} = η² E[z·∇_z(δ_k δ_l)]``: it vanishes when δ_k δ_l does not
depend on the fields). This holds exactly for the rules with p = x, feedback ``v`` or
fixed and no weight decay (:func:`drift1_supported`: bp, fa, such user rules); for p = x̃
and for the adaptive b, whose increment is O(1/√N) per sample, the O(1/N) terms of the
mean are of a different kind and are not provided (``drift1`` then writes zeros).
:func:`odeflow.solve_sde` adds ``c/N`` and the discreteness of online learning (one
Euler step of size 1/N per sample) with ``drift_correction=True``
(docs/finite-size.md).

The feedback field φ
--------------------
``f_b`` holds ``√N φ``, ``φ = F·x/√N``: its variance ``‖F‖² = N σ_F²`` grows with N, which is
why b's noise does not vanish as N → ∞ (docs/theory.md). Its covariances with the fields
``z = (λ, ν)`` are ``(b, c)``, so exactly (a Gaussian regression, no expansion in 1/√N)

    √N φ = βᵀ z + s⊥ ξ⊥,    β = C⁻¹ (b, c),   s⊥² = ‖F‖² − (b, c)ᵀ C⁻¹ (b, c),   ξ⊥ ~ N(0, 1)

with ξ⊥ independent of everything else (``(b, c)ᵀC⁻¹(b, c)`` is the squared norm of F's
projection on the span of the weights, at most ‖F‖²). The ξ⊥ part is integrated exactly:
it adds ``η² s⊥² E[δ_k δ_l]`` to the b block and nothing to its cross-covariances. For AFA
at fixed σ_F this block is ``N η² σ_F² E[δ_k δ_l] + O(1)``, i.e. ``Σ_bb/N → η² σ_F² E[δ_k δ_l]``,
the feedback noise of :func:`odeflow.solve_sde` without N; the cross-covariances of b with
Q, R, v are O(1) (not O(N)) and are kept. ``‖F‖²`` is the state's ``F_norm2`` when it has
one (pepita), else ``N σ_F²``.

Quadrature
----------
Every moment is one pass over the nodes of a fixed Gaussian rule (:mod:`theory.quadrature`,
as the quadrature drift :mod:`theory.codegen_quad`): ``Σ = Σ_q w_q f_q f_qᵀ − m mᵀ`` (plus
the ξ⊥ block), ``m = Σ_q w_q f_q``. The default rule for the noise
(:func:`default_noise_rule`) is a small rule (scrambled Sobol at K + M ≥ 4): Σ sets the size of the
fluctuations, and a relative error ε in Σ changes a standard deviation by ε/2 (see
:func:`default_noise_rule` for its accuracy).

Generated code: the first half of every node (the node, the fields, the activation's
transcendentals, the rule's per-unit signals δ_k, s_k) is the drift's per-node code
(the same :mod:`theory.quad_expr` expressions), node by node through
:func:`theory.codegen_quad.node_body` (the drift takes its nodes in blocks of 64); this
template adds the increments f and their second moments. The helpers come from
:mod:`theory.field_kernels` and :mod:`theory.quad_kernels`.
The module is cached on disk like every generated module (:func:`theory.cache.load_module`).

Parameter vector (that of :class:`theory.codegen_quad.QuadSystem` with ``N`` added)::

    p = [K, M, eta, eta_v, sigma, sigma_F2, T (M·M), v_star (M), c (M), b (K, fixed
         feedback), rule parameters (sorted), ‖F‖², N, packed rule]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CovarianceSystem",
    "build_covariance",
    "covariance",
    "noise_system",
    "default_noise_rule",
    "drift1_supported",
    "labels",
    "COV_CODEGEN_VERSION",
]

COV_CODEGEN_VERSION = "3"
#: points of the default scrambled Sobol noise rule (K + M ≥ 4)
NOISE_SOBOL_N = 1024


def drift1_supported(rule) -> bool:
    """Whether the O(1/N) drift correction ``drift1`` is derived for ``rule`` (module
    docstring): p = x, feedback ``v`` or fixed, no weight decay."""
    return rule.presynaptic == "x" and rule.feedback in ("v", "fixed") and rule.weight_decay == 0


def default_noise_rule(dim: int):
    """The default quadrature rule of Σ for ``dim`` Gaussian variables.

    Tensor Gauss–Hermite with 10 nodes per variable for ``dim ≤ 3`` (≤ 1000 nodes);
    scrambled Sobol with :data:`NOISE_SOBOL_N` points beyond. Measured at K = M = 2 (bp,
    erf, a generic state; reference: Gauss–Hermite 20⁴): max relative error of Σ 0.8 %
    (Sobol 1024), 4 % (Gauss–Hermite 6⁴ = 1296 nodes), 0.4 % (Sobol 4096) — the erf fields
    are not polynomial enough for a coarse tensor rule. A relative error ε in Σ changes a
    standard deviation by ε/2."""
    from .quadrature import make_rule

    if dim <= 3:
        return make_rule(dim, "gauss-hermite", 10)
    return make_rule(dim, "sobol", NOISE_SOBOL_N, 0)


def labels(layout) -> list:
    """Names of the entries of the flat state, e.g. ``["Q[0,0]", "Q[0,1]", …, "b[1]"]``."""
    K, M = layout.K, layout.M
    out = [f"Q[{k},{l}]" for k in range(K) for l in range(k, K)]
    out += [f"R[{k},{m}]" for k in range(K) for m in range(M)]
    names = [n for n in layout.slices if n not in ("Q", "R")]
    for n in names:
        s = layout.slices[n]
        out += [f"{n}[{i}]" for i in range(s.stop - s.start)]
    return out


# --------------------------------------------------------------------------- source
def _cov_loop(unit, first, n_atoms, xt, adaptive, sgd_v, load_params):
    # c (drift1): η² E[δ_k δ_l (|ξ|² − NU)], the O(1/N) part of E[f_Q] for p = x (see
    # drift1_supported); only the first NU node coordinates are the fields' (ξ[NU] is the
    # output noise)
    from .codegen_quad import node_body

    pk = "Pk[k] = lam_ - e * bk_" if xt else "Pk[k] = lam_"
    rfield = "(z[K + m] - e * Bv[K + m])" if xt else "z[K + m]"
    pp = "1.0 + sigma_F2 * e * e" if xt else "1.0"
    fb = "(bz - e * F_norm2)" if xt else "bz"
    return f'''@njit(cache=True, nogil=True)
def _moments(y, p, m, S, c):
    """m ← E[f], S ← Cov[f] of the per-sample increments (times N) of the flat state;
    c ← the O(1/N) correction of E[f] (module docstring, zero where there is none)."""
    K = int(p[0]); M = int(p[1]); NU = K + M
    O_R = K * (K + 1) // 2; O_V = O_R + K * M; O_B = O_V + K
    n = m.shape[0]
    eta = p[2]; eta_v = p[3]; sigma = p[4]; sigma_F2 = p[5]
    P_RULE = P0 + M * M + 2 * M + K
{load_params}
    P_Q = P_RULE + N_RULE
    F_norm2 = p[P_Q]
    kind = int(p[P_Q + 2]); P = int(p[P_Q + 3]); D = int(p[P_Q + 4])
    O_N = P_Q + 5
    noisy = D > NU
    xi = np.empty(D); idx = np.zeros(D, np.int64)
    X, Wt, _ = _rule_arrays(p, O_N, kind)
    C = np.empty((NU, NU)); A = np.empty(NU); Bv = np.empty(NU)
    L = np.zeros((NU, NU)); z = np.empty(NU)
    d = np.empty(K); Pk = np.empty(K); s = np.empty(K); f = np.zeros(n)
    aDD = np.zeros((K, K)); TR = np.empty(({n_atoms}, NU))
    for i in range(n):
        m[i] = 0.0
        c[i] = 0.0
        for j in range(n):
            S[i, j] = 0.0
    _fill(y, p, K, M, C, A, Bv)
    if factor_nb(C, L) < 0:  # not PSD: unphysical; the solver stops on NaN
        for i in range(n):
            m[i] = np.nan
            c[i] = np.nan
            for j in range(n):
                S[i, j] = np.nan
        return
    beta = np.zeros(NU)
    sperp2 = 0.0
    if ADAPTIVE:
        # √N φ = βᵀ z + s⊥ ξ⊥ (least squares for a singular C: its null directions carry
        # no field, so any solution gives the same βᵀ z)
        beta = np.linalg.lstsq(C, Bv)[0]
        t = 0.0
        for a_ in range(NU):
            t += beta[a_] * Bv[a_]
        sperp2 = max(F_norm2 - t, 0.0)
    nX = X.shape[0]
    O_W = O_N + P * D
    for q in range(P):
{node_body(first, unit, [pk])}
        pp = {pp}
        i = 0
        for k in range(K):
            for l in range(k, K):
                f[i] = -eta * (d[k] * Pk[l] + d[l] * Pk[k]) + eta * eta * d[k] * d[l] * pp
                i += 1
        if DRIFT1:
            r2 = 0.0
            for a_ in range(NU):
                r2 += xi[a_] * xi[a_]
            wr = w * eta * eta * (r2 - NU)
            i = 0
            for k in range(K):
                for l in range(k, K):
                    c[i] += wr * d[k] * d[l]
                    i += 1
        for k in range(K):
            for mm in range(M):
                f[O_R + k * M + mm] = -eta * d[k] * {rfield.replace("m]", "mm]")}
            f[O_V + k] = -eta_v * e * s[k] if SGD_V else 0.0
        if ADAPTIVE:
            bz = 0.0
            for a_ in range(NU):
                bz += beta[a_] * z[a_]
            for k in range(K):
                f[O_B + k] = -eta * d[k] * {fb}
                for l in range(K):
                    aDD[k, l] += w * d[k] * d[l]
        for i in range(n):
            wf = w * f[i]
            m[i] += wf
            for j in range(i, n):
                S[i, j] += wf * f[j]
    for i in range(n):
        for j in range(i, n):
            S[i, j] -= m[i] * m[j]
            S[j, i] = S[i, j]
    if ADAPTIVE:  # the ξ⊥ part of √N φ: η² s⊥² E[δ_k δ_l] on the b block only
        for k in range(K):
            for l in range(K):
                S[O_B + k, O_B + l] += eta * eta * sperp2 * aDD[k, l]
'''


_ENTRY = '''@njit(cache=True, nogil=True)
def cov(y, p, S):
    """S ← Σ = Cov[f] (n×n) at the flat state y."""
    _moments(y, p, np.empty(y.shape[0]), S, np.empty(y.shape[0]))


@njit(cache=True, nogil=True)
def moments(y, p, m, S):
    """m ← E[f], S ← Σ at the flat state y."""
    _moments(y, p, m, S, np.empty(y.shape[0]))


@njit(cache=True, nogil=True)
def drift1(y, p, c):
    """c ← the O(1/N) correction of the drift, N (E_N[f] − E[f]) (zero without one)."""
    n = y.shape[0]
    _moments(y, p, np.empty(n), np.empty((n, n)), c)
'''


def cov_source(rule, act, key: str) -> str:
    """Python source of the generated covariance module of (rule, activation)."""
    from .codegen_quad import _unit_code
    from .emit import emit_module
    from .quad_expr import activation_functions, field_atoms, field_code

    adaptive = rule.feedback == "adaptive"
    xt = rule.presynaptic == "x_tilde"
    params = sorted(rule.params)
    unit = _unit_code(rule, act, False, params)
    first = ["zz_ = z[u]", *field_code(act, False), "e += A[u] * g_"]
    load_params = "\n".join(f"    {name} = p[P_RULE + {i}]" for i, name in enumerate(params))
    loop = _cov_loop(
        unit, first, len(field_atoms(act)), xt, adaptive, rule.second_layer == "sgd", load_params
    )
    return emit_module(
        generator="theory.covariance",
        version=COV_CODEGEN_VERSION,
        key=key,
        comments=[
            f"rule={rule.name!r} activation={act.name!r} presynaptic={rule.presynaptic!r}",
            "Σ = Cov[f] of the per-sample increments (any K, M and rule: read from p)",
        ],
        imports=["from theory.quadrature import factor_nb, map_node"],
        constants={
            "ADAPTIVE": int(adaptive),
            "DRIFT1": int(drift1_supported(rule)),
            "SGD_V": int(rule.second_layer == "sgd"),
            "N_RULE": len(params),
            "P0": 6,
        },
        functions=activation_functions(act),
        kernels=["field_kernels", "quad_kernels"],
        after=[loop, _ENTRY],
    )


# --------------------------------------------------------------------------- system
@dataclass
class CovarianceSystem:
    """The compiled Σ(y) of one committee rule and activation at K, M.

    Attributes
    ----------
    cov : numba function ``cov(y, p, S)``
        ``S`` (n×n) ← Σ = Cov[f] at the flat state ``y`` (the layout of the rule's
        :class:`theory.state.Layout`), with ``p`` from :meth:`params`.
    moments : numba function ``moments(y, p, m, S)``
        Also ``m`` ← E[f] (which equals the drift of the ODEs: a check).
    drift1 : numba function ``drift1(y, p, c)``
        ``c`` ← the O(1/N) correction of the drift (module docstring, "The O(1/N)
        drift"); zero for a rule where :func:`drift1_supported` is false.
    """

    rule: object
    K: int
    M: int
    activation: str
    layout: object
    cov: object
    moments: object
    drift1: object
    source_path: Path
    timings: dict

    def params(
        self, state, eta, eta_v=None, sigma=0.0, *, N, qrule=None, **rule_params
    ) -> np.ndarray:
        """The parameter vector of :attr:`cov` (module docstring) at size ``N``.

        ``qrule``: a :class:`theory.quadrature.QuadratureRule` over K + M (+1 when σ > 0)
        variables; default :func:`default_noise_rule`. ``‖F‖²``: ``state.F_norm2`` if set,
        else ``N σ_F²``."""
        from .cache import param_vector
        from .models import check_number

        N = check_number("N", N, 1.0)
        base = param_vector(self.rule, self.K, self.M, state, eta, eta_v, sigma, **rule_params)
        dim = self.K + self.M + (1 if sigma > 0 else 0)
        qr = default_noise_rule(dim) if qrule is None else qrule
        if qr.dim != dim:
            raise ValueError(f"noise quadrature rule has dim {qr.dim}, need {dim}")
        if state.F_norm2 is not None:
            f2 = float(state.F_norm2)
        else:
            f2 = N * float(state.sigma_F2 or 0.0)
        return np.concatenate([base, [f2, N], qr.packed()]).astype(float)

    def dim(self, sigma: float) -> int:
        """Gaussian variables of Σ's quadrature: K + M (+1 for the output noise ζ)."""
        return self.K + self.M + (1 if sigma > 0 else 0)

    def describe_rule(self, p) -> dict:
        """The quadrature rule packed in the parameter vector ``p`` (provenance)."""
        P_Q = 6 + self.M * self.M + 2 * self.M + self.K + len(self.rule.params)
        kind, P, D = int(p[P_Q + 2]), int(p[P_Q + 3]), int(p[P_Q + 4])
        scheme = "gauss-hermite" if kind == 0 else "explicit nodes (sobol)"
        return {"scheme": scheme, "nodes": P, "dim": D}

    def evaluate(self, state, eta, eta_v=None, sigma=0.0, *, N, qrule=None, **rule_params):
        """``(E[f], Σ)`` at ``state``: the flat mean (n,) and covariance (n, n)."""
        p = self.params(state, eta, eta_v, sigma, N=N, qrule=qrule, **rule_params)
        y = np.ascontiguousarray(self.layout.pack(state), dtype=float)
        m = np.empty(y.shape[0])
        S = np.empty((y.shape[0], y.shape[0]))
        self.moments(y, p, m, S)
        return m, S


_SYSTEMS: dict = {}


def _fingerprint() -> str:
    from .cache import source_fingerprint

    return source_fingerprint(
        (
            "covariance.py",
            "codegen_quad.py",
            "quadrature.py",
            "activations.py",
            "rules.py",
            "emit.py",
            "quad_expr.py",
            "field_kernels.py",
            "quad_kernels.py",
        )
    )


def build_covariance(rule, K: int, M: int, activation="erf") -> CovarianceSystem:
    """The compiled Σ(y) of a committee ``rule`` (name, :class:`theory.rules.Rule`, rule
    file) at K, M and ``activation`` (any: Σ always uses quadrature).

    Raises
    ------
    ValueError
        Unknown rule or activation.
    NotImplementedError
        A rule the quadrature backend cannot express (δ using φ).
    """
    import sympy as sp

    from . import rules as R
    from .activations import get_activation
    from .cache import digest_of, load_module, module_name
    from .codegen_quad import quad_path
    from .state import Layout, _check_size

    rule = R.get_rule(rule)
    act = get_activation(activation)
    K, M = _check_size("K", K), _check_size("M", M)
    key = (rule.key, act.key, sp.srepr(act.expr), K, M)
    if key in _SYSTEMS:
        return _SYSTEMS[key]
    t0 = time.perf_counter()
    path = quad_path("cov", COV_CODEGEN_VERSION, _fingerprint(), rule, act)
    digest = digest_of(path)
    adaptive = rule.feedback == "adaptive"

    def warm(mod):
        from .quadrature import make_rule

        lay = Layout(1, 1, adaptive)
        y = np.zeros(lay.n)
        y[0] = 1.0
        p = np.concatenate(
            [
                [1, 1, 0, 0, 0, 0, 1.0, 0, 0, 0],
                np.zeros(len(rule.params)),
                [0.0, 1.0],
                make_rule(2, "gauss-hermite", 2).packed(),
            ]
        )
        mod.cov(y, p, np.empty((lay.n, lay.n)))
        mod.drift1(y, p, np.empty(lay.n))

    mod, cached = load_module(
        path,
        lambda: cov_source(rule, act, digest),
        module_name(path),
        warm,
        ("cov", "moments", "drift1"),
    )
    system = CovarianceSystem(
        rule,
        K,
        M,
        act.name,
        Layout(K, M, adaptive),
        mod.cov,
        mod.moments,
        mod.drift1,
        path,
        {"compile": time.perf_counter() - t0, "source_cached": cached},
    )
    _SYSTEMS[key] = system
    return system


def noise_system(rule, K: int, M: int, activation="erf"):
    """The compiled Σ(y) of ``rule``'s model: :func:`build_covariance` (committee) or
    :func:`theory.ff_covariance.build_ff_covariance` (Forward-Forward)."""
    from .models import model_of

    if model_of(rule).name == "ff":
        from .ff_covariance import build_ff_covariance

        return build_ff_covariance(K, M, activation)
    return build_covariance(rule, K, M, activation)


def covariance(
    rule,
    state,
    *,
    eta,
    eta_v=None,
    sigma=0.0,
    N,
    activation="erf",
    rule_params=None,
    quadrature=None,
):
    """Σ(y) = Cov[f] of all order parameters at ``state`` (module docstring).

    Parameters
    ----------
    rule : str or Rule
        A committee rule (bp, fa, afa, pepita, pepita-forward, a Rule) or "ff".
    state : OrderParameters
    eta, eta_v, sigma : float
        Learning rates and output noise (as :func:`odeflow.solve`); for "ff" ``eta_v`` is
        the label-weight rate η_u and ``rule_params`` may hold ``theta``.
    N : float
        Input dimension (enters only through ‖F‖² = N σ_F² of adaptive feedback).
    quadrature : QuadratureRule, optional
        Default :func:`default_noise_rule` (committee).

    Returns
    -------
    (mean, Sigma, labels) : E[f] (n,), Σ (n, n) in the flat layout's order, entry names.
    """
    if rule == "ff":
        from .ff_covariance import ff_covariance

        rp = dict(rule_params or {})
        return ff_covariance(
            state, eta=eta, eta_u=eta_v, theta=rp.get("theta"), activation=activation
        )
    sysc = build_covariance(rule, state.K, state.M, activation)
    m, S = sysc.evaluate(state, eta, eta_v, sigma, N=N, qrule=quadrature, **dict(rule_params or {}))
    return m, S, labels(sysc.layout)
