"""Where exact PEPITA diverges: the (η, ‖F‖²) phase diagram.

With the presynaptic term ``x̃ = x − F e`` every step adds ``(η/√N) g'(λ_k) b_k e² F``
along ``F``, so ``b = w F/√N`` gains ``η ‖F‖² E[g' e²] b`` per unit α: it grows
exponentially at a rate ∝ η ‖F‖², with ``‖F‖² = N σ_F²`` (docs/theory.md §2, §7), until the
network blows up. Panel (a): the fraction of simulations (independent networks, ``seeds``
per point) that diverged by ``alpha_max``, over a grid of η = η_v and ‖F‖²; where the exact
PEPITA ODE (§5.5, ``odeflow.solve("pepita", …)``, started from the measured initial state
of seed 0 with ``F_norm2 = N σ_F²``) diverges, the cell is marked ×. Panel (b): the α at
which divergence was detected (earliest seed; ODE as lines).

Panel (c): fluctuation-driven divergence near the boundary (issue 24). At η = η_v = 1 and
σ_F = 0.039–0.040 (N = 1000, ‖F‖² ≈ 1.52–1.62: from init seed 0, the window where the ODE
stays bounded to α = 20 while some simulations blow up), the fraction of simulations from
*one* measured initial state (``same_init``: the seeds differ only in their samples)
whose ε_g passes ``eg_max`` = 1 before ``alpha_max``, against the finite-N SDE's
divergence probability (``odeflow.solve_sde(..., N=N)``, docs/finite-size.md, the fraction
of its paths that pass the same level) and the deterministic ODE (0 or 1). Error bars:
binomial standard errors.

Both sides of (a, b) run on :func:`odeflow.sweep.sweep` (the simulations as a ``simulate``
sweep over ``sigma_F = √(‖F‖²/N)`` and ``eta = eta_v``). The ODE part needs the exact-PEPITA ODE
(rule ``pepita`` and ``OrderParameters.F_norm2``); without it the figure shows the
simulations only and says so in its title and parameter record.

Parameters: ``figures/configs/pepita-phase.json``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import _style as S
from ._common import save_figure

NAME = "pepita-phase"
DESCRIPTION = (
    "exact-PEPITA divergence boundary in (η, ‖F‖²): fraction of simulations that "
    "diverge vs the exact-PEPITA ODE (odeflow.sweep)"
)


def ode_available() -> tuple[bool, str]:
    """Whether the exact-PEPITA ODE can run here, and why not."""
    try:
        from theory.rules import get_rule
        from theory.state import FIELDS

        get_rule("pepita")
    except (ImportError, ValueError) as exc:
        return False, f"exact-PEPITA ODE not available ({exc})"
    if "F_norm2" not in FIELDS:
        return False, "exact-PEPITA ODE not available (OrderParameters has no F_norm2)"
    return True, ""


def divergence_line(cfg: dict, work: Path | None = None) -> dict:
    """Panel (c): divergence fractions at fixed η along σ_F (simulations, SDE, ODE).

    ``cfg["divergence_line"]``: ``eta``, ``sigma_F`` (list), ``seeds``, ``alpha_max``,
    ``eg_max`` (the blow-up level), ``record_every``, ``sde`` (``n_paths``, ``dt``,
    ``seed``, ``noise_every`` or ``noise_rtol``), ``quadrature`` (the SDE's drift rule,
    checked at the initial state) and ``ode_quadrature`` (the ODE's rule, re-checked along
    the run: near the boundary b grows and the error estimate with it, so the ODE needs a
    finer rule than the start alone asks for, docs/finite-size.md). Every simulation and
    every SDE path starts from the state measured in the simulation config's seed 0 at that
    σ_F (``F_norm2 = N σ_F²``). A run counts as diverged when its ε_g passes ``eg_max`` (or
    it blew up, non-finite) by ``alpha_max``. Raises ValueError if the ODE stops for another
    reason (its quadrature check): that is not a divergence.

    With ``work``, each σ_F's three fractions are written to
    ``work/sigma_F-<σ_F>-<key>.json`` as soon as they are known (atomically: a kill leaves
    the file whole or absent) and read back on the next run; the key hashes everything that
    determines them, so a changed config recomputes.
    """
    import hashlib
    import inspect
    import json

    import odeflow
    from simulations.teacher_student import simulate
    from theory.runtime.cli import atomic_write

    dl, base = cfg["divergence_line"], cfg["simulation"]
    N, A, lvl = int(base["N"]), float(dl["alpha_max"]), float(dl["eg_max"])
    have_sde = "N" in inspect.signature(odeflow.solve_sde).parameters
    out = {"sigma_F": np.array(dl["sigma_F"], float), "sim": [], "sde": [], "ode": []}
    out["F_norm2"] = N * out["sigma_F"] ** 2
    for sF in dl["sigma_F"]:
        spec = {
            "line": {**dl, "sigma_F": sF},
            "simulation": base,
            "ode": cfg["ode"],
            "have_sde": have_sde,
        }
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        done = None if work is None else Path(work) / f"sigma_F-{sF:g}-{key}.json"
        if done is not None and done.is_file():
            point = json.loads(done.read_text())
            for k in ("sim", "ode", "sde"):
                if k in point:
                    out[k].append(point[k])
            continue
        sim = simulate(
            {
                **base,
                "sigma_F": sF,
                "eta": dl["eta"],
                "eta_v": dl["eta"],
                "alpha_max": A,
                "record": {"every": dl["record_every"]},
                "seeds": int(dl["seeds"]),
                "same_init": True,
                "divergence": {"eg_max": lvl, "q_max": 1e6},
            }
        )
        out["sim"].append(float(np.mean(sim.diverged)))
        init = sim.initial_state(0)
        kw = dict(
            eta=dl["eta"],
            eta_v=dl["eta"],
            sigma=base["sigma"],
            alpha_max=A,
            activation=base["activation"],
        )
        q = dict(dl["quadrature"])
        ode = odeflow.solve(
            "pepita",
            init,
            record={"every": dl["record_every"]},
            method=cfg["ode"]["method"],
            rtol=cfg["ode"]["rtol"],
            atol=cfg["ode"]["atol"],
            quadrature=dict(dl["ode_quadrature"]),
            **kw,
        )
        blew = bool(np.nanmax(ode.eg) > lvl or ode.reason in ("diverged", "step_underflow"))
        if not ode.success and not blew:
            raise ValueError(
                f"divergence_line: the ODE at sigma_F = {sF} stopped at alpha = "
                f"{ode.alpha[-1]:.3g} without diverging ({ode.message}); raise "
                "divergence_line.ode_quadrature's rtol or n"
            )
        out["ode"].append(float(blew))
        if have_sde:
            sd = dl["sde"]
            r = odeflow.solve_sde(
                "pepita",
                init,
                dt=sd["dt"],
                n_paths=int(sd["n_paths"]),
                seed=int(sd["seed"]),
                record={"every": dl["record_every"]},
                N=N,
                noise_every=sd.get("noise_every"),  # absent: the adaptive refresh of Σ
                noise_rtol=sd.get("noise_rtol"),
                quadrature=q,
                **kw,
            )
            with np.errstate(invalid="ignore"):
                passed = np.nanmax(np.where(r.alive, r.eg, -np.inf), axis=1) > lvl
            out["sde"].append(float(np.mean(passed | np.asarray(r.diverged, bool))))
        if done is not None:
            point = {"spec": spec, "sim": out["sim"][-1], "ode": out["ode"][-1]}
            if have_sde:
                point["sde"] = out["sde"][-1]
            done.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(done, json.dumps(point, indent=1))
    out["n_seeds"], out["n_paths"] = int(dl["seeds"]), int(dl["sde"]["n_paths"])
    out["have_sde"] = have_sde
    return out


def _ode_inits(sim_cfg: dict, sigmas) -> dict:
    """Zipped init axes (b, c, sigma_F2, F_norm2) for each σ_F, from seed 0's weights."""
    from simulations.teacher_student import initial_weights, validate_config

    out = {"init.b": [], "init.c": [], "init.sigma_F2": [], "init.F_norm2": []}
    for s in sigmas:
        cfg = validate_config({**sim_cfg, "rule": "pepita", "sigma_F": s})
        st = initial_weights(cfg, cfg["seeds"][0]).order_parameters("afa")
        out["init.b"].append(st.b.tolist())
        out["init.c"].append(st.c.tolist())
        out["init.sigma_F2"].append(float(st.sigma_F2))
        out["init.F_norm2"].append(float(cfg["N"] * st.sigma_F2))  # ‖F‖² = N σ_F²
    return out


