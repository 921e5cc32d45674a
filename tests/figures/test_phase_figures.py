"""Quick modes of the sweep-built phase diagrams show their phenomena (figures afa-phase,
pepita-phase). Thresholds live in each figure's config (key ``check``)."""

import json
import math

import numpy as np
import pytest

import figures


def run_figure(name, tmp_path):
    mod = figures.get(name)
    assert mod.NAME == name and "\n" not in mod.DESCRIPTION
    mod.make(tmp_path, quick=True)
    for ext in ("png", "pdf", "npz", "json"):
        assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
    rec = json.loads((tmp_path / f"{name}.json").read_text())
    assert rec["parameters"]["quick"] is True
    with np.load(tmp_path / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}, rec["parameters"]


def test_afa_phase(tmp_path):
    d, p = run_figure("afa-phase", tmp_path)
    chk, N, n = p["check"], int(d["N"]), int(d["n_seeds"])
    eg, cos, sF = d["ode_eg"], d["ode_cos_vb"], d["sigma_F"]
    assert eg.shape == (len(d["eta"]), len(sF)) and np.all(np.isfinite(eg))
    # the SDE (feedback noise, docs/theory.md §5) agrees with the simulation mean at every
    # point: within k combined standard errors plus an O(1/sqrt N) finite-size allowance
    se_sim = d["pt_sim_eg_std"] / math.sqrt(n)
    se_sde = d["pt_sde_eg_std"] / math.sqrt(int(d["n_paths"]))
    fs = chk["c_sqrtN"] / math.sqrt(N)
    bound = chk["k_stderr"] * np.hypot(se_sim, se_sde) + fs
    assert np.all(np.abs(d["pt_sim_eg"] - d["pt_sde_eg"]) <= bound)
    # the mean-field ODE agrees where the feedback noise is small (sigma_F <= 0.3)
    small = d["pt_sigma_F"] <= chk["ode_max_sigma_F"]
    assert small.sum() >= 2
    assert np.all(
        np.abs(d["pt_sim_eg"] - d["pt_ode_eg"])[small] <= chk["k_stderr"] * se_sim[small] + fs
    )
    # phenomenon: weak feedback (smallest sigma_F) leaves eps_g on its initial plateau at
    # every eta; strong feedback learns: at every eta eps_g falls with sigma_F overall
    assert np.all(eg[:, 0] >= (1 - chk["plateau_rel"]) * d["eg0"])
    assert np.all(eg[:, -1] < 0.5 * eg[:, 0])
    # align, then memorise: wherever eps_g has left the plateau, v is aligned with b
    learned = eg < (1 - chk["plateau_rel"]) * d["eg0"]
    assert learned.sum() >= 5 and np.all(cos[learned] > chk["cos_aligned"])


