"""Order parameters of the two-layer teacher–student model: the state type shared by
``theory`` (derivation), ``odeflow`` (integration) and ``simulations`` (measurement).

Notation follows docs/theory.md §3 and §5::

    Q_kl = w_k·w_l / N        R_km = w_k·w*_m / N        T_mn = w*_m·w*_n / N
    v_k, v*_m                 (second-layer weights of student and teacher)
    b_k = w_k·F / √N          c_m = w*_m·F / √N          sigma_F2 = F·F / N
    F_norm2 = F·F = N sigma_F2   (exact PEPITA with presynaptic x̃, docs/quadrature.md)

``b`` is the feedback each hidden unit receives: a fixed random vector for FA, the
adaptive overlap ``W F / √N`` for AFA (then ``c`` and ``sigma_F2`` are needed too).

This module depends on numpy only, so that simulations can use it without sympy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["OrderParameters", "Layout", "FIELDS", "LIST_FIELDS", "INIT_FIELDS", "record_alphas"]

#: names of the array fields of :class:`OrderParameters`, in a fixed order
FIELDS = ("Q", "R", "T", "v", "v_star", "b", "c", "sigma_F2", "F_norm2", "u")
#: the list fields of a deep student (docs/deep.md): read-out matrices W, FA's feedback
#: matrices B and DFA's vectors d; stored as W0, W1, … in an .npz file
LIST_FIELDS = ("W", "B", "d")
#: every key an initial state (a JSON config's "init") may have
INIT_FIELDS = FIELDS + LIST_FIELDS

# Relative tolerance for symmetry and positive semi-definiteness checks. Measured order
# parameters carry round-off of order 1e-15 relative; integrated ones a little more.
_SYM_RTOL = 1e-8
_PSD_RTOL = 1e-9


def _as_float_array(name, x, ndim):
    try:
        a = np.array(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {x!r}") from exc
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return a


@dataclass(frozen=True, eq=False)
class OrderParameters:
    """The macroscopic state of a student (K hidden units) and a teacher (M hidden units).

    Parameters
    ----------
    Q : (K, K) array
        Student–student overlaps ``Q_kl = w_k·w_l/N``; symmetric.
    R : (K, M) array
        Student–teacher overlaps ``R_km = w_k·w*_m/N``.
    T : (M, M) array
        Teacher–teacher overlaps ``T_mn = w*_m·w*_n/N``; constant in time.
    v : (K,) array
        Student second-layer weights.
    v_star : (M,) array
        Teacher second-layer weights.
    b : (K,) array, optional
        Feedback weights: fixed for FA, ``b_k = w_k·F/√N`` for AFA.
    c : (M,) array, optional
        ``c_m = w*_m·F/√N`` (AFA only; constant).
    sigma_F2 : float, optional
        ``F·F/N`` (AFA only; constant).
    F_norm2 : float, optional
        ``‖F‖² = F·F = N sigma_F2`` (exact PEPITA with presynaptic ``x̃``: a finite-N
        parameter of its own, docs/quadrature.md; constant).
    u : (K,) array, optional
        Forward-Forward label weights (docs/ff-theory.md): unit k sees ``λ_k + u_k ℓ`` for
        label ℓ = ±1. An FF state has no second layer; ``v`` is then unused (zeros).
    W : list of arrays, optional
        Deep student (docs/deep.md): the read-out matrices, ``W[0]`` of shape K₂×K₁ (maps
        h₁ to a₂), ``W[i]`` of shape K_{i+2}×K_{i+1}; then ``v`` has the last hidden width
        and ``b`` has length K₁ (PEPITA, AFA) or the last hidden width (FA). ``W = []``
        is the two-layer network as a deep state.
    B : list of arrays, optional
        Deep FA's fixed feedback matrices, ``B[i]`` of the shape of ``W[i]ᵀ``.
    d : list of arrays, optional
        Deep DFA's fixed feedback vectors, one per hidden layer (``d[0]`` of length K₁).

    Raises
    ------
    ValueError
        On wrong shapes, non-finite entries, asymmetric ``Q`` or ``T``, or a field
        covariance ``[[Q, R], [Rᵀ, T]]`` that is not positive semi-definite.
    """

    Q: np.ndarray
    R: np.ndarray
    T: np.ndarray
    v: np.ndarray
    v_star: np.ndarray
    b: np.ndarray | None = None
    c: np.ndarray | None = None
    sigma_F2: float | None = None
    F_norm2: float | None = None
    u: np.ndarray | None = None
    W: tuple | None = None
    B: tuple | None = None
    d: tuple | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        Q = _as_float_array("Q", self.Q, 2)
        R = _as_float_array("R", self.R, 2)
        T = _as_float_array("T", self.T, 2)
        v = _as_float_array("v", self.v, 1)
        v_star = _as_float_array("v_star", self.v_star, 1)
        K, M = Q.shape[0], T.shape[0]
        W, B, d, widths = _deep_fields(self.W, self.B, self.d, K)
        Kl = widths[-1]
        if K < 1:
            raise ValueError(
                f"K (number of student hidden units) must be >= 1, got Q of shape {Q.shape}"
            )
        if M < 1:
            raise ValueError(
                f"M (number of teacher hidden units) must be >= 1, got T of shape {T.shape}"
            )
        expected = {"Q": (K, K), "R": (K, M), "T": (M, M), "v": (Kl,), "v_star": (M,)}
        for name, arr in zip(("Q", "R", "T", "v", "v_star"), (Q, R, T, v, v_star)):
            if arr.shape != expected[name]:
                deep = "" if W is None else f", widths {widths} (from Q and W)"
                raise ValueError(
                    f"{name} must have shape {expected[name]} for K={K}, M={M} "
                    f"(taken from Q {Q.shape} and T {T.shape}{deep}), got {arr.shape}"
                )
        for name, S in (("Q", Q), ("T", T)):
            scale = max(1.0, float(np.max(np.abs(S))))
            if np.max(np.abs(S - S.T)) > _SYM_RTOL * scale:
                raise ValueError(
                    f"{name} must be symmetric; max |{name} - {name}ᵀ| = "
                    f"{np.max(np.abs(S - S.T)):.3g}"
                )
        Q, T = 0.5 * (Q + Q.T), 0.5 * (T + T.T)
        C = np.block([[Q, R], [R.T, T]])
        eig = np.linalg.eigvalsh(C)
        if eig[0] < -_PSD_RTOL * max(1.0, eig[-1]):
            raise ValueError(
                "the field covariance [[Q, R], [Rᵀ, T]] must be positive semi-definite "
                f"(it is the covariance of the local fields λ, ν); smallest eigenvalue "
                f"{eig[0]:.3g}. Check that |R_km| <= sqrt(Q_kk T_mm) and Q, T are Gram matrices."
            )
        b = None if self.b is None else _as_float_array("b", self.b, 1)
        c = None if self.c is None else _as_float_array("c", self.c, 1)
        if b is not None and b.shape != (K,) and not (W is not None and b.shape == (Kl,)):
            allowed = f"({K},)" if W is None else f"({K},) (PEPITA, AFA) or ({Kl},) (FA)"
            raise ValueError(f"b must have shape {allowed}, got {b.shape}")
        if c is not None and c.shape != (M,):
            raise ValueError(f"c must have shape ({M},), got {c.shape}")
        u = None if self.u is None else _as_float_array("u", self.u, 1)
        if u is not None and u.shape != (K,):
            raise ValueError(f"u must have shape ({K},), got {u.shape}")
        s2, f2 = self.sigma_F2, self.F_norm2
        if s2 is not None:
            s2 = float(np.asarray(s2, dtype=float))
            if not np.isfinite(s2) or s2 < 0:
                raise ValueError(f"sigma_F2 must be a finite non-negative number, got {s2}")
        if f2 is not None:
            f2 = float(np.asarray(f2, dtype=float))
            if not np.isfinite(f2) or f2 < 0:
                raise ValueError(f"F_norm2 must be a finite non-negative number, got {f2}")
        for name, val in (
            ("Q", Q),
            ("R", R),
            ("T", T),
            ("v", v),
            ("v_star", v_star),
            ("b", b),
            ("c", c),
            ("sigma_F2", s2),
            ("F_norm2", f2),
            ("u", u),
            ("W", W),
            ("B", B),
            ("d", d),
        ):
            set_(self, name, val)

    # ----------------------------------------------------------------------------- sizes
    @property
    def K(self) -> int:
        """Number of student hidden units."""
        return self.Q.shape[0]

    @property
    def M(self) -> int:
        """Number of teacher hidden units."""
        return self.T.shape[0]

    @property
    def widths(self) -> list | None:
        """Hidden widths ``[K1, K2, …]`` of a deep state (None without ``W``)."""
        if self.W is None:
            return None
        return [self.K] + [int(w.shape[0]) for w in self.W]

    @property
    def has_adaptive_feedback(self) -> bool:
        """True when ``b``, ``c`` and ``sigma_F2`` are all present (what AFA needs)."""
        return self.b is not None and self.c is not None and self.sigma_F2 is not None

    def field_covariance(self) -> np.ndarray:
        """The (K+M)×(K+M) covariance ``[[Q, R], [Rᵀ, T]]`` of the fields ``(λ, ν)``."""
        return np.block([[self.Q, self.R], [self.R.T, self.T]])

    def replace(self, **changes) -> OrderParameters:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def require(self, *names: str, why: str = "") -> None:
        """Raise ``ValueError`` if any of the optional fields ``names`` is missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(
                f"order parameters {', '.join(missing)} are required{why}; "
                "give them to OrderParameters(...) or from_weights(..., F=...)"
            )

    # ---------------------------------------------------------------------- construction
    @classmethod
    def from_weights(cls, w, w_star, v, v_star, F=None, b=None) -> OrderParameters:
        """Measure the order parameters of concrete weights (docs/theory.md §6).

        Parameters
        ----------
        w : (K, N) array
            Student first-layer weights.
        w_star : (M, N) array
            Teacher first-layer weights.
        v, v_star : (K,), (M,) arrays
            Second-layer weights.
        F : (N,) array, optional
            Adaptive feedback vector; gives ``b = w F/√N``, ``c = w* F/√N``,
            ``sigma_F2 = F·F/N`` and ``F_norm2 = F·F``.
        b : (K,) array, optional
            Fixed feedback (FA). Mutually exclusive with ``F``.
        """
        w = _as_float_array("w", w, 2)
        w_star = _as_float_array("w_star", w_star, 2)
        if w.shape[1] != w_star.shape[1]:
            raise ValueError(
                f"w and w_star must have the same input dimension N, got "
                f"{w.shape} and {w_star.shape}"
            )
        N = w.shape[1]
        kw = {}
        if F is not None and b is not None:
            raise ValueError("give either F (adaptive feedback) or b (fixed feedback), not both")
        if F is not None:
            F = _as_float_array("F", F, 1)
            if F.shape != (N,):
                raise ValueError(f"F must have shape ({N},), got {F.shape}")
            kw = dict(
                b=w @ F / np.sqrt(N),
                c=w_star @ F / np.sqrt(N),
                sigma_F2=F @ F / N,
                F_norm2=float(F @ F),
            )
        elif b is not None:
            kw = dict(b=b)
        return cls(
            Q=w @ w.T / N, R=w @ w_star.T / N, T=w_star @ w_star.T / N, v=v, v_star=v_star, **kw
        )

    @classmethod
    def from_spec(
        cls,
        K: int,
        M: int,
        *,
        Q=1.0,
        R=0.0,
        T=1.0,
        v=0.0,
        v_star=1.0,
        b=None,
        c=None,
        sigma_F2=None,
        F_norm2=None,
    ) -> OrderParameters:
        """Build a state from simple specifications (docs/theory.md §6).

        Scalars are broadcast: ``Q=q`` means ``q·I``, ``T=t`` means ``t·I``, ``R=r`` means
        all entries ``r``, ``v=a`` means all entries ``a``; arrays are taken as given.
        E.g. ``from_spec(2, 2)`` is ``Q = T = I``, ``R = 0``, ``v = 0``, ``v* = 1``.
        """
        K, M = _check_size("K", K), _check_size("M", M)

        def mat(x, n):
            a = np.asarray(x, dtype=float)
            return a * np.eye(n) if a.ndim == 0 else a

        def full(x, shape):
            a = np.asarray(x, dtype=float)
            return np.full(shape, float(a)) if a.ndim == 0 else a

        return cls(
            Q=mat(Q, K),
            R=full(R, (K, M)),
            T=mat(T, M),
            v=full(v, (K,)),
            v_star=full(v_star, (M,)),
            b=None if b is None else full(b, (K,)),
            c=None if c is None else full(c, (M,)),
            sigma_F2=sigma_F2,
            F_norm2=F_norm2,
        )

    # --------------------------------------------------------------------- serialisation
    def to_dict(self, prefix: str = "") -> dict:
        """Arrays keyed by field name (with ``prefix``); absent optional fields omitted."""
        out = {}
        for name in FIELDS:
            val = getattr(self, name)
            if val is not None:
                out[prefix + name] = np.array(val)
        for name in LIST_FIELDS:  # W0, W1, … (and the number of them, for W = [])
            val = getattr(self, name)
            if val is not None:
                out[prefix + name + "_count"] = np.array(len(val))
                for i, a in enumerate(val):
                    out[f"{prefix}{name}{i}"] = np.array(a)
        return out

    @classmethod
    def from_dict(cls, d: Mapping, prefix: str = "") -> OrderParameters:
        """Inverse of :meth:`to_dict`; also accepts JSON-style nested lists."""
        required = ("Q", "R", "T", "v", "v_star")
        if prefix + "u" in d and prefix + "v" not in d:  # Forward-Forward: no 2nd layer
            d = {**d, prefix + "v": np.zeros(np.shape(d[prefix + "u"]))}
        missing = [prefix + n for n in required if prefix + n not in d]
        if missing:
            raise ValueError(
                f"initial state is missing {', '.join(missing)} "
                f"(needs {', '.join(prefix + n for n in required)}, optionally "
                f"{prefix}b, {prefix}c, {prefix}sigma_F2)"
            )
        kw = {n: np.asarray(d[prefix + n]) for n in FIELDS if prefix + n in d}
        for name in ("sigma_F2", "F_norm2"):
            if name in kw:
                kw[name] = float(kw[name])
        for name in LIST_FIELDS:
            if prefix + name in d:  # a JSON list of arrays
                kw[name] = list(d[prefix + name])
            elif prefix + name + "_count" in d:  # W0, W1, … of an .npz file
                n = int(np.asarray(d[prefix + name + "_count"]))
                kw[name] = [np.asarray(d[f"{prefix}{name}{i}"]) for i in range(n)]
        return cls(**kw)

    def save(self, path) -> None:
        """Write to an ``.npz`` file (the form ``odeflow solve --init-from`` reads)."""
        np.savez(path, **self.to_dict())

    @classmethod
    def load(cls, path, prefix: str | None = None) -> OrderParameters:
        """Read from an ``.npz`` file written by :meth:`save` or by a simulation run.

        Simulation outputs store the initial state with prefix ``init_``; that prefix is
        tried automatically when ``prefix`` is None.
        """
        with np.load(path) as z:
            d = dict(z)
        if prefix is None:
            prefix = "init_" if "init_Q" in d else ""
        return cls.from_dict(d, prefix)

    def __repr__(self):
        parts = [f"K={self.K}", f"M={self.M}"]
        for n in FIELDS:
            val = getattr(self, n)
            if val is not None:
                parts.append(f"{n}={np.array2string(np.asarray(val), precision=4)}")
        for n in LIST_FIELDS:
            val = getattr(self, n)
            if val is not None:
                shown = ", ".join(np.array2string(a, precision=4) for a in val)
                parts.append(f"{n}=[{shown}]")
        return "OrderParameters(" + ", ".join(parts) + ")"


