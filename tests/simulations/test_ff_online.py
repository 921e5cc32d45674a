"""Online Forward-Forward simulation (simulations/ff_online.py) against the FF theory
(theory/ff.py), the command lines, and config errors.

Theory against simulation. The ODE is the N → ∞ limit; at finite N the ensemble mean is
offset by finite-size corrections of order 1/N, which the symmetry breaking of FF's early
dynamics amplifies (measured at N = 1000, K = 2: the mean of Q, R, u 2–4 standard errors
off the ODE). So every run starts from one and the same state at N ∈ {N₁, 2N₁, 4N₁}
(``init.state``: weights built with exactly those overlaps), the ensemble mean of the
order parameters Q, R, u at every recorded α is extrapolated to 1/N → 0 by a weighted
least-squares line in 1/N (weights 1/SE², SE = std/√S over S seeds), and the ODE must lie
within 3 standard errors of the extrapolated mean, for every component at every record.
(The intercept's standard error comes from the fit: about 2.5× the SE at the largest N.)

ε_g is a function of the state, checked through it and, directly, to 0.01 absolute at the
largest N — not to 3 SE, because the *mean over seeds* of ε_g is biased at finite N in a
way the 1/N extrapolation does not remove: ε_g has a kink where a label weight u_k
crosses 0 (the sign of unit k's vote flips), and the mean of a kinked function is off by
O(std) = O(1/√N) there (measured: 0.002, 3–4 SE, at α = 3 for N = 1000, 2000 and 4000
alike); late in learning ε_g falls steeply (|dε_g/dα| ≈ 0.03), so the slightly earlier
escape of finite-N runs shows as up to 0.0074 (5 SE) at N = 4000 while Q, R and u stay
within 2.6 SE.
"""

import json
import math

import numpy as np
import pytest

import odeflow
from simulations.ff_online import simulate_ff, validate_ff_config
from simulations.teacher_student import simulate

BASE = dict(
    rule="ff",
    eta=1.0,
    eta_u=1.0,
    theta=1.0,
    same_init=True,
    init={"seed": 3, "w_scale": 1.0, "w_star_scale": 1.0, "u_scale": 0.1, "v_star": 1.0},
)


def _start(K, M, seed, D=1000):
    """A start like the simulations' own (docs/ff-theory.md defaults): overlaps of Gaussian
    vectors w, w* ~ N(0, I_D), u ~ 0.1·N(0, 1)."""
    rng = np.random.default_rng(seed)
    ws, w = rng.standard_normal((M, D)), rng.standard_normal((K, D))
    return (
        {"Q": (w @ w.T / D).tolist(), "R": (w @ ws.T / D).tolist(), "T": (ws @ ws.T / D).tolist()},
        (0.1 * rng.standard_normal(K)).tolist(),
    )


def _extrapolated_agreement(K, M, init_seed, N1, seeds, alpha_max, every, activation="erf"):
    state, u0 = _start(K, M, init_seed)
    Ns = [N1, 2 * N1, 4 * N1]
    runs = [
        simulate(
            {
                **BASE,
                "N": N,
                "K": K,
                "M": M,
                "alpha_max": alpha_max,
                "record": {"every": every},
                "seeds": seeds,
                "activation": activation,
                "init": {"state": state, "u": u0, "v_star": 1.0},
            }
        )
        for N in Ns
    ]
    for sim in runs:
        assert not sim.diverged.any()
    init = runs[0].initial_state(0)
    ode = odeflow.solve(
        "ff",
        init,
        eta=1.0,
        eta_u=1.0,
        theta=1.0,
        alpha_max=alpha_max,
        activation=activation,
        record={"alpha": runs[0].alpha},
        rtol=1e-8,
        atol=1e-10,
    )
    assert ode.status == 0, ode.message
    x = 1.0 / np.array(Ns, dtype=float)
    worst = {}
    for name in ("Q", "R", "u"):
        Y = np.array([s.mean(name) for s in runs])
        E = np.array([s.std(name) / math.sqrt(len(s.seeds)) for s in runs])
        Y, E = Y[:, 1:], E[:, 1:]  # α = 0: every run starts equal
        xx = x.reshape((-1,) + (1,) * (Y.ndim - 1))
        w = 1.0 / E**2  # weighted least squares in 1/N
        Sw, Sx, Sxx = w.sum(0), (w * xx).sum(0), (w * xx**2).sum(0)
        Sy, Sxy = (w * Y).sum(0), (w * xx * Y).sum(0)
        det = Sw * Sxx - Sx**2
        a = (Sxx * Sy - Sx * Sxy) / det  # the mean at 1/N → 0
        se_a = np.sqrt(Sxx / det)
        worst[name] = float(np.max(np.abs(getattr(ode, name)[1:] - a) / se_a))
    eg_dev = float(np.max(np.abs(ode.eg - runs[-1].eg_mean)))
    print("worst |ODE - extrapolated mean| / SE:", worst, "max |Δε_g| at N =", Ns[-1], eg_dev)
    assert max(worst.values()) <= 3.0, worst
    assert eg_dev <= 0.01, eg_dev
    return runs, ode


