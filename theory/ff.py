"""Forward-Forward in the teacher–student setting: the order-parameter ODEs (docs/ff-theory.md).

Model
-----
One FF layer of K units, input ``x ~ N(0, I_N)`` (fresh every step), label ``ℓ = ±1`` fed
through label weights ``u_k``::

    λ_k^ℓ = λ_k + u_k ℓ,   h_k^ℓ = g(λ_k^ℓ),   G^ℓ = Σ_k (h_k^ℓ)²
    y = sign(Σ_m v*_m g*(ν_m)),   g*(z) = erf(z/√2)          (the teacher's label)
    L = softplus(θ − G⁺) + softplus(G⁻ − θ)                  (G^± = G^{±y})
    a_k^± = ∂L/∂λ_k^± = (∂L/∂G^±) · d(g²)/dz |_{λ_k^±}
    w_k ← w_k − (η/√N) δ_k x,   δ_k = a_k^+ + a_k^−;    u_k ← u_k − (η_u/N) y (a_k^+ − a_k^−)

The teacher always labels with ``g* = erf(·/√2)`` whatever the student's activation (a ReLU
teacher would output the label 0 on half the inputs); for M = 1, ``y = sign(v*_1 ν_1)``.

As N → ∞ the order parameters ``Q, R, u`` (T, v* fixed) follow (§3's recipe)::

    dQ_kl/dα = −η E[δ_k λ_l + δ_l λ_k] + η² E[δ_k δ_l]
    dR_km/dα = −η E[δ_k ν_m]
    du_k/dα  = −η_u E[y (a_k^+ − a_k^−)]

over ``(λ, ν) ~ N(0, C)``, ``C = [[Q, R], [Rᵀ, T]]``. Observables: ``ε_g = P(ŷ ≠ y)`` with
``ŷ = sign(G^{+1} − G^{−1})`` (a tie counts half), the mean loss ``E[L]`` and the goodness
gap ``E[G⁺ − G⁻]``.

Derivation and generated code
-----------------------------
The signals are sympy expressions (:func:`signals`): the loss is written with the
functions :class:`softplus` and :class:`sigmoid` (whose derivatives sympy knows), the
activation ``g`` as an expression of ``z``, and ``∂L/∂G^±`` and ``d(g²)/dz`` come from
``sympy.diff``. They are printed into a numba module together with the quadrature kernels
of :mod:`theory.ff_rules` and :mod:`theory.ff_kernels` (real modules: only the activation's
functions are generated, :mod:`theory.emit`), cached on disk (``theory.cache.cache_dir()``,
keyed by the generator's sources and the activation), never edited by hand.

Quadrature (no closed forms)
----------------------------
The label is a function of ν only, so the label coordinates are the *outer* integral: at
each outer node y is fixed and the λ integrand is smooth, however sharply λ predicts the
label late in learning (conditioning on λ instead gives the label probability
``Φ(μ/σ)`` with σ → 0, which no fixed rule in λ resolves).

* **Linear label** (M = 1, or M = 2 with ``|v*_1| = |v*_2|``; ``p[9] = 1``): erf is odd
  and increasing, so ``y = sign(ζ)``, ``ζ = Σ_m sign(v*_m) ν_m``. Fields in the order
  ``(ζ, λ, ν)``; the outer rule is one line in ζ cut at 0. ν enters only dR, linearly, so
  only its regression on ``(ζ, λ)`` — the first 1 + K columns of its Cholesky rows — is
  needed.
* **General label** (``p[9] = 0``): fields ``(ν, λ)``; tensor Gauss–Hermite over
  ξ_ν1..ξ_ν(M−1) (``n_nu`` nodes); along the last coordinate the label jumps at
  ``ν_M = t``, ``t = √2 erfinv(−Σ_{m<M} v*_m erf(ν_m/√2) / v*_M)``. The teacher units are
  ordered by ``|v*_m|`` so that the unit with the largest one is last: for M = 2 the
  threshold then never leaves ``(−1, 1)`` and the outer integrand has no kink.

Either way the last outer line, ``[−8, 8]``, is cut into 6 cells plus the jump, each piece
integrated by ``n_leg``-point Gauss–Legendre against ``φ``. Inside, over ξ_λ (``p[10]``):

* ``1``, the split rule (K = 1, and K = 2 with M = 1): coordinate by coordinate (λ_k is
  affine in ξ_λk given the coordinates before it) [−8, 8] is cut into cells, at the kinks
  ``λ_k = ±u_k`` and where λ_k crosses the grid −6, …, 6, each piece with ``n_lam``
  Gauss–Legendre nodes — no piece wider than 1 in λ, where the integrand's poles (those of
  s(θ − G)) sit O(1) from the real axis: a rule uniform in ξ (Gauss–Hermite) converges
  like exp(−c√n/√Q) and fails once the weights grow;
* ``2``, QMC (otherwise): ``p[11]`` points of one scrambled Sobol sequence over (label
  coordinates, ξ_λ), the last label coordinate split at the jump point by point (the
  uniform mapped into both pieces by Φ⁻¹), replacing the outer rule;
* ``0``, tensor Gauss–Hermite (``n_lam`` per unit; the rule of FF_CODEGEN_VERSION ≤ 3, kept
  for comparison).

``ε_g`` integrates an indicator in λ (the sign of ``G^{+1} − G^{−1}``). Given the outer
node, an explicit rule over ξ_λ1..ξ_λ(K−1) — the midpoint rule in probability space
(``ξ = Φ⁻¹((i + ½)/n)``, robust to the cusps of this integrand) at K = 2, scrambled Sobol
points at K ≥ 3; with the QMC rule, ``p[12]`` Sobol points over (label coordinates,
ξ_λ1..ξ_λ(K−1)) split at the jump like the drift's — and, along ξ_λK (on which ``λ_K``
depends affinely), the exact Gaussian
mass of the pieces where the prediction is wrong: the sign changes of
``D = G^{+1} − G^{−1}`` are located on a grid of spacing 0.27 in ``[−8, 8]`` and refined
by bisection.

Parameter vector ``p`` (the teacher units are reordered by increasing ``|v*_m|``: ``T``
and ``v_star`` are stored in that order, ``pos[m]`` is the position of unit m)::

    p = [K, M, eta, eta_u, theta, n_lam, n_nu, n_eg (0 with QMC), n_leg, linear label
         (0/1: then one outer coordinate, else M), λ rule (0 GH, 1 split, 2 QMC), n_qmc,
         n_eg QMC (0 without), T (M·M), v_star (M), pos (M),
         GH nodes/weights for λ (n_lam, n_lam), for ν (n_nu, n_nu), ε_g points
         (n_eg·(K−1)) and weights (n_eg), Gauss–Legendre nodes/weights on [−1, 1]
         (n_leg, n_leg), QMC points of the drift (n_qmc·(MO + K)) and of ε_g
         (n_eg·(MO + K − 1))]

Flat state ``y = [Q upper triangle, R (row-major), u]`` (:class:`FFLayout`): Q and R first,
as the solvers' positive-semi-definiteness check expects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from .ff_tolerance import RTOL_DEFAULT
from .state import OrderParameters, _check_size

__all__ = [
    "ACTIVATIONS",
    "signals",
    "build_ff_system",
    "FFSystem",
    "FFLayout",
    "observables",
    "default_nodes",
    "FF_CODEGEN_VERSION",
    "RTOL_DEFAULT",
]

#: built-in student activations (any sympy expression of theory.activations.z works too)
ACTIVATIONS = ("erf", "linear", "relu", "tanh", "sigmoid")
FF_CODEGEN_VERSION = "4"
_HEADER = 13


def check_activation(activation):
    """The :class:`theory.activations.Activation` of ``activation`` (a built-in name, a
    ``"user:<expr>"`` string or a sympy expression of ``z``); ValueError otherwise."""
    from .activations import get_activation

    try:
        return get_activation(activation)
    except ValueError as exc:
        raise ValueError(f"unsupported activation for rule 'ff': {exc}") from None


# ============================================================================ sympy part
def _sympy():
    import sympy as sp

    class sigmoid(sp.Function):
        """Logistic function s(x) = 1/(1 + e^{−x}); s' = s (1 − s)."""

        def fdiff(self, argindex=1):
            return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))

    class softplus(sp.Function):
        """softplus(x) = log(1 + e^x); softplus' = s."""

        def fdiff(self, argindex=1):
            return sigmoid(self.args[0])

    return sp, sigmoid, softplus


