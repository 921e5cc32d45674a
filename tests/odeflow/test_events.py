"""Events, dense output and the plateau exit (odeflow.events, issue 12).

Oracles: the linear toy system ``dy/dα = A y`` (tests/odeflow/toy_system.py) with a
rotation in the v block, whose zeros are known in closed form; ``expm(αA) y0`` for the
dense solution; the linear stability of the Saad–Solla symmetric fixed point for the
plateau exit law.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import expm
from toy_system import ToySystem, toy_state

import odeflow
from odeflow.events import exit_alpha, plateau_exit, simulation_exit_alpha
from odeflow.stability import escape_rate
from theory.state import Layout

OMEGA = 2.0


def _rotation_system():
    """v_1' = ω v_2, v_2' = −ω v_1: v_1(α) = ρ cos(ωα − φ) with ρ = 0.5, φ = atan2(0.4, 0.3)
    from toy_state's v = (0.3, 0.4); everything else constant."""
    lay = Layout(2, 2)
    A = np.zeros((lay.n, lay.n))
    s = lay.slices["v"].start
    A[s, s + 1], A[s + 1, s] = OMEGA, -OMEGA
    return ToySystem(A), toy_state()


PHI = math.atan2(0.4, 0.3)
# zeros of v_1: ωα − φ = π/2 + kπ; v_1 decreases through the even ones, increases through the odd
DOWN = [(math.pi / 2 + 2 * k * math.pi + PHI) / OMEGA for k in range(3)]
UP = [(3 * math.pi / 2 + 2 * k * math.pi + PHI) / OMEGA for k in range(3)]
AMAX = 5.0


def _v1(alpha, s):
    return s.v[0]


@pytest.mark.parametrize(
    "method,dt,tol", [("dopri5", None, 1e-9), ("rk4", 0.01, 1e-7), ("euler", 0.001, 2e-5)]
)
@pytest.mark.parametrize("direction", [1, -1, 0])
def test_event_direction_against_closed_form(method, dt, tol, direction):
    """Tolerances: dopri5 at rtol 1e-10 locates roots on its 4th-order interpolant to ~1e-11;
    rk4 (dt = 0.01, global error ~ (ωdt)⁴ ~ 1e-8) and euler (dt = 0.001, global error
    ~ ω²α dt/2 ~ 1e-5 in phase) are limited by their own trajectories."""
    system, init = _rotation_system()

    def ev(alpha, s):
        return s.v[0]

    ev.direction = direction
    r = odeflow.solve(
        system,
        init,
        eta=1.0,
        alpha_max=AMAX,
        method=method,
        dt=dt,
        events=[ev],
        rtol=1e-10,
        atol=1e-12,
    )
    expected = {1: UP, -1: DOWN, 0: sorted(UP + DOWN)}[direction]
    expected = np.array([a for a in expected if a <= AMAX])
    got = r.alpha_events[0]
    assert got.shape == expected.shape, (got, expected)
    np.testing.assert_allclose(got, expected, atol=tol)
    # the state at an event is the state there: v_1 = 0 and |v| = ρ = 0.5
    assert np.allclose(r.state_events[0][:, 7], 0.0, atol=10 * tol)
    for j in range(len(got)):
        # |v| = ρ = 0.5 exactly; euler's steps multiply it by √(1 + (ωh)²) each
        rho = 0.5 * (1 + (OMEGA * dt) ** 2) ** (got[j] / (2 * dt)) if method == "euler" else 0.5
        np.testing.assert_allclose(np.hypot(*r.event_state(0, j).v), rho, atol=10 * tol)
    assert r.status == 0 and r.alpha_final == AMAX


@pytest.mark.parametrize("terminal,stop", [(True, 0), (2, 1)])
def test_terminal_event_stops_the_run(terminal, stop):
    system, init = _rotation_system()

    def ev(alpha, s):
        return s.v[0]

    ev.direction, ev.terminal = -1, terminal

    def never(alpha, s):  # a non-terminal event alongside: its occurrences are kept
        return s.v[1] - 10.0

    r = odeflow.solve(
        system,
        init,
        eta=1.0,
        alpha_max=AMAX,
        events=[never, ev],
        record={"every": 0.05},
        rtol=1e-10,
        atol=1e-12,
    )
    assert r.status == 1 and r.reason == "event", r.message
    assert r.alpha_final == pytest.approx(DOWN[stop], abs=1e-9)
    assert len(r.alpha_events[1]) == stop + 1 and len(r.alpha_events[0]) == 0
    assert r.final.v[0] == pytest.approx(0.0, abs=1e-9)
    assert r.alpha[-1] <= r.alpha_final < r.alpha[-1] + 0.05 + 1e-12  # records cut there


