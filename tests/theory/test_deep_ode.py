"""The deep student (theory.deep) at widths = [K1] is the committee: its right-hand side
equals the committee's quadrature ODEs (theory.codegen_quad, an independent code path)
with the same Gauss–Hermite rule to 1e-10; cos_delta is 1 for BP and the L² cosine for
the others; the state's deep fields are checked with the key and both shapes named."""

import numpy as np
import pytest

from theory.codegen_quad import build_quad_system
from theory.deep import build_deep_system
from theory.state import OrderParameters

GH = {"scheme": "gauss-hermite", "n": 12}


def two_layer_state():
    return OrderParameters(
        Q=np.array([[1.0, 0.2], [0.2, 0.8]]),
        R=np.array([[0.3, 0.1], [-0.1, 0.2]]),
        T=np.array([[1.0, 0.1], [0.1, 1.0]]),
        v=np.array([0.3, -0.2]),
        v_star=np.array([1.0, 0.7]),
        b=np.array([0.2, -0.1]),
        c=np.array([0.05, 0.1]),
        sigma_F2=0.01,
        F_norm2=1.0,
        W=[],
    )


@pytest.mark.parametrize("sigma", [0.0, 0.3])
@pytest.mark.parametrize("rule", ["bp", "fa", "afa", "pepita", "pepita-forward"])
def test_two_layer_equals_committee(rule, sigma):
    st = two_layer_state()
    deep = build_deep_system(rule, [2], 2, "erf", GH)
    comm = build_quad_system(rule, 2, 2, "erf", GH)
    y = deep.layout.pack(st)
    yc = comm.layout.pack(st)
    assert np.array_equal(y, yc)  # same layout at L = 2
    dy, dc = np.empty_like(y), np.empty_like(yc)
    deep.rhs(y, deep.params(st, 0.7, 0.5, sigma), dy)
    comm.rhs(yc, comm.params(st, 0.7, 0.5, sigma), dc)
    assert np.max(np.abs(dc)) > 1e-2
    np.testing.assert_allclose(dy, dc, rtol=0, atol=1e-10)
    if deep.noise is not None:
        S1, S2 = np.empty((2, 2)), np.empty((2, 2))
        deep.noise(y, deep.params(st, 0.7, 0.5, sigma), S1)
        comm.noise(yc, comm.params(st, 0.7, 0.5, sigma), S2)
        np.testing.assert_allclose(S1, S2, rtol=0, atol=1e-12)


def test_eg_matches_closed_form():
    """ε_g over the nodes vs the erf closed form ½ Σ A_a A_b I2 (docs/theory.md §3)."""
    st = two_layer_state()
    deep = build_deep_system("bp", [2], 2, "erf", {"scheme": "gauss-hermite", "n": 40})
    C = st.field_covariance()
    A = np.concatenate([st.v, -st.v_star])
    d = np.sqrt(1 + np.diag(C))
    I2 = (2 / np.pi) * np.arcsin(C / np.outer(d, d))
    assert abs(deep.eps_g(st) - 0.5 * A @ I2 @ A) < 1e-9


def deep_state(widths=(2, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    K = widths[0]
    W = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    return OrderParameters.from_spec(K, 2, Q=1.0, R=0.2, v=0.0, v_star=1.0).replace(
        v=rng.standard_normal(widths[-1]), W=W
    )


def test_cos_delta_bp_is_one_and_dfa_is_a_cosine():
    st = deep_state()
    rng = np.random.default_rng(1)
    bp = build_deep_system("bp", [2, 3, 2], 2, "erf", GH)
    cos = bp.observables(bp.layout.pack(st), bp.params(st, 1.0))["cos_delta"]
    np.testing.assert_allclose(cos, 1.0, atol=1e-12)
    # DFA with d_ℓ equal to BP's effective feedback at the last layer: cos = 1 there
    st2 = st.replace(d=[rng.standard_normal(2), rng.standard_normal(3), st.v.copy()])
    dfa = build_deep_system("dfa", [2, 3, 2], 2, "erf", GH)
    cos = dfa.observables(dfa.layout.pack(st2), dfa.params(st2, 1.0))["cos_delta"]
    assert abs(cos[2] - 1.0) < 1e-12
    assert np.all(np.abs(cos) <= 1 + 1e-12) and np.all(np.abs(cos[:2]) < 0.999)


def test_deep_fields_name_key_and_shapes():
    st = deep_state()
    with pytest.raises(ValueError, match=r"W\[1\] must have shape \(K3, 3\).*got \(2, 2\)"):
        st.replace(W=[st.W[0], np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"v must have shape \(2,\).*got \(3,\)"):
        st.replace(v=np.zeros(3))
    with pytest.raises(ValueError, match=r"B\[0\] must have shape \(2, 3\).*got \(3, 2\)"):
        st.replace(B=[np.zeros((3, 2)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"d must have one vector per hidden layer \(3\)"):
        st.replace(d=[np.zeros(2)])
    st3 = deep_state((2, 3))
    fa = build_deep_system("fa", [2, 3], 2, "erf", GH)
    with pytest.raises(ValueError, match=r"b \(FA's fixed feedback.*shape \(3,\).*got \(2,\)"):
        fa.params(st3.replace(b=np.zeros(2)), 1.0)
    with pytest.raises(ValueError, match="B are required"):
        fa.params(st3.replace(b=np.zeros(3)), 1.0)
    with pytest.raises(ValueError, match=r"widths \[2, 3, 2\].*built for widths \[2, 3\]"):
        fa.params(st, 1.0)


def test_state_roundtrip_npz(tmp_path):
    st = deep_state().replace(d=[np.ones(2), np.ones(3), np.ones(2)])
    st.save(tmp_path / "s.npz")
    back = OrderParameters.load(tmp_path / "s.npz")
    assert back.widths == [2, 3, 2]
    for a, b in zip(back.W, st.W):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.d[1], st.d[1])
    assert OrderParameters.from_dict({**st.to_dict()}).widths == [2, 3, 2]
    two = OrderParameters.from_spec(2, 2).replace(W=[])
    assert OrderParameters.from_dict(two.to_dict()).W == ()
