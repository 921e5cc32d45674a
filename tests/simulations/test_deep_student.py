"""Deep student simulations (issue 20): the numba kernel against a plain-numpy oracle of
docs/deep.md step by step, widths = [K] against the two-layer simulation, the Monte Carlo
observables against closed forms, config checks, the dispatch and the file round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import erf

from simulations import deep_kernel
from simulations.deep_observables import deep_observables, field_normals, mc_observables
from simulations.deep_student import (
    DEEP_RULES,
    DeepSimulationResult,
    initial_deep_weights,
    simulate,
    validate_config,
)
from simulations.teacher_student import standard_normal
from theory.observables import eps_g


# ================================================================== plain-numpy oracle
def g(z):
    return erf(z / math.sqrt(2))


def gp(z):
    return math.sqrt(2 / math.pi) * np.exp(-0.5 * z * z)


def oracle_step(rule, x, zeta, P, eta, eta_v, eta_W, sigma):
    """One online step of docs/deep.md, written from the equations with
    unpadded matrices; ``P`` holds w, w_star, v, v_star, F, W (list), fb_b, B, d."""
    w, W, v = P["w"], P["W"], P["v"]
    N = x.shape[0]
    sq = math.sqrt(N)
    lam = w @ x / sq
    a, h = [lam], [g(lam)]
    for Wl in W:
        a.append(Wl @ h[-1])
        h.append(g(a[-1]))
    yhat = v @ h[-1]
    y = P["v_star"] @ g(P["w_star"] @ x / sq) + sigma * zeta
    e = yhat - y
    L1 = len(a)
    pre_x = x
    if rule in ("bp", "fa"):
        top = v if rule == "bp" else P["fb_b"]
        dl = [None] * L1
        dl[-1] = gp(a[-1]) * top * e
        for l in range(L1 - 2, -1, -1):
            back = W[l].T if rule == "bp" else P["B"][l]
            dl[l] = gp(a[l]) * (back @ dl[l + 1])
        dW = [np.outer(dl[l + 1], h[l]) for l in range(L1 - 1)]
        dv = e * h[-1]
    elif rule == "dfa":
        dl = [gp(a[l]) * P["d"][l] * e for l in range(L1)]
        dW = [np.outer(dl[l + 1], h[l]) for l in range(L1 - 1)]
        dv = e * h[-1]
    elif rule == "afa":
        b = w @ P["F"] / sq
        dl = [gp(lam) * b * e]
        for l in range(L1 - 1):
            dl.append(gp(a[l + 1]) * (W[l] @ dl[-1]))
        dW = [np.outer(dl[l + 1], h[l]) for l in range(L1 - 1)]
        dv = e * h[-1]
    else:  # the second pass on the modulated input x̃ = x − F e
        xt = x - P["F"] * e
        ht = [g(w @ xt / sq)]
        for Wl in W:
            ht.append(g(Wl @ ht[-1]))
        dl = [h[l] - ht[l] for l in range(L1)]
        if rule == "pepita-hebbian":
            dW = [np.outer(h[l + 1], h[l]) - np.outer(ht[l + 1], ht[l]) for l in range(L1 - 1)]
            dv = yhat * h[-1] - y * ht[-1]
        else:
            dW = [np.outer(dl[l + 1], ht[l]) for l in range(L1 - 1)]
            dv = e * ht[-1]
        if rule == "pepita":
            pre_x = xt
    if rule == "pepita-hebbian":  # ΔW₁ = h₁ ⊗ x − h̃₁ ⊗ x̃
        P["w"] = w - eta / sq * (np.outer(h[0], x) - np.outer(ht[0], xt))
    else:
        P["w"] = w - eta / sq * np.outer(dl[0], pre_x)
    P["W"] = [W[l] - eta_W / N * dW[l] for l in range(L1 - 1)]
    P["v"] = v - eta_v / N * dv


def _cfg(rule, widths, N=40, **kw):
    c = dict(rule=rule, N=N, alpha_max=1.0, widths=widths, M=2, eta=1.3, eta_v=0.9,
             eta_W=0.7, sigma=0.2, sigma_F=0.4, mc_fields=1000, seeds=1)  # fmt: skip
    c.update(kw)
    return validate_config(c)


@pytest.mark.parametrize("rule", DEEP_RULES)
@pytest.mark.parametrize("widths", [[3], [3, 2], [2, 4, 3]])
def test_kernel_equals_numpy_oracle_step_by_step(rule, widths):
    cfg = _cfg(rule, widths)
    N = cfg["N"]
    Wt = initial_deep_weights(cfg, 0)
    P = dict(w=Wt.w.copy(), w_star=Wt.w_star.copy(), v=Wt.v.copy(), v_star=Wt.v_star.copy(),
             F=Wt.F.copy(), W=Wt.W(), fb_b=Wt.fb_b.copy(), B=Wt.B(), d=Wt.d())  # fmt: skip
    st = np.array([11, 22, 33, 44], dtype=np.uint64)
    st_oracle = st.copy()
    xb = np.empty((2, N))
    Km, nl = max(widths), len(widths)
    lay, work = np.zeros((4, nl, Km)), np.zeros((6, max(Km, 2, widths[0])))
    code, args = deep_kernel.RULE_CODES[rule], (cfg["eta"], cfg["eta_v"], cfg["eta_W"], 0.2)
    # two calls (3 then 4 steps): the pending first-layer update is flushed and resumed
    for n in (3, 4):
        done = deep_kernel.deep_block(
            code, 0, n, st, xb, Wt.w, Wt.w_star, Wt.v, Wt.v_star, Wt.F, Wt.b1, Wt.widths,
            Wt.Wr, Wt.fb_b, Wt.fB, Wt.fd, *args, lay, work, np.zeros(1),
        )  # fmt: skip
        assert done == n
        for _ in range(n):
            x = standard_normal(st_oracle, N)
            zeta = standard_normal(st_oracle, 1)[0]
            oracle_step(rule, x, zeta, P, *args)
        np.testing.assert_allclose(Wt.w, P["w"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(Wt.v, P["v"], rtol=0, atol=1e-12)
        for Wk, Wo in zip(Wt.W(), P["W"]):
            np.testing.assert_allclose(Wk, Wo, rtol=0, atol=1e-12)
    # the steps moved the weights by far more than the tolerance (the test can fail)
    assert np.abs(P["w"] - initial_deep_weights(cfg, 0).w).max() > 1e-3
    if rule in ("afa", "pepita", "pepita-forward", "pepita-hebbian"):
        np.testing.assert_allclose(Wt.b1, Wt.w @ Wt.F / math.sqrt(N), atol=1e-10)


@pytest.mark.parametrize("rule", ["bp", "fa", "afa", "pepita", "pepita-forward"])
def test_widths_K_reproduces_two_layer_simulation(rule):
    """Same seeds → same initial weights and input stream: the trajectories agree to
    rounding (the two kernels order some products differently)."""
    from simulations.teacher_student import simulate as simulate2

    common = dict(rule=rule, N=200, alpha_max=2.0, M=2, eta=1.0, eta_v=0.8, sigma=0.1,
                  sigma_F=0.1, seeds=[3, 4], record=0.5, threads=1)  # fmt: skip
    two = simulate2(dict(common, K=3))
    deep = simulate(dict(common, widths=[3], mc_fields=1 << 14))
    for name in ("Q", "R", "v"):
        np.testing.assert_allclose(getattr(deep, name), getattr(two, name), rtol=1e-9, atol=1e-9)
    if rule != "bp":
        b = deep.b if deep.b is not None else np.broadcast_to(deep.fb_b[:, None], two.b.shape)
        np.testing.assert_allclose(b, two.b, rtol=1e-9, atol=1e-9)
    # ε_g: quasi-Monte Carlo over the fields (2¹⁴ scrambled Sobol points; error ~10⁻⁵
    # relative, measured) vs the closed form of the same state: within 10⁻³
    np.testing.assert_allclose(deep.eg, two.eg, rtol=1e-3)


def test_observables_against_closed_forms():
    """ε_g of a two-layer state against the erf closed form; BP's cos_delta is 1; FA with
    b = v and B = Wᵀ is BP; DFA at one hidden layer with d = v is BP."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5))
    C = A @ A.T / 5 + 0.2 * np.eye(5)
    Q, R, T = C[:3, :3], C[:3, 3:], C[3:, 3:]
    v, vs = rng.standard_normal(3), np.array([1.0, -0.5])
    z = field_normals(1 << 15, 5, seed=2)  # quasi-MC: ~2e-5 relative error (measured)
    eg, cos = deep_observables(Q, R, T, v, vs, [], "bp", "erf", z)
    exact = float(eps_g(Q, R, T, v, vs, "erf"))
    assert abs(eg - exact) < 1e-3 * exact
    assert cos == pytest.approx([1.0])
    _, cos = deep_observables(Q, R, T, v, vs, [], "dfa", "erf", z, d=[v])
    assert cos == pytest.approx([1.0])
    W = [rng.standard_normal((4, 3)), rng.standard_normal((2, 4))]
    v2 = rng.standard_normal(2)
    _, cos_bp = deep_observables(Q, R, T, v2, vs, W, "bp", "erf", z)
    _, cos_fa = deep_observables(Q, R, T, v2, vs, W, "fa", "erf", z, fb_b=v2,
                                 B=[w.T for w in W])  # fmt: skip
    assert cos_fa == pytest.approx([1.0, 1.0, 1.0]) and cos_bp == pytest.approx([1, 1, 1])
    _, cos_fa = deep_observables(Q, R, T, v2, vs, W, "fa", "erf", z, fb_b=-v2,
                                 B=[w.T for w in W])  # fmt: skip
    assert cos_fa == pytest.approx([-1.0, -1.0, -1.0])  # every δ flips sign


