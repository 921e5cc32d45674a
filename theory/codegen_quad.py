"""Generated numba code for rules and activations without closed-form averages: the
order-parameter ODEs by Gaussian quadrature (docs/quadrature.md).

For any rule ``δ_k(λ_k, e; v_k, b_k)`` (a sympy expression that may use the second-pass field
``λ̃_k = λ_k − e b_k``), any activation ``g`` and presynaptic term ``p ∈ {x, x̃ = x − F e}``,
the N → ∞ equations are expectations over the Gaussian fields ``(λ, ν)`` with covariance
``C = [[Q, R], [Rᵀ, T]]`` (and the output noise ζ when σ > 0)::

    dQ_kl/dα = −η E[δ_k P_l + δ_l P_k] + η² E[δ_k δ_l (p·p/N)] − 2ηκ Q_kl
    dR_km/dα = −η E[δ_k P*_m] − ηκ R_km
    dv_k/dα  = −η_v E[e s_k]                                        (second layer "sgd")
    db_k/dα  = −η E[b_k ∂δ_k/∂λ_k + (∂δ_k/∂e) ē] + η ‖F‖² E[δ_k e] − ηκ b_k   (adaptive)
    Σ_kl     = η² σ_F² E[δ_k δ_l]                                   (noise on b, adaptive)
    ε_g      = ½ E[e₀²]

with ``e = Σ_j v_j g(λ_j) − Σ_m v*_m g(ν_m) − σζ`` (``e₀``: without the noise),
``P_l = w_l·p/√N`` = ``λ_l`` (p = x) or ``λ_l − e b_l`` (p = x̃), ``P*_m`` = ``ν_m`` or
``ν_m − e c_m``, ``p·p/N`` = 1 or ``1 + e² σ_F²``, and the ‖F‖² term only for p = x̃.
The b drift is ``−η √N E[δ_k φ]`` by Stein's lemma on φ = F·x/√N, whose covariances with the
fields are ``b/√N, c/√N``: ``√N E[δ_k φ] = Σ_j b_j E[∂δ_k/∂λ_j] + Σ_m c_m E[∂δ_k/∂ν_m]``, and
since δ_k depends on the other fields only through e,
``= E[b_k ∂_λ δ_k + ∂_e δ_k ē]``, ``ē = Σ_j v_j b_j g'(λ_j) − Σ_m v*_m c_m g'(ν_m)``.
When those derivatives hold a Dirac delta (a kinked activation: AFA with relu), Stein's
lemma for the fields gives the same bracket without them, ``(b, c)ᵀ C⁻¹ E[z δ_k]``
(:func:`needs_stein`).
(A rule without λ̃ and with p = x, linear in the feedback, gives back docs/theory.md §4/§5.)

Every expectation is one pass over the nodes of a fixed rule (:mod:`theory.quadrature`):
``z = L ξ_q`` with ``L`` the Cholesky (or eigen) factor of C; the integrand loop is numba
code without allocation. The nodes and weights travel at the end of the parameter vector
``p`` (so one compiled module serves every K, M, scheme and node count)::

    p = [K, M, eta, eta_v, sigma, sigma_F2, T (M·M), v_star (M), c (M), b (K, fixed
         feedback), rule parameters (sorted), F_norm2, P, D, nodes (P·D), weights (P)]

(the first part is that of :mod:`theory.codegen`). ``D = K + M`` (+1 for ζ when σ > 0).
Generated functions: ``rhs(y, p, dy)``, ``eg(y, p)``, ``noise(y, p, S)`` (adaptive only).
Only the rule's node loop ``_integrate`` and the activation's ``_g``, ``_gp`` (``_I2``) are
generated (:mod:`theory.quad_expr`, :mod:`theory.emit`); the rest is included from the real
modules :mod:`theory.field_kernels` and :mod:`theory.quad_kernels`.
The marginal scheme (rules with ``δ_k = h(λ_k) e``: each expectation over only the fields it
depends on) has kernels of its own, :mod:`theory.codegen_marginal`, behind the same
:class:`QuadSystem`.
ε_g uses the closed-form I2 where it exists (erf, linear; relu: arc-cosine kernel), the
nodes otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from . import rules as R
from .activations import Activation, get_activation
from .cache import digest_of, generated_path, load_module, module_name, param_vector
from .cache import source_fingerprint as _source_fingerprint
from .codegen_marginal import table_nodes
from .emit import NumbaPrinter, emit_module, njit_function
from .quad_expr import I2_code as _I2_code
from .quad_expr import (
    activation_functions,
    atom_code,
    field_atoms,
    needs_stein,
    unit_code,
    value_code,
)
from .quadrature import (
    MAX_GH_NODES,
    RTOL_DEFAULT,
    QuadratureRule,
    check_rtol,
    coarse_rules,
    make_rule,
)
from .state import Layout, OrderParameters, _check_size
from .system import SystemMethods

__all__ = [
    "QuadSystem",
    "build_quad_system",
    "quad_options",
    "QUAD_CODEGEN_VERSION",
    "quad_source",
    "resolve_scheme",
    "marginal_applies",
]

QUAD_CODEGEN_VERSION = "3"
#: nodes per block of the node loop: the first pass (the transcendental calls of every
#: field) runs over a whole block in one flat loop, which vectorises (SIMD)
NODE_BLOCK = 64
#: Sobol points of the automatic rule for kinked activations (relu): ~1e-4 absolute error
#: on K = M = 2 right-hand sides (measured against 8·10⁶-sample Monte Carlo)
KINKED_SOBOL_N = 1 << 16
#: most nodes (summed over the field subsets) of a marginal rule: time of every evaluation
MAX_MARGINAL_NODES = MAX_GH_NODES
_QUAD_KEYS = ("scheme", "n", "seed", "rtol")
#: the error estimate is this times the largest difference to the partner rules. Tensor
#: Gauss–Hermite: before its spectral regime (large field variance) its error reached 1.3×
#: the largest difference (erf, K = M = 2, Q_kk ≈ 5); Sobol: the error of a scrambled rule
#: is random, and reached 1.5× the larger of the two half-rule differences (erf, K = 3,
#: M = 2, 2^15 points, at a state of a learning curve); marginal: never above it in the
#: tests (tests/theory/test_quadrature_tolerance.py)
ESTIMATE_SAFETY = {"gauss-hermite": 2.0, "sobol": 2.0, "marginal": 1.0}


# ------------------------------------------------------------------------- options
def quad_options(quadrature) -> dict:
    """Normalise the ``quadrature`` argument of ``solve`` to
    ``{"scheme", "n", "seed", "rtol"}``.

    ``None``/``True``/``"auto"`` → defaults; a scheme name → that scheme; a dict with keys
    among ``scheme``, ``n``, ``seed``, ``rtol`` (the tolerance the rule must meet,
    :data:`theory.quadrature.RTOL_DEFAULT` if not given; :mod:`theory.tolerance`). Ranges
    of n are checked when the rule is built (they depend on the number of fields):
    ValueError naming the option.
    """
    if quadrature is None or quadrature is True:
        return {"scheme": "auto", "n": None, "seed": 0, "rtol": RTOL_DEFAULT}
    if isinstance(quadrature, str):
        return {"scheme": quadrature, "n": None, "seed": 0, "rtol": RTOL_DEFAULT}
    if isinstance(quadrature, dict):
        bad = sorted(set(quadrature) - set(_QUAD_KEYS))
        if bad:
            raise ValueError(f"unknown quadrature options {bad}; allowed: {', '.join(_QUAD_KEYS)}")
        return {
            "scheme": quadrature.get("scheme", "auto"),
            "n": quadrature.get("n"),
            "seed": quadrature.get("seed", 0),
            "rtol": check_rtol(quadrature.get("rtol")),
        }
    raise ValueError(
        "quadrature must be None (automatic), False (closed forms only), True, "
        "a scheme name or a dict {'scheme', 'n', 'seed', 'rtol'}, got "
        f"{quadrature!r}"
    )


# ------------------------------------------------------------------------- printing
#: the one printer (theory.emit), kept under its old name for importers
_QPrinter = NumbaPrinter
_QP = NumbaPrinter()


def _pr(expr) -> str:
    return _QP.doprint(expr)


def _unit_code(rule: R.Rule, act: Activation, adaptive: bool, params) -> list:
    """Statements computing, for one hidden unit, d_ (δ), dl_ (∂δ/∂λ), de_ (∂δ/∂e) and
    s_ (second-layer signal) from lam_, e_, vk_, bk_ and the rule parameters
    (:func:`theory.quad_expr.unit_code`: transcendentals of λ_k read from the first pass)."""
    return unit_code(rule, act, adaptive, params)


_NODE_FETCH = """\
# the node, written out here rather than through _next_node (quad_kernels): the
# inlined call cost ~80 ns per node, four times the K = M = 2 integrand
if kind == 1:
    for j_ in range(D):
        xi[j_] = p[O_N + q * D + j_]
    w = p[O_W + q]
