"""solve_sde(..., N=...): the finite-N diffusion of every order parameter (issue 24).

Default suite: one Euler–Maruyama step of many paths has the increments' mean h·f(y₀) and
covariance h·Σ(y₀)/N (Σ from theory.covariance, itself checked against Monte Carlo in
tests/theory/test_cov.py); the result's keys, save/load, config and errors.
Slow: the SDE against simulation ensembles from one measured initial state (BP, AFA, FF),
and PEPITA's fluctuation-driven divergence.
"""

import json

import numpy as np
import pytest

import odeflow
from odeflow.config import to_sde_args, validate_config
from theory.covariance import build_covariance
from theory.state import OrderParameters


def _state(rule="bp"):
    kw = dict(
        Q=np.array([[1.0, 0.2], [0.2, 0.8]]),
        R=np.array([[0.3, 0.1], [0.05, 0.4]]),
        T=np.eye(2),
        v=np.array([0.5, 0.3]),
        v_star=np.ones(2),
    )
    if rule == "afa":
        kw.update(b=np.array([0.3, -0.2]), c=np.array([0.1, 0.05]), sigma_F2=0.09)
    return OrderParameters(**kw)


@pytest.mark.parametrize("rule", ["bp", "afa"])
def test_one_step_has_the_drift_and_the_covariance(rule):
    """Increments of one step h over P paths: mean h f(y₀) (3 SE), covariance h Σ(y₀)/N
    (every entry within 4 SE of the sample covariance; RMS z < 1.5 — tests/theory/test_cov.py
    explains the 4)."""
    st = _state(rule)
    N, h, P = 500.0, 0.05, 4000
    res = odeflow.solve_sde(
        rule,
        st,
        eta=1.0,
        alpha_max=h,
        dt=h,
        n_paths=P,
        seed=3,
        N=N,
        record={"alpha": [0.0, h]},
        noise_every=1,  # the plain scheme (the default's first step uses Σ(y₀) too)
    )
    assert res.status == 0 and res.N == N
    sysd = odeflow.get_system(rule, 2, 2)
    lay = sysd.layout
    iu = np.triu_indices(2)
    parts = [res.Q[:, 1][:, iu[0], iu[1]], res.R[:, 1].reshape(P, -1), res.v[:, 1]]
    if rule == "afa":
        parts.append(res.b[:, 1])
    d = np.concatenate(parts, axis=1) - lay.pack(st)[None, :]
    y0 = lay.pack(st)
    f = np.empty_like(y0)
    sysd.rhs(y0, sysd.params(st, 1.0, 1.0, 0.0), f)
    cs = build_covariance(rule, 2, 2)
    _, Sig = cs.evaluate(st, 1.0, 1.0, 0.0, N=N)
    Sexp = h * Sig / N
    m = d.mean(axis=0)
    assert np.all(np.abs(m - h * f) < 3.0 * np.sqrt(np.diag(Sexp) / P)), (m, h * f)
    c = d - m
    Shat = c.T @ c / (P - 1)
    # SE of a Gaussian sample covariance: √((Σ_ii Σ_jj + Σ_ij²)/P)
    se = np.sqrt((np.outer(np.diag(Sexp), np.diag(Sexp)) + Sexp**2) / P)
    z = (Shat - Sexp) / se
    assert np.all(np.abs(z) < 4.0), z
    assert np.sqrt(np.mean(z**2)) < 1.5, z


def test_result_keys_statistics_and_save(tmp_path):
    st = _state("bp")
    res = odeflow.solve_sde(
        "bp", st, eta=1.0, alpha_max=0.5, dt=0.05, n_paths=5, seed=1, N=1000, record={"every": 0.25}
    )
    assert res.b is None and res.u is None and res.v.shape == (5, 3, 2)
    np.testing.assert_allclose(res.mean("eg"), res.eg_mean)
    np.testing.assert_allclose(res.std("eg"), res.eg_std)
    np.testing.assert_allclose(res.std("Q"), np.std(res.Q, axis=0, ddof=1))
    np.testing.assert_allclose(res.mean("R"), np.mean(res.R, axis=0))
    with pytest.raises(ValueError, match="no 'b'"):
        res.mean("b")
    with pytest.raises(ValueError, match="unknown order parameter"):
        res.std("W")
    d = res.to_dict()
    for k in (
        "alpha",
        "eg_mean",
        "eg_std",
        "eg",
        "Q_mean",
        "Q_std",
        "R_mean",
        "R_std",
        "v_mean",
        "v_std",
    ):
        assert k in d, k
    assert d["N"] == 1000.0
    for ext in ("npz", "json"):
        p = tmp_path / f"r.{ext}"
        res.save(p)
        back = odeflow.SDEResult.load(p)
        assert back.N == 1000.0 and back.b is None
        np.testing.assert_array_equal(back.eg, res.eg)
    with open(tmp_path / "r.json") as fh:
        js = json.load(fh)
    assert "v_std" in js and "eg_std" in js


