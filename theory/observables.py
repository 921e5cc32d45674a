"""Observables of the order parameters (docs/theory.md §3, §5), in plain numpy.

These closed forms are written by hand (they are also what the tests use as an oracle for
the derived, generated ``eps_g``), and import neither sympy nor numba, so simulations can
use them on measured order parameters.
"""

from __future__ import annotations

import numpy as np

from .activation_names import ACTIVATIONS, CLOSED_FORM_ACTIVATIONS, is_user
from .state import OrderParameters

__all__ = ["I2_matrix", "eps_g", "cos_vb", "norm_b", "specialisation", "ACTIVATIONS"]


def check_activation(activation: str) -> str:
    """``activation`` if it is a built-in name or a user activation's canonical name
    (``"user:<expr>"``, from :func:`theory.activations.get_activation`)."""
    if activation not in ACTIVATIONS and not is_user(activation):
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    return activation


def check_closed_form(activation: str) -> str:
    """``activation`` if its averages have closed forms (erf, linear), else ValueError."""
    check_activation(activation)
    if activation not in CLOSED_FORM_ACTIVATIONS:
        raise ValueError(
            f"activation {activation!r} has no closed-form Gaussian averages "
            f"(only {', '.join(CLOSED_FORM_ACTIVATIONS)} do); use the "
            "quadrature backend (theory.codegen_quad)"
        )
    return activation


# 2-D Gauss–Hermite rule (probabilists'; weights sum to 1) for I2 of tanh and sigmoid.
# 48 nodes per axis: the integrands are analytic in a strip, so the error is far below
# 1e-10 for field variances up to ~10 (checked against Monte Carlo in the tests).
_GH_N = 48


def _gh_nodes():
    x, w = np.polynomial.hermite_e.hermegauss(_GH_N)
    return x, w / w.sum()


def _g_numpy(activation):
    if activation == "tanh":
        return np.tanh
    if activation == "sigmoid":
        return lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))  # 1/(1+e^-x), overflow-free
    if is_user(activation):
        # a user activation: its sympy expression (the registry) as a numpy function;
        # imports sympy, only for user activations
        from .activations import get_activation

        return get_activation(activation).numpy()[0]
    raise ValueError(activation)


