"""The tolerance contract of the quadrature backend (docs/quadrature.md, "The tolerance
contract").

Every scheme promises ``quadrature={"rtol": r}`` (default
:data:`theory.quadrature.RTOL_DEFAULT` = 1e-6): the error of the right-hand side,
``max_i |f_i − f_i^exact|``, is at most ``r`` times the rhs scale ``max_i |f_i|`` (at the
initial state; along the run, the larger of that and the state's own largest entry, so
that a state near a fixed point, where f → 0, is not held to an impossible relative
standard). The error is *estimated* by comparing the rule with cheaper rules of the same
family (:func:`theory.quadrature.coarse_rules`): Gauss–Hermite (tensor or marginal) with
fewer nodes per field, Sobol with half the points and two other scramblings.

* ``select``: at the initial state, ``auto`` takes the cheapest (scheme, n) whose estimate
  meets rtol, among the schemes that apply (marginal for δ = h(λ) e with a smooth g or
  relu — exact moments, :mod:`theory.relu_kernels`; tensor Gauss–Hermite; scrambled
  Sobol), with at most :data:`AUTO_MAX_NODES` nodes (or equivalents) per evaluation.
  When none does, it keeps the old default (Sobol, ``default_n``) and says so
  (a warning in ``Result.quadrature`` and on stderr). An explicit scheme without ``n``
  gets the smallest n of its ladder that meets rtol; an explicit scheme that cannot meet
  rtol is refused (ValueError naming the scheme, n, the estimate and what would meet it).
* ``live``: during the run (:func:`odeflow.solve` calls it between chunks of steps, each
  time the state has moved by :data:`RECHECK_MOVE` since the last check, and where the run
  stops): the estimate at the current state; when it misses rtol, ``auto`` picks the rule
  that meets it there (``select`` at that state: the run goes back to the last state that
  passed and continues with it; with nothing affordable it goes on with a warning), an
  explicit scheme stops the run there (status −1, the message names scheme, n, the
  estimate and what would meet it).
* ``recheck``: after the run, the estimate at the recorded states, one every time the state
  has moved by :data:`RECHECK_MOVE` (relative, max norm) since the last check, at most
  :data:`RECHECK_MAX` of them; the first that misses rtol turns the run's status into −1
  with a message (the error of a rule grows with the field variances).
"""

from __future__ import annotations

import math

import numpy as np

from .quadrature import MAX_GH_NODES, default_n

__all__ = [
    "AUTO_MAX_NODES",
    "AUTO_SAFETY",
    "RECHECK_MOVE",
    "RECHECK_MAX",
    "ladder",
    "select",
    "recheck",
    "live",
    "cost",
]

#: most nodes per evaluation ``auto`` spends to meet rtol (≈ 30 ms per rhs at K = M = 2)
AUTO_MAX_NODES = 1 << 18
#: auto picks a rule whose estimate at the initial state is within this fraction of rtol:
#: the error grows with the field variances along a run (re-checked, :func:`recheck`)
AUTO_SAFETY = 0.1
#: a re-check along the run each time the state moved by this much (relative, max norm)
RECHECK_MOVE = 0.25
#: at most this many re-checks after a run (each costs ~ 3 right-hand sides)
RECHECK_MAX = 12
_GH_LADDER = (4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 100)
_MARGINAL_LADDER = (8, 12, 16, 20, 24, 28, 32, 40, 48)


def _exact_relu(system) -> bool:
    """Whether the marginal scheme of ``system`` takes exact moments (relu,
    :mod:`theory.relu_kernels`) instead of Gauss–Hermite nodes."""
    return system.act.name == "relu"


def _marginal_candidate(system):
    """The marginal-scheme system when ``auto`` may try it: smooth g (Gauss–Hermite per
    field) or relu (exact moments); other kinked activations never."""
    if system.act.smooth or _exact_relu(system):
        return _marginal_system(system)
    return None


