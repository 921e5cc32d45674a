"""The declared System interface (theory/system.py) and the model registry
(theory/models.py): every system class implements the contract (checked by attributes
AND by calling it against independent oracles), and each model's one validator refuses
wrong types and values naming the key."""

import numpy as np
import pytest

from theory import models
from theory.observables import cos_vb, eps_g, norm_b
from theory.state import OrderParameters
from theory.system import System

_CONTRACT = (
    "rhs",
    "eg",
    "noise",
    "layout",
    "rule",
    "model",
    "activation",
    "K",
    "M",
    "params",
    "observables",
    "describe",
)


def _committee_state(b=None):
    return OrderParameters(
        Q=np.array([[1.0, 0.2], [0.2, 0.8]]),
        R=np.array([[0.3, 0.1], [-0.2, 0.4]]),
        T=np.eye(2),
        v=np.array([0.5, -0.3]),
        v_star=np.array([1.0, 1.0]),
        b=b,
    )


def _systems():
    """One system of each of the four classes, with the state it runs on."""
    from theory.cache import CachedSystem, cached_system, remember
    from theory.codegen import System as CodegenSystem
    from theory.codegen import build_system
    from theory.codegen_quad import QuadSystem
    from theory.ff import FFSystem, build_ff_system

    b = np.array([0.7, -0.4])
    closed = build_system("fa", 2, 2, "erf")
    remember("fa", "erf", closed)
    cached = cached_system("fa", 2, 2, "erf")
    quad = build_system("fa", 2, 2, "erf", {"scheme": "gauss-hermite", "n": 12})
    ff = build_ff_system(2, 1, "erf")
    ff_state = OrderParameters(
        Q=np.array([[1.0, 0.1], [0.1, 1.2]]),
        R=np.array([[0.3], [-0.2]]),
        T=np.eye(1),
        v=np.zeros(2),
        v_star=np.ones(1),
        u=np.zeros(2),
    )
    out = [
        (CodegenSystem, closed, _committee_state(b)),
        (CachedSystem, cached, _committee_state(b)),
        (QuadSystem, quad, _committee_state(b)),
        (FFSystem, ff, ff_state),
    ]
    return out


def test_every_system_class_implements_the_contract():
    for cls, system, state in _systems():
        assert isinstance(system, cls), cls
        assert isinstance(system, System), cls  # runtime_checkable Protocol
        for name in _CONTRACT:
            assert hasattr(system, name), (cls.__name__, name)
        assert system.model in models.MODELS
        assert models.model_of(system) is models.MODELS[system.model]
        # calling it: params, rhs, eg, observables, describe
        p = system.params(state, 0.5, 0.25, 0.0)
        assert p.dtype == float and np.all(np.isfinite(p))
        y = system.layout.pack(state)
        assert y.shape == (system.layout.n,)
        dy = np.full_like(y, np.nan)
        system.rhs(y, p, dy)
        assert np.all(np.isfinite(dy))
        obs = system.observables(np.stack([y, y]), p)
        assert set(obs) >= set(models.MODELS[system.model].observables)
        d = system.describe()
        assert d["model"] == system.model and (d["K"], d["M"]) == (system.K, system.M)
        assert d["rule"] == system.rule.name
        if system.model == "committee":
            # ε_g against the hand-written closed form (theory.observables, erf)
            ref = eps_g(state.Q, state.R, state.T, state.v, state.v_star, "erf")
            tol = 1e-12 if cls.__name__ != "QuadSystem" else 1e-6
            assert system.eg(y, p) == pytest.approx(ref, abs=tol)
            # FA: b is the fixed feedback (from p); cos(v, b) and |b| by hand
            np.testing.assert_allclose(obs["b"], [state.b, state.b])
            c = state.v @ state.b / np.linalg.norm(state.v) / np.linalg.norm(state.b)
            np.testing.assert_allclose(obs["cos_vb"], [c, c], rtol=1e-14)
            np.testing.assert_allclose(obs["norm_b"], np.linalg.norm(state.b), rtol=1e-14)
            assert system.noise is None  # FA has no stochastic feedback
        else:
            # FF at u = 0: both labels give the same goodness, so every prediction is a
            # tie (ε_g = 1/2 exactly) and the goodness gap vanishes (docs/ff-theory.md); the
            # outer ν rule integrates φ to ~1e-8 (as in tests/theory/test_ff.py)
            assert obs["eg"] == pytest.approx([0.5, 0.5], abs=2e-8)
            assert obs["gap"] == pytest.approx([0.0, 0.0], abs=1e-12)
            assert system.noise is None


