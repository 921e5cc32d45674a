"""The plateau-exit figure (issue 12) regenerates in quick mode and shows its phenomenon:
the ODE's plateau exit is linear in ln(1/a) with the slope 1/λ of the linearised ODE, and
the simulations escape where the ODE does at large asymmetry but earlier at small
asymmetry (finite-N noise supplies its own)."""

import json

import numpy as np

import figures


def test_plateau_exit_figure(tmp_path):
    mod = figures.get("plateau-exit")
    mod.make(tmp_path, quick=True)
    for ext in ("png", "pdf", "npz", "json"):
        assert (tmp_path / f"plateau-exit.{ext}").stat().st_size > 0
    p = json.loads((tmp_path / "plateau-exit.json").read_text())["parameters"]
    assert p["quick"] is True
    chk = p["check"]
    with np.load(tmp_path / "plateau-exit.npz") as z:
        d = {k: z[k] for k in z.files}
    a_ode, a_sim = d["ode_asymmetries"], d["sim_asymmetries"]
    x = np.log(1 / a_ode)
    n = chk["n_slope"]
    small = np.argsort(a_ode)[:n]
    for rule in ("bp", "fa"):
        ex = d[f"{rule}_ode_exit"]
        assert np.all(np.isfinite(ex)) and np.all(np.diff(ex[np.argsort(x)]) > 0)
        slope = np.polyfit(x[small], ex[small], 1)[0]
        lam = float(d[f"{rule}_lambda"])
        assert abs(slope * lam - 1) < chk["slope_rel"], (rule, slope, 1 / lam)
        sim = d[f"{rule}_sim_exit"]
        assert np.all(np.isfinite(sim)), "every seed leaves the plateau"
        mean = sim.mean(axis=1)
        ode_at = np.interp(np.log(1 / a_sim), np.sort(x), ex[np.argsort(x)])
        i_big, i_small = np.argmax(a_sim), np.argmin(a_sim)
        # single seeds' exits scatter widely at finite N (seen at N = 2000, FA, a = 0.1:
        # 116-174 around the ODE's 141), so at N = 300 with 4 seeds the mean is checked to
        # within the config's sim_large_a_rel (50 %) of the ODE
        assert abs(mean[i_big] / ode_at[i_big] - 1) < chk["sim_large_a_rel"], (rule, mean, ode_at)
        assert mean[i_small] < ode_at[i_small], "finite-N noise shortens the plateau"
    # FA's units escape faster here (larger λ)
    assert d["fa_lambda"] > d["bp_lambda"]