# ~20–50 s: in the slow job, to keep the default suite under 10 minutes on 2 cores
@pytest.mark.slow
def test_ff_simulation_follows_the_ode_small():
    """Default suite: K = 2, M = 1, N ∈ {250, 500, 1000}, 20 seeds, α ≤ 10; ε_g falls."""
    runs, ode = _extrapolated_agreement(2, 1, 0, 250, 20, 10.0, 1.0)
    assert ode.eg[0] > 0.45 and ode.eg[-1] < ode.eg[0] - 0.05


@pytest.mark.slow
@pytest.mark.parametrize("K,M,init_seed", [(2, 1, 0), (2, 1, 3), (2, 2, 0), (2, 2, 3)])
def test_ff_simulation_follows_the_ode(K, M, init_seed):
    """The issue's check: (K, M) = (2, 1) and (2, 2), α ≤ 20, N ∈ {1000, 2000, 4000},
    40 seeds each, two starting states each (about 2 min per case).

    Measured worst |ODE − extrapolated mean| / SE over Q, R, u: 2.56 for (2, 1) from start 0
    (where the N = 1000 mean alone is up to 3.9 SE off); max |Δε_g| 0.0074."""
    runs, ode = _extrapolated_agreement(K, M, init_seed, 1000, 40, 20.0, 1.0)
    assert ode.eg[0] > 0.45 and ode.eg[-1] < 0.3


def test_eg_from_order_parameters_matches_test_set():
    """ε_g evaluated from the measured order parameters (quadrature) agrees with the error
    on 20000 fixed test inputs (binomial SE ≤ 0.0036; 4 SE + 2e-3 for the finite-N
    difference between a measured overlap and the test-set fields)."""
    sim = simulate_ff(
        {
            **BASE,
            "N": 400,
            "K": 2,
            "M": 2,
            "alpha_max": 8.0,
            "record": {"every": 2.0},
            "seeds": 2,
            "mc_test": 20000,
            "init": {**BASE["init"], "v_star": [1.0, 0.6]},
        }
    )
    assert sim.eg_mc is not None
    dev = np.abs(sim.eg_mc - sim.eg)
    assert np.all(dev <= 4 * sim.eg_mc_se + 2e-3), (sim.eg_mc, sim.eg)


def test_reproducible_and_initial_state():
    cfg = {
        **BASE,
        "N": 200,
        "K": 3,
        "M": 1,
        "alpha_max": 1.0,
        "seeds": [4, 7],
        "record": {"every": 0.5},
    }
    a, b = simulate_ff(cfg), simulate_ff({**cfg, "threads": 1})
    np.testing.assert_array_equal(a.u, b.u)
    np.testing.assert_array_equal(a.Q, b.Q)
    st = a.initial_state(1)
    assert st.u is not None and st.K == 3 and np.allclose(st.Q, a.Q[1, 0])
    assert not np.allclose(a.u[0, -1], a.u[0, 0])  # the label weights learn


def test_exact_initial_state():
    """init.state: the weights are built with exactly the requested overlaps at any N (and
    u from init.u, a number broadcast to every unit)."""
    st = {"Q": [[1.2, 0.3], [0.3, 0.8]], "R": [[0.5], [-0.2]], "T": [[1.1]]}
    for N in (50, 700):
        sim = simulate(
            {
                **BASE,
                "N": N,
                "alpha_max": 0.1,
                "seeds": 2,
                "quadrature": False,
                "mc_test": 100,
                "init": {"state": st, "u": 0.25},
            }
        )
        for i in range(2):
            s0 = sim.initial_state(i)
            np.testing.assert_allclose(s0.Q, st["Q"], atol=1e-12)
            np.testing.assert_allclose(s0.R, st["R"], atol=1e-12)
            np.testing.assert_allclose(s0.T, st["T"], atol=1e-12)
            np.testing.assert_array_equal(s0.u, [0.25, 0.25])


