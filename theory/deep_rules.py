"""A user's deep rule: the per-layer signal of a deep student as a sympy expression
(docs/deep.md, "A user's deep rule").

A deep student (:mod:`theory.deep`) learns with per-layer signals δ_ℓ (hidden layers
ℓ = 1 … L−1). A :class:`DeepRule` gives the signal of unit k of layer ℓ as an expression
of three local quantities::

    δ_ℓ,k = delta(a, f, e)

========= =====================================================================
``a``     the unit's pre-activation a_ℓ,k (a₁ = λ, the first-layer field)
``f``     the top-down message the unit receives (below, by ``feedback``)
``e``     the output error ŷ − y
``g``     the activation; ``gp`` its derivative g'
========= =====================================================================

and ``feedback`` says what carries the message f:

* ``"v"`` (backward chain through the network's own weights): ``f = v_k e`` at the last
  hidden layer, ``f = (W_{ℓ+1}ᵀ δ_{ℓ+1})_k`` below it. ``delta = gp(a)*f`` is backprop.
* ``"fixed"`` (a fixed backward chain): ``b`` (last hidden width) in place of v and
  ``B[ℓ]`` in place of ``W[ℓ]ᵀ``. ``delta = gp(a)*f`` is FA.
* ``"direct"`` (direct projection of the error): ``f = d_ℓ,k e`` with a fixed vector d_ℓ
  per hidden layer. ``delta = gp(a)*f`` is DFA.

The updates are those of bp, fa and dfa: ``Δw_k = −(η/√N) δ₁,k x`` (W₁),
``W[ℓ] ← W[ℓ] − (η_W/N) δ_{ℓ+2} ⊗ h_{ℓ+1}``, ``v ← v − (η_v/N) e h_{L−1}``. The ODEs
(:mod:`theory.deep_kernels`) and the simulation kernel (:mod:`simulations.deep_kernel`)
print ``delta`` into their generated code, so one rule gets its theory and its experiment.
Rules with adaptive feedback (AFA, PEPITA: b = W₁F/√N is an order parameter) are built in
and not expressible here.

Example — FA with the feedback sign flipped at every layer (a rule that is not built in)::

    from theory.deep_rules import DeepRule, a, f, gp
    anti_fa = DeepRule("anti-fa", delta=-gp(a) * f, feedback="fixed")

In a rule file (``"rule": "my_rules.py:anti_fa"`` with ``"widths"`` in a config) the same
lines define it; :func:`load_deep_rule` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy as sp

from .rules import e, g, gp

__all__ = [
    "DeepRule",
    "DEEP_FEEDBACK",
    "a",
    "f",
    "e",
    "g",
    "gp",
    "load_deep_rule",
    "delta_source",
]

a = sp.Symbol("a", real=True)
f = sp.Symbol("f", real=True)

#: what carries the top-down message f (see the module docstring)
DEEP_FEEDBACK = ("v", "fixed", "direct")
#: names the parameter vector and the generated code already use
RESERVED = {"eta", "eta_v", "eta_W", "sigma", "sigma_F2", "K", "M", "p", "act", "math", "np"}


@dataclass(frozen=True)
class DeepRule:
    """A learning rule of the deep student (see the module docstring).

    Parameters
    ----------
    name : str
    delta : sympy expression
        δ_ℓ,k in the symbols ``a, f, e`` (and ``g``, ``gp``) and the rule's ``params``.
    feedback : {"v", "fixed", "direct"}
        What carries f: the network's own v and W (backward), fixed b and B, or fixed
        direct vectors d_ℓ times e.
    params : mapping name → default value
        Extra scalar symbols of ``delta``; overridden at solve time by ``rule_params``.
    """

    name: str
    delta: sp.Expr
    feedback: str = "v"
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a deep rule needs a non-empty name")
        if self.feedback not in DEEP_FEEDBACK:
            raise ValueError(
                f"deep rule {self.name!r}: feedback must be one of "
                f"{', '.join(DEEP_FEEDBACK)}, got {self.feedback!r}"
            )
        try:
            delta = sp.sympify(self.delta)
        except (sp.SympifyError, TypeError) as exc:
            raise ValueError(
                f"deep rule {self.name!r}: delta must be a sympy expression, got "
                f"{self.delta!r} ({exc})"
            ) from None
        params = {}
        for k, val in dict(self.params).items():
            if not isinstance(k, str) or not k.isidentifier():
                raise ValueError(f"deep rule {self.name!r}: parameter name {k!r} is not valid")
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ValueError(
                    f"deep rule {self.name!r}: parameter {k!r} needs a number default, got {val!r}"
                )
            params[k] = float(val)
        bad = sorted((RESERVED | {"a", "f", "e", "g", "gp"}) & set(params))
        if bad:
            raise ValueError(f"deep rule {self.name!r}: parameter names {bad} are reserved")
        allowed = (
            {a, f, e} | {sp.Symbol(p, real=True) for p in params} | set(map(sp.Symbol, params))
        )
        unknown = sorted(str(s) for s in delta.free_symbols if s not in allowed)
        if unknown:
            raise ValueError(
                f"deep rule {self.name!r}: delta uses unknown symbols {unknown}; allowed: a, "
                f"f, e and the rule's params {sorted(params)}"
            )
        for fn in delta.atoms(sp.Function):
            if isinstance(fn, sp.core.function.AppliedUndef) and type(fn).__name__ not in (
                "g",
                "gp",
            ):
                raise ValueError(
                    f"deep rule {self.name!r}: delta uses the unknown function "
                    f"{type(fn).__name__!r}; allowed: g, gp and sympy's functions"
                )
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "params", params)

    @property
    def key(self) -> str:
        """A canonical string of the rule's mathematics (for caches)."""
        return "|".join(
            ["deep-user", self.name, sp.srepr(self.delta), self.feedback, repr(sorted(self.params))]
        )

    @property
    def code_key(self) -> str:
        """What the generated code depends on: δ and the parameter names (not the name
        or the feedback kind, which the kernels take as a rule code). Rules that differ
        only there share one compiled module."""
        return "|".join(["deep-user-code", sp.srepr(self.delta), repr(sorted(self.params))])

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, DeepRule) and self.key == other.key

    def describe(self) -> dict:
        return {
            "name": self.name,
            "delta": str(self.delta),
            "feedback": self.feedback,
            "params": dict(self.params),
        }


