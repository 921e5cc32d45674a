"""Tests of the teacher–student simulations (simulations.teacher_student, .ensemble, .run).

The default tests take a few seconds each (small N or short runs); the statistical checks
at large N are marked ``slow``.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import erf

from simulations import ensemble
from simulations.run import main as run_main
from simulations.teacher_student import (
    RULES,
    SimulationResult,
    initial_weights,
    simulate,
    standard_normal,
    validate_config,
)
from theory.observables import eps_g
from theory.state import OrderParameters


def g(z, act="erf"):
    return {
        "erf": lambda: erf(z / math.sqrt(2)),
        "linear": lambda: z,
        "relu": lambda: np.maximum(z, 0.0),
        "tanh": lambda: np.tanh(z),
        "sigmoid": lambda: 1.0 / (1.0 + np.exp(-z)),
    }[act]()


def gp(z, act="erf"):
    return {
        "erf": lambda: math.sqrt(2 / math.pi) * np.exp(-z * z / 2),
        "linear": lambda: np.ones_like(z),
        "relu": lambda: (z > 0) * 1.0,
        "tanh": lambda: 1.0 - np.tanh(z) ** 2,
        "sigmoid": lambda: np.exp(-z) / (1.0 + np.exp(-z)) ** 2,
    }[act]()


# ------------------------------------------------------------------ the input generator
def test_generator_is_standard_normal_and_reproducible():
    st = ensemble.sample_state(11)
    a = standard_normal(st.copy(), 400_000)
    b = standard_normal(st.copy(), 400_000)
    assert np.array_equal(a, b)
    assert abs(a.mean()) < 5 / math.sqrt(a.size)
    assert abs(a.var() - 1) < 5 * math.sqrt(2 / a.size)
    assert stats.kstest(a, "norm").pvalue > 1e-3
    # the tail beyond the ziggurat's base strip (|x| > 3.654) has the right weight
    p_tail = 2 * stats.norm.sf(3.6541528853610088)
    assert abs(np.mean(np.abs(a) > 3.6541528853610088) - p_tail) < 5 * math.sqrt(p_tail / a.size)
    # blocks of any size continue the same stream
    st2 = st.copy()
    c = np.concatenate([standard_normal(st2, n) for n in (1, 999, 399_000)])
    assert np.array_equal(a, c)


# ------------------------------------------------------- independent numpy oracle of SGD
def _oracle(cfg, seed, steps):
    """Hand-written numpy updates of docs/theory.md §2, step by step, from the same inputs."""
    cfg = validate_config(cfg)
    N, rule, act = cfg["N"], cfg["rule"], cfg["activation"]
    eta, eta_v, sigma = cfg["eta"], cfg["eta_v"], cfg["sigma"]
    W = initial_weights(cfg, seed)
    w, v, ws, vs, F, b_fixed = W.w.copy(), W.v.copy(), W.w_star, W.v_star, W.F, W.b.copy()
    draws = standard_normal(ensemble.sample_state(seed), (steps, N + 1))
    sq = math.sqrt(N)
    ws_t, vs_t = [w.copy()], [v.copy()]
    for t in range(steps):
        x, zeta = draws[t, :N], draws[t, N]
        lam, nu = w @ x / sq, ws @ x / sq
        e = v @ g(lam, act) - (vs @ g(nu, act) + sigma * zeta)
        if rule in ("bp", "fa", "afa"):
            f = {"bp": v, "fa": b_fixed, "afa": w @ F / sq}[rule]
            dw = -(eta / sq) * np.outer(f * gp(lam, act) * e, x)
            dv = -(eta_v / N) * e * g(lam, act)
        else:
            xt = x - F * e  # modulated input, second pass
            lt = w @ xt / sq
            p = xt if rule == "pepita" else x
            dw = -(eta / sq) * np.outer(g(lam, act) - g(lt, act), p)
            dv = -(eta_v / N) * e * g(lt, act)
        w, v = w + dw, v + dv
        ws_t.append(w.copy())
        vs_t.append(v.copy())
    return np.array(ws_t), np.array(vs_t)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("act", ["erf", "linear", "relu", "tanh", "sigmoid"])
def test_steps_match_numpy_oracle(rule, act):
    N, steps = 7, 4
    cfg = dict(
        rule=rule,
        N=N,
        K=2,
        M=3,
        activation=act,
        eta=0.8,
        eta_v=0.7,
        sigma=0.3,
        sigma_F=0.4,
        b_scale=0.9,
        alpha_max=steps / N,
        seeds=[5],
        record={"alpha": [t / N for t in range(steps + 1)]},
        record_weights=True,
    )
    res = simulate(cfg)
    w_ref, v_ref = _oracle(cfg, 5, steps)
    assert np.array_equal(res.steps, np.arange(steps + 1))
    np.testing.assert_allclose(res.w[0], w_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(res.v[0], v_ref, rtol=1e-11, atol=1e-12)
    assert not (np.allclose(w_ref[0], w_ref[-1]) or np.allclose(v_ref[0], v_ref[-1]))


def test_single_bp_step_by_hand():
    """One BP step written out in full, for the sign conventions (e = ŷ − y, w ← w − …)."""
    N = 3
    cfg = dict(
        rule="bp",
        N=N,
        K=1,
        M=1,
        alpha_max=1 / N,
        seeds=[0],
        eta=0.5,
        eta_v=0.25,
        record={"alpha": [0, 1 / N]},
        record_weights=True,
        sigma=0.0,
    )
    res = simulate(cfg)
    W = initial_weights(validate_config(cfg), 0)
    x = standard_normal(ensemble.sample_state(0), N + 1)[:N]
    lam = float(W.w[0] @ x) / math.sqrt(N)
    nu = float(W.w_star[0] @ x) / math.sqrt(N)
    e = W.v[0] * math.erf(lam / math.sqrt(2)) - 1.0 * math.erf(nu / math.sqrt(2))
    w1 = (
        W.w[0]
        - 0.5 / math.sqrt(N) * W.v[0] * math.sqrt(2 / math.pi) * math.exp(-(lam**2) / 2) * e * x
    )
    v1 = W.v[0] - 0.25 / N * e * math.erf(lam / math.sqrt(2))
    np.testing.assert_allclose(res.w[0, 1, 0], w1, rtol=1e-12)
    np.testing.assert_allclose(res.v[0, 1, 0], v1, rtol=1e-12)


# ---------------------------------------------------- measured order parameters are right
@pytest.mark.parametrize("rule", ["afa", "fa", "bp", "pepita-forward"])
def test_order_parameters_match_definitions(rule):
    N, K, M = 60, 2, 3
    cfg = dict(
        rule=rule,
        N=N,
        K=K,
        M=M,
        alpha_max=3,
        record={"every": 0.5},
        seeds=3,
        same_init=False,
        record_weights=True,
        sigma_F=0.3,
        init={"v_star": [1, -0.5, 2]},
    )
    res = simulate(cfg)
    S, T = 3, len(res.alpha)
    assert res.Q.shape == (S, T, K, K) and res.R.shape == (S, T, K, M) and res.v.shape == (S, T, K)
    assert res.eg.shape == (S, T) and res.T.shape == (S, M, M) and res.v_star.shape == (S, M)
    w = res.w
    np.testing.assert_allclose(res.Q, np.einsum("stkn,stln->stkl", w, w) / N, rtol=1e-12)
    np.testing.assert_allclose(
        res.R, np.einsum("stkn,smn->stkm", w, res.w_star) / N, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        res.eg, eps_g(res.Q, res.R, res.T[:, None], res.v, res.v_star[:, None]), rtol=1e-12
    )
    cfgv = validate_config(cfg)
    for i, seed in enumerate(res.seeds):
        W0 = initial_weights(cfgv, int(seed))
        # the teacher (and F) never change: T, c, sigma_F² are constants of the run
        np.testing.assert_array_equal(res.w_star[i], W0.w_star)
        np.testing.assert_allclose(res.T[i], W0.w_star @ W0.w_star.T / N, rtol=1e-12)
        np.testing.assert_array_equal(res.v_star[i], [1, -0.5, 2])
        np.testing.assert_allclose(res.w[i, 0], W0.w)
    assert not np.allclose(res.Q0[0], res.Q0[1])  # same_init false: different inits
    if rule in ("afa", "pepita-forward"):
        F = res.F
        np.testing.assert_allclose(
            res.b, np.einsum("stkn,sn->stk", w, F) / math.sqrt(N), rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(
            res.c, np.einsum("smn,sn->sm", res.w_star, F) / math.sqrt(N), rtol=1e-12
        )
        np.testing.assert_allclose(res.sigma_F2, np.sum(F * F, axis=1) / N, rtol=1e-12)
        assert np.all(np.abs(res.sigma_F2 - 0.09) < 0.05)
        assert not np.allclose(res.b[:, 0], res.b[:, -1])  # b is dynamic
    elif rule == "fa":
        assert res.c is None and res.sigma_F2 is None
        assert np.all(res.b == res.b[:, :1])  # fixed feedback
    else:
        assert res.b is None and res.c is None and res.sigma_F2 is None and res.b0 is None
    # initial_state(i) is the measured initial state of seed index i
    for i in range(S):
        st = res.initial_state(i)
        np.testing.assert_allclose(st.Q, res.Q[i, 0])
        np.testing.assert_allclose(st.R, res.R[i, 0])
        assert st.has_adaptive_feedback == (rule in ("afa", "pepita-forward"))
    np.testing.assert_allclose(res.init.Q, res.Q0[0])


def test_eg_from_order_parameters_matches_monte_carlo():
    cfg = dict(
        rule="afa",
        N=50,
        K=2,
        M=2,
        alpha_max=3,
        record={"every": 1.0},
        seeds=2,
        mc_test=100_000,
        sigma=0.5,
        same_init=False,
    )
    res = simulate(cfg)
    assert res.eg_mc.shape == res.eg.shape
    z = (res.eg - res.eg_mc) / res.eg_mc_se
    assert np.all(np.abs(z) < 4), z
    assert np.all(res.eg_mc_se < 0.01 * res.eg)


def test_reproducible_and_thread_independent():
    cfg = dict(
        rule="pepita-forward", N=200, alpha_max=2, seeds=[3, 1, 4], record={"every": 0.5}, sigma=0.1
    )
    a = simulate(dict(cfg, threads=1))
    b = simulate(dict(cfg, threads=2))
    np.testing.assert_array_equal(a.Q, b.Q)
    np.testing.assert_array_equal(a.eg, b.eg)
    # same_init: identical initial states, different sample streams
    assert np.all(a.Q0 == a.Q0[:1]) and np.all(a.b0 == a.b0[:1])
    assert not np.allclose(a.Q[0, -1], a.Q[1, -1])
    # the record grid does not change the trajectory
    c = simulate(dict(cfg, record={"every": 0.25}))
    np.testing.assert_allclose(c.Q[:, ::2], a.Q, rtol=1e-12)
    np.testing.assert_allclose(c.eg_mean[::2], a.eg_mean, rtol=1e-12)
    np.testing.assert_allclose(a.eg_mean, a.eg.mean(axis=0))
    np.testing.assert_allclose(a.eg_std, a.eg.std(axis=0, ddof=1))
    # the validated config (defaults filled in, JSON-able) reproduces the run
    d = simulate(json.loads(json.dumps(a.config)))
    np.testing.assert_array_equal(d.eg, a.eg)


def test_fixed_second_layer_and_linear_activation():
    res = simulate(
        dict(
            rule="bp",
            N=100,
            alpha_max=2,
            eta_v=0.0,
            activation="linear",
            K=3,
            M=1,
            record={"every": 1.0},
            init={"v": [0.5, -0.2, 0.1]},
        )
    )
    assert np.all(res.v == np.array([0.5, -0.2, 0.1]))
    assert res.eg[0, -1] < res.eg[0, 0]


# -------------------------------------------------------------------------- AFA vs PEPITA
def test_pepita_forward_tracks_afa_for_small_sigma_F():
    def rel_diff(sigma_F):
        base = dict(
            N=1000,
            alpha_max=10,
            seeds=2,
            sigma_F=sigma_F,
            record={"every": 0.5},
            eta=1.0,
            eta_v=1.0,
            init={"seed": 2},
        )
        afa = simulate(dict(base, rule="afa"))
        pf = simulate(dict(base, rule="pepita-forward"))
        np.testing.assert_array_equal(afa.Q0, pf.Q0)  # identical initial state
        assert afa.eg[0, -1] < 0.9 * afa.eg[0, 0]  # the run does learn
        return np.max(np.abs(pf.eg - afa.eg) / afa.eg)

    d_big, d_small = rel_diff(0.3), rel_diff(0.05)
    assert d_small < 0.02
    assert d_small < 0.5 * d_big


def test_pepita_diverges_when_F_is_large_and_afa_does_not():
    # docs/theory.md §2: N = 4000, sigma_F = 0.05, |F|² = 10: exact PEPITA (x̃) explodes by α = 10
    base = dict(N=4000, sigma_F=0.05, alpha_max=10, seeds=2, record={"every": 0.5})
    pep = simulate(dict(base, rule="pepita"))
    afa = simulate(dict(base, rule="afa"))
    assert pep.diverged.all() and not afa.diverged.any()
    assert np.all((pep.alpha_diverged > 2) & (pep.alpha_diverged <= 10))
    assert pep.n_mean == 0 and np.all(np.isnan(pep.eg_mean))
    for i in range(2):
        before = pep.alpha < pep.alpha_diverged[i]
        assert np.all(np.isfinite(pep.eg[i, before])) and np.all(np.isnan(pep.eg[i, ~before]))
        assert np.all(np.isnan(pep.Q[i, ~before]))
        # |b| grows exponentially before the blow-up
        assert pep.norm_b[i, before][-1] > 50 * pep.norm_b[i, 0]
    assert np.all(np.isfinite(afa.eg)) and np.max(afa.norm_b) < 3 * np.max(afa.norm_b[:, 0])


def test_divergence_is_flagged_per_seed_and_others_continue():
    base = dict(rule="bp", N=100, alpha_max=3, seeds=6, same_init=False, record={"every": 0.5})
    eg0 = simulate(dict(base, alpha_max=0.01, record={"every": 0.01})).eg[:, 0]
    thr = float(np.median(eg0))
    res = simulate(dict(base, divergence={"eg_max": thr}))
    hit = eg0 > thr
    assert hit.any() and (~hit).any()
    np.testing.assert_array_equal(res.diverged, hit)
    assert np.all(res.alpha_diverged[hit] == 0) and np.all(np.isnan(res.alpha_diverged[~hit]))
    assert np.all(np.isnan(res.eg[hit])) and np.all(np.isfinite(res.eg[~hit]))
    assert res.n_mean == int((~hit).sum())
    np.testing.assert_allclose(res.eg_mean, res.eg[~hit].mean(axis=0))
    np.testing.assert_allclose(res.mean("Q"), res.Q[~hit].mean(axis=0))
    # mid-run divergence: a fast-growing exact PEPITA run is stopped with finite history
    pep = simulate(
        dict(
            rule="pepita",
            N=500,
            sigma_F=0.3,
            alpha_max=20,
            seeds=2,
            record={"every": 0.5},
            divergence={"q_max": 100.0},
        )
    )
    assert pep.diverged.all() and np.all((pep.alpha_diverged > 0) & (pep.alpha_diverged < 20))
    assert np.isfinite(pep.eg[:, 0]).all()


def test_ensemble_stats():
    x = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    m, s, n = ensemble.ensemble_stats(x, np.array([False, True, False]))
    np.testing.assert_allclose(m, [3, 4]) and np.testing.assert_allclose(
        s, [2 * 2**0.5, 2 * 2**0.5]
    )
    assert n == 2
    m, s, n = ensemble.ensemble_stats(x, np.array([True, True, True]))
    assert n == 0 and np.all(np.isnan(m))


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "change, message",
    [
        ({"rule": "sgd"}, "allowed: bp, fa, afa, pepita, pepita-forward"),
        ({"bogus": 1}, "unknown config keys ['bogus']"),
        ({"N": 0}, "N must be an integer >= 1"),
        ({"K": 0}, "K must be an integer >= 1"),
        ({"M": 1.5}, "M must be an integer"),
        ({"eta": -1}, "eta must be >= 0"),
        ({"alpha_max": 0}, "alpha_max must be > 0"),
        ({"activation": "softplus"}, "allowed: erf, linear, relu, tanh, sigmoid"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"same_init": "yes"}, "same_init"),
        ({"record": {"every": -1}}, "record"),
        ({"init": {"w_sclae": 1}}, "unknown init keys ['w_sclae']"),
        ({"init": {"v_star": [1, 2, 3]}}, "v_star"),
        ({"divergence": {"eg": 1}}, "unknown divergence keys"),
        ({"mc_test": -3}, "mc_test"),
    ],
)
def test_bad_configs_raise(change, message):
    cfg = dict(rule="afa", N=10, alpha_max=1.0)
    cfg.update(change)
    with pytest.raises(ValueError, match=None) as exc:
        simulate(cfg)
    assert message in str(exc.value), str(exc.value)


def test_missing_required_key():
    with pytest.raises(ValueError, match="missing required keys"):
        validate_config({"rule": "bp", "N": 10})


def test_init_from_weights_file(tmp_path):
    rng = np.random.default_rng(0)
    N, K, M = 40, 2, 2
    arrays = dict(
        w=rng.standard_normal((K, N)),
        w_star=rng.standard_normal((M, N)),
        v=np.array([0.1, -0.1]),
        v_star=np.array([1.0, 0.5]),
        F=0.2 * rng.standard_normal(N),
    )
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    res = simulate(dict(rule="afa", alpha_max=1, init={"weights": str(path)}, seeds=2))
    st = OrderParameters.from_weights(
        arrays["w"], arrays["w_star"], arrays["v"], arrays["v_star"], F=arrays["F"]
    )
    for name in ("Q", "R", "T", "v", "v_star", "b", "c"):
        np.testing.assert_allclose(getattr(res.init, name), getattr(st, name), rtol=1e-12)
    assert res.config["N"] == N
    again = simulate(res.config)  # the normalised config runs as it is
    np.testing.assert_array_equal(again.eg, res.eg)
    with pytest.raises(ValueError, match="disagrees"):
        simulate(dict(rule="afa", N=41, alpha_max=1, init={"weights": str(path)}))


# ------------------------------------------------------------------------------ I/O, CLI
def test_save_load_roundtrip(tmp_path):
    for rule in ("bp", "afa"):
        res = simulate(
            dict(rule=rule, N=50, alpha_max=1, seeds=2, record={"every": 0.5}, mc_test=1000)
        )
        for ext in ("npz", "json"):
            p = tmp_path / f"r_{rule}.{ext}"
            res.save(p)
            back = SimulationResult.load(p)
            for name in (
                "alpha",
                "Q",
                "R",
                "v",
                "b",
                "T",
                "c",
                "eg",
                "eg_mean",
                "eg_std",
                "diverged",
                "alpha_diverged",
                "eg_mc",
                "Q0",
                "b0",
                "seeds",
                "steps",
            ):
                a, b = getattr(res, name), getattr(back, name)
                if a is None:
                    assert b is None, name
                else:
                    np.testing.assert_allclose(
                        np.asarray(a, float), np.asarray(b, float), rtol=1e-15, err_msg=name
                    )
            assert back.config == res.config and back.n_mean == res.n_mean
        st = OrderParameters.load(tmp_path / f"r_{rule}.npz")
        np.testing.assert_allclose(st.Q, res.init.Q)
        assert (st.b is None) == (rule == "bp")


def test_cli_writes_npz_readable_by_order_parameters(tmp_path, capsys):
    cfg = dict(rule="afa", N=100, K=2, M=2, alpha_max=1, seeds=2, record={"every": 0.25})
    cpath = tmp_path / "c.json"
    cpath.write_text(json.dumps(cfg))
    out = tmp_path / "out.npz"
    assert run_main([str(cpath), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    st = OrderParameters.load(out)
    res = SimulationResult.load(out)
    assert st.has_adaptive_feedback
    np.testing.assert_allclose(st.Q, res.Q[0, 0])
    with np.load(out) as z:
        for key in (
            "init_Q",
            "init_R",
            "init_T",
            "init_v",
            "init_v_star",
            "init_b",
            "init_c",
            "init_sigma_F2",
            "eg",
            "eg_mean",
            "eg_std",
            "diverged",
            "alpha_diverged",
        ):
            assert key in z.files, key
    # progress bar on stderr without --quiet
    assert run_main([str(cpath), "-o", str(tmp_path / "o2.npz")]) == 0
    assert "100.0%" in capsys.readouterr().err
    # bad config: exit code 2 and a message
    cpath.write_text(json.dumps(dict(cfg, rule="nope")))
    assert run_main([str(cpath), "-o", str(out), "--quiet"]) == 2
    assert "unknown rule" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_eg_matches_monte_carlo_at_large_N():
    res = simulate(
        dict(
            rule="bp",
            N=2000,
            alpha_max=5,
            seeds=2,
            record={"every": 1.0},
            mc_test=20_000,
            same_init=False,
        )
    )
    z = (res.eg - res.eg_mc) / res.eg_mc_se
    assert np.all(np.abs(z) < 4), z


@pytest.mark.slow
def test_afa_ensemble_science_5_4():
    """docs/theory.md §7 setting: v aligns with b (cos → 1) while ε_g is on its plateau."""
    with open("simulations/configs/ts_afa.json") as fh:
        cfg = json.load(fh)
    res = simulate(cfg)
    assert not res.diverged.any()
    i5 = np.searchsorted(res.alpha, 5.0)
    assert np.all(res.mean("cos_vb")[i5:] > 0.95)
    assert res.eg_mean[-1] < res.eg_mean[0]
    assert 0.003 < res.eg_std.max() < 0.1


def test_kernel_steps_do_not_allocate():
    """NRT allocation count of a kernel call does not grow with the number of steps (the
    few allocations per call are the boxing of its array arguments)."""
    import subprocess
    import sys

    code = """
import numpy as np
from numba.core.runtime import rtsys
from simulations import teacher_student as ts
from simulations.ensemble import sample_state
N, K, M = 100, 3, 2
rng = np.random.default_rng(0)
w, ws = rng.standard_normal((K, N)), rng.standard_normal((M, N))
v, vs, F, b = np.zeros(K), np.ones(M), 0.1 * rng.standard_normal(N), np.zeros(K)
st, xb, work = sample_state(0), np.empty((2, N)), np.zeros((6, 3))
from simulations import kernelgen
kernels = [ts._kernel(kernelgen.resolve_rule(r)) for r in ts.RULES]  # also initialises the NRT
rp = np.zeros(1)
for rule, run_block in zip(ts.RULES, kernels):
    counts = []
    for n in (1, 2000):
        a = rtsys.get_allocation_stats().alloc
        run_block(0, n, st, xb, w, ws, v, vs, F, b, 0.5, 0.5, 0.1, rp, work)
        counts.append(rtsys.get_allocation_stats().alloc - a)
    assert counts[0] == counts[1], (rule, counts)
print("ok")
"""
    import os

    env = dict(os.environ, NUMBA_NRT_STATS="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
