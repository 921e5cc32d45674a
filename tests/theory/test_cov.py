"""Σ(y) = Cov[f] of the per-sample increments (theory.covariance) against an independent
Monte Carlo estimate: the fields (λ, ν, √N φ) drawn jointly Gaussian with covariance
[[Q, R, b], [Rᵀ, T, c], [bᵀ, cᵀ, ‖F‖²]] and the increments written out by hand in numpy
(docs/theory.md, docs/finite-size.md), for bp, afa and exact pepita at three states each.

Tolerance, per state (66 entries at K = M = 2 with b, 45 without): every entry within
Z_MAX = 4 standard errors of the Monte Carlo estimate (the SE of a sample covariance,
√(Var[(f_i − μ_i)(f_j − μ_j)]/S), estimated from the same samples), and the root mean
square of the 66 z-scores below 1.5 (a bias of one SE on every entry fails it). Why 4 and
not the issue's 3 entry by entry: with 66 entries per state the largest of 66 |z| exceeds 3
in a fair share of honest runs — measured at afa state 2 and pepita state 1 with 4·10⁶
samples, seeds 11/12/13: max |z| = 3.27/2.12/2.01 and 3.14/2.43/1.78 with mean z within
±0.4 — while 4 is the Bonferroni bound for 66 entries at a 0.4 % family-wise rate. The
reference Σ comes from a fine rule (Gauss–Hermite 40⁴ nodes) whose own error is far below
one SE. The default suite uses 10⁶ samples; the slow test 10⁷ (the issue's number).
"""

import numpy as np
import pytest
from scipy.special import erf

from theory.covariance import build_covariance, covariance, default_noise_rule, labels
from theory.ff_covariance import ff_covariance
from theory.quadrature import make_rule
from theory.state import OrderParameters

SQ2 = np.sqrt(2.0)


def g(x):
    return erf(x / SQ2)


def gp(x):
    return np.sqrt(2.0 / np.pi) * np.exp(-0.5 * x * x)


def _state(i, rule):
    Q = [np.eye(2), np.array([[1.0, 0.2], [0.2, 0.8]]), np.array([[1.3, 0.5], [0.5, 0.9]])][i]
    R = [
        np.array([[0.01, -0.02], [0.0, 0.015]]),
        np.array([[0.3, 0.1], [0.05, 0.4]]),
        np.array([[0.8, 0.3], [0.1, 0.7]]),
    ][i]
    v = [np.array([0.1, -0.05]), np.array([0.5, 0.3]), np.array([0.9, 0.8])][i]
    b = [np.array([0.05, 0.08]), np.array([0.3, -0.2]), np.array([0.6, 0.5])][i]
    c = np.array([0.02, 0.05])
    T = np.array([[1.0, 0.1], [0.1, 1.0]])
    kw = dict(Q=Q, R=R, T=T, v=v, v_star=np.ones(2))
    if rule == "afa":
        kw.update(b=b, c=c, sigma_F2=0.09)
    if rule == "pepita":  # σ_F = 0.03 at N = 1000: ‖F‖² = 0.9
        kw.update(b=b, c=c, sigma_F2=0.0009, F_norm2=0.9)
    return OrderParameters(**kw)


#: nodes per field of the reference rule: Gauss–Hermite converges slowly on erf fields of
#: variance > 1 (state 2, Q_00 = 1.3: Σ_{Q00,Q00} = 0.15716 with 20⁴ nodes, 0.158858 with
#: 30⁴, 0.158869 with 40⁴, against a Monte Carlo SE of 1.6e-4 at 4·10⁶ samples)
REF_N = 40
#: per-entry bound in standard errors (module docstring)
Z_MAX = 4.0
N_OF = {"bp": 500, "afa": 500, "pepita": 1000}
ETA = 1.0
ETA_V = 0.7


def _increments(rule, st, Z, psi):
    """N × the per-sample increments, written out from docs/theory.md (flat layout
    order: Q upper triangle, R, v, b)."""
    K, M = st.K, st.M
    lam, nu = Z[:, :K], Z[:, K:]
    e = g(lam) @ st.v - g(nu) @ st.v_star
    if rule == "pepita":
        lt = lam - e[:, None] * st.b[None, :]
        d = g(lam) - g(lt)
        P = lt
        Ps = nu - e[:, None] * st.c[None, :]
        pp = 1.0 + st.sigma_F2 * e * e
        s = g(lt)
    else:
        fb = st.v if rule == "bp" else st.b
        d = fb[None, :] * gp(lam) * e[:, None]
        P, Ps, pp, s = lam, nu, 1.0, g(lam)
    cols = []
    for k in range(K):
        for l in range(k, K):
            cols.append(
                -ETA * (d[:, k] * P[:, l] + d[:, l] * P[:, k]) + ETA**2 * d[:, k] * d[:, l] * pp
            )
    for k in range(K):
        for m in range(M):
            cols.append(-ETA * d[:, k] * Ps[:, m])
    for k in range(K):
        cols.append(-ETA_V * e * s[:, k])
    if rule in ("afa", "pepita"):
        pf = psi - (e * st.F_norm2 if rule == "pepita" else 0.0)
        for k in range(K):
            cols.append(-ETA * d[:, k] * pf)
    return np.stack(cols, axis=1)