def test_same_seed_same_paths_and_grouping_free():
    st = _state("afa")
    kw = dict(eta=1.0, alpha_max=0.3, dt=0.03, seed=5, N=500, record={"every": 0.1})
    a = odeflow.solve_sde("afa", st, n_paths=6, noise_every=1, **kw)
    b = odeflow.solve_sde("afa", st, n_paths=6, noise_every=1, **kw)
    np.testing.assert_array_equal(a.eg, b.eg)
    np.testing.assert_array_equal(a.b, b.b)
    # refactoring Σ every step vs every 2 steps changes the paths, not their start
    c = odeflow.solve_sde("afa", st, n_paths=6, noise_every=2, **kw)
    np.testing.assert_array_equal(c.eg[:, 0], a.eg[:, 0])
    assert c.params["noise_every"] == 2 and not np.array_equal(c.eg, a.eg)
    # the default refreshes Σ adaptively (per path, recorded in params)
    d = odeflow.solve_sde("afa", st, n_paths=6, **kw)
    assert d.params["noise_every"] is None
    assert d.params["noise_refresh"]["rtol"] == odeflow.sde_solve.NOISE_RTOL
    np.testing.assert_array_equal(d.eg[:, 0], a.eg[:, 0])


def test_adaptive_refresh_schedule():
    """The adaptive refresh of Σ against its definition. With a tolerance no change can
    meet, every interval is one step: the paths are noise_every=1's bit for bit (first
    interval round(0.05/dt) = 1 at dt = 0.05). With one every change meets, the first
    interval (1 step) doubles at every later refresh up to NOISE_DALPHA_MAX/dt = 20:
    refreshes at steps 0, 1, 3, 7, 15, 31, 51, 71, …, 191 of 200 — 14 evaluations of Σ."""
    st = _state("bp")
    kw = dict(eta=1.0, dt=0.05, seed=2, N=500, n_paths=3, record={"every": 0.5})
    a = odeflow.solve_sde("bp", st, alpha_max=2.0, noise_every=1, **kw)
    b = odeflow.solve_sde("bp", st, alpha_max=2.0, noise_rtol=1e-300, **kw)
    np.testing.assert_array_equal(a.eg, b.eg)
    np.testing.assert_array_equal(a.Q, b.Q)
    assert a.params["noise_evaluations"] == b.params["noise_evaluations"] == 40
    c = odeflow.solve_sde("bp", st, alpha_max=10.0, noise_rtol=1e300, **kw)
    assert c.params["noise_evaluations"] == 14
    # the default sits in between
    d = odeflow.solve_sde("bp", st, alpha_max=10.0, **kw)
    assert 14 < d.params["noise_evaluations"] < 200