def _marginal_system(system):
    """The marginal-scheme system of ``system``'s rule, or None when the scheme does not
    apply (rule shape, kinked activation other than relu)."""
    from .codegen_quad import build_quad_system, marginal_applies

    if not marginal_applies(system.rule, system.act):
        return None
    q = dict(system.quadrature, scheme="marginal", n=None)
    return build_quad_system(system.rule, system.K, system.M, system.act, q)


def _full_system(system):
    from .codegen_quad import build_quad_system

    q = dict(system.quadrature, scheme="sobol", n=None)
    return build_quad_system(system.rule, system.K, system.M, system.act, q)


#: cost of the exact relu moments in Sobol-node equivalents: per integral of the term
#: table, and per integral over four fields and Gauss–Legendre node of its orthant
#: probability. Fitted to the measured time per rhs against Sobol 2^14 at K = 2…8, M = 2
#: (docs/quadrature.md, "ReLU: exact moments"): predicted/measured ratio 0.02, 0.07, 0.15,
#: 0.59, 1.65 against 0.02–0.04, 0.07–0.19, 0.18–0.23, 0.52–0.82, 1.07–1.10 (conservative
#: at large K, where a Sobol node costs more: it computes K + M fields)
RELU_COST_PER_INTEGRAL = 5
RELU_COST_PER_P4_NODE = 2


def relu_cost(K: int, M: int, adaptive: bool, n: int) -> int:
    """Sobol-node equivalents of one rhs by the exact relu moments with n Gauss–Legendre
    nodes (see :data:`RELU_COST_PER_INTEGRAL`)."""
    from .codegen_marginal import marginal_tables

    t = marginal_tables(K, M, adaptive, False)[0]
    NS, NI = int(t[0]), int(t[1])
    dims = t[3 : 3 + 6 * NS : 6].astype(int)
    ends = t[8 : 3 + 6 * NS : 6].astype(int)
    n4 = int(np.diff(np.r_[0, ends])[dims == 4].sum())
    return RELU_COST_PER_INTEGRAL * NI + RELU_COST_PER_P4_NODE * n * n4


def cost(system, scheme: str, n: int, dim: int) -> int:
    """Nodes visited per evaluation: ``n^dim`` (Gauss–Hermite), ``n`` (Sobol), the pruned
    total over the field subsets (marginal), Sobol-node equivalents (relu's exact
    moments, :func:`relu_cost`)."""
    if scheme == "gauss-hermite":
        return n**dim
    if scheme == "sobol":
        return n
    if _exact_relu(system):
        return relu_cost(system.K, system.M, system.layout.adaptive_b, n)
    from .codegen_marginal import marginal_tables, table_nodes

    tables = marginal_tables(system.K, system.M, system.layout.adaptive_b, False)
    return table_nodes(tables[0], n)[1]


def ladder(system, scheme: str, dim: int, max_nodes: int) -> list:
    """The node counts tried for ``scheme``, cheapest first, within ``max_nodes``."""
    if scheme == "sobol":
        return [1 << m for m in range(10, 22) if (1 << m) <= max_nodes]
    if scheme == "gauss-hermite":
        return [n for n in _GH_LADDER if n**dim <= max_nodes]
    return [n for n in _MARGINAL_LADDER if cost(system, "marginal", n, dim) <= max_nodes]


def _estimate(sys_s, scheme, n, args, scale):
    from .quadrature import make_rule

    state, eta, eta_v, sigma, rp = args
    qr = make_rule(sys_s.dim(sigma), scheme, n, sys_s.quadrature["seed"])
    return sys_s.error_estimate(state, eta, eta_v, sigma, scale=scale, qrule=qr, **rp)


def _search(sys_s, scheme, dim, args, rtol, max_nodes, scale, start=0):
    """(first n ≥ start of the ladder meeting rtol or None, [(n, cost, estimate), …])."""
    tried = []
    rungs = [m for m in ladder(sys_s, scheme, dim, max_nodes) if m > start]
    for n in [start] * (start > 0) + rungs:
        est = _estimate(sys_s, scheme, n, args, scale)
        tried.append((n, cost(sys_s, scheme, n, dim), est["rhs_rel"]))
        if est["rhs_rel"] <= rtol:
            return n, tried
    return None, tried