def _monte_carlo(rule, st, S, seed, chunk=500_000):
    """(mean, Σ, SE of Σ) from S samples."""
    K, M = st.K, st.M
    F2 = st.F_norm2 if st.F_norm2 is not None else N_OF[rule] * (st.sigma_F2 or 0.0)
    C = np.zeros((K + M + 1, K + M + 1))
    C[:K, :K], C[:K, K : K + M], C[K : K + M, K : K + M] = st.Q, st.R, st.T
    C[K : K + M, :K] = st.R.T
    if st.b is not None:
        C[:K, -1] = C[-1, :K] = st.b
        C[K : K + M, -1] = C[-1, K : K + M] = st.c
    C[-1, -1] = F2 if F2 > 0 else 1.0
    Lc = np.linalg.cholesky(C)
    rng = np.random.default_rng(seed)
    center = s1 = s2 = s4 = None
    done = 0
    while done < S:
        n = min(chunk, S - done)
        X = rng.standard_normal((n, C.shape[0])) @ Lc.T
        f = _increments(rule, st, X[:, : K + M], X[:, -1])
        if center is None:
            center = f.mean(axis=0)
            s1 = np.zeros(f.shape[1])
            s2 = np.zeros((f.shape[1],) * 2)
            s4 = np.zeros((f.shape[1],) * 2)
        h = f - center
        s1 += h.sum(axis=0)
        s2 += h.T @ h
        s4 += (h * h).T @ (h * h)
        done += n
    m = s1 / S
    cov = s2 / S - np.outer(m, m)
    # Var[(f_i − μ_i)(f_j − μ_j)] ≈ E[h_i² h_j²] − Cov_ij² (center ≈ μ to O(1/√chunk))
    se = np.sqrt(np.maximum(s4 / S - cov**2, 0.0) / S)
    return center + m, cov, se


def _check(rule, i, S, seed):
    st = _state(i, rule)
    cs = build_covariance(rule, 2, 2, "erf")
    mq, Sq = cs.evaluate(
        st, ETA, ETA_V, 0.0, N=N_OF[rule], qrule=make_rule(4, "gauss-hermite", REF_N)
    )
    mm, Sm, se = _monte_carlo(rule, st, S, seed)
    z = (Sq - Sm) / se
    names = labels(cs.layout)
    worst = np.unravel_index(np.argmax(np.abs(z)), z.shape)
    assert np.sqrt(np.mean(z**2)) < 1.5, (rule, i, z)
    assert np.all(np.abs(z) < Z_MAX), (
        f"{rule} state {i}: Σ[{names[worst[0]]}, {names[worst[1]]}] = {Sq[worst]:.6g}, "
        f"Monte Carlo {Sm[worst]:.6g} ± {se[worst]:.2g} ({z[worst]:+.2f} SE)"
    )
    # the mean of f is the drift: the same samples, same tolerance (its SE: std/√S)
    sem = np.sqrt(np.diag(Sm) / S)
    assert np.all(np.abs(mq - mm) < 3.0 * sem), (rule, i, (mq - mm) / sem)
    return z


@pytest.mark.parametrize("rule, i", [("bp", 2), ("afa", 1), ("pepita", 0)])
def test_sigma_matches_monte_carlo(rule, i):
    _check(rule, i, 1_000_000, seed=100 + 10 * i + len(rule))


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["bp", "afa", "pepita"])
@pytest.mark.parametrize("i", [0, 1, 2])
def test_sigma_matches_monte_carlo_1e7(rule, i):
    _check(rule, i, 10_000_000, seed=7 + 10 * i + len(rule))


def test_mean_is_the_drift():
    """E[f] from the covariance kernel equals the closed-form ODE right-hand side."""
    import odeflow

    for rule in ("bp", "afa"):
        st = _state(1, rule)
        m, _, _ = covariance(
            rule, st, eta=ETA, eta_v=ETA_V, N=500, quadrature=make_rule(4, "gauss-hermite", REF_N)
        )
        sysd = odeflow.get_system(rule, 2, 2)
        y = sysd.layout.pack(st)
        dy = np.empty_like(y)
        sysd.rhs(y, sysd.params(st, ETA, ETA_V, 0.0), dy)
        np.testing.assert_allclose(m, dy, rtol=0, atol=2e-5)