def test_committee_observables_of_adaptive_and_backprop_rules():
    from theory.codegen import build_system

    st = _committee_state(b=np.array([0.7, -0.4])).replace(c=np.zeros(2), sigma_F2=0.09)
    afa = build_system("afa", 2, 2, "erf")
    Y = np.stack([afa.layout.pack(st)] * 3)
    obs = afa.observables(Y, afa.params(st, 0.5))
    np.testing.assert_allclose(obs["cos_vb"], cos_vb(st.v, st.b))
    np.testing.assert_allclose(obs["norm_b"], norm_b(st.b))
    bp = build_system("bp", 2, 2, "erf")
    assert bp.observables(bp.layout.pack(st), bp.params(st, 0.5)) == {
        "b": None,
        "cos_vb": None,
        "norm_b": None,
    }


def test_registry_maps_rules_to_models():
    assert models.model_of("ff").name == "ff"
    for r in ("bp", "fa", "afa", "pepita", "pepita-forward", "my_rules.py:R", None):
        assert models.model_of(r).name == "committee"
    assert models.RULE_MODELS == {"ff": "ff"}
    assert models.get("ff").simulation == "simulations.ff_online"
    with pytest.raises(ValueError, match="unknown model 'nope'.*committee, ff"):
        models.get("nope")
    # the deep student shares the committee's rule names: chosen by widths / an init with W
    assert models.get("deep").simulation == "simulations.deep_student"
    assert models.deep_requested(widths=[2]) and models.deep_requested({"W": []})
    assert not models.deep_requested({"Q": 1.0})


@pytest.mark.parametrize(
    "given, msg",
    [
        ({"eta": 1.0, "theta": "1"}, r"theta must be a number, got a string \(\"1\"\)"),
        ({"eta": 1.0, "theta": True}, r"theta must be a number, got a boolean"),
        ({"eta": 1.0, "eta_u": "1.0"}, r"eta_u must be a number, got a string"),
        ({"eta": 1.0, "theta": 0.0}, r"theta must be > 0, got 0"),
        ({"eta": 1.0, "theta": float("nan")}, r"theta must be a finite number"),
        (
            {"eta": 1.0, "eta_v": 0.5},
            r"eta_v \(a parameter of model 'committee'\) does not apply "
            r"to rule 'ff'; it takes eta, eta_u, theta",
        ),
        ({"eta": 1.0, "sigma": 0.1}, r"sigma must be 0"),
        ({"eta": None}, r"eta .* is required for rule 'ff'"),
    ],
)
def test_ff_validator_refuses(given, msg):
    with pytest.raises(ValueError, match=msg):
        models.get("ff").check_params(given, K=2, rule_name="ff")


def test_validators_fill_defaults():
    ff = models.get("ff").check_params({"eta": 0.5}, K=4)
    assert ff == {"eta": 0.5, "eta_u": 0.5, "theta": 2.0, "sigma": 0.0}  # θ = K/2
    c = models.get("committee").check_params({"eta": 0.5, "sigma": 0.1})
    assert c == {"eta": 0.5, "eta_v": 0.5, "sigma": 0.1}
    with pytest.raises(ValueError, match="theta .*does not apply to rule 'bp'"):
        models.get("committee").check_params({"eta": 0.5, "theta": 1.0}, rule_name="bp")
    with pytest.raises(ValueError, match=r"eta must be a number, got a string \(\"0.5\"\)"):
        models.get("committee").check_params({"eta": "0.5"})


def test_init_checks_ask_for_what_the_model_needs():
    ff = models.get("ff")
    base = {"Q": [[1, 0], [0, 1]], "R": [[0.1], [0]], "T": [[1]], "v_star": [1]}
    with pytest.raises(ValueError, match="needs the label weights u"):
        ff.check_init(base, "ff")
    with pytest.raises(ValueError, match="init keys v do not apply to rule 'ff'"):
        ff.check_init({**base, "u": [0, 0], "v": [0.1, 0.2]}, "ff")
    st = ff.check_init({**base, "u": [0.1, 0.0]}, "ff")
    np.testing.assert_array_equal(st.u, [0.1, 0.0])
    with pytest.raises(ValueError, match="the initial state has v, which do not apply"):
        ff.check_init(st.replace(v=np.array([0.3, 0.0])), "ff")
    com = models.get("committee")
    with pytest.raises(ValueError, match=r"init.F_norm2 must be a number .*string \(\"0.9\"\)"):
        com.check_init({**base, "v": [0, 0], "F_norm2": "0.9"}, "pepita")
    with pytest.raises(ValueError, match=r"init.Q must be a number .*null"):
        com.check_init({**base, "v": [0, 0], "Q": [[1, None], [0, 1]]}, "bp")


def test_the_add_a_model_example_of_the_docs_runs(tmp_path):
    """docs/architecture.md's example (a linear perceptron registered as a model) runs and
    meets its exact solution R(α) = T + (R₀ − T) e^{−ηα}; in a subprocess, so that the
    registry of this process keeps its two models."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "architecture.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    script = tmp_path / "example.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(root)!r})\n" + code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
