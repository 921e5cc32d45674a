"""``odeflow.solve_sde``: ensembles of stochastic order-parameter paths (docs/theory.md §5,
docs/finite-size.md). Without ``N`` only AFA's feedback b is noisy; with ``N`` every order
parameter diffuses with the covariance Σ(y)/N of its per-sample increments
(:mod:`theory.covariance`). The Euler–Maruyama kernels are in :mod:`odeflow.sde`; the
chunking driver, the checks and the messages are :func:`odeflow.solve`'s
(:mod:`odeflow.api`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from theory.runtime import cli
from theory.runtime.progress import ProgressBar

from . import solvers as S
from .api import (
    PSD_RTOL,
    SDE_METHODS,
    _check_memory,
    _drive_paths,
    _fmt,
    _import_sde,
    _message,
)
from .inputs import check_run, get_system
from .inputs import dt_note as _dt_note
from .inputs import params_vector as _params_vector
from .inputs import positive as _positive
from .inputs import quad_report as _quad_report
from .inputs import record_grid as _record_grid
from .inputs import rule_name as _rule_name
from .inputs import select_quadrature as _select_quadrature
from .results import SDEResult, _jsonable

__all__ = [
    "solve_sde",
    "SDEResult",
    "SDE_METHODS",
    "NOISE_DALPHA",
    "NOISE_DALPHA_MAX",
    "NOISE_RTOL",
]

#: the adaptive refresh of Σ (``noise_every=None``, the default;
#: :func:`odeflow.sde.refresh_sigma`): the first interval in α, the largest, and the
#: tolerance on Σ's change between two refreshes, relative to its largest variance. Σ
#: costs a quadrature (~10³ nodes) against the drift's closed form, so how often it is
#: refreshed sets the cost of a path. Measured against Σ at every step with the same noise
#: (200 paths, N = 500, dt = 0.02, α ≤ 40; docs/finite-size.md): AFA's spread of ε_g within
#: 1.8 % at 0.05 (230 evaluations of Σ per path instead of 2000), BP's within 2.8 % until
#: its plateau escape, where a few late escapers set the spread and any change of the paths
#: moves it by ±30 % either way (at 0.01 and 0.02 as much as at 0.05), while tail-robust
#: statistics (escape times, interquartile ranges) agree within a few per cent.
NOISE_DALPHA = 0.05
NOISE_DALPHA_MAX = 1.0
NOISE_RTOL = 0.05


def _nan_stats(x, alive):
    """Mean and std (ddof=1, 0 for a single path) over axis 0 of the alive entries."""
    m = alive.reshape(alive.shape + (1,) * (x.ndim - 2))
    cnt = m.sum(axis=0)
    xs = np.where(m, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xs.sum(axis=0) / cnt
        var = np.where(m, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(cnt - 1, 1)
    return mean, np.sqrt(var)


def _drift_quadrature(system, state, eta, eta_v, sigma, rule_params, qsel):
    """The drift's quadrature for ``params["quadrature"]`` (None for closed forms): options,
    rule, the selection of :func:`odeflow.inputs.select_quadrature` and the error estimate
    at the initial state. Unlike :func:`odeflow.solve` there is no re-check along the run:
    an ensemble has no single final state, and the paths stay within O(1/√N) of the ODE's."""
    q = _quad_report(system, state, state, eta, eta_v, sigma, rule_params, qsel)
    if q is not None:
        q.pop("error_final", None)
    return q


def _steps(dalpha, dt):
    """The number of steps of size dt in dalpha (at least one)."""
    return max(1, int(round(dalpha / dt)))


def _positive_int(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer, float)) or int(x) != x or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(x)


