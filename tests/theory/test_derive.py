"""The derived, generated right-hand sides against the hand-written formulas of docs/theory.md
§4 and §5 (theory.reference), at random valid states."""

import numpy as np
import pytest
import sympy as sp
from theory_helpers import random_state

from theory import reference
from theory.codegen import build_system
from theory.derive import derive
from theory.observables import eps_g_of
from theory.rules import Rule, b_k, e, gp, lam, v_k

SIZES = [(1, 1), (2, 2), (3, 2), (2, 4), (5, 5)]
N_STATES = 100


@pytest.mark.parametrize("activation", ["erf", "linear"])
@pytest.mark.parametrize("K,M", SIZES)
@pytest.mark.parametrize("rule", ["bp", "fa", "afa"])
def test_rhs_matches_hand_formulas(rule, K, M, activation):
    sys_ = build_system(rule, K, M, activation)
    rng = np.random.default_rng(hash((rule, K, M, activation)) % 2**32)
    worst = 0.0
    for _ in range(N_STATES):
        st = random_state(K, M, rng)
        eta, eta_v, sigma = rng.uniform(0.1, 2.0), rng.uniform(0.1, 2.0), rng.uniform(0, 0.5)
        got = sys_.evaluate(st, eta, eta_v, sigma)
        ref = reference.rhs(st, rule, eta, eta_v, sigma, activation)
        for name in ref:
            worst = max(
                worst, np.max(np.abs(got[name] - ref[name]) / np.maximum(1.0, np.abs(ref[name])))
            )
        assert abs(sys_.eps_g(st) - eps_g_of(st, activation)) < 1e-10
        if rule == "afa":
            S = sys_.noise_covariance(st, eta, eta_v, sigma)
            Sref = reference.noise_covariance(st, eta, sigma, activation)
            assert np.allclose(S, Sref, rtol=1e-10, atol=1e-10)
    assert worst < 1e-10


def test_derivation_is_index_generic():
    """One template per kind of term: BP's dQ has exactly the I3, J2 and I4 terms of
    docs/theory.md §4, whatever K and M (they never enter the derivation)."""
    d = derive("bp", "erf")
    assert sorted(t.template for t in d.dQ) == ["I3", "I3", "I4", "J2"]
    assert [len(t.dummies) for t in d.dQ if t.template == "I4"] == [2]
    assert sorted(t.template for t in d.dR) == ["I3"]


def test_generated_source_does_not_grow_with_K():
    small = build_system("afa", 2, 2).source_path.read_text().count("\n")
    big = build_system("afa", 10, 10).source_path.read_text().count("\n")
    assert big == small


def test_weight_decay_rule():
    """A user rule: BP plus weight decay −(ηκ/N) w adds −ηκ R to dR and −2ηκ Q to dQ."""
    kappa = sp.Symbol("kappa")
    rule = Rule("bp-decay", delta=v_k * gp(lam) * e, weight_decay=kappa, params={"kappa": 0.3})
    rng = np.random.default_rng(1)
    st = random_state(2, 3, rng, adaptive=False)
    sys_ = build_system(rule, 2, 3)
    got = sys_.evaluate(st, 0.7, 0.4, 0.1, kappa=0.25)
    ref = reference.rhs(st, "bp", 0.7, 0.4, 0.1)
    assert np.allclose(got["R"], ref["R"] - 0.7 * 0.25 * st.R, atol=1e-12)
    assert np.allclose(got["Q"], ref["Q"] - 2 * 0.7 * 0.25 * st.Q, atol=1e-12)
    assert np.allclose(got["v"], ref["v"], atol=1e-12)


def test_mixed_feedback_rule_is_linear_combination():
    """δ = (v_k + b_k) g'(λ) e: dR is the sum of the BP and FA drifts (first order in η)."""
    rule = Rule("mixed", delta=(v_k + b_k) * gp(lam) * e, feedback="fixed")
    rng = np.random.default_rng(2)
    st = random_state(3, 2, rng, adaptive=False)
    got = build_system(rule, 3, 2).evaluate(st, 0.5, 0.5, 0.0)
    bp = reference.rhs(st, "bp", 0.5, 0.5)
    fa = reference.rhs(st, "fa", 0.5, 0.5)
    assert np.allclose(got["R"], bp["R"] + fa["R"], atol=1e-12)
    assert np.allclose(got["v"], bp["v"], atol=1e-12)


def test_unsupported_rule_reports_which_average():
    """E[g'(λ) ν] alone (no g) is not one of I2, I3, I4, J2 and cannot be reduced further."""
    rule = Rule("odd", delta=gp(lam) * gp(lam), feedback="v")
    with pytest.raises(NotImplementedError, match="not one of the supported"):
        derive(rule, "erf")
