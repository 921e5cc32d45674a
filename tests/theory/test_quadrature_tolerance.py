"""The tolerance contract (theory.tolerance, docs/quadrature.md): every scheme's error
estimate bounds its true error — against the closed forms (erf) or a high-precision
reference (relu: 4 × 2^21 scrambled Sobol points; tanh: marginal Gauss–Hermite with 64
nodes per field) — at states along real learning curves (grown weights, Q_kk up to ~5), and
a request a scheme cannot meet is refused with a message naming scheme, n, the estimate
and what would meet it."""

import math

import numpy as np
import pytest

import odeflow
from theory.codegen import build_system
from theory.quadrature import make_rule
from theory.state import OrderParameters
from theory.tolerance import select


def curve_states(K, M, n_states=3, seed=0):
    """States of a real learning curve: the closed-form erf BP ODE (η = 1) from
    w, w* ~ N(0, I) (Q ≈ T ≈ 1, R ≈ 0), v ~ 0.3 N(0, 1), recorded at α = 0, 60, 200, 400,
    and the last one with its students grown ×√5 (Q → 5Q, R → √5 R: late in learning with
    growing weights)."""
    rng = np.random.default_rng(seed)
    N = 400
    w, ws = rng.normal(size=(K, N)), rng.normal(size=(M, N))
    init = OrderParameters.from_weights(w, ws, 0.3 * rng.normal(size=K), np.ones(M))
    r = odeflow.solve("bp", init, eta=1.0, alpha_max=400, record=[0, 60, 200, 400])
    out = [r.state(i) for i in range(len(r.alpha))][: n_states - 1]
    last = r.state(len(r.alpha) - 1)
    s = math.sqrt(5.0)
    out.append(last.replace(Q=s * s * last.Q, R=s * last.R))
    return out


def _flat(d):
    return np.concatenate([np.ravel(d[k]) for k in ("Q", "R", "v") if k in d])


def _rhs(system, st, qrule):
    return _flat(system.evaluate(st, 0.8, 0.5, 0.0, qrule=qrule))


def _reference(rule, K, M, act, st):
    """(f, uncertainty) of the right-hand side at st, independent of the rule tested."""
    if act == "erf":
        return _flat(build_system(rule, K, M, act).evaluate(st, 0.8, 0.5, 0.0)), 0.0
    if act == "tanh":
        ms = build_system(rule, K, M, act, quadrature={"scheme": "marginal", "n": 64})
        qr = make_rule(K + M, "marginal", 64)
        est = ms.error_estimate(st, 0.8, 0.5, 0.0, qrule=qr)
        return _rhs(ms, st, qr), est["rhs_abs"]
    fs = build_system(rule, K, M, act, quadrature={"scheme": "sobol", "n": 1 << 21})
    runs = np.array([_rhs(fs, st, make_rule(K + M, "sobol", 1 << 21, s)) for s in range(4)])
    # 3 standard errors of the mean of 4 independent scramblings
    return runs.mean(axis=0), 3 * float(np.max(runs.std(axis=0, ddof=1))) / 2


def _check_bounds(rule, K, M, act, scheme, n):
    sysq = build_system(rule, K, M, act, quadrature={"scheme": scheme, "n": n})
    dim = sysq.dim(0.0)
    qr = make_rule(dim, scheme, n)
    worst = 0.0
    for st in curve_states(K, M):
        est = sysq.error_estimate(st, 0.8, 0.5, 0.0, qrule=qr)
        ref, unc = _reference(rule, K, M, act, st)
        true = float(np.max(np.abs(_rhs(sysq, st, qr) - ref)))
        assert est["rhs_abs"] >= true - unc, (
            f"{scheme} n={n} {act} K={K} M={M}: estimate {est['rhs_abs']:.3g} < true error "
            f"{true:.3g} (reference uncertainty {unc:.2g})"
        )
        worst = max(worst, true / max(est["rhs_abs"], 1e-300))
    return worst


