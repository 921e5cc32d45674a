"""solve_sde(..., N=...) for a deep student (docs/deep.md, "Finite N"): the finite-N noise
of every order parameter, every read-out matrix W[i] included.

Default suite: with N → ∞ the ensemble is the deterministic Euler solution of the deep
ODEs (odeflow.solve); one Euler–Maruyama step of many paths has the increments' mean
h·f(y₀) and covariance h·Σ(y₀)/N (Σ of theory.deep, itself checked against Monte Carlo in
tests/theory/test_deep_covariance.py); W's statistics, save/load, the command line and
the errors. Slow: the SDE against deep simulations from one measured initial state.
"""

import json

import numpy as np
import pytest

import odeflow
from odeflow.__main__ import main
from theory.deep import build_deep_system
from theory.state import OrderParameters

# a small fixed rule for drift and Σ alike: the wiring, not the quadrature, is under test
GH = {"scheme": "gauss-hermite", "n": 4, "rtol": 1.0}
WIDTHS = [2, 3]


def _state(rule="bp"):
    kw = dict(
        Q=np.array([[1.0, 0.2], [0.2, 0.8]]),
        R=np.array([[0.3, 0.1], [0.05, 0.4]]),
        T=np.eye(2),
        v=np.array([0.5, -0.3, 0.4]),
        v_star=np.ones(2),
        W=[np.array([[0.7, -0.4], [0.2, 0.9], [-0.5, 0.3]])],
    )
    if rule == "afa":
        kw.update(b=np.array([0.3, -0.2]), c=np.array([0.1, 0.05]), sigma_F2=0.09)
    return OrderParameters(**kw)


def _flat(res, i, rule):
    """The flat states (P, n) of record ``i`` in the deep layout's order."""
    P = res.n_paths
    iu = np.triu_indices(2)
    parts = [res.Q[:, i][:, iu[0], iu[1]], res.R[:, i].reshape(P, -1), res.v[:, i]]
    parts += [w[:, i].reshape(P, -1) for w in res.W]
    if rule == "afa":
        parts.append(res.b[:, i])
    return np.concatenate(parts, axis=1)