def test_config_errors():
    good = {**BASE, "N": 100, "alpha_max": 1.0}
    validate_ff_config(good)
    bad = [
        ({"theta": 0.0}, "theta must be > 0"),
        ({"theta": -1}, "theta must be > 0"),
        ({"activation": "softsign"}, "unsupported activation 'softsign'"),
        ({"eta_v": 0.5}, "unknown config keys \\['eta_v'\\]"),
        ({"init": {"v_star": 0.0}}, "non-zero"),
        ({"init": {"u": [1.0]}}, "init.u must be a number .*or a list of K=2"),
        (
            {"init": {"state": {"Q": [[1.0, 0.0], [0.0, 1.0]], "R": [[0.0], [0.0]]}}},
            "init.state must be a dict with exactly the keys Q",
        ),
        (
            {"init": {"state": {"Q": [[1.0]], "R": [[0.0], [0.0]], "T": [[1.0]]}}},
            "init.state.Q must be a 2×2 array",
        ),
        (
            {"init": {"state": {"Q": [[1.0, 0.0], [0.0, 1.0]], "R": [[2.0], [0.0]], "T": [[1.0]]}}},
            "positive semi-definite",
        ),
    ]
    for over, msg in bad:
        with pytest.raises(ValueError, match=msg):
            simulate({**good, **over})


@pytest.mark.slow  # ~35 s: the FF command lines from cold
def test_command_lines(tmp_path):
    """python -m simulations run, python -m odeflow solve --init-from, compare (rule ff)."""
    from odeflow.__main__ import main as ode_main
    from simulations.run import main as sim_main

    cfg = {**BASE, "N": 300, "K": 2, "M": 1, "alpha_max": 2.0, "record": {"every": 1.0}, "seeds": 2}
    (tmp_path / "sim.json").write_text(json.dumps(cfg))
    assert sim_main([str(tmp_path / "sim.json"), "-o", str(tmp_path / "sim.npz"), "--quiet"]) == 0
    solve_cfg = {
        "rule": "ff",
        "eta": 1.0,
        "eta_u": 1.0,
        "theta": 1.0,
        "alpha_max": 2.0,
        "record": {"every": 1.0},
    }
    (tmp_path / "ode.json").write_text(json.dumps(solve_cfg))
    assert (
        ode_main(
            [
                "solve",
                str(tmp_path / "ode.json"),
                "-o",
                str(tmp_path / "ode.npz"),
                "--init-from",
                str(tmp_path / "sim.npz"),
                "--quiet",
            ]
        )
        == 0
    )
    res = odeflow.Result.load(tmp_path / "ode.npz")
    with np.load(tmp_path / "sim.npz") as z:
        np.testing.assert_allclose(res.u[0], z["init_u"])
        np.testing.assert_allclose(res.eg[0], z["eg_mean"][0], atol=1e-12)
    # an init given in the config, without v (FF has no second layer)
    solve_cfg["init"] = {
        "Q": [[1, 0], [0, 1]],
        "R": [[0.1], [0]],
        "T": [[1]],
        "u": [0.1, 0.0],
        "v_star": [1],
    }
    (tmp_path / "ode2.json").write_text(json.dumps(solve_cfg))
    assert (
        ode_main(
            ["solve", str(tmp_path / "ode2.json"), "-o", str(tmp_path / "ode2.json.npz"), "--quiet"]
        )
        == 0
    )
    solve_cfg["theta"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(solve_cfg))
    assert (
        ode_main(["solve", str(tmp_path / "bad.json"), "-o", str(tmp_path / "b.npz"), "--quiet"])
        == 2
    )
    assert (
        ode_main(["compare", str(tmp_path / "sim.json"), "-o", str(tmp_path / "c.npz"), "--quiet"])
        == 0
    )
    with np.load(tmp_path / "c.npz") as z:
        assert {"ode_u", "sim_u_mean", "ode_gap", "sim_loss_mean"} <= set(z.files)
