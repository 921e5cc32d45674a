"""The deep-student right-hand side (theory.deep) against an independent Monte Carlo
estimate: plain numpy, chunked, over the Gaussian fields (λ, ν) and ζ, written from the
weight-space updates of docs/deep.md (not from the kernels' A/B decomposition), with
the b drift by Gaussian regression ``√N E[δ φ] = E[δ (b, c)ᵀ C⁻¹ z]`` (no derivative,
unlike the kernels' tangent pass).

Every component must agree within 4 standard errors (with ~60 components per case a
3-SE band would fail by chance ~15% of the time; 4 SE: ~0.4%). Default suite: 10⁶
samples; ``slow``: 10⁷ samples at L = 3 and 4 for every rule.
"""

import numpy as np
import pytest

from theory.deep import DEEP_RULES, build_deep_system
from theory.quadrature import make_rule
from theory.state import OrderParameters


def g(x):
    from scipy.special import erf

    return erf(x / np.sqrt(2.0))


def gp(x):
    return np.sqrt(2.0 / np.pi) * np.exp(-0.5 * x * x)


def make_state(widths, M, seed=3):
    """A generic state: correlated fields, O(1) read-out, all feedback present."""
    rng = np.random.default_rng(seed)
    K = widths[0]
    N = 400
    w = rng.standard_normal((K, N))
    ws = rng.standard_normal((M, N))
    F = 0.1 * rng.standard_normal(N)
    base = OrderParameters.from_weights(w * 0.9, ws, np.zeros(K), np.ones(M), F=F)
    W = [
        rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i])
        for i in range(len(widths) - 1)
    ]
    return base.replace(
        v=0.5 * rng.standard_normal(widths[-1]),
        v_star=np.array([1.0, 0.7, -0.5][:M]),
        W=W,
        b=0.3 * rng.standard_normal(K),
        B=[rng.standard_normal((widths[i], widths[i + 1])) for i in range(len(widths) - 1)],
        d=[rng.standard_normal(k) for k in widths],
        F_norm2=0.8,
    )


def _forward(lam, W):
    hs = [g(lam)]
    for Wi in W:
        hs.append(g(hs[-1] @ Wi.T))
    return hs