def _fmt_tried(scheme, tried) -> str:
    return ", ".join(f"{scheme} n={n}: {e:.2g}" for n, _, e in tried[-3:])


def select(system, state, eta, eta_v=None, sigma=0.0, rule_params=None):
    """``(system, report)``: the system whose rule meets the tolerance at ``state``.

    ``system`` is a quadrature system (:class:`theory.codegen_quad.QuadSystem`) built with
    the user's options; the returned one has scheme and n fixed (another scheme's kernels
    when ``auto`` picks the marginal scheme). ``report``: ``{"selected", "tried",
    "warning"}`` for ``Result.quadrature``.

    Raises
    ------
    ValueError
        An explicit scheme (with or without n) whose estimated error exceeds rtol at the
        initial state; the message names the scheme, n, the estimate, rtol and what would
        meet it.
    """
    from .codegen_quad import build_quad_system

    rp = dict(rule_params or {})
    args = (state, eta, eta_v, float(sigma), rp)
    q = system.quadrature
    rtol = q["rtol"]
    scheme, n = q["scheme"], q["n"]

    def rebuilt(s, nn):
        opts = dict(q, scheme=s, n=nn)
        return build_quad_system(system.rule, system.K, system.M, system.act, opts)

    if scheme != "auto":
        dim = system.dim(float(sigma))
        if n is None:
            # the scheme's default n when it meets rtol (the behaviour of old), else the
            # first n above it that does
            try:
                start = default_n(dim, scheme)
            except ValueError:  # gauss-hermite beyond 6 fields: no default
                start = 0
            found, tried = _search(system, scheme, dim, args, rtol, MAX_GH_NODES, None, start)
            if found is None:
                raise ValueError(_refusal(system, scheme, None, tried, rtol, args))
            sel = {"scheme": scheme, "n": found, "meets": True}
            return rebuilt(scheme, found), {"selected": sel, "tried": {scheme: tried}}
        est = _estimate(system, scheme if scheme != "auto" else "sobol", n, args, None)
        if not est["rhs_rel"] <= rtol:
            tried = [(n, cost(system, scheme, n, dim), est["rhs_rel"])]
            raise ValueError(_refusal(system, scheme, n, tried, rtol, args))
        return system, {"selected": {"scheme": scheme, "n": n, "meets": True}}
    # auto: the cheapest rule that meets rtol, among the schemes that apply
    best, report = None, {"tried": {}, "auto": True}
    budget = AUTO_MAX_NODES
    families = []
    marg = _marginal_candidate(system)
    if marg is not None:
        families.append((marg, "marginal"))
    full = _full_system(system)
    if system.act.smooth and marg is None:
        # where the marginal scheme applies it integrates the same functions over ≤ 4
        # fields at a fraction of the tensor rule's nodes: no need to try both
        families.append((full, "gauss-hermite"))
    families.append((full, "sobol"))
    for sys_s, fam in families:
        dim = sys_s.dim(float(sigma))
        found, tried = _search(sys_s, fam, dim, args, rtol * AUTO_SAFETY, budget, None)
        report["tried"][fam] = [[nn, c, e] for nn, c, e in tried]
        if found is not None:
            c = cost(sys_s, fam, found, dim)
            if best is None or c < best[2]:
                best = (fam, found, c)
                budget = c  # later families must be cheaper
    if best is not None:
        fam, found, c = best
        report["selected"] = {"scheme": fam, "n": found, "nodes": c}
        report["selected"]["meets"] = True
        return rebuilt(fam, found), report
    # nothing affordable meets rtol: the former default rule, and say so
    from .codegen_quad import resolve_scheme

    sch, nn = resolve_scheme(system.rule, system.act, "auto", None)
    sch = "sobol"  # resolve_scheme leaves "auto" for smooth activations: Sobol
    dim = full.dim(float(sigma))
    nn = nn or default_n(dim, sch)
    est = _estimate(full, sch, nn, args, None)
    report["selected"] = {"scheme": sch, "n": nn, "nodes": nn, "meets": False}
    report["warning"] = (
        f"quadrature: no rule with at most {AUTO_MAX_NODES} nodes meets rtol = {rtol:g} at "
        f"the initial state (best tried: {_best_tried(report['tried'])}); using {sch} "
        f"n = {nn} (estimated error {est['rhs_rel']:.2g} relative to the rhs scale). Pass "
        "quadrature={'rtol': ...} to accept it, or an explicit scheme and n"
    )
    return rebuilt(sch, nn), report


