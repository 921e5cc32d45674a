"""The marginal quadrature scheme (theory.codegen_marginal) behind odeflow's interface:
solve, solve_sde, the JSON config and Result.quadrature."""

import json

import numpy as np
import pytest

import odeflow
from theory.state import OrderParameters


def _afa_state(seed=0, N=500):
    rng = np.random.default_rng(seed)
    w, ws = rng.normal(size=(2, N)), rng.normal(size=(2, N))
    return OrderParameters.from_weights(
        w + 0.3 * ws, ws, 0.3 * rng.normal(size=2), np.ones(2), F=0.3 * rng.normal(size=N)
    )


@pytest.mark.slow  # ~20 s: the marginal system from cold
def test_solve_with_marginal_scheme_follows_the_closed_form_ode():
    # AFA, erf, K = M = 2, α = 0 → 3: the closed-form ODE is the oracle. The marginal
    # right-hand side (default n = 24) is within ~1e-9 relative of it at such states
    # (docs/quadrature.md), so the trajectories (same dopri5 tolerances) agree far below 1e-6
    st = _afa_state()
    kw = dict(eta=0.5, eta_v=0.5, alpha_max=3.0, record={"every": 0.5})
    closed = odeflow.solve("afa", st, **kw)
    marg = odeflow.solve("afa", st, quadrature="marginal", **kw)
    assert marg.success and np.allclose(marg.alpha, closed.alpha)
    assert np.max(np.abs(marg.eg - closed.eg)) < 1e-6
    assert np.max(np.abs(marg.b - closed.b)) < 1e-6
    q = marg.quadrature
    assert q["rule"]["scheme"] == "marginal" and q["rule"]["n"] == 24
    # K = M = 2: the subsets of ≤ 4 fields the terms use (12 of them), 3.2·10⁵ nodes after
    # pruning; the error estimate (n = 18 against 24: theory.quadrature.coarse_n) bounds
    # the rule's error from above, and meets the default tolerance rtol = 1e-6 along the run
    assert q["rule"]["subsets"] == 12 and 2e5 < q["rule"]["nodes"] < 5e5
    assert q["error_final"]["coarse"]["n"] == 18
    assert q["error_final"]["rhs_rel"] < 1e-6 and q["error_final"]["meets"]
    assert q["options"]["rtol"] == 1e-6 and "failure" not in q


@pytest.mark.slow  # ~35 s (the marginal SDE kernels compile); solve's marginal path stays default
def test_sde_and_config_accept_the_marginal_scheme(tmp_path):
    from odeflow.__main__ import main
    from odeflow.api import Result

    st = _afa_state(1)
    # SDE: Σ = η² σ_F² E[δ_k δ_l] from the marginal kernels; the paths start at the
    # initial b and stay finite
    r = odeflow.solve_sde(
        "afa",
        st,
        eta=0.5,
        alpha_max=0.5,
        dt=0.05,
        n_paths=2,
        seed=3,
        quadrature={"scheme": "marginal", "n": 20},
    )
    assert r.success and np.all(np.isfinite(r.eg)) and np.allclose(r.b[:, 0], st.b)
    # the JSON config key "quadrature" takes the scheme by name
    init = {
        k: np.asarray(v).tolist()
        for k, v in st.to_dict().items()
        if k in ("Q", "R", "T", "v", "v_star")
    }
    cfg = {
        "rule": "bp",
        "activation": "tanh",
        "eta": 0.5,
        "alpha_max": 1.0,
        "quadrature": {"scheme": "marginal", "n": 24},
        "init": init,
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    assert main(["solve", str(p), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 0
    res = Result.load(tmp_path / "o.npz")
    assert res.quadrature["rule"]["scheme"] == "marginal"
    assert res.quadrature["rule"]["n"] == 24
    with pytest.raises(ValueError, match="'marginal' does not apply to rule 'pepita'"):
        odeflow.solve("pepita", st, eta=1.0, alpha_max=1.0, quadrature="marginal")
