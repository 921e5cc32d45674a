"""Every figure's quick mode regenerates from nothing and shows its phenomenon.

Each test runs ``make(tmp_path, quick=True)`` and checks the physics on the data the
figure *wrote* (``NAME.npz``), with the thresholds recorded in its config
(``figures/configs/NAME.json``, key ``check``).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import figures
from figures import _style

ROOT = Path(__file__).resolve().parents[2]
MINE = [
    "learning-curves",
    "pepita-vs-afa",
    "alignment",
    "feedback-noise",
    "saad-solla",
    "scaling",
    "activations",
]


def run_figure(name, tmp_path):
    mod = figures.get(name)
    assert mod.NAME == name
    assert isinstance(mod.DESCRIPTION, str) and "\n" not in mod.DESCRIPTION
    ret = mod.make(tmp_path, quick=True)
    assert isinstance(ret, dict)
    for ext in ("png", "pdf", "npz", "json"):
        f = tmp_path / f"{name}.{ext}"
        assert f.is_file() and f.stat().st_size > 0, f
    rec = json.loads((tmp_path / f"{name}.json").read_text())
    assert rec["figure"] == name and rec["parameters"]["quick"] is True
    with np.load(tmp_path / f"{name}.npz") as z:
        data = {k: z[k] for k in z.files}
    return data, rec["parameters"]


def test_configs_quick_override():
    for name in MINE:
        full = _style.load_config(name)
        quick = _style.load_config(name, quick=True)
        assert "quick" in json.loads((_style.CONFIG_DIR / f"{name}.json").read_text())
        assert full["quick"] is False and quick["quick"] is True
        assert full != quick
    assert (
        _style.load_config("scaling", quick=True)["simulation"]["alpha_max"]
        == _style.load_config("scaling")["simulation"]["alpha_max"]
    )  # merged, not replaced


def test_style_colours_cover_rules():
    from simulations.teacher_student import RULES

    assert set(RULES) <= set(_style.COLORS) and set(RULES) <= set(_style.LABELS)


@pytest.mark.slow  # ~40 s on 2 cores: the quick figure's four rules from cold
def test_learning_curves(tmp_path):
    d, p = run_figure("learning-curves", tmp_path)
    chk, N = p["check"], int(d["N"])
    for rule in p["rules"]:
        k = rule.replace("-", "_")
        m, s, o = d[f"{k}_sim_mean"], d[f"{k}_sim_std"], d[f"{k}_ode"]
        n = int(d[f"{k}_n_seeds"])
        assert n == p["simulation"]["seeds"]
        assert np.all(np.isfinite(o)) and np.all(np.isfinite(m))
        # ODE within k standard errors of the mean, plus an O(1/sqrt N) finite-size allowance
        bound = chk["k_stderr"] * s / math.sqrt(n) + chk["c_sqrtN"] / math.sqrt(N)
        assert np.all(np.abs(m - o) <= bound), (rule, np.max(np.abs(m - o) - bound))
        assert o[0] == pytest.approx(m[0], abs=1e-12)  # the same initial state
    # the curves are learning curves: every rule learns, FA well below its start
    for rule in p["rules"]:
        k = rule.replace("-", "_")
        assert d[f"{k}_ode"][-1] < 0.8 * d[f"{k}_ode"][0]
    assert d["fa_ode"][-1] < 0.2 * d["fa_ode"][0]


# ~20–50 s: in the slow job, to keep the default suite under 10 minutes on 2 cores
@pytest.mark.slow
def test_pepita_vs_afa(tmp_path):
    d, p = run_figure("pepita-vs-afa", tmp_path)
    from figures.pepita_vs_afa import _tag

    sFs = p["sigma_F"]
    agree = p["check"]["agree_rel"]
    small, large = _tag(min(sFs)), _tag(max(sFs))
    # small sigma_F: PEPITA (x~) tracks AFA network by network within a few percent
    assert not d[f"{small}_pepita_diverged"].any()
    assert np.nanmax(d[f"{small}_pepita_reldiff"]) < agree
    # large sigma_F (|F|^2 = N sigma_F^2 = O(1)): PEPITA is flagged diverged, AFA is not
    assert d[f"{large}_pepita_diverged"].all()
    assert np.all(np.isfinite(d[f"{large}_pepita_alpha_diverged"]))
    assert np.all(d[f"{large}_pepita_alpha_diverged"] < p["simulation"]["alpha_max"])
    assert d[f"{large}_normF2"] > 1 > d[f"{small}_normF2"]
    for sF in sFs:
        t = _tag(sF)
        assert not d[f"{t}_afa_diverged"].any()
        # PEPITA-forward (presynaptic x) tracks AFA at every sigma_F
        assert not d[f"{t}_pepita_forward_diverged"].any()
        assert np.nanmax(d[f"{t}_pepita_forward_reldiff"]) < agree
    # before it diverges, PEPITA's |b| grows while AFA's does not
    nb = d[f"{large}_pepita_norm_b"]
    assert np.nanmax(nb) > 10 * nb[:, 0].max()
    # the exact-PEPITA ODE (§5.5): on the simulation mean at small σ_F (3 %, the
    # tolerance of tests/odeflow/test_pepita_ode.py; 2 seeds in quick mode, where the
    # spread of ε_g is < 1 %), and it diverges within 15 % of the simulations at large σ_F
    m = np.nanmean(d[f"{small}_pepita_eg"], axis=0)
    assert np.allclose(d[f"{small}_pepita_ode_eg"], m, rtol=0.03)
    a_sim = float(np.mean(d[f"{large}_pepita_alpha_diverged"]))
    a_ode = float(d[f"{large}_pepita_ode_alpha_diverged"])
    assert abs(a_ode - a_sim) < 0.15 * a_sim, (a_ode, a_sim)


@pytest.mark.slow  # ~50 s on 2 cores (every activation: ODE and simulations)
def test_activations(tmp_path):
    d, p = run_figure("activations", tmp_path)
    rel = p["check"]["rel_max"]
    for act in p["activations"]:
        for rule in p["rules"]:
            k = f"{act}_{rule}"
            ode, m = d[f"{k}_ode_eg"], d[f"{k}_sim_mean"]
            # the ODE (closed forms for erf, quadrature for relu, tanh) on the simulation
            # mean within 5 % (quick mode: N = 1000, 3 seeds; the seed spread is ~2 %)
            assert np.all(np.abs(ode - m) <= rel * m), (k, ode, m)
        # the phenomenon: from small v (v ~ 0.1) FA's O(1) feedback gets off the plateau
        # long before BP, whose feedback is v itself — for every activation, in theory
        # and in simulation
        for src in ("ode_eg", "sim_mean"):
            assert d[f"{act}_fa_{src}"][-1] < 0.8 * d[f"{act}_bp_{src}"][-1], (act, src)


@pytest.mark.slow  # ~25 s: the quick alignment figure from cold
def test_alignment(tmp_path):
    d, p = run_figure("alignment", tmp_path)
    level = float(d["cos_level"])
    alpha = d["alpha"]
    for rule in p["rules"]:
        a_al, a_h = float(d[f"{rule}_alpha_align"]), float(d[f"{rule}_alpha_half"])
        assert np.isfinite(a_al) and np.isfinite(a_h)
        # align, then memorise: cos(v, b) > 0.9 before eps_g has dropped by half ...
        assert a_al < a_h
        eg0 = d[f"{rule}_ode_eg"][0]
        i_al = np.searchsorted(alpha, a_al)
        assert d[f"{rule}_ode_eg"][i_al] > 0.75 * eg0  # ... while still near the plateau
        # the simulations do the same: aligned at the ODE's half-error time, and before it
        i_h = np.searchsorted(alpha, a_h)
        assert d[f"{rule}_sim_cos_vb_mean"][i_h] > level
        sim_half = alpha[np.flatnonzero(d[f"{rule}_sim_eg_mean"] <= 0.5 * eg0)[0]]
        sim_align = alpha[np.flatnonzero(d[f"{rule}_sim_cos_vb_mean"] >= level)[0]]
        assert sim_align < sim_half


def test_feedback_noise(tmp_path):
    d, p = run_figure("feedback-noise", tmp_path)
    f = p["check"]["spread_factor"]
    sim_peak, sde_peak = np.nanmax(d["sim_eg_std"]), np.nanmax(d["sde_eg_std"])
    assert sim_peak > 0.003  # the feedback noise does not average out
    assert sim_peak / f < sde_peak < sim_peak * f  # the SDE reproduces the spread
    assert np.all(d["ode_eg_std"] == 0)  # the ODE has none
    assert not d["sde_diverged"].any()
    # spread of b: SDE and simulation agree within the same factor at its maximum
    sb, qb = np.nanmax(d["sim_b_std"], axis=0), np.nanmax(d["sde_b_std"], axis=0)
    assert np.all(sb / f < qb) and np.all(qb < sb * f)
    # the SDE mean is as close to the simulation mean as the ODE (within noise)
    se = np.nanmax(d["sim_eg_std"]) / math.sqrt(int(d["n_seeds"]))
    assert np.max(np.abs(d["sde_eg_mean"] - d["sim_eg_mean"])) < 3 * se + 0.01
    assert np.max(np.abs(d["ode_eg"] - d["sim_eg_mean"])) < 3 * se + 0.01


def test_saad_solla(tmp_path):
    d, p = run_figure("saad-solla", tmp_path)
    from figures.saad_solla import plateau

    chk = p["check"]
    alpha = d["alpha"]
    ends = []
    for i, _ in enumerate(d["asymmetries"]):
        eg, spec = d[f"ode{i}_eg"], d[f"ode{i}_spec"]
        a0, a1, pv = plateau(alpha, eg, chk["flat_rel"])
        assert np.allclose([a0, a1, pv], d[f"ode{i}_plateau"])
        # a plateau: eps_g flat within 10 % over a range of alpha ...
        assert math.log10(a1 / a0) > chk["flat_decades"]
        assert 0.01 < pv < 0.2
        # ... that the student escapes: eps_g far below the plateau at the end
        assert eg[-1] < chk["escape_ratio"] * pv
        # specialisation rises: ~0 on the plateau, ~1 after the escape
        mid = np.searchsorted(alpha, math.sqrt(a0 * a1))
        assert spec[mid] < 0.1 and spec[-1] > 0.9
        ends.append(a1)
    # smaller initial asymmetry -> longer plateau
    assert all(x < y for x, y in zip(ends, ends[1:]))
    # the simulation has the plateau too and escapes
    a0, a1, pv = d["sim_plateau"]
    assert math.log10(a1 / a0) > 0.5
    assert d["sim_eg_mean"][-1] < chk["escape_ratio"] * pv
    assert d["sim_spec_mean"][-1] > 0.9


@pytest.mark.slow  # ~22 s (simulations at three N); a statistical figure
def test_scaling(tmp_path):
    d, p = run_figure("scaling", tmp_path)
    lo, hi = p["check"]["slope_range"]
    slo, shi = p["check"]["spread_slope_range"]
    Ns = d["N"]
    for rule in p["rules"]:
        D = d[f"{rule}_D_mean"]
        assert np.all(D > 0) and np.all(np.isfinite(D))
        assert D[-1] < D[0]  # it shrinks with N
        assert lo < float(d[f"{rule}_slope"]) < hi
        assert slo < float(d[f"{rule}_spread_slope"]) < shi
        # and is O(1/sqrt N): sqrt(N) D stays within a factor 3 over the N range
        r = D * np.sqrt(Ns)
        assert r.max() / r.min() < 3
    assert lo < float(d["pooled_slope"]) < hi


def test_cli_unknown_figure():
    r = subprocess.run(
        [sys.executable, "-m", "figures", "no-such-figure"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    for name in MINE:
        assert name in r.stderr


def test_cli_list():
    r = subprocess.run(
        [sys.executable, "-m", "figures", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0
    for name in MINE:
        assert name in r.stdout
        assert figures.get(name).DESCRIPTION[:20] in r.stdout