def increments(rule, st, eta, eta_v, eta_W, sigma, m, rng, phi="regression"):
    """``m`` samples of the per-sample increments f (N × one step's change) of dQ (upper
    triangle), dR, dv, dW (flattened) and db (adaptive rules), in the layout order of
    theory.deep. ``phi``: √N φ in f_b as its regression on the fields (``"regression"``:
    the same mean, less variance, for the drift) or sampled in full (``"sample"``: adds
    the independent part s⊥ ξ⊥, for the covariance)."""
    K, M = st.K, st.M
    W, v, vs = list(st.W), st.v, st.v_star
    C = st.field_covariance()
    Lc = np.linalg.cholesky(C)
    Cinv = np.linalg.inv(C)
    adaptive = DEEP_RULES[rule][1] == "adaptive"
    pep = rule.startswith("pepita")
    b = st.b
    c = st.c if st.c is not None else np.zeros(M)
    s2 = st.sigma_F2 or 0.0
    f2 = st.F_norm2 or 0.0
    iu = np.triu_indices(K)
    z = rng.standard_normal((m, K + M)) @ Lc.T
    zeta = rng.standard_normal(m)
    lam, nu = z[:, :K], z[:, K:]
    hs = _forward(lam, W)
    yhat = hs[-1] @ v
    y = g(nu) @ vs + sigma * zeta
    e = yhat - y
    # per-layer signals δ and the pre-activations' derivatives
    pre = [lam] + [hs[i] @ W[i].T for i in range(len(W))]
    H = len(hs)
    if pep:
        hts = _forward(lam - e[:, None] * b, W)
        dl = [hs[i] - hts[i] for i in range(H)]
    elif rule == "afa":
        dl = [gp(lam) * b * e[:, None]]
        for i in range(len(W)):
            dl.append(gp(pre[i + 1]) * (dl[-1] @ W[i].T))
    elif rule == "dfa":
        dl = [gp(pre[i]) * st.d[i] * e[:, None] for i in range(H)]
    else:  # bp, fa: backward chain
        fb = v if rule == "bp" else st.b
        dl = [None] * H
        dl[-1] = gp(pre[-1]) * fb * e[:, None]
        for i in range(H - 2, -1, -1):
            back = W[i].T if rule == "bp" else st.B[i]
            dl[i] = gp(pre[i]) * (dl[i + 1] @ back.T)
    # the first-layer update Δw_k = −(η/√N) Σ_terms coef_k · vec, vec ∈ {x, x̃}
    if rule == "pepita":
        terms = [(dl[0], "xt")]
    elif rule == "pepita-hebbian":
        terms = [(hs[0], "x"), (-hts[0], "xt")]
    else:
        terms = [(dl[0], "x")]
    eb = e[:, None]

    def proj(vec, over, fb, eb=eb):  # w·vec/√N from the fields (λ or ν), fb = (b or c)
        return over if vec == "x" else over - eb * fb

    dQ = np.zeros((m, K, K))
    dR = np.zeros((m, K, M))
    db = np.zeros((m, K))
    # regression of φ on the fields: √N E[coef φ] = E[coef · (b, c)ᵀ C⁻¹ z]
    phi_r = z @ (Cinv @ np.concatenate([b if adaptive else np.zeros(K), c]))
    for coef, vec in terms:
        Pl = proj(vec, lam, b)
        Pn = proj(vec, nu, c)
        dQ += -eta * (coef[:, :, None] * Pl[:, None, :] + Pl[:, :, None] * coef[:, None, :])
        dR += -eta * coef[:, :, None] * Pn[:, None, :]
        if adaptive:
            db += -eta * coef * phi_r[:, None]
            if vec == "xt":
                db += eta * f2 * coef * e[:, None]
        for coef2, vec2 in terms:
            pp = 1.0 + (s2 * e * e if (vec == "xt" and vec2 == "xt") else 0.0 * e)
            dQ += eta**2 * coef[:, :, None] * coef2[:, None, :] * pp[:, None, None]
    # read-out and last layer
    if rule == "pepita-hebbian":
        sv = yhat[:, None] * hs[-1] - (yhat - e)[:, None] * hts[-1]
    elif pep:
        sv = e[:, None] * hts[-1]
    else:
        sv = e[:, None] * hs[-1]
    parts = [dQ[:, iu[0], iu[1]], dR.reshape(m, -1), -eta_v * sv]
    for i in range(len(W)):
        if rule == "pepita-hebbian":
            S = (
                hs[i + 1][:, :, None] * hs[i][:, None, :]
                - hts[i + 1][:, :, None] * hts[i][:, None, :]
            )
        elif pep:
            S = dl[i + 1][:, :, None] * hts[i][:, None, :]
        else:
            S = dl[i + 1][:, :, None] * hs[i][:, None, :]
        parts.append(-eta_W * S.reshape(m, -1))
    if adaptive:
        parts.append(db)
    if phi == "sample" and adaptive:
        bc = np.concatenate([b, c])
        s_perp = np.sqrt(max(f2 - bc @ Cinv @ bc, 0.0))
        xi = s_perp * rng.standard_normal(m)
        for coef, _ in terms:
            db += -eta * coef * xi[:, None]
        parts[-1] = db
    return np.concatenate(parts, axis=1)


def mc_rhs(rule, st, eta, eta_v, eta_W, sigma, n, chunk=200_000, seed=0):
    """Per-component Monte Carlo mean and standard error of :func:`increments`."""
    rng = np.random.default_rng(seed)
    s1 = s2s = None
    done = 0
    while done < n:
        m = min(chunk, n - done)
        f = increments(rule, st, eta, eta_v, eta_W, sigma, m, rng)
        if s1 is None:
            s1, s2s = f.sum(0), (f * f).sum(0)
        else:
            s1 += f.sum(0)
            s2s += (f * f).sum(0)
        done += m
    mean = s1 / n
    se = np.sqrt(np.maximum(s2s / n - mean**2, 0.0) / n)
    return mean, se


def check(rule, widths, M, n, sigma=0.2):
    st = make_state(widths, M)
    if rule == "fa":  # FA's b replaces v: the last hidden width
        st = st.replace(b=np.linspace(-0.8, 1.1, widths[-1]))
    eta, eta_v, eta_W = 0.7, 0.5, 0.3
    system = build_deep_system(rule, widths, M, "erf", {"scheme": "sobol", "n": 1 << 17})
    got = system.evaluate(st, eta, eta_v, sigma, eta_W=eta_W)
    y = np.concatenate(
        [got["Q"][np.triu_indices(st.K)], got["R"].ravel(), got["v"]]
        + [w.ravel() for w in got["W"]]
        + ([got["b"]] if "b" in got else [])
    )
    mean, se = mc_rhs(rule, st, eta, eta_v, eta_W, sigma, n)
    z = np.abs(y - mean) / np.maximum(se, 1e-12)
    return z, y, mean, se


