"""Deep students: a wide first layer and a finite deep read-out (docs/deep.md).

Model (docs/deep.md)::

    λ = W₁ x/√N ∈ R^{K₁},  h₁ = g(λ),  a_{ℓ+1} = W_ℓ h_ℓ,  h_{ℓ+1} = g(a_{ℓ+1}),
    ŷ = v·h_{L−1},  y = Σ_m v*_m g(ν_m) + σ ζ,  e = ŷ − y

with hidden widths ``widths = [K₁, K₂, …, K_{L−1}]`` and read-out matrices ``W[0]``
(K₂×K₁), ``W[1]`` (K₃×K₂), … (named as in the API: ``W[i]`` maps h_{i+1} to a_{i+2}).
Rates: W₁ step η/√N, every ``W[i]`` step η_W/N, v step η_v/N. Only W₁ is high-dimensional,
so ``Q, R`` (of W₁), the matrices ``W[i]``, ``v`` (and PEPITA's ``b = W₁F/√N``) obey closed
ODEs, expectations over the K₁ + M Gaussian fields (and ζ when σ > 0) computed by a fixed
quadrature rule (:mod:`theory.quadrature`). Rules and the first-layer update
``Δw_k = −(η/√N)(A_k x + B_k F)``:

=================  ==========================================  =========================
rule               signals δ_ℓ (hidden layer ℓ)                 W₁: A_k, B_k
=================  ==========================================  =========================
bp                 δ_{L−1} = g'(a) ⊙ v e, δ_ℓ = g'(a) ⊙ Wᵀδ      δ₁, 0
fa                 b in place of v, B[ℓ] in place of W[ℓ]ᵀ     δ₁, 0
dfa                δ_ℓ = g'(a_ℓ) ⊙ d_ℓ e                        δ₁, 0
afa                δ₁ = g'(λ) ⊙ b e, δ_{ℓ+1} = g'(a) ⊙ W δ_ℓ      δ₁, 0   (b adaptive)
pepita             δ_ℓ = h_ℓ − h̃_ℓ (second pass from λ − e b)    δ₁, −e δ₁  (x̃)
pepita-forward     as pepita                                   δ₁, 0   (x)
pepita-hebbian     as pepita                                   δ₁, e h̃₁  (x̃)
=================  ==========================================  =========================

Read-out updates ``W[ℓ] ← W[ℓ] − (η_W/N) S_ℓ``: ``S_ℓ = δ_{ℓ+2} ⊗ h_{ℓ+1}`` (bp, fa, dfa,
afa), ``δ_{ℓ+2} ⊗ h̃_{ℓ+1}`` (pepita, pepita-forward), ``h_{ℓ+2} ⊗ h_{ℓ+1} − h̃_{ℓ+2} ⊗
h̃_{ℓ+1}`` (pepita-hebbian); ``v ← v − (η_v/N) s_v`` with ``s_v = e h_{L−1}``, ``e h̃_{L−1}``
(pepita, pepita-forward), ``ŷ h_{L−1} − y h̃_{L−1}`` (pepita-hebbian). The ODEs are in
:mod:`theory.deep_kernels`. With ``widths = [K₁]`` they are the committee's ODEs
(:mod:`theory.codegen_quad`) for bp, fa, afa, pepita, pepita-forward.

Observables: ε_g and, per hidden layer, ``cos_delta = E[δ_ℓ·δ_ℓ^BP] / √(E|δ_ℓ|² E|δ_ℓ^BP|²)``
with δ^BP BP's signal at the current W, v.

The generated module holds only the activation's ``_g``, ``_gp``, ``_gpp`` (sympy);
the kernels are included from :mod:`theory.deep_kernels`; it is cached on disk keyed by
the sources and the activation, compiled once per activation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .state import OrderParameters, _check_size

__all__ = [
    "DEEP_RULES",
    "DeepLayout",
    "DeepNoiseSystem",
    "DeepRuleSpec",
    "resolve_deep_rule",
    "DeepSystem",
    "build_deep_system",
    "check_widths",
    "cos_delta",
    "DEEP_CODEGEN_VERSION",
]

DEEP_CODEGEN_VERSION = "1"
#: rule name → (code in the kernels, feedback, presynaptic term)
DEEP_RULES = {
    "bp": (0, "v", "x"),
    "fa": (1, "fixed", "x"),
    "dfa": (2, "fixed", "x"),
    "afa": (3, "adaptive", "x"),
    "pepita": (4, "adaptive", "x_tilde"),
    "pepita-forward": (5, "adaptive", "x"),
    "pepita-hebbian": (6, "adaptive", "x_tilde"),
}
#: a user's deep rule (theory.deep_rules): its feedback kind → code in the kernels
USER_CODES = {"v": 7, "fixed": 8, "direct": 9}
_HEADER = 12


def check_widths(widths) -> list:
    """``widths`` as a list of positive ints (ValueError naming what is wrong)."""
    if isinstance(widths, np.ndarray):
        widths = widths.tolist()
    if not isinstance(widths, (list, tuple)) or len(widths) < 1:
        raise ValueError(
            f"widths must be a non-empty list of hidden widths [K1, K2, …], got {widths!r}"
        )
    out = []
    for i, k in enumerate(widths):
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"widths[{i}] must be a positive integer, got {k!r}")
        out.append(int(k))
    return out


def resolve_deep_rule(rule):
    """``(name, user)``: a built-in deep rule's name and None, or a user's
    :class:`theory.deep_rules.DeepRule` (given as one, or as ``"path/file.py:NAME"``)
    and its name. ValueError for anything else, naming what is allowed."""
    if isinstance(rule, str) and rule in DEEP_RULES:
        return rule, None
    if isinstance(rule, str) and (":" in rule or rule.endswith(".py")):
        from .deep_rules import load_deep_rule

        user = load_deep_rule(rule)
        return user.name, user
    from .deep_rules import DeepRule

    if isinstance(rule, DeepRule):
        return rule.name, rule
    name = getattr(rule, "name", rule)
    raise ValueError(
        f"rule {name!r} has no deep form; deep rules (widths=[K1, K2, …]): "
        f"{', '.join(DEEP_RULES)}, a theory.deep_rules.DeepRule or 'path/to/file.py:NAME' "
        "naming one"
    )


def _activation(activation):
    from .activations import get_activation

    try:
        return get_activation(activation)
    except ValueError as exc:
        raise ValueError(f"unsupported activation for a deep student: {exc}") from None


# ============================================================================ code
def _functions(act, user=None) -> list:
    """Sources of ``_g``, ``_gp`` and ``_gpp`` (sympy's diff of g') for the kernels, and
    ``_user_delta`` (a user rule's signal; for the built-in rules an unused stand-in)."""
    import sympy as sp

    from .activations import z
    from .deep_rules import DeepRule as UserRule
    from .deep_rules import a, delta_source, f, gp
    from .emit import njit_function, pr

    zz = sp.Symbol("zz_", real=True)
    out = []
    for name, ex in (("_g", act.expr), ("_gp", act.deriv), ("_gpp", sp.diff(act.deriv, z))):
        out.append(njit_function(name, "zz_", [f"return {pr(ex.xreplace({z: zz}))}"], inline=True))
    stand_in = UserRule("stand-in (unused by the built-in rules)", gp(a) * f)
    out.append(delta_source(stand_in if user is None else user, act_arg=False))
    return out


def _source(act, digest: str, user=None) -> str:
    from .emit import emit_module

    what = "any built-in rule" if user is None else f"a user deep rule's delta = {user.delta}"
    return emit_module(
        generator="theory.deep",
        version=DEEP_CODEGEN_VERSION,
        key=digest,
        comments=[f"activation={act.name!r} ({what}, any depth, width, M and quadrature rule)"],
        imports=[
            "from theory.quad_kernels import _next_node, _rule_arrays",
            "from theory.quadrature import factor_nb, map_node",
        ],
        functions=_functions(act, user),
        kernels=["deep_kernels"],
    )


_MODULES: dict = {}


def _load_module(act, user=None):
    """Generate (or find on disk) and import the deep module of ``act`` (and of a user's
    deep rule: its own module, keyed by the rule's mathematics)."""
    import sympy as sp

    from .cache import digest_of, generated_path, load_module, module_name, source_fingerprint

    mkey = (act.key, None if user is None else user.code_key)
    if mkey in _MODULES:
        return _MODULES[mkey]
    t0 = time.perf_counter()
    fingerprint = source_fingerprint(
        (
            "deep.py",
            "deep_kernels.py",
            "deep_rules.py",
            "emit.py",
            "activations.py",
            "quad_kernels.py",
        )
    )
    parts = [sp.srepr(act.expr)] + ([] if user is None else [user.code_key])
    label = act.key if user is None else f"{act.key}_user"
    path = generated_path("deep", DEEP_CODEGEN_VERSION, fingerprint, *parts, label=label)
    digest = digest_of(path)
    mod, _ = load_module(
        path,
        lambda: _source(act, digest, user),
        module_name(path),
        lambda m: None,  # compiled lazily, on the first right-hand side
        required=("rhs", "eg", "noise", "observe", "moments", "cov"),
    )
    _MODULES[mkey] = (mod, path, time.perf_counter() - t0)
    return _MODULES[mkey]


# ========================================================================== layout
@dataclass(frozen=True)
class DeepLayout:
    """Flat state ``y = [Q upper triangle, R (K₁·M), v (K_{L−1}), W[0], W[1], …
    (row-major), b (K₁, adaptive feedback)]``: Q and R first, as the solvers expect;
    with ``widths = [K₁]`` the committee's :class:`theory.state.Layout`."""

    widths: tuple
    M: int
    adaptive_b: bool = False

    @property
    def K(self) -> int:
        return self.widths[0]

    @property
    def nQ(self) -> int:
        return self.K * (self.K + 1) // 2

    @property
    def shapes(self) -> list:
        """Shapes of ``W[i]``: ``(widths[i + 1], widths[i])``."""
        w = self.widths
        return [(w[i + 1], w[i]) for i in range(len(w) - 1)]

    @property
    def slices(self) -> dict:
        K, M, nQ, Kl = self.K, self.M, self.nQ, self.widths[-1]
        o = nQ + K * M
        s = {"Q": slice(0, nQ), "R": slice(nQ, o), "v": slice(o, o + Kl)}
        o += Kl
        for i, (r, c) in enumerate(self.shapes):
            s[f"W{i}"] = slice(o, o + r * c)
            o += r * c
        if self.adaptive_b:
            s["b"] = slice(o, o + K)
        return s

    @property
    def n(self) -> int:
        return max(s.stop for s in self.slices.values())

    def pack(self, state: OrderParameters) -> np.ndarray:
        if state.M != self.M or (state.widths or [state.K]) != list(self.widths):
            raise ValueError(
                f"state has widths {state.widths or [state.K]}, M={state.M} but the system "
                f"was built for widths {list(self.widths)}, M={self.M}"
            )
        iu = np.triu_indices(self.K)
        parts = [state.Q[iu], state.R.ravel(), state.v]
        parts += [w.ravel() for w in (state.W or ())]
        if self.adaptive_b:
            state.require("b", why=" for adaptive feedback (PEPITA, AFA)")
            parts.append(state.b)
        return np.concatenate(parts).astype(float)

    def unpack(self, y) -> dict:
        """``Q, R, v``, ``W`` (a list of arrays), ``W0, W1, …`` and ``b`` (adaptive) from
        a flat vector or a stack ``(..., n)``."""
        y = np.asarray(y, dtype=float)
        if y.shape[-1] != self.n:
            raise ValueError(f"flat state must have last dimension {self.n}, got {y.shape}")
        K, M, s = self.K, self.M, self.slices
        lead = y.shape[:-1]
        Q = np.empty(lead + (K, K))
        iu = np.triu_indices(K)
        Q[..., iu[0], iu[1]] = y[..., s["Q"]]
        Q[..., iu[1], iu[0]] = y[..., s["Q"]]
        out = {"Q": Q, "R": y[..., s["R"]].reshape(lead + (K, M)), "v": y[..., s["v"]].copy()}
        W = [y[..., s[f"W{i}"]].reshape(lead + sh) for i, sh in enumerate(self.shapes)]
        out["W"] = W
        for i, w in enumerate(W):
            out[f"W{i}"] = w
        if self.adaptive_b:
            out["b"] = y[..., s["b"]].copy()
        return out

    def state(self, y, constants: OrderParameters) -> OrderParameters:
        parts = self.unpack(y)
        keep = {k: parts[k] for k in ("Q", "R", "v", "W", "b") if k in parts}
        return constants.replace(**keep)


@dataclass(frozen=True)
class DeepRuleSpec:
    """A deep rule as the solver sees it (``user``: a user's
    :class:`theory.deep_rules.DeepRule`, None for a built-in rule)."""

    name: str
    feedback: str
    presynaptic: str
    code: int
    params: dict = field(default_factory=dict)
    user: object = None

    @property
    def fixed_chain(self) -> bool:
        """Fixed b and B carry the signal (FA and user rules with feedback "fixed")."""
        return self.code in (1, USER_CODES["fixed"])

    @property
    def direct(self) -> bool:
        """Fixed vectors d_ℓ carry e (DFA and user rules with feedback "direct")."""
        return self.code in (2, USER_CODES["direct"])


# ========================================================================== system
@dataclass
class DeepSystem:
    """The deep-student system for one rule, widths, M and activation: implements
    :class:`theory.system.System` (``rhs``, ``eg``, ``noise``, ``layout``, ``params``,
    ``observables``, ``describe``) plus ``evaluate`` and ``cos_delta``."""

    rule: DeepRuleSpec
    widths: tuple
    M: int
    activation: str
    act: object
    layout: DeepLayout
    rhs: object
    eg: object
    noise: object
    observe: object
    source_path: Path
    quadrature: dict
    timings: dict = field(default_factory=dict)
    moments: object = None
    cov: object = None

    model = "deep"

    @property
    def K(self) -> int:
        return self.widths[0]

    def dim(self, sigma: float) -> int:
        return self.K + self.M + (1 if sigma > 0 else 0)

    def rule_for(self, sigma: float):
        """The quadrature rule at output noise σ (``auto``: scrambled Sobol)."""
        from .quadrature import make_rule

        q = self.quadrature
        scheme = q["scheme"]
        if scheme == "marginal":
            raise ValueError(
                "quadrature scheme 'marginal' does not apply to a deep student (its signals "
                "mix every field); use 'gauss-hermite', 'sobol' or 'auto'"
            )
        n = q["n"]
        if scheme == "auto" and not self.act.smooth and n is None:
            from .codegen_quad import KINKED_SOBOL_N

            n = KINKED_SOBOL_N
        return make_rule(self.dim(sigma), scheme, n, q["seed"])

    def describe_rule(self, sigma: float) -> dict:
        return self.rule_for(sigma).describe()

    def describe(self) -> dict:
        from .system import describe_system

        return {
            **describe_system(self),
            "widths": list(self.widths),
            "source": str(self.source_path),
        }

    # Long on purpose: one check per constant of the run, each with its own message
    def params(
        self,
        state: OrderParameters,
        eta,
        eta_v=None,
        sigma=0.0,
        *,
        eta_W=None,
        qrule=None,
        **rule_params,
    ) -> np.ndarray:
        """The parameter vector (layout: :mod:`theory.deep_kernels`). ``eta_v`` defaults
        to ``eta``, ``eta_W`` to ``eta_v``; ``rule_params`` override a user rule's
        parameter defaults (a built-in rule has none).

        Raises ValueError for a state whose widths or M differ from the system's, or that
        lacks the rule's feedback (FA: ``b`` of the last hidden width and ``B``; DFA: ``d``;
        PEPITA/AFA: ``b`` of length K₁, ``c``, ``sigma_F2``; pepita, pepita-hebbian also
        ``F_norm2``), naming the key, the expected and the given shape."""
        eta_v = eta if eta_v is None else eta_v
        eta_W = eta_v if eta_W is None else eta_W
        for name, val in (("eta", eta), ("eta_v", eta_v), ("eta_W", eta_W), ("sigma", sigma)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {val}")
        widths = list(self.widths)
        got = state.widths or [state.K]
        if got != widths or state.M != self.M:
            raise ValueError(
                f"the initial state has widths {got} (K1 from Q, the others from W), M = "
                f"{state.M}, but the system was built for widths {widths}, M = {self.M}"
            )
        K, Kl, M = widths[0], widths[-1], self.M
        name, fb = self.rule.name, self.rule.feedback
        shapes = self.layout.shapes
        nW = sum(r * c for r, c in shapes)
        b_fixed = np.zeros(Kl)
        Bm = np.zeros(nW)
        dv = np.zeros(sum(widths))
        c = np.zeros(M)
        s2 = f2 = 0.0
        why = f" by rule {name!r} (docs/deep.md)"
        defaults = self.rule.params
        unknown = sorted(set(rule_params) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown rule_params {unknown} for deep rule {name!r}; it has "
                f"{sorted(defaults) or 'none'}"
            )
        rp = []
        for k in sorted(defaults):
            val = rule_params.get(k, defaults[k])
            if isinstance(val, bool) or not isinstance(val, (int, float, np.number)):
                raise ValueError(f"rule_params[{k!r}] must be a number, got {val!r}")
            if not np.isfinite(val):
                raise ValueError(f"rule_params[{k!r}] must be finite, got {val}")
            rp.append(float(val))
        if self.rule.fixed_chain:
            state.require("b", why=why)
            if state.b.shape != (Kl,):
                raise ValueError(
                    f"b (FA's fixed feedback, in place of v) must have shape ({Kl},) (the "
                    f"last hidden width), got {state.b.shape}"
                )
            b_fixed = state.b
            if len(shapes):
                state.require("B", why=why + ": FA's feedback matrices, B[i] of W[i]ᵀ's shape")
                Bm = np.concatenate([x.ravel() for x in state.B])
        elif self.rule.direct:
            state.require("d", why=why + ": one feedback vector per hidden layer")
            dv = np.concatenate(state.d)
        elif fb == "adaptive":
            state.require("b", "c", "sigma_F2", why=why)
            if state.b.shape != (K,):
                raise ValueError(
                    f"b (= W1 F/√N, adaptive feedback) must have shape ({K},) (K1), got "
                    f"{state.b.shape}"
                )
            c, s2 = state.c, float(state.sigma_F2)
            if self.rule.presynaptic == "x_tilde":
                state.require("F_norm2", why=why + " (presynaptic x̃: ‖F‖² = N σ_F²)")
                f2 = float(state.F_norm2)
        qr = self.rule_for(float(sigma)) if qrule is None else qrule
        if qr.dim != self.dim(float(sigma)):
            raise ValueError(f"quadrature rule has dim {qr.dim}, need {self.dim(sigma)}")
        stein = fb == "adaptive" and not self.act.smooth
        head = [K, M, len(widths), self.rule.code, eta, eta_v, eta_W, sigma, s2, f2, stein, len(rp)]
        assert len(head) == _HEADER
        packed = qr.packed()  # [kind, P, D, …]
        return np.ascontiguousarray(
            np.concatenate(
                [
                    head,
                    widths,
                    state.T.ravel(),
                    state.v_star,
                    c,
                    b_fixed,
                    Bm,
                    dv,
                    rp,
                    packed,
                ]
            ),
            dtype=float,
        )

    def evaluate(self, state, eta, eta_v=None, sigma=0.0, **kw) -> dict:
        """The right-hand side at ``state`` as arrays (d/dα) ``Q, R, v, W, W0, …, b``."""
        p = self.params(state, eta, eta_v, sigma, **kw)
        y = self.layout.pack(state)
        dy = np.empty_like(y)
        self.rhs(y, p, dy)
        return self.layout.unpack(dy)

    def noise_covariance(self, state, eta, eta_v=None, sigma=0.0, **kw):
        """Σ_kl = η² σ_F² E[A_k A_l], the covariance per unit α of the noise on b."""
        if self.rule.feedback != "adaptive":
            raise ValueError(f"rule {self.rule.name!r} has no stochastic feedback")
        p = self.params(state, eta, eta_v, sigma, **kw)
        S = np.empty((self.K, self.K))
        self.noise(self.layout.pack(state), p, S)
        return S

    def covariance_params(
        self, state, eta, eta_v=None, sigma=0.0, *, N, eta_W=None, qrule=None, **rule_params
    ) -> np.ndarray:
        """The parameter vector of :meth:`covariance` (that of :meth:`params` with
        ``p[9]`` = ‖F‖²: the state's ``F_norm2`` when it has one, else ``N σ_F²``)."""
        if isinstance(N, bool) or not isinstance(N, (int, float, np.number)):
            raise ValueError(f"N must be a number, got {N!r}")
        if not np.isfinite(N) or N < 1:
            raise ValueError(f"N must be >= 1 (the input dimension), got {N}")
        p = self.params(state, eta, eta_v, sigma, eta_W=eta_W, qrule=qrule, **rule_params)
        if self.rule.feedback == "adaptive":
            f2 = state.F_norm2 if state.F_norm2 is not None else N * float(state.sigma_F2)
            p[9] = float(f2)
        return p

    def covariance(self, state, eta, eta_v=None, sigma=0.0, *, N, **kw):
        """``(E[f], Σ)``: the mean and the covariance ``Σ = Cov[f]`` of the per-sample
        increments ``f`` (N × the change of one online step) of every order parameter,
        in the flat layout's order (:class:`DeepLayout`), by the system's quadrature rule.
        The finite-N diffusion is ``dy = E[f] dα + √(Σ/N) dB_α`` (docs/deep.md); E[f] is
        the ODE's right-hand side. ``N`` enters through ‖F‖² (adaptive feedback) only."""
        p = self.covariance_params(state, eta, eta_v, sigma, N=N, **kw)
        y = self.layout.pack(state)
        m = np.empty_like(y)
        S = np.empty((y.size, y.size))
        self.moments(y, p, m, S)
        return m, S

    def noise_system(self) -> DeepNoiseSystem:
        """Σ(y) with the interface of :func:`theory.covariance.noise_system` (``cov``,
        ``params(..., N=…)``, ``dim``, ``describe_rule``, ``evaluate``), for a finite-N
        Euler–Maruyama loop (:mod:`odeflow.sde`'s ``em_full_kernel`` calls ``cov``)."""
        return DeepNoiseSystem(self)

    def eps_g(self, state) -> float:
        p = self.params(state, 0.0, 0.0, 0.0)
        return float(self.eg(self.layout.pack(state), p))

    def observables(self, y, p) -> dict:
        """``eg``, ``cos_delta`` (per hidden layer) and ``b`` (FA's fixed b, or the
        adaptive b) for a flat state or a stack ``(T, n)``."""
        Y = np.atleast_2d(np.asarray(y, dtype=float))
        H = len(self.widths)
        out = np.empty(1 + 3 * H)
        eg = np.empty(len(Y))
        cos = np.empty((len(Y), H))
        for i, yi in enumerate(Y):
            self.observe(np.ascontiguousarray(yi), p, out)
            eg[i] = out[0]
            m = out[1:].reshape(H, 3)
            with np.errstate(invalid="ignore", divide="ignore"):
                cos[i] = m[:, 0] / np.sqrt(m[:, 1] * m[:, 2])
        res = {"eg": eg, "cos_delta": cos}
        if self.rule.feedback == "adaptive":
            res["b"] = self.layout.unpack(Y)["b"]
        elif self.rule.fixed_chain:
            Kl, M = self.widths[-1], self.M
            o = _HEADER + H + M * M + 2 * M
            res["b"] = np.broadcast_to(np.asarray(p)[o : o + Kl], (len(Y), Kl)).copy()
        else:
            res["b"] = None
        if np.ndim(y) == 1:
            return {k: (None if v is None else v[0]) for k, v in res.items()}
        return res


@dataclass(frozen=True)
class DeepNoiseSystem:
    """The finite-N covariance Σ(y) of a :class:`DeepSystem` (its method
    :meth:`DeepSystem.covariance`) behind the interface of the committee's
    :class:`theory.covariance.CovarianceSystem`."""

    system: DeepSystem

    @property
    def cov(self):
        """The compiled ``cov(y, p, S)``: ``S = Σ(y)`` (n×n) for the parameter vector of
        :meth:`params`."""
        return self.system.cov

    @property
    def layout(self) -> DeepLayout:
        return self.system.layout

    def params(self, state, eta, eta_v=None, sigma=0.0, *, N, qrule=None, **kw) -> np.ndarray:
        """:meth:`DeepSystem.covariance_params` (``kw``: ``eta_W`` and rule parameters)."""
        return self.system.covariance_params(state, eta, eta_v, sigma, N=N, qrule=qrule, **kw)

    def dim(self, sigma: float) -> int:
        return self.system.dim(sigma)

    def describe_rule(self, p) -> dict:
        """The quadrature rule of Σ: the drift's (``p[7]`` is σ)."""
        return self.system.describe_rule(float(np.asarray(p)[7]))

    def evaluate(self, state, eta, eta_v=None, sigma=0.0, *, N, **kw):
        """``(E[f], Σ)`` at ``state`` (:meth:`DeepSystem.covariance`)."""
        return self.system.covariance(state, eta, eta_v, sigma, N=N, **kw)


_SYSTEMS: dict = {}


def build_deep_system(rule, widths, M: int, activation="erf", quadrature=None) -> DeepSystem:
    """The deep system of ``rule`` (a name of :data:`DEEP_RULES`, a user's
    :class:`theory.deep_rules.DeepRule` or ``"file.py:NAME"`` naming one) for hidden ``widths``
    ``[K1, K2, …]``, M teacher units and ``activation``. ``quadrature``: as
    :func:`odeflow.solve` (None/"auto": scrambled Sobol, :func:`theory.quadrature.default_n`
    points; ``{"scheme": "gauss-hermite", "n": …}`` for high-accuracy checks)."""
    from .codegen_quad import quad_options

    name, user = resolve_deep_rule(rule)
    widths = tuple(check_widths(widths))
    M = _check_size("M", M)
    act = _activation(activation)
    opts = quad_options(quadrature)
    if user is None:
        code, fb, pre = DEEP_RULES[name]
        spec = DeepRuleSpec(name, fb, pre, code)
    else:
        code, fb = USER_CODES[user.feedback], user.feedback
        spec = DeepRuleSpec(name, fb, "x", code, dict(user.params), user)
    rkey = name if user is None else user.key
    key = (rkey, widths, M, act.key, tuple(sorted(opts.items(), key=str)))
    if key not in _SYSTEMS:
        mod, path, t = _load_module(act, user)
        sysm = DeepSystem(
            spec,
            widths,
            M,
            act.name,
            act,
            DeepLayout(widths, M, fb == "adaptive"),
            mod.rhs,
            mod.eg,
            mod.noise if fb == "adaptive" else None,
            mod.observe,
            path,
            dict(opts),
            timings={"load": t},
            moments=mod.moments,
            cov=mod.cov,
        )
        sysm.rule_for(0.0)  # a bad quadrature option fails now
        _SYSTEMS[key] = sysm
    return _SYSTEMS[key]


def cos_delta(system: DeepSystem, state: OrderParameters) -> np.ndarray:
    """The per-layer cosine of the rule's signal with BP's at ``state``."""
    p = system.params(state, 0.0, 0.0, 0.0)
    return system.observables(system.layout.pack(state), p)["cos_delta"]