# Long on purpose: one figure's panels drawn in order, as the reader sees them; shared pieces live
# in figures/_common.py and figures/_style.py
def make(outdir, quick: bool = False) -> dict:
    import matplotlib.pyplot as plt

    from odeflow.sweep import axis_values, sweep

    S.apply()
    cfg = S.load_config(NAME, quick)
    t0 = time.perf_counter()
    sim = dict(cfg["simulation"])
    N, A = int(sim["N"]), float(sim["alpha_max"])
    F2 = axis_values("F_norm2", cfg["F_norm2"])
    etas = axis_values("eta", cfg["eta"])
    sFs = [math.sqrt(f / N) for f in F2]
    work = Path(outdir) / f"{NAME}-sweeps"
    kw = dict(workers=cfg["workers"])
    sims = sweep(
        {
            "kind": "simulate",
            "base": sim,
            "grid": {"sigma_F": sFs},
            "zip": {"eta": etas, "eta_v": etas},
        },
        work / "simulations",
        **kw,
    )
    n_seeds = len(sims.load(0).seeds)
    # sweep axes: rows ‖F‖², columns η
    data = {
        "F_norm2": np.array(F2),
        "eta": np.array(etas),
        "sigma_F": np.array(sFs),
        "N": N,
        "alpha_max": A,
        "n_seeds": n_seeds,
        "sim_diverged": sims.grid("diverged"),
        "sim_alpha_diverged": sims.grid("alpha_diverged"),
        "sim_eg_final": sims.grid("eg_final"),
    }
    have_ode, why = ode_available()
    info = {"simulations": sims.summary(), "ode": why or "exact-PEPITA ODE"}
    if have_ode:
        from simulations.teacher_student import initial_weights, validate_config

        c0 = validate_config({**sim, "sigma_F": 1.0})
        s0 = initial_weights(c0, c0["seeds"][0]).order_parameters("afa")
        base = {
            "rule": "pepita",
            "activation": sim["activation"],
            "sigma": sim["sigma"],
            "alpha_max": A,
            "record": {"every": sim["record"]["every"]},
            **cfg["ode"],
            "init": {k: np.asarray(v).tolist() for k, v in s0.to_dict().items() if v is not None},
        }
        # axes: grid (η) first, then the zipped σ_F → transpose to rows ‖F‖², columns η
        ode = sweep(
            {"base": base, "grid": {"eta": etas}, "zip": _ode_inits(sim, sFs)}, work / "ode", **kw
        )
        data["ode_diverged"] = ode.grid("diverged").T
        data["ode_alpha_diverged"] = ode.grid("alpha_diverged").T
        data["ode_eg_final"] = ode.grid("eg_final").T
        info["ode"] = ode.summary()

    line = divergence_line(cfg, work / "line") if cfg.get("divergence_line") else None
    if line is not None:
        for k in ("sigma_F", "F_norm2", "sim", "sde", "ode"):
            data[f"line_{k}"] = np.asarray(line[k], float)
        info["divergence_line"] = {
            k: np.asarray(line[k]).tolist() for k in ("sigma_F", "sim", "sde", "ode")
        }
    ncol = 3 if line is not None else 2
    fig, axes = plt.subplots(1, ncol, figsize=(5 * ncol, 3.9), constrained_layout=True)
    ax_a, ax_b = axes[0], axes[1]
    lx = np.log(F2)
    ex = np.exp(
        np.concatenate(
            [
                [lx[0] - (lx[1] - lx[0]) / 2],
                (lx[1:] + lx[:-1]) / 2,
                [lx[-1] + (lx[-1] - lx[-2]) / 2],
            ]
        )
    )
    ey = np.concatenate(
        [
            [etas[0] - (etas[1] - etas[0]) / 2],
            np.add(etas[1:], etas[:-1]) / 2,
            [etas[-1] + (etas[-1] - etas[-2]) / 2],
        ]
    )
    m = ax_a.pcolormesh(
        ex,
        ey,
        data["sim_diverged"].T,
        cmap="Reds",
        vmin=0,
        vmax=1,
        shading="flat",
        edgecolors="0.85",
        linewidth=0.3,
    )
    fig.colorbar(
        m,
        ax=ax_a,
        label=f"fraction of {n_seeds} simulations diverged by "
        rf"$\alpha$ = {A:g}",
    )
    if have_ode:
        yy, xx = np.nonzero(data["ode_diverged"].T > 0)
        ax_a.plot(
            np.array(F2)[xx],
            np.array(etas)[yy],
            "x",
            color="k",
            ms=7,
            mew=1.5,
            label="exact-PEPITA ODE diverges",
        )
    # guides: constant η‖F‖² (the growth rate of b is ∝ η ‖F‖²)
    xs = np.geomspace(ex[0], ex[-1], 50)
    for k in (1.0, 3.0):
        ax_a.plot(xs, k / xs, ":", color="0.3", lw=0.8)
    from matplotlib.lines import Line2D

    ha, _ = ax_a.get_legend_handles_labels()
    ha.append(
        Line2D(
            [],
            [],
            color="0.3",
            ls=":",
            lw=0.8,
            label=r"$\eta\|F\|^2$ = 1, 3 (rate of growth of $b$ ∝ $\eta\|F\|^2$)",
        )
    )
    ax_a.legend(handles=ha, loc="lower left", fontsize=7, frameon=True, framealpha=0.85)
    ax_a.set_xscale("log")
    ax_a.set_xlim(ex[0], ex[-1])
    ax_a.set_ylim(ey[0], ey[-1])
    ax_a.set_xlabel(r"feedback norm $\|F\|^2 = N\sigma_F^2$")
    ax_a.set_ylabel(r"learning rate $\eta = \eta_v$")
    for j, e in enumerate(etas):
        col = S.CYCLE[j % len(S.CYCLE)]
        ax_b.plot(
            F2, data["sim_alpha_diverged"][:, j], "o", color=col, ms=4, label=rf"$\eta$ = {e:.3g}"
        )
        if have_ode:
            ax_b.plot(F2, data["ode_alpha_diverged"][:, j], "-", color=col, lw=1.2)
    ax_b.set_xscale("log")
    ax_b.set_xlim(ex[0], ex[-1])
    ax_b.set_yscale("log")
    ax_b.set_xlabel(r"feedback norm $\|F\|^2 = N\sigma_F^2$")
    ax_b.set_ylabel(r"$\alpha$ at divergence (earliest seed)")
    from matplotlib.lines import Line2D

    h, _ = ax_b.get_legend_handles_labels()
    h.append(Line2D([], [], color="0.3", marker="o", ls="", ms=4, label="simulations"))
    if have_ode:
        h.append(Line2D([], [], color="0.3", lw=1.2, label="exact-PEPITA ODE"))
    ax_b.legend(handles=h, fontsize=7, loc="lower left", ncol=2)
    if line is not None:
        _draw_line(axes[2], line, cfg)
    for ax, l in zip(axes, "abc"):
        S.panel_label(ax, l)
    title = (
        f"Exact PEPITA ($\\tilde x$), K = M = {sim['K']}, N = {N}: "
        f"{len(F2)} × {len(etas)} points, {n_seeds} independent networks each"
    )
    if not have_ode:
        title += "\n(simulations only: " + why + ")"
    fig.suptitle(title, fontsize=10)
    params = dict(
        cfg,
        sde_divergence=line is not None and line["have_sde"],
        F_norm2_values=F2,
        eta_values=etas,
        sigma_F_values=sFs,
        ode_available=have_ode,
        results=info,
        seconds=time.perf_counter() - t0,
    )
    save_figure(fig, outdir, NAME, params, data)
    return data


