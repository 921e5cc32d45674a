"""The simulation kernel generated from a theory.rules.Rule (simulations.kernelgen, issue 12).

Oracles: (1) the hand-written integer-code kernel that the generated one replaced (kept
verbatim in ``handwritten_kernel.py``); (2) step-by-step NumPy updates written from
the rule's definition; (3) the ODEs derived from the same Rule.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import odeflow
from simulations import ensemble
from simulations.teacher_student import initial_weights, simulate, standard_normal, validate_config
from theory.rules import load_rule

HERE = Path(__file__).parent
RULES_FILE = HERE / "data" / "my_rules.py"
ROOT = HERE.parent.parent


def _spec(name):
    return f"{RULES_FILE}:{name}"


# --------------------------------------------------- built-ins: same trajectories as before
@pytest.mark.parametrize("act", ["erf", "linear", "relu", "tanh", "sigmoid"])
def test_builtin_kernels_reproduce_the_handwritten_kernel(act):
    """bp, fa, afa, pepita, pepita-forward, each generated from its Rule, give exactly the
    trajectories (w, v, b and the random stream) of the hand-written integer-code kernel they
    replaced (kept verbatim in handwritten_kernel.py), from the same state over several
    blocks: the generated code performs the same floating-point operations in the same
    order. Both are compiled here from the same activation functions."""
    from handwritten_kernel import CODES, _run_block

    from simulations import kernelgen
    from simulations import teacher_student as ts
    from theory.observables import ACTIVATIONS

    N, K, M = 150, 3, 2
    a = ACTIVATIONS.index(act)
    rng = np.random.default_rng(1)
    w0, ws = rng.standard_normal((K, N)), rng.standard_normal((M, N))
    v0, vs, F = 0.3 * rng.standard_normal(K), np.ones(M), 0.1 * rng.standard_normal(N)
    b0 = rng.standard_normal(K)
    for rule, code in CODES.items():
        run_new = ts._kernel(kernelgen.resolve_rule(rule))
        states = []
        for run in (
            lambda *x: _run_block(code, a, *x[:-2], x[-1]),  # noqa: B023 (called in this loop)
            lambda *x: run_new(a, *x),  # noqa: B023 (called in this loop)
        ):
            st, xb, work = ensemble.sample_state(3), np.zeros((2, N)), np.zeros((6, K))
            w, v, b = w0.copy(), v0.copy(), b0.copy()
            done = [
                run(n, st, xb, w, ws, v, vs, F, b, 0.6, 0.4, 0.2, np.zeros(1), work)
                for n in (1, 37, 200)
            ]
            states.append((done, w, v, b, st, work[5]))
        for old, new in zip(*states):
            assert np.array_equal(np.asarray(old), np.asarray(new)), (rule, act)
        assert not np.allclose(states[0][1], w0)


# ------------------------------------------------- a user rule: exact against a numpy oracle
def _oracle(cfg, rule, seed, steps):
    """Updates of the Rule written out by hand: w ← (1 − ηκ/N) w − (η/√N) δ x,
    v ← v − (η_v/N) e g(λ) (or fixed); δ of fa-decay/afa-decay/bp-scaled."""
    from scipy.special import erf

    cfg = validate_config(cfg)
    N, eta, eta_v, sigma = cfg["N"], cfg["eta"], cfg["eta_v"], cfg["sigma"]
    prm = {**rule.params, **cfg["rule_params"]}
    kappa = float(rule.weight_decay.subs(prm)) if rule.weight_decay != 0 else 0.0
    W = initial_weights(cfg, seed)
    w, v, ws, vs, F, bf = W.w.copy(), W.v.copy(), W.w_star, W.v_star, W.F, W.b.copy()
    draws = standard_normal(ensemble.sample_state(seed), (steps, N + 1))
    sq = math.sqrt(N)
    g = lambda z: erf(z / math.sqrt(2))  # noqa: E731
    gp = lambda z: math.sqrt(2 / math.pi) * np.exp(-z * z / 2)  # noqa: E731
    out_w, out_v, out_b = [w.copy()], [v.copy()], [w @ F / sq]
    for t in range(steps):
        x, zeta = draws[t, :N], draws[t, N]
        lam, nu = w @ x / sq, ws @ x / sq
        e = v @ g(lam) - (vs @ g(nu) + sigma * zeta)
        if rule.name == "fa-decay":
            d = bf * gp(lam) * e
        elif rule.name == "afa-decay":
            d = (w @ F / sq) * gp(lam) * e
        else:  # bp-scaled
            d = -prm["c_s"] * v * gp(lam) * e / 2
        dv = 0.0 if rule.second_layer == "fixed" else -(eta_v / N) * e * g(lam)
        w = w - (eta * kappa / N) * w - (eta / sq) * np.outer(d, x)
        v = v + dv
        out_w.append(w.copy())
        out_v.append(v.copy())
        out_b.append(w @ F / sq)
    return np.array(out_w), np.array(out_v), np.array(out_b)


@pytest.mark.parametrize(
    "name,rule_params", [("fa_decay", {"kappa": 3.0}), ("afa_decay", {}), ("bp_scaled", {})]
)
def test_user_rule_steps_match_numpy_oracle(name, rule_params):
    rule = load_rule(_spec(name))
    N, steps = 7, 5
    cfg = dict(
        rule=rule,
        rule_params=rule_params,
        N=N,
        K=2,
        M=3,
        eta=0.8,
        eta_v=0.7,
        sigma=0.3,
        sigma_F=0.4,
        alpha_max=steps / N,
        seeds=[4],
        record={"alpha": [t / N for t in range(steps + 1)]},
        record_weights=True,
    )
    res = simulate(cfg)
    w_ref, v_ref, b_ref = _oracle(cfg, rule, 4, steps)
    np.testing.assert_allclose(res.w[0], w_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(res.v[0], v_ref, rtol=1e-11, atol=1e-12)
    if rule.feedback == "adaptive":  # b = w F/√N, maintained incrementally by the kernel
        np.testing.assert_allclose(res.b[0], b_ref, rtol=1e-10, atol=1e-12)
    assert not np.allclose(w_ref[0], w_ref[-1])
    if rule.second_layer == "fixed":
        assert np.array_equal(res.v[0, -1], res.v[0, 0])
    assert res.rule == rule.name


# --------------------------------------------- a user rule: simulation against its own ODE
def test_fa_weight_decay_user_rule_simulates_like_its_ode():
    """FA with weight decay κ = 0.2, written as a Rule in a user's file, N = 1000, 8 seeds
    from one initial state: the ensemble mean of ε_g lies within 3 standard errors
    (std/√8, measured) of the ODE derived from the same Rule at every α in (0, 10], and the
    decay matters: without it the ODE ends more than 10 standard errors away."""
    cfg = dict(
        rule=_spec("fa_decay"),
        rule_params={"kappa": 0.2},
        N=1000,
        alpha_max=10,
        seeds=8,
        record={"every": 0.5},
        eta=0.5,
        eta_v=0.5,
        init={"seed": 3},
    )
    sim = simulate(cfg)
    assert not sim.diverged.any()
    rule = load_rule(cfg["rule"])
    kw = dict(eta=0.5, alpha_max=10, record={"alpha": sim.alpha})
    ode = odeflow.solve(rule, sim.initial_state(0), rule_params={"kappa": 0.2}, **kw)
    no_decay = odeflow.solve("fa", sim.initial_state(0), **kw)
    se = sim.eg_std[1:] / math.sqrt(8)
    ratio = np.abs(sim.eg_mean[1:] - ode.eg[1:]) / se
    assert ratio.max() < 3, ratio.max()
    assert np.abs(no_decay.eg[-1] - ode.eg[-1]) > 10 * se[-1]
    assert ode.eg[-1] < 0.7 * ode.eg[0]  # it learns: the agreement is not trivial


# ------------------------------------------------------------------------ bad rule files
def test_rule_file_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"does not define 'fa_nodecay'.*fa_decay"):
        simulate(dict(rule=_spec("fa_nodecay"), N=10, alpha_max=1))
    with pytest.raises(ValueError, match=r"'not_a_rule'.*is a int, not a theory.rules.Rule"):
        simulate(dict(rule=_spec("not_a_rule"), N=10, alpha_max=1))
    with pytest.raises(ValueError, match=r"does not exist"):
        simulate(dict(rule=str(tmp_path / "nowhere.py") + ":x", N=10, alpha_max=1))
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('oops')\n")
    with pytest.raises(ValueError, match=r"failed to import: RuntimeError: oops"):
        simulate(dict(rule=f"{bad}:x", N=10, alpha_max=1))
    with pytest.raises(ValueError, match=r"unknown rule_params \['lam_bda'\]"):
        simulate(dict(rule=_spec("fa_decay"), rule_params={"lam_bda": 1}, N=10, alpha_max=1))
    with pytest.raises(ValueError, match=r"unknown rule 'sgd'"):
        validate_config(dict(rule="sgd", N=10, alpha_max=1))


def test_cli_rule_file_relative_to_the_config(tmp_path, monkeypatch, capsys):
    """``python -m simulations run`` and ``python -m odeflow compare`` with
    ``"rule": "my_rules.py:fa_decay"`` next to the config, run from another directory."""
    (tmp_path / "my_rules.py").write_text(RULES_FILE.read_text())
    cfg = dict(
        rule="my_rules.py:fa_decay",
        rule_params={"kappa": 0.5},
        N=200,
        alpha_max=2,
        seeds=2,
        record={"every": 1.0},
    )
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulations",
            "run",
            str(tmp_path / "cfg.json"),
            "-o",
            str(tmp_path / "out.npz"),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "out.npz") as z:
        saved = json.loads(str(z["config_json"]))
        assert saved["rule"].endswith("my_rules.py:fa_decay")
        assert z["Q"].shape == (2, 3, 2, 2)
    # odeflow compare's command (in-process: the same code path, without a second start-up)
    import argparse

    from odeflow.compare import run as compare_run

    monkeypatch.chdir(ROOT)
    args = argparse.Namespace(
        config=tmp_path / "cfg.json", output=tmp_path / "c.npz", plot=None, quiet=True
    )
    assert compare_run(args) == 0
    assert "compare fa-decay (ODE: fa-decay)" in capsys.readouterr().out
    with np.load(tmp_path / "c.npz") as z:
        assert json.loads(str(z["config_json"]))["ode"]["rule"] == "fa-decay"


def test_compare_and_save_with_a_rule_object(tmp_path):
    """compare() takes a Rule object: the ODE is derived from the same Rule, the rule's
    parameters reach both sides, and results save with the Rule described in the config."""
    from odeflow.compare import compare
    from simulations.teacher_student import SimulationResult

    rule = load_rule(_spec("afa_decay"))
    c = compare(
        dict(
            rule=rule,
            rule_params={"kappa": 0.5},
            N=300,
            alpha_max=2,
            seeds=2,
            record={"every": 0.5},
        )
    )
    assert c.config["ode"]["rule"] == "afa-decay"
    assert c.ode_result.params["rule_params"] == {"kappa": 0.5}
    # b = w F/√N decays with w: the ODE and the simulation agree on it to within the
    # seed spread plus finite-N corrections of order |b|/√N
    assert c.discrepancy["b"] < 4 * c.stderr["b"] + 0.1 * np.abs(c.ode["b"]).max()
    c.save(tmp_path / "c.npz")
    c.sim.save(tmp_path / "s.npz")
    back = SimulationResult.load(tmp_path / "s.npz")
    assert back.config["rule"]["name"] == "afa-decay" and back.rule == "afa-decay"
    assert back.config["rule"]["weight_decay"] == "kappa"
    np.testing.assert_array_equal(back.Q, c.sim.Q)


# ------------------------------------------- user activations: one registry, ODE and kernel
def test_user_activation_equal_to_tanh_simulates_like_tanh():
    """tanh written by a user: through a config it is recognised as the built-in (the same
    trajectories, bit for bit); its kernel printed from the sympy expression instead of
    the hand-tuned form agrees with the built-in kernel to float rounding."""
    from simulations import kernelgen

    cfg = dict(
        rule="bp",
        N=200,
        K=2,
        M=2,
        eta=0.5,
        eta_v=0.5,
        alpha_max=2.0,
        record={"every": 0.5},
        seeds=2,
        init={"seed": 3},
    )
    named = simulate({**cfg, "activation": "tanh"}, progress=False)
    user = simulate({**cfg, "activation": "user:(exp(2*z) - 1)/(exp(2*z) + 1)"}, progress=False)
    assert np.array_equal(named.Q, user.Q) and np.array_equal(named.eg, user.eg)
    # the printed path: a kernel generated from g = tanh(z), g' = 1 − tanh²(z)
    sim = kernelgen.resolve_rule("bp")
    printed = kernelgen.load_kernel(sim, "user:tanh(z)").run_block
    builtin = kernelgen.load_kernel(sim).run_block
    N, K, M = 150, 3, 2
    rng = np.random.default_rng(4)
    w0, ws = rng.standard_normal((K, N)), rng.standard_normal((M, N))
    v0, vs, F = 0.3 * rng.standard_normal(K), np.ones(M), np.zeros(N)
    out = []
    for run, code in ((builtin, 3), (printed, -1)):
        st, xb, work = ensemble.sample_state(5), np.zeros((2, N)), np.zeros((6, K))
        w, v, b = w0.copy(), v0.copy(), np.zeros(K)
        assert run(code, 300, st, xb, w, ws, v, vs, F, b, 0.6, 0.4, 0.1, np.zeros(1), work) == 300
        out.append((w, v))
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-10, atol=1e-12)
    assert not np.allclose(out[0][0], w0)


@pytest.mark.slow
def test_new_user_activation_simulation_agrees_with_its_ode():
    """A genuinely new activation, g(z) = z (1 + tanh z)/2 (a smooth "swish"), from a JSON-
    style string: the network simulated with the kernel printed from its sympy form
    follows the ODE derived from the same expression (quadrature backend). Tolerance as
    tests/simulations/test_theory_agreement.py: |mean − ODE| ≤ 3 SE + ε_g(0)/√N."""
    act = "z*(1 + tanh(z))/2"
    cfg = dict(
        rule="bp",
        activation=act,
        N=2000,
        K=2,
        M=2,
        eta=0.5,
        eta_v=0.5,
        alpha_max=10.0,
        record={"every": 1.0},
        seeds=6,
        same_init=True,
        init={"seed": 11, "w_scale": 1.0, "w_star_scale": 1.0, "v_scale": 0.1, "v_star": 1.0},
    )
    sim = simulate(cfg, progress=False)
    assert not sim.diverged.any()
    ode = odeflow.solve(
        "bp",
        sim.initial_state(0),
        eta=0.5,
        eta_v=0.5,
        alpha_max=10.0,
        activation=act,
        record={"alpha": sim.alpha},
    )
    assert ode.status == 0, ode.message
    se = sim.eg_std / np.sqrt(len(sim.seeds))
    allowance = 3 * se + ode.eg[0] / np.sqrt(cfg["N"])
    assert np.all(np.abs(sim.eg_mean - ode.eg) <= allowance), (
        np.abs(sim.eg_mean - ode.eg) / allowance
    ).max()
    assert ode.eg[-1] < 0.75 * ode.eg[0]  # the curve moves: agreement is not trivial