@cache
def _symbols():
    sp, sigmoid, softplus = _sympy()
    names = ("z", "lam_p", "lam_m", "G_p", "G_m", "theta")
    return sp, sigmoid, softplus, {n: sp.Symbol(n, real=True) for n in names}


def activation_expr(activation):
    """``g(z)`` as a sympy expression of the symbol ``z`` (from :mod:`theory.activations`)."""
    return check_activation(activation).expr


def signals(activation: str = "erf") -> dict:
    """The FF loss and signals as sympy expressions (docs/ff-theory.md).

    Returns a dict of expressions in the symbols ``lam_p, lam_m`` (λ_k^±), ``G_p, G_m``
    (G^±) and ``theta``:

    ``loss``      softplus(θ − G⁺) + softplus(G⁻ − θ)
    ``dL_dGp``    ∂L/∂G⁺ (sympy.diff)         ``dL_dGm``  ∂L/∂G⁻
    ``dh2``       d g(z)²/dz (sympy.diff), a function of ``z``
    ``a_plus``    ∂L/∂G⁺ · dh2(λ⁺) = ∂L/∂λ_k^+      ``a_minus`` likewise
    ``delta``     a_plus + a_minus (the first-layer signal)
    ``u_signal``  a_plus − a_minus (the label-weight signal, times y)
    """
    sp, sigmoid, softplus, S = _symbols()
    z, Gp, Gm, th = S["z"], S["G_p"], S["G_m"], S["theta"]
    g = activation_expr(activation)
    loss = softplus(th - Gp) + softplus(Gm - th)
    dLp, dLm = sp.diff(loss, Gp), sp.diff(loss, Gm)
    dh2 = sp.diff(g**2, z)
    ap = dLp * dh2.subs(z, S["lam_p"])
    am = dLm * dh2.subs(z, S["lam_m"])
    return {
        "g": g,
        "loss": loss,
        "loss_p": softplus(th - Gp),
        "loss_m": softplus(Gm - th),
        "dL_dGp": dLp,
        "dL_dGm": dLm,
        "dh2": dh2,
        "a_plus": ap,
        "a_minus": am,
        "delta": ap + am,
        "u_signal": ap - am,
    }


