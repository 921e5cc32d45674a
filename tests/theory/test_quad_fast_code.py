"""The per-node code of the full-field quadrature kernels (theory.quad_expr.field_code,
unit_code): every transcendental of a field evaluated once per node, and the right-hand
sides unchanged — to round-off — against the golden values the code before the rewrite
produced (tests/theory/quad_golden.py, data/quad_rhs_golden.npz)."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from quad_golden import DATA, N_NODES, cases, evaluate, state

from theory.activations import get_activation, z
from theory.codegen_quad import quad_source
from theory.quad_expr import shared_form
from theory.quadrature import make_rule
from theory.rules import get_rule

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from quad_numpy import NumpyQuad  # noqa: E402

#: relative to the largest entry of each golden vector: the rewrite changes the order of
#: floating-point operations (1 − tanh² for sech², shared subexpressions) and nothing else
RTOL = 1e-12


def _node_loop(rule, act):
    src = quad_source(get_rule(rule), get_activation(act), "test")
    body = src[src.index("def _integrate") :]
    return body[body.index("for q0 in range(0, P, NODE_BLOCK):") : body.index("if mode == 1:")]


@pytest.mark.parametrize(
    "rule, act, fn, calls",
    [
        # first pass: one call per field; second pass (λ̃ = λ − e b): one per student
        ("pepita", "tanh", "_tanh(", 2),
        ("pepita", "erf", "math.erf(", 2),
        ("pepita", "erf", "math.exp(", 2),
        ("pepita-forward", "sigmoid", "_tanh(", 2),
        # no second pass: g, g', g'' of λ_k all from the first pass's one call
        ("afa", "tanh", "_tanh(", 1),
        ("bp", "tanh", "_tanh(", 1),
        ("fa", "erf", "math.exp(", 1),
    ],
)
def test_each_transcendental_is_called_once_per_field(rule, act, fn, calls):
    loop = _node_loop(rule, act)
    assert loop.count(fn) == calls
    assert "cosh" not in loop and "sinh" not in loop and "math.tanh" not in loop


def test_fast_tanh_is_tanh_to_a_few_ulp():
    from theory.field_kernels import _tanh

    x = np.concatenate([[0.0, -0.0, 1e-300, 1e-12, 0.4999, 0.5, 0.5001, 20.0, 400.0]])
    x = np.concatenate([x, -x, np.random.default_rng(0).normal(size=2000) * 3])
    got = np.array([_tanh(v) for v in x])
    want = np.tanh(x)
    assert np.all(np.abs(got - want) <= 4 * np.spacing(np.abs(want)) + 1e-320)
    assert _tanh(np.inf) == 1.0 and _tanh(-np.inf) == -1.0 and np.isnan(_tanh(np.nan))


def test_shared_form_is_the_same_function():
    for name in ("tanh", "sigmoid"):
        d = get_activation(name).deriv
        s = shared_form(d)
        assert s != d and "cosh" not in str(s)
        xs = np.linspace(-4, 4, 17)
        a = np.array([float(d.subs(z, x)) for x in xs])
        b = np.array([float(s.subs(z, x)) for x in xs])
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=0)


def _check(key, rule, act, K, M, sigma):
    gold = np.load(DATA)
    dy, eg, S = evaluate(rule, act, K, M, sigma)
    # an independent oracle too: NumPy at the same nodes, from lambdify of g and g'
    if not (rule == "afa" and act == "relu"):  # (that one goes through Stein's lemma)
        nq = NumpyQuad(rule, act)
        st = state(K, M, 10 * K + M)
        if nq.rule.feedback != "adaptive":
            st = st.replace(c=None, sigma_F2=None, F_norm2=None)
        qr = make_rule(K + M + (sigma > 0), "sobol", N_NODES, 0)
        ref_np = nq.rhs(st, 0.7, 0.4, sigma, qr.nodes, qr.weights)
        assert np.max(np.abs(dy - ref_np)) <= RTOL * np.max(np.abs(ref_np)), key
    ref = gold[key + "|rhs"]
    assert np.max(np.abs(dy - ref)) <= RTOL * np.max(np.abs(ref)), key
    assert abs(eg - gold[key + "|eg"][0]) <= RTOL * abs(gold[key + "|eg"][0]), key
    if S is not None:
        refS = gold[key + "|noise"]
        assert np.max(np.abs(S - refS)) <= RTOL * np.max(np.abs(refS)), key


#: the default job's golden cases: PEPITA's two passes (λ, then λ̃ = λ − e b) with the fast
#: tanh, ~11 s cold per rule and activation (each its own generated system); every other
#: case, afa|sigmoid and pepita-forward|erf among them, runs in the slow job's
#: test_rhs_equals_the_code_before_all
_FAST = {"pepita|tanh"}


@pytest.mark.parametrize(
    "case", [c for c in cases() if re.match(r"[^|]+\|[^|]+", c[0])[0] in _FAST], ids=lambda c: c[0]
)
def test_rhs_equals_the_code_before(case):
    _check(*case)


@pytest.mark.slow
@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_rhs_equals_the_code_before_all(case):
    _check(*case)
