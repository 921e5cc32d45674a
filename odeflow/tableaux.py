"""Explicit Runge–Kutta methods as data: Butcher tableaux.

A method with ``s`` stages advances ``dy/dα = f(y)`` by one step ``h`` from ``y_n``::

    k_j     = f(y_n + h Σ_{l<j} A_jl k_l)             j = 1 … s     (c_j = Σ_l A_jl)
    y_{n+1} = y_n + h Σ_j b_j k_j                                   (order p)
    err     = h Σ_j e_j k_j,   e = b − b̂                            (b̂ of order p̂ < p)
    y(α_n + θh) = y_n + h Σ_m θ^m Σ_j P_j,m−1 k_j,   θ ∈ [0, 1]      (dense output)

FSAL ("first same as last"): the last row of ``A`` equals ``b`` and ``c_s = 1``, so the last
stage is ``f(y_{n+1})``, the next step's first stage; ``b_s = 0``.

The one engine in :mod:`odeflow.rk` runs any table here; a new explicit method is one more
:class:`ButcherTableau` in :data:`TABLEAUX` (``tests/odeflow/test_tableaux.py`` then checks
its order conditions and measures its convergence order without further code).

Sources. Euler and RK4: any textbook. Dormand–Prince 5(4): Dormand & Prince (1980), with
Hairer's CONTD5 continuous extension (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.6).
Tsitouras 5(4): Ch. Tsitouras, Comput. Math. Appl. 62 (2011) 770–775, Table 1 and its
continuous extension (as in OrdinaryDiffEq.jl and diffrax). Bogacki–Shampine 3(2):
Appl. Math. Lett. 2 (1989) 321–325, with the cubic Hermite interpolant (scipy's RK23).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as Fr

import numpy as np

__all__ = ["BS3", "DOPRI5", "EULER", "RK4", "TABLEAUX", "TSIT5", "ButcherTableau"]


def _array(rows) -> np.ndarray:
    """Read-only float64 array from nested lists of numbers or Fractions."""
    if isinstance(rows, np.ndarray):
        a = rows.astype(float)
    elif isinstance(rows[0], (list, tuple)):
        a = np.array([[float(x) for x in r] for r in rows], dtype=float)
    else:
        a = np.array([float(x) for x in rows], dtype=float)
    a.setflags(write=False)
    return a


def _lower(rows) -> list:
    """Square strictly lower-triangular A from its rows below the diagonal (row 1 is [])."""
    s = len(rows)
    return [list(r) + [0] * (s - len(r)) for r in rows]


@dataclass(frozen=True)
class ButcherTableau:
    """One explicit Runge–Kutta method (see the module docstring for the formulas).

    Attributes
    ----------
    name : str
        The ``method`` name of :func:`odeflow.solve`.
    A : (s, s) array, strictly lower triangular
    b : (s,) array
        Weights of the propagated solution (order ``order``).
    c : (s,) array
        Nodes, ``c_j = Σ_l A_jl``.
    e : (s,) array or None
        Error weights ``b − b̂`` (``b̂`` of order ``error_order``); None: fixed step only.
    order : int
    error_order : int or None
        Order of the embedded solution ``b̂``; the step controller's exponent is
        ``1/(error_order + 1)``.
    P : (s, m) array or None
        Dense output: ``y(θ) = y_n + h Σ_m θ^(m+1) (Kᵀ P)_m`` (scipy's convention).
    dense_order : int or None
        Order of that interpolant.
    fsal : bool
        Last stage is ``f(y_{n+1})`` (the last row of A equals b).
    description : str
    """

    name: str
    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int
    e: np.ndarray | None = None
    error_order: int | None = None
    P: np.ndarray | None = None
    dense_order: int | None = None
    fsal: bool = False
    description: str = ""
    stages: int = field(init=False)

    def __post_init__(self):
        s = self.b.shape[0]
        object.__setattr__(self, "stages", s)
        if self.A.shape != (s, s) or self.c.shape != (s,):
            raise ValueError(f"tableau {self.name}: A must be ({s}, {s}) and c ({s},)")
        if np.any(np.triu(self.A) != 0):
            raise ValueError(
                f"tableau {self.name}: A must be strictly lower triangular (explicit method)"
            )
        if (self.e is None) != (self.error_order is None):
            raise ValueError(f"tableau {self.name}: give e and error_order together")
        if self.P is not None and self.P.shape[0] != s:
            raise ValueError(f"tableau {self.name}: P must have {s} rows")
        if self.fsal and not (np.array_equal(self.A[-1], self.b) and self.b[-1] == 0):
            raise ValueError(f"tableau {self.name}: FSAL needs A[-1] == b and b[-1] == 0")

    @property
    def adaptive(self) -> bool:
        """True when the tableau has an embedded error estimate (step-size control)."""
        return self.e is not None

    @property
    def b_stages(self) -> int:
        """Stages up to the last non-zero weight of b: what a fixed step needs (an FSAL
        stage f(y_{n+1}) serves only the error estimate and the interpolant)."""
        return int(np.nonzero(self.b)[0][-1]) + 1

    def fingerprint(self) -> str:
        """Short hash of every coefficient (names the compiled kernel of this table)."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.A, self.b, self.c, self.e, self.P):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        h.update(repr((self.order, self.error_order, self.fsal)).encode())
        return h.hexdigest()[:10]


# ----------------------------------------------------------------------- fixed step
EULER = ButcherTableau(
    name="euler",
    A=_array([[0]]),
    b=_array([1]),
    c=_array([0]),
    order=1,
    description="explicit Euler, y_{n+1} = y_n + h f(y_n); global error O(h)",
)

RK4 = ButcherTableau(
    name="rk4",
    A=_array(_lower([[], [Fr(1, 2)], [0, Fr(1, 2)], [0, 0, 1]])),
    b=_array([Fr(1, 6), Fr(1, 3), Fr(1, 3), Fr(1, 6)]),
    c=_array([0, Fr(1, 2), Fr(1, 2), 1]),
    order=4,
    description="classical fourth-order Runge–Kutta; global error O(h⁴)",
)

# --------------------------------------------------------------- Dormand–Prince 5(4)
_DP_A = _lower(
    [
        [],
        [Fr(1, 5)],
        [Fr(3, 40), Fr(9, 40)],
        [Fr(44, 45), Fr(-56, 15), Fr(32, 9)],
        [Fr(19372, 6561), Fr(-25360, 2187), Fr(64448, 6561), Fr(-212, 729)],
        [Fr(9017, 3168), Fr(-355, 33), Fr(46732, 5247), Fr(49, 176), Fr(-5103, 18656)],
        [Fr(35, 384), 0, Fr(500, 1113), Fr(125, 192), Fr(-2187, 6784), Fr(11, 84)],
    ]
)
_DP_B = _DP_A[-1][:6] + [0]
_DP_BHAT = [
    Fr(5179, 57600),
    0,
    Fr(7571, 16695),
    Fr(393, 640),
    Fr(-92097, 339200),
    Fr(187, 2100),
    Fr(1, 40),
]
# Hairer's CONTD5 continuous extension,
#   y(θ) = y_n + θ (Δ + (1−θ)(r3 + θ (r4 + (1−θ) r5))),
#   Δ = h Σ b_j k_j, r3 = h k1 − Δ, r4 = Δ − h k7 − r3, r5 = h Σ d_j k_j,
# expands to the powers θ, θ², θ³, θ⁴ with the stage coefficients
#   [e1, 3b − 2e1 − e7 + d, −2b + e1 + e7 − 2d, d]   (e1, e7: first and last unit vectors).
_DP_D = [
    Fr(-12715105075, 11282082432),
    0,
    Fr(87487479700, 32700410799),
    Fr(-10690763975, 1880347072),
    Fr(701980252875, 199316789632),
    Fr(-1453857185, 822651844),
    Fr(69997945, 29380423),
]


def _contd5_P(b, d):
    s = len(b)
    e1 = [1] + [0] * (s - 1)
    e7 = [0] * (s - 1) + [1]
    cols = [
        e1,
        [3 * b[j] - 2 * e1[j] - e7[j] + d[j] for j in range(s)],
        [-2 * b[j] + e1[j] + e7[j] - 2 * d[j] for j in range(s)],
        d,
    ]
    return [[cols[m][j] for m in range(4)] for j in range(s)]


DOPRI5 = ButcherTableau(
    name="dopri5",
    A=_array(_DP_A),
    b=_array(_DP_B),
    c=_array([0, Fr(1, 5), Fr(3, 10), Fr(4, 5), Fr(8, 9), 1, 1]),
    order=5,
    e=_array([bj - bh for bj, bh in zip(_DP_B, _DP_BHAT)]),
    error_order=4,
    P=_array(_contd5_P(_DP_B, _DP_D)),
    dense_order=4,
    fsal=True,
    description="adaptive Dormand–Prince 5(4), FSAL, 4th-order dense output (CONTD5)",
)

# ------------------------------------------------------------------- Tsitouras 5(4)
# Coefficients of Tsitouras (2011), Table 1, to the digits printed there (c5 and the A
# entries are irrational; double precision keeps the order conditions to ~1e-15).
_TS_C = [0, 0.161, 0.327, 0.9, 0.9800255409045096857298102862870245954942137979563, 1, 1]
_TS_A = _lower(
    [
        [],
        [0.161],
        [
            -0.8480655492356988544426874250230774675121177393430e-2,
            0.3354806554923569885444268742502307746751211773934,
        ],
        [
            2.897153057105493432130432594192938764924887287701,
            -6.359448489975074843148159912383825625952700647415,
            4.362295432869581411017727318190886861027813359713,
        ],
        [
            5.325864828439256604428877920840511317836476253097,
            -11.74888356406282787774717033978577296188744178259,
            7.495539342889836208304604784564358155658679161518,
            -0.9249506636175524925650207933207191611349983406029e-1,
        ],
        [
            5.861455442946420028659251486982647890394337666164,
            -12.92096931784710929170611868178335939541780751955,
            8.159367898576158643180400794539253485181918321135,
            -0.7158497328140099722453054252582973869127213147363e-1,
            -0.2826905039406838290900305721271224146717633626879e-1,
        ],
        [
            0.9646076681806522951816731316512876333711995238157e-1,
            0.01,
            0.4798896504144995747752495322905965199130404621990,
            1.379008574103741893192274821856872770756462643091,
            -3.290069515436080679901047585711363850115683290894,
            2.324710524099773982415355918398765796109060233222,
        ],
    ]
)
_TS_B = _TS_A[-1][:6] + [0]
_TS_BHAT = [
    0.9468075576583945807478876255758922856117527357724e-1,
    0.9183565540343253096776363936645313759813746240984e-2,
    0.4877705284247615707855642599631228241516691959761,
    1.234297566930478985655109673884237654035539930748,
    -2.707712349983525454881109975059321670689605166938,
    1.866628418170587035753719399566211498666255505244,
    1 / 66,
]


def _tsit5_P():
    """Tsitouras' 4th-order continuous extension ``b_j(θ)`` (given in factored form in the
    paper) expanded into the coefficients of θ, θ², θ³, θ⁴."""
    P = np.polynomial.polynomial
    t = [0.0, 1.0]  # θ
    t2 = [0.0, 0.0, 1.0]  # θ²

    def lin(r):  # θ − r
        return [-r, 1.0]

    def quad(p1, p0):  # θ² + p1 θ + p0
        return [p0, p1, 1.0]

    polys = [
        -1.0530884977290216
        * P.polymul(
            P.polymul(t, lin(1.3299890189751412)), quad(-1.4364028541716351, 0.7139816917074209)
        ),
        0.1017 * P.polymul(t2, quad(-2.1966568338249754, 1.2949852507374631)),
        2.490627285651252793 * P.polymul(t2, quad(-2.38535645472061657, 1.57803468208092486)),
        -16.54810288924490272
        * P.polymul(P.polymul(t2, lin(1.21712927295533244)), lin(0.61620406037800089)),
        47.37952196281928122
        * P.polymul(P.polymul(t2, lin(1.203071208372362603)), lin(0.658047292653547382)),
        -34.87065786149660974 * P.polymul(P.polymul(t2, lin(1.2)), lin(2.0 / 3.0)),
        2.5 * P.polymul(P.polymul(t2, lin(1.0)), lin(0.6)),
    ]
    out = np.zeros((7, 4))
    for j, q in enumerate(polys):
        q = np.asarray(q, dtype=float)
        out[j, : len(q) - 1] = q[1:5]  # b_j(0) = 0: no constant term
    return out


TSIT5 = ButcherTableau(
    name="tsit5",
    A=_array(_TS_A),
    b=_array(_TS_B),
    c=_array(_TS_C),
    order=5,
    e=_array([bj - bh for bj, bh in zip(_TS_B, _TS_BHAT)]),
    error_order=4,
    P=_array(_tsit5_P()),
    dense_order=4,
    fsal=True,
    description="adaptive Tsitouras 5(4), FSAL, 4th-order dense output",
)

# ------------------------------------------------------------ Bogacki–Shampine 3(2)
_BS_A = _lower([[], [Fr(1, 2)], [0, Fr(3, 4)], [Fr(2, 9), Fr(1, 3), Fr(4, 9)]])
_BS_B = [Fr(2, 9), Fr(1, 3), Fr(4, 9), 0]
_BS_BHAT = [Fr(7, 24), Fr(1, 4), Fr(1, 3), Fr(1, 8)]

BS3 = ButcherTableau(
    name="bs3",
    A=_array(_BS_A),
    b=_array(_BS_B),
    c=_array([0, Fr(1, 2), Fr(3, 4), 1]),
    order=3,
    e=_array([bj - bh for bj, bh in zip(_BS_B, _BS_BHAT)]),
    error_order=2,
    # cubic Hermite interpolant through y_n, y_{n+1} with slopes k1 and k4 = f(y_{n+1})
    P=_array([[1, Fr(-4, 3), Fr(5, 9)], [0, 1, Fr(-2, 3)], [0, Fr(4, 3), Fr(-8, 9)], [0, -1, 1]]),
    dense_order=3,
    fsal=True,
    description="adaptive Bogacki–Shampine 3(2) (scipy's RK23), FSAL, cubic Hermite dense output",
)

#: every method of odeflow.solve, in the order the error messages list them
TABLEAUX = {t.name: t for t in (EULER, RK4, DOPRI5, TSIT5, BS3)}