def test_afa_b_block_is_the_feedback_noise():
    """Σ_bb/N → η² σ_F² E[δ_k δ_l] (the N-free noise of solve_sde without N) as N → ∞."""
    import odeflow

    st = _state(1, "afa")
    sysd = odeflow.get_system("afa", 2, 2)
    S0 = sysd.noise_covariance(st, ETA, ETA_V)
    for N in (1e4, 1e6):
        _, S, _ = covariance(
            "afa", st, eta=ETA, eta_v=ETA_V, N=N, quadrature=make_rule(4, "gauss-hermite", REF_N)
        )
        rel = np.max(np.abs(S[-2:, -2:] / N - S0)) / np.max(np.abs(S0))
        assert rel < 30.0 / N + 1e-6, (N, rel)


def test_default_rule_accuracy():
    """The default noise rule (Sobol 1024 at K + M = 4) is within 2 % of the fine rule."""
    st = _state(1, "bp")
    cs = build_covariance("bp", 2, 2, "erf")
    _, fine = cs.evaluate(st, ETA, ETA_V, 0.0, N=500, qrule=make_rule(4, "gauss-hermite", REF_N))
    _, coarse = cs.evaluate(st, ETA, ETA_V, 0.0, N=500)
    assert default_noise_rule(4).scheme == "sobol"
    assert np.max(np.abs(coarse - fine)) < 0.02 * np.max(np.abs(fine))


def test_bad_N():
    with pytest.raises(ValueError, match="N must be"):
        covariance("bp", _state(0, "bp"), eta=1.0, N=0.5)


# ------------------------------------------------------------------ Forward-Forward
def _ff_state(i):
    Q = [np.eye(2), np.array([[1.0, 0.2], [0.2, 0.8]]), np.array([[1.4, 0.3], [0.3, 1.1]])][i]
    R = [
        np.array([[0.02, -0.01], [0.0, 0.03]]),
        np.array([[0.3, 0.1], [0.05, 0.4]]),
        np.array([[0.7, 0.2], [0.1, 0.6]]),
    ][i]
    u = [np.array([0.1, -0.05]), np.array([0.3, 0.2]), np.array([0.6, 0.5])][i]
    return OrderParameters(
        Q=Q,
        R=R,
        T=np.array([[1.0, 0.1], [0.1, 1.0]]),
        u=u,
        v=np.zeros(2),
        v_star=np.array([1.0, 0.7]),
    )


FF_THETA = 1.0


def _ff_increments(st, Z):
    """N × the per-sample FF increments (docs/ff-theory.md), flat order Q, R, u."""
    K = st.K
    lam, nu = Z[:, :K], Z[:, K:]
    y = np.sign(g(nu) @ st.v_star)
    lp = lam + st.u[None, :] * y[:, None]
    lm = lam - st.u[None, :] * y[:, None]
    hp, hm = g(lp), g(lm)
    Gp, Gm = (hp**2).sum(1), (hm**2).sum(1)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    ap = -2.0 * sig(FF_THETA - Gp)[:, None] * hp * gp(lp)
    am = 2.0 * sig(Gm - FF_THETA)[:, None] * hm * gp(lm)
    d = ap + am
    cols = []
    for k in range(K):
        for l in range(k, K):
            cols.append(
                -ETA * (d[:, k] * lam[:, l] + d[:, l] * lam[:, k]) + ETA**2 * d[:, k] * d[:, l]
            )
    for k in range(K):
        for m in range(st.M):
            cols.append(-ETA * d[:, k] * nu[:, m])
    for k in range(K):
        cols.append(-ETA_V * y * (ap[:, k] - am[:, k]))
    return np.stack(cols, axis=1)