def test_huge_N_is_the_deterministic_euler_solution():
    """N = 1e24: every path equals solve(method='euler') with the same dt and rule. The
    noise per step is √(h Σ_ii/N) ≤ 1e-12 · √(max Σ_ii) here, so after 20 steps the
    paths may differ from the ODE by ~1e-11 plus round-off: tolerance 1e-10. Measured: the
    final W[0] differs by 1.2e-13 at N = 1e24 and by 1.2e-4 at N = 1e6 (the noise, ∝ 1/√N:
    the test sees it)."""
    st = _state()
    kw = dict(eta=1.0, eta_W=0.5, alpha_max=1.0, quadrature=GH, record={"every": 0.25})
    ode = odeflow.solve("bp", st, method="euler", dt=0.05, **kw)
    sde = odeflow.solve_sde("bp", st, dt=0.05, n_paths=2, seed=1, N=1e24, noise_every=1, **kw)
    assert sde.status == 0 and sde.params["model"] == "deep"
    assert sde.params["widths"] == WIDTHS and sde.params["eta_W"] == 0.5
    assert sde.W[0].shape == (2, 5, 3, 2)
    for p in range(2):
        np.testing.assert_allclose(sde.W[0][p], ode.W[0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(sde.v[p], ode.v, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sde.Q[p], ode.Q, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sde.eg[p], ode.eg, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sde.mean("W0"), ode.W[0], rtol=0, atol=1e-10)
    noisy = odeflow.solve_sde("bp", st, dt=0.05, n_paths=2, seed=1, N=1e6, **kw)
    assert np.max(np.abs(noisy.W[0][0, -1] - ode.W[0][-1])) > 1e-5


@pytest.mark.parametrize("rule", ["bp", "afa"])
def test_one_step_has_the_drift_and_the_covariance(rule):
    """Increments of one step h over P = 2000 paths: mean h f(y₀) within 3 SE entrywise;
    sample covariance within 4 SE of h Σ(y₀)/N entrywise (SE of a Gaussian sample
    covariance √((Σ_ii Σ_jj + Σ_ij²)/P); 4, not 3: there are n(n+1)/2 ≈ 100 entries, so one
    beyond 3 SE is expected) and RMS z < 1.5 (RMS of ~100 z's of unit variance is 1 ± 0.1,
    correlations widen it)."""
    st = _state(rule)
    N, h, P = 500.0, 0.05, 2000
    res = odeflow.solve_sde(
        rule, st, eta=1.0, eta_W=0.7, alpha_max=h, dt=h, n_paths=P, seed=3, N=N,
        record={"alpha": [0.0, h]}, quadrature=GH,
    )  # fmt: skip
    assert res.status == 0 and res.N == N
    sysd = build_deep_system(rule, WIDTHS, 2, "erf", GH)
    y0 = sysd.layout.pack(st)
    d = _flat(res, 1, rule) - y0[None, :]
    m_f, Sig = sysd.noise_system().evaluate(st, 1.0, 1.0, 0.0, N=N, eta_W=0.7)
    f = np.empty_like(y0)
    sysd.rhs(y0, sysd.params(st, 1.0, 1.0, 0.0, eta_W=0.7), f)
    # Σ's mean is the drift on the same nodes, except b's (Stein's lemma in the drift,
    # regression in Σ: equal only to the rule's accuracy; tests/theory/test_deep_covariance)
    nb = len(y0) - (2 if rule == "afa" else 0)
    np.testing.assert_allclose(m_f[:nb], f[:nb], rtol=0, atol=1e-12)
    Sexp = h * Sig / N
    assert np.all(np.diag(Sexp)[-6:] > 0)  # W[0] is noisy
    m = d.mean(axis=0)
    assert np.all(np.abs(m - h * f) < 3.0 * np.sqrt(np.diag(Sexp) / P) + 1e-15), (m, h * f)
    c = d - m
    Shat = c.T @ c / (P - 1)
    se = np.sqrt((np.outer(np.diag(Sexp), np.diag(Sexp)) + Sexp**2) / P)
    z = (Shat - Sexp) / np.where(se > 0, se, 1.0)
    assert np.all(np.abs(z) < 4.0), z
    assert np.sqrt(np.mean(z**2)) < 1.5, z


def test_W_statistics_state_and_save(tmp_path):
    st = _state()
    res = odeflow.solve_sde(
        "bp", st, eta=1.0, alpha_max=0.2, dt=0.05, n_paths=5, seed=2, N=200,
        record={"every": 0.1}, quadrature=GH,
    )  # fmt: skip
    W = res.W[0]
    np.testing.assert_allclose(res.mean("W0"), W.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(res.std("W0"), W.std(axis=0, ddof=1), rtol=1e-12)
    s = res.state(3, 2)
    assert s.widths == WIDTHS
    np.testing.assert_array_equal(s.W[0], W[3, 2])
    with pytest.raises(ValueError, match="allowed: eg, Q, R, v, b, u, W0"):
        res.mean("W1")
    for ext in ("npz", "json"):
        back = odeflow.SDEResult.load(res.save(tmp_path / f"r.{ext}"))
        np.testing.assert_array_equal(back.W[0], W)
        np.testing.assert_array_equal(back.eg, res.eg)
        assert back.init.widths == WIDTHS and back.params["widths"] == WIDTHS
    import numpy as _np

    with _np.load(tmp_path / "r.npz") as z:
        assert int(z["W_count"]) == 1
        np.testing.assert_allclose(z["W0_mean"], res.mean("W0"))
        np.testing.assert_allclose(z["W0_std"], res.std("W0"))


def test_deep_without_N_is_refused_saying_what_works():
    st = _state("afa")
    with pytest.raises(ValueError, match="deep student .*needs N"):
        odeflow.solve_sde("afa", st, eta=0.5, alpha_max=1.0, dt=0.1, n_paths=2)


def _config(widths=WIDTHS):
    st = _state()
    return {
        "rule": "bp", "eta": 1.0, "eta_W": 0.5, "alpha_max": 0.2, "dt": 0.05, "n_paths": 4,
        "seed": 7, "N": 300, "widths": widths, "record": {"every": 0.1}, "quadrature": GH,
        "init": {"Q": st.Q.tolist(), "R": st.R.tolist(), "T": st.T.tolist(),
                 "v": st.v.tolist(), "v_star": st.v_star.tolist(),
                 "W": [w.tolist() for w in st.W]},
    }  # fmt: skip


def test_cli_sde_round_trip(tmp_path, capsys):
    """``python -m odeflow sde`` of a deep config writes what solve_sde returns (same seed:
    the same paths)."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_config()))
    out = tmp_path / "o.npz"
    assert main(["sde", str(path), "-o", str(out), "--quiet"]) == 0
    assert "paths" in capsys.readouterr().out
    res = odeflow.SDEResult.load(out)
    direct = odeflow.solve_sde(
        "bp", _state(), eta=1.0, eta_W=0.5, alpha_max=0.2, dt=0.05, n_paths=4, seed=7,
        N=300, record={"every": 0.1}, quadrature=GH,
    )  # fmt: skip
    assert res.W[0].shape == (4, 3, 3, 2) and res.params["N"] == 300
    np.testing.assert_array_equal(res.W[0], direct.W[0])
    np.testing.assert_array_equal(res.eg, direct.eg)


def test_wrong_shape_W_same_error_as_solve(tmp_path, capsys):
    cfg = _config()
    cfg["init"]["W"][0] = np.zeros((2, 2)).tolist()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    msg = r"init W\[0\] must have shape \(3, 2\) for widths \[2, 3\], got shape \(2, 2\)"
    assert main(["sde", str(path), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 2
    err_sde = capsys.readouterr().err
    solve_cfg = {k: v for k, v in cfg.items() if k not in ("n_paths", "seed", "N")}
    path.write_text(json.dumps(solve_cfg))
    assert main(["solve", str(path), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 2
    err_solve = capsys.readouterr().err
    import re

    line = [ln for ln in err_sde.splitlines() if re.search(msg, ln)]
    assert line and re.search(msg, err_solve), (err_sde, err_solve)
    init = dict(cfg["init"])
    with pytest.raises(ValueError, match=msg):
        odeflow.solve_sde("bp", init, eta=1.0, widths=WIDTHS, alpha_max=0.1, dt=0.05,
                          n_paths=2, N=100)  # fmt: skip


# ------------------------------------------------------------------ slow: vs simulations
#: drift and Σ of the slow test: scrambled Sobol, 4096 points in the K1 + M = 4 fields.
#: Measured against 2¹⁷ points at a generic widths-[2, 2] state: ε_g error 1.3e-5, largest
#: right-hand-side error 1.2e-4 (0.17 % of its largest entry), far below the 3-SE band of
#: the means (≥ 1.5e-3 where judged). Gauss–Hermite with 6 points per field is NOT enough
#: here (ε_g off by 0.8 % at the simulations' initial state, 3 SE of the early means).
SOBOL_4K = {"scheme": "sobol", "n": 4096, "rtol": 1.0}


def _deep_pair(N=500, seeds=24, alpha_max=20.0, n_paths=48, seed=11):
    """(simulation, SDE) from the simulations' measured initial state: BP, erf, widths
    [2, 2] (L = 3), M = 2, η = η_v = η_W = 1, seeds sharing their initial weights and
    differing in their sample streams (exactly the spread the SDE describes)."""
    from simulations.deep_student import simulate

    sim = simulate(
        dict(
            rule="bp", N=N, widths=[2, 2], M=2, activation="erf", eta=1.0, eta_v=1.0,
            eta_W=1.0, sigma=0.0, alpha_max=alpha_max, record={"every": 0.5}, seeds=seeds,
            same_init=True,
            init={"seed": 0, "w_scale": 1.0, "w_star_scale": 1.0, "v_scale": 0.1,
                  "v_star": 1.0},
        )
    )  # fmt: skip
    sde = odeflow.solve_sde(
        "bp", sim.initial_state(0), eta=1.0, eta_v=1.0, eta_W=1.0, alpha_max=alpha_max,
        dt=0.02, n_paths=n_paths, seed=seed, N=N, record={"alpha": list(sim.alpha)},
        quadrature=SOBOL_4K, noise_every=2,  # as measured (docs/deep.md)
    )  # fmt: skip
    return sim, sde


@pytest.mark.slow
def test_bp_L3_spread_follows_deep_simulations():
    """BP, L = 3 (K1 = K2 = M = 2), N = 500, 24 simulations vs 48 SDE paths (dt = 0.02, Σ
    every Δα = 0.05 → 2 steps). Where the simulations' std of ε_g exceeds 0.003: std
    ratio SDE/sim within 3/√(2(S−1)) = ±0.44 of 1 (the sampling error of a std over S = 24
    seeds; the SDE's, over 48 paths, adds ±0.31 in quadrature, so the band is the
    simulations' alone as in the committee's test) and means within 3 standard errors.
    The simulations' ε_g is their own quasi-Monte Carlo estimate (2¹⁴ points, ~1e-5),
    independent of the theory's quadrature. Measured (SDE seed 11; 574 s on a loaded
    two-core machine): judged α = 6.5–20 (28 records), std ratios 0.59–0.95 and means
    within 1.19 SE. The low ratios over α = 6.5–11.5 (0.59–0.66, near the band's edge
    0.56) are a real deficit of the leading-order SDE during the plateau escape at
    N = 500, shared by the two-layer network from the same state (docs/deep.md: 72
    simulations give 0.68–0.74 for L = 3 and 0.72–0.77 for widths [2]); with this band
    the test passes, and it is not loosened."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from sde_validation import compare_stats

    sim, sde = _deep_pair()
    assert sde.status == 0, sde.message
    c = compare_stats(sim, sde)
    print(
        f"\nbp L=3 N=500: S = {c['S']}, P = {int(np.min(sde.n_alive))}, judged α "
        f"{c['alpha'].min():g}–{c['alpha'].max():g} ({len(c['alpha'])} records): std ratio "
        f"{c['ratio'].min():.2f}–{c['ratio'].max():.2f} (band ±{c['band']:.2f}), "
        f"max |z(mean)| {np.max(np.abs(c['zmean'])):.2f}"
    )
    for a, r, z in zip(c["alpha"], c["ratio"], c["zmean"]):
        print(f"  α = {a:5.1f}: std ratio {r:.2f}, z(mean) {z:+.2f}")
    assert c["S"] >= 24 and len(c["alpha"]) >= 5, (c["S"], c["alpha"])
    bad = np.abs(c["ratio"] - 1.0) > c["band"]
    assert not bad.any(), (c["alpha"][bad], c["ratio"][bad], c["band"])
    assert np.all(np.abs(c["zmean"]) < 3.0), (c["alpha"], c["zmean"])


def _init_json(state):
    return {
        "Q": state.Q.tolist(),
        "R": state.R.tolist(),
        "T": state.T.tolist(),
        "v": state.v.tolist(),
        "v_star": state.v_star.tolist(),
        "W": [w.tolist() for w in state.W],
    }


def test_sde_sweep_of_a_deep_bp_point_equals_the_direct_solve_sde(tmp_path):
    """An SDE sweep over a deep bp student (no feedback vector b: no alignment columns):
    each point is the direct solve_sde with the same arguments and seed, to round-off."""
    from odeflow.sweep import sweep

    base = {"rule": "bp", "widths": WIDTHS, "eta": 0.5, "N": 1000, "alpha_max": 0.4,
            "dt": 0.05, "n_paths": 3, "seed": 4, "record": {"every": 0.2},
            "quadrature": GH, "noise_quadrature": GH, "init": _init_json(_state())}  # fmt: skip
    res = sweep({"base": base, "grid": {"eta_W": [0.5]}}, tmp_path / "sw", workers=0)
    direct = odeflow.solve_sde("bp", _state(), eta=0.5, eta_W=0.5, widths=WIDTHS, N=1000,
                               alpha_max=0.4, dt=0.05, n_paths=3, seed=4,
                               record={"every": 0.2}, quadrature=GH,
                               noise_quadrature=GH)  # fmt: skip
    (status,) = res.column("status")
    (eg,) = np.asarray(res.column("eg_final"), dtype=float)
    (cos,) = np.asarray(res.column("cos_vb_final"), dtype=float)
    assert status == "ok"
    assert abs(eg - direct.eg_mean[-1]) < 1e-12
    assert np.isnan(cos)  # bp has no b


def test_compare_gives_the_sde_band_for_a_deep_student():
    """``odeflow compare`` with "widths" and "sde": the SDE starts from the simulation's
    measured state (at α = 0 its mean equals the simulations' mean to round-off, its spread
    is zero), and every read-out matrix gets a band and a verdict."""
    from odeflow.compare import compare

    c = compare(
        {"rule": "bp", "widths": [2, 3], "M": 2, "N": 300, "alpha_max": 0.4, "seeds": 2,
         "eta": 1.0, "record": {"every": 0.2}, "quadrature": GH,
         "sde": {"n_paths": 4, "dt": 0.05, "noise_quadrature": GH}}
    )  # fmt: skip
    assert "W0" in c.sde_mean and "W0" in c.sde_verdict
    np.testing.assert_allclose(c.sde_mean["W0"][0], c.sim_mean["W0"][0], atol=1e-12)
    np.testing.assert_allclose(c.sde_std["W0"][0], 0.0, atol=1e-12)
    assert np.all(np.isfinite(c.sde_mean["eg"]))
