"""The deep student through the public API and the command line (docs/deep.md):
``odeflow.solve(..., widths=...)``, configs with ``"widths"``, errors naming the key and
both shapes, and the .npz/.json output keeping α, ε_g and every W[i] trajectory."""

import json

import numpy as np
import pytest

import odeflow
from odeflow.__main__ import main
from odeflow.config import ConfigError, validate_config

# the same rule on both sides (their agreement, not the rule's accuracy, is under test)
GH = {"scheme": "gauss-hermite", "n": 8, "rtol": 0.1}


def init_dict(widths=(2, 3), seed=0):
    rng = np.random.default_rng(seed)
    W = [
        (rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i])).tolist()
        for i in range(len(widths) - 1)
    ]
    return {
        "Q": np.eye(widths[0]).tolist(),
        "R": (0.1 * np.ones((widths[0], 2))).tolist(),
        "T": np.eye(2).tolist(),
        "v": (0.3 * rng.standard_normal(widths[-1])).tolist(),
        "v_star": [1.0, 1.0],
        "W": W,
    }


@pytest.mark.slow  # ~35 s: the deep system's Euler loop from cold
def test_solve_deep_matches_euler_by_hand():
    """Two Euler steps of solve(method='euler') equal two explicit steps of the system's
    rhs (the API packs, integrates and unpacks W correctly)."""
    init = init_dict()
    res = odeflow.solve(
        "bp", init, eta=0.5, eta_W=0.2, widths=[2, 3], alpha_max=0.2, method="euler",
        dt=0.1, record={"every": 0.1}, quadrature=GH,
    )  # fmt: skip
    from theory.deep import build_deep_system
    from theory.state import OrderParameters

    st = OrderParameters.from_dict(init)
    sysm = build_deep_system("bp", [2, 3], 2, "erf", GH)
    p = sysm.params(st, 0.5, 0.5, 0.0, eta_W=0.2)
    y = sysm.layout.pack(st)
    for _ in range(2):
        dy = np.empty_like(y)
        sysm.rhs(y, p, dy)
        y = y + 0.1 * dy
    W = sysm.layout.unpack(y)["W"][0]
    assert res.params["model"] == "deep" and res.params["widths"] == [2, 3]
    assert res.params["eta_W"] == 0.2
    np.testing.assert_allclose(res.W[0][-1], W, atol=1e-13)
    assert res.W[0].shape == (3, 3, 2) and res.v.shape == (3, 3)
    assert res.cos_delta.shape == (3, 2)
    np.testing.assert_allclose(res.cos_delta, 1.0, atol=1e-12)  # BP against itself
    assert abs(res.eg[0] - sysm.eps_g(st)) < 1e-14


def test_widths_k1_equals_committee_solve():
    init = init_dict(widths=(2,))
    init.pop("W")
    deep = odeflow.solve("bp", init, eta=0.5, widths=[2], alpha_max=2.0, quadrature=GH,
                         record={"every": 1.0})  # fmt: skip
    comm = odeflow.solve("bp", init, eta=0.5, alpha_max=2.0, quadrature=GH, record={"every": 1.0})
    assert deep.params["model"] == "deep" and comm.params["model"] == "committee"
    np.testing.assert_allclose(deep.Q, comm.Q, atol=1e-10)
    np.testing.assert_allclose(deep.v, comm.v, atol=1e-10)


def test_wrong_shapes_name_key_expected_and_given():
    init = init_dict()
    init["W"][0] = np.zeros((2, 2)).tolist()
    with pytest.raises(
        ValueError, match=r"init W\[0\] must have shape \(3, 2\).*got shape \(2, 2\)"
    ):
        odeflow.solve("bp", init, eta=0.5, widths=[2, 3], alpha_max=1.0)
    init = init_dict()
    init["v"] = [0.1, 0.2]
    with pytest.raises(ValueError, match=r"init v must have shape \(3,\).*got shape \(2,\)"):
        odeflow.solve("bp", init, eta=0.5, widths=[2, 3], alpha_max=1.0)
    with pytest.raises(ValueError, match=r"list of 2 read-out matrices"):
        odeflow.solve("bp", init_dict(), eta=0.5, widths=[2, 3, 2], alpha_max=1.0)
    with pytest.raises(ValueError, match=r"eta_W .*does not apply to rule 'bp'"):
        init = init_dict(widths=(2,))
        init.pop("W")
        odeflow.solve("bp", init, eta=0.5, eta_W=0.1, alpha_max=1.0)
    with pytest.raises(ValueError, match=r"rule 'ff' has no deep form"):
        odeflow.solve("ff", init_dict(), eta=0.5, widths=[2, 3], alpha_max=1.0)


def test_config_validation():
    cfg = {"rule": "dfa", "eta": 0.5, "alpha_max": 1.0, "widths": [2, 3], "init": init_dict()}
    args, kw = _args(validate_config(cfg))
    with pytest.raises(ValueError, match="d are required by rule 'dfa'"):
        odeflow.solve(*args, **kw)
    cfg["widths"] = [2, 0]
    with pytest.raises(ConfigError, match=r"widths\[1\] must be a positive integer"):
        validate_config(cfg)
    cfg["widths"] = [2, 4]
    with pytest.raises(
        ConfigError, match=r"init v must have shape \(4,\) for widths \[2, 4\], got shape \(3,\)"
    ):
        validate_config(cfg)


def _args(cfg):
    from odeflow.config import to_solve_args

    rule, init, kw = to_solve_args(cfg)
    return (rule, init), kw


