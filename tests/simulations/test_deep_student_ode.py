"""Deep student simulations (simulations/deep_student.py) against the deep ODEs
(odeflow.solve with widths; theory/deep.py) — issue 20's "simulation vs ODE" check.

As for Forward-Forward (tests/simulations/test_ff_online.py): every run starts from one and
the same state at N ∈ {N₁, 2N₁, 4N₁} (``init.state``: W₁, w* (and F) built with exactly the
overlaps Q, R, T (b, c); explicit v, W, and the fixed feedback), the ensemble mean of every
order parameter (Q, R, v, every W[i], and b for the adaptive rules) at every recorded α is
extrapolated to 1/N → 0 by a weighted least-squares line in 1/N (weights 1/SE², SE =
std/√S over S seeds), and the ODE must lie within 3 standard errors of the extrapolated
mean, for every component at every record. For the rules with F (afa, pepita*) the norm
‖F‖² = N σ_F² is held fixed across N (σ_F² = ‖F‖²/N): exact PEPITA's drift of b is
proportional to ‖F‖², so a fixed σ_F would give each N a different limit. Their initial
``b = W₁F/√N`` is O(1) (F partly along W₁'s rows, ``b ~ 0.3·N(0, 1)``, as AFA's b at
σ_F = 0.3), so that the feedback, and the rules, really learn by α = 10.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulations.deep_student import DEEP_RULES, simulate

ADAPTIVE = ("afa", "pepita", "pepita-forward", "pepita-hebbian")
F_NORM2 = 1.0


def _start(widths, M, seed, D=2000):
    """A start like the simulations' own defaults: overlaps of Gaussian vectors (W₁, w* ~
    N(0, I_D)), v ~ 0.1·N(0,1), W[i] ~ N(0,1)/√K_in, b ~ 0.3·N(0, 1), c ~ 0.1·N(0, 1);
    FA's b, B and DFA's d ~ N(0, 1) (B scaled as W)."""
    rng = np.random.default_rng(seed)
    K = widths[0]
    ws, w = rng.standard_normal((M, D)), rng.standard_normal((K, D))
    state = {"Q": w @ w.T / D, "R": w @ ws.T / D, "T": ws @ ws.T / D,
             "b": 0.3 * rng.standard_normal(K), "c": 0.1 * rng.standard_normal(M)}  # fmt: skip
    init = {
        "v": 0.1 * rng.standard_normal(widths[-1]),
        "W": [rng.standard_normal((b, a)) / math.sqrt(a) for a, b in zip(widths, widths[1:])],
        "fa": {"b": rng.standard_normal(widths[-1]),
               "B": [rng.standard_normal((a, b)) / math.sqrt(a)
                     for a, b in zip(widths, widths[1:])]},
        "dfa": {"d": [rng.standard_normal(k) for k in widths]},
    }  # fmt: skip
    return state, init


def _tolist(x):
    return [np.asarray(a).tolist() for a in x] if isinstance(x, list) else np.asarray(x).tolist()


def _runs(rule, widths, M, N1, seeds, alpha_max, every, seed=0, eta=1.0):
    state, init0 = _start(widths, M, seed)
    adaptive = rule in ADAPTIVE
    st = {k: _tolist(v) for k, v in state.items() if adaptive or k in ("Q", "R", "T")}
    init = {"state": st, "v": _tolist(init0["v"]), "W": _tolist(init0["W"]), "v_star": 1.0}
    for key, val in init0.get(rule, {}).items():
        init[key] = _tolist(val)
    runs = []
    for N in (N1, 2 * N1, 4 * N1):
        cfg = dict(rule=rule, N=N, alpha_max=alpha_max, widths=widths, M=M, eta=eta,
                   eta_v=eta, eta_W=eta, sigma_F=math.sqrt(F_NORM2 / N), seeds=seeds,
                   record={"every": every}, mc_fields=4096, init=init)  # fmt: skip
        runs.append(simulate(cfg))
    return runs


def _extrapolate(runs, get):
    """Weighted least-squares intercept at 1/N → 0 and its standard error."""
    x = 1.0 / np.array([r.config["N"] for r in runs], dtype=float)
    Y = np.array([get(r)[0] for r in runs])[:, 1:]  # α = 0: every run starts equal
    E = np.array([get(r)[1] / math.sqrt(r.n_mean) for r in runs])[:, 1:]
    E = np.maximum(E, 1e-12)
    xx = x.reshape((-1,) + (1,) * (Y.ndim - 1))
    w = 1.0 / E**2
    Sw, Sx, Sxx = w.sum(0), (w * xx).sum(0), (w * xx**2).sum(0)
    Sy, Sxy = (w * Y).sum(0), (w * xx * Y).sum(0)
    det = Sw * Sxx - Sx**2
    return (Sxx * Sy - Sx * Sxy) / det, np.sqrt(Sxx / det)


def agreement(rule, widths=(2, 2), M=2, N1=1000, seeds=20, alpha_max=10.0, every=1.0, seed=0):
    """Worst |ODE − extrapolated mean| / SE per order parameter, and the runs and ODE."""
    import odeflow

    widths = list(widths)
    runs = _runs(rule, widths, M, N1, seeds, alpha_max, every, seed)
    for sim in runs:
        assert not sim.diverged.any(), sim.summary()
    ode = odeflow.solve(
        rule, runs[0].initial_state(0), eta=1.0, eta_v=1.0, eta_W=1.0, alpha_max=alpha_max,
        record={"alpha": [float(a) for a in runs[0].alpha]}, widths=widths, rtol=1e-8,
        atol=1e-10,
    )  # fmt: skip
    assert ode.status == 0, ode.message
    getters = {
        "Q": (lambda r: (r.mean("Q"), r.std("Q")), ode.Q),
        "R": (lambda r: (r.mean("R"), r.std("R")), ode.R),
        "v": (lambda r: (r.mean("v"), r.std("v")), ode.v),
    }
    for i in range(len(widths) - 1):
        getters[f"W{i}"] = (lambda r, i=i: (r.mean("W", i), r.std("W", i)), ode.W[i])
    if rule in ADAPTIVE:
        getters["b"] = (lambda r: (r.mean("b"), r.std("b")), ode.b)
    worst = {}
    for name, (get, theory) in getters.items():
        a, se = _extrapolate(runs, get)
        worst[name] = float(np.max(np.abs(np.asarray(theory)[1:] - a) / se))
    eg_dev = float(np.max(np.abs(ode.eg - runs[-1].eg_mean)))
    return worst, eg_dev, runs, ode


@pytest.mark.slow
@pytest.mark.parametrize("rule", DEEP_RULES)
def test_deep_simulation_follows_the_ode(rule):
    """The issue's check: L = 3 (K₁ = K₂ = M = 2), N ∈ {1000, 2000, 4000}, 20 seeds, one
    initial state, α ≤ 10: every order parameter within 3 SE of the ODE after the 1/N
    extrapolation."""
    worst, eg_dev, runs, ode = agreement(rule)
    print(f"{rule}: worst |ODE - extrapolated mean| / SE: {worst}; max |Δε_g| at N = 4000: "
          f"{eg_dev:.4f}; ε_g(0) = {ode.eg[0]:.4f}, ε_g(10) = {ode.eg[-1]:.4f}")  # fmt: skip
    assert max(worst.values()) <= 3.0, worst
