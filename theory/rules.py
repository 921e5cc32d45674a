"""Learning rules as symbolic data (docs/theory.md §2).

A rule is the first-layer signal ``δ_k`` of hidden unit ``k``, written as a sympy expression
of that unit's local field and of the output error, with the update

    w_k ← w_k − (η/√N) δ_k x − (η κ/N) w_k          (κ: optional weight decay)
    v_k ← v_k − (η_v/N) e g(λ_k)                    (second layer "sgd"; or "fixed")

The symbols a rule may use (import them from here):

========= =================================================================
``lam``   λ_k = w_k·x/√N, the unit's own local field
``e``     the output error ŷ − y = Σ_j v_j g(λ_j) − Σ_m v*_m g(ν_m) − σζ
``v_k``   the unit's second-layer weight (backprop's feedback)
``b_k``   the unit's feedback weight: fixed (FA) or ``w_k·F/√N`` (AFA)
``phi``   the feedback field φ = F·x/√N (adaptive feedback only)
``lam_t`` the second-pass field λ̃_k = w_k·x̃/√N = λ_k − e b_k, x̃ = x − F e (PEPITA)
``g``     the activation; ``gp`` its derivative g'
========= =================================================================

Two more fields of a Rule generalise the update (docs/quadrature.md)::

    w_k ← w_k − (η/√N) δ_k p,     p = x ("x", default) or x̃ = x − F e ("x_tilde")
    v_k ← v_k − (η_v/N) e s_k,    s_k = ``v_signal`` (default g(λ_k); PEPITA: g(λ̃_k))

A rule that is not linear in the feedback (e.g. exact PEPITA, ``δ_k = g(λ_k) − g(λ̃_k)``)
has no closed-form averages: its ODEs are computed by Gaussian quadrature
(:mod:`theory.codegen_quad`).

Example — FA plus weight decay, a rule that is not built in::

    import sympy as sp
    from theory.rules import Rule, lam, e, b_k, gp
    kappa = sp.Symbol("kappa")
    fa_decay = Rule("fa-decay", delta=b_k * gp(lam) * e, feedback="fixed",
                    weight_decay=kappa, params={"kappa": 1e-3})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy as sp

from .runtime.cli import rule_relative_to  # noqa: F401 -- re-exported: rule files' paths

__all__ = [
    "Rule",
    "get_rule",
    "load_rule",
    "rule_relative_to",
    "RULES",
    "lam",
    "e",
    "v_k",
    "b_k",
    "phi",
    "lam_t",
    "g",
    "gp",
    "PRESYNAPTIC",
]

lam = sp.Symbol("lam", real=True)
e = sp.Symbol("e", real=True)
v_k = sp.Symbol("v_k", real=True)
b_k = sp.Symbol("b_k", real=True)
phi = sp.Symbol("phi", real=True)
lam_t = sp.Symbol("lam_t", real=True)
g = sp.Function("g")
gp = sp.Function("gp")

#: the symbols a rule's ``delta`` may contain, besides its own ``params``
RULE_SYMBOLS = (lam, e, v_k, b_k, phi, lam_t)
#: the presynaptic term of the first-layer update: x, or the modulated x̃ = x − F e
PRESYNAPTIC = ("x", "x_tilde")

FEEDBACK_KINDS = ("v", "fixed", "adaptive")
SECOND_LAYER_KINDS = ("sgd", "fixed")
#: names the parameter vector already uses; a rule parameter may not shadow them
RESERVED = {"eta", "eta_v", "sigma", "sigma_F2", "K", "M"}


@dataclass(frozen=True)
class Rule:
    """A learning rule for the two-layer student.

    Parameters
    ----------
    name : str
    delta : sympy expression
        The first-layer signal δ_k in the symbols of this module (``lam, e, v_k, b_k, phi,
        g, gp``) and the rule's own ``params``; the update is ``Δw_k = −(η/√N) δ_k x``.
    feedback : {"v", "fixed", "adaptive"}
        Which feedback ``b_k`` stands for: none needed ("v", backprop), a fixed random
        vector (FA), or the adaptive overlap ``b = w F/√N`` (AFA), which then becomes a
        dynamical order parameter.
    second_layer : {"sgd", "fixed"}
        Whether ``v`` learns by SGD (with ``η_v``) or is frozen.
    weight_decay : number or sympy expression
        κ in ``−(η κ/N) w_k`` per step.
    params : mapping name → default value
        Extra scalar symbols used in ``delta`` or ``weight_decay``; passed at solve time.
    presynaptic : {"x", "x_tilde"}
        The presynaptic term p of ``Δw_k = −(η/√N) δ_k p``: the input x, or the modulated
        input ``x̃ = x − F e`` (needs adaptive feedback: F exists).
    v_signal : sympy expression, optional
        ``s_k`` in ``Δv_k = −(η_v/N) e s_k``; default ``g(lam)``.
    """

    name: str
    delta: sp.Expr
    feedback: str = "v"
    second_layer: str = "sgd"
    weight_decay: sp.Expr = sp.Integer(0)
    params: Mapping[str, float] = field(default_factory=dict)
    presynaptic: str = "x"
    v_signal: sp.Expr = None

    def __post_init__(self):
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a rule needs a non-empty name")
        if self.feedback not in FEEDBACK_KINDS:
            raise ValueError(
                f"rule {self.name!r}: feedback must be one of "
                f"{', '.join(FEEDBACK_KINDS)}, got {self.feedback!r}"
            )
        if self.second_layer not in SECOND_LAYER_KINDS:
            raise ValueError(
                f"rule {self.name!r}: second_layer must be one of "
                f"{', '.join(SECOND_LAYER_KINDS)}, got {self.second_layer!r}"
            )
        if self.presynaptic not in PRESYNAPTIC:
            raise ValueError(
                f"rule {self.name!r}: presynaptic must be one of "
                f"{', '.join(PRESYNAPTIC)}, got {self.presynaptic!r}"
            )
        if self.presynaptic == "x_tilde" and self.feedback != "adaptive":
            raise ValueError(
                f"rule {self.name!r}: presynaptic 'x_tilde' (x − F e) needs "
                "feedback='adaptive' (the vector F)"
            )
        delta = sp.sympify(self.delta)
        decay = sp.sympify(self.weight_decay)
        vsig = g(lam) if self.v_signal is None else sp.sympify(self.v_signal)
        params = {str(k): float(v) for k, v in dict(self.params).items()}
        bad = RESERVED & set(params)
        if bad:
            raise ValueError(f"rule {self.name!r}: parameter names {sorted(bad)} are reserved")
        allowed = (
            set(RULE_SYMBOLS)
            | {sp.Symbol(p, real=True) for p in params}
            | {sp.Symbol(p) for p in params}
        )
        for what, expr in (("delta", delta), ("weight_decay", decay), ("v_signal", vsig)):
            unknown = {s for s in expr.free_symbols if s not in allowed}
            if unknown:
                raise ValueError(
                    f"rule {self.name!r}: {what} uses unknown symbols "
                    f"{sorted(map(str, unknown))}; allowed: lam, e, v_k, b_k, phi, lam_t and "
                    f"the rule's params {sorted(params)}"
                )
        if phi in vsig.free_symbols:
            raise ValueError(f"rule {self.name!r}: v_signal may not use phi")
        if decay.free_symbols & set(RULE_SYMBOLS):
            raise ValueError(
                f"rule {self.name!r}: weight_decay must be a constant or a "
                "rule parameter, not a function of the fields"
            )
        for what, expr in (("delta", delta), ("v_signal", vsig)):
            used = expr.free_symbols & {b_k, lam_t}
            if used and self.feedback == "v":
                raise ValueError(
                    f"rule {self.name!r}: {what} uses "
                    f"{', '.join(sorted(map(str, used)))} (needs the feedback "
                    "b_k) but feedback='v'; say feedback='fixed' or 'adaptive'"
                )
        if phi in delta.free_symbols and self.feedback != "adaptive":
            raise ValueError(
                f"rule {self.name!r}: phi (= F·x/√N) exists only with feedback='adaptive'"
            )
        set_(self, "delta", delta)
        set_(self, "weight_decay", decay)
        set_(self, "params", params)
        set_(self, "v_signal", vsig)

    @property
    def key(self) -> str:
        """A canonical string identifying the mathematics of the rule (for caches)."""
        parts = [
            self.name,
            sp.srepr(self.delta),
            self.feedback,
            self.second_layer,
            sp.srepr(self.weight_decay),
            repr(sorted(self.params)),
        ]
        if not self.is_standard:  # keys of the original rules are unchanged
            parts += [self.presynaptic, sp.srepr(self.v_signal)]
        return "|".join(parts)

    @property
    def is_standard(self) -> bool:
        """Presynaptic x, second layer driven by g(λ_k), no λ̃: the form the closed-form
        derivation (theory.derive) handles when δ is also linear in the feedback."""
        return (
            self.presynaptic == "x"
            and self.v_signal == g(lam)
            and lam_t not in self.delta.free_symbols
        )

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Rule) and self.key == other.key


#: built-in rules (docs/theory.md §2): backprop, feedback alignment, adaptive feedback alignment
RULES = {
    "bp": Rule("bp", delta=v_k * gp(lam) * e, feedback="v"),
    "fa": Rule("fa", delta=b_k * gp(lam) * e, feedback="fixed"),
    "afa": Rule("afa", delta=b_k * gp(lam) * e, feedback="adaptive"),
    # exact two-pass PEPITA (docs/quadrature.md): δ = g(λ) − g(λ̃), v learns from g(λ̃)
    "pepita": Rule(
        "pepita",
        delta=g(lam) - g(lam_t),
        feedback="adaptive",
        presynaptic="x_tilde",
        v_signal=g(lam_t),
    ),
    "pepita-forward": Rule(
        "pepita-forward",
        delta=g(lam) - g(lam_t),
        feedback="adaptive",
        presynaptic="x",
        v_signal=g(lam_t),
    ),
}


def get_rule(rule) -> Rule:
    """A :class:`Rule` from a built-in name, a Rule (returned as is) or
    ``"path/to/file.py:NAME"`` (see :func:`load_rule`)."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]
    if isinstance(rule, str) and (":" in rule or rule.endswith(".py")):
        return load_rule(rule)
    raise ValueError(
        f"unknown rule {rule!r}; built-in rules: {', '.join(RULES)} "
        "(or pass a theory.rules.Rule, or 'path/to/file.py:NAME')"
    )


