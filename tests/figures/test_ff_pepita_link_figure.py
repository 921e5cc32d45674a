"""Figure ff-pepita-link, quick mode: regenerates from nothing and shows its phenomenon."""

import json

import numpy as np
from mnist_data import FIXTURE_SPLIT, FULL

import figures


def test_ff_pepita_link_quick(tmp_path, monkeypatch):
    mod = figures.get("ff-pepita-link")
    assert mod.NAME == "ff-pepita-link" and "\n" not in mod.DESCRIPTION
    if not FULL:
        # the 1000-image fixture instead of the full test set: its 800/200 split, and as many
        # updates as the quick mode makes (2 epochs of 32 batches ≈ 5 epochs of 13; after 2
        # epochs of 13 the top-down read-out is still at chance; after 5, seeds 0-3 reach
        # 27.5, 27.0, 37.0, 32.5 %, the config's bound is 20 %), the quick settings otherwise
        load = mod.S.load_config

        def on_fixture(name, quick=False, path=None):
            cfg = load(name, quick, path)
            cfg["data"].update(n_train=FIXTURE_SPLIT[0], n_test=FIXTURE_SPLIT[1])
            cfg["epochs"] = 5
            return cfg

        monkeypatch.setattr(mod.S, "load_config", on_fixture)
    mod.make(tmp_path, quick=True)
    for ext in ("png", "pdf", "npz", "json"):
        assert (tmp_path / f"ff-pepita-link.{ext}").stat().st_size > 0
    p = json.loads((tmp_path / "ff-pepita-link.json").read_text())["parameters"]
    assert p["quick"] is True
    chk = p["check"]
    with np.load(tmp_path / "ff-pepita-link.npz") as z:
        d = {k: z[k] for k in z.files}
    L = len(p["hidden"])
    for key in ("topdown", "topdown_flip"):
        c = d[f"{key}_cos_ff"]
        assert c.shape[2] == L and c.shape[1] == d[f"{key}_cos_step"].size
        # the first-order expansion in F predicts the measured cosine all along training
        # (|F e|/|x| ~ 2e-3 at PEPITA's F, so second-order terms are ~1e-3 of the first)
        assert np.max(np.abs(c - d[f"{key}_cos_pred"])) < chk["pred_atol"]
    # the contrastive FF update points against PEPITA's with x − F e as negative, and with
    # it when the sign is flipped (x + F e), in every layer at every measurement
    assert np.all(d["topdown_cos_contrastive"] < 0)
    assert np.all(d["topdown_flip_cos_contrastive"] > 0)
    # at the start (same weights for both signs) the error-driven part is odd in F: the two
    # signs give opposite cosines up to O(|F e|/|x|), and x − F e is anti-aligned in layer 1
    e0, f0 = d["topdown_cos_ff_err"][:, 0], d["topdown_flip_cos_ff_err"][:, 0]
    assert np.allclose(e0, -f0, atol=chk["antisym_atol"])
    assert np.all(e0[:, 0] < 0)
    assert d["topdown_test_acc_mean"][-1] > chk["topdown_acc_min"]