def test_dense_output_matches_expm():
    system, init = _rotation_system()
    lay = Layout(2, 2)
    y0 = lay.pack(init)
    r = odeflow.solve(
        system,
        init,
        eta=1.0,
        alpha_max=AMAX,
        dense_output=True,
        rtol=1e-10,
        atol=1e-12,
        record={"alpha": [0, AMAX]},
    )
    alphas = np.linspace(0, AMAX, 37)
    ys = r.sol(alphas)
    exact = np.array([expm(a * system.A) @ y0 for a in alphas])
    np.testing.assert_allclose(ys, exact, atol=1e-8)  # 4th-order interpolant, rtol 1e-10
    assert r.sol(1.3).shape == (lay.n,)
    np.testing.assert_allclose(r.sol.eg(1.3), 0.5 * np.sum(r.sol(1.3) ** 2))
    with pytest.raises(ValueError, match="defined on"):
        r.sol(AMAX + 1)
    with pytest.raises(ValueError, match="dense_output needs method 'dopri5'"):
        odeflow.solve(system, init, eta=1.0, alpha_max=1, method="rk4", dt=0.1, dense_output=True)


def test_exit_alpha_on_records():
    alpha = np.array([0.0, 1.0, 2.0, 3.0])
    vals = np.array([[0.0, 0.2, 0.8, 0.9], [0.0, 0.1, 0.2, 0.3]])
    np.testing.assert_allclose(exit_alpha(alpha, vals, 0.5, +1), [1.5, np.nan])
    np.testing.assert_allclose(exit_alpha(alpha, -vals, -0.5, -1), [1.5, np.nan])


# ------------------------------------------------------ the Saad–Solla plateau exit law
ROOT = Path(__file__).resolve().parents[2]


def _reference_escape_rate(guess, eta):
    """λ of the symmetric plateau of BP (T = I, v = v* = 1 fixed) from theory.reference:
    the fixed point Q_kk = q, Q_k≠l = c, R_km = r (root of the reference right-hand side on
    the symmetric manifold, from ``guess``), then the largest real eigenvalue of the
    reference Jacobian in (Q upper triangle, R) by central differences."""
    from scipy.optimize import root

    from theory import reference as ref

    K, M = guess.K, guess.M
    iu = np.triu_indices(K)

    def state(Qu, Rf):
        Q = np.zeros((K, K))
        Q[iu] = Qu
        Q = Q + np.triu(Q, 1).T
        return guess.replace(Q=Q, R=Rf.reshape(K, M))

    def sym(x):
        q, c, r = x
        Q = np.full((K, K), c) + (q - c) * np.eye(K)
        return guess.replace(Q=Q, R=np.full((K, M), r))

    def f_sym(x):
        d = ref.rhs(sym(x), "bp", eta, 0.0)
        return [d["Q"][0, 0], d["Q"][0, 1], d["R"][0, 0]]

    x0 = [guess.Q[0, 0], guess.Q[0, 1], guess.R.mean()]
    sol = root(f_sym, x0, tol=1e-14)
    assert sol.success and np.max(np.abs(f_sym(sol.x))) < 1e-12
    fp = sym(sol.x)
    y0 = np.concatenate([fp.Q[iu], fp.R.ravel()])
    nq = len(iu[0])

    def F(y):
        d = ref.rhs(state(y[:nq], y[nq:]), "bp", eta, 0.0)
        return np.concatenate([d["Q"][iu], d["R"].ravel()])

    h = 1e-6
    J = np.empty((len(y0), len(y0)))
    for j in range(len(y0)):
        e = np.zeros(len(y0))
        e[j] = h
        J[:, j] = (F(y0 + e) - F(y0 - e)) / (2 * h)
    return float(np.max(np.linalg.eigvals(J).real))


