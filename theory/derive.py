"""Derivation of the order-parameter ODEs of a rule: expectations over the Gaussian fields
reduced to sums of ``I2, I3, I4, J2`` templates (docs/theory.md §4–5).

The derivation is *index-generic*: it never unrolls units. All fields live in one list
``z = (λ_1…λ_K, ν_1…ν_M, φ)`` with covariance ``C`` (``[[Q, R, b], [Rᵀ, T, c], [b, c,
σ_F²]]``), and the output error is one sum over the first K+M of them,

    e = ŷ − y = Σ_u A_u g(z_u) − σ ζ,      A = (v_1…v_K, −v*_1…−v*_M),

so a term like ``E[δ_k δ_l]`` becomes ``Σ_{u,u'} A_u A_u' I4(k, l, u, u')`` — one template
with two summation indices — whatever K and M are. For an update
``Δw_k = −(η/√N) δ_k x − (ηκ/N) w_k`` the N → ∞ limit gives

    dR_kn/dα = −η E[δ_k ν_n] − ηκ R_kn
    dQ_kl/dα = −η E[δ_k λ_l + δ_l λ_k] + η² E[δ_k δ_l] − 2ηκ Q_kl
    dv_k/dα  = −η_v E[e g(λ_k)]
    db_k/dα  = −η √N E[δ_k φ] − ηκ b_k                       (adaptive feedback)
    Σ_kl     = η² σ_F² E[δ_k δ_l]                              (noise on b per unit α)
    ε_g      = ½ E[(Σ_u A_u g(z_u))²]

Each expectation is expanded into monomials and every monomial is reduced by
  1. Gaussian noise moments ``E[ζ^p]``;
  2. parity (g odd, g' even, the fields odd) → 0;
  3. matching one of ``g g → I2``, ``g' g' → J2``, ``g' z g → I3``, ``g' g' g g → I4``;
  4. Stein's lemma ``E[z_b h(z)] = Σ_a C_ba E[∂_a h(z)]`` on a bare field otherwise
     (with ``g'' = −z g'`` for erf), or Isserlis' theorem for the linear activation.

The feedback field φ has covariance O(1/√N) with every other field; its leading order is
taken exactly: for the b drift the coefficient of 1/√N (the t-derivative of a template
evaluated with cross-covariances ``t·b, t·c`` at t = 0), elsewhere its value at t = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import count

import sympy as sp

from . import rules as R
from .integrals import ARITY, SYMMETRIES
from .observables import check_closed_form as check_activation

__all__ = ["Term", "Derivation", "derive", "INDEX_CLASS"]

# --------------------------------------------------------------------------- placeholders
Z = sp.Function("Z")  # a field z_i
A = sp.Function("A")  # readout coefficient of field u in e (v_j, or −v*_m)
V = sp.Function("V")  # student second-layer weight v_k
B = sp.Function("B")  # feedback b_k
Cov = sp.Function("Cov")  # covariance entry C_ij
g, gp = R.g, R.gp
zeta = sp.Symbol("zeta", real=True)
eta, eta_v, sigma, sigma_F2 = sp.symbols("eta eta_v sigma sigma_F2", real=True)
TEMPLATES = {name: sp.Function(name) for name in ARITY}

# Index symbols and their classes: "S" student (0..K-1), "T" teacher (0..M-1, field K+n),
# "U" any readout unit (0..K+M-1), "F" the feedback field φ (field K+M).
k, l = sp.symbols("k l", integer=True)
n = sp.Symbol("n", integer=True)
PHI = sp.Symbol("PHI", integer=True)
INDEX_CLASS = {k: "S", l: "S", n: "T", PHI: "F"}
_RANK = {k: 0, l: 1, n: 2, PHI: 10_000}


def dummy(i: int) -> sp.Symbol:
    """The i-th summation index over readout units."""
    s = sp.Symbol(f"u{i}", integer=True)
    INDEX_CLASS[s] = "U"
    _RANK[s] = 100 + i
    return s


def rank(idx) -> int:
    return _RANK[idx]


# ---------------------------------------------------------------------------- the terms
@dataclass(frozen=True)
class Term:
    """``coef × template(args)`` summed over the dummy indices in it.

    ``order`` is the order in the cross-covariances of φ at which ``template`` is taken:
    0 (value at zero cross-covariance) or 1 (first derivative, for the b drift).
    """

    coef: sp.Expr
    template: str  # "I2" | "I3" | "I4" | "J2" | "ONE"
    args: tuple
    order: int = 0

    @property
    def dummies(self) -> tuple:
        idx = set(self.args) | {s for s in self.coef.free_symbols if s in INDEX_CLASS}
        return tuple(sorted((s for s in idx if INDEX_CLASS[s] == "U"), key=rank))

    def expr(self) -> sp.Expr:
        """The term as one sympy expression (templates as undefined functions)."""
        if self.template == "ONE":
            return self.coef
        return self.coef * TEMPLATES[self.template](*self.args)


def canonical_args(name: str, args: tuple) -> tuple:
    """The representative of ``args`` under the template's symmetries (lowest ranks first)."""
    best = tuple(args)
    for perm in SYMMETRIES.get(name, []):
        cand = tuple(args[i] for i in perm)
        if [rank(a) for a in cand] < [rank(a) for a in best]:
            best = cand
    return best