def _list_of_arrays(name, x, ndim):
    if isinstance(x, np.ndarray) and x.dtype != object:
        x = list(x)  # a stacked array of equal-shape entries
    if not isinstance(x, (list, tuple)):
        raise ValueError(f"{name} must be a list of arrays, got {type(x).__name__}")
    return tuple(_as_float_array(f"{name}[{i}]", a, ndim) for i, a in enumerate(x))


def _deep_fields(W, B, d, K):
    """The deep fields checked against each other: ``(W, B, d, widths)``; ``widths =
    [K]`` without W. Errors name the key, the expected and the given shape."""
    if W is None:
        for name, val in (("B", B), ("d", d)):
            if val is not None:
                raise ValueError(
                    f"{name} (deep FA/DFA feedback) needs the read-out matrices W "
                    "(give W = [] for a two-layer network)"
                )
        return None, None, None, [K]
    W = _list_of_arrays("W", W, 2)
    widths = [K]
    for i, w in enumerate(W):
        if w.shape[1] != widths[-1]:
            raise ValueError(
                f"W[{i}] must have shape (K{i + 2}, {widths[-1]}) (its columns are the width "
                f"of hidden layer {i + 1}, {widths[-1]}), got {w.shape}"
            )
        if w.shape[0] < 1:
            raise ValueError(f"W[{i}] must have at least one row, got shape {w.shape}")
        widths.append(int(w.shape[0]))
    if B is not None:
        B = _list_of_arrays("B", B, 2)
        if len(B) != len(W):
            raise ValueError(f"B must have one matrix per W ({len(W)}), got {len(B)}")
        for i, b in enumerate(B):
            if b.shape != (widths[i], widths[i + 1]):
                raise ValueError(
                    f"B[{i}] must have shape {(widths[i], widths[i + 1])} (that of W[{i}]ᵀ), "
                    f"got {b.shape}"
                )
    if d is not None:
        d = _list_of_arrays("d", d, 1)
        if len(d) != len(widths):
            raise ValueError(
                f"d must have one vector per hidden layer ({len(widths)}), got {len(d)}"
            )
        for i, v in enumerate(d):
            if v.shape != (widths[i],):
                raise ValueError(f"d[{i}] must have shape ({widths[i]},), got {v.shape}")
    return W, B, d, widths


