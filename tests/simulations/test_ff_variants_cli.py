"""`simulations train` with the issue-14 rules: ff-recurrent, ff-topdown, local_fields."""

import json

import numpy as np
import pytest

from simulations.train import main as train_main
from simulations.train import parse_config

DATA = {"name": "mnist", "n_train": 500, "n_test": 200}


@pytest.mark.parametrize(
    "cfg",
    [
        {
            "rule": "ff-recurrent",
            "layers": [32, 32],
            "epochs": 1,
            "ff": {"steps": 3, "window": [2, 3], "eval_train": 200},
        },
        {
            "rule": "ff-topdown",
            "layers": [32],
            "epochs": 1,
            "F_scale": 0.05,
            "ff": {"cos_every": 4, "cos_batch": 100, "eval_train": 200},
            "local_fields": [{"field": 7, "grid": 2}],
        },
        {
            "rule": "ff",
            "layers": [64],
            "epochs": 1,
            "ff": {"eval_train": 200},
            "local_fields": [{"field": 10, "grid": 4}],
        },
        {"rule": "pepita", "layers": [64], "epochs": 1, "local_fields": [{"field": 10, "grid": 4}]},
    ],
)
def test_cli_runs_new_rules(tmp_path, cfg):
    cfg = dict(cfg, seeds=[0, 1], data=DATA)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.npz"
    assert train_main([str(tmp_path / "c.json"), "-o", str(out), "--quiet"]) == 0
    z = np.load(out)
    assert z["test_acc"].shape == (2, 2) and np.all(np.isfinite(z["test_acc"]))
    # plumbing only (learning is tested in test_ff_recurrent / test_ff_topdown /
    # test_local_fields): one run per seed, histories recorded, the config stored
    assert not z["diverged"].any() and list(z["epochs_done"]) == [1, 1]
    assert json.loads(str(z["config"]))["rule"] == cfg["rule"]
    assert np.all((z["test_acc"] >= 0) & (z["test_acc"] <= 1))
    if cfg["rule"] == "ff-topdown":
        assert z["cos_ff"].shape == (2, 3, 1) and list(z["cos_step"]) == [0, 4, 8]
        assert np.all(np.abs(z["cos_ff"] - z["cos_pred"]) < 0.02)


def test_cli_bad_new_options(tmp_path, capsys):
    bad = [
        ({"rule": "ff-recurrent", "ff": {"steps": 1}}, "steps >= 2"),
        ({"rule": "ff-recurrent", "local_fields": [{"field": 5, "grid": 4}]}, "do not apply"),
        ({"rule": "ff-topdown", "ff": {"negatives": "random"}}, "unknown ff keys"),
        ({"rule": "ff-topdown", "dropout": 0.1}, "do not apply"),
        ({"rule": "ff", "local_fields": {"field": 5}}, "local_fields must be a list"),
        (
            {"rule": "ff", "layers": [100], "local_fields": [{"field": 30, "grid": 5}]},
            "larger than the map",
        ),
    ]
    for cfg, msg in bad:
        cfg = dict(cfg, data=DATA)
        (tmp_path / "b.json").write_text(json.dumps(cfg))
        assert (
            train_main([str(tmp_path / "b.json"), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 2
        ), cfg
        assert msg in capsys.readouterr().err, (cfg, msg)
    with pytest.raises(ValueError, match="steps >= 2"):
        parse_config({"rule": "ff-recurrent", "ff": {"steps": 0}})
