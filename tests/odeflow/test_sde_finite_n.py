"""solve_sde(..., N=...): the finite-N diffusion of every order parameter (issue 24).

Default suite: one Euler–Maruyama step of many paths has the increments' mean h·f(y₀) and
covariance h·Σ(y₀)/N (Σ from theory.covariance, itself checked against Monte Carlo in
tests/theory/test_cov.py); the result's keys, save/load, config and errors.
Slow: the SDE against simulation ensembles from one measured initial state (BP, AFA, FF),
and PEPITA's fluctuation-driven divergence.
"""

import json

import numpy as np
import pytest

import odeflow
from odeflow.config import to_sde_args, validate_config
from theory.covariance import build_covariance
from theory.state import OrderParameters


def _state(rule="bp"):
    kw = dict(
        Q=np.array([[1.0, 0.2], [0.2, 0.8]]),
        R=np.array([[0.3, 0.1], [0.05, 0.4]]),
        T=np.eye(2),
        v=np.array([0.5, 0.3]),
        v_star=np.ones(2),
    )
    if rule == "afa":
        kw.update(b=np.array([0.3, -0.2]), c=np.array([0.1, 0.05]), sigma_F2=0.09)
    return OrderParameters(**kw)


@pytest.mark.parametrize("rule", ["bp", "afa"])
def test_one_step_has_the_drift_and_the_covariance(rule):
    """Increments of one step h over P paths: mean h f(y₀) (3 SE), covariance h Σ(y₀)/N
    (every entry within 4 SE of the sample covariance; RMS z < 1.5 — tests/theory/test_cov.py
    explains the 4)."""
    st = _state(rule)
    N, h, P = 500.0, 0.05, 4000
    res = odeflow.solve_sde(rule, st, eta=1.0, alpha_max=h, dt=h, n_paths=P, seed=3, N=N,
                            record={"alpha": [0.0, h]})
    assert res.status == 0 and res.N == N
    sysd = odeflow.get_system(rule, 2, 2)
    lay = sysd.layout
    iu = np.triu_indices(2)
    parts = [res.Q[:, 1][:, iu[0], iu[1]], res.R[:, 1].reshape(P, -1), res.v[:, 1]]
    if rule == "afa":
        parts.append(res.b[:, 1])
    d = np.concatenate(parts, axis=1) - lay.pack(st)[None, :]
    y0 = lay.pack(st)
    f = np.empty_like(y0)
    sysd.rhs(y0, sysd.params(st, 1.0, 1.0, 0.0), f)
    cs = build_covariance(rule, 2, 2)
    _, Sig = cs.evaluate(st, 1.0, 1.0, 0.0, N=N)
    Sexp = h * Sig / N
    m = d.mean(axis=0)
    assert np.all(np.abs(m - h * f) < 3.0 * np.sqrt(np.diag(Sexp) / P)), (m, h * f)
    c = d - m
    Shat = c.T @ c / (P - 1)
    # SE of a Gaussian sample covariance: √((Σ_ii Σ_jj + Σ_ij²)/P)
    se = np.sqrt((np.outer(np.diag(Sexp), np.diag(Sexp)) + Sexp**2) / P)
    z = (Shat - Sexp) / se
    assert np.all(np.abs(z) < 4.0), z
    assert np.sqrt(np.mean(z**2)) < 1.5, z


def test_result_keys_statistics_and_save(tmp_path):
    st = _state("bp")
    res = odeflow.solve_sde("bp", st, eta=1.0, alpha_max=0.5, dt=0.05, n_paths=5, seed=1,
                            N=1000, record={"every": 0.25})
    assert res.b is None and res.u is None and res.v.shape == (5, 3, 2)
    np.testing.assert_allclose(res.mean("eg"), res.eg_mean)
    np.testing.assert_allclose(res.std("eg"), res.eg_std)
    np.testing.assert_allclose(res.std("Q"), np.std(res.Q, axis=0, ddof=1))
    np.testing.assert_allclose(res.mean("R"), np.mean(res.R, axis=0))
    with pytest.raises(ValueError, match="no 'b'"):
        res.mean("b")
    with pytest.raises(ValueError, match="unknown order parameter"):
        res.std("W")
    d = res.to_dict()
    for k in ("alpha", "eg_mean", "eg_std", "eg", "Q_mean", "Q_std", "R_mean", "R_std",
              "v_mean", "v_std"):
        assert k in d, k
    assert d["N"] == 1000.0
    for ext in ("npz", "json"):
        p = tmp_path / f"r.{ext}"
        res.save(p)
        back = odeflow.SDEResult.load(p)
        assert back.N == 1000.0 and back.b is None
        np.testing.assert_array_equal(back.eg, res.eg)
    with open(tmp_path / "r.json") as fh:
        js = json.load(fh)
    assert "v_std" in js and "eg_std" in js


def test_same_seed_same_paths_and_grouping_free():
    st = _state("afa")
    kw = dict(eta=1.0, alpha_max=0.3, dt=0.03, seed=5, N=500, record={"every": 0.1})
    a = odeflow.solve_sde("afa", st, n_paths=6, **kw)
    b = odeflow.solve_sde("afa", st, n_paths=6, **kw)
    np.testing.assert_array_equal(a.eg, b.eg)
    np.testing.assert_array_equal(a.b, b.b)
    # refactoring Σ every step vs every 2 steps changes the paths, not their start
    c = odeflow.solve_sde("afa", st, n_paths=6, noise_every=2, **kw)
    np.testing.assert_array_equal(c.eg[:, 0], a.eg[:, 0])
    assert c.params["noise_every"] == 2 and not np.array_equal(c.eg, a.eg)


def test_errors():
    st = _state("bp")
    with pytest.raises(ValueError, match="give N"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2)
    with pytest.raises(ValueError, match="N must be"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2, N=0)
    with pytest.raises(ValueError, match="only with N"):
        odeflow.solve_sde("afa", _state("afa"), eta=1.0, alpha_max=1, dt=0.1, n_paths=2,
                          noise_every=3)
    with pytest.raises(ValueError, match="noise_every"):
        odeflow.solve_sde("bp", st, eta=1.0, alpha_max=1, dt=0.1, n_paths=2, N=10,
                          noise_every=0)


def test_config_key_N():
    base = {
        "rule": "bp", "eta": 1.0, "alpha_max": 0.2, "dt": 0.1, "n_paths": 2, "seed": 1,
        "init": {k: np.asarray(v).tolist() for k, v in _state("bp").to_dict().items()
                 if v is not None},
    }
    cfg = validate_config({**base, "N": 500}, "sde")
    rule, init, kw = to_sde_args(cfg)
    assert kw["N"] == 500
    res = odeflow.solve_sde(rule, init, **kw)
    assert res.N == 500.0
    with pytest.raises(ValueError, match="N must be a number"):
        validate_config({**base, "N": "500"}, "sde")
    with pytest.raises(ValueError, match="unknown config keys N"):
        validate_config({k: v for k, v in {**base, "N": 5}.items() if k != "n_paths"}
                        | {"method": "dopri5"}, "solve")