def _best_tried(tried: dict) -> str:
    rows = [(e, fam, n) for fam, t in tried.items() for n, _, e in t if math.isfinite(e)]
    if not rows:
        return "none"
    e, fam, n = min(rows)
    return f"{fam} n = {n}, {e:.2g}"


def _refusal(system, scheme, n, tried, rtol, args) -> str:
    """The message for an explicit scheme that cannot meet rtol: scheme, n, estimate,
    and a rule that would meet it (searched among the other schemes)."""
    what = f"n = {n}" if n is not None else f"any n up to {MAX_GH_NODES:.0e} nodes"
    e = tried[-1][2] if tried else float("nan")
    msg = (
        f"quadrature scheme {scheme!r} with {what} does not meet rtol = {rtol:g} at the "
        f"initial state (K = {system.K}, M = {system.M}, activation {system.act.name!r}): "
        f"estimated error {e:.2g} relative to the rhs scale"
    )
    if n is None and tried:
        msg += f" (tried {_fmt_tried(scheme, tried)})"
    alt = _alternative(system, scheme, n, args, rtol)
    msg += f"; {alt}" if alt else "; no rule within the node limits meets it: raise rtol"
    return msg


def _alternative(system, scheme, n, args, rtol):
    """'would meet it: …' — the same scheme with more nodes, else another scheme."""
    found = _meeting(system, scheme, n, args, rtol)
    if found is None:
        return None
    _, fam, m, e = found
    return f"would meet it: quadrature={{'scheme': {fam!r}, 'n': {m}}} (estimate {e:.2g})"


def _meeting(system, scheme, n, args, rtol):
    """``(system, scheme, n, estimate)`` of the first rule found that meets rtol at the
    state of ``args``: the same scheme with more nodes, else the marginal scheme, else
    Sobol (up to 8 × :data:`AUTO_MAX_NODES` nodes); None if none does."""
    sigma = args[3]
    fams = []
    if scheme in ("gauss-hermite", "marginal") and n is not None:
        fams.append((system, scheme))
    marg = _marginal_candidate(system)
    if marg is not None and scheme != "marginal":
        fams.append((marg, "marginal"))
    fams.append((_full_system(system), "sobol"))
    for sys_s, fam in fams:
        dim = sys_s.dim(float(sigma))
        lo = n if (fam == scheme and n is not None) else 0
        cands = [m for m in ladder(sys_s, fam, dim, AUTO_MAX_NODES * 8) if m > lo]
        for m in cands:
            est = _estimate(sys_s, fam, m, args, None)
            if est["rhs_rel"] <= rtol:
                return sys_s, fam, m, est["rhs_rel"]
    return None


