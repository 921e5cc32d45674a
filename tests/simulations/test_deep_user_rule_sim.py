"""A user's deep rule (theory.deep_rules) through the simulations and the command lines:
a rule restating bp / dfa simulates the built-in trajectory (same seed, same input stream)
to round-off, a rule file runs in ``python -m simulations run`` and ``python -m odeflow
solve`` with "widths", and a new rule's parameters reach the kernel."""

import json

import numpy as np
import pytest

from simulations.deep_student import simulate

RULES_PY = """
import sympy as sp
from theory.deep_rules import DeepRule, a, f, gp

my_bp = DeepRule("my-bp", delta=gp(a) * f, feedback="v")
my_dfa = DeepRule("my-dfa", delta=gp(a) * f, feedback="direct")
beta = sp.Symbol("beta")
scaled = DeepRule("scaled-bp", delta=beta * gp(a) * f, feedback="v", params={"beta": 1.0})
"""


def _cfg(rule, **kw):
    return {
        "rule": rule, "widths": [2, 3], "M": 2, "N": 200, "alpha_max": 1.0, "eta": 1.0,
        "eta_v": 0.5, "eta_W": 0.4, "sigma": 0.1, "seeds": 2, "record": {"every": 0.25},
        "mc_fields": 1024, "threads": 1, **kw,
    }  # fmt: skip


@pytest.fixture
def rule_file(tmp_path):
    path = tmp_path / "my_rules.py"
    path.write_text(RULES_PY)
    return path


def _same(a, b, atol):
    for k in ("Q", "R", "v", "eg", "cos_delta"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=0, atol=atol, err_msg=k)
    for x, y in zip(a.W, b.W):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


@pytest.mark.parametrize("builtin, name", [("bp", "my_bp"), ("dfa", "my_dfa")])
def test_restated_rule_simulates_the_builtin_trajectory(rule_file, builtin, name):
    """Same draws, same inputs, δ computed as g'(a)·(f) instead of f·g'(a)·e: the
    trajectories agree to round-off (1e-10 after 200 steps of O(1) updates; the
    rounding differences are ~1e-16 per step)."""
    ref = simulate(_cfg(builtin))
    mine = simulate(_cfg(f"{rule_file}:{name}"))
    assert mine.rule == name.replace("_", "-")
    _same(mine, ref, 1e-10)
    moved = np.abs(ref.Q[:, -1] - ref.Q[:, 0]).max()
    assert moved > 1e-3  # the weights moved 10⁷× the tolerance: the comparison can fail
    if builtin == "dfa":  # the fixed vectors d are recorded as DFA's
        np.testing.assert_array_equal(mine.d[0], ref.d[0])


@pytest.mark.slow  # ~15 s cold: a compiled deep rule with parameters
def test_rule_params_reach_the_kernel(rule_file):
    """``scaled-bp`` with β = 1 is bp; β = 0 freezes W₁ and the read-out matrices (δ = 0)
    while v still learns (Δv = e h does not involve δ); an unknown parameter is refused."""
    spec = f"{rule_file}:scaled"
    _same(simulate(_cfg(spec)), simulate(_cfg("bp")), 1e-10)
    frozen = simulate(_cfg(spec, rule_params={"beta": 0.0}))
    np.testing.assert_array_equal(frozen.Q[:, -1], frozen.Q[:, 0])
    np.testing.assert_array_equal(frozen.W[0][:, -1], frozen.W[0][:, 0])
    assert np.abs(frozen.v[:, -1] - frozen.v[:, 0]).max() > 1e-3
    with pytest.raises(ValueError, match=r"unknown rule_params \['gamma'\].*\['beta'\]"):
        simulate(_cfg(spec, rule_params={"gamma": 1.0}))
    with pytest.raises(ValueError, match=r"init.d is the fixed feedback of dfa"):
        simulate(_cfg(spec, init={"d": [[1.0, 1.0], [1.0, 1.0, 1.0]]}))


