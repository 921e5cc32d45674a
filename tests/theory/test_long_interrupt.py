"""Issue 21: Ctrl-C stops a run within 0.5 s even inside ONE long right-hand side.

The closed-form committee rhs is O(K⁴): at K = 200 one evaluation takes seconds (hours at
K = 1000), longer than any chunk of the integration loop. The loop now runs in a worker
thread (theory.runtime.interruptible) and the generated kernels poll an abort slot appended
to ``p``; these tests measure the delay from the interrupt to the stop against the cost of
one rhs, which the old code had to finish first (every test here fails on the commit before
the change: the stop then came only after the rhs, seconds later).
"""

import _thread
import json
import threading
import time

import numpy as np
import pytest
from reliability_helpers import interrupt

from odeflow.api import _rhs_cost
from odeflow.inputs import get_system
from theory.runtime import interruptible
from theory.state import OrderParameters

#: a size at which one closed-form rhs takes several seconds (cost ∝ K²(K+M)², ~0.5 s at
#: K = 100 on this machine, so ~8 s here): an unpolled rhs cannot stop within 1 s
K_BIG = 200


def _bp_state(K, M=2):
    return OrderParameters.from_spec(K, M, R=0.01, v=0.1)


def _bp_system(K, M=2):
    state = _bp_state(K, M)
    system = get_system("bp", K, M, "erf")
    p = system.params(state, 0.5)
    return system, np.ascontiguousarray(system.layout.pack(state), dtype=float), p


# ----------------------------------------------------------------------- the abort slot
def test_closed_form_abort_slot_clear_changes_nothing_set_gives_nan():
    """With the slot present and 0 the rhs is bitwise the plain one (the slot is found by
    the exact length of p, never by a value); set, every entry is NaN."""
    system, y, p = _bp_system(3)
    dy, dq = np.empty_like(y), np.empty_like(y)
    system.rhs(y, p, dy)
    ab = interruptible.Abort(system, p)
    assert ab.p.shape[0] == p.shape[0] + 1
    system.rhs(y, ab.p, dq)
    assert np.array_equal(dy, dq)
    assert system.eg(y, ab.p) == system.eg(y, p)
    ab.set()
    system.rhs(y, ab.p, dq)
    assert np.all(np.isnan(dq))
    # a p WITHOUT the slot whose last entry is non-zero (b here) is never taken for one
    p2 = p.copy()
    p2[-1] = 1.0
    system.rhs(y, p2, dq)
    assert np.all(np.isfinite(dq))


def test_closed_form_rhs_sees_the_flag_set_by_another_thread():
    """The flag is re-read inside the loops (not hoisted by LLVM): set 0.3 s into a rhs
    that takes seconds, the call returns promptly, all NaN."""
    system, y, p = _bp_system(K_BIG)
    # cheap extrapolation from a small size, the same compiled kernel
    cost = _rhs_cost("bp", system, "erf", 0.5, 0.5, 0.0, None)
    assert cost > 2.0, cost  # otherwise the test would not distinguish anything
    ab = interruptible.Abort(system, p)
    dy = np.empty_like(y)
    threading.Timer(0.3, ab.set).start()
    t0 = time.perf_counter()
    system.rhs(y, ab.p, dy)
    took = time.perf_counter() - t0
    # 0.3 s + one (k, l) sum (~1 ms); 0.7 s of slack for the loaded 2-core machine, far
    # below the ~8 s of the whole rhs
    assert took < 1.0, (took, cost)
    assert np.all(np.isnan(dy))


def _ff_case(K, M, v_star):
    from theory.ff import build_ff_system

    state = OrderParameters(
        Q=np.eye(K),
        R=0.01 * np.ones((K, M)),
        T=np.eye(M),
        v=np.zeros(K),
        v_star=v_star,
        u=0.1 * np.ones(K),
    )
    system = build_ff_system(K, M, "erf")
    p = system.params(state, 1.0, theta=2.0, eta_u=1.0, check=False)
    return system, np.ascontiguousarray(system.layout.pack(state), dtype=float), p


def test_ff_abort_slot_clear_changes_nothing_set_gives_nan():
    """The FF kernels find the slot one entry past their own layout (header, rules, QMC
    points): clear → bitwise the same drift and ε_g; set → NaN (the split rule, K = 2,
    M = 1; the QMC layout in the next test)."""
    from theory.ff_kernels import _abort_at

    system, y, p = _ff_case(2, 1, [1.0])
    ab = interruptible.Abort(system, p)
    assert _abort_at(p) == -1 and _abort_at(ab.p) == p.shape[0]
    dy, dq = np.empty_like(y), np.empty_like(y)
    system.rhs(y, p, dy)
    system.rhs(y, ab.p, dq)
    assert np.array_equal(dy, dq) and np.all(np.isfinite(dy))
    assert system.eg(y, ab.p) == system.eg(y, p)
    ab.set()
    system.rhs(y, ab.p, dq)
    assert np.all(np.isnan(dq))
    assert np.isnan(system.eg(y, ab.p))


