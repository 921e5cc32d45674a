"""The deep simulation kernel of a rule: built-in, or generated from a user's deep rule.

A built-in rule (bp, fa, dfa, afa, pepita, pepita-forward, pepita-hebbian) runs the
hand-written :mod:`simulations.deep_kernel`. A user's
:class:`theory.deep_rules.DeepRule` (docs/deep.md, "A user's deep rule") gets its own copy
of that module, generated with the rule's signal printed as ``_user_delta`` (the one name
in the kernel's ``# >>> generated`` block), so the step loop, the Monte Carlo observables
and the input stream are exactly the built-in ones: a rule restating ``bp`` reproduces
bp's trajectories to round-off.

Caching as :mod:`simulations.kernelgen`: the module ``deepsim_<name>_<digest>.py`` in the
generated-code cache, keyed by the rule's mathematics and the sources it is made of. A
built-in name imports neither sympy nor :mod:`theory.deep_rules`.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from theory.cache import digest_of, generated_path, load_module, module_name, source_fingerprint

from . import deep_kernel

__all__ = ["DeepSimRule", "resolve_deep_rule", "DEEPGEN_VERSION"]

DEEPGEN_VERSION = "1"
_ADAPTIVE = ("afa", "pepita", "pepita-forward", "pepita-hebbian")


@dataclass(frozen=True)
class DeepSimRule:
    """What a deep simulation needs to know about its rule.

    Attributes
    ----------
    name : str
        The built-in name or the DeepRule's name.
    code : int
        The kernel's rule code (:data:`simulations.deep_kernel.RULE_CODES` / ``USER_CODES``).
    user : theory.deep_rules.DeepRule or None
    params : dict
        A user rule's parameters and their defaults.
    """

    name: str
    code: int
    user: object = None
    params: dict = field(default_factory=dict)

    @property
    def adaptive(self) -> bool:
        """b = W₁F/√N is the feedback (afa, pepita*)."""
        return self.user is None and self.name in _ADAPTIVE

    @property
    def fixed_chain(self) -> bool:
        """Fixed b and B carry the signal: fa, user rules with feedback "fixed"."""
        return self.code in (deep_kernel.RULE_CODES["fa"], deep_kernel.USER_CODES["fixed"])

    @property
    def direct(self) -> bool:
        """Fixed vectors d_ℓ carry the error: dfa, user rules with feedback "direct"."""
        return self.code in (deep_kernel.RULE_CODES["dfa"], deep_kernel.USER_CODES["direct"])

    def kernel(self):
        """The module with ``deep_block`` and ``mc_block`` for this rule."""
        return deep_kernel if self.user is None else _load(self.user)

    def rp(self, overrides=None) -> np.ndarray:
        """The kernel's ``rp``: parameters (defaults updated by ``overrides``) sorted by
        name. ValueError for a parameter the rule does not have or a non-number."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ValueError(
                f"unknown rule_params {unknown} for deep rule {self.name!r}; it has "
                f"{sorted(self.params) or 'none'}"
            )
        vals = {**self.params, **overrides}
        for k, val in vals.items():
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not np.isfinite(val):
                raise ValueError(f"rule_params[{k!r}] must be a finite number, got {val!r}")
        rp = np.array([float(vals[k]) for k in sorted(vals)], dtype=float)
        return rp if rp.size else np.zeros(1)

    def describe(self):
        """The rule as a saved config records it (a name, or the DeepRule's fields)."""
        return self.name if self.user is None else self.user.describe()


def resolve_deep_rule(rule) -> DeepSimRule:
    """A :class:`DeepSimRule` from a built-in name, a ``theory.deep_rules.DeepRule`` or
    ``"path/to/file.py:NAME"`` naming one (relative: from the current directory; the
    commands first make it relative to the config file). ValueError naming what is allowed."""
    if isinstance(rule, str) and rule in deep_kernel.RULE_CODES:
        return DeepSimRule(rule, deep_kernel.RULE_CODES[rule])
    user = None
    if isinstance(rule, str) and (":" in rule or rule.endswith(".py")):
        from theory.deep_rules import load_deep_rule

        user = load_deep_rule(rule)
    mod = sys.modules.get("theory.deep_rules")  # a DeepRule exists only once it is imported
    if user is None and mod is not None and isinstance(rule, mod.DeepRule):
        user = rule
    if user is None:
        raise ValueError(
            f"unknown rule {rule!r} for a deep student (widths given); allowed: "
            f"{', '.join(deep_kernel.RULE_CODES)}, a theory.deep_rules.DeepRule or "
            "'path/to/file.py:NAME' naming one"
        )
    return DeepSimRule(user.name, deep_kernel.USER_CODES[user.feedback], user, dict(user.params))


def _source(user, digest: str) -> str:
    from theory.deep_rules import delta_source
    from theory.emit import emit_module, include

    return emit_module(
        generator="simulations.deep_kernelgen",
        version=DEEPGEN_VERSION,
        key=digest,
        comments=[f"a user deep rule's delta = {user.delta} (any name, feedback kind)"],
        imports=["from simulations.teacher_student import _dot, _fill_normal, _g, _gp"],
        functions=[delta_source(user, act_arg=True)],
        after=[f"# ---- included from simulations/deep_kernel.py\n{include(deep_kernel.__file__)}"],
    )


_KERNELS: dict = {}
_LOCK = threading.Lock()


def _load(user):
    """The generated, compiled (warmed up) kernel module of a user's deep rule."""
    with _LOCK:
        if user.code_key in _KERNELS:
            return _KERNELS[user.code_key]
        here = Path(__file__).parent
        fingerprint = source_fingerprint(
            (
                str(here / "deep_kernelgen.py"),
                str(here / "deep_kernel.py"),
                str(here / "teacher_student.py"),
                "deep_rules.py",
                "emit.py",
            )
        )
        # keyed by the code (δ, parameter names): rules differing in name or feedback share it
        path = generated_path("deepsim", DEEPGEN_VERSION, fingerprint, user.code_key, label="user")
        digest = digest_of(path)
        mod, _ = load_module(
            path,
            lambda: _source(user, digest),
            module_name(path),
            lambda m: m.warmup(),
            required=("deep_block", "mc_block", "warmup"),
        )
        _KERNELS[user.code_key] = mod
        return mod