CASES = [
    # (scheme, n, activation, K, M): the default suite keeps K = M = 2 and one (3, 2)
    ("sobol", 1 << 14, "erf", 2, 2),
    ("gauss-hermite", 12, "erf", 2, 2),
    ("marginal", 16, "erf", 2, 2),
    ("sobol", 1 << 14, "relu", 2, 2),
    # ~20 s cold; tanh stays in the default suite through the marginal case
    pytest.param("sobol", 1 << 14, "tanh", 2, 2, marks=pytest.mark.slow),
    ("marginal", 24, "tanh", 2, 2),
    ("marginal", 16, "erf", 3, 2),
    pytest.param("gauss-hermite", 12, "tanh", 2, 2, marks=pytest.mark.slow),
    pytest.param("gauss-hermite", 16, "relu", 2, 2, marks=pytest.mark.slow),
    pytest.param("sobol", 1 << 15, "erf", 3, 2, marks=pytest.mark.slow),
    pytest.param("sobol", 1 << 15, "relu", 3, 2, marks=pytest.mark.slow),
    pytest.param("sobol", 1 << 15, "tanh", 3, 2, marks=pytest.mark.slow),
    pytest.param("gauss-hermite", 12, "erf", 3, 2, marks=pytest.mark.slow),
    pytest.param("marginal", 24, "tanh", 3, 2, marks=pytest.mark.slow),
    pytest.param("sobol", 1 << 16, "erf", 4, 4, marks=pytest.mark.slow),
    pytest.param("sobol", 1 << 16, "relu", 4, 4, marks=pytest.mark.slow),
    pytest.param("marginal", 16, "erf", 4, 4, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("scheme,n,act,K,M", CASES)
def test_error_estimate_bounds_the_true_error(scheme, n, act, K, M):
    _check_bounds("bp", K, M, act, scheme, n)


REFUSALS = [
    # (scheme, n, activation, K, M, rtol): requests beyond what the rule reaches
    ("sobol", 1 << 12, "erf", 2, 2, 1e-8),
    # ~20 s: a relu Gauss-Hermite system of its own (relu is refused by sobol-4096 below)
    pytest.param("gauss-hermite", 6, "relu", 2, 2, 1e-6, marks=pytest.mark.slow),
    ("marginal", 8, "tanh", 2, 2, 1e-8),
    pytest.param("sobol", 1 << 12, "relu", 3, 2, 1e-7, marks=pytest.mark.slow),  # ~20 s cold
    # ~10 s cold, a tanh K = 3 system of its own; gauss-hermite erf 4-4 keeps the scheme
    pytest.param("gauss-hermite", 4, "tanh", 3, 2, 1e-6, marks=pytest.mark.slow),
    ("gauss-hermite", 4, "erf", 4, 4, 1e-6),
    ("sobol", 1 << 12, "tanh", 4, 4, 1e-6),
]


@pytest.mark.parametrize("scheme,n,act,K,M,rtol", REFUSALS)
def test_unmeetable_request_is_refused_with_the_message(scheme, n, act, K, M, rtol):
    st = curve_states(K, M)[-1]
    sysq = build_system("bp", K, M, act, quadrature={"scheme": scheme, "n": n, "rtol": rtol})
    with pytest.raises(ValueError) as exc:
        select(sysq, st, 0.8, 0.5, 0.0)
    msg = str(exc.value)
    assert f"quadrature scheme {scheme!r} with n = {n} does not meet rtol = {rtol:g}" in msg
    assert "estimated error" in msg and ("would meet it" in msg or "raise rtol" in msg)


# ------------------------------------------------------------- the three silent cases
@pytest.mark.slow  # ~25 s: a 4x4 Gauss-Hermite system
def test_gauss_hermite_without_n_at_4x4_is_not_three_nodes():
    # was: n = 3 per field at K = M = 4 (8 fields), 30–63 % wrong, silently
    st = curve_states(4, 4)[0]
    with pytest.raises(ValueError, match="no default n for 8 fields"):
        build_system("bp", 4, 4, "tanh", quadrature="gauss-hermite").rule_for(0.0)
    # solve chooses n from rtol; no n^8 ≤ 5·10⁷ reaches 1e-6: refused, naming a rule
    # that does
    with pytest.raises(ValueError, match="'gauss-hermite' with any n .* does not meet rtol"):
        odeflow.solve("bp", st, eta=0.8, activation="tanh", alpha_max=1, quadrature="gauss-hermite")


def test_marginal_with_a_kink_is_refused():
    # was: relu accepted and 1.3–2.8 % wrong (Gauss–Hermite across the kink). relu now has
    # exact moments (tests/theory/test_relu_exact.py); any other kinked g is still refused
    import sympy as sp

    from theory.activations import z

    leaky = sp.Max(0, z) + z / 10
    with pytest.raises(ValueError, match="has a kink"):
        build_system("bp", 2, 2, leaky, quadrature="marginal")
    with pytest.raises(ValueError, match="has a kink"):
        build_system("fa", 3, 2, leaky, quadrature={"scheme": "marginal", "n": 24})


def _pepita_init(sigma_F=0.04, N=1000):
    return OrderParameters.from_spec(
        2,
        2,
        R=0.01,
        v=0.1,
        b=[0.03, -0.02],
        c=[0.02, 0.0],
        sigma_F2=sigma_F**2,
        F_norm2=N * sigma_F**2,
    )


@pytest.mark.slow
def test_pepita_gauss_hermite_12_spurious_divergence_is_detected():
    # exact PEPITA, σ_F = 0.04, η = 1, GH n = 12: ε_g blows up spuriously (n = 16 does not)
    # while the estimate at the initial state reads ~4e-4. At the default rtol the rule is
    # refused up front; with rtol = 1e-3 it starts, and the re-check along the run stops it
    # at status −1 where the fields have grown (α ≈ 5.5, long before the blow-up)
    init = _pepita_init()
    with pytest.raises(ValueError, match="'gauss-hermite' with n = 12 does not meet rtol"):
        odeflow.solve(
            "pepita", init, eta=1.0, alpha_max=20, quadrature={"scheme": "gauss-hermite", "n": 12}
        )
    r = odeflow.solve(
        "pepita",
        init,
        eta=1.0,
        alpha_max=20,
        quadrature={"scheme": "gauss-hermite", "n": 12, "rtol": 1e-3},
    )
    assert r.status == -1 and r.reason == "quadrature"
    assert "exceeds rtol = 0.001" in r.message and "'gauss-hermite', n = 12" in r.message
    # the live re-checks along the run (r.quadrature["checks"]: the post-hoc ones on records)
    a_fail = [a for a, e in r.quadrature["live"]["checks"] if e > 1e-3][0]
    assert a_fail < 10


# ------------------------------------------------------------------ auto and the option
def test_auto_picks_the_cheapest_rule_meeting_rtol():
    # erf BP forced through quadrature: the marginal scheme meets 1e-6/10 with few nodes
    # (closed-form grade), so auto takes it, and the run matches the closed-form ODE. (At
    # the α = 60 state, on the plateau, the rhs is small and 1e-7 of it is out of reach
    # within 2^18 nodes: auto would keep Sobol there and warn.)
    st = curve_states(2, 2)[0]
    kw = dict(eta=0.8, eta_v=0.5, alpha_max=2.0, record={"every": 0.5})
    r = odeflow.solve("bp", st, quadrature=True, **kw)
    closed = odeflow.solve("bp", st, **kw)
    sel = r.quadrature["selection"]
    assert sel["auto"] and sel["selected"]["scheme"] == "marginal" and sel["selected"]["meets"]
    assert r.quadrature["rule"]["n"] == sel["selected"]["n"] <= 24
    assert r.status == 0 and "warning" not in r.quadrature
    assert np.max(np.abs(r.eg - closed.eg)) < 1e-8
    # every re-check along the run met the tolerance
    assert r.quadrature["checks"] and all(e <= 1e-6 for _, e in r.quadrature["checks"])
    # a looser tolerance buys a cheaper rule
    loose = odeflow.solve("bp", st, quadrature={"rtol": 1e-3}, **kw)
    assert loose.quadrature["rule"]["nodes"] < r.quadrature["rule"]["nodes"]


def test_rtol_option_is_checked():
    for bad in (0, -1e-6, 2.0, "1e-6", True, float("nan")):
        with pytest.raises(ValueError, match="quadrature option rtol"):
            build_system("bp", 2, 2, "tanh", quadrature={"rtol": bad})