_LOADED: dict = {}


def import_rule_file(spec: str, base_dir=None) -> tuple:
    """``(module, absolute path, NAME)`` of ``spec = "path/to/file.py:NAME"``: the file run as
    a module once per path and modification time (shared by :func:`load_rule` and
    :func:`theory.deep_rules.load_deep_rule`). A relative path is taken relative to
    ``base_dir`` (default: the current directory).

    Raises ValueError if ``spec`` is malformed or the file is missing or fails to import."""
    import importlib.util
    import os
    import sys

    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"a rule in a file is named 'path/to/file.py:NAME', got {spec!r}")
    path, _, name = spec.rpartition(":")
    if not path or not name.isidentifier():
        raise ValueError(
            f"a rule in a file is named 'path/to/file.py:NAME' (NAME a Python "
            f"identifier), got {spec!r}"
        )
    if base_dir is not None and not os.path.isabs(path):
        path = os.path.join(str(base_dir), path)
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"rule file {path!r} (from {spec!r}) does not exist")
    key = (path, os.stat(path).st_mtime_ns)
    mod = _LOADED.get(key)
    if mod is None:
        modname = "_odeflow_user_rules_" + "".join(c if c.isalnum() else "_" for c in path)
        loader_spec = importlib.util.spec_from_file_location(modname, path)
        if loader_spec is None:
            raise ValueError(f"rule file {path!r} is not a Python file")
        mod = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(mod)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 -- any failure of user code
            # the user's file: whatever it raises -- sys.exit(0) included, which would
            # otherwise end the command with status 0 and no output -- is bad input
            what = (
                f"it called sys.exit({exc.code!r})"
                if isinstance(exc, SystemExit)
                else f"{type(exc).__name__}: {exc}"
            )
            raise ValueError(f"rule file {path} failed to import: {what}") from None
        sys.modules[modname] = mod
        _LOADED[key] = mod
    return mod, path, name