def _I2_relu(C):
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009):
    ``E[relu(a) relu(b)] = √(C_aa C_bb) (sin θ + (π − θ) cos θ) / (2π)``,
    ``cos θ = C_ab / √(C_aa C_bb)``."""
    d = np.clip(np.diagonal(C, axis1=-2, axis2=-1), 0.0, None)
    s = np.sqrt(d[..., :, None] * d[..., None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(s > 0, C / np.where(s > 0, s, 1.0), 1.0)
    th = np.arccos(np.clip(cos, -1.0, 1.0))
    return s * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)


def _I2_quadrature(C, activation):
    """``E[g(a) g(b)]`` by a 2-D Gauss–Hermite rule on ``(a, b) = L ξ`` with the 2×2
    Cholesky factor ``L`` of each pair's covariance (clipped at 0 for singular pairs):
    ``a = √C_aa ξ1``, ``b = (C_ab/√C_aa) ξ1 + √(C_bb − C_ab²/C_aa) ξ2``."""
    g = _g_numpy(activation)
    x, w = _gh_nodes()
    W = w[:, None] * w[None, :]
    lead, n = C.shape[:-2], C.shape[-1]
    Cf = C.reshape((-1, n, n))
    out = np.empty_like(Cf)
    d = np.clip(np.diagonal(Cf, axis1=-2, axis2=-1), 0.0, None)
    sa = np.sqrt(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        l21 = np.where(
            sa[:, :, None] > 0, Cf / np.where(sa[:, :, None] > 0, sa[:, :, None], 1.0), 0.0
        )
    l22 = np.sqrt(np.clip(d[:, None, :] - l21**2, 0.0, None))
    step = max(1, 4096 // (n * n))  # bound the temporary to ~4096·48² doubles
    for s0 in range(0, Cf.shape[0], step):
        sl = slice(s0, s0 + step)
        ga = g(sa[sl, :, None, None, None] * x[:, None])  # (s, n, 1, P, 1)
        gb = g(l21[sl, :, :, None, None] * x[:, None] + l22[sl, :, :, None, None] * x)
        out[sl] = np.sum(W * ga * gb, axis=(-2, -1))
    out = 0.5 * (out + np.swapaxes(out, -1, -2))
    return out.reshape(lead + (n, n))


def I2_matrix(C: np.ndarray, activation: str = "erf") -> np.ndarray:
    """``I2(a, b) = E[g(z_a) g(z_b)]`` for every pair of fields with covariance ``C``.

    ``g = erf(·/√2)``: ``(2/π) arcsin(C_ab / √((1 + C_aa)(1 + C_bb)))``; linear: ``C_ab``;
    relu: the arc-cosine kernel (closed form); tanh, sigmoid and user activations
    (``"user:<expr>"``): a 2-D Gauss–Hermite rule with 48 nodes per axis (exact to ~1e-10
    for smooth activations; slower, ~1e-4, for a kinked one). Works on stacks
    ``(..., n, n)``.
    """
    check_activation(activation)
    C = np.asarray(C, dtype=float)
    if activation == "linear":
        return C.copy()
    if activation == "relu":
        return _I2_relu(C)
    if activation in ("tanh", "sigmoid") or is_user(activation):
        return _I2_quadrature(C, activation)
    d = 1.0 + np.diagonal(C, axis1=-2, axis2=-1)
    x = C / np.sqrt(d[..., :, None] * d[..., None, :])
    return (2.0 / np.pi) * np.arcsin(np.clip(x, -1.0, 1.0))


def eps_g(Q, R, T, v, v_star, activation: str = "erf"):
    """Generalisation error ``ε_g = ½ E[(ŷ − y)²]`` without output noise.

    .. math:: ε_g = ½ [Σ_ik v_i v_k I2(i,k) + Σ_nm v*_n v*_m I2(n,m) − 2 Σ_in v_i v*_n I2(i,n)]

    All arguments may carry leading (time, seed) axes: ``Q (..., K, K)``, ``R (..., K, M)``,
    ``T (..., M, M)``, ``v (..., K)``, ``v_star (..., M)``.
    """
    Q, R, T = (np.asarray(a, dtype=float) for a in (Q, R, T))
    v, v_star = np.asarray(v, dtype=float), np.asarray(v_star, dtype=float)
    lead = np.broadcast_shapes(
        Q.shape[:-2], R.shape[:-2], T.shape[:-2], v.shape[:-1], v_star.shape[:-1]
    )
    K, M = Q.shape[-1], T.shape[-1]
    Q, R, T = (np.broadcast_to(a, lead + a.shape[-2:]) for a in (Q, R, T))
    C = np.concatenate(
        [np.concatenate([Q, R], axis=-1), np.concatenate([np.swapaxes(R, -1, -2), T], axis=-1)],
        axis=-2,
    )
    a = np.concatenate(
        [np.broadcast_to(v, lead + (K,)), -np.broadcast_to(v_star, lead + (M,))], axis=-1
    )
    I2 = I2_matrix(C, activation)
    return 0.5 * np.einsum("...i,...ij,...j->...", a, I2, a)


def eps_g_of(state: OrderParameters, activation: str = "erf") -> float:
    """:func:`eps_g` of an :class:`OrderParameters`."""
    return float(eps_g(state.Q, state.R, state.T, state.v, state.v_star, activation))


def cos_vb(v, b):
    """Cosine of the angle between the second layer ``v`` and the feedback ``b``."""
    v, b = np.asarray(v, dtype=float), np.asarray(b, dtype=float)
    den = np.linalg.norm(v, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(v * b, axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def norm_b(b):
    """Euclidean norm ``|b|`` of the feedback vector."""
    return np.linalg.norm(np.asarray(b, dtype=float), axis=-1)


def specialisation(Q, R, T):
    """How specialised the student is: the mean over student units of
    ``max_m |R_km| / √(Q_kk T_mm)`` minus the mean of the other normalised overlaps.

    0 for the symmetric (unspecialised) plateau where every ``R_km`` is equal; close to 1
    when every student unit has aligned with one teacher unit and ignores the others.
    Works on stacks ``(..., K, M)``.
    """
    Q, R, T = (np.asarray(a, dtype=float) for a in (Q, R, T))
    qd = np.sqrt(np.clip(np.diagonal(Q, axis1=-2, axis2=-1), 1e-300, None))
    td = np.sqrt(np.clip(np.diagonal(T, axis1=-2, axis2=-1), 1e-300, None))
    r = np.abs(R) / (qd[..., :, None] * td[..., None, :])
    M = R.shape[-1]
    best = r.max(axis=-1)
    if M == 1:
        return best.mean(axis=-1)
    rest = (r.sum(axis=-1) - best) / (M - 1)
    return (best - rest).mean(axis=-1)