def _generated_functions(activation: str) -> list:
    """numba sources of g_, dh2_, dg_ (g'), dLp_, dLm_, Lp_, Lm_ printed from :func:`signals` (the
    names :mod:`theory.ff_kernels` expects)."""
    import sympy as sp

    from .emit import NumbaPrinter, njit_function

    sig = signals(activation)
    P = NumbaPrinter(functions={"sigmoid": "_sigmoid", "softplus": "_softplus"})
    defs = [
        ("g_", "z", sig["g"]),
        ("dh2_", "z", sig["dh2"]),
        ("dg_", "z", sp.diff(sig["g"], _symbols()[3]["z"])),
        ("dLp_", "G_p, theta", sig["dL_dGp"]),
        ("dLm_", "G_m, theta", sig["dL_dGm"]),
        ("Lp_", "G_p, theta", sig["loss_p"]),
        ("Lm_", "G_m, theta", sig["loss_m"]),
    ]
    return [
        njit_function(name, args, [f"return {P.doprint(expr)}"], inline=True)
        for name, args, expr in defs
    ]


def _source(activation: str, digest: str) -> str:
    """The generated FF module: the activation's functions, then the kernels of
    :mod:`theory.ff_kernels`."""
    from .emit import emit_module

    return emit_module(
        generator="theory.ff",
        version=FF_CODEGEN_VERSION,
        key=digest,
        comments=[f"activation={check_activation(activation).name!r}"],
        constants={"_HEADER": _HEADER},
        functions=_generated_functions(activation),
        kernels=["ff_rules", "ff_kernels"],
    )


_MODULES: dict = {}


def _load_module(activation: str):
    """Generate (or find on disk) and import the FF module of ``activation``."""
    import sympy as sp

    from .cache import digest_of, generated_path, load_module, module_name, source_fingerprint

    act = check_activation(activation)
    akey = act.key
    if akey in _MODULES:
        return _MODULES[akey]
    t0 = time.perf_counter()
    fingerprint = source_fingerprint(
        ("ff.py", "ff_rules.py", "ff_kernels.py", "emit.py", "activations.py")
    )
    path = generated_path("ff", FF_CODEGEN_VERSION, fingerprint, sp.srepr(act.expr), label=akey)
    digest = digest_of(path)
    # written with a content hash, verified, repaired if corrupt (theory.cache); the
    # kernels compile lazily, on the first right-hand side
    mod, _ = load_module(
        path,
        lambda: _source(activation, digest),
        module_name(path),
        lambda m: None,
        required=("rhs", "eg", "loss_gap"),
    )
    _MODULES[akey] = (mod, path, time.perf_counter() - t0)
    return _MODULES[akey]