@pytest.mark.slow  # ~35 s: two command lines, each compiling the rule
def test_rule_file_through_both_command_lines(rule_file, tmp_path, capsys):
    """``python -m simulations run`` and ``python -m odeflow solve`` take
    ``"rule": "my_rules.py:NAME"`` (relative to the config) with "widths"; the ODE of the
    restated rule equals the built-in bp's (same quadrature rule: to 1e-12)."""
    from odeflow.__main__ import main as ode_main
    from simulations.run import main as sim_main

    cfg = _cfg("my_rules.py:my_bp", seeds=1)
    (tmp_path / "sim.json").write_text(json.dumps(cfg))
    out = tmp_path / "sim.npz"
    assert sim_main([str(tmp_path / "sim.json"), "-o", str(out), "--quiet"]) == 0
    rng = np.random.default_rng(1)
    init = {
        "Q": np.eye(2).tolist(), "R": (0.2 * np.ones((2, 2))).tolist(), "T": np.eye(2).tolist(),
        "v": (0.3 * rng.standard_normal(3)).tolist(), "v_star": [1.0, 1.0],
        "W": [(rng.standard_normal((3, 2)) / np.sqrt(2)).tolist()],
    }  # fmt: skip
    ode = {
        "rule": "my_rules.py:my_bp", "eta": 0.5, "alpha_max": 1.0, "widths": [2, 3],
        "record": {"every": 0.5}, "quadrature": {"scheme": "gauss-hermite", "n": 6},
        "init": init,
    }  # fmt: skip
    import odeflow

    res = {}
    for rule in ("my_rules.py:my_bp", "bp"):
        (tmp_path / "ode.json").write_text(json.dumps({**ode, "rule": rule}))
        o = tmp_path / f"ode_{rule[:2]}.json"
        assert ode_main(["solve", str(tmp_path / "ode.json"), "-o", str(o), "--quiet"]) == 0
        res[rule] = odeflow.Result.load(o)
    a, b = res["my_rules.py:my_bp"], res["bp"]
    assert a.params["rule"] == "my-bp"
    np.testing.assert_allclose(a.Q, b.Q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.W[0], b.W[0], rtol=0, atol=1e-12)
    assert np.abs(b.Q[-1] - b.Q[0]).max() > 1e-3  # 10⁹× the tolerance


@pytest.mark.slow  # ~20 s: a sweep over a compiled deep rule
def test_sweep_over_a_deep_rule_file_equals_the_direct_solve(rule_file, tmp_path):
    """A solve sweep whose base names a deep rule file ("widths" given): the file is loaded
    as a DeepRule when the sweep is checked, and each point equals the direct solve."""
    import odeflow
    from odeflow.sweep import sweep

    init = {
        "Q": np.eye(2).tolist(), "R": (0.2 * np.ones((2, 2))).tolist(), "T": np.eye(2).tolist(),
        "v": [0.3, -0.2, 0.1], "v_star": [1.0, 1.0], "W": [[[0.5, -0.3], [0.2, 0.6], [-0.4, 0.1]]],
    }  # fmt: skip
    quad = {"scheme": "gauss-hermite", "n": 6}
    base = {"rule": f"{rule_file}:my_bp", "widths": [2, 3], "alpha_max": 0.5,
            "record": {"every": 0.25}, "quadrature": quad, "init": init}  # fmt: skip
    res = sweep({"base": base, "grid": {"eta": [0.5]}}, tmp_path / "sw", workers=0)
    direct = odeflow.solve("bp", init, eta=0.5, widths=[2, 3], alpha_max=0.5,
                           record={"every": 0.25}, quadrature=quad)  # fmt: skip
    (status,) = res.column("status")
    (eg,) = np.asarray(res.column("eg_final"), dtype=float)
    assert status == "ok"
    assert abs(eg - direct.eg[-1]) < 1e-12
