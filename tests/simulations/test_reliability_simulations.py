"""Issue 11 for ``python -m simulations``: Ctrl-C in the threaded ensemble, exit codes,
output paths, memory estimates, unreadable init.weights, wrong option types."""

import json

import numpy as np
import pytest
from reliability_helpers import REPO, interrupt, run

from simulations.__main__ import main

CONFIGS = REPO / "simulations" / "configs"


def _cfg(tmp_path, name="ts_afa.json", **over):
    cfg = json.loads((CONFIGS / name).read_text())
    cfg.update(over)
    p = tmp_path / f"cfg_{len(list(tmp_path.iterdir()))}.json"
    p.write_text(json.dumps(cfg))
    return p


def test_ctrl_c_stops_threaded_run_quickly_without_output(tmp_path):
    """N = 5000, 2 seeds on 2 threads for α = 10⁴ (~10 minutes): Ctrl-C once the bar
    shows. Before, the main thread sat in the pool's shutdown while the workers ran on."""
    cfg = _cfg(tmp_path, N=5000, seeds=2, threads=2, alpha_max=1e4, record={"every": 100})
    out = tmp_path / "r.npz"
    rc, dt, err = interrupt(["simulations", "run", cfg, "-o", out], marker="%")
    assert rc == 130, err
    assert dt < 3.0, (dt, err)  # target ~1 s; slack for the shared machine
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


def test_every_seed_diverged_exits_1_with_output(tmp_path, capsys):
    # exact PEPITA with a large feedback blows up (as in test_teacher_student)
    cfg = _cfg(
        tmp_path,
        "ts_pepita.json",
        N=500,
        sigma_F=0.3,
        seeds=2,
        alpha_max=20.0,
        record={"every": 0.5},
        divergence={"q_max": 100.0},
    )
    out = tmp_path / "r.npz"
    rc = main(["run", str(cfg), "-o", str(out), "--quiet"])
    assert rc == 1, capsys.readouterr().err
    with np.load(out) as z:
        assert z["diverged"].all()