# ================================================================================ nodes
def default_nodes(K: int, M: int, activation: str = "erf") -> dict:
    """Node counts of the FF rule (docs/ff-theory.md, "How the expectations are computed").

    ``split_lam`` = 1 (K = 1, or K = 2 with M = 1): the nested split rule over the student
    fields, each coordinate cut into pieces (cells of [−8, 8], the kinks λ_k = ±u_k and the grid
    λ_k ∈ {−6, …, 6}) with ``n_lam`` Gauss–Legendre nodes per piece. ``n_qmc`` > 0 (else):
    that many scrambled Sobol points over (label coordinate, student fields), the label
    coordinate split at the label's jump in every point. ``n_lam`` alone (both
    0): tensor Gauss–Hermite per student unit (the rule of FF_CODEGEN_VERSION ≤ 3,
    selectable for comparison). ``n_nu`` Gauss–Hermite nodes per teacher unit beyond the
    first (a label that is not the sign of a linear form of ν), ``n_eg`` points of ε_g's
    outer rule (midpoint in probability space with the split rule at K = 2, else QMC points),
    ``n_leg`` Gauss–Legendre nodes per piece of the label line, ``seed`` the scrambling of
    the QMC points.

    Chosen to meet :data:`RTOL_DEFAULT` at the states of real learning curves (Q_kk up to
    ~10, grown label weights; tests/theory/test_ff_accuracy.py) at ≤ 0.2 s per right-hand
    side up to K = 6 (benchmarks/bench_ff.py)."""
    check_activation(activation)
    # the split rule is exact-grade (≤ 4e-5 relative, measured) but costs (~80 nodes)^K
    # times the outer rule (42 nodes, 504 for a general label at M = 2)
    split = K == 1 or (K == 2 and M == 1)
    n_qmc = 0 if split else _QMC_POINTS.get(K, 1 << 15)
    return {
        "n_lam": 4 if split else 1,
        "split_lam": int(split),
        "n_qmc": n_qmc,
        "n_nu": 12 if M > 1 else 1,
        # ε_g: exact at K = 1, 256 midpoints at K = 2 with the split rule, else QMC points
        "n_eg": (1 if K == 1 else 256) if split else 1 << 13,
        "n_leg": 6,
        "seed": 0,
    }


#: scrambled Sobol points of the default QMC rule at K ≥ 3
_QMC_POINTS = {2: 1 << 15, 3: 1 << 15, 4: 1 << 15, 5: 1 << 15, 6: 1 << 15}


def _check_n_qmc(n: int):
    """n_qmc is 0 (no QMC rule) or a power of 2 >= 64."""
    if n and (n < 64 or n & (n - 1)):
        raise ValueError(
            f"n_qmc must be 0 or a power of 2 >= 64 (the points of a scrambled Sobol "
            f"sequence), got {n}"
        )


@cache
def _qmc_points(K: int, MO: int, n: int, seed: int = 0) -> np.ndarray:
    """The QMC points of the kernel, ``(n, MO + K)``: a Sobol sequence in MO + K dimensions,
    scrambled with ``seed``, ξ = Φ⁻¹(U) for the first MO − 1 label coordinates and the
    student fields, the uniform itself for the last label coordinate (split at the label's
    jump in the kernel). One sequence of n points is about 3× more accurate than 8
    independent scramblings of n/8 (measured at K = 4: 1e-4 against 3e-4 at n = 2^15)."""
    from scipy.special import ndtri
    from scipy.stats import qmc

    U = qmc.Sobol(MO + K, scramble=True, seed=np.random.default_rng([seed, K, MO])).random(n)
    X = ndtri(U)
    X[:, MO - 1] = U[:, MO - 1]
    return np.ascontiguousarray(X)


