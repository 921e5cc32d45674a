"""The simulation kernel of a learning rule, generated from its :class:`theory.rules.Rule`.

One rule, every tool: the sympy signal ``δ_k`` that :mod:`theory.derive` turns into ODEs is
printed here into the fused, allocation-free numba loop that simulates the network
(docs/theory.md §1–2), so a rule written once gets both its theory and its experiment.

What the generated kernel does per step (``e = ŷ − y``, all updates from the values before
the step; ``κ`` the rule's weight decay, ``p`` the presynaptic term, ``x`` or
``x̃ = x − F e``)::

    w_k ← (1 − η κ/N) w_k − (η/√N) δ_k p        v_k ← v_k − (η_v/N) e s_k

with ``δ_k`` the rule's ``delta`` evaluated at ``lam = λ_k``, ``lam_t = λ_k − e b_k``,
``e``, ``v_k``, ``b_k`` and ``phi = F·x/√N`` (``g``, ``gp`` are the activation and its
derivative, the kernel's ``_g``/``_gp``), and the second-layer signal ``s_k`` = the rule's
``v_signal`` (default ``g(λ_k)``; ``second_layer="sgd"``) or 0 (``"fixed"``). Feedback ``"fixed"``
reads ``b`` from the FA feedback vector, ``"adaptive"`` maintains ``b_k = w_k·F/√N`` exactly
(re-measured every block, then updated with ``Δb_k = Δw_k·F/√N``).

The loop around the signal is :data:`KERNEL_TEMPLATE`, the same for every rule: the inputs
are drawn inside it and each first-layer update is fused with the next forward pass (see
``simulations.teacher_student``). The per-rule parts (the signal, whether ``b`` is adaptive,
whether the presynaptic term is ``x̃``, whether there is weight decay) are fixed at
generation time, so a built-in rule runs exactly the instructions the hand-written kernel
did — and reproduces its trajectories bit for bit (``tests/simulations/
test_kernel_codegen.py``).

Products are printed factor by factor in the order feedback (``v_k``, ``b_k``) × activation
terms × error × the rest: floating-point products depend on their order, and this is the
order of the hand-written kernel.

Caching: the generated module ``simkernel_<name>_<digest>.py`` lives in the generated-code
cache directory (``$ODEFLOW_CACHE_DIR``, default ``~/.cache/odeflow``) next to the ODE
kernels, with numba's compiled machine code beside it. The digest covers the rule (its
canonical ``Rule.key``; a built-in name stands for itself), the generator's source and the
source of ``simulations.teacher_student`` (whose ``_g``, ``_gp`` and input generator the
kernel inlines — numba's own cache would not notice a change there). On a cache hit for a
built-in name neither sympy nor ``theory.rules`` is imported. Never edit a generated file.
The module is written by :func:`theory.emit.emit_module` and printed by its
:class:`theory.emit.NumbaPrinter` (the printer of every generator), with the cache key of
:func:`theory.cache.generated_path`.

Activations: the registry :mod:`theory.activations` feeds the ODEs and this kernel alike.
The built-in names keep their hand-tuned numba forms (``simulations.teacher_student._g``,
``_gp``, chosen by an integer code: one kernel per rule serves all five, bit for bit the
hand-written kernel); any other activation (``"user:<expr>"``, e.g. ``"z*(1 + tanh(z))/2"``
in a config) gets its own kernel module with ``_g``, ``_gp`` printed from its sympy
expression and derivative.

The Rule fields ``presynaptic`` (``x``, or ``x_tilde`` = ``x̃ = x − F e``), ``v_signal`` (the
second-layer signal ``s_k``, default ``g(lam)``) and the symbol ``lam_t`` (the second-pass
field ``λ̃_k = λ_k − e b_k``) cover exact PEPITA: the built-in ``pepita`` and
``pepita-forward`` are generated from their Rules like every other rule.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from theory.activation_names import ACTIVATIONS, is_user
from theory.cache import (
    digest_of,
    generated_path,
    load_module,
    module_name,
    source_fingerprint,
)

__all__ = [
    "SimRule",
    "resolve_rule",
    "load_kernel",
    "BUILTIN",
    "KERNEL_TEMPLATE",
    "resolve_activation",
    "activation_code",
]

#: bump when the generated code changes for the same inputs
KERNELGEN_VERSION = "1"

#: built-in rules and their feedback kind (no sympy needed to know these)
BUILTIN = {
    "bp": "v",
    "fa": "fixed",
    "afa": "adaptive",
    "pepita": "adaptive",
    "pepita-forward": "adaptive",
}


@dataclass(frozen=True)
class SimRule:
    """What the simulation needs to know about a rule.

    Attributes
    ----------
    name : str
        Display name (the Rule's name, or the built-in name).
    feedback : {"v", "fixed", "adaptive"}
    spec : str
        How the config named it: a built-in name, ``"file.py:name"``, or ``"<Rule>"``.
    rule : theory.rules.Rule or None
        The symbolic rule (None for a built-in name until it is needed).
    params : dict
        The rule's parameters and their defaults (sorted by name in the kernel's ``rp``).
    """

    name: str
    feedback: str
    spec: str
    rule: object = None
    params: dict = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.rule is None

    def describe(self) -> dict:
        """A JSON-able description (what a saved config records for a Rule object)."""
        d = {"name": self.name, "feedback": self.feedback, "spec": self.spec}
        if self.rule is not None:
            r = self.rule
            d.update(
                delta=str(r.delta),
                second_layer=r.second_layer,
                weight_decay=str(r.weight_decay),
                params=dict(r.params),
                presynaptic=getattr(r, "presynaptic", "x"),
                v_signal=str(getattr(r, "v_signal", None) or "g(lam)"),
            )
        return d


def resolve_rule(rule) -> SimRule:
    """A :class:`SimRule` from a built-in name, a :class:`theory.rules.Rule`, or
    ``"path/to/file.py:name"`` (a Rule defined in a user's Python file; a relative path is
    taken relative to the current directory — the command-line tools first make it
    relative to the config file, see :func:`simulations.teacher_student.rule_relative_to`).

    Raises
    ------
    ValueError
        Unknown name, a file that does not exist or does not define a Rule of that name.
    """
    if isinstance(rule, str):
        if rule in BUILTIN:
            return SimRule(rule, BUILTIN[rule], rule)
        if ":" in rule or rule.endswith(".py"):
            from theory.rules import load_rule

            r = load_rule(rule)
            return SimRule(r.name, r.feedback, rule, r, dict(r.params))
        raise ValueError(
            f"unknown rule {rule!r}; allowed: {', '.join(BUILTIN)}, ff, a "
            "theory.rules.Rule, or 'path/to/file.py:NAME' naming a Rule defined "
            "in a Python file"
        )
    rules_mod = sys.modules.get("theory.rules")  # a Rule exists only once it is imported
    if rules_mod is not None and isinstance(rule, rules_mod.Rule):
        return SimRule(rule.name, rule.feedback, "<Rule>", rule, dict(rule.params))
    raise ValueError(
        f"rule must be a name ({', '.join(BUILTIN)}), a theory.rules.Rule or "
        f"'file.py:NAME', got {type(rule).__name__} {rule!r}"
    )


# ======================================================================= the template
#: the fused loop; ``{...}`` fields are filled per rule by :func:`_source`
KERNEL_TEMPLATE = '''
@njit(cache=True, nogil=True, fastmath=_FM)
def run_block(act, n_steps, st, xb, w, w_star, v, v_star, F, b, eta, eta_v, sigma, rp, work):
    """Run ``n_steps`` online steps of rule {name!r} in place; allocation-free.

    Each step draws ``x ~ N(0, I_N)`` and then ``ζ ~ N(0, 1)`` from the stream ``st``
    (ζ always, even when ``sigma = 0``, so the input stream does not depend on ``sigma``),
    computes the fields and the error ``e = ŷ − y`` and applies the rule's update.

    The first-layer update of step t is applied lazily, fused with the forward pass of
    step t+1 (``w_k ← w_k − c_k p_t`` and ``λ_k = w_k·x_{{t+1}}/√N`` in one sweep over
    ``w_k``), which halves the memory traffic on ``w``; it is flushed before returning, so
    between calls the weights are exactly those after the steps done. ``v`` and ``b`` are
    updated at once (they are O(K) scalars).

    ``act``: activation code (``theory.observables.ACTIVATIONS``); ``st``: xoshiro256++
    state (advanced in place); ``xb`` (2, N): buffers for the current and previous input;
    ``w, v``: student weights (updated in place); ``w_star, v_star, F``: read only; ``b``:
    the feedback (fixed, or ``w F/√N`` maintained exactly for adaptive rules); ``rp``: the
    rule's parameters, sorted by name; ``work`` (6, max(K, M)): scratch, on return
    ``work[5, :K]`` holds ``|w_k|²/N``.

    Returns the number of steps completed: ``n_steps``, or the index t of the first step
    whose error ``e`` was not finite (the weights are then those after t steps).
    """
    N = xb.shape[1]
    K = w.shape[0]
    M = w_star.shape[0]
    inv_sqN = 1.0 / math.sqrt(N)
    lr_w = eta * inv_sqN          # first layer: η/√N
    lr_v = eta_v / N              # second layer: η_v/N
{params}
    keep = 1.0 - eta * ({decay}) / N     # weight decay: w ← (1 − η κ/N) w
    lam = work[0]
    ck = work[1]                  # pending update of w_k: −ck[k] x_prev (+ cek[k] F)
    cek = work[2]
    gk = work[3]
    zeta = work[4, :1]
    FF = _dot(F, F)
    if ADAPTIVE:
        for k in range(K):
            b[k] = _dot(w[k], F) * inv_sqN
    pending = False
    for t in range(n_steps):
        x = xb[t & 1]
        xo = xb[1 - (t & 1)]
        _fill_normal(st, x)
        _fill_normal(st, zeta)
        # first forward pass (and the pending update of the previous step)
        yhat = 0.0
        for k in range(K):
            wk = w[k]
            s = 0.0
            if not pending:
                s = _dot(wk, x)
            elif MODULATED:                               # p = x̃ = x − F e
                c, ce = ck[k], cek[k]
                for i in range(N):
                    wi = {wk_i} - (c * xo[i] - ce * F[i])
                    wk[i] = wi
                    s += wi * x[i]
            else:
                c = ck[k]
                for i in range(N):
                    wi = {wk_i} - c * xo[i]
                    wk[i] = wi
                    s += wi * x[i]
            lam[k] = s * inv_sqN
            yhat += v[k] * _g(lam[k], act)
        y = sigma * zeta[0]
        for m in range(M):
            y += v_star[m] * _g(_dot(w_star[m], x) * inv_sqN, act)
        e = yhat - y                                      # e = ŷ − y
        if not math.isfinite(e):
            return t
        xF = _dot(x, F) if ADAPTIVE else 0.0
        phi = xF * inv_sqN                                # φ = F·x/√N
        # d: Δw_k = −(η/√N) d p; sk: the signal in Δv_k = −(η_v/N) e sk
        for k in range(K):
            lam_k = lam[k]
            v_k = v[k]
            b_k = b[k]
{signal}
            gk[k] = sk
            ck[k] = lr_w * d
            cek[k] = ck[k] * e if MODULATED else 0.0
        for k in range(K):
            v[k] -= lr_v * e * gk[k]
            if MODULATED:
                b[k] = {b_k} - ck[k] * (xF - e * FF) * inv_sqN
            elif ADAPTIVE:
                b[k] = {b_k} - ck[k] * xF * inv_sqN
        pending = True
    if pending:                                           # flush the last update
        x = xb[(n_steps - 1) & 1]
        for k in range(K):
            wk = w[k]
            c, ce = ck[k], cek[k]
            if MODULATED:
                for i in range(N):
                    wk[i] = {wk_i} - (c * x[i] - ce * F[i])
            else:
                for i in range(N):
                    wk[i] = {wk_i} - c * x[i]
    for k in range(K):
        work[5, k] = _dot(w[k], w[k]) / N
    return n_steps


def warmup():
    """Compile (or load from numba's cache) before threads start."""
    run_block(0, 0, np.ones(4, np.uint64), np.zeros((2, 2)), np.zeros((1, 2)),
              np.zeros((1, 2)), np.zeros(1), np.zeros(1), np.zeros(2), np.zeros(1), 0.0, 0.0,
              0.0, np.zeros(max(1, NRP)), np.zeros((6, 1)))
'''


# ====================================================================== sympy → code
def _printer():
    """The one printer of theory.emit, with the kernel's names (``lam`` → ``lam_k``, ``g``
    → ``_g(·, act)``) and the hand-written kernel's factor order."""
    import sympy as sp

    from theory import rules as R
    from theory.emit import NumbaPrinter

    first = {R.v_k: 0, R.b_k: 1}

    def rank(f):
        if f in first:
            return first[f]
        if isinstance(f, sp.Function) or (f.is_Pow and isinstance(f.base, sp.Function)):
            return 2
        if f == R.e:
            return 3
        return 4

    class P(NumbaPrinter):
        def _print_Symbol(self, s):
            return {"lam": "lam_k"}.get(s.name, s.name)

        def _print_Function(self, f):
            name = type(f).__name__
            if name in ("g", "gp"):
                return f"_{name}({self._print(f.args[0])}, act)"
            return super()._print_Function(f)

        def _print_Mul(self, m):
            # factor order of the hand-written kernel: feedback × activation × error × rest
            c, rest = m.as_coeff_Mul()
            facs = sorted(sp.Mul.make_args(rest), key=rank)
            if any(f.is_Pow and f.exp.is_negative for f in facs) or len(facs) < 2:
                return super()._print_Mul(m)
            body = " * ".join(self.parenthesize(f, 50) for f in facs)  # below Mul: parens
            if c == 1:
                return body
            if c == -1:
                return f"-({body})"
            return f"{self._print(c)} * ({body})"

    return P()


def _rule_of(sim: SimRule):
    """The symbolic Rule behind ``sim`` (a built-in name's from ``theory.rules.RULES``)."""
    if sim.rule is not None:
        return sim.rule
    from theory.rules import RULES

    return RULES[sim.spec]


def _signal_code(sim: SimRule):
    """(code of the unit loop's signal, modulated presynaptic term?)

    Sets ``d`` (δ_k) and ``sk`` (the second-layer signal ``v_signal``, default g(λ_k); 0
    for a frozen second layer); ``lam_t`` (the second-pass field λ̃_k = λ_k − e b_k) is
    computed when the rule uses it.
    """
    rule = _rule_of(sim)
    import sympy as sp

    from theory import rules as R

    pr = _printer()
    lines = []
    v_signal = getattr(rule, "v_signal", None)
    v_signal = R.g(R.lam) if v_signal is None else v_signal
    used = set(rule.delta.free_symbols) | set(sp.sympify(v_signal).free_symbols)
    if "lam_t" in {str(x) for x in used}:
        lines.append("lam_t = lam_k - e * b_k         # second pass λ̃ = λ − e b")
    lines.append(f"d = {pr.doprint(rule.delta)}")
    lines.append(f"sk = {pr.doprint(v_signal) if rule.second_layer == 'sgd' else '0.0'}")
    return "\n".join(lines), getattr(rule, "presynaptic", "x") == "x_tilde"


def _decay_code(sim: SimRule) -> str:
    rule = _rule_of(sim)
    if rule.weight_decay == 0:
        return "0.0"
    return _printer().doprint(rule.weight_decay)


def activation_functions(activation: str) -> tuple:
    """(import lines, generated function sources) that give the kernel ``_g(z, act)`` and
    ``_gp(z, act)``.

    The activation registry (:mod:`theory.activations`) feeds both the ODEs and this
    kernel. A built-in name keeps the registry's hand-tuned numba form
    (:mod:`theory.activation_kernels`, selected by the integer code ``act``, bit for bit
    the hand-written kernel's); any other activation is printed from its sympy expression
    ``g(z)`` and ``g'(z)`` (``act`` is then ignored)."""
    if not is_user(activation):
        return [
            "from theory.activation_kernels import g as _g",
            "from theory.activation_kernels import gp as _gp",
        ], []
    import sympy as sp

    from theory.activations import get_activation, z
    from theory.emit import NumbaPrinter

    act = get_activation(activation)
    P = NumbaPrinter()
    zz = sp.Symbol("z_", real=True)
    out = []
    for name, ex, doc in (
        ("_g", act.expr, f"g(z) = {act.expr}"),
        ("_gp", act.deriv, f"g'(z) = {act.deriv}"),
    ):
        out.append(
            '@njit(cache=True, nogil=True, inline="always", fastmath=_FM)\n'
            f'def {name}(z_, act):\n    """{doc}"""\n'
            f"    return {P.doprint(ex.xreplace({z: zz}))}\n"
        )
    return [], out


def _source(sim: SimRule, digest: str, activation: str = "erf") -> str:
    from theory.emit import emit_module

    signal, modulated = _signal_code(sim)
    decay = _decay_code(sim)
    has_decay = decay != "0.0"
    params = sorted(sim.params)
    fill = dict(
        name=sim.name,
        params="\n".join(f"    {p} = rp[{i}]" for i, p in enumerate(params)) or "    pass",
        decay=decay,
        signal="\n".join("            " + ln for ln in signal.splitlines()),
        # without decay the update is exactly the hand-written one (w − c x, no extra
        # multiply that FMA contraction could round differently)
        wk_i="wk[i] * keep" if has_decay else "wk[i]",
        b_k="b[k] * keep" if has_decay else "b[k]",
    )
    comments = [f"rule {sim.name!r} ({sim.spec})"]
    if sim.rule is not None:
        comments.append(
            f"delta = {sim.rule.delta}; feedback = {sim.feedback}; "
            f"second_layer = {sim.rule.second_layer}; weight_decay = "
            f"{sim.rule.weight_decay}"
        )
    if is_user(activation):
        comments.append(f"activation {activation}")
    imports, functions = activation_functions(activation)
    return emit_module(
        generator="simulations.kernelgen",
        version=KERNELGEN_VERSION,
        key=digest,
        comments=comments,
        imports=["from simulations.teacher_student import _FM, _dot, _fill_normal", *imports],
        constants={
            "ADAPTIVE": sim.feedback == "adaptive",
            "MODULATED": bool(modulated),
            "NRP": len(params),
            "PARAMS": tuple(params),
        },
        functions=functions,
        after=[KERNEL_TEMPLATE.format(**fill)],
    )


def resolve_activation(spec) -> str:
    """The canonical name of an activation for the simulations: a built-in name (checked
    without sympy), or ``"user:<expr>"`` for an expression of z (a sympy expression, or a
    string read by the safe parser of :mod:`theory.activations`).

    Raises ValueError naming the built-in names and the expression grammar."""
    if isinstance(spec, str) and spec in ACTIVATIONS:
        return spec
    from theory.activations import get_activation

    return get_activation(spec).name


def activation_code(name: str) -> int:
    """The integer code of a built-in activation in the kernel (its index in
    ``ACTIVATIONS``); -1 for a user activation (its kernel ignores the code)."""
    return -1 if is_user(name) else ACTIVATIONS.index(name)


# ============================================================================ the cache
@cache
def _fingerprint() -> str:
    """Hash of the sources that shape the generated kernel (see the module docstring)."""
    here = Path(__file__).parent
    return source_fingerprint(
        (
            str(here / "kernelgen.py"),
            str(here / "teacher_student.py"),
            "rules.py",
            "emit.py",
            "activations.py",
            "activation_kernels.py",
        )
    )


_KERNELS: dict = {}
_LOCK = threading.Lock()


def load_kernel(sim: SimRule, activation: str = "erf"):
    """The compiled ``run_block`` of a rule (generated, or found in the cache, and warmed
    up); one module per rule (and per user activation) and process. ``activation``: a
    canonical name (:func:`resolve_activation`); the built-ins share one module."""
    key = sim.spec if sim.builtin else sim.rule.key
    parts = [key]
    if is_user(activation):
        import sympy as sp

        from theory.activations import get_activation

        act = get_activation(activation)
        parts += [act.key, sp.srepr(act.expr)]
    with _LOCK:
        if tuple(parts) in _KERNELS:
            return _KERNELS[tuple(parts)]
        label = sim.name + (f"_{parts[1]}" if len(parts) > 1 else "")
        path = generated_path("simkernel", KERNELGEN_VERSION, _fingerprint(), *parts, label=label)
        digest = digest_of(path)
        # written with a content hash, verified, repaired if corrupt (theory.cache)
        mod, _ = load_module(
            path,
            lambda: _source(sim, digest, activation),
            module_name(path),
            lambda m: m.warmup(),
            required=("run_block", "warmup"),
        )
        _KERNELS[tuple(parts)] = mod
        return mod


def params_vector(sim: SimRule, overrides=None):
    """The kernel's ``rp``: the rule's parameters (defaults updated by ``overrides``), sorted
    by name. Raises ValueError for a parameter the rule does not have."""
    import numpy as np

    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(sim.params))
    if unknown:
        raise ValueError(
            f"unknown rule_params {unknown} for rule {sim.name!r}; it has "
            f"{sorted(sim.params) or 'none'}"
        )
    vals = {**sim.params, **overrides}
    rp = np.array([float(vals[p]) for p in sorted(vals)], dtype=float)
    return rp if rp.size else np.zeros(1)