def test_refresh_sigma_by_hand():
    """:func:`odeflow.sde.refresh_sigma` with a toy Σ(y) = diag(exp(y)): Σ(y) is returned
    and kept; the next interval follows the change since the previous refresh."""
    from numba import njit

    from odeflow.sde import NX_COUNT, NX_INTERVAL, NX_NEXT, refresh_sigma

    @njit
    def toy(y, pc, S):
        S[:, :] = 0.0
        for i in range(y.shape[0]):
            S[i, i] = np.exp(pc[0] * y[i])

    pc = np.array([1.0])
    ctl = np.array([0.01, 4.0, 50.0])  # rtol, first, max (steps)
    S, Sp = np.empty((2, 2)), np.empty((2, 2))
    nx = np.zeros(3, dtype=np.int64)
    y = np.array([0.0, 1.0])
    refresh_sigma(toy, y, pc, ctl, nx, 7, S, Sp)  # the first: interval ctl[1]
    np.testing.assert_allclose(S, np.diag(np.exp(y)), rtol=1e-15)
    np.testing.assert_array_equal(Sp, S)
    assert list(nx[[NX_NEXT, NX_INTERVAL, NX_COUNT]]) == [11, 4, 1]
    # 4 steps later Σ_11 moved by e·(e^0.01 − 1) = 0.01005·e: relative to the largest
    # variance e, 0.01005 ≥ 0.9·rtol: the interval becomes int(4·0.9·0.01/0.01005) = 3
    y2 = np.array([0.001, 1.01])
    refresh_sigma(toy, y2, pc, ctl, nx, 11, S, Sp)
    np.testing.assert_allclose(S, np.diag(np.exp(y2)), rtol=1e-15)
    assert int(4 * 0.9 * 0.01 / np.expm1(0.01)) == 3
    assert list(nx[[NX_NEXT, NX_INTERVAL, NX_COUNT]]) == [14, 3, 2]
    # a Σ that hardly moves: the interval doubles
    refresh_sigma(toy, y2 + 1e-9, pc, ctl, nx, 14, S, Sp)
    assert list(nx[[NX_NEXT, NX_INTERVAL, NX_COUNT]]) == [20, 6, 3]


def test_sigma_change_and_next_interval_by_hand():
    """:func:`odeflow.sde.sigma_change` is max |ΔΣ_ij| / max_k Σ_kk;
    :func:`odeflow.sde.next_interval` aims at rtol with 0.9 safety, doubling at most."""
    from odeflow.sde import next_interval, sigma_change

    Sp = np.array([[4.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1e-6]])
    S = Sp.copy()
    S[0, 1] = S[1, 0] = 1.1
    assert sigma_change(S, Sp) == pytest.approx(0.1 / 4.0)
    S[2, 2] = 3e-6  # a small variance tripling: 2e-6 / 4, not 2
    assert sigma_change(S, Sp) == pytest.approx(0.1 / 4.0)
    S[1, 1] = 1.3
    assert sigma_change(S, Sp) == pytest.approx(0.3 / 4.0)
    assert sigma_change(S, np.zeros((3, 3))) == np.inf
    S[0, 2] = S[2, 0] = np.nan  # Σ is symmetric: its lower triangle is read
    assert sigma_change(S, Sp) == np.inf
    ctl = np.array([0.01, 3.0, 50.0])  # rtol, first, max (steps)
    assert next_interval(0.02, 10, ctl) == 4  # 10 · 0.9 · 0.01/0.02 = 4.5
    assert next_interval(0.0, 10, ctl) == 20  # at most doubling
    assert next_interval(0.0, 40, ctl) == 50  # at most ctl[2]
    assert next_interval(1.0, 10, ctl) == 1  # at least one step
    assert next_interval(np.inf, 10, ctl) == 1


def test_errors():
    st = _state("bp")
    with pytest.raises(ValueError, match="give N"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2)
    with pytest.raises(ValueError, match="N must be"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2, N=0)
    with pytest.raises(ValueError, match="only with N"):
        odeflow.solve_sde(
            "afa", _state("afa"), eta=1.0, alpha_max=1, dt=0.1, n_paths=2, noise_every=3
        )
    with pytest.raises(ValueError, match="noise_every"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2, N=10, noise_every=0)
    with pytest.raises(ValueError, match="noise_rtol is the tolerance of the adaptive"):
        odeflow.solve_sde(
            "bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2, N=10, noise_every=2, noise_rtol=0.1
        )
    with pytest.raises(ValueError, match="noise_rtol"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2, N=10, noise_rtol=-1)
    kw = dict(eta=1.0, alpha_max=1, dt=0.1, n_paths=2, drift_correction=True)
    with pytest.raises(ValueError, match="only with N"):
        odeflow.solve_sde("bp", st, **kw)
    with pytest.raises(ValueError, match="feedback 'v' or 'fixed'.*'afa'"):
        odeflow.solve_sde("afa", _state("afa"), N=10, **kw)
    with pytest.raises(ValueError, match="true or false"):
        odeflow.solve_sde("bp", st, N=10, **{**kw, "drift_correction": 1})