@cache
def _gauss_hermite(n: int):
    """One-dimensional Gauss–Hermite nodes and weights for E over N(0, 1), from
    :func:`theory.quadrature.make_rule` (the tensor products are formed in the kernels)."""
    if n == 1:
        return np.zeros(1), np.ones(1)
    from .quadrature import make_rule

    r = make_rule(1, "gauss-hermite", n)
    return r.x1, r.w1


@cache
def _midpoint_normal(n: int):
    """Midpoint rule in probability space: ``ξ_i = Φ⁻¹((i + ½)/n)``, weights ``1/n``.

    Used for ε_g's outer integral, whose integrand has a cusp where the other units'
    goodness difference vanishes (there the sign of ``D`` is decided far in the tail of
    the last coordinate): Gauss–Hermite converges like ~1/n on it, this rule much faster
    (measured: 3e-5 at n = 64 where Gauss–Hermite is 7e-4 off)."""
    from scipy.special import ndtri

    return ndtri((np.arange(n) + 0.5) / n), np.full(n, 1.0 / n)


@cache
def _eg_points(K: int, n: int):
    """The explicit outer rule of ε_g over ξ_λ1..ξ_λ(K−1): points (n, K − 1) and weights.

    K = 1: one empty point. K = 2: the midpoint rule in probability space (above). K ≥ 3:
    ``n`` scrambled Sobol points (fixed seed) mapped by Φ⁻¹ — the tensor midpoint rule
    converges like 1/n per dimension on the cusps of this integrand (measured at K = 4:
    3e-3 off with 14³ points), randomised QMC close to 1/n in the total count."""
    if K == 1:
        return np.zeros((1, 0)), np.ones(1)
    if K == 2:
        x, w = _midpoint_normal(n)
        return x[:, None], w
    from .quadrature import make_rule

    r = make_rule(K - 1, "sobol", n, seed=0)
    return r.nodes, r.weights


@cache
def _gauss_legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


# =============================================================================== layout
@dataclass(frozen=True)
class FFLayout:
    """Flat FF state ``y = [Q upper triangle (row-major), R (row-major), u]``."""

    K: int
    M: int
    adaptive_b: bool = False

    @property
    def nQ(self) -> int:
        return self.K * (self.K + 1) // 2

    @property
    def slices(self) -> dict:
        K, M, nQ = self.K, self.M, self.nQ
        return {
            "Q": slice(0, nQ),
            "R": slice(nQ, nQ + K * M),
            "u": slice(nQ + K * M, nQ + K * M + K),
        }

    @property
    def n(self) -> int:
        return self.nQ + self.K * self.M + self.K

    def pack(self, state: OrderParameters) -> np.ndarray:
        if (state.K, state.M) != (self.K, self.M):
            raise ValueError(
                f"state has K={state.K}, M={state.M} but the system was built "
                f"for K={self.K}, M={self.M}"
            )
        _require_u(state)
        iu = np.triu_indices(self.K)
        return np.concatenate([state.Q[iu], state.R.ravel(), state.u]).astype(float)

    def unpack(self, y) -> dict:
        y = np.asarray(y, dtype=float)
        if y.shape[-1] != self.n:
            raise ValueError(f"flat state must have last dimension {self.n}, got {y.shape}")
        K, M, s = self.K, self.M, self.slices
        lead = y.shape[:-1]
        Q = np.empty(lead + (K, K))
        iu = np.triu_indices(K)
        Q[..., iu[0], iu[1]] = y[..., s["Q"]]
        Q[..., iu[1], iu[0]] = y[..., s["Q"]]
        return {"Q": Q, "R": y[..., s["R"]].reshape(lead + (K, M)), "u": y[..., s["u"]].copy()}

    def state(self, y, constants: OrderParameters) -> OrderParameters:
        return constants.replace(**self.unpack(y))


def _require_u(state: OrderParameters):
    if state.u is None:
        raise ValueError(
            "rule 'ff' needs the label weights u (K numbers) in the initial "
            "state: OrderParameters(..., u=...) or init key 'u' (e.g. "
            "u ~ 0.1·N(0, 1); u = 0 is the symmetric point)"
        )


@dataclass(frozen=True)
class FFRule:
    """The FF rule as the solver sees it (name, parameters and their defaults)."""

    name: str = "ff"
    feedback: str = "none"
    params: dict = field(default_factory=lambda: {"theta": None})