def delta_source(rule: DeepRule, *, act_arg: bool) -> str:
    """The numba source of ``_user_delta(a_, f_, e_, p, o)``: δ at pre-activation ``a_``,
    message ``f_``, error ``e_``; the rule's parameters (sorted by name) are ``p[o + i]``.
    ``act_arg``: the simulation kernel's form, ``_user_delta(a_, f_, e_, p, o, act)`` with
    ``g``/``gp`` printed as ``_g(·, act)``/``_gp(·, act)`` (the ODE kernel's ``_g``/``_gp``
    take one argument)."""
    from .emit import NumbaPrinter

    names = sorted(rule.params)
    sub = {a: sp.Symbol("a_", real=True), f: sp.Symbol("f_", real=True)}
    sub[e] = sp.Symbol("e_", real=True)
    for i, nm in enumerate(names):
        for s in (sp.Symbol(nm, real=True), sp.Symbol(nm)):
            sub[s] = sp.Symbol(f"_rp{i}", real=True)
    expr = rule.delta.xreplace(sub)

    class P(NumbaPrinter):
        def _print_Function(self, fn):
            nm = type(fn).__name__
            if nm in ("g", "gp"):
                extra = ", act" if act_arg else ""
                return f"_{nm}({self._print(fn.args[0])}{extra})"
            return super()._print_Function(fn)

    body = [f"_rp{i} = p[o + {i}]" for i in range(len(names))]
    body.append(f"return {P().doprint(expr)}")
    args = "a_, f_, e_, p, o, act" if act_arg else "a_, f_, e_, p, o"
    lines = ['@njit(cache=True, nogil=True, inline="always")', f"def _user_delta({args}):"]
    lines.append(f'    """δ = {rule.delta}"""')
    lines += ["    " + ln for ln in body]
    return "\n".join(lines) + "\n"


def load_deep_rule(spec: str, base_dir=None) -> DeepRule:
    """The :class:`DeepRule` named ``NAME`` in ``spec = "path/to/file.py:NAME"``.

    The file is run as a module (once per path and modification time): it is code, run with
    the user's rights, as :func:`theory.rules.load_rule`'s rule files. A relative path is
    taken relative to ``base_dir`` (default: the current directory).

    Raises ValueError if ``spec`` is malformed, the file is missing or fails to import, or
    ``NAME`` is not a DeepRule it defines."""
    from .rules import import_rule_file

    mod, path, name = import_rule_file(spec, base_dir)
    rules = sorted(k for k, v in vars(mod).items() if isinstance(v, DeepRule))
    obj = getattr(mod, name, None)
    if not isinstance(obj, DeepRule):
        what = (
            f"does not define {name!r}"
            if obj is None
            else f"defines {name!r} as a {type(obj).__name__}, not a theory.deep_rules.DeepRule"
        )
        raise ValueError(
            f"rule file {path!r} {what} (a deep student, widths given, needs a DeepRule); "
            f"the DeepRules it defines: {', '.join(rules) or 'none'}"
        )
    return obj
