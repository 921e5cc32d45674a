"""A user's deep rule (theory.deep_rules): restating bp/fa/dfa gives the built-in ODEs, a new
rule agrees with a plain-numpy Monte Carlo of its weight-space updates, bad rules are
refused with a clear message."""

import numpy as np
import pytest
import sympy as sp
from test_deep_mc import _forward, g, gp, make_state

from theory.deep import build_deep_system
from theory.deep_rules import DeepRule, a, f, load_deep_rule
from theory.deep_rules import gp as GP

SOBOL = {"scheme": "sobol", "n": 1 << 14}
BETA = sp.Symbol("beta", real=True)
#: backprop with its top-down message squashed: δ = g'(a) tanh(β f)/β (β → 0: bp)
CLIPPED = DeepRule("clipped-bp", delta=GP(a) * sp.tanh(BETA * f) / BETA, params={"beta": 2.0})


def _flat(d):
    return np.concatenate([d["Q"].ravel(), d["R"].ravel(), d["v"]] + [w.ravel() for w in d["W"]])


@pytest.mark.parametrize(
    "builtin, feedback",
    [
        # ~25 s cold (two deep modules); fa and dfa restate the other feedback kinds and
        # keep the check in the default suite
        pytest.param("bp", "v", marks=pytest.mark.slow),
        ("fa", "fixed"),
        ("dfa", "direct"),
    ],
)
def test_restated_rules_give_the_builtin_rhs(builtin, feedback):
    """δ = g'(a) f with each feedback kind is bp, fa, dfa: the same quadrature nodes, so
    the right-hand sides agree to round-off (1e-12: sums of ~16k node terms of O(1), the
    only difference the order of two multiplications per node)."""
    widths = [2, 3, 2]
    st = make_state(widths, 2)
    if builtin == "fa":
        st = st.replace(b=np.linspace(-0.8, 1.1, widths[-1]))
    user = DeepRule(f"my-{builtin}", delta=GP(a) * f, feedback=feedback)
    ref = build_deep_system(builtin, widths, 2, "erf", SOBOL)
    mine = build_deep_system(user, widths, 2, "erf", SOBOL)
    kw = dict(eta=0.7, eta_v=0.5, sigma=0.2, eta_W=0.3)
    x, y = _flat(ref.evaluate(st, **kw)), _flat(mine.evaluate(st, **kw))
    assert np.max(np.abs(x)) > 1e-2  # a real right-hand side, not zeros
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)
    ox = ref.observables(ref.layout.pack(st), ref.params(st, 0.5))
    oy = mine.observables(mine.layout.pack(st), mine.params(st, 0.5))
    np.testing.assert_allclose(oy["cos_delta"], ox["cos_delta"], atol=1e-12)


def mc_user_rhs(delta, st, eta, eta_v, eta_W, sigma, n, chunk=250_000, seed=0):
    """Monte Carlo mean and standard error of (dQ upper triangle, dR, dv, dW) for a
    feedback-"v" rule δ_ℓ = delta(a_ℓ, f_ℓ, e), written from the weight-space updates:
    Δw_k = −(η/√N) δ₁ₖ x, ΔW[i] = −(η_W/N) δ_{i+2} ⊗ h_{i+1}, Δv = −(η_v/N) e h_{L−1}."""
    rng = np.random.default_rng(seed)
    K, M, W, v = st.K, st.M, list(st.W), st.v
    Lc = np.linalg.cholesky(st.field_covariance())
    iu = np.triu_indices(K)
    s1 = s2 = 0.0
    done = 0
    while done < n:
        m = min(chunk, n - done)
        z = rng.standard_normal((m, K + M)) @ Lc.T
        lam, nu = z[:, :K], z[:, K:]
        hs = _forward(lam, W)
        pre = [lam] + [hs[i] @ W[i].T for i in range(len(W))]
        e_ = hs[-1] @ v - g(nu) @ st.v_star - sigma * rng.standard_normal(m)
        H = len(hs)
        dl = [None] * H
        dl[-1] = delta(pre[-1], v * e_[:, None], e_[:, None])
        for i in range(H - 2, -1, -1):
            dl[i] = delta(pre[i], dl[i + 1] @ W[i], e_[:, None])
        d1 = dl[0]
        dQ = -eta * (d1[:, :, None] * lam[:, None, :] + lam[:, :, None] * d1[:, None, :])
        dQ += eta**2 * d1[:, :, None] * d1[:, None, :]
        dR = -eta * d1[:, :, None] * nu[:, None, :]
        parts = [dQ[:, iu[0], iu[1]], dR.reshape(m, -1), -eta_v * e_[:, None] * hs[-1]]
        for i in range(len(W)):
            parts.append(-eta_W * (dl[i + 1][:, :, None] * hs[i][:, None, :]).reshape(m, -1))
        fx = np.concatenate(parts, axis=1)
        s1 = s1 + fx.sum(0)
        s2 = s2 + (fx * fx).sum(0)
        done += m
    mean = s1 / n
    return mean, np.sqrt(np.maximum(s2 / n - mean**2, 0.0) / n)