def load_rule(spec: str, base_dir=None) -> Rule:
    """The :class:`Rule` named ``NAME`` in the Python file of ``spec = "path/to/file.py:NAME"``.

    The file is executed as a module (once per path and modification time), so it may
    import sympy and ``theory.rules`` and define several rules. A rule file is *code*, run
    with the user's rights (a sweep or config file from someone else is data; a rule file
    is code): load only rule files you trust. A relative path is taken
    relative to ``base_dir`` (default: the current directory).

    Raises
    ------
    ValueError
        If ``spec`` is not ``file.py:NAME``, the file does not exist or fails to import, it
        does not define ``NAME``, or ``NAME`` is not a Rule.
    """
    mod, path, name = import_rule_file(spec, base_dir)
    rules = sorted(k for k, v in vars(mod).items() if isinstance(v, Rule))
    if not hasattr(mod, name):
        raise ValueError(
            f"rule file {path!r} does not define {name!r}; the Rules it defines: "
            f"{', '.join(rules) or 'none'}"
        )
    obj = getattr(mod, name)
    if not isinstance(obj, Rule):
        raise ValueError(
            f"{name!r} in rule file {path!r} is a {type(obj).__name__}, not a "
            f"theory.rules.Rule; the Rules it defines: {', '.join(rules) or 'none'}"
        )
    return obj
