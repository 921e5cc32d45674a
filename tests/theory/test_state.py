"""The shared state type: validation with clear errors, construction, packing."""

import numpy as np
import pytest

from theory.codegen import build_system
from theory.rules import Rule, e, gp, lam
from theory.state import Layout, OrderParameters


def test_from_weights_measures_definitions():
    rng = np.random.default_rng(0)
    N, K, M = 500, 3, 2
    w, ws, F = rng.normal(size=(K, N)), rng.normal(size=(M, N)), 0.3 * rng.normal(size=N)
    st = OrderParameters.from_weights(w, ws, np.ones(K), np.ones(M), F=F)
    assert np.allclose(st.Q[0, 1], w[0] @ w[1] / N)
    assert np.allclose(st.R[2, 1], w[2] @ ws[1] / N)
    assert np.allclose(st.b, w @ F / np.sqrt(N))
    assert np.allclose(st.c, ws @ F / np.sqrt(N))
    assert st.sigma_F2 == pytest.approx(F @ F / N)


def test_from_spec_and_layout_roundtrip():
    st = OrderParameters.from_spec(3, 2, Q=1.5, R=0.1, v=0.2, b=0.3, c=0.0, sigma_F2=0.09)
    assert np.allclose(st.Q, 1.5 * np.eye(3)) and np.allclose(st.R, 0.1)
    lay = Layout(3, 2, adaptive_b=True)
    y = lay.pack(st)
    assert y.shape == (lay.n,) == (6 + 6 + 3 + 3,)
    back = lay.state(y, st)
    for name in ("Q", "R", "v", "b"):
        assert np.array_equal(getattr(back, name), getattr(st, name))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(Q=[[1, 0.5], [0.2, 1]]), "Q must be symmetric"),
        (dict(R=[[2.0, 0], [0, 0]]), "positive semi-definite"),
        (dict(Q=np.eye(3)), "R must have shape"),
        (dict(v=[1, 2, 3]), "v must have shape"),
        (dict(Q=[[np.nan, 0], [0, 1]]), "non-finite"),
        (dict(b=[1.0]), "b must have shape"),
        (dict(sigma_F2=-1.0), "sigma_F2"),
    ],
)
def test_bad_states_raise_clear_errors(kwargs, match):
    base = dict(Q=np.eye(2), R=np.zeros((2, 2)), T=np.eye(2), v=np.zeros(2), v_star=np.ones(2))
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        OrderParameters(**base)


def test_bad_system_inputs():
    with pytest.raises(ValueError, match="unknown rule 'sgd2'.*bp, fa, afa"):
        build_system("sgd2", 2, 2)
    with pytest.raises(ValueError, match="K must be a positive integer"):
        build_system("bp", 0, 2)
    with pytest.raises(ValueError, match="unknown activation"):
        build_system("bp", 2, 2, "softplus")
    with pytest.raises(ValueError, match="unknown symbols"):
        Rule("x", delta=gp(lam) * e * lam * __import__("sympy").Symbol("q"))
    sys_ = build_system("afa", 2, 2)
    with pytest.raises(ValueError, match="b, c, sigma_F2 are required"):
        sys_.params(OrderParameters.from_spec(2, 2), eta=0.5)
    with pytest.raises(ValueError, match="system was built for K=2, M=2"):
        sys_.params(OrderParameters.from_spec(3, 2, b=0, c=0, sigma_F2=1), eta=0.5)
    with pytest.raises(ValueError, match="eta must be"):
        sys_.params(OrderParameters.from_spec(2, 2, b=0, c=0, sigma_F2=1), eta=-1)
