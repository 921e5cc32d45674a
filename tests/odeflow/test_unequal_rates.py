"""Unequal learning rates η ≠ η_v in the exact-PEPITA ODE (docs/quadrature.md): a swap
of η and η_v anywhere in the generated equations must be seen (issue 23: every test used
η = η_v, so it would not have been)."""

import math

import numpy as np
from scipy.special import erf

from theory.codegen import build_system
from theory.state import OrderParameters


def _state(rng, sigma_F=0.05, N=1000):
    w, ws = rng.normal(size=(2, N)), rng.normal(size=(2, N))
    F = sigma_F * rng.normal(size=N)
    st = OrderParameters.from_weights(w + 0.4 * ws, ws, 0.5 * rng.normal(size=2), np.ones(2), F=F)
    return st.replace(b=10 * st.b)  # |b| ~ 0.5: δ far from linear in b


def test_exact_pepita_rates_enter_where_they_belong():
    # dv/dα = −η_v E[e g(λ̃)] (the read-out's own rate, SGD on v with the second-pass
    # activity); dQ, dR, db carry η only. Oracle for dv: Monte Carlo over the fields
    # with e and λ̃ = λ − e b written out in numpy; the rest: η_v must not move them.
    rng = np.random.default_rng(7)
    st = _state(rng)
    sysq = build_system("pepita", 2, 2)
    eta, eta_v = 0.9, 0.2
    a = sysq.evaluate(st, eta, eta_v)
    b = sysq.evaluate(st, eta, 3 * eta_v)  # only dv scales, by 3
    np.testing.assert_allclose(b["v"], 3 * a["v"], rtol=1e-12)
    for k in ("Q", "R", "b"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=0)
    # dQ has −η(…) + η²(…): at 2η it is not the dQ at η times 2 — nor unchanged
    c = sysq.evaluate(st, 2 * eta, eta_v)
    np.testing.assert_allclose(c["v"], a["v"], rtol=1e-12)
    assert np.max(np.abs(c["Q"] - 2 * a["Q"])) > 1e-3 * np.max(np.abs(a["Q"]))
    # dv against Monte Carlo, 4·10⁵ samples: 5 standard errors (+ the rule's own ~1e-4)
    g = lambda x: erf(x / math.sqrt(2))  # noqa: E731
    Z = rng.multivariate_normal(np.zeros(4), st.field_covariance(), size=400_000)
    lam, nu = Z[:, :2], Z[:, 2:]
    e = g(lam) @ st.v - g(nu) @ st.v_star
    X = -eta_v * e[:, None] * g(lam - e[:, None] * st.b)
    mc, se = X.mean(axis=0), X.std(axis=0) / math.sqrt(len(X))
    assert np.all(np.abs(a["v"] - mc) <= 5 * se + 1e-4 * np.abs(mc)), (a["v"], mc, se)
    # η_v = 0 or η = 0 switch their parts off
    assert np.all(sysq.evaluate(st, eta, 0.0)["v"] == 0)
    z = sysq.evaluate(st, 0.0, eta_v)
    assert np.all(z["Q"] == 0) and np.all(z["R"] == 0) and np.all(z["b"] == 0)