def _noise_system(rule, system, state, N, activation, args, noise_quadrature):
    """``(ns, pc, rule_description)``: the noise system Σ(y) of the run's model, its
    parameter vector at size N and the quadrature rule of Σ. ``args``: ``(eta, eta_v,
    sigma, rule_params)`` as :func:`odeflow.inputs.check_run` returns them (a deep
    student's ``eta_W`` is among the rule_params). Committee and Forward-Forward:
    :func:`theory.covariance.noise_system`; deep student: the system's own
    (:meth:`theory.deep.DeepSystem.noise_system`, by default on the drift's rule)."""
    eta, eta_v, sigma, rule_params = args
    if hasattr(rule, "rhs"):
        raise ValueError(
            "solve_sde with N needs a rule (a name or a Rule), not a prebuilt system: "
            "the covariance Σ(y) is built from the rule's signals"
        )
    deep = getattr(system, "model", None) == "deep"
    if deep:
        ns = system.noise_system()
    else:
        from theory.covariance import noise_system

        ns = noise_system(rule, state.K, state.M, activation)
    qrule = None
    if noise_quadrature is not None:
        from theory.codegen_quad import quad_options
        from theory.quadrature import make_rule

        q = quad_options(noise_quadrature)
        dim = ns.dim(sigma)
        if q["scheme"] == "auto":
            q["scheme"] = "sobol"
        qrule = make_rule(dim, q["scheme"], q["n"], q["seed"])
    pc = ns.params(state, eta, eta_v, sigma, N=N, qrule=qrule, **dict(rule_params or {}))
    pc = np.ascontiguousarray(pc, dtype=float)
    # the deep noise system describes the drift's rule; an explicit one is qrule's
    about = qrule.describe() if (deep and qrule is not None) else ns.describe_rule(pc)
    return ns, pc, about


def _check_drift_correction(ns, system):
    """Refuse ``drift_correction`` where the O(1/N) drift is not derived."""
    from theory.covariance import drift1_supported

    rule = getattr(ns, "rule", None)
    if not hasattr(ns, "drift1") or getattr(system, "model", None) == "deep":
        raise ValueError(
            "drift_correction (the O(1/N) drift) is derived for the two-layer committee "
            "only, not for Forward-Forward or a deep student; drop it for this model"
        )
    if not drift1_supported(rule):
        raise ValueError(
            f"drift_correction is derived for committee rules with input p = x, feedback "
            f"'v' or 'fixed' and no weight decay (bp, fa, such user rules); rule "
            f"{rule.name!r} has presynaptic {rule.presynaptic!r}, feedback "
            f"{rule.feedback!r}, weight decay {rule.weight_decay} (AFA's and PEPITA's b "
            "moves by O(1/√N) per sample: its O(1/N) mean terms are of another kind)"
        )