def recheck(system, alphas, records, state0, eta, eta_v=None, sigma=0.0, rule_params=None):
    """The error estimate along a run (see the module docstring): ``(checks, failure)``,
    ``checks`` a list of ``(α, rhs_rel)`` and ``failure`` None or the message for the first
    recorded state whose estimate misses rtol."""
    rp = dict(rule_params or {})
    lay = system.layout
    rtol = system.quadrature["rtol"]
    y0 = lay.pack(state0)
    # the rhs scale of the run: the largest entry at the initial state
    p0 = system.params(state0, eta, eta_v, sigma, **rp)
    f0 = np.empty_like(y0)
    system.rhs(y0, p0, f0)
    scale0 = float(np.max(np.abs(f0)))
    last = y0
    checks, picked = [], []
    for i in range(1, len(alphas)):
        y = records[i]
        if not np.all(np.isfinite(y)):
            break
        move = np.max(np.abs(y - last)) / max(1.0, float(np.max(np.abs(last))))
        if move >= RECHECK_MOVE or i == len(alphas) - 1:
            picked.append(i)
            last = y
    if len(picked) > RECHECK_MAX:  # evenly thinned, the last kept
        keep = np.unique(np.linspace(0, len(picked) - 1, RECHECK_MAX).round().astype(int))
        picked = [picked[j] for j in keep]
    for i in picked:
        st = lay.state(records[i], state0)
        try:
            est = system.error_estimate(st, eta, eta_v, sigma, scale=scale0, **rp)
        except ValueError:  # a state at the edge of validity: the solver said so already
            continue
        checks.append((float(alphas[i]), est["rhs_rel"]))
        if not est["rhs_rel"] <= rtol:
            qr = system.rule_for(float(sigma))
            return checks, (
                f"quadrature error estimate {est['rhs_rel']:.2g} exceeds rtol = {rtol:g} at "
                f"α = {alphas[i]:.4g} (scheme {qr.scheme!r}, n = {qr.n}; relative to the rhs "
                f"scale {max(scale0, est['scale']):.3g}): the trajectory beyond is not "
                "trustworthy; rerun with more nodes (a larger n) or scheme 'auto'"
            )
    return checks, None


def live(
    system0, system, state0, y, alpha, eta, eta_v=None, sigma=0.0, rule_params=None, *, scale, auto
):
    """The live re-check at the run's state ``y`` (flat) at α = ``alpha``: the error
    estimate of ``system``'s rule relative to ``max(scale, max_i |f_i|)`` (``scale``: the
    rhs scale at the initial state, as :func:`recheck`).

    Returns ``(verdict, value, rhs_rel)``: ``("ok", None, e)``; ``("refine", (system,
    report), e)`` with the rule ``select`` picks at this state from the user's options
    (``system0``; only when ``auto`` and it is another rule that meets rtol); ``("warn",
    message, e)`` when auto has nothing affordable that does (the run goes on, as from
    ``select``'s fallback, and says so); ``("stop", message, e)`` for an explicit scheme
    (the message names what would meet rtol); ``("skip",
    None, nan)`` when the state is outside the validity of the estimate (the solver's own
    checks report it).
    """
    from .codegen_quad import build_quad_system

    rp = dict(rule_params or {})
    st = system.layout.state(np.asarray(y, dtype=float), state0)
    try:
        est = system.error_estimate(st, eta, eta_v, sigma, scale=scale, **rp)
    except ValueError:
        return "skip", None, float("nan")
    e = est["rhs_rel"]
    rtol = system.quadrature["rtol"]
    if e <= rtol:
        return "ok", None, e
    qr = system.rule_for(float(sigma))
    what = (
        f"quadrature error estimate {e:.2g} exceeds rtol = {rtol:g} at α = {alpha:.4g} "
        f"(scheme {qr.scheme!r}, n = {qr.n}; relative to the rhs scale "
        f"{max(scale, est['scale']):.3g})"
    )
    if auto:
        try:
            new, rep = select(system0, st, eta, eta_v, sigma, rp)
        except ValueError:
            new, rep = None, {}
        sel = rep.get("selected", {})
        same = sel.get("scheme") == qr.scheme and sel.get("n") == qr.n
        if new is not None and sel.get("meets") and not same:
            return "refine", (new, rep), e
        # nothing meets rtol with auto's margin within its budget: the first rule that
        # meets rtol itself (more nodes of this scheme, or another), up to 8× the budget
        found = _meeting(system, qr.scheme, qr.n, (st, eta, eta_v, float(sigma), rp), rtol)
        if found is not None:
            sys_s, fam, m, em = found
            opts = dict(system0.quadrature, scheme=fam, n=m)
            new = build_quad_system(system.rule, system.K, system.M, system.act, opts)
            return "refine", (new, {"selected": {"scheme": fam, "n": m, "meets": True}}), e
        return "warn", f"{what}, and no rule within auto's node limit meets it there", e
    alt = _alternative(system, qr.scheme, qr.n, (st, eta, eta_v, float(sigma), rp), rtol)
    return "stop", f"{what}; {alt or 'no rule within the node limits meets it: raise rtol'}", e
