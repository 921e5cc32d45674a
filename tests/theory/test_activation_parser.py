"""Activation strings are data: the whitelisting parser of theory.activations (issue 21,
security) never evaluates a string, refuses everything outside its grammar, and gives the
same sympy expression as the Python form."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from theory.activations import get_activation, parse_expression, z

REPO = Path(__file__).resolve().parents[2]
PWNED = "user:__import__('os').system('touch PWNED') + z"


def test_pwned_string_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"__import__.*not allowed"):
        get_activation(PWNED)
    assert not (tmp_path / "PWNED").exists()


def test_pwned_config_is_refused_by_the_cli(tmp_path):
    cfg = json.loads((REPO / "odeflow" / "configs" / "bp_K2M2.json").read_text())
    cfg.update(activation=PWNED, alpha_max=1)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, "-m", "odeflow", "solve", "c.json", "-o", "out.npz"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert "not allowed" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize(
    "text, why",
    [
        ("z.real", "Attribute"),
        ("z.__class__", "Attribute"),
        ("z[0]", "Subscript"),
        ("(lambda: z)()", "calling"),
        ("lambda z: z", "Lambda"),
        ("__builtins__", "name '__builtins__'"),
        ("__import__('os')", "function '__import__'"),
        ("foo(z)", "function 'foo'"),
        ("swish", "name 'swish'"),
        ("eval('z')", "function 'eval'"),
        ("z if z else 1", "IfExp"),
        ("[z][0]", "Subscript"),
        ("z^2", "use \\*\\* for a power"),
        ("exp(z, x=1)", "positional arguments only"),
        ("'z'", "not a real number"),
        ("z +", "not a valid expression"),
        ("", "empty"),
    ],
)
def test_parser_refuses_outside_the_grammar(text, why):
    with pytest.raises(ValueError, match=why):
        parse_expression(text)
    with pytest.raises(ValueError, match="unknown activation.*refused"):
        get_activation("user:" + text)


def test_error_names_the_allowed_functions():
    with pytest.raises(ValueError) as exc:
        get_activation("user:foo(z)")
    msg = str(exc.value)
    for f in ("tanh", "exp", "erf", "sqrt", "relu", "sigmoid", "Max", "Abs"):
        assert f in msg
    assert "erf, linear, relu, tanh, sigmoid" in msg


@pytest.mark.parametrize(
    "text, expr",
    [
        ("z*tanh(z)", z * sp.tanh(z)),
        ("z*(1 + tanh(z))/2", z * (1 + sp.tanh(z)) / 2),
        ("0.3*z**3 - z", sp.Float(0.3) * z**3 - z),
        ("-z + exp(-z**2/2)", -z + sp.exp(-(z**2) / 2)),
        ("Max(0, z) + 0.1*min(0, z)", sp.Max(0, z) + sp.Float(0.1) * sp.Min(0, z)),
        ("sqrt(2)*erf(z/sqrt(2)) + pi*z", sp.sqrt(2) * sp.erf(z / sp.sqrt(2)) + sp.pi * z),
        ("log(1 + exp(z))", sp.log(1 + sp.exp(z))),
        ("softplus(z) - abs(z)", sp.log(1 + sp.exp(z)) - sp.Abs(z)),
    ],
)
def test_valid_strings_equal_the_python_form(text, expr):
    assert parse_expression(text) == expr
    # with or without the prefix (the old message asked for exactly what it was given)
    a, b = get_activation(text), get_activation("user:" + text)
    assert a == b and a.expr == expr
    # the recorded name parses back to the same function
    assert sp.simplify(get_activation(a.name).expr - expr) == 0


def test_builtins_in_disguise_and_names():
    assert get_activation("tanh(z)").name == "tanh"
    assert get_activation("relu(z)").name == "relu"
    assert get_activation("sigmoid(z)").name == "sigmoid"
    assert get_activation("erf").name == "erf"