def cov(a, b):
    a, b = sorted((a, b), key=rank)
    return Cov(a, b)


def is_cross(c) -> bool:
    """A covariance between φ and another field (O(1/√N))."""
    a, b = c.args
    return (a == PHI) != (b == PHI)


# ----------------------------------------------------------------------- expectations
class NotReducible(NotImplementedError):
    pass


def _split(term: sp.Expr):
    """Split a monomial into its coefficient and its random factors [(kind, idx), ...]."""
    coef = sp.Integer(1)
    rand = []
    for f in sp.Mul.make_args(term):
        base, p = f.as_base_exp()
        if base == zeta:
            rand += [("zeta", None)] * int(p)
        elif isinstance(base, sp.Function) and base.func in (g, gp, Z):
            arg = base.args[0]
            if base.func is Z:
                rand += [("z", arg)] * int(p)
            else:
                if not (isinstance(arg, sp.Function) and arg.func is Z):
                    raise NotReducible(
                        f"{base.func}({arg}) takes a function of a non-field "
                        "argument; g and gp must be applied to fields"
                    )
                rand += [(base.func.__name__, arg.args[0])] * int(p)
        else:
            if any(
                isinstance(a, sp.Function) and a.func in (g, gp, Z)
                for a in sp.preorder_traversal(f)
            ):
                raise NotReducible(
                    f"cannot take the Gaussian average of {f}: the fields "
                    "must enter polynomially, through g and gp"
                )
            coef *= f
    return coef, rand


def _double_factorial(p: int) -> int:
    out = 1
    while p > 1:
        out *= p
        p -= 2
    return out


def expect(rand: list, activation: str):
    """E[Π factors] as a list of ``(coef, template, args)``. Raises NotReducible."""
    nz = sum(1 for kind, _ in rand if kind == "zeta")
    if nz % 2:
        return []
    factor = sp.Integer(_double_factorial(nz - 1)) if nz else sp.Integer(1)
    rand = [f for f in rand if f[0] != "zeta"]
    gs = [i for kind, i in rand if kind == "g"]
    gps = [i for kind, i in rand if kind == "gp"]
    zs = [i for kind, i in rand if kind == "z"]
    if (len(gs) + len(zs)) % 2:  # odd integrand of a centred Gaussian
        return []
    out = _match(gs, gps, zs)
    if out is not None:
        name, args = out
        if name != "ONE":
            args = canonical_args(name, args)
        return [(factor, name, args)]
    if activation == "linear":
        # g(z) = z, g' = 1: a product of fields, by Isserlis' theorem
        return [(factor * c, "ONE", ()) for c in _isserlis(gs + zs)]
    if not zs:
        raise NotReducible(
            "E[" + " ".join(f"{kind}(z_{i})" for kind, i in rand) + "] is not one of the "
            "supported averages I2 = E[g g], J2 = E[g' g'], I3 = E[g' z g], "
            "I4 = E[g' g' g g] and has no bare field to apply Stein's lemma to"
        )
    b, rest = zs[0], [("g", i) for i in gs] + [("gp", i) for i in gps] + [("z", i) for i in zs[1:]]
    out = []
    for j, (kind, a) in enumerate(rest):
        others = rest[:j] + rest[j + 1 :]
        if kind == "g":
            new = others + [("gp", a)]
        elif kind == "gp":  # erf: g'' = −z g'
            new = others + [("gp", a), ("z", a)]
        else:
            new = others
        sign = -1 if kind == "gp" else 1
        for c, name, args in expect(new, activation):
            out.append((factor * sign * cov(b, a) * c, name, args))
    return out


