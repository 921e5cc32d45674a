"""Finite N (issue 24): plateau escape on SDE paths, and compare's SDE band.

Oracles: hand-built trajectories whose crossings are known exactly; the sampling
distribution of a mean and of a std for Gaussian samples; the simulation ensemble itself
(CLI test, once ``solve_sde`` takes ``N``).
"""

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import odeflow
from odeflow.compare import SDE_DEFAULTS, sde_options, sde_verdict
from odeflow.events import ExitTimes, exit_times, path_exit_alpha, plateau_exit
from theory.state import OrderParameters

ROOT = Path(__file__).resolve().parents[2]
HAVE_N = "N" in inspect.signature(odeflow.solve_sde).parameters


def _fake_sde(rs, alpha):
    """An SDEResult-like ensemble with Q = I, T = I and R = diag(r(α)) per path: its
    specialisation measure is exactly r(α)."""
    P, T = len(rs), len(alpha)
    R = np.zeros((P, T, 2, 2))
    for p, r in enumerate(rs):
        R[p, :, 0, 0] = R[p, :, 1, 1] = r
    Q = np.broadcast_to(np.eye(2), (P, T, 2, 2)).copy()
    eg = np.ones((P, T))
    alive = np.isfinite(R[:, :, 0, 0])
    init = OrderParameters.from_spec(2, 2, Q=np.eye(2), R=0.0, T=1.0, v=1.0, v_star=1.0)
    return SimpleNamespace(alpha=alpha, eg=eg, Q=Q, R=R, v=None, b=None, alive=alive, init=init)


def test_exit_times_on_paths_hand_oracle():
    alpha = np.linspace(0, 20, 41)  # records every 0.5
    nan_after = np.where(alpha < 8, alpha / 10, np.nan)  # "diverged" at α = 8
    res = _fake_sde([alpha / 10, alpha / 20, 0.01 + 0 * alpha, nan_after, alpha / 7], alpha)
    ev = plateau_exit(level=0.5)
    a = path_exit_alpha(res, ev)
    # r = α/10 crosses 0.5 at α = 5 (a record), α/20 at 10, α/7 at 3.5 (between records
    # 3.5 exactly: linear interpolation of a linear r is exact); never: NaN; the path that
    # stopped before its crossing: NaN (5 < 8, so it crossed first at 5)
    np.testing.assert_allclose(a, [5.0, 10.0, np.nan, 5.0, 3.5], atol=1e-12)
    e = exit_times(res, ev)
    assert e.n == 5 and e.n_exited == 4 and e.fraction == pytest.approx(0.8)
    ok = np.array([5.0, 10.0, 5.0, 3.5])
    assert e.mean == pytest.approx(ok.mean())
    assert e.std == pytest.approx(ok.std(ddof=1))
    assert e.sem == pytest.approx(ok.std(ddof=1) / 2)
    assert e.median == pytest.approx(5.0)
    d = e.to_dict()
    assert d["n_exited"] == 4 and len(d["alpha"]) == 5
    # a path that stops before it crosses never exits
    res2 = _fake_sde([np.where(alpha < 4, alpha / 10, np.nan)], alpha)
    assert np.isnan(path_exit_alpha(res2, ev)[0])
    assert np.isnan(ExitTimes([np.nan, np.nan]).mean)


def test_exit_on_eg_measure_and_bad_input():
    alpha = np.linspace(0, 10, 11)
    res = _fake_sde([alpha / 100], alpha)
    res.eg = np.array([0.4 - 0.03 * alpha])  # falls below 0.75 * 0.4 = 0.3 at α = 10/3
    a = path_exit_alpha(res, plateau_exit("eg", plateau_eg=0.4, fraction=0.75))
    assert a[0] == pytest.approx(10 / 3)
    res.alive = np.array([alpha < 3])  # dead before the crossing
    assert np.isnan(path_exit_alpha(res, plateau_exit("eg", plateau_eg=0.4, fraction=0.75))[0])
    with pytest.raises(ValueError, match="ensemble result"):
        path_exit_alpha(object(), plateau_exit())