# Long on purpose: about half is the docstring; the body reads top to bottom like solve's:
# check, build, integrate (one kernel call site per noise model), package
def solve_sde(
    rule="afa",
    init=None,
    *,
    eta,
    eta_v=None,
    sigma=0.0,
    activation="erf",
    alpha_max,
    dt,
    n_paths,
    seed=None,
    record=None,
    method="euler-maruyama",
    diverge_threshold=1e6,
    rule_params=None,
    progress=False,
    quadrature=None,
    eta_u=None,
    theta=None,
    N=None,
    noise_quadrature=None,
    noise_every=None,
    noise_rtol=None,
    eta_W=None,
    widths=None,
    drift_correction=False,
) -> SDEResult:
    """Euler–Maruyama ensemble of the order parameters at finite N (docs/finite-size.md),
    or of AFA's feedback noise alone (docs/theory.md §5).

    Without ``N`` (the behaviour of earlier versions, bit for bit): Q, R and v follow their
    ODEs given the path of b; b gets Gaussian noise with covariance ``Σ(y) dα``
    (``system.noise``, η² σ_F² E[δ_k δ_l]); adaptive-feedback rules only.

    With ``N``: every order parameter y (Q, R, v, b; Q, R, u for Forward-Forward) obeys the
    diffusion approximation

        dy = E[f](y) dα + Σ(y)^{1/2} dB_α / √N,     Σ = Cov[f]

    (``f`` = N × the per-sample increment; :mod:`theory.covariance`), for every rule of the
    committee (bp, fa, afa, pepita, pepita-forward, user rules, any activation), for
    "ff" and for a deep student (``widths`` or an init with ``W``: Q, R, v, every read-out
    matrix W[i] and PEPITA/AFA's b, Σ from :meth:`theory.deep.DeepSystem.covariance`;
    docs/deep.md). The drift is the rule's ODE right-hand side (closed forms where they exist); Σ is
    a fixed Gaussian quadrature (``noise_quadrature``). A path whose field covariance
    ``[[Q, R], [Rᵀ, T]]`` stops being positive semi-definite (rare at N ≥ 100: Q ≈ I is far
    from singular) is stopped there like a divergence (reason in ``message``; statistics use
    the surviving paths), never projected: a projection would bias exactly the paths the
    statistics are about.

    Euler–Maruyama with fixed step ``dt`` (landing exactly on recording times); ``n_paths``
    independent paths in parallel, reproducible for a given ``seed`` (see
    :mod:`odeflow.sde`).

    Parameters
    ----------
    rule, init, eta, eta_v, sigma, activation, alpha_max, dt, record, rule_params, quadrature
        As for :func:`odeflow.solve` (``eta_u``, ``theta``: Forward-Forward's). A drift
        without closed forms gets its quadrature rule as in :func:`odeflow.solve`: the
        cheapest that meets ``quadrature["rtol"]`` at the initial state (an explicit rule
        that cannot is refused); ``params["quadrature"]`` records the rule, the selection
        and the error estimate, and ``message`` names the rule.
    n_paths : int ≥ 1
        Number of independent paths.
    seed : int or None
        None: fresh entropy, recorded in ``params['seed']``.
    method : "euler-maruyama"
        The only scheme (see :mod:`odeflow.sde`).
    N : float ≥ 1, optional
        Input dimension of the finite-N noise on every order parameter (see above).
    noise_quadrature : None, str or dict
        The rule of Σ's expectations (``{"scheme", "n", "seed"}`` as ``quadrature`` of
        :func:`solve`); default :func:`theory.covariance.default_noise_rule` (FF: its own
        split rule). Only with ``N``.
    eta_W, widths : optional
        A deep student, as for :func:`odeflow.solve` (``N`` required): the read-out
        matrices' rate η_W (default eta_v) and the hidden widths ``[K1, K2, …]`` (also
        selected by an init with ``W``). Σ's rule is the drift's unless
        ``noise_quadrature`` is given.
    noise_every : int ≥ 1 or None
        None (default): refresh Σ adaptively, per path: first after :data:`NOISE_DALPHA`
        in α, then at intervals chosen so that Σ moves by about ``noise_rtol`` of its
        largest variance between refreshes, at most :data:`NOISE_DALPHA_MAX` in α. An int:
        refresh every this many steps (1: every step, the plain Euler–Maruyama scheme;
        larger values freeze the diffusion over ``noise_every·dt``, an O(that) error in
        Σ). Σ costs a quadrature (~10³ nodes), the drift a closed form, so this sets the
        cost. ``params["noise_evaluations"]`` records the mean number of Σ evaluations per
        path. Only with ``N``.
    noise_rtol : float > 0, optional
        The adaptive refresh's tolerance (default :data:`NOISE_RTOL` = 0.05); only with
        ``N`` and ``noise_every=None``.
    drift_correction : bool
        With ``N``: integrate the drift to O(1/N) instead of its N → ∞ limit
        (docs/finite-size.md, "The O(1/N) drift"): the finite-N part of the per-sample
        mean (``c/N``, :mod:`theory.covariance`) and the discreteness of online learning
        (one step of size 1/N per sample: ``−f′f/(2N)``), with a Heun predictor so that the
        step dt adds no O(dt) drift error of its own. The mean of ε_g is then right to
        O(1/N²) instead of O(1/N) (less the step's O(dt²) and O(dt/N) errors). One more
        drift evaluation per step and one more quadrature per refresh of Σ. Committee
        rules with input p = x, feedback v or fixed and no weight decay (bp, fa, such user
        rules); others are refused.

    Returns
    -------
    SDEResult
        ``res.N`` is N (None without it); ``res.mean(name)``, ``res.std(name)``; a deep
        student's ``res.W`` (list of ``(P, T, K_{i+2}, K_{i+1})``, ``mean("W0")``, …).

    Raises
    ------
    ValueError
        Without N, a rule without adaptive feedback or a deep student; unknown method,
        non-positive dt, alpha_max, n_paths or N, or an invalid init.
    """
    with cli.activity("loading the Euler–Maruyama kernel (compiled on first use, then cached)"):
        from theory.cache import load_numba

        E = load_numba(
            _import_sde, Path(S.__file__).with_name("sde.py"), "*", "the Euler–Maruyama kernel"
        )

    t_start = time.perf_counter()
    if method not in SDE_METHODS:
        raise ValueError(f"unknown SDE method {method!r}; allowed: {', '.join(SDE_METHODS)}")
    if init is None:
        raise ValueError("solve_sde needs an initial state init (with b, c, sigma_F2)")
    alpha_max = _positive("alpha_max", alpha_max)
    if dt is None:
        raise ValueError("solve_sde is fixed-step (Euler–Maruyama): give dt")
    dt = _positive("dt", dt)
    diverge_threshold = _positive("diverge_threshold", diverge_threshold)
    n_paths = _positive_int("n_paths", n_paths)
    if N is not None:
        from theory.models import check_number

        N = check_number("N", N, 1.0)
        if noise_every is None:
            noise_rtol = _positive("noise_rtol", NOISE_RTOL if noise_rtol is None else noise_rtol)
            ctl = np.array(
                [noise_rtol, _steps(NOISE_DALPHA, dt), _steps(NOISE_DALPHA_MAX, dt)],
                dtype=float,
            )
        else:
            noise_every = _positive_int("noise_every", noise_every)
            if noise_rtol is not None:
                raise ValueError(
                    "noise_rtol is the tolerance of the adaptive refresh of Σ "
                    "(noise_every=None); with a fixed noise_every it does nothing: drop one"
                )
            ctl = np.zeros(3)
    elif (
        noise_quadrature is not None
        or noise_every not in (None, 1)
        or noise_rtol is not None
        or drift_correction
    ):
        raise ValueError(
            "noise_quadrature, noise_every, noise_rtol and drift_correction apply only with "
            "N (finite-N noise)"
        )
    if not isinstance(drift_correction, (bool, np.bool_)):
        raise ValueError(f"drift_correction must be true or false, got {drift_correction!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))
    model, state, mparams, (eta, eta_v, sigma, rule_params) = check_run(
        rule,
        init,
        rule_params,
        dict(eta=eta, eta_v=eta_v, sigma=sigma, eta_u=eta_u, theta=theta, eta_W=eta_W),
        widths=widths,
    )
    widths = state.widths if model.name == "deep" else None
    if widths is not None and N is None:
        raise ValueError(
            "solve_sde of a deep student (widths / an init with W) needs N: it integrates "
            "the finite-N noise of every order parameter (Q, R, v, every W[i], b); the "
            "feedback-noise-only mode (no N) is the two-layer committee's (docs/deep.md)"
        )
    rec, record_spec = _record_grid(record, alpha_max)
    note = _dt_note(dt, rec)
    system = get_system(rule, state.K, state.M, activation, quadrature, widths=widths)
    # the drift's quadrature rule, chosen as solve chooses it (its tolerance at the initial
    # state; docs/quadrature.md); closed-form systems pass unchanged
    system, qsel = _select_quadrature(system, state, eta, eta_v, sigma, rule_params)
    lay = system.layout
    if N is None and (getattr(system, "noise", None) is None or not lay.adaptive_b):
        raise ValueError(
            f"rule {_rule_name(system)!r} has no stochastic feedback; solve_sde "
            "without N needs an adaptive-feedback rule such as 'afa' (give N for the "
            "finite-N noise of every order parameter, or use solve for the ODEs)"
        )
    p = _params_vector(system, state, eta, eta_v, sigma, rule_params)
    if N is not None:
        ns, pc, noise_rule = _noise_system(
            rule,
            system,
            state,
            N,
            activation,
            (eta, eta_v, sigma, rule_params),
            noise_quadrature,
        )
        if drift_correction:
            _check_drift_correction(ns, system)
    t_sys = time.perf_counter()
    y0 = np.ascontiguousarray(lay.pack(state), dtype=float)
    n = y0.shape[0]
    T = rec.shape[0]
    P = n_paths
    # with N each path keeps Σ's factor and the last refreshed Σ (two n×n arrays) and c
    _check_memory(
        T, n, state.K, state.M, P, "odeflow sde", 16 * n * n + 8 * n if N is not None else 0
    )
    Y = np.tile(y0, (P, 1))
    rec_y = np.full((P, T, n), np.nan)
    rec_eg = np.full((P, T), np.nan)
    FS = np.zeros((P, S.N_FS))
    IST = np.zeros((P, S.N_IST), dtype=np.int64)
    opts = S.make_opts(
        alpha_max, dt, 1.0, None, diverge_threshold, PSD_RTOL, 1 << 62, lay.nQ, lay.K, state.T
    )
    seeds = E.base_seeds(seed, P).view(np.int64)
    bar = ProgressBar(alpha_max, label=f"{_rule_name(system)} SDE ×{P}", enabled=progress)
    if N is None:
        b0 = lay.slices["b"].start

        def call(a, z, steps):
            E.em_kernel(
                system.rhs,
                system.eg,
                system.noise,
                p,
                Y[a:z],
                rec,
                rec_y[a:z],
                rec_eg[a:z],
                FS[a:z],
                IST[a:z],
                opts,
                seeds[a:z],
                b0,
                steps,
            )
    else:
        LS = np.zeros((P, n, n))
        SS = np.zeros((P, n, n))
        NX = np.zeros((P, 3), dtype=np.int64)
        C1 = np.zeros((P, n))
        # without the correction the kernel never calls drift1: any function of its type
        drift1 = ns.drift1 if drift_correction else system.rhs

        def call(a, z, steps):
            E.em_full_kernel(
                system.rhs,
                system.eg,
                ns.cov,
                drift1,
                p,
                pc,
                Y[a:z],
                rec,
                rec_y[a:z],
                rec_eg[a:z],
                FS[a:z],
                IST[a:z],
                opts,
                seeds[a:z],
                1.0 / N,
                0 if noise_every is None else noise_every,
                ctl,
                LS[a:z],
                SS[a:z],
                NX[a:z],
                C1[a:z],
                int(bool(drift_correction)),
                steps,
            )

    _drive_paths(call, P, FS, IST, bar)

    codes = IST[:, S.I_CODE]
    diverged = codes < 0
    alpha_stop = np.where(diverged, FS[:, S.F_STOP_ALPHA], FS[:, S.F_ALPHA])
    alive = np.arange(T)[None, :] < IST[:, S.I_NEXT_REC][:, None]
    n_alive = alive.sum(axis=0)
    nd = int(diverged.sum())
    if nd == 0:
        status, message = (
            0,
            (
                f"all {P} paths reached α = alpha_max = {_fmt(alpha_max)} "
                f"({int(IST[0, S.I_NSTEPS])} steps each)"
            ),
        )
    else:
        first = int(np.argmin(np.where(diverged, alpha_stop, np.inf)))
        _, _, why = _message(int(codes[first]), FS[first], IST[first], opts, "euler")
        status = -1
        npsd = int(np.sum(codes == S.CODE_PSD))
        psd = f" ({npsd} of them lost a positive semi-definite Q)" if npsd else ""
        message = (
            f"{nd} of {P} paths diverged{psd} (their records stop there; statistics use "
            f"the surviving paths); earliest, path {first}: {why}"
        )
    bar.close(alpha_max if nd == 0 else float(np.max(alpha_stop)), note=message)

    parts = lay.unpack(rec_y)
    eg_mean, eg_std = _nan_stats(rec_eg, alive)
    b_mean = b_std = None
    if parts.get("b") is not None:
        b_mean, b_std = _nan_stats(parts["b"], alive)
    params = dict(
        model=model.name,
        rule=_rule_name(system),
        K=state.K,
        M=state.M,
        activation=getattr(system, "activation", activation),
        **({"eta": eta, "eta_v": eta_v, "sigma": sigma} if N is None else mparams),
        **({"widths": widths} if widths is not None else {}),
        alpha_max=alpha_max,
        method=method,
        dt=dt,
        record=_jsonable(record_spec),
        n_paths=P,
        seed=seed,
        diverge_threshold=diverge_threshold,
        chunk_steps=E.CHUNK_STEPS,
        rule_params=dict(rule_params or {}),
    )
    if N is not None:
        params.update(
            N=N,
            noise_every=noise_every,
            **(
                {
                    "noise_refresh": {
                        "rtol": float(ctl[0]),
                        "first": NOISE_DALPHA,
                        "max": NOISE_DALPHA_MAX,
                    }
                }
                if noise_every is None
                else {}
            ),
            noise_evaluations=float(NX[:, E.NX_COUNT].mean()),
            drift_correction=bool(drift_correction),
            noise_quadrature=noise_rule,
        )
    quad = _drift_quadrature(system, state, eta, eta_v, sigma, rule_params, qsel)
    if quad is not None:
        params["quadrature"] = quad
        r = quad["rule"]
        how = r.get("method") or f"{r.get('nodes')} nodes"
        message += f"; drift quadrature: {r.get('scheme')}, {how}"
        if quad.get("warning"):
            message += f" ({quad['warning']})"
    if note:
        params["notes"] = [note]
    t_end = time.perf_counter()
    return SDEResult(
        alpha=rec.copy(),
        eg=rec_eg,
        Q=parts["Q"],
        R=parts["R"],
        v=parts.get("v"),
        b=parts.get("b"),
        u=parts.get("u"),
        W=parts.get("W") if widths is not None else None,
        alive=alive,
        n_alive=n_alive,
        eg_mean=eg_mean,
        eg_std=eg_std,
        b_mean=b_mean,
        b_std=b_std,
        diverged=diverged,
        alpha_stop=alpha_stop,
        status=status,
        message=message,
        nfev=int(IST[:, S.I_NFEV].sum()),
        init=state,
        params=params,
        timings={"system": t_sys - t_start, "run": t_end - t_sys},
        N=N,
    )