def _draw_line(ax, line, cfg):
    """Panel (c): divergence fraction against σ_F, simulations vs SDE vs ODE."""
    dl = cfg["divergence_line"]
    x = line["sigma_F"]
    n, P = line["n_seeds"], line["n_paths"]
    sim = np.asarray(line["sim"])
    ax.errorbar(
        x,
        sim,
        yerr=np.sqrt(sim * (1 - sim) / n),
        fmt="o",
        color=S.COLORS["pepita"],
        ms=5,
        capsize=3,
        label=f"simulations ({n} sample streams)",
    )
    if line["have_sde"]:
        sde = np.asarray(line["sde"])
        ax.errorbar(
            x,
            sde,
            yerr=np.sqrt(sde * (1 - sde) / P),
            fmt="s--",
            color="k",
            ms=4,
            mfc="white",
            capsize=3,
            lw=1,
            label=f"SDE, N = {cfg['simulation']['N']} ({P} paths)",
        )
    ax.plot(x, line["ode"], "x:", color="0.4", ms=7, label="ODE (N → ∞)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(r"$\sigma_F$  (top: $\|F\|^2 = N\sigma_F^2$)")
    ax.set_ylabel(rf"P($\varepsilon_g$ > {dl['eg_max']:g} before $\alpha$ = {dl['alpha_max']:g})")
    N = cfg["simulation"]["N"]
    sec = ax.secondary_xaxis(
        "top", functions=(lambda s: N * s**2, lambda f: np.sqrt(np.clip(f, 0, None) / N))
    )
    sec.tick_params(labelsize=7)
    ax.set_title(
        rf"fluctuation-driven divergence, $\eta$ = {dl['eta']:g}, one initial state", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left")
