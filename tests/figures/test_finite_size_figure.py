"""Figure finite-size (issue 24): exact-overlap weights, the result cache, and the quick
figure's physics (slow)."""

import json

import numpy as np
import pytest

import figures
from figures import _style
from figures import finite_size as F
from theory.state import OrderParameters


def test_weights_with_state_exact_overlaps():
    """Every N starts from *exactly* the configured (or measured) order parameters."""
    cfg = _style.load_config("finite-size")
    for name in ("bp", "afa"):
        st = F.case_state(cfg["cases"][name])
        for N in (250, 4000):
            w = F.weights_with_state(N, st, seed=3)
            assert w["w"].shape == (st.K, N) and w["w_star"].shape == (st.M, N)
            extra = {"F": w["F"]} if "F" in w else {}
            m = OrderParameters.from_weights(w["w"], w["w_star"], w["v"], w["v_star"], **extra)
            for k in ("Q", "R", "T", "v", "v_star"):
                np.testing.assert_allclose(getattr(m, k), getattr(st, k), atol=1e-12)
            if name == "afa":  # the adaptive feedback and its constants too
                for k in ("b", "c", "sigma_F2"):
                    np.testing.assert_allclose(getattr(m, k), getattr(st, k), atol=1e-12)
            else:
                assert "F" not in w
    # the BP case is the symmetric plateau: every R equal, equal v
    st = F.case_state(cfg["cases"]["bp"])
    assert np.ptp(st.R) == 0 and np.ptp(st.v) == 0


def test_simulation_store_is_read_not_rerun(tmp_path):
    """A stored ensemble with the same key is returned as stored (no simulation); a changed
    config (another seed count) is a different key."""
    cfg = _style.load_config("finite-size", quick=True)
    cfg["cases"] = {"bp": cfg["cases"]["bp"]}
    cfg["N"] = [250]
    store = tmp_path / "store.json"
    fake = {"alpha": [0.0], "eg_mean": [0.3], "eg_std": [0.0], "n": 8, "eg": [[0.3]],
            "exit": [None], "diverged": 0, "seconds": 0.0}  # fmt: skip
    store.write_text(json.dumps({"entries": {F._sim_key(cfg, "bp", 250): fake}}))

    def boom(msg):
        raise AssertionError(f"should not run: {msg}")

    assert F.simulations(cfg, store=store, log=boom)[("bp", 250)] == fake
    # the SDE options of a case are not part of the simulations' key
    cfg["cases"]["bp"]["sde"] = {"dt": 0.5}
    assert F.simulations(cfg, store=store, log=boom)[("bp", 250)] == fake
    cfg["seeds"] = 9
    with pytest.raises(AssertionError, match="should not run"):
        F.simulations(cfg, store=store, log=boom)


def test_stored_full_results_are_complete():
    """The committed caches hold every ensemble of the full config, 24 seeds each."""
    cfg = _style.load_config("finite-size")
    if not F.STORE.exists():
        pytest.skip("no stored simulations")
    stored = json.loads(F.STORE.read_text())["entries"]
    for name in cfg["cases"]:
        for N in cfg["N"]:
            e = stored[F._sim_key(cfg, name, int(N))]
            assert len(e["eg"]) == cfg["seeds"] >= 24 and e["n"] == cfg["seeds"]
            assert e["eg_std"][0] < 1e-12  # one initial state for every seed


@pytest.mark.slow
def test_finite_size_quick(tmp_path):
    mod = figures.get("finite-size")
    assert mod.NAME == "finite-size" and "\n" not in mod.DESCRIPTION
    mod.make(tmp_path, quick=True)
    for ext in ("png", "pdf", "npz", "json"):
        assert (tmp_path / f"finite-size.{ext}").stat().st_size > 0
    rec = json.loads((tmp_path / "finite-size.json").read_text())["parameters"]
    with np.load(tmp_path / "finite-size.npz") as z:
        d = {k: z[k] for k in z.files}
    assert rec["sde_available"]
    for name in ("bp", "afa"):
        for N in d["N"]:
            sm, ss = d[f"{name}_N{N}_sim_eg_mean"], d[f"{name}_N{N}_sim_eg_std"]
            dm, ds = d[f"{name}_N{N}_sde_eg_mean"], d[f"{name}_N{N}_sde_eg_std"]
            # one measured state: SDE and simulations start together, without spread (the
            # summaries are stored to 6 significant digits)
            assert sm[0] == pytest.approx(dm[0], rel=1e-5) and ss[0] < 1e-12
            assert sm[0] == pytest.approx(d[f"{name}_ode_eg"][0], rel=1e-5)
            # the SDE's spread is the simulations' within a factor 2 where it is visible
            # (quick: 8 seeds, 24 paths: a std ratio has ~30 % sampling error)
            big = ss > 0.003
            assert big.sum() >= 3
            r = np.median(ds[big] / ss[big])
            assert 0.5 < r < 2.0, (name, N, r)
    # BP on the symmetric manifold: the ODE never leaves the plateau, the simulations do
    assert d["bp_ode_eg"][-1] > 0.9 * float(d["bp_eg_plateau"])
    ex = d[f"bp_N{d['N'][0]}_sim_exit"]
    assert np.isfinite(ex).mean() >= 0.5