def test_exit_times_on_a_real_sde_ensemble():
    """Plateau exit on the paths of odeflow.solve_sde (AFA: b noisy) equals the crossing
    found by hand on each path's recorded ε_g."""
    init = OrderParameters.from_spec(
        2, 2, Q=1.0, R=0.05, T=1.0, v=0.2, v_star=1.0, b=[0.4, -0.3], c=[0.2, 0.1], sigma_F2=0.1
    )
    r = odeflow.solve_sde(
        "afa", init, eta=1.0, eta_v=1.0, alpha_max=12, dt=0.02, n_paths=12, seed=3,
        record={"every": 0.25},
    )  # fmt: skip
    thr = 0.75 * r.eg[0, 0]
    a = exit_times(r, plateau_exit("eg", plateau_eg=r.eg[0, 0], fraction=0.75)).alpha
    for p in range(r.n_paths):
        d = r.eg[p] - thr
        j = np.nonzero((d[:-1] > 0) & (d[1:] <= 0))[0]
        if len(j) == 0:
            assert np.isnan(a[p])
            continue
        j = j[0]
        expect = np.interp(0.0, [d[j + 1], d[j]], [r.alpha[j + 1], r.alpha[j]])
        assert a[p] == pytest.approx(expect, abs=1e-12)
    assert np.isfinite(a).sum() >= 6  # most paths leave the plateau by α = 12


def test_sde_verdict_hand_numbers():
    sim_m, sim_s = np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.02, 0.04])
    # α0: no spread; the SDE differs by round-off only (left out of z)
    sde_m, sde_s = np.array([1e-16, 1.01, 2.0]), np.array([1e-17, 0.03, 0.02])
    v = sde_verdict(sim_m, sim_s, 4, sde_m, sde_s, 9, spread_floor=0.003)
    # z at α1: 0.01/sqrt(0.02²/4 + 0.03²/9) = 0.01/sqrt(1e-4 + 1e-4); α0 has no spread
    assert v["mean_z"] == pytest.approx(0.01 / math.sqrt(2e-4))
    assert v["n_judged"] == 2 and v["ratio_min"] == pytest.approx(0.5)
    assert v["ratio_max"] == pytest.approx(1.5)
    assert v["ratio_tol"] == pytest.approx(3 * math.sqrt(1 / 6 + 1 / 16))
    assert v["mean_ok"] is True and v["spread_ok"] is True  # 1.5 - 1 = 0.5 < 1.44
    # floor above every spread: no point judged
    v = sde_verdict(sim_m, sim_s, 4, sde_m, sde_s, 9, spread_floor=0.1)
    assert v["n_judged"] == 0 and v["spread_ok"] is None


def test_sde_verdict_sampling_oracle():
    """Same distribution: both verdicts pass; SDE spread doubled or mean shifted by many
    standard errors: the corresponding verdict fails. The samples are paths: one Gaussian
    per path (plus a little independent noise per α), so that neighbouring α are as
    correlated as in a learning curve (with 30 independent α the max of |z| over α would
    exceed 3 one time in six; the verdict is meant for correlated records)."""
    rng = np.random.default_rng(0)
    T, n, P = 30, 24, 200
    mu, sd = np.linspace(0.3, 0.1, T), np.linspace(0.01, 0.03, T)

    def stats(k, scale=1.0, shift=0.0):
        xi = 0.95 * rng.standard_normal((k, 1)) + 0.31 * rng.standard_normal((k, T))
        x = mu + shift + scale * sd * xi
        return x.mean(0), x.std(0, ddof=1)

    sm, ss = stats(n)
    dm, ds = stats(P)
    v = sde_verdict(sm, ss, n, dm, ds, P)
    assert v["mean_ok"] and v["spread_ok"] and v["n_judged"] == T
    assert 0.6 < v["ratio_min"] <= v["ratio_max"] < 1.4
    dm2, ds2 = stats(P, scale=2.0)
    assert sde_verdict(sm, ss, n, dm2, ds2, P)["spread_ok"] is False
    dm3, ds3 = stats(P, shift=0.05)  # 0.05 ≫ 3 × 0.03/√24
    v3 = sde_verdict(sm, ss, n, dm3, ds3, P)
    assert v3["mean_ok"] is False and v3["mean_z"] > 5


