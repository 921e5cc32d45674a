"""Observables of the order parameters (SCIENCE.md §3, §5.3), in plain numpy.

These closed forms are written by hand (they are also what the tests use as an oracle for
the derived, generated ``eps_g``), and import neither sympy nor numba, so simulations can
use them on measured order parameters.
"""
from __future__ import annotations

import numpy as np

from .state import OrderParameters

__all__ = ["I2_matrix", "eps_g", "cos_vb", "norm_b", "specialisation", "ACTIVATIONS"]

ACTIVATIONS = ("erf", "linear")


def check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    return activation


def I2_matrix(C: np.ndarray, activation: str = "erf") -> np.ndarray:
    """``I2(a, b) = E[g(z_a) g(z_b)]`` for every pair of fields with covariance ``C``.

    ``g = erf(·/√2)``: ``(2/π) arcsin(C_ab / √((1 + C_aa)(1 + C_bb)))``; linear: ``C_ab``.
    Works on stacks ``(..., n, n)``.
    """
    check_activation(activation)
    C = np.asarray(C, dtype=float)
    if activation == "linear":
        return C.copy()
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
    lead = np.broadcast_shapes(Q.shape[:-2], R.shape[:-2], T.shape[:-2], v.shape[:-1],
                               v_star.shape[:-1])
    K, M = Q.shape[-1], T.shape[-1]
    Q, R, T = (np.broadcast_to(a, lead + a.shape[-2:]) for a in (Q, R, T))
    C = np.concatenate([np.concatenate([Q, R], axis=-1),
                        np.concatenate([np.swapaxes(R, -1, -2), T], axis=-1)], axis=-2)
    a = np.concatenate([np.broadcast_to(v, lead + (K,)), -np.broadcast_to(v_star, lead + (M,))],
                       axis=-1)
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