@pytest.mark.parametrize("rule", DEEP_RULES)
def test_numba_observables_equal_the_numpy_reference(rule):
    cfg = _cfg(rule, [3, 4, 2], sigma=0.3)
    Wt = initial_deep_weights(cfg, 0)
    N = cfg["N"]
    Q, R, T = Wt.w @ Wt.w.T / N, Wt.w @ Wt.w_star.T / N, Wt.w_star @ Wt.w_star.T / N
    z = field_normals(3000, 5, seed=4)
    ref = deep_observables(Q, R, T, Wt.v, Wt.v_star, Wt.W(), rule, "erf", z, 0.3, b=Wt.b1,
                           fb_b=Wt.fb_b, B=Wt.B(), d=Wt.d())  # fmt: skip
    got = mc_observables(Q, R, T, Wt.v, Wt.v_star, Wt.Wr, Wt.widths, rule, "erf", z, 0.3,
                         b=Wt.b1, fb_b=Wt.fb_b, fB=Wt.fB, fd=Wt.fd)  # fmt: skip
    assert got[0] == pytest.approx(ref[0], rel=1e-10)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-9)
    if rule != "bp":
        assert np.abs(ref[1] - 1).max() > 1e-3  # not trivially BP


# ======================================================================== config checks
@pytest.mark.parametrize(
    "change, match",
    [
        (dict(widths=[]), "widths must be a non-empty list"),
        (dict(widths=[2, 0]), "widths must be a non-empty list"),
        (dict(widths=2), "widths must be a non-empty list"),
        (dict(rule="ff"), "unknown rule 'ff' for a deep student"),
        (dict(K=3), "K=3 disagrees with widths"),
        (dict(eta_W=-1), "eta_W must be >= 0"),
        (dict(activation="softplus"), "unsupported activation"),
        (dict(bogus=1), "unknown config keys"),
        (dict(init={"W": [[[1, 2]]]}), r"init.W\[0\] must have shape \(3, 2\), got shape \(1, 2\)"),
        (dict(init={"W": []}), "init.W must be a list of 1 arrays"),
        (dict(init={"v": [1, 2]}), r"init.v must have shape \(3,\), got shape \(2,\)"),
        (dict(init={"d": [[1, 2], [1, 2, 3]]}), "init.d is the fixed feedback of dfa"),
        (dict(rule="fa", init={"B": [[[1, 2, 3]]]}), r"init.B\[0\] must have shape \(2, 3\)"),
        (dict(init={"state": {"Q": [[1]]}}), "init.state must be a dict"),
        (dict(record={"alpha": [0.5, 1.0]}), "record must include alpha = 0"),
    ],
)
def test_bad_configs_name_the_key(change, match):
    cfg = dict(rule="bp", N=50, alpha_max=1, widths=[2, 3])
    cfg.update(change)
    with pytest.raises(ValueError, match=match):
        validate_config(cfg)