@pytest.mark.parametrize("rule", list(DEEP_RULES))
def test_rhs_matches_monte_carlo_L3(rule):
    z, y, mean, se = check(rule, [2, 3], 2, 1_000_000)
    assert np.max(z) < 4.0, (rule, np.max(z), y, mean, se)


@pytest.mark.slow
@pytest.mark.parametrize("widths", [[2, 3], [2, 3, 2]])
@pytest.mark.parametrize("rule", list(DEEP_RULES))
def test_rhs_matches_monte_carlo_1e7(rule, widths):
    z, y, mean, se = check(rule, widths, 2, 10_000_000)
    assert np.max(z) < 4.0, (rule, widths, np.max(z))


def test_quadrature_rule_is_fine_enough():
    """The Sobol rule used above is far more accurate than the MC's SE: its change under
    a Gauss–Hermite rule is < 1e-4 (so the MC comparison tests the equations)."""
    st = make_state([2, 3], 2)
    sys_s = build_deep_system("pepita", [2, 3], 2, "erf", {"scheme": "sobol", "n": 1 << 17})
    sys_g = build_deep_system("pepita", [2, 3], 2, "erf", {"scheme": "gauss-hermite", "n": 14})
    a = sys_s.evaluate(st, 0.7, 0.5, 0.0)
    b_ = sys_g.evaluate(st, 0.7, 0.5, 0.0)
    for k in ("Q", "R", "v", "b"):
        assert np.max(np.abs(a[k] - b_[k])) < 1e-4, k
    assert make_rule(4, "gauss-hermite", 14).size == 14**4


def mc_observables(rule, st, n, seed=1):
    """ε_g and the per-layer cos_delta by plain Monte Carlo (mean, standard error)."""
    rng = np.random.default_rng(seed)
    K, M = st.K, st.M
    W, v = list(st.W), st.v
    z = rng.standard_normal((n, K + M)) @ np.linalg.cholesky(st.field_covariance()).T
    lam, nu = z[:, :K], z[:, K:]
    hs = _forward(lam, W)
    pre = [lam] + [hs[i] @ W[i].T for i in range(len(W))]
    e = hs[-1] @ v - g(nu) @ st.v_star
    H = len(hs)

    def chain(fb, backs):
        out = [None] * H
        out[-1] = gp(pre[-1]) * fb * e[:, None]
        for i in range(H - 2, -1, -1):
            out[i] = gp(pre[i]) * (out[i + 1] @ backs[i].T)
        return out

    bp = chain(v, [w.T for w in W])
    if rule == "fa":
        dl = chain(st.b, st.B)
    elif rule == "dfa":
        dl = [gp(pre[i]) * st.d[i] * e[:, None] for i in range(H)]
    else:  # pepita
        hts = _forward(lam - e[:, None] * st.b, W)
        dl = [hs[i] - hts[i] for i in range(H)]
    cos = [
        np.mean((dl[i] * bp[i]).sum(1))
        / np.sqrt(np.mean((dl[i] ** 2).sum(1)) * np.mean((bp[i] ** 2).sum(1)))
        for i in range(H)
    ]
    return 0.5 * np.mean(e * e), 0.5 * np.std(e * e) / np.sqrt(n), np.array(cos)


@pytest.mark.parametrize("rule", ["fa", "dfa", "pepita"])
def test_eg_and_cos_delta_match_monte_carlo(rule):
    """ε_g within 4 SE of 10⁶ samples; cos_delta (a ratio of means, SE ≲ 2e-3 here)
    within 0.01."""
    st = make_state([2, 3, 2], 2)
    if rule == "fa":
        st = st.replace(b=np.linspace(-0.8, 1.1, 2))
    system = build_deep_system(rule, [2, 3, 2], 2, "erf", {"scheme": "sobol", "n": 1 << 17})
    obs = system.observables(system.layout.pack(st), system.params(st, 0.5))
    eg, se, cos = mc_observables(rule, st, 1_000_000)
    assert abs(obs["eg"] - eg) < 4 * se
    assert np.max(np.abs(obs["cos_delta"] - cos)) < 0.01, (obs["cos_delta"], cos)
    assert np.min(np.abs(cos)) < 0.99  # not trivially 1: the rules differ from BP
