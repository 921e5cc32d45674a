"""The one public surface (``import odeflow``), the Python API's input checks (the CLI's,
issue 21), the model registry behind solve (no branch on a rule's name) and the one result
save/load protocol (kind tag, clear errors for corrupt files and files of another kind)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import odeflow
from odeflow.config import ConfigError, validate_config
from theory.state import OrderParameters

REPO = Path(odeflow.__file__).resolve().parents[1]
PUBLIC = (
    "solve",
    "solve_sde",
    "simulate",
    "compare",
    "sweep",
    "OrderParameters",
    "Rule",
    "activations",
    "models",
    "Result",
    "SDEResult",
    "Comparison",
    "SweepResult",
)


def _bp_state():
    return OrderParameters.from_spec(2, 2, R=0.01, v=0.1)


def _ff_state(u=(0.1, -0.1), v=None):
    return OrderParameters(
        Q=np.eye(2),
        R=np.array([[0.3], [0.1]]),
        T=np.eye(1),
        v=np.zeros(2) if v is None else np.asarray(v),
        v_star=np.ones(1),
        u=None if u is None else np.asarray(u),
    )


# ------------------------------------------------------------------- public surface
def test_every_public_name_resolves_lazily():
    import theory.activations
    from odeflow.compare import compare
    from odeflow.results import Result
    from odeflow.sweep import SweepResult, sweep
    from simulations.teacher_student import simulate

    for name in PUBLIC:
        assert name in dir(odeflow) and name in odeflow.__all__, name
        assert getattr(odeflow, name) is not None, name
    assert odeflow.Result is Result and odeflow.simulate is simulate
    # the functions, not the submodules of the same names, even once those are imported
    assert odeflow.sweep is sweep and odeflow.compare is compare
    assert odeflow.SweepResult is SweepResult and odeflow.activations is theory.activations
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = odeflow.nope


def test_import_odeflow_imports_neither_numba_nor_sympy():
    code = (
        "import sys, odeflow; "
        "print(sorted(m for m in ('numba', 'sympy', 'simulations') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout.strip()
    assert out == "[]"


# ---------------------------------------------------------------- Python API checks
@pytest.mark.parametrize(
    "eta, msg",
    [
        ("0.5", r"eta must be a number, got a string"),
        (None, r"eta .*is required"),
        (True, r"eta must be a number, got a boolean"),
        ([0.5], r"eta must be a number, got a list"),
    ],
)
def test_solve_refuses_a_rate_that_is_not_a_number(toy, toy_init, eta, msg):
    with pytest.raises(ValueError, match=msg):
        odeflow.solve(toy, toy_init, eta=eta, alpha_max=1.0)


def test_solve_refuses_non_boolean_dense_output_and_explains_missing_sol(toy, toy_init):
    with pytest.raises(ValueError, match="dense_output must be True or False, got 'yes'"):
        odeflow.solve(toy, toy_init, eta=0.1, alpha_max=1.0, dense_output="yes")
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=1.0, record={"every": 0.5})
    assert res.sol is None or not res.sol  # no dense output: falsy, == None
    with pytest.raises(ValueError, match="pass dense_output=True"):
        res.sol(0.5)
    dense = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=1.0, dense_output=True)
    # the dense solution at a record equals the record (the toy is linear: exact check
    # against the solver's own records)
    np.testing.assert_allclose(
        dense.sol(dense.alpha[-1]), toy.layout.pack(dense.final), rtol=1e-12, atol=1e-14
    )


def test_result_fields_come_from_the_model(toy, toy_init):
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=1.0, record={"every": 0.5})
    assert res.model == "committee" and set(res.fields) == {"v", "b", "cos_vb", "norm_b"}
    assert res.v.shape == (3, 2) and res.b is None and res.cos_vb is None
    assert res.u is None and res.loss is None  # another model's fields read as None
    with pytest.raises(AttributeError, match="has no attribute 'w'"):
        _ = res.w


def test_ff_refuses_what_it_has_no_use_for():
    st = _ff_state()
    with pytest.raises(ValueError, match=r"eta_v .*does not apply to rule 'ff'"):
        odeflow.solve("ff", st, eta=1.0, eta_v=0.5, alpha_max=1.0)
    with pytest.raises(ValueError, match=r"theta must be a number, got a string"):
        odeflow.solve("ff", st, eta=1.0, theta="1", alpha_max=1.0)
    with pytest.raises(ValueError, match=r"needs the label weights u"):
        odeflow.solve("ff", _ff_state(u=None), eta=1.0, alpha_max=1.0)
    with pytest.raises(ValueError, match=r"has v, which do not apply to rule 'ff'"):
        odeflow.solve("ff", _ff_state(v=[0.2, 0.0]), eta=1.0, alpha_max=1.0)
    with pytest.raises(ValueError, match=r"theta .*does not apply to rule 'bp'"):
        odeflow.solve("bp", _bp_state(), eta=1.0, theta=1.0, alpha_max=1.0)


# ------------------------------------------------- the CLI config: one validator each
_FF_CFG = {
    "rule": "ff",
    "eta": 1.0,
    "alpha_max": 1.0,
    "init": {"Q": [[1, 0], [0, 1]], "R": [[0.1], [0]], "T": [[1]], "u": [0.1, 0], "v_star": [1]},
}
_PEPITA_CFG = {
    "rule": "pepita",
    "eta": 0.5,
    "alpha_max": 1.0,
    "init": {
        "Q": [[1, 0], [0, 1]],
        "R": [[0.1, 0], [0, 0.1]],
        "T": [[1, 0], [0, 1]],
        "v": [0.1, 0.1],
        "v_star": [1, 1],
        "b": [0.1, 0.1],
        "c": [0, 0],
        "sigma_F2": 0.09,
        "F_norm2": 90.0,
    },
}


@pytest.mark.parametrize(
    "over, msg",
    [
        ({"theta": "1"}, r"theta must be a number, got a string \(\"1\"\)"),
        ({"theta": True}, r"theta must be a number, got a boolean"),
        ({"eta_u": "1.0"}, r"eta_u must be a number, got a string"),
        ({"theta": None}, r"theta must be a number, got null"),
        ({"eta_u": None}, r"eta_u must be a number, got null"),
        ({"eta_v": 0.5}, r"eta_v .*does not apply to rule 'ff'"),
        ({"init": {**_FF_CFG["init"], "v": [0.1, 0.1]}}, r"init keys v do not apply"),
        (
            {"init": {k: v for k, v in _FF_CFG["init"].items() if k != "u"}},
            r"needs the label weights u",
        ),
    ],
)
def test_ff_config_type_checks(over, msg):
    validate_config(_FF_CFG, "solve")
    with pytest.raises(ConfigError, match=msg):
        validate_config({**_FF_CFG, **over}, "solve")


def test_pepita_init_value_types():
    validate_config(_PEPITA_CFG, "solve")
    bad = {**_PEPITA_CFG, "init": {**_PEPITA_CFG["init"], "F_norm2": "0.9"}}
    with pytest.raises(ConfigError, match=r"init.F_norm2 must be a number .*string"):
        validate_config(bad, "solve")
    with pytest.raises(ConfigError, match=r"eta must be a number, got a string"):
        validate_config({**_PEPITA_CFG, "eta": "0.5"}, "solve")


def test_simulation_configs_use_the_same_validators():
    from simulations.teacher_student import validate_config as sim_validate

    with pytest.raises(ValueError, match=r"theta must be a number, got a string"):
        sim_validate({"rule": "ff", "N": 100, "alpha_max": 1.0, "theta": "1"})
    with pytest.raises(ValueError, match=r"eta_v must be a number, got a string"):
        sim_validate({"rule": "bp", "N": 100, "alpha_max": 1.0, "eta_v": "1"})


# ------------------------------------------------------------- result file protocol
def test_results_carry_a_kind_tag_and_refuse_other_kinds(toy, toy_init, tmp_path):
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=1.0, record={"every": 0.5})
    for ext in (".npz", ".json"):
        path = res.save(tmp_path / f"r{ext}")
        back = odeflow.Result.load(path)
        np.testing.assert_array_equal(back.eg, res.eg)
        np.testing.assert_array_equal(back.v, res.v)
        assert back.success and back.message == res.message and back.model == "committee"
        with pytest.raises(
            ValueError,
            match=r"holds a odeflow.Result, not a "
            r"odeflow.SDEResult",
        ):
            odeflow.SDEResult.load(path)
    with np.load(tmp_path / "r.npz") as z:
        assert str(z["kind"]) == "odeflow.Result"
    assert json.loads((tmp_path / "r.json").read_text())["kind"] == "odeflow.Result"


def test_truncated_or_corrupt_files_are_value_errors_naming_the_file(toy, toy_init, tmp_path):
    res = odeflow.solve(toy, toy_init, eta=0.1, alpha_max=1.0, record={"every": 0.5})
    data = res.save(tmp_path / "r.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "bad.json").write_text("{not json")
    for name in ("cut.npz", "empty.npz", "bad.json"):
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            odeflow.Result.load(tmp_path / name)
    with pytest.raises(ValueError, match=r"missing\.npz: no such file"):
        odeflow.Result.load(tmp_path / "missing.npz")


def test_simulation_results_share_the_protocol(tmp_path):
    from simulations.teacher_student import SimulationResult, simulate

    sim = simulate(
        {
            "rule": "bp",
            "N": 64,
            "alpha_max": 0.5,
            "seeds": 2,
            "record": {"every": 0.25},
            "threads": 1,
        }
    )
    from theory.runtime.results_io import SavedResult

    assert isinstance(sim, SavedResult) and sim.success and "bp" in sim.message
    path = sim.save(tmp_path / "s.npz")
    with np.load(path) as z:
        assert str(z["kind"]) == "simulations.SimulationResult"
        assert "config_json" in z.files and "init_Q" in z.files
    back = SimulationResult.load(path)
    np.testing.assert_array_equal(back.Q, sim.Q)
    with pytest.raises(
        ValueError,
        match=r"holds a simulations.SimulationResult, not a "
        r"odeflow.Result",
    ):
        odeflow.Result.load(path)
    # a file written before the kind tag (no "kind") is still read
    with np.load(path) as z:
        d = {k: z[k] for k in z.files if k != "kind"}
    np.savez(tmp_path / "old.npz", **d)
    np.testing.assert_array_equal(SimulationResult.load(tmp_path / "old.npz").Q, sim.Q)


def test_solve_config_accepts_checked_rule_params():
    cfg = {
        **_PEPITA_CFG,
        "rule": "bp",
        "init": {
            k: v for k, v in _PEPITA_CFG["init"].items() if k in ("Q", "R", "T", "v", "v_star")
        },
    }
    assert validate_config({**cfg, "rule_params": {}}, "solve")["rule_params"] == {}
    with pytest.raises(ConfigError, match=r"rule_params.kappa must be a number, got a string"):
        validate_config({**cfg, "rule_params": {"kappa": "x"}}, "solve")
    with pytest.raises(ConfigError, match=r"rule_params must be an object of numbers"):
        validate_config({**cfg, "rule_params": [1.0], "dt": 0.1, "n_paths": 2}, "sde")
    # a parameter the rule does not have is refused by the rule, before integrating
    with pytest.raises(ValueError, match=r"unknown rule parameters \['kappa'\] for rule 'bp'"):
        odeflow.solve("bp", _bp_state(), eta=0.5, alpha_max=1.0, rule_params={"kappa": 0.1})


def test_odeflow_never_branches_on_a_rule_name():
    """No comparison with a rule's name (``rule == "ff"``, ``rule in ("ff", …)``) in
    odeflow/ or in the committee's simulation module: models and their rules are data
    (theory.models)."""
    import ast

    from simulations.sim_config import RULES
    from theory.models import RULE_MODELS

    names = set(RULES) | set(RULE_MODELS)
    files = sorted((REPO / "odeflow").glob("*.py")) + [
        REPO / "simulations" / "teacher_student.py",
        REPO / "simulations" / "sim_config.py",
    ]
    hits = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Compare):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Constant) and sub.value in names:
                        hits.append(f"{f.name}:{node.lineno}")
    assert hits == []