else:  # tensor Gauss–Hermite: odometer over the 1-D nodes, first coordinate fastest
    if q == 0:
        for j_ in range(D):
            idx[j_] = 0
            xi[j_] = X[0]
    else:
        j_ = 0
        idx[0] += 1
        while idx[j_] == nX:
            idx[j_] = 0
            xi[j_] = X[0]
            j_ += 1
            idx[j_] += 1
        xi[j_] = X[idx[j_]]
    w = 1.0
    for j_ in range(D):
        w *= Wt[idx[j_]]
map_node(L, xi, z)"""


def node_fetch(indent: int) -> str:
    """Node q of the packed rule into ``xi``, its weight into ``w`` and the fields
    ``z = L ξ``, indented by ``indent`` (the drift's blocks and :func:`node_body`)."""
    return "\n".join(" " * indent + line for line in _NODE_FETCH.split("\n"))


def node_body(first: list, unit: list, per_unit: list) -> str:
    """The first half of the body of the loop over quadrature nodes ``for q in range(P):``
    of the noise covariance (:mod:`theory.covariance`), indented for that loop: node by
    node (the drift, :func:`quad_source`, takes the nodes in blocks of :data:`NODE_BLOCK`).

    It puts node q of the packed rule into ``xi`` and its weight into ``w`` (written out
    rather than through ``quad_kernels._next_node``: the inlined call cost ~80 ns per node,
    four times the K = M = 2 integrand), the fields ``z = L ξ``, runs ``first`` once per
    unit u (each transcendental of field u once, into ``TR``; accumulates ``e``), subtracts
    the output noise, and runs ``unit`` and then ``per_unit`` for every hidden unit k with
    ``d[k] = d_``, ``s[k] = s_``. Needs in scope: ``p, P, D, O_N, O_W, nX, kind, X, Wt, idx,
    xi, L, z, A, Bv, TR, d, s, noisy, sigma, K, NU``."""

    def block(lines, n):
        return "\n".join(" " * n + s for s in lines) if lines else " " * n + "pass"

    return f"""{node_fetch(8)}
        e = 0.0
        eb = 0.0
        for u in range(NU):
{block(first, 12)}
        if noisy:
            e -= sigma * xi[NU]
        e_ = e
        for k in range(K):
            lam_ = z[k]
            vk_ = A[k]
            bk_ = Bv[k]
{block(unit, 12)}
            d[k] = d_
            s[k] = s_
{block(per_unit, 12)}"""


# ------------------------------------------------------------------------ the source
# Long on purpose: one generated module's source, section by section in output order; each section
# is a few lines and splitting it would scatter the template
def quad_source(rule: R.Rule, act: Activation, key: str) -> str:
    """Python source of the generated module (see the module docstring): the rule's node
    loop ``_integrate`` is generated; the rule-independent kernels are included from
    :mod:`theory.field_kernels` and :mod:`theory.quad_kernels`."""
    adaptive = rule.feedback == "adaptive"
    xt = rule.presynaptic == "x_tilde"
    params = sorted(rule.params)
    unit = _unit_code(rule, act, adaptive, params)
    decay = _pr(rule.weight_decay)

    def block(lines, n):
        return "\n".join(" " * n + s for s in lines) if lines else " " * n + "pass"

    # the flags are resolved here, in Python, so numba never sees a dead branch that
    # refers to variables the rule does not define
    stein = needs_stein(rule, act)
    need_gp = adaptive and not stein
    # first pass, per block of nodes: each transcendental of every field once, in a flat
    # loop over (node, field) that vectorises; then per node g_ (gp_) from those values,
    # kept in TR for the unit code
    natoms = len(field_atoms(act))
    atoms = ["zz_ = ZB[i_]", *atom_code(act)] + [f"TRB[{j}, i_] = fa{j}_" for j in range(natoms)]
    first = ["zz_ = ZB[jb * NU + u]", "z[u] = zz_"]
    first += [f"fa{j}_ = TRB[{j}, jb * NU + u]" for j in range(natoms)]
    first += [f"TR[{j}, u] = fa{j}_" for j in range(natoms)]
    first += [*value_code(act, need_gp), "e += A[u] * g_"]
    first += ["eb += A[u] * Bv[u] * gp_"] if need_gp else []
    per_unit_extra = (["dl[k] = dl_", "de[k] = de_"] if adaptive and not stein else []) + [
        "Pk[k] = lam_ - e * bk_" if xt else "Pk[k] = lam_"
    ]
    pair_extra = ["aDDe[k, l] += dk * d[l] * e * e"] if xt else []
    Rfield = "(z[K + m] - e * Bv[K + m])" if xt else "z[K + m]"
    unit_acc = []
    if adaptive:
        if stein:  # E[z δ_k], turned into the drift after the loop
            unit_acc += ["for a_ in range(NU):", "    aZ[k, a_] += dk * z[a_]"]
        else:
            unit_acc.append("aB[k] += w * (Bv[k] * dl[k] + de[k] * eb)")
        if xt:
            unit_acc.append("aBe[k] += dk * e")

    load_params = "\n".join(f"    {name} = p[P_RULE + {i}]" for i, name in enumerate(params))
    # error_model="numpy": a division (in _tanh, in δ) is a plain instruction, not a
    # branch to ZeroDivisionError that would keep the first-pass loop from vectorising
    # (a zero divisor gives inf/NaN, which the solver's finiteness check stops on)
    integrate = f'''@njit(cache=True, nogil=True, error_model="numpy")
def _integrate(y, p, mode, dy, S):
    """mode 0: dy = dy/dα; mode 1: S = noise covariance of b."""
    K = int(p[0]); M = int(p[1]); NU = K + M
    O_R = K * (K + 1) // 2; O_V = O_R + K * M; O_B = O_V + K
    eta = p[2]; eta_v = p[3]; sigma = p[4]; sigma_F2 = p[5]
    P_RULE = P0 + M * M + 2 * M + K
{load_params}
    P_Q = P_RULE + N_RULE
    F_norm2 = p[P_Q]
    kind = int(p[P_Q + 1]); P = int(p[P_Q + 2]); D = int(p[P_Q + 3])
    O_N = P_Q + 4
    noisy = D > NU
    xi = np.empty(D); idx = np.zeros(D, np.int64)
    X, Wt, _ = _rule_arrays(p, O_N, kind)
    # work space, allocated once per call (never inside the node loop)
    C = np.empty((NU, NU)); A = np.empty(NU); Bv = np.empty(NU)
    L = np.zeros((NU, NU)); z = np.empty(NU)
    d = np.empty(K); Pk = np.empty(K); s = np.empty(K); dl = np.empty(K); de = np.empty(K)
    aQ = np.zeros((K, K)); aDD = np.zeros((K, K)); aDDe = np.zeros((K, K))
    aR = np.zeros((K, M)); aV = np.zeros(K); aB = np.zeros(K); aBe = np.zeros(K)
    aZ = np.zeros((K, NU)); TR = np.empty(({natoms}, NU))
    ZB = np.empty(NODE_BLOCK * NU); WB = np.empty(NODE_BLOCK); NB = np.empty(NODE_BLOCK)
    TRB = np.empty(({natoms}, NODE_BLOCK * NU))
    _fill(y, p, K, M, C, A, Bv)
    if factor_nb(C, L) < 0:          # not PSD: unphysical; the solver stops on NaN
        if mode == 0:
            for i in range(dy.shape[0]):
                dy[i] = np.nan
        else:
            for k in range(K):
                for l in range(K):
                    S[k, l] = np.nan
        return
    nX = X.shape[0]
    O_W = O_N + P * D
    for q0 in range(0, P, NODE_BLOCK):
        nb = min(NODE_BLOCK, P - q0)
        for jb in range(nb):
            q = q0 + jb
{node_fetch(12)}
            for u in range(NU):
                ZB[jb * NU + u] = z[u]
            WB[jb] = w
            NB[jb] = xi[NU] if noisy else 0.0
        for i_ in range(nb * NU):
{block(atoms, 12)}
        for jb in range(nb):
            w = WB[jb]
            e = 0.0
            eb = 0.0
            for u in range(NU):
{block(first, 16)}
            if noisy:
                e -= sigma * NB[jb]
            e_ = e
            for k in range(K):
                lam_ = z[k]
                vk_ = A[k]
                bk_ = Bv[k]
{block(unit, 16)}
                d[k] = d_
                s[k] = s_
{block(per_unit_extra, 16)}
            for k in range(K):
                dk = w * d[k]
                for l in range(k, K):
                    aQ[k, l] += dk * Pk[l] + w * d[l] * Pk[k]
                    aDD[k, l] += dk * d[l]
{block(pair_extra, 20)}
                for m in range(M):
                    aR[k, m] += dk * {Rfield}
                aV[k] += w * e * s[k]
{block(unit_acc, 16)}
    if mode == 1:
        for k in range(K):
            for l in range(k, K):
                S[k, l] = eta * eta * sigma_F2 * aDD[k, l]
                S[l, k] = S[k, l]
        return
    if STEIN:
        # Stein's lemma for z ~ N(0, C): E[z δ_k] = C E[∇δ_k], so the b-drift bracket
        # Σ_a Bv_a E[∂δ_k/∂z_a] = Bvᵀ C⁻¹ E[z δ_k] needs no derivative of δ (for a kinked
        # activation ∂δ/∂λ holds g'', a Dirac delta); least squares for a singular C
        sv = np.linalg.lstsq(C, Bv)[0]
        for k in range(K):
            t = 0.0
            for a_ in range(NU):
                t += sv[a_] * aZ[k, a_]
            aB[k] = t
    kappa = {decay}
    iq = 0
    for k in range(K):
        for l in range(k, K):
            pp = aDD[k, l] + (sigma_F2 * aDDe[k, l] if X_TILDE else 0.0)
            dy[iq] = -eta * aQ[k, l] + eta * eta * pp - 2.0 * eta * kappa * C[k, l]
            iq += 1
    for k in range(K):
        for m in range(M):
            dy[O_R + k * M + m] = -eta * aR[k, m] - eta * kappa * C[k, K + m]
        dy[O_V + k] = -eta_v * aV[k] if SGD_V else 0.0
        if ADAPTIVE:
            drift = -eta * aB[k] - eta * kappa * Bv[k]
            if X_TILDE:
                drift += eta * F_norm2 * aBe[k]
            dy[O_B + k] = drift
'''
    after = [
        integrate,
        RHS_SRC,
        "eg = _eg_closed" if _I2_code(act) is not None else "eg = _eg_nodes",
        NOISE_SRC if adaptive else "noise = None",
    ]
    return emit_module(
        generator="theory.codegen_quad",
        version=QUAD_CODEGEN_VERSION,
        key=key,
        comments=[
            (f"rule={rule.name!r} activation={act.name!r} presynaptic={rule.presynaptic!r}"),
            "(any K, M, scheme and node count: sizes and nodes are read from p)",
        ],
        imports=["from theory.quadrature import factor_nb, map_node"],
        constants={
            "ADAPTIVE": int(adaptive),
            "STEIN": int(stein),
            "X_TILDE": int(xt),
            "SGD_V": int(rule.second_layer == "sgd"),
            "N_RULE": len(params),
            "NODE_BLOCK": NODE_BLOCK,
            # p = [K, M, eta, eta_v, sigma, sigma_F2, T, v_star, c, b, rule params,
            #      quad]
            "P0": 6,
        },
        functions=activation_functions(act),
        kernels=["field_kernels", "quad_kernels"],
        after=after,
    )


#: the entry points of a generated quadrature module (the same for every rule)
RHS_SRC = njit_function(
    "rhs",
    "y, p, dy",
    [
        "# np.int64(...), not a bare 0/1: a literal would make numba compile _integrate once",
        "# per mode (Literal[int](0), Literal[int](1)), doubling the compile time",
        "_integrate(y, p, np.int64(0), dy, np.empty((1, 1)))",
    ],
)
NOISE_SRC = njit_function("noise", "y, p, S", ["_integrate(y, p, np.int64(1), np.empty(1), S)"])


# ------------------------------------------------------------------------ the system
@dataclass
class QuadSystem(SystemMethods):
    """A quadrature-backed order-parameter system: the interface of
    :class:`theory.codegen.System` (``rhs``, ``eg``, ``noise``, ``layout``, ``params``,
    ``evaluate``, ``noise_covariance``, ``eps_g``) plus the quadrature options.

    Attributes
    ----------
    quadrature : dict
        ``{"scheme", "n", "seed"}`` as requested (``"auto"``/None resolved per call of
        :meth:`rule_for`, since the number of fields depends on σ).
    """

    rule: R.Rule
    K: int
    M: int
    activation: str
    act: Activation
    layout: Layout
    rhs: object
    eg: object
    noise: object
    source_path: Path
    quadrature: dict
    timings: dict = field(default_factory=dict)
    derivation: object = None
    backend: str = "quadrature"
    #: the packed term tables of the marginal scheme (rhs, eg), None for the others
    tables: tuple | None = None

    @property
    def scheme(self) -> str:
        """The scheme the kernels implement: "marginal", or "full" (a rule over all fields:
        gauss-hermite or sobol)."""
        return "marginal" if self.tables is not None else "full"

    def dim(self, sigma: float) -> int:
        """Number of Gaussian variables integrated: K + M (+1 for the noise ζ; the marginal
        scheme integrates ζ analytically)."""
        if self.tables is not None:
            return self.K + self.M
        return self.K + self.M + (1 if sigma > 0 else 0)

    def rule_for(self, sigma: float) -> QuadratureRule:
        """The rule used at output noise σ. ``auto``: see :func:`resolve_scheme`."""
        q = self.quadrature
        scheme, n = resolve_scheme(self.rule, self.act, q["scheme"], q["n"])
        return make_rule(self.dim(sigma), scheme, n, q["seed"])

    def describe_rule(self, sigma: float) -> dict:
        """``rule_for(sigma).describe()``; for the marginal scheme ``nodes`` is the total
        over the field subsets and ``subsets`` their number."""
        qr = self.rule_for(sigma)
        out = qr.describe()
        if self.tables is not None:
            ns, nodes = table_nodes(self.tables[0], qr.n)
            out.update(nodes=nodes, subsets=ns)
            if self.act.name == "relu":
                # no tensor nodes: every integral an exact orthant moment, the only
                # quadrature the n-point Gauss–Legendre rule of four-field orthants
                out.update(
                    nodes=None,
                    subsets=ns,
                    method=f"exact relu moments (four-field orthants: {qr.n}-point "
                    "Gauss–Legendre; theory.relu_kernels)",
                )
        return out

    def params(
        self, state: OrderParameters, eta, eta_v=None, sigma=0.0, *, qrule=None, **rule_params
    ):
        """The parameter vector: that of :meth:`theory.codegen.System.params` followed by
        ``F_norm2``, the number of nodes P, their dimension D, the nodes and weights.

        Raises ValueError when the rule needs ``F_norm2`` (presynaptic x̃) and the state
        lacks it, or as :meth:`theory.codegen.System.params`.
        """
        base = param_vector(self.rule, self.K, self.M, state, eta, eta_v, sigma, **rule_params)
        if self.rule.presynaptic == "x_tilde":
            state.require(
                "F_norm2",
                why=f" by rule {self.rule.name!r} (presynaptic x̃ = "
                "x − F e: ‖F‖² = N σ_F² enters the b drift; docs/quadrature.md)",
            )
        qr = self.rule_for(float(sigma)) if qrule is None else qrule
        if qr.dim != self.dim(float(sigma)):
            raise ValueError(f"quadrature rule has dim {qr.dim}, need {self.dim(sigma)}")
        if (qr.scheme == "marginal") != (self.tables is not None):
            raise ValueError(
                f"quadrature rule {qr.scheme!r} does not fit the kernels of this "
                f"system (scheme {self.scheme!r})"
            )
        f2 = state.F_norm2 if state.F_norm2 is not None else 0.0
        parts = [base, [f2], qr.packed()]
        if self.tables is not None:
            parts += list(self.tables)
        return np.concatenate(parts).astype(float)

    def error_estimate(
        self, state, eta, eta_v=None, sigma=0.0, *, scale=None, qrule=None, **rule_params
    ) -> dict:
        """How far the right-hand side at ``state`` moves when the rule is replaced by the
        cheaper rules of :func:`theory.quadrature.coarse_rules` (largest over them):
        ``rhs_abs = max_i |f_i − f_i^coarse|``, ``rhs_rel = rhs_abs / scale`` with
        ``scale = max(max_i |f_i|, scale)`` (the rhs scale: :mod:`theory.tolerance`),
        ``eg_abs`` the same for ε_g; ``rtol`` and ``meets = rhs_rel ≤ rtol``.
        ``qrule``: the rule to assess (default :meth:`rule_for`)."""
        fine = self.rule_for(float(sigma)) if qrule is None else qrule
        coarse = coarse_rules(fine)
        y = self.layout.pack(state)
        out = []
        for qr in (fine, *coarse):
            p = self.params(state, eta, eta_v, sigma, qrule=qr, **rule_params)
            dy = np.empty_like(y)
            self.rhs(y, p, dy)
            out.append((dy, float(self.eg(y, p))))
        f1, e1 = out[0]
        if fine.scheme == "gauss-hermite":
            # the same rule in another orientation: the fields in reverse order within
            # students and teachers, so another Cholesky factor. Near-singular C at large
            # variance left the tensor rule 3e-3 off at n = 24–32 while n against fewer
            # nodes differed by 1e-3–2e-4; the two orientations differ by ~ the error
            rs = _reversed(state)
            p = self.params(rs, eta, eta_v, sigma, qrule=fine, **rule_params)
            yr = self.layout.pack(rs)
            dy = np.empty_like(yr)
            self.rhs(yr, p, dy)
            out.append((_reversed_flat(self.layout, dy), float(self.eg(yr, p))))
        absd = max(float(np.max(np.abs(f1 - f2))) for f2, _ in out[1:])
        eabs = max(abs(e1 - e2) for _, e2 in out[1:])
        safety = ESTIMATE_SAFETY[fine.scheme]
        absd, eabs = safety * absd, safety * eabs
        sc = max(float(np.max(np.abs(f1))), float(scale or 0.0), 1e-300)
        if not np.all(np.isfinite(f1)):
            absd = sc = float("nan")
        rtol = self.quadrature.get("rtol", RTOL_DEFAULT)
        rel = absd / sc
        return {
            "rhs_abs": absd,
            "rhs_rel": rel,
            "scale": sc,
            "eg_abs": eabs,
            "coarse": coarse[0].describe(),
            "rtol": rtol,
            "meets": bool(rel <= rtol),
        }


def _reversed(state: OrderParameters) -> OrderParameters:
    """The state with students and teachers each in reverse order (the same network)."""

    def r1(a):
        return None if a is None else np.asarray(a)[::-1].copy()

    return state.replace(
        Q=state.Q[::-1, ::-1].copy(),
        R=state.R[::-1, ::-1].copy(),
        T=state.T[::-1, ::-1].copy(),
        v=r1(state.v),
        v_star=r1(state.v_star),
        b=r1(state.b),
        c=r1(state.c),
    )


def _reversed_flat(layout: Layout, dy) -> np.ndarray:
    """A flat right-hand side of the reversed state mapped back to the original order."""
    d = layout.unpack(np.asarray(dy))
    back = {k: (v[::-1, ::-1] if np.ndim(v) == 2 else v[::-1]) for k, v in d.items()}
    parts = [back["Q"][np.triu_indices(layout.K)], back["R"].ravel(), back["v"]]
    if "b" in back:
        parts.append(back["b"])
    return np.concatenate(parts)


_MODULES: dict = {}
_SYSTEMS: dict = {}


def quad_path(prefix: str, version: str, fingerprint: str, rule: R.Rule, act: Activation) -> Path:
    """Cache path of the generated module of (rule, activation)
    (:func:`theory.cache.generated_path` of the rule and the activation expression)."""
    return generated_path(
        prefix,
        version,
        fingerprint,
        rule.key,
        act.key,
        sp.srepr(act.expr),
        label=f"{rule.name}_{act.key}",
    )


def _fingerprint() -> str:
    return _source_fingerprint(
        (
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


def _load(rule: R.Rule, act: Activation):
    key = (rule.key, act.key, sp.srepr(act.expr))
    if key in _MODULES:
        return _MODULES[key]
    t0 = time.perf_counter()
    path = quad_path("quad", QUAD_CODEGEN_VERSION, _fingerprint(), rule, act)
    digest = digest_of(path)
    t1 = time.perf_counter()

    def warm(mod):
        # compile now (or load numba's cache): a 1×1 system with a 1-node rule
        lay = Layout(1, 1, rule.feedback == "adaptive")
        y = np.zeros(lay.n)
        y[0] = 1.0
        p = np.concatenate(
            [
                [1, 1, 0, 0, 0, 0, 1.0, 0, 0, 0],
                np.zeros(len(rule.params)),
                [0.0],
                make_rule(2, "gauss-hermite", 2).packed(),
            ]
        )
        mod.rhs(y, p, np.empty_like(y))
        mod.eg(y, p)
        if mod.noise is not None:
            mod.noise(y, p, np.empty((1, 1)))

    # written with a content hash, verified, repaired if corrupt (theory.cache)
    mod, cached = load_module(path, lambda: quad_source(rule, act, digest), module_name(path), warm)
    t2 = time.perf_counter()
    out = (
        mod,
        path,
        {"derive": 0.0, "codegen": t1 - t0, "compile": t2 - t1, "source_cached": cached},
    )
    _MODULES[key] = out
    return out


def build_quad_system(rule, K: int, M: int, activation="erf", quadrature=None) -> QuadSystem:
    """The quadrature-backed system of ``rule`` for K, M and ``activation`` (a name, a
    sympy expression of z or an Activation). ``quadrature``: see :func:`quad_options`.

    Raises
    ------
    ValueError
        Unknown activation, an invalid quadrature option (checked for K + M fields).
    NotImplementedError
        A rule the backend cannot express (δ using φ; the b drift of a kinked activation).
    """
    rule = R.get_rule(rule)
    act = get_activation(activation)
    K, M = _check_size("K", K), _check_size("M", M)
    opts = quad_options(quadrature)
    sch, n = resolve_scheme(rule, act, opts["scheme"], opts["n"])
    # validate now (gauss-hermite without n: n is chosen from rtol at the initial state by
    # odeflow.solve, theory.tolerance; only the scheme and seed are checked here)
    qr = make_rule(K + M, sch, 2 if (n is None and sch == "gauss-hermite") else n, opts["seed"])
    mkey = (rule.key, act.key, sp.srepr(act.expr), K, M, tuple(sorted(opts.items(), key=str)))
    if mkey not in _SYSTEMS:
        adaptive = rule.feedback == "adaptive"
        tables = None
        if sch == "marginal":
            from .codegen_marginal import load_marginal, marginal_form, marginal_tables

            marginal_form(rule, act, adaptive)  # ValueError: wrong shape
            tables = marginal_tables(K, M, adaptive, _I2_code(act) is None)
            nodes = table_nodes(tables[0], qr.n)[1]
            if nodes > MAX_MARGINAL_NODES:
                raise ValueError(
                    f"quadrature option n = {qr.n} gives {nodes:.3g} marginal nodes at K = {K}, "
                    f"M = {M}, more than {MAX_MARGINAL_NODES}; lower n or use scheme='sobol'"
                )
            mod, path, timings = load_marginal(rule, act)
        else:
            mod, path, timings = _load(rule, act)
        _SYSTEMS[mkey] = QuadSystem(
            rule,
            K,
            M,
            act.name,
            act,
            Layout(K, M, adaptive),
            mod.rhs,
            mod.eg,
            mod.noise,
            path,
            dict(opts),
            dict(timings),
            tables=tables,
        )
    return _SYSTEMS[mkey]


def marginal_applies(rule: R.Rule, act: Activation) -> bool:
    """Whether the marginal scheme applies to ``rule`` (δ = h(λ) e, presynaptic x, …) with
    ``act`` (adaptive feedback needs a smooth activation)."""
    from .codegen_marginal import marginal_form

    try:
        marginal_form(rule, act, rule.feedback == "adaptive")
    except (ValueError, NotImplementedError):
        return False
    return True


def resolve_scheme(rule: R.Rule, act: Activation, scheme: str, n) -> tuple:
    """``(scheme, n)`` with ``auto`` resolved: scrambled Sobol
    (:func:`theory.quadrature.default_n` points; :data:`KINKED_SOBOL_N` for a kinked
    activation such as relu, whose g' is a step). Explicit schemes are returned as given."""
    if scheme == "auto" and not act.smooth:
        return "sobol", (KINKED_SOBOL_N if n is None else n)
    return scheme, n