@pytest.mark.slow  # ~25 s warm (2¹⁷ nodes, 2×10⁶ samples); its own module: ~70 s to compile
def test_new_rule_matches_monte_carlo():
    """A rule that is not built in (clipped backprop, β = 2 and a rule_params override
    β = 3) at L = 3 against 10⁶ Monte Carlo samples: every component within 3 standard
    errors (fixed seed; the quadrature's own error, 2¹⁷ Sobol points, is ≲ 1e-4 of the
    components (test_deep_mc.py measures it), far below the SE ~ 1e-3)."""
    widths = [2, 3]
    st = make_state(widths, 2)
    eta, eta_v, eta_W, sigma = 0.7, 0.5, 0.3, 0.2
    system = build_deep_system(CLIPPED, widths, 2, "erf", {"scheme": "sobol", "n": 1 << 17})
    for beta in (2.0, 3.0):
        got = _flat(system.evaluate(st, eta, eta_v, sigma, eta_W=eta_W, beta=beta))
        iu = np.triu_indices(st.K)
        n = st.K
        got = np.concatenate([got[: n * n].reshape(n, n)[iu], got[n * n :]])
        mean, se = mc_user_rhs(
            lambda a_, f_, e_, b=beta: gp(a_) * np.tanh(b * f_) / b,
            st, eta, eta_v, eta_W, sigma, 1_000_000,
        )  # fmt: skip
        zsc = np.abs(got - mean) / se
        print(f"beta={beta}: max |ODE − MC|/SE = {np.max(zsc):.2f} over {len(zsc)} components")
        assert np.max(zsc) < 3.0, (beta, np.max(zsc), got, mean)
    # the rule differs from bp here (else the test would not tell them apart)
    bp = _flat(build_deep_system("bp", widths, 2, "erf", SOBOL).evaluate(st, eta, eta_v, sigma))
    assert np.max(np.abs(bp - _flat(system.evaluate(st, eta, eta_v, sigma)))) > 1e-2


def test_bad_rules_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"feedback must be one of v, fixed, direct, got 'x'"):
        DeepRule("r", GP(a) * f, feedback="x")
    with pytest.raises(ValueError, match=r"unknown symbols \['lam'\]"):
        DeepRule("r", GP(a) * sp.Symbol("lam"))
    with pytest.raises(ValueError, match=r"parameter names \['eta'\] are reserved"):
        DeepRule("r", GP(a) * f, params={"eta": 1.0})
    st = make_state([2, 3], 2)
    system = build_deep_system(CLIPPED, [2, 3], 2, "erf", SOBOL)
    with pytest.raises(ValueError, match=r"unknown rule_params \['gamma'\].*\['beta'\]"):
        system.params(st, 0.5, gamma=1.0)
    with pytest.raises(ValueError, match=r"unknown rule_params \['beta'\].*'bp'; it has none"):
        build_deep_system("bp", [2, 3], 2, "erf", SOBOL).params(st, 0.5, beta=1.0)
    path = tmp_path / "rules.py"
    path.write_text(
        "from theory.deep_rules import DeepRule, a, f, gp\n"
        "from theory.rules import Rule, lam, e, v_k\n"
        "anti = DeepRule('anti', delta=-gp(a) * f, feedback='fixed')\n"
        "two = Rule('two', delta=v_k * e)\n"
    )
    assert load_deep_rule(f"{path}:anti").feedback == "fixed"
    with pytest.raises(ValueError, match=r"defines 'two' as a Rule.*DeepRules it defines: anti"):
        load_deep_rule(f"{path}:two")
    with pytest.raises(ValueError, match=r"has no deep form"):
        build_deep_system("nope", [2], 2)