def _match(gs, gps, zs):
    if not zs:
        if not gs and not gps:
            return "ONE", ()
        if len(gs) == 2 and not gps:
            return "I2", (gs[0], gs[1])
        if not gs and len(gps) == 2:
            return "J2", (gps[0], gps[1])
        if len(gs) == 2 and len(gps) == 2:
            return "I4", (gps[0], gps[1], gs[0], gs[1])
    elif len(zs) == 1 and len(gs) == 1 and len(gps) == 1:
        return "I3", (gps[0], zs[0], gs[0])
    return None


def _isserlis(fields):
    if not fields:
        return [sp.Integer(1)]
    first, rest = fields[0], fields[1:]
    out = []
    for j, other in enumerate(rest):
        for c in _isserlis(rest[:j] + rest[j + 1 :]):
            out.append(cov(first, other) * c)
    return out


# ------------------------------------------------------------------------ building δ_k
class _Dummies:
    def __init__(self):
        self._c = count(1)

    def __call__(self):
        return dummy(next(self._c))


def _error(u, noise=True):
    return A(u) * g(Z(u)) - (sigma * zeta if noise else 0)


def _delta(rule: R.Rule, unit, fresh: _Dummies) -> sp.Expr:
    """δ for hidden unit ``unit``, each power of the error with its own dummy index."""
    expr = rule.delta.subs({R.lam: Z(unit), R.v_k: V(unit), R.b_k: B(unit), R.phi: Z(PHI)})
    expr = expr.replace(R.g, lambda x: g(x)).replace(R.gp, lambda x: gp(x))
    poly = sp.Poly(sp.expand(expr), R.e) if expr.has(R.e) else None
    if poly is None:
        return expr
    out = sp.Integer(0)
    for (p,), c in poly.terms():
        if c.has(R.e):
            raise ValueError(f"rule {rule.name!r}: delta must be a polynomial in e")
        prod = sp.Integer(1)
        for _ in range(p):
            prod *= _error(fresh())
        out += c * prod
    return out


def _average(expr: sp.Expr, activation: str, order: int) -> list:
    """E[expr] as a list of :class:`Term`, at the given order in φ's cross-covariances."""
    terms = []
    for mono in sp.Add.make_args(sp.expand(expr)):
        if mono == 0:
            continue
        coef, rand = _split(mono)
        for c, name, args in expect(rand, activation):
            full = coef * c
            ncross = sum(
                1
                for f in sp.Mul.make_args(full)
                for base in [f.as_base_exp()[0]]
                if isinstance(base, sp.Function) and base.func is Cov and is_cross(base)
                for _ in range(int(f.as_base_exp()[1]))
            )
            tmpl_order = order - ncross
            if tmpl_order < 0:
                continue  # higher order in 1/√N: vanishes as N → ∞
            if tmpl_order > 1:
                raise NotReducible("only first-order corrections in 1/√N are supported")
            if tmpl_order == 1 and (name == "ONE" or PHI not in args):
                # an O(1) term multiplied by √N: the drift would diverge with N
                raise NotReducible(
                    "the b drift has an O(√N) term: the rule's δ·φ does not average to O(1/√N)"
                )
            terms.append(Term(sp.expand(full), name, tuple(args), tmpl_order))
    return _collect(terms)


def _collect(terms):
    """Merge terms with the same template, arguments and order."""
    acc = {}
    for t in terms:
        key = (t.template, t.args, t.order)
        acc[key] = acc.get(key, 0) + t.coef
    return [
        Term(sp.factor_terms(sp.expand(c)), *key) for key, c in acc.items() if sp.expand(c) != 0
    ]