def test_sde_options():
    assert sde_options({}) is None and sde_options({"sde": False}) is None
    assert sde_options({"sde": True}) == SDE_DEFAULTS
    assert sde_options({"sde": {"n_paths": 50}})["n_paths"] == 50
    assert sde_options({"sde": {"noise_every": None, "noise_rtol": 0.02}})["noise_rtol"] == 0.02
    for bad, msg in [
        ({"paths": 3}, "unknown sde keys"),
        ({"n_paths": 1}, "n_paths"),
        ({"dt": 0}, "sde.dt"),
        ({"spread_floor": -1}, "spread_floor"),
        ({"seed": -2}, "sde.seed"),
        ({"noise_every": 0}, "noise_every"),
        ({"noise_every": 2.5}, "noise_every"),
        ({"noise_rtol": 0}, "noise_rtol"),
        ({"noise_rtol": "0.01"}, "noise_rtol"),
        (5, "must be a dict"),
    ]:
        with pytest.raises(ValueError, match=msg):
            sde_options({"sde": bad})


SMALL = {
    "rule": "bp",
    "N": 200,
    "alpha_max": 3,
    "seeds": 12,
    "eta": 1.0,
    "eta_v": 1.0,
    "record": {"every": 0.5},
}


def test_cli_compare_bad_sde_key(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({**SMALL, "sde": {"n_path": 10}}))
    r = subprocess.run(
        [sys.executable, "-m", "odeflow", "compare", str(cfg), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and "unknown sde keys" in r.stderr


@pytest.mark.skipif(not HAVE_N, reason="odeflow.solve_sde has no N in this version")
def test_cli_compare_sde_band(tmp_path):
    """The SDE band through the command line: mean and std next to the simulations',
    written to the npz, with a verdict line per order parameter."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**SMALL, "sde": {"n_paths": 64, "dt": 0.02, "seed": 1}}))
    out, png = tmp_path / "o.npz", tmp_path / "o.png"
    cmd = ["compare", str(cfg), "-o", str(out), "--plot", str(png), "--quiet"]
    r = subprocess.run(
        [sys.executable, "-m", "odeflow", *cmd],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "SDE band (N = 200, 64 paths" in r.stdout and png.stat().st_size > 0
    for k in ("eg", "Q", "R", "v"):  # a verdict line per order parameter
        assert any(line.startswith(f"{k} ") and "spread" in line for line in r.stdout.splitlines())
    with np.load(out) as z:
        for k in ("eg", "Q", "R", "v"):
            m, s = z[f"sde_{k}_mean"], z[f"sde_{k}_std"]
            assert m.shape == z[f"sim_{k}_mean"].shape and np.all(np.isfinite(m))
            # same measured state: the SDE starts exactly where the simulations do, with no
            # spread; afterwards the spread is O(1/sqrt N), like the simulations'
            np.testing.assert_allclose(m[0], z[f"sim_{k}_mean"][0], atol=1e-12)
            assert np.all(s[0] < 1e-12)
            assert np.all(s[1:].max(axis=0) > 0)
        assert z["sde_eg"].shape[0] == 64
        ss, ds = z["sim_eg_std"][1:], z["sde_eg_std"][1:]
        # the SDE's spread of eps_g is that of 12 sample streams within sampling error
        # (3 relative errors of a std ratio, sqrt(1/22 + 1/126)) at every recorded alpha
        tol = 3 * math.sqrt(1 / 22 + 1 / 126)
        assert np.all(np.abs(ds / ss - 1) <= tol + 0.15), ds / ss
        assert float(z["sde_eg_mean_z"]) <= 4.0