# =============================================================================== system
@dataclass
class FFSystem:
    """The compiled FF system for one K, M and activation: implements the contract of
    :class:`theory.system.System` (``rhs(y, p, dy)``, ``eg(y, p)``, ``noise`` = None,
    ``layout``, ``params``, ``observables``, ``describe``). ``rhs`` and ``eg`` poll the
    abort slot of :mod:`theory.runtime.interruptible` once per outer node."""

    #: its kernels poll the abort slot (theory.ff_kernels._abort_at)
    polls_abort = True

    K: int
    M: int
    activation: str
    nodes: dict
    rhs: object
    eg: object
    loss_gap: object
    source_path: Path
    layout: FFLayout
    rule: FFRule = field(default_factory=FFRule)
    noise: object = None
    timings: dict = field(default_factory=dict)
    #: the tolerance (theory.ff_tolerance) and whether it was asked for (then checked at
    #: the initial state of every solve, through :meth:`params`)
    rtol: float = RTOL_DEFAULT
    rtol_given: bool = False
    #: the rates and θ of the last :meth:`params` call with a drift (what
    #: :meth:`error_estimate` uses when called without them, as odeflow's report does)
    last_args: dict = field(default_factory=dict)

    #: the model in theory.models.MODELS (the System contract, theory.system.System)
    model = "ff"

    def describe(self) -> dict:
        """Provenance (:func:`theory.system.describe_system`) plus the node counts."""
        from .system import describe_system

        return {**describe_system(self), "nodes": dict(self.nodes)}

    @property
    def quadrature(self) -> dict:
        """The quadrature options in effect: ``rtol`` and the node counts."""
        return {"rtol": self.rtol, **self.nodes}

    def describe_rule(self, sigma=0.0) -> dict:
        """The rule (scheme and node counts), as odeflow's quadrature report shows it."""
        nd = self.nodes
        if nd["n_qmc"]:
            scheme = "sobol (split at the label's jump)"
        else:
            scheme = "split gauss-legendre" if nd["split_lam"] else "gauss-hermite"
        return {"scheme": scheme, **nd}

    def with_nodes(self, nodes: dict) -> FFSystem:
        """The same K, M and activation with another node rule (the error estimate's
        partner rules, :mod:`theory.ff_tolerance`, which must not import this module)."""
        return build_ff_system(self.K, self.M, self.activation, nodes)

    def error_estimate(self, state, eta=None, eta_v=None, sigma=0.0, theta=None, eta_u=None):
        """The rule's error estimate at ``state`` (:func:`theory.ff_tolerance.error_estimate`);
        rates and θ default to those of the last :meth:`params` call with a drift."""
        from .ff_tolerance import error_estimate

        la = self.last_args
        eta = la.get("eta", 0.0) if eta is None else eta
        theta = la.get("theta") if theta is None else theta
        if eta_u is None and eta_v is None:
            eta_u = la.get("eta_u")
        return error_estimate(self, state, eta, eta_v, sigma, theta, eta_u)

    def params(
        self,
        state: OrderParameters,
        eta,
        eta_v=None,
        sigma=0.0,
        theta=None,
        eta_u=None,
        check=True,
    ) -> np.ndarray:
        """The parameter vector ``p``. ``eta_u`` (label-weight rate, scaled η_u/N) may also
        be given as ``eta_v`` (the solver's second-layer slot); default ``eta``. ``theta``
        defaults to K/2 (docs/ff-theory.md).

        Raises ValueError for θ ≤ 0, a state without ``u``, a zero ``v*``, σ ≠ 0 or bad
        rates, and — when an ``rtol`` was asked for (``build_ff_system(...,
        quadrature={"rtol": ...})``) and ``check`` — for a rule whose error estimate at
        ``state`` does not meet it (:func:`theory.ff_tolerance.check_tolerance`).
        """
        if (state.K, state.M) != (self.K, self.M):
            raise ValueError(
                f"state has K={state.K}, M={state.M} but the system was built "
                f"for K={self.K}, M={self.M}"
            )
        _require_u(state)
        if eta_u is None:
            eta_u = eta if eta_v is None else eta_v
        theta = self.K / 2.0 if theta is None else theta
        for name, val in (("eta", eta), ("eta_u", eta_u)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {val}")
        try:
            theta = float(theta)
        except (TypeError, ValueError):
            raise ValueError(f"theta must be a positive number, got {theta!r}") from None
        if not (np.isfinite(theta) and theta > 0):
            raise ValueError(
                f"theta (the goodness threshold of rule 'ff') must be a positive "
                f"finite number, got {theta}"
            )
        if sigma:
            raise ValueError(
                "rule 'ff' has no output noise: its labels are sign(teacher); "
                f"sigma must be 0, got {sigma}"
            )
        if np.any(state.v_star == 0):
            raise ValueError(
                f"rule 'ff' needs every v_star non-zero (a unit with v*_m = 0 "
                f"does not take part in the label), got {state.v_star}"
            )
        # Linear label: with M = 1, or M = 2 and |v*_1| = |v*_2|, y = sign(Σ v*_m erf(ν_m/√2))
        # = sign(ζ), ζ = Σ_m sign(v*_m) ν_m (erf is odd and increasing), so the outer
        # integral is one split half-line in ζ whatever M.
        av = np.abs(state.v_star)
        lin = self.M == 1 or (self.M == 2 and av[0] == av[1])
        # Otherwise the teacher unit with the largest |v*| goes last: its ν is integrated
        # exactly (half-line), and with |v*_last| >= |v*_m| the threshold
        # erf(t/√2) = −Σ v*_m erf(ν_m/√2)/v*_last stays inside (−1, 1) for M = 2, so the
        # remaining Gauss–Hermite integrand has no kink.
        order = np.argsort(av, kind="stable")
        pos = np.empty(self.M)
        pos[order] = np.arange(self.M)
        nd = self.nodes
        # the λ slot: Gauss–Hermite nodes, or Gauss–Legendre ones for the split rule
        xl, wl = _gauss_legendre(nd["n_lam"]) if nd["split_lam"] else _gauss_hermite(nd["n_lam"])
        xn, wn = _gauss_hermite(nd["n_nu"])
        qmc = bool(nd["n_qmc"])
        mo = 1 if lin else self.M
        xq = xeq = np.zeros((0, 0))
        if qmc:  # ε_g then on QMC points too (K − 1 student fields, the last one exact)
            xe, we = np.zeros((0, 0)), np.zeros(0)
            xq = _qmc_points(self.K, mo, nd["n_qmc"], nd["seed"])
            xeq = _qmc_points(self.K - 1, mo, nd["n_eg"], nd["seed"] + 1000)
        else:
            xe, we = _eg_points(self.K, nd["n_eg"])
        xg, wg = _gauss_legendre(nd["n_leg"])
        head = [
            self.K,
            self.M,
            eta,
            eta_u,
            theta,
            nd["n_lam"],
            nd["n_nu"],
            len(we),
            nd["n_leg"],
            int(lin),
            2 if qmc else nd["split_lam"],
            nd["n_qmc"],
            nd["n_eg"] if qmc else 0,
        ]
        assert len(head) == _HEADER
        if eta or eta_u:
            self.last_args = {"eta": eta, "eta_u": eta_u, "theta": theta}
            if check and self.rtol_given:
                from .ff_tolerance import check_tolerance

                check_tolerance(self, state, eta, None, 0.0, theta, eta_u)
        return np.ascontiguousarray(
            np.concatenate(
                [
                    head,
                    state.T[np.ix_(order, order)].ravel(),
                    state.v_star[order],
                    pos,
                    xl,
                    wl,
                    xn,
                    wn,
                    xe.ravel(),
                    we,
                    xg,
                    wg,
                    xq.ravel(),
                    xeq.ravel(),
                ]
            ),
            dtype=float,
        )

    def evaluate(
        self, state: OrderParameters, eta, eta_v=None, sigma=0.0, theta=None, eta_u=None
    ) -> dict:
        """The drift at ``state``: ``{"Q", "R", "u"}`` (d/dα)."""
        p = self.params(state, eta, eta_v, sigma, theta=theta, eta_u=eta_u)
        y = self.layout.pack(state)
        dy = np.empty_like(y)
        self.rhs(y, p, dy)
        return self.layout.unpack(dy)

    def observables(self, y, p) -> dict:
        """``eg``, ``loss`` and ``gap`` for a flat state or a stack ``(T, n)`` of them.

        ~0.1–0.3 s per state at K = 4: a run's 200 records take a minute, said on stderr
        (commands) after 0.5 s; Ctrl-C is seen between two states."""
        from .runtime import cli

        Y = np.atleast_2d(np.asarray(y, dtype=float))
        eg, loss, gap = (np.empty(len(Y)) for _ in range(3))
        out = np.empty(2)
        with cli.activity(f"evaluating ε_g, loss and gap of rule 'ff' on {len(Y)} states"):
            for i, yi in enumerate(Y):
                yi = np.ascontiguousarray(yi)
                eg[i] = self.eg(yi, p)
                self.loss_gap(yi, p, out)
                loss[i], gap[i] = out
        if np.ndim(y) == 1:
            return {"eg": eg[0], "loss": loss[0], "gap": gap[0]}
        return {"eg": eg, "loss": loss, "gap": gap}

    def state_observables(self, state: OrderParameters, theta=None) -> dict:
        """``eg``, ``loss``, ``gap`` at ``state``."""
        p = self.params(state, 0.0, 0.0, theta=theta)
        return self.observables(self.layout.pack(state), p)


_SYSTEMS: dict = {}


def build_ff_system(
    K: int, M: int, activation: str = "erf", nodes: dict | None = None, quadrature=None
) -> FFSystem:
    """The compiled FF system (generated once per activation and process, cached on disk;
    every K, M and node count reuses the same compiled kernels).

    ``nodes``: node counts replacing :func:`default_nodes`'. ``quadrature``: None, "auto" or
    a dict ``{"rtol", "n", "seed", <node counts>}`` (:func:`theory.ff_tolerance.check_options`);
    an ``rtol`` given there is checked at the initial state of every solve
    (:meth:`FFSystem.params`).
    """
    from .ff_tolerance import check_options

    act = check_activation(activation)
    K, M = _check_size("K", K), _check_size("M", M)
    nd = dict(default_nodes(K, M, act.name))
    rtol, qnodes = check_options(quadrature, nd)
    rtol_given = isinstance(quadrature, dict) and "rtol" in quadrature
    given = {**(nodes or {}), **qnodes}
    if given.get("n_qmc"):  # the QMC rule asked for where the split rule is the default
        given.setdefault("split_lam", 0)
        given.setdefault("n_eg", max(nd["n_eg"], 1 << 13))
    if given:
        bad = set(given) - set(nd)
        if bad:
            raise ValueError(f"unknown node counts {sorted(bad)}; allowed: {sorted(nd)}")
        nd.update({k: int(v) for k, v in given.items()})
    _check_n_qmc(nd["n_qmc"])
    key = (K, M, act.key, tuple(sorted(nd.items())), rtol, rtol_given)
    if key not in _SYSTEMS:
        mod, path, t = _load_module(act)
        _SYSTEMS[key] = FFSystem(
            K,
            M,
            act.name,
            nd,
            mod.rhs,
            mod.eg,
            mod.loss_gap,
            path,
            FFLayout(K, M),
            timings={"load": t},
            rtol=rtol,
            rtol_given=rtol_given,
        )
    return _SYSTEMS[key]


def observables(Q, R, T, u, v_star, *, theta, activation="erf", nodes=None) -> dict:
    """ε_g, mean loss and goodness gap from order parameters (leading axes allowed on
    ``Q (…, K, K)``, ``R (…, K, M)``, ``u (…, K)``; ``T``, ``v_star`` fixed).

    Used by the simulations on their measured order parameters."""
    Q, R, u = (np.asarray(a, dtype=float) for a in (Q, R, u))
    T, v_star = np.asarray(T, dtype=float), np.asarray(v_star, dtype=float)
    K, M = R.shape[-2], R.shape[-1]
    sysm = build_ff_system(K, M, activation, nodes)
    lead = u.shape[:-1]
    iu = np.triu_indices(K)
    Y = np.concatenate([Q[..., iu[0], iu[1]], R.reshape(lead + (K * M,)), u], axis=-1)
    st = OrderParameters(
        Q=np.eye(K), R=np.zeros((K, M)), T=T, v=np.zeros(K), v_star=v_star, u=np.zeros(K)
    )
    p = sysm.params(st, 0.0, 0.0, theta=theta)
    out = sysm.observables(Y.reshape(-1, Y.shape[-1]), p)
    return {k: v.reshape(lead) for k, v in out.items()}