def _ff_check(i, S, seed):
    st = _ff_state(i)
    # reference: 48 λ nodes per unit (5e-5 relative from the converged Σ; the SDE's default
    # 20 nodes: 0.25 %)
    mq, Sq, names = ff_covariance(st, eta=ETA, eta_u=ETA_V, theta=FF_THETA, nodes={"n_lam": 48})
    C = np.block([[st.Q, st.R], [st.R.T, st.T]])
    Lc = np.linalg.cholesky(C)
    rng = np.random.default_rng(seed)
    s1 = s2 = s4 = center = None
    done = 0
    while done < S:
        n = min(500_000, S - done)
        f = _ff_increments(st, rng.standard_normal((n, 4)) @ Lc.T)
        if center is None:
            center = f.mean(0)
            s1, s2, s4 = (
                np.zeros(f.shape[1]),
                np.zeros((f.shape[1],) * 2),
                np.zeros((f.shape[1],) * 2),
            )
        h = f - center
        s1 += h.sum(0)
        s2 += h.T @ h
        s4 += (h * h).T @ (h * h)
        done += n
    m = s1 / S
    Sm = s2 / S - np.outer(m, m)
    se = np.sqrt(np.maximum(s4 / S - Sm**2, 0.0) / S)
    z = (Sq - Sm) / se
    w = np.unravel_index(np.argmax(np.abs(z)), z.shape)
    assert np.sqrt(np.mean(z**2)) < 1.5, z
    assert np.all(np.abs(z) < Z_MAX), (
        f"ff state {i}: Σ[{names[w[0]]}, {names[w[1]]}] = {Sq[w]:.6g}, Monte Carlo "
        f"{Sm[w]:.6g} ± {se[w]:.2g} ({z[w]:+.2f} SE)"
    )
    sem = np.sqrt(np.diag(Sm) / S)
    assert np.all(np.abs(mq - center - m) < 3.0 * sem + 2e-4), (mq, center + m)


def test_ff_sigma_matches_monte_carlo():
    _ff_check(1, 1_000_000, seed=31)


@pytest.mark.slow
@pytest.mark.parametrize("i", [0, 1, 2])
def test_ff_sigma_matches_monte_carlo_1e7(i):
    _ff_check(i, 10_000_000, seed=41 + i)


# fa: ~14 s cold (its covariance module is compiled for this test alone); bp stays
@pytest.mark.parametrize("rule", ["bp", pytest.param("fa", marks=pytest.mark.slow)])
def test_drift1_is_the_finite_n_mean_increment(rule):
    """The O(1/N) drift (theory.covariance, "The O(1/N) drift") against the exact mean
    increment of Q of an actual network at N = 8: inputs x ∈ R⁸ drawn whole, w updated by
    −(η/√N) δ x, N·ΔQ averaged over 4·10⁶ samples. E[f] alone misses it by tens of standard
    errors (the η² δδ x·x/N term with x·x/N → 1); E[f] + c/N must agree within 3 SE
    entry by entry (3 entries: a 0.8 % family-wise false-alarm rate for a fair estimate).
    Reference rule Gauss–Hermite 24⁴ (at 14⁴ c was still 7 % off: the |ξ|² weight needs
    more nodes than E[f])."""
    N, eta, S, chunk = 8, 1.5, 4_000_000, 500_000
    rng = np.random.default_rng(3)
    w, ws = rng.standard_normal((2, N)), rng.standard_normal((2, N))
    v, fb = np.array([0.8, -0.5]), np.array([0.6, 0.9])
    st = OrderParameters.from_weights(w, ws, v, np.ones(2), **({"b": fb} if rule == "fa" else {}))
    cs = build_covariance(rule, 2, 2, "erf")
    p = cs.params(st, eta, 1.0, 0.0, N=N, qrule=make_rule(4, "gauss-hermite", 24))
    y = np.ascontiguousarray(cs.layout.pack(st), dtype=float)
    m, c = np.empty(y.size), np.empty(y.size)
    cs.moments(y, p, m, np.empty((y.size, y.size)))
    cs.drift1(y, p, c)
    assert np.all(c[3:] == 0.0)
    back = v if rule == "bp" else fb
    tot, tot2 = np.zeros(3), np.zeros(3)
    for _ in range(S // chunk):
        X = rng.standard_normal((chunk, N))
        lam, nu = X @ w.T / np.sqrt(N), X @ ws.T / np.sqrt(N)
        e = g(lam) @ v - g(nu).sum(1)
        d = e[:, None] * back * gp(lam)
        xx = (X * X).sum(1) / N
        f = np.stack(
            [
                -eta * (d[:, k] * lam[:, l] + d[:, l] * lam[:, k]) + eta**2 * d[:, k] * d[:, l] * xx
                for k, l in ((0, 0), (0, 1), (1, 1))
            ],
            1,
        )
        tot += f.sum(0)
        tot2 += (f * f).sum(0)
    mc = tot / S
    se = np.sqrt(tot2 / S - mc**2) / np.sqrt(S)
    z_leading = (m[:3] - mc) / se
    z = (m[:3] + c[:3] / N - mc) / se
    assert np.max(np.abs(z_leading)) > 10, z_leading
    assert np.max(np.abs(z)) < 3, z