@pytest.mark.slow  # ~23 s: the deep CLI from cold
def test_cli_solve_writes_every_W(tmp_path, capsys):
    init = init_dict(widths=(2, 3, 2))
    rng = np.random.default_rng(5)
    init["d"] = [rng.standard_normal(k).tolist() for k in (2, 3, 2)]
    cfg = {
        "rule": "dfa", "eta": 0.5, "eta_W": 0.3, "alpha_max": 1.0, "widths": [2, 3, 2],
        "record": {"every": 0.5}, "quadrature": {"scheme": "gauss-hermite", "n": 6},
        "init": init,
    }  # fmt: skip
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    for ext in ("npz", "json"):
        out = tmp_path / f"o.{ext}"
        assert main(["solve", str(path), "-o", str(out), "--quiet"]) == 0
        res = odeflow.Result.load(out)
        assert res.alpha.tolist() == [0.0, 0.5, 1.0] and res.eg.shape == (3,)
        assert [w.shape for w in res.W] == [(3, 3, 2), (3, 2, 3)]
        assert res.state(2).widths == [2, 3, 2]
        assert res.cos_delta.shape == (3, 3)


@pytest.mark.slow  # ~17 s: theory and a deep student
def test_compare_deep_config_runs_theory_against_deep_student():
    """``odeflow compare`` with "widths": the deep simulation (simulations.deep_student)
    and the deep ODE from its measured state: at α = 0 both hold the same Q, R, v, W[0]
    (to round-off), every W[i] is compared, and the ODE's ε_g agrees with the
    simulation's Monte Carlo ε_g of the same state (its own estimate: within 5%)."""
    pytest.importorskip(
        "simulations.deep_student",
        reason="simulations.deep_student is the deepsim helper's module (merged separately)",
    )
    from odeflow.compare import compare

    c = compare(
        {"rule": "fa", "widths": [2, 3], "M": 2, "N": 300, "alpha_max": 0.4, "seeds": 2,
         "eta": 1.0, "record": {"every": 0.2},
         "quadrature": {"scheme": "gauss-hermite", "n": 8}}
    )  # fmt: skip
    assert c.names == ("eg", "Q", "R", "v", "W0", "cos_delta")
    for k in ("Q", "R", "v", "W0"):
        np.testing.assert_allclose(c.ode[k][0], c.sim_mean[k][0], atol=1e-12)
    assert c.ode_result.params["model"] == "deep"
    assert abs(c.ode["eg"][0] / c.sim_mean["eg"][0] - 1) < 0.05


def test_sweep_over_eta_W(tmp_path):
    """A solve sweep of a deep config: each point equals the direct solve."""
    from odeflow.sweep import sweep

    base = {"rule": "bp", "eta": 0.5, "alpha_max": 0.5, "widths": [2, 3],
            "record": {"every": 0.25}, "quadrature": GH, "init": init_dict()}  # fmt: skip
    res = sweep({"base": base, "grid": {"eta_W": [0.1, 1.0]}}, tmp_path / "sw", workers=0)
    direct = odeflow.solve("bp", init_dict(), eta=0.5, eta_W=1.0, widths=[2, 3],
                           alpha_max=0.5, record={"every": 0.25}, quadrature=GH)  # fmt: skip
    etas = list(np.asarray(res.column("eta_W"), dtype=float))
    finals = np.asarray(res.column("eg_final"), dtype=float)
    assert sorted(etas) == [0.1, 1.0] and np.all(np.isfinite(finals))
    assert abs(finals[etas.index(1.0)] - direct.eg[-1]) < 1e-12
    assert finals[0] != finals[1]  # eta_W reached the read-out


def test_sde_without_N_refuses_a_deep_state_clearly():
    """The feedback-noise-only mode is the committee's; a deep student needs N
    (tests/odeflow/test_deep_sde.py runs it with N)."""
    init = init_dict()
    init.update(b=[0.1, 0.2], c=[0.0, 0.1], sigma_F2=0.01)
    with pytest.raises(ValueError, match="deep student .*needs N"):
        odeflow.solve_sde("afa", init, eta=0.5, alpha_max=1.0, dt=0.1, n_paths=2)


def test_events_on_a_loaded_deep_result(tmp_path):
    """An event's state of a deep run, in memory and after save/load, carries every W."""

    def ev(alpha, state):  # at α = 1.3 (the view has the last layer v of width 3)
        assert state.v.shape == (3,)
        return alpha - 1.3

    res = odeflow.solve("bp", init_dict(), eta=1.0, widths=[2, 3], alpha_max=4.0,
                        quadrature=GH, events=ev, record={"every": 2.0})  # fmt: skip
    back = odeflow.Result.load(res.save(tmp_path / "r.npz"))
    for r in (res, back):
        st = r.event_state(0, 0)
        assert st.widths == [2, 3]
        assert not np.allclose(st.W[0], res.init.W[0])  # the state at the event, not α = 0


def test_marginal_scheme_is_refused_naming_the_schemes_that_apply(tmp_path, capsys):
    """The marginal scheme integrates one field at a time; a deep student's signals mix
    every field, so it is refused (no traceback) naming the schemes that apply, from the
    API and from the command line (exit status 2, the message on stderr)."""
    msg = r"'marginal' does not apply to a deep student.*'gauss-hermite', 'sobol' or 'auto'"
    for q in ("marginal", {"scheme": "marginal", "n": 20}):
        with pytest.raises(ValueError, match=msg):
            odeflow.solve("bp", init_dict(), eta=0.5, widths=[2, 3], alpha_max=1.0, quadrature=q)
    cfg = {"rule": "bp", "eta": 0.5, "alpha_max": 1.0, "widths": [2, 3],
           "quadrature": "marginal", "init": init_dict()}  # fmt: skip
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert main(["solve", str(path), "-o", str(tmp_path / "o.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "does not apply to a deep student" in err and "Traceback" not in err