def test_bare_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_missing_config_is_bad_input(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o.npz")]) == 2
    assert "cannot read config" in capsys.readouterr().err


@pytest.mark.parametrize(
    "cmd,out,msg",
    [
        ("run", "o.csv", "must end in .npz or .json"),
        ("run", "afile/o.npz", "is a file, not a directory"),
        ("run", "nodir/o.npz", "does not exist"),
        ("train", "t.json", "must end in .npz"),
        ("train", "afile/t.npz", "is a file, not a directory"),
    ],
)
def test_output_checked_before_work(tmp_path, capsys, cmd, out, msg):
    (tmp_path / "afile").write_text("x")
    cfg = _cfg(tmp_path, "mnist_pepita_quick.json" if cmd == "train" else "ts_afa.json")
    assert main([cmd, str(cfg), "-o", str(tmp_path / out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_huge_ensemble_refused_with_estimate(tmp_path, capsys):
    cfg = _cfg(tmp_path, N=3000, K=3000, M=1, seeds=20, alpha_max=1.0, record={"every": 0.01})
    assert main(["run", str(cfg), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "GB of memory" in err


def test_init_weights_errors_say_what_the_file_should_be(tmp_path, capsys):
    sim = tmp_path / "sim.npz"
    rc = main(["run", str(_cfg(tmp_path, N=50, seeds=1, alpha_max=0.2)), "-o", str(sim), "--quiet"])
    assert rc == 0
    w = dict(
        w=np.ones((2, 50)),
        w_star=np.ones((2, 50)),
        v=np.ones(2),
        v_star=np.ones(2),
        pad=np.arange(3000.0),
    )
    good = tmp_path / "w.npz"
    np.savez(good, **w)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[:500])
    text = tmp_path / "w.txt"
    text.write_text("w = 1 2 3")
    for path, msg in (
        (sim, "is a simulation output"),
        (trunc, "truncated or corrupt"),
        (text, "not a NumPy .npz archive"),
    ):
        cfg = _cfg(tmp_path, N=None, init={"weights": str(path)}, alpha_max=0.2)
        cfgd = json.loads(cfg.read_text())
        del cfgd["N"]
        cfg.write_text(json.dumps(cfgd))
        rc = main(["run", str(cfg), "-o", str(tmp_path / "o.npz"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert msg in err and "w_star (M, N)" in err
        assert "pickle" not in err.lower() and "Traceback" not in err


@pytest.mark.parametrize(
    "value,shown", [(-0.1, "-0.1"), ("0.1", '"0.1"'), (True, "true"), (None, "null")]
)
def test_train_lr_named_with_its_value(tmp_path, capsys, value, shown):
    cfg = _cfg(tmp_path, "mnist_pepita_quick.json", lr=value)
    assert main(["train", str(cfg), "-o", str(tmp_path / "t.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"lr must be a number > 0, got {shown}" in err


def test_help_is_light():
    r = run(["simulations", "--help"], timeout=60)
    assert r.returncode == 0 and "exit status" in r.stdout
    import subprocess
    import sys

    code = (
        "import sys\nfrom simulations.__main__ import main\n"
        "assert main(['run', '--help']) == 0 and main(['train', '--help']) == 0\n"
        "print('HEAVY', [m for m in ('numpy', 'numba', 'scipy') if m in sys.modules])"
    )
    from reliability_helpers import env

    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_ctrl_c_stops_train_without_output(tmp_path):
    """``simulations train`` on the teacher–student task (no data files needed), 1000
    epochs: Ctrl-C once the bar shows → exit 130 at once, no output file."""
    cfg = _cfg(tmp_path, "ff_teacher_student_pepita.json", epochs=1000, seeds=[0])
    out = tmp_path / "t.npz"
    rc, dt, err = interrupt(["simulations", "train", cfg, "-o", out], marker="%")
    assert rc == 130, err
    assert dt < 3.0, (dt, err)
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


# ------------------------------------------------------------------ issue 21: train
def _ff_ts(tmp_path, **over):
    """Supervised FF on the teacher-student task (no data files), 2 epochs, small."""
    cfg = json.loads((CONFIGS / "ff_teacher_student.json").read_text())
    cfg.update(epochs=2, seeds=[0])
    cfg["data"] = dict(cfg["data"], n_train=1000, n_test=500)
    cfg.update(over)
    p = tmp_path / f"ff_{len(list(tmp_path.iterdir()))}.json"
    p.write_text(json.dumps(cfg))
    return p


def test_ff_with_an_exploding_learning_rate_is_diverged(tmp_path, capsys):
    """lr 1e6: before, the loss grew to ~1e14 while staying finite, and the run ended
    "successfully" (exit 0) at chance accuracy."""
    out = tmp_path / "t.npz"
    rc = main(["train", str(_ff_ts(tmp_path, lr=1e6)), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "diverged after 0 epochs" in err and "10⁴ × its initial value" in err
    with np.load(out) as z:
        assert z["diverged"].all() and z["epochs_done"][0] == 0
        assert np.isfinite(z["train_loss"][0, 0])  # the initial record is kept


def test_ff_at_a_sane_learning_rate_is_not_flagged(tmp_path, capsys):
    """The divergence test must not fire on a run that learns (the config's lr 0.003):
    the loss stays within a small factor of its initial value and the accuracy rises
    above chance (0.5 for the sign teacher)."""
    out = tmp_path / "t.npz"
    assert main(["train", str(_ff_ts(tmp_path)), "-o", str(out), "--quiet"]) == 0
    with np.load(out) as z:
        assert not z["diverged"].any()
        loss = z["train_loss"][0]
        assert np.all(loss <= 10 * loss[0])
        assert z["test_acc"][0, -1] > 0.6


@pytest.mark.parametrize(
    "rule,over,msg",
    [
        (
            "ff",
            {"ff": {"label_scale": float("nan")}},
            "ff.label_scale must be a finite number > 0, got NaN",
        ),
        (
            "ff-topdown",
            {"ff": {"train_hidden": "yes"}},
            'ff.train_hidden must be true or false (a JSON boolean), got "yes"',
        ),
        (
            "ff-recurrent",
            {"ff": {"window": "3-5"}},
            'ff.window must be a list [t1, t2] of two integers, 1 <= t1 <= t2 <= steps, got "3-5"',
        ),
        ("ff", {"ff": {"theta": -1}}, "ff.theta must be a finite number > 0, got -1"),
        ("ff", {"ff": {"theta": "1"}}, 'ff.theta must be a finite number > 0, got "1"'),
        ("ff", {"ff": {"peer_norm": "x"}}, 'ff.peer_norm must be a finite number >= 0, got "x"'),
        ("bp", {"dropout": "x"}, 'dropout must be a number in [0, 1), got "x"'),
        ("bp", {"normalize": "yes"}, "normalize must be true or false (a JSON boolean)"),
        ("pepita", {"mirror": {"steps": "x"}}, 'mirror.steps must be an integer >= 0, got "x"'),
        ("bp", {"layers": ["a"]}, "layers must be a non-empty list of hidden widths"),
    ],
)
def test_train_values_named_exit_2(tmp_path, capsys, rule, over, msg):
    cfg = {
        "rule": rule,
        "epochs": 1,
        "seeds": [0],
        "data": {"name": "teacher-student", "N": 20, "M": 2, "n_train": 100, "n_test": 50},
        **over,
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    assert main(["train", str(p), "-o", str(tmp_path / "t.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "t.npz").exists()


def test_run_rule_params_and_init_state_named(tmp_path, capsys):
    rule = tmp_path / "kr.py"
    rule.write_text(
        "import sympy as sp\nfrom theory.rules import Rule, lam, e, v_k, gp\n"
        "R = Rule('wd', delta=e * v_k * gp(lam), weight_decay=sp.Symbol('kappa'),"
        " params={'kappa': 0.1})\n"
    )
    cases = [
        (
            {"rule": "kr.py:R", "N": 50, "alpha_max": 1, "rule_params": {"kappa": "x"}},
            "rule_params.kappa must be a finite number, got 'x'",
        ),
        (
            {
                "rule": "ff",
                "N": 50,
                "alpha_max": 1,
                "init": {"state": {"Q": "eye", "R": [[0, 0], [0, 0]], "T": [[1, 0], [0, 1]]}},
            },
            "init.state.Q must be a 2×2 array of finite numbers (nested lists), got 'eye'",
        ),
    ]
    for cfg, msg in cases:
        p = tmp_path / "c.json"
        p.write_text(json.dumps(cfg))
        assert main(["run", str(p), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
