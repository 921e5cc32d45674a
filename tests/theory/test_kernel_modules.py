"""The rule-independent numba loops are real modules (theory/*_kernels.py): they import and
run on their own with their stand-in definitions (erf, backprop), and the generated
modules are built from exactly their text (theory.emit.include)."""

import numpy as np
import pytest

from theory import emit
from theory.state import OrderParameters

STATE = OrderParameters(
    Q=np.array([[1.0, 0.1], [0.1, 0.9]]),
    R=np.array([[0.2, 0.3], [0.4, 0.5]]),
    T=np.array([[1.0, 0.25], [0.25, 1.5]]),
    v=np.array([0.6, 0.7]),
    v_star=np.array([1.1, 1.2]),
    b=np.array([0.8, 0.9]),
    c=np.array([0.35, 0.45]),
    sigma_F2=0.09,
)


@pytest.mark.parametrize(
    "name", ["closed_kernels", "field_kernels", "quad_kernels", "marginal_kernels", "ff_kernels"]
)
def test_generated_modules_include_the_kernel_text(name):
    text = emit.kernel_path(name).read_text()
    inc = emit.include(emit.kernel_path(name))
    assert emit.BEGIN not in inc.splitlines() and emit.END not in inc.splitlines()
    # everything after the stand-ins is included verbatim
    tail = text.split(emit.END + "\n", 1)[1].strip()
    assert tail in inc


def test_include_refuses_a_module_without_the_block(tmp_path):
    f = tmp_path / "k.py"
    f.write_text("x = 1\n")
    with pytest.raises(RuntimeError, match="exactly one block"):
        emit.include(f)


def test_quadrature_kernels_run_on_their_own():
    """quad_kernels._eg_nodes (ε_g over tensor Gauss–Hermite nodes) with the stand-in erf
    against field_kernels._eg_closed (the closed form) and theory.observables: the same
    ε_g to the rule's accuracy, which converges geometrically (measured: 5e-5, 1.4e-8,
    7e-12 at 10, 20, 30 nodes per field)."""
    from theory import field_kernels, quad_kernels
    from theory.codegen import build_system
    from theory.observables import eps_g_of

    want = eps_g_of(STATE, "erf")
    for n, tol in ((20, 1e-7), (30, 1e-10)):
        s = build_system("bp", 2, 2, "erf", quadrature={"scheme": "gauss-hermite", "n": n})
        y, p = s.layout.pack(STATE), s.params(STATE, 0.5)
        assert field_kernels._eg_closed(y, p) == pytest.approx(want, rel=1e-13)
        assert abs(quad_kernels._eg_nodes(y, p) - want) < tol


@pytest.mark.slow  # ~30 s: compiles the marginal kernel module alone
def test_marginal_kernels_run_on_their_own():
    """marginal_kernels._integrate with its stand-ins (backprop, erf) against the closed-form
    backprop ODEs (theory.codegen): the right-hand side to the marginal rule's accuracy."""
    from theory import marginal_kernels
    from theory.codegen import build_system

    closed = build_system("bp", 2, 2, "erf")
    marg = build_system("bp", 2, 2, "erf", quadrature="marginal")
    y = closed.layout.pack(STATE)
    dy, want = np.empty_like(y), np.empty_like(y)
    marginal_kernels._integrate(y, marg.params(STATE, 0.5), np.int64(0), dy, np.empty((1, 1)))
    closed.rhs(y, closed.params(STATE, 0.5), want)
    np.testing.assert_allclose(dy, want, rtol=1e-8, atol=1e-10)


@pytest.mark.slow  # ~40 s: compiles the FF kernel module alone
def test_ff_kernels_run_on_their_own():
    """theory.ff_kernels, imported as a plain module, is Forward-Forward's kernel for its
    stand-in activation erf: its rhs, ε_g and loss equal those of the generated erf module
    (which prints the same functions from the sympy signals) to float rounding."""
    from theory import ff_kernels
    from theory.ff import build_ff_system

    st = OrderParameters(
        Q=np.array([[1.0, 0.2], [0.2, 0.8]]),
        R=np.array([[0.4], [-0.2]]),
        T=np.eye(1),
        v=np.zeros(2),
        v_star=np.ones(1),
        u=np.array([0.3, -0.1]),
    )
    s = build_ff_system(2, 1, "erf", nodes={"n_lam": 12, "n_eg": 16})
    p, y = s.params(st, 1.0, theta=1.0), s.layout.pack(st)
    a, b = np.empty_like(y), np.empty_like(y)
    s.rhs(y, p, a)
    ff_kernels.rhs(y, p, b)
    assert not np.allclose(a, 0.0)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    assert ff_kernels.eg(y, p) == pytest.approx(s.eg(y, p), rel=1e-12, abs=1e-14)
    la, lb = np.empty(2), np.empty(2)
    s.loss_gap(y, p, la)
    ff_kernels.loss_gap(y, p, lb)
    np.testing.assert_allclose(lb, la, rtol=1e-12)