@pytest.mark.slow  # building the K = 4 QMC rule (32 768 points): ~5 s on 2 loaded cores
def test_ff_abort_slot_found_in_the_qmc_layout():
    from theory.ff_kernels import _abort_at

    _, _, p = _ff_case(4, 2, [1.0, 0.7])
    assert p.shape[0] > 100_000  # the QMC points are in p
    assert _abort_at(p) == -1 and _abort_at(np.append(p, 0.0)) == p.shape[0]


# ----------------------------------------------------------------------- the runner
def test_call_returns_value_and_reraises_errors():
    assert interruptible.call(lambda: 7, lambda: None) == 7
    with pytest.raises(ZeroDivisionError):
        interruptible.call(lambda: 1 / 0, lambda: None)


def test_call_aborts_on_keyboard_interrupt():
    """KeyboardInterrupt in the main thread: abort() runs, the worker is joined, the
    interrupt re-raised — here the "kernel" is a loop that polls a flag."""
    flag = threading.Event()
    done = []

    def work():
        t0 = time.perf_counter()
        while not flag.is_set() and time.perf_counter() - t0 < 10:
            time.sleep(0.01)
        done.append(flag.is_set())

    threading.Timer(0.2, _thread.interrupt_main).start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        interruptible.call(work, flag.set)
    assert time.perf_counter() - t0 < 1.0
    assert done == [True]  # joined after the abort, not abandoned


# ----------------------------------------------------------------------- the API
def test_solve_stops_within_1s_of_keyboard_interrupt_inside_one_rhs(capfd):
    """``solve`` at K = 200 (one rhs ~8 s): a KeyboardInterrupt raised in the main thread
    1 s into the run stops it within 1 s (before: after the rhs, ~7 s later). With
    ``progress=True`` the wait is explained at once: the up-front estimate, then the note
    that the first step is still running."""
    import odeflow

    state = _bp_state(K_BIG)
    get_system("bp", K_BIG, 2, "erf")  # built (or loaded) before the clock starts
    odeflow.solve("bp", _bp_state(2), eta=0.5, alpha_max=0.01)  # the dopri5 loop loaded
    # measured from when the timer is due, not from when it ran: a kernel holding the GIL
    # (the old code) also delays the timer thread itself
    due = time.perf_counter() + 1.0
    threading.Timer(1.0, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        odeflow.solve("bp", state, eta=0.5, alpha_max=1.0, record={"alpha": [1.0]}, progress=True)
    # target 0.5 s (waiting slices of 0.05 s, one (k, l) sum); slack for the loaded machine
    assert time.perf_counter() - due < 1.0
    err = capfd.readouterr().err
    assert "estimate: one evaluation of the right-hand side takes" in err, err
    assert "K = 200" in err and "still running after 0.5 s" in err, err


# ----------------------------------------------------------------------- the CLI
def _write(tmp_path, cfg):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(cfg))
    return p


@pytest.mark.slow  # a subprocess that loads the K = 200 system: ~6 s on 2 cores
def test_cli_ctrl_c_inside_one_closed_form_rhs(tmp_path):
    """``python -m odeflow solve`` at K = 200: SIGINT ~0.8 s into the first step (once it
    says the step is still running) → exit 130 within 1 s, no output file."""
    s = _bp_state(K_BIG)
    cfg = {
        "rule": "bp",
        "activation": "erf",
        "eta": 0.5,
        "alpha_max": 1.0,
        "record": {"alpha": [1.0]},
        "init": {k: np.asarray(getattr(s, k)).tolist() for k in ("Q", "R", "T", "v", "v_star")},
    }
    out = tmp_path / "o.npz"
    rc, dt, err = interrupt(
        ["odeflow", "solve", _write(tmp_path, cfg), "-o", out], marker="still running"
    )
    assert rc == 130, err
    assert dt < 1.0, (dt, err)
    assert "interrupted; no output written" in err
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


@pytest.mark.slow  # FF at K = 4, M = 2: ~1–2 s per rhs at the default tolerance
def test_cli_ctrl_c_inside_one_ff_step(tmp_path):
    """``python -m odeflow solve`` of rule ff at K = 4, M = 2 (one dopri5 step = 7 rhs of
    ~1 s each): SIGINT inside the first step → exit 130 within 1 s, no output."""
    K, M = 4, 2
    cfg = {
        "rule": "ff",
        "activation": "erf",
        "eta": 1.0,
        "eta_u": 1.0,
        "theta": 2.0,
        "alpha_max": 5.0,
        "init": {
            "Q": np.eye(K).tolist(),
            "R": (0.01 * np.ones((K, M))).tolist(),
            "T": np.eye(M).tolist(),
            "u": [0.1] * K,
            "v_star": [1.0, 0.7],
        },
    }
    out = tmp_path / "o.npz"
    rc, dt, err = interrupt(
        ["odeflow", "solve", _write(tmp_path, cfg), "-o", out], marker="still running"
    )
    assert rc == 130, err
    assert dt < 1.0, (dt, err)
    assert not out.exists() and not list(tmp_path.glob(".*part*"))