@pytest.mark.parametrize("rule", ["dfa", "pepita-hebbian"])
def test_deep_only_rules_without_widths_say_so(rule):
    from simulations.teacher_student import validate_config as vc

    with pytest.raises(ValueError, match=r'simulated by the deep student: give "widths"'):
        vc(dict(rule=rule, N=50, alpha_max=1))


def test_dispatch_and_cli_and_file_round_trip(tmp_path):
    from simulations import run
    from simulations.teacher_student import validate_config as vc

    cfg = dict(rule="dfa", N=60, alpha_max=0.5, widths=[2, 3], seeds=2, record=0.25,
               mc_fields=2000, threads=1)  # fmt: skip
    assert vc(cfg)["eta_W"] == 0.5  # the committee's entry point hands over to deep_student
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    for ext in ("npz", "json"):
        out = tmp_path / f"o.{ext}"
        assert run.main([str(p), "-o", str(out), "--quiet"]) == 0
        r = DeepSimulationResult.load(out)
        r2 = simulate(cfg)
        np.testing.assert_allclose(r.W[0], r2.W[0], atol=1e-12)
        np.testing.assert_allclose(r.d[1], r2.d[1])
        assert r.W[0].shape == (2, 3, 3, 2) and r.cos_delta.shape == (2, 3, 2)
    d = np.load(tmp_path / "o.npz")
    assert "W0" in d and "W0_mean" in d and "cos_delta_mean" in d