@pytest.mark.slow  # ~40 s on 2 cores: the quick phase grid and its simulations
def test_pepita_phase(tmp_path):
    d, p = run_figure("pepita-phase", tmp_path)
    chk = p["check"]
    frac = d["sim_diverged"]  # rows ‖F‖², columns η
    prod = d["F_norm2"][:, None] * d["eta"][None, :]
    assert frac.shape == prod.shape and np.all((frac >= 0) & (frac <= 1))
    # b grows at a rate ∝ η‖F‖² (docs/theory.md §2): no network diverges where η‖F‖² is small,
    # every one does where it is large, and more ‖F‖² never means fewer divergences
    assert np.all(frac[prod <= chk["stable_below"]] == 0)
    assert np.all(frac[prod >= chk["diverged_above"]] == 1)
    assert (prod <= chk["stable_below"]).sum() >= 3 and (prod >= chk["diverged_above"]).sum() >= 3
    assert np.all(np.diff(frac, axis=0) >= 0)
    # diverged points stopped before alpha_max, the others have a finite final eps_g
    a = d["sim_alpha_diverged"]
    assert np.all((a[frac > 0] > 0) & (a[frac > 0] <= d["alpha_max"]))
    assert np.all(np.isfinite(d["sim_eg_final"][frac == 0]))
    if p["ode_available"]:
        # the ODE predicts the simulations' majority outcome except next to the boundary
        ode = d["ode_diverged"] > 0
        sim = frac >= 0.5
        pad = np.pad(sim, 1, mode="edge")
        near = (
            (pad[:-2, 1:-1] != sim)
            | (pad[2:, 1:-1] != sim)
            | (pad[1:-1, :-2] != sim)
            | (pad[1:-1, 2:] != sim)
        )
        assert np.all((ode == sim) | near)
        assert np.mean(ode == sim) >= 0.8
        # and when: where both diverge, the median relative gap in α at divergence is at
        # most 25 % (simulations detect divergence once per block of N/4 steps, 0.25 in α,
        # and at finite N; near the boundary the slow growth magnifies both)
        both = ode & (frac == 1)
        assert both.sum() >= 3
        ao, asim = d["ode_alpha_diverged"][both], a[both]
        assert np.median(np.abs(asim - ao) / ao) <= 0.25
    # panel (c), fluctuation-driven divergence (issue 24): fractions along sigma_F at one eta,
    # simulations next to the finite-N SDE's probability (same measured state) and the ODE
    if "line_sim" in d:
        for k in ("line_sim", "line_ode") + (("line_sde",) if p["sde_divergence"] else ()):
            x = d[k]
            assert x.shape == d["line_sigma_F"].shape and np.all((x >= 0) & (x <= 1)), k
        np.testing.assert_allclose(d["line_F_norm2"], p["simulation"]["N"] * d["line_sigma_F"] ** 2)
        if p["sde_divergence"]:
            # more feedback never makes divergence less likely by more than sampling noise
            n = p["divergence_line"]["sde"]["n_paths"]
            assert d["line_sde"][-1] >= d["line_sde"][0] - 3 * math.sqrt(0.25 / n)


@pytest.mark.slow  # ~32 s cold: compiles the exact-PEPITA ODE and SDE kernels (3 s warm)
def test_pepita_line_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    # panel (c) takes ~35 min: each σ_F's fractions are written when known and read back
    # by a rerun with the same config (no simulation, ODE or SDE run again); a changed
    # config is another key and recomputes
    import simulations.teacher_student as ts
    from figures import pepita_phase

    cfg = {
        "simulation": {
            "rule": "pepita", "N": 60, "K": 2, "M": 2, "activation": "erf", "sigma": 0.0,
            "init": {"seed": 0, "w_scale": 1.0, "w_star_scale": 1.0, "v_scale": 0.1,
                     "v_star": 1.0},
        },
        "ode": {"method": "dopri5", "rtol": 1e-6, "atol": 1e-9},
        "divergence_line": {
            "eta": 1.0, "sigma_F": [0.3], "seeds": 3, "alpha_max": 2.0, "eg_max": 1.0,
            "record_every": 0.5,
            "quadrature": {"scheme": "gauss-hermite", "n": 4, "rtol": 1.0},
            "ode_quadrature": {"scheme": "gauss-hermite", "n": 4, "rtol": 1.0},
            "sde": {"n_paths": 4, "dt": 0.05, "seed": 0, "noise_every": 4},
        },
    }  # fmt: skip
    work = tmp_path / "line"
    first = pepita_phase.divergence_line(cfg, work)
    assert len(list(work.glob("sigma_F-0.3-*.json"))) == 1

    def refuse(*a, **k):
        raise AssertionError("simulated again although the checkpoint exists")

    monkeypatch.setattr(ts, "simulate", refuse)
    again = pepita_phase.divergence_line(cfg, work)
    for k in ("sim", "ode", "sde"):
        assert again[k] == first[k], k
    cfg["divergence_line"]["seeds"] = 4
    with pytest.raises(AssertionError, match="simulated again"):
        pepita_phase.divergence_line(cfg, work)
