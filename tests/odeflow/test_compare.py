"""odeflow.compare: simulation ensemble vs ODE from the same measured initial state."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from odeflow.compare import ODE_RULE, Comparison, compare, split_config

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "rule": "fa",
    "N": 300,
    "alpha_max": 6,
    "seeds": 4,
    "eta": 1.0,
    "eta_v": 1.0,
    "record": {"every": 0.25},
}


@pytest.fixture(scope="module")
def fa_cmp():
    return compare(dict(SMALL))


def test_compare_fa_agrees(fa_cmp):
    c = fa_cmp
    assert isinstance(c, Comparison) and c.success
    assert c.names == ("eg", "Q", "R", "v", "b")
    assert c.n_seeds == 4
    np.testing.assert_allclose(c.alpha, np.arange(0, 6.0001, 0.25))
    # same initial state: the ODE starts exactly at seed 0's measured state
    for k in ("Q", "R", "v", "b"):
        np.testing.assert_allclose(c.ode[k][0], c.sim_mean[k][0], atol=1e-12)
    # theory within 4 standard errors of the simulation mean, + 1/N. The mean of a finite-N
    # network departs from the N → ∞ ODE by O(1/N) (the fluctuations, O(1/√N) per seed, are
    # in SE); the sample mean of 4 seeds over 25 records stays within 4 SE (Student t with 3
    # degrees of freedom; measured max |mean − ODE| / SE: 1.4–2.0 over eg, Q, R, v). The old
    # allowance 4 SE + 1/√N (±0.058) let a dropped η² term of dQ through.
    for k in ("eg", "Q", "R", "v"):
        assert c.discrepancy[k] <= 4 * c.stderr[k] + 1 / 300, (k, c.discrepancy[k], c.stderr[k])
    assert c.discrepancy["b"] == 0 and c.relative("b") == 0  # FA: b is fixed
    # the discrepancy is what it says
    assert c.discrepancy["eg"] == pytest.approx(np.max(np.abs(c.sim_mean["eg"] - c.ode["eg"])))
    assert c.stderr["eg"] == pytest.approx(np.max(c.sim_std["eg"]) / 2)
    assert c.config["ode"]["rule"] == "fa" and c.config["same_init"] is True
    s = c.summary()
    for k in c.names:
        assert f"\n{k} " in s


def test_compare_save_and_plot(fa_cmp, tmp_path):
    out = fa_cmp.save(tmp_path / "c.npz")
    with np.load(out) as z:
        assert float(z["discrepancy_eg"]) == fa_cmp.discrepancy["eg"]
        assert z["sim_eg_mean"].shape == z["ode_eg"].shape == fa_cmp.alpha.shape
        assert json.loads(str(z["config_json"]))["rule"] == "fa"
        assert "init_Q" in z.files
    fig = fa_cmp.plot(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
    import matplotlib.pyplot as plt

    plt.close(fig)
    with pytest.raises(ValueError, match="npz"):
        fa_cmp.save(tmp_path / "c.json")


@pytest.mark.slow  # ~21 s (pepita simulations to divergence + the exact ODE)
def test_compare_pepita_uses_exact_ode_and_reports_divergence():
    assert ODE_RULE["pepita"] == "pepita" and ODE_RULE["pepita-forward"] == "pepita-forward"
    c = compare(
        {
            "rule": "pepita",
            "N": 1000,
            "alpha_max": 10,
            "seeds": 2,
            "eta": 1.0,
            "eta_v": 1.0,
            "sigma_F": 0.05,
            "record": {"every": 0.5},
        }
    )
    assert c.config["ode"]["rule"] == "pepita"
    # ‖F‖² = 2.5: simulations and the exact ODE both blow up before α = 14 (docs/quadrature.md)
    assert c.sim.diverged.all() and c.n_seeds == 0 and not c.success
    assert any("diverged" in n for n in c.notes)
    assert any("‖F‖²" in n for n in c.notes)


def test_compare_ode_options_and_errors():
    c = compare({**SMALL, "rule": "bp", "seeds": 2, "alpha_max": 2, "method": "rk4", "dt": 0.01})
    assert c.config["ode"]["method"] == "rk4" and "b" not in c.ode
    assert c.names == ("eg", "Q", "R", "v")
    sim_cfg, ode = split_config({**SMALL, "rtol": 1e-6})
    assert ode == {"rtol": 1e-6} and "rtol" not in sim_cfg
    with pytest.raises(ValueError, match="same_init"):
        compare({**SMALL, "same_init": False})
    with pytest.raises(ValueError, match="unknown config keys"):
        compare({**SMALL, "bogus": 1})
    with pytest.raises(ValueError, match="dict"):
        compare([1, 2])


def test_odeflow_does_not_import_simulations():
    code = (
        "import sys, odeflow, odeflow.compare, odeflow.__main__; "
        "assert 'simulations' not in sys.modules, 'simulations imported'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr


def test_cli_compare(tmp_path):
    from odeflow.__main__ import COMMANDS

    assert "compare" in COMMANDS
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**SMALL, "seeds": 2, "alpha_max": 2, "rtol": 1e-7}))
    out, png = tmp_path / "o.npz", tmp_path / "o.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "odeflow",
            "compare",
            str(cfg),
            "-o",
            str(out),
            "--plot",
            str(png),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "max|sim-ode|" in r.stdout and out.is_file() and png.is_file()
    # bad input: exit status 2 with a message
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SMALL, "same_init": False}))
    r = subprocess.run(
        [sys.executable, "-m", "odeflow", "compare", str(bad), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "same_init" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "odeflow", "compare", str(tmp_path / "nope.json"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "cannot read" in r.stderr


@pytest.mark.parametrize(
    "opts,name",
    [
        ({"rtol": -1}, "rtol"),
        ({"atol": 0}, "atol"),
        ({"rtol": "1e-8"}, "rtol"),
        ({"method": "rk5"}, "method"),
        ({"method": "rk4"}, "dt"),
        ({"method": "euler", "dt": -0.1}, "dt"),
        ({"quadrature": 5}, "quadrature"),
    ],
)
def test_compare_ode_options_checked_before_simulating(monkeypatch, opts, name):
    """A bad ODE option fails before the simulations run (issue 21: ``rtol: -1`` failed
    only after them): the simulation is replaced by one that fails the test if called."""
    import simulations.teacher_student as ts

    def no_simulation(*a, **k):
        raise AssertionError("the simulations ran before the ODE options were checked")

    monkeypatch.setattr(ts, "simulate", no_simulation)
    with pytest.raises(ValueError, match=name):
        compare({**SMALL, **opts})


def test_cli_compare_bad_rtol_fails_fast(tmp_path):
    """Through the command line: exit 2 naming rtol, on a config whose simulations alone
    would take minutes (N = 10⁵, 50 seeds, α = 200), so the timeout proves they did not run."""
    cfg = tmp_path / "big.json"
    big = {**SMALL, "N": 100_000, "seeds": 50, "alpha_max": 200, "rtol": -1}
    cfg.write_text(json.dumps(big))
    r = subprocess.run(
        [sys.executable, "-m", "odeflow", "compare", str(cfg), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "rtol" in r.stderr and "Traceback" not in r.stderr