@pytest.mark.parametrize("dt", [0.05, 0.002])
def test_drift_correction_one_step_by_hand(dt):
    """One step with ``drift_correction`` against the formula of docs/finite-size.md, from
    the same noise as the plain step: the two differ by exactly
    ``½(h − 1/N)[f(y₀ + h f(y₀)) − f(y₀)] + (h/N) c(y₀)`` (f the ODE's right-hand side, c
    the covariance module's drift1, both evaluated here by hand). At h = 1/N (dt = 0.002,
    N = 500) the Heun part vanishes: Euler with the sample step is the discreteness."""
    from odeflow.inputs import get_system, params_vector

    st, N = _state("bp"), 500
    kw = dict(eta=1.0, alpha_max=dt, dt=dt, n_paths=3, seed=4, N=N, record={"alpha": [0, dt]})
    plain = odeflow.solve_sde("bp", st, **kw)
    corr = odeflow.solve_sde("bp", st, drift_correction=True, **kw)
    sysm = get_system("bp", 2, 2, "erf", None)
    p = params_vector(sysm, st, 1.0, 1.0, 0.0, None)
    y0 = np.ascontiguousarray(sysm.layout.pack(st), dtype=float)
    k1, k2, c = np.empty_like(y0), np.empty_like(y0), np.empty_like(y0)
    sysm.rhs(y0, p, k1)
    sysm.rhs(y0 + dt * k1, p, k2)
    cs = build_covariance("bp", 2, 2, "erf")
    cs.drift1(y0, cs.params(st, 1.0, 1.0, 0.0, N=N), c)
    assert np.all(c[3:] == 0.0) and np.all(np.abs(c[:3]) > 1e-4)  # Q only, and not zero
    want = 0.5 * (dt - 1.0 / N) * (k2 - k1) + dt / N * c
    iu = np.triu_indices(2)

    def flat(res):  # the state after the step, packed like the system's y
        return np.concatenate(
            [res.Q[:, 1][:, iu[0], iu[1]], res.R[:, 1].reshape(3, -1), res.v[:, 1]], 1
        )

    got = flat(corr) - flat(plain)
    np.testing.assert_allclose(got, np.tile(want, (3, 1)), rtol=1e-9, atol=1e-15)
    assert corr.params["drift_correction"] is True and plain.params["drift_correction"] is False


def test_drift_quadrature_is_selected_like_solve():
    """Exact PEPITA (p = x̃) has no closed-form averages: solve_sde checks the drift's rule
    against its tolerance as solve does (the same selection for the same state and
    options), records it and names it; a rule that misses its tolerance is refused."""
    d = {k: v for k, v in _state("afa").to_dict().items() if v is not None}
    st = OrderParameters(**d, F_norm2=500 * 0.09)
    gh6 = {"scheme": "gauss-hermite", "n": 6, "rtol": 0.5}
    kw = dict(eta=1.0, alpha_max=0.2, record={"every": 0.1}, quadrature=gh6)
    ref = odeflow.solve("pepita", st, **kw).quadrature
    res = odeflow.solve_sde("pepita", st, dt=0.1, n_paths=2, seed=1, N=500, **kw)
    q = res.params["quadrature"]
    assert q["selection"]["selected"] == ref["selection"]["selected"]
    assert q["rule"] == ref["rule"] and q["rule"]["nodes"] == 6**4 and "error_init" in q
    assert "drift quadrature: gauss-hermite, 1296 nodes" in res.message
    # closed forms: nothing to select
    assert (
        "quadrature"
        not in odeflow.solve_sde(
            "bp", _state("bp"), eta=1.0, alpha_max=0.1, dt=0.1, n_paths=2, seed=1, N=500
        ).params
    )
    # Gauss–Hermite 4 per field misses 5 % here (estimate ≈ 0.3 of the rhs scale); its
    # refusal names a rule that would meet it (a short search: 8 per field does)
    bad = {**kw, "quadrature": {"scheme": "gauss-hermite", "n": 4, "rtol": 0.05}}
    with pytest.raises(ValueError, match="gauss-hermite"):
        odeflow.solve_sde("pepita", st, dt=0.1, n_paths=2, N=500, **bad)