def test_init_state_gives_the_same_state_at_every_N():
    st = {"Q": [[1.0, 0.1], [0.1, 0.8]], "R": [[0.2, 0.0], [0.0, 0.1]],
          "T": [[1.0, 0.0], [0.0, 1.0]], "b": [0.05, -0.02], "c": [0.01, 0.03]}  # fmt: skip
    for N in (200, 800):
        r = simulate(dict(rule="pepita", N=N, alpha_max=0.01, widths=[2, 2], seeds=2,
                          record={"alpha": [0.0]}, mc_fields=500, sigma_F=0.1,
                          init={"state": st, "W": [[[1.0, 0.5], [-0.3, 0.7]]]}))  # fmt: skip
        s = r.initial_state(1)
        for k in ("Q", "R", "T", "b", "c"):
            np.testing.assert_allclose(getattr(s, k), st[k], atol=1e-12)
        assert s.sigma_F2 == pytest.approx(0.01, abs=1e-12) and s.F_norm2 == pytest.approx(N / 100)
        np.testing.assert_allclose(s.W[0], [[1.0, 0.5], [-0.3, 0.7]])
        assert s.widths == [2, 2]


def test_divergence_is_reported_not_nan():
    r = simulate(dict(rule="pepita", N=400, alpha_max=20, widths=[2, 2], sigma_F=0.3,
                      eta=2.0, seeds=1, mc_fields=500, threads=1,
                      divergence={"eg_max": 50.0}))  # fmt: skip
    assert r.diverged.all() and np.isfinite(r.alpha_diverged).all()
    i = np.searchsorted(r.alpha, r.alpha_diverged[0])
    assert np.isnan(r.eg[0, i:]).all() and np.isfinite(r.eg[0, :i]).all()