def test_plateau_exit_follows_the_log_asymmetry_law():
    """BP, K = M = 3, fixed second layer (the saad-solla figure's setting). The exit from
    the symmetric plateau (specialisation crossing 0.5, located on the dense output) at
    initial asymmetries a = 1e-5 … 1e-8 is linear in ln(1/a) with slope 1/λ, λ the unstable
    eigenvalue of the linearised ODE at the symmetric fixed point (computed independently:
    root finding + finite-difference Jacobian). The law is asymptotic (the unstable mode must
    dominate), so the small-a slopes are compared: agreement to 0.5 %.

    The oracle λ is independent of the generated ODE (issue 23: comparing the ODE with its
    own linearisation could not see a wrong term): the symmetric fixed point and the
    Jacobian are those of :mod:`theory.reference`, the hand-written numpy transcription of
    the BP equations, and escape_rate (the ODE's own linearisation) must agree with it."""
    from figures.saad_solla import initial_state

    cfg = json.loads((ROOT / "figures" / "configs" / "saad-solla.json").read_text())
    lam_ode, fixed, eg_plateau = escape_rate(
        "bp", initial_state(cfg, 1e-5), eta=cfg["eta"], eta_v=0.0
    )
    lam = _reference_escape_rate(fixed, cfg["eta"])
    assert lam_ode == pytest.approx(lam, rel=1e-4)
    # the fixed point is the plateau: ε_g there is the flat value of the saad-solla figure
    assert 0.02 < eg_plateau < 0.05
    assert np.ptp(fixed.R) < 1e-8  # symmetric: every R_km equal
    ev = plateau_exit(level=0.5)
    # the same exit measured on ε_g: below half the plateau value
    ev_eg = plateau_exit("eg", plateau_eg=eg_plateau, fraction=0.5)
    asyms = np.array([1e-5, 1e-6, 1e-7, 1e-8])
    exits = []
    for a in asyms:
        r = odeflow.solve(
            "bp",
            initial_state(cfg, a),
            eta=cfg["eta"],
            eta_v=0.0,
            alpha_max=3000,
            events=[ev, ev_eg],
            rtol=1e-10,
            atol=1e-12,
            record={"alpha": [0, 3000]},
        )
        assert [len(x) for x in r.alpha_events] == [1, 1]
        exits.append([r.alpha_events[0][0], r.alpha_events[1][0]])
        assert not r.sol  # no dense output (odeflow.results.NO_DENSE_OUTPUT)
    exits = np.array(exits)
    for j in range(2):
        slope = np.polyfit(np.log(1 / asyms), exits[:, j], 1)[0]
        assert slope == pytest.approx(1 / lam, rel=5e-3), (j, slope, 1 / lam)
    assert np.all(exits[:, 0] < exits[:, 1])  # specialise first, then ε_g falls


def test_plateau_exit_on_simulation_records():
    """simulation_exit_alpha applies the event's criterion to a SimulationResult: on a
    synthetic result whose specialisation is known, the crossing is found per seed."""

    class Sim:
        alpha = np.array([0.0, 10.0, 20.0])
        T = np.eye(2)[None].repeat(2, axis=0)
        # R = diag(r, r) for seed 0 (specialisation r), all-equal for seed 1 (0)
        R = np.array(
            [
                [np.diag([x, x]) for x in (0.1, 0.3, 0.9)],
                [np.full((2, 2), x) for x in (0.1, 0.3, 0.9)],
            ]
        )
        Q = np.eye(2)[None, None].repeat(3, axis=1).repeat(2, axis=0)
        eg = np.zeros((2, 3))

    out = simulation_exit_alpha(Sim, plateau_exit(level=0.5))
    np.testing.assert_allclose(out, [10 + 10 * (0.5 - 0.3) / 0.6, np.nan])


def test_events_survive_save_and_load(tmp_path):
    system, init = _rotation_system()
    ev = _v1
    r = odeflow.solve(system, init, eta=1.0, alpha_max=AMAX, events=[ev], rtol=1e-10, atol=1e-12)
    r.save(tmp_path / "r.npz")
    back = odeflow.Result.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.alpha_events[0], r.alpha_events[0])
    np.testing.assert_allclose(back.event_state(0, 1).v, r.event_state(0, 1).v)
    with pytest.raises(ValueError, match="direction must be a number"):

        def bad(alpha, s):
            return 0.0

        bad.direction = "up"
        odeflow.solve(system, init, eta=1.0, alpha_max=1, events=bad)