def test_config_key_N():
    base = {
        "rule": "bp",
        "eta": 1.0,
        "alpha_max": 0.2,
        "dt": 0.1,
        "n_paths": 2,
        "seed": 1,
        "init": {
            k: np.asarray(v).tolist() for k, v in _state("bp").to_dict().items() if v is not None
        },
    }
    cfg = validate_config({**base, "N": 500}, "sde")
    rule, init, kw = to_sde_args(cfg)
    assert kw["N"] == 500
    res = odeflow.solve_sde(rule, init, **kw)
    assert res.N == 500.0
    with pytest.raises(ValueError, match="N must be a number"):
        validate_config({**base, "N": "500"}, "sde")
    # the adaptive refresh's keys: null = the default, a tolerance reaches the result
    cfg = validate_config({**base, "N": 500, "noise_every": None, "noise_rtol": 0.03}, "sde")
    res = odeflow.solve_sde(*to_sde_args(cfg)[:2], **to_sde_args(cfg)[2])
    assert res.params["noise_every"] is None and res.params["noise_refresh"]["rtol"] == 0.03
    with pytest.raises(ValueError, match="noise_rtol must be a number"):
        validate_config({**base, "N": 500, "noise_rtol": "0.03"}, "sde")
    cfg = validate_config({**base, "N": 500, "drift_correction": True}, "sde")
    res = odeflow.solve_sde(*to_sde_args(cfg)[:2], **to_sde_args(cfg)[2])
    assert res.params["drift_correction"] is True
    with pytest.raises(ValueError, match="drift_correction must be true or false"):
        validate_config({**base, "N": 500, "drift_correction": "yes"}, "sde")
    with pytest.raises(ValueError, match="unknown config keys N"):
        validate_config(
            {k: v for k, v in {**base, "N": 5}.items() if k != "n_paths"} | {"method": "dopri5"},
            "solve",
        )