def _check_size(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class Layout:
    """Packing of the *dynamic* order parameters into one flat float64 vector ``y``.

    ``y = [Q upper triangle (row-major, K(K+1)/2), R (row-major, K·M), v (K), b (K, only
    if the feedback is adaptive)]``. The constants (``T, v*, c, sigma_F2`` and a fixed
    ``b``) travel separately, in the parameter vector built by ``theory.codegen``.
    """

    K: int
    M: int
    adaptive_b: bool = False

    def __post_init__(self):
        _check_size("K", self.K)
        _check_size("M", self.M)

    @property
    def nQ(self) -> int:
        return self.K * (self.K + 1) // 2

    @property
    def slices(self) -> dict:
        K, M, nQ = self.K, self.M, self.nQ
        s = {"Q": slice(0, nQ), "R": slice(nQ, nQ + K * M), "v": slice(nQ + K * M, nQ + K * M + K)}
        if self.adaptive_b:
            s["b"] = slice(nQ + K * M + K, nQ + K * M + 2 * K)
        return s

    @property
    def n(self) -> int:
        """Length of the flat state vector."""
        return self.nQ + self.K * self.M + self.K * (2 if self.adaptive_b else 1)

    def pack(self, state: OrderParameters) -> np.ndarray:
        """Flat vector of the dynamic order parameters of ``state``."""
        if (state.K, state.M) != (self.K, self.M):
            raise ValueError(
                f"state has K={state.K}, M={state.M} but the system was built "
                f"for K={self.K}, M={self.M}"
            )
        iu = np.triu_indices(self.K)
        parts = [state.Q[iu], state.R.ravel(), state.v]
        if self.adaptive_b:
            state.require("b", why=" for adaptive feedback (AFA)")
            parts.append(state.b)
        return np.concatenate(parts).astype(float)

    def unpack(self, y: np.ndarray) -> dict:
        """Arrays ``Q, R, v`` (and ``b``) from a flat vector, or from a stack ``(..., n)``."""
        y = np.asarray(y, dtype=float)
        if y.shape[-1] != self.n:
            raise ValueError(f"flat state must have last dimension {self.n}, got {y.shape}")
        K, M = self.K, self.M
        s = self.slices
        lead = y.shape[:-1]
        Q = np.empty(lead + (K, K))
        iu = np.triu_indices(K)
        Q[..., iu[0], iu[1]] = y[..., s["Q"]]
        Q[..., iu[1], iu[0]] = y[..., s["Q"]]
        out = {"Q": Q, "R": y[..., s["R"]].reshape(lead + (K, M)), "v": y[..., s["v"]].copy()}
        if self.adaptive_b:
            out["b"] = y[..., s["b"]].copy()
        return out

    def state(self, y: np.ndarray, constants: OrderParameters) -> OrderParameters:
        """An :class:`OrderParameters` from a flat vector plus the constant fields."""
        return constants.replace(**self.unpack(y))


def record_alphas(record, alpha_max: float) -> np.ndarray:
    """The times α at which a trajectory is recorded, from a config's ``record`` entry.

    Shared by the ODE solver and the simulations so both record on the same grid.

    ``record`` is one of
      - ``{"every": dα}``: ``0, dα, 2dα, …, alpha_max``;
      - ``{"log": n, "min": α_min}``: 0 then ``n`` log-spaced values from ``α_min``
        (default ``1e-2``) to ``alpha_max``;
      - ``{"alpha": [α_0, α_1, …]}``: explicit, increasing, within ``[0, alpha_max]``;
      - a number ``dα``: shorthand for ``{"every": dα}``.
    """
    alpha_max = float(alpha_max)
    if not np.isfinite(alpha_max) or alpha_max <= 0:
        raise ValueError(f"alpha_max must be a positive number, got {alpha_max}")
    if isinstance(record, (int, float)) and not isinstance(record, bool):
        record = {"every": record}
    if not isinstance(record, Mapping) or len(set(record) & {"every", "log", "alpha"}) != 1:
        raise ValueError(
            "record must be {'every': dα}, {'log': n, 'min': α_min} or "
            f"{{'alpha': [...]}}, got {record!r}"
        )
    if "every" in record:
        d = float(record["every"])
        if not d > 0:
            raise ValueError(f"record['every'] must be positive, got {d}")
        n = int(np.floor(alpha_max / d + 1e-9))
        # k·dα as the float nearest the decimal k × (dα as written): 3 × 0.1 is 0.3, not
        # 0.30000000000000004 (which would show in every output file)
        from fractions import Fraction

        fr = Fraction(repr(d))
        if fr.denominator < 2**40 and (n + 1) * abs(fr.numerator) < 2**53:
            a = np.arange(n + 1, dtype=float) * fr.numerator / fr.denominator
        else:
            a = d * np.arange(n + 1)
        if alpha_max - a[-1] > 1e-9 * alpha_max:
            a = np.append(a, alpha_max)
        return a
    if "log" in record:
        n = int(record["log"])
        lo = float(record.get("min", 1e-2))
        if n < 2 or not 0 < lo < alpha_max:
            raise ValueError(
                f"record['log'] needs n >= 2 and 0 < min < alpha_max, got n={n}, min={lo}"
            )
        return np.concatenate([[0.0], np.geomspace(lo, alpha_max, n)])
    a = np.asarray(record["alpha"], dtype=float).ravel()
    if a.size == 0 or np.any(np.diff(a) <= 0) or a[0] < 0 or a[-1] > alpha_max * (1 + 1e-12):
        raise ValueError(
            f"record['alpha'] must be a non-empty increasing list within [0, alpha_max={alpha_max}]"
        )
    return a