@pytest.mark.parametrize(
    "attr,value,allowed",
    [
        ("direction", 5, r"\{-1, 0, 1\}"),
        ("direction", 0.5, r"\{-1, 0, 1\}"),
        ("direction", True, r"\{-1, 0, 1\}"),
        ("direction", float("nan"), r"\{-1, 0, 1\}"),
        ("terminal", -1, "non-negative int"),
        ("terminal", 1.5, "non-negative int"),
        ("terminal", "yes", "non-negative int"),
    ],
)
def test_event_attributes_validated_up_front(attr, value, allowed):
    """A bad ``direction``/``terminal`` is refused before integrating, naming the event (its
    index and ``__name__``), the attribute, the value and what is allowed (issue 21: scipy's
    any-sign convention let ``direction = 5`` through silently)."""
    system, init = _rotation_system()

    def crossing(alpha, s):
        return s.v[0]

    setattr(crossing, attr, value)
    with pytest.raises(ValueError, match=rf"event 1 \('crossing'\): {attr} must .*{allowed}") as e:
        odeflow.solve(system, init, eta=1.0, alpha_max=1, events=[_v1, crossing])
    assert repr(value) in str(e.value)


def test_event_valid_direction_values_accepted():
    """-1, 0, 1 as ints, floats or numpy numbers are the documented values and still run."""
    system, init = _rotation_system()
    for d in (1, 1.0, np.int64(-1), np.float64(0.0)):

        def ev(alpha, s):
            return s.v[0]

        ev.direction = d
        r = odeflow.solve(system, init, eta=1.0, alpha_max=AMAX, events=ev, rtol=1e-10, atol=1e-12)
        want = {1: UP, -1: DOWN, 0: sorted(UP + DOWN)}[int(d)]
        np.testing.assert_allclose(r.alpha_events[0], [a for a in want if a < AMAX], atol=1e-8)


class _Sim:
    """A synthetic SimulationResult (2 seeds, 3 records, K = M = 2) whose crossings are known
    by hand; seed 1 diverged before its last record (NaN there)."""

    alpha = np.array([0.0, 10.0, 20.0])
    T = np.eye(2)[None].repeat(2, axis=0)
    v_star = np.ones((2, 2))
    R = np.array(
        [
            [np.diag([x, x]) for x in (0.1, 0.3, 0.9)],
            [np.full((2, 2), x) for x in (0.1, 0.3, np.nan)],
        ]
    )
    Q = np.eye(2)[None, None].repeat(3, axis=1).repeat(2, axis=0)
    v = np.array([[[0.2, 0.2], [0.6, 0.6], [0.4, 0.4]], [[0.2, 0.2], [0.6, 0.6], [np.nan] * 2]])
    b = None
    eg = np.array([[0.5, 0.3, 0.1], [0.5, 0.45, np.nan]])


def test_simulation_exit_alpha_with_a_users_event():
    """A plain event(alpha, state) (no plateau_exit attributes) is evaluated on every record
    and its first crossing in its direction interpolated linearly (issue 21: it raised
    AttributeError 'measure'). Oracles: the crossings of the synthetic records by hand."""

    def spec(alpha, s):  # the user's own copy of the specialisation criterion
        return float(np.abs(s.R[0, 0] - s.R[0, 1])) - 0.5

    spec.direction = 1
    np.testing.assert_allclose(
        simulation_exit_alpha(_Sim, spec), simulation_exit_alpha(_Sim, plateau_exit(level=0.5))
    )
    np.testing.assert_allclose(simulation_exit_alpha(_Sim, spec), [10 + 10 * 0.2 / 0.6, np.nan])

    def low_eg(alpha, s):
        return s.eg - 0.4

    low_eg.direction = -1  # ε_g 0.5 → 0.3: crosses 0.4 halfway; seed 1 stays above
    np.testing.assert_allclose(simulation_exit_alpha(_Sim, low_eg), [5.0, np.nan])

    def v_level(alpha, s):  # v: 0.2 → 0.6 → 0.4 crosses 0.5 up at 7.5, down at 15
        return s.v[0] - 0.5 + 0 * s.T[0, 0] + 0 * s.v_star[0]

    for d, want in [(1, [7.5, 7.5]), (-1, [15.0, np.nan]), (0, [7.5, 7.5])]:
        v_level.direction = d
        np.testing.assert_allclose(simulation_exit_alpha(_Sim, v_level), want)

    v_level.direction = 5
    with pytest.raises(ValueError, match=r"direction must .*got 5"):
        simulation_exit_alpha(_Sim, v_level)