# ------------------------------------------------------------------ slow: vs simulations
def _assert_follows(sim, sde, label):
    """The issue's criterion where the simulations' spread exceeds 0.003: std ratio within
    3/√(2(S−1)) of 1 (the sampling error of a std over S seeds; the SDE's own, over ≥ 96
    paths, is half of it and only helps the simulations' side be the binding one) and
    mean within 3 standard errors (of the difference of the two means)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from sde_validation import compare_stats

    c = compare_stats(sim, sde)
    # the measured numbers, for the docs (shown with pytest -s)
    print(
        f"\n{label}: S = {c['S']}, P = {int(np.min(sde.n_alive))}, judged α "
        f"{c['alpha'].min():g}–{c['alpha'].max():g} ({len(c['alpha'])} records): std ratio "
        f"{c['ratio'].min():.2f}–{c['ratio'].max():.2f} (band ±{c['band']:.2f}), "
        f"max |z(mean)| {np.max(np.abs(c['zmean'])):.2f}"
    )
    assert c["S"] >= 24 and len(c["alpha"]) >= 5, (label, c["S"], c["alpha"])
    bad = np.abs(c["ratio"] - 1.0) > c["band"]
    assert not bad.any(), (label, c["alpha"][bad], c["ratio"][bad], c["band"])
    assert np.all(np.abs(c["zmean"]) < 3.0), (label, c["alpha"], c["zmean"])


def _helpers():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import sde_validation

    return sde_validation


# Known failure (docs/finite-size.md, "Where the approximation fails"): at N = 500 the
# SDE's late escapers from the first plateau form a heavier tail than the simulations'.
# Measured from this state, α = 16–20 (the end of the drop, std_sim 0.03 → 0.005): 96
# simulations against 192 SDE paths (Σ every 2 steps, SDE seeds 11 and 99) give std ratios
# 1.23–2.25 and 1.25–1.54 (band ±0.22); the largest ε_g at α = 20 is 0.046 over the 96
# simulations, 0.147 and 0.072 over the paths. With 24 streams the test passes or fails with
# the seeds (96 paths, Σ every step: ratio ≤ 0.96 at SDE seed 11, 4.9 at seed 99; four
# groups of 24 simulations have std 0.002–0.007 at α = 20). The means agree (|z| ≤ 1.8).
_BP500_TAIL = pytest.mark.xfail(
    reason="the SDE's tail of late plateau escapes at N = 500 is heavier than the "
    "simulations' (docs/finite-size.md)",
    strict=False,
)


@pytest.mark.slow
@pytest.mark.parametrize("N", [pytest.param(500, marks=_BP500_TAIL), 2000])
def test_bp_spread_follows_simulations(N):
    """BP, erf, K = M = 2, η = η_v = 1, one measured initial state, 24 sample streams,
    96 SDE paths (dt = 0.02, Σ every Δα = 0.05 → 2 steps). N = 500: see _BP500_TAIL."""
    sim, sde = _helpers().run_pair("bp", N)
    _assert_follows(sim, sde, f"bp N={N}")


@pytest.mark.slow
@pytest.mark.parametrize("rule,alpha_judged", [("afa", 20.0), ("bp", 12.0)])
def test_adaptive_refresh_follows_every_step(rule, alpha_judged):
    """The default (adaptive) refresh of Σ against Σ at every step, with the same noise:
    200 paths, N = 500, dt = 0.02, from a random state (AFA: σ_F = 0.3, b's noise O(1)).
    Measured (α ≤ 40): AFA's std of ε_g within 1.8 % of the every-step run (0.4 % over the
    α ≤ 20 judged here), the means within 0.1 SE, with 230 instead of 2000 Σ per path; BP's
    within 2.8 % up to its plateau escape
    (α ≈ 12), after which a few late escapers set the spread and any change of the paths
    moves it by ±30 % (docs/finite-size.md), so BP is judged before it. Allowed: 3 % (the
    refresh's own error, not a sampling error: the noise is common), 0.5 SE in the mean."""
    rng = np.random.default_rng(0)
    K = M = 2
    n = 1000
    w, ws = rng.standard_normal((K, n)), rng.standard_normal((M, n))
    kw = dict(Q=w @ w.T / n, R=w @ ws.T / n, T=ws @ ws.T / n, v=0.1 * rng.standard_normal(K))
    if rule == "afa":
        F = 0.3 * rng.standard_normal(n)
        kw.update(b=w @ F / np.sqrt(n), c=ws @ F / np.sqrt(n), sigma_F2=float(F @ F / n))
    st = OrderParameters(v_star=np.ones(M), **kw)
    run = dict(eta=1.0, alpha_max=alpha_judged, dt=0.02, n_paths=200, seed=3, N=500)
    run["record"] = {"every": 0.5}
    ref = odeflow.solve_sde(rule, st, noise_every=1, **run)
    ada = odeflow.solve_sde(rule, st, **run)
    assert ada.params["noise_evaluations"] < 0.3 * ref.params["noise_evaluations"]
    sel = ref.eg_std > 0.003
    ratio = ada.eg_std[sel] / ref.eg_std[sel]
    z = (ada.eg_mean - ref.eg_mean)[sel] / (ref.eg_std[sel] / np.sqrt(200))
    print(f"\n{rule}: std ratio {ratio.min():.3f}–{ratio.max():.3f}, max |z| {np.abs(z).max():.2f}")
    assert sel.sum() >= 5 and np.all(np.abs(ratio - 1) < 0.03), ratio
    assert np.all(np.abs(z) < 0.5), z


@pytest.mark.slow
def test_afa_spread_follows_simulations():
    """AFA, σ_F = 0.3, same setting (N = 500). Measured: std ratios 0.89–1.05 over α = 3–20,
    mean within 1.0 SE."""
    sim, sde = _helpers().run_pair("afa", 500, sim_extra={"sigma_F": 0.3})
    _assert_follows(sim, sde, "afa N=500")


@pytest.mark.slow
def test_ff_spread_follows_simulations():
    """Forward-Forward, K = 2, M = 1, θ = 1, η = η_u = 1, N = 500 (32 SDE paths, dt = 0.05,
    Σ refreshed adaptively: FF's quadrature Σ is the cost, ~26 min on 2 cores). Measured:
    std ratios 0.72–1.30 over α = 1–20 (band ±0.44; the SDE's spread is lower during the
    descent, higher late), means within 1.84 SE."""
    sim, sde = _helpers().run_ff_pair(500)
    _assert_follows(sim, sde, "ff N=500")


@pytest.mark.slow
def test_pepita_fluctuation_driven_divergence():
    """Exact PEPITA (p = x̃), σ_F = 0.0396 (‖F‖² = 1.59), η = η_v = 1, K = M = 2, N = 1000,
    one measured initial state (init seed 0): the fraction of runs whose ε_g passes 1 before
    α = 20, simulations (40 sample streams) vs SDE (100 paths, dt = 0.02, drift Gauss–Hermite
    12 per field), within 3 standard errors of the difference of two binomial fractions; and
    the deterministic ODE from the same state stays below ε_g = 1 up to α = 20 with 12 and
    16 nodes per field, so the blow-ups are driven by the finite-N fluctuations.
    Measured (22 min on two busy cores, the SDE's 12⁴-node drift is the cost): 8 of 40
    simulations (0.20) pass ε_g = 1, at α = 17.8–19.7; 26 of 100 SDE paths (0.26), SE of
    the difference 0.077, z = 0.8 (a first run, 20 paths with seed 1: 8 of 20). The ODE's
    ε_g at α = 20 is 0.216 (12 per field) and 0.196 (16), rising (it passes 1 at α = 25.1).
    The window is narrow: at σ_F = 0.0393 none of 20 simulations blows up, at 0.0397 13 of
    40 do (ODE still bounded), at 0.0398 the ODE (12 per field) itself passes 1 at α = 19.2."""
    p_sim, S, p_sde, P, sim, sde, odes = _helpers().run_pepita_divergence()
    se = np.sqrt(p_sim * (1 - p_sim) / S + p_sde * (1 - p_sde) / P)
    ode_max = [float(np.nanmax(o.eg)) for o in odes]
    print(
        f"\npepita: sim {p_sim:.3f} of {S}, SDE {p_sde:.3f} of {P}, SE {se:.3f}, "
        f"z {(p_sde - p_sim) / se:.2f}, ODE max ε_g {ode_max}, ε_g(20) "
        f"{[float(o.eg[-1]) for o in odes]}; SDE {sde.message}"
    )
    for o in odes:  # the deterministic limit reaches α = 20 without blowing up
        assert o.success and o.alpha[-1] == pytest.approx(20.0), o.message
    assert max(ode_max) < 1.0, ode_max
    # a clear fraction of the simulations blows up (8 of 40 measured)
    assert 0.1 < p_sim < 0.9, p_sim
    assert abs(p_sde - p_sim) < 3.0 * max(se, 1e-3), (p_sim, p_sde, se)


@pytest.mark.slow
def test_drift_correction_predicts_the_finite_n_mean(tmp_path):
    """The O(1/N) drift predicts the simulations' mean (docs/finite-size.md, "The O(1/N)
    drift"). BP at N = 100 from a student near its teacher, 1000 simulations and 1000 SDE
    paths (α ≤ 20, every 2): the simulations' mean ε_g sits 1–2 % above the ODE's, an
    O(1/N) shift the leading-order SDE misses (measured: 2.9–4.6 standard errors below
    them over α = 6–20) and the corrected SDE predicts (|z| ≤ 0.8). Verdicts as ``odeflow
    compare``'s (:func:`odeflow.compare.sde_verdict`): mean within 3 SE of the difference
    at every record; the spread (leading order in both) within 3 sampling errors of a
    ratio of stds. ~110 s on 2 cores."""
    from odeflow.compare import sde_verdict

    sim, sde = _helpers().run_mean_pair(tmp_path)
    S = int(np.sum(~sim.diverged))
    assert S == 1000

    def verdict(res):
        return sde_verdict(
            sim.eg_mean[1:],
            sim.eg_std[1:],
            S,
            res.eg_mean[1:],
            res.eg_std[1:],
            res.n_alive[1:],
            spread_floor=0.0,
        )

    lead, corr = verdict(sde[False]), verdict(sde[True])
    assert corr["mean_ok"] and corr["mean_z"] <= 3.0, corr
    assert corr["spread_ok"], corr
    assert lead["mean_z"] > 3.0, lead  # the shift is resolved: the test can fail