# ---------------------------------------------------------------------------- derivation
@dataclass(frozen=True)
class Derivation:
    """The derived equations of a rule, as index-generic template sums.

    Each entry is a list of :class:`Term`; free indices ``k, l`` (students) and ``n``
    (teacher) name the component, the dummies ``u1, u2, …`` run over the K+M readout units.
    """

    rule: R.Rule
    activation: str
    dR: list  # free k, n
    dQ: list  # free k, l
    dv: list  # free k
    db: list  # free k (adaptive feedback only, else [])
    noise: list  # free k, l (adaptive only): Σ_kl
    eg: list  # no free index

    def show(self) -> str:
        """The equations in readable form."""
        lines = []
        for name, free in (
            ("dR[k,n]", "dR"),
            ("dQ[k,l]", "dQ"),
            ("dv[k]", "dv"),
            ("db[k]", "db"),
            ("Sigma[k,l]", "noise"),
            ("eps_g", "eg"),
        ):
            terms = getattr(self, free)
            if not terms:
                continue
            body = " + ".join(
                f"Σ_{{{','.join(map(str, t.dummies))}}} " * bool(t.dummies)
                + f"({t.coef})·{t.template}{tuple(map(str, t.args)) if t.args else ''}"
                + ("'" if t.order else "")
                for t in terms
            )
            lines.append(f"{name} = {body}")
        return "\n".join(lines)


@cache
def derive(rule, activation: str = "erf") -> Derivation:
    """Derive the ODEs (and for adaptive feedback the noise covariance) of ``rule``.

    Parameters
    ----------
    rule : str or theory.rules.Rule
    activation : {"erf", "linear"}

    Raises
    ------
    ValueError
        For an unknown rule or activation.
    NotImplementedError
        If an expectation cannot be reduced to I2, I3, I4, J2 (the message says which).
    """
    rule = R.get_rule(rule)
    check_activation(activation)
    if not rule.is_standard:
        raise NotImplementedError(
            f"rule {rule.name!r}: presynaptic {rule.presynaptic!r}, v_signal "
            f"{rule.v_signal} or the second-pass field lam_t have no closed-form reduction; "
            "its ODEs come from Gaussian quadrature (theory.codegen_quad)"
        )
    kappa = rule.weight_decay
    try:
        f = _Dummies()
        dR = _average(-eta * _delta(rule, k, f) * Z(n), activation, 0)
        dQ = _average(
            -eta * (_delta(rule, k, f) * Z(l) + _delta(rule, l, f) * Z(k))
            + eta**2 * _delta(rule, k, f) * _delta(rule, l, f),
            activation,
            0,
        )
        dv = (
            []
            if rule.second_layer == "fixed"
            else _average(-eta_v * _error(f()) * g(Z(k)), activation, 0)
        )
        eg = _average(
            sp.Rational(1, 2) * _error(f(), noise=False) * _error(f(), noise=False), activation, 0
        )
        db, noise = [], []
        if rule.feedback == "adaptive":
            db = _average(-eta * _delta(rule, k, f) * Z(PHI), activation, 1)
            noise = _average(
                eta**2 * sigma_F2 * _delta(rule, k, f) * _delta(rule, l, f), activation, 0
            )
    except NotReducible as exc:
        raise NotImplementedError(f"rule {rule.name!r} ({activation}): {exc}") from None
    if kappa != 0:
        dR.append(Term(-eta * kappa * cov(k, n), "ONE", ()))
        dQ.append(Term(-2 * eta * kappa * cov(k, l), "ONE", ()))
        if db:
            db.append(Term(-eta * kappa * B(k), "ONE", ()))
    return Derivation(
        rule,
        activation,
        _renumber(dR),
        _renumber(dQ),
        _renumber(dv),
        _renumber(db),
        _renumber(noise),
        _renumber(eg),
    )


def _renumber(terms):
    """Rename each term's dummies to u1, u2, … in order of appearance so that equal
    terms from different expansions merge (and code generation sees few distinct loops)."""
    out = []
    for t in terms:
        ds = t.dummies
        order = []
        for a in list(t.args) + sorted(t.coef.free_symbols, key=str):
            if a in ds and a not in order:
                order.append(a)
        for d in ds:
            if d not in order:
                order.append(d)
        mapping = {old: dummy(100 + i) for i, old in enumerate(order, 1)}
        mapping2 = {dummy(100 + i): dummy(i) for i in range(1, len(order) + 1)}
        c = t.coef.xreplace(mapping).xreplace(mapping2)
        args = tuple(mapping2.get(mapping.get(a, a), mapping.get(a, a)) for a in t.args)
        if t.template != "ONE":
            args = canonical_args(t.template, args)
        out.append(Term(c, t.template, args, t.order))
    return _collect(out)
