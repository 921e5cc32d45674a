"""Deep fully connected networks trained by BP, FA, DFA and PEPITA (four variants).

Model (docs/guide/simulations.md): no biases, ReLU hidden layers, softmax output, one-hot
targets ``y*``, error ``e = h_L − y*`` (the cross-entropy gradient at the logits). Layer
sizes ``d_0, …, d_L``; weights ``W_ℓ ∈ R^{d_ℓ × d_{ℓ−1}}``, He-uniform
``U(±√(6/d_{ℓ−1}))``. Forward pass ``a_ℓ = W_ℓ h_{ℓ−1}``, ``h_ℓ = relu(a_ℓ) ⊙ m_ℓ/(1−p)``
(inverted dropout with mask ``m_ℓ``, optionally divided by its RMS, "activation
normalisation"), ``h_L = softmax(a_L)``.

Every rule produces ``ΔW_ℓ`` (batch means) and the same optimiser applies it: SGD with
momentum ``μ`` and weight decay ``λ`` (PyTorch convention)::

    v_ℓ ← μ v_ℓ + ΔW_ℓ + λ W_ℓ,      W_ℓ ← W_ℓ − η v_ℓ,      η ← 0.1 η at lr_decay_epochs

Rules (``δ_ℓ`` is the error signal at layer ℓ, ``D_ℓ = diag(relu'(a_ℓ) m_ℓ/(1−p))``):

- ``bp``:  ``δ_L = e``, ``δ_ℓ = D_ℓ W_{ℓ+1}ᵀ δ_{ℓ+1}``, ``ΔW_ℓ = δ_ℓ ⊗ h_{ℓ−1}``
- ``fa``:  as bp with a fixed random ``B_{ℓ+1}`` (shape of ``W_{ℓ+1}``) for ``W_{ℓ+1}``
- ``dfa``: ``δ_ℓ = D_ℓ B_ℓ e``, ``B_ℓ ∈ R^{d_ℓ × d_L}`` fixed random
- PEPITA: a first pass on ``x`` gives ``e``; a second pass on the modulated input
  ``x̃ = x − F e`` (``F ∈ R^{d_0 × d_L}``, uniform in ``±F_scale·√(6/d_0)``) gives ``h̃_ℓ``,
  with the *same* dropout masks.

  * ``pepita`` (presynaptic modulated): ``ΔW_1 = (h_1 − h̃_1) ⊗ x̃``,
    ``ΔW_ℓ = (h_ℓ − h̃_ℓ) ⊗ h̃_{ℓ−1}``, ``ΔW_L = e ⊗ h̃_{L−1}``
  * ``pepita-forward``: the same with presynaptic ``x``, ``h_{ℓ−1}``
  * ``pepita-hebbian``: ``ΔW_ℓ = h_ℓ ⊗ h_{ℓ−1} − h̃_ℓ ⊗ h̃_{ℓ−1}``,
    ``ΔW_L = h_L ⊗ h_{L−1} − y* ⊗ h̃_{L−1}``
  * ``pepita-time-local``: the Hebbian half ``h_ℓ ⊗ h_{ℓ−1}`` (and the weight decay and
    momentum carry-over) is applied right after the first pass, so the second pass already
    sees it; the anti-Hebbian half ``−h̃_ℓ ⊗ h̃_{ℓ−1}`` after the second pass. The velocity is
    updated once per step with the sum, so with no change between the passes the step is
    exactly the pepita-hebbian step. Caveat (measured, and tested): the Hebbian step is a
    small O(|F e|) difference of two large terms, while applying the first half shifts the
    second pass by O(η ‖x‖²); TL tracks pepita-hebbian only when η ‖x‖² ≪ |F e|. On MNIST
    (‖x‖² ≈ 100) it diverges from it at η = 0.01 (≈ 25 % after 5 epochs) and learns, slowly,
    at η = 0.001 (≈ 53 % after 5 epochs, 1×256).

To first order in ``F``, ``h_1 − h̃_1 = D_1 W_1 F e``: PEPITA's first layer is adaptive
feedback alignment with feedback ``W_1 F`` (tested in ``tests/simulations/test_deep.py``).

Weight mirroring (PEPITA rules, ``mirror`` option): ``F = B_1 B_2 … B_L`` with
``B_ℓ ∈ R^{d_{ℓ−1} × d_ℓ}``; each mirror step draws noise ``ξ ~ N(0, σ² I)`` at the input of
layer ℓ and moves ``B_ℓ ← (1 − κ) B_ℓ + η_m (‖B_ℓ‖/‖W_ℓ‖) ⟨ξ (W_ℓ ξ)ᵀ⟩/σ²``, whose
mean is ``η_m (‖B_ℓ‖/‖W_ℓ‖) W_ℓᵀ``, so ``B_ℓ`` turns towards ``W_ℓᵀ`` (forgetting its past
over about ``1/η_m`` steps, which averages the noise) and ``F`` towards
``(W_L … W_1)ᵀ``. After each
mirror step all factors are rescaled by a common factor so that ``std(F)`` keeps its
initial value (only the direction of ``F`` is learnt). ``pre_epochs`` epochs' worth of mirror
steps run before training starts, then ``steps`` mirror steps follow every training batch.

Observables per epoch: train/test accuracy and cross-entropy, and for PEPITA rules the angle
between ``F`` and ``(W_L … W_1)ᵀ`` (degrees, Frobenius inner product).
:func:`slowness_fit` fits ``a(t) = a_max t / (s + t)`` to a test-accuracy curve.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "RULES",
    "PEPITA_RULES",
    "MirrorConfig",
    "DeepConfig",
    "Network",
    "TrainResult",
    "init_network",
    "forward",
    "train_deep",
    "feedback_angle",
    "slowness_fit",
    "pepita_updates",
    "evaluate",
    "SlownessFit",
]

PEPITA_RULES = ("pepita", "pepita-forward", "pepita-hebbian", "pepita-time-local")


def _openblas():
    """ctypes handle on the OpenBLAS that numpy is linked to, or None."""
    global _OPENBLAS
    if _OPENBLAS is not False:
        return _OPENBLAS
    _OPENBLAS = None
    try:
        import ctypes
        import glob
        import os

        libdir = os.path.dirname(np.__file__) + ".libs"
        for path in glob.glob(os.path.join(libdir, "*openblas*")):
            lib = ctypes.CDLL(path)
            for pre in ("scipy_openblas", "openblas"):
                for suf in ("64_", "_64_", ""):
                    try:
                        get = getattr(lib, f"{pre}_get_num_threads{suf}")
                        set_ = getattr(lib, f"{pre}_set_num_threads{suf}")
                    except AttributeError:
                        continue
                    get.restype = ctypes.c_int
                    set_.argtypes = [ctypes.c_int]
                    _OPENBLAS = (get, set_)
                    return _OPENBLAS
    except OSError:
        pass
    return _OPENBLAS


_OPENBLAS = False


@contextlib.contextmanager
def blas_threads(n):
    """Run the block with ``n`` OpenBLAS threads (no-op if ``n`` is None or numpy's BLAS is
    not a detectable OpenBLAS).

    The layers here are small (batch 64): a second BLAS thread gains little, and on a
    machine whose cores are shared with other jobs OpenBLAS's spinning threads can make a
    run ten times slower, so training defaults to one thread (``$ODEFLOW_BLAS_THREADS``
    overrides)."""
    h = _openblas() if n is not None else None
    if h is None:
        yield
        return
    old = h[0]()
    h[1](int(n))
    try:
        yield
    finally:
        h[1](old)


def default_blas_threads():
    """``$ODEFLOW_BLAS_THREADS`` if set (0 = leave BLAS alone), else 1."""
    v = os.environ.get("ODEFLOW_BLAS_THREADS")
    if v is None:
        return 1
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"ODEFLOW_BLAS_THREADS must be an integer, not {v!r}") from None
    return None if n <= 0 else n


RULES = ("bp", "fa", "dfa") + PEPITA_RULES


@dataclass
class MirrorConfig:
    """Weight-mirroring options (see module docstring).

    pre_epochs : epochs' worth of mirror steps before training
    steps : mirror steps after every training batch (0 = mirror only before training)
    lr : mirror learning rate η_m (fraction of B renewed per step)
    decay : weight decay κ of the factors per mirror step
    noise_std : σ of the mirror noise
    batch : noise samples per mirror step
    """

    pre_epochs: int = 2
    steps: int = 1
    lr: float = 0.01
    decay: float = 0.0
    noise_std: float = 1.0
    batch: int = 64

    def __post_init__(self):
        if self.pre_epochs < 0 or self.steps < 0 or self.batch < 1:
            raise ValueError("mirror: pre_epochs and steps must be >= 0 and batch >= 1")
        if not (self.lr > 0 and 0 <= self.decay < 1 and self.noise_std > 0):
            raise ValueError("mirror: need lr > 0, 0 <= decay < 1, noise_std > 0")


@dataclass
class DeepConfig:
    """Training options of :func:`train_deep`.

    hidden : hidden-layer widths, e.g. ``[1024]`` (input/output widths come from the data)
    rule : one of :data:`RULES`
    epochs, lr, momentum, batch, weight_decay : SGD options
    lr_decay_epochs : epochs (0-based, counted before the epoch starts) at which lr ×= lr_decay
    dropout : dropout probability p of hidden units (same mask in both PEPITA passes)
    F_scale : PEPITA feedback scale (F uniform in ±F_scale·√(6/d_0))
    normalize : divide hidden activities by their per-sample RMS (treated as a constant
        when computing updates)
    mirror : :class:`MirrorConfig` or None (PEPITA rules only)
    seed : seed of initial weights, F, dropout masks and batch order
    eval_batch : examples per evaluation matmul (memory only)
    local_fields : local receptive fields of the hidden layers (see
        :mod:`simulations.local_fields`; the FA feedback ``B_ℓ`` gets the mask of ``W_ℓ``),
        None = all dense
    freeze_hidden : train the read-out ``W_L`` only, with the rule's own read-out update,
        on the hidden layers as initialised (the random-feature baseline of the MNIST
        table: same initialisation, dropout and schedule, hidden weights bit-identical
        before and after)
    """

    hidden: list = field(default_factory=lambda: [256])
    rule: str = "pepita"
    epochs: int = 5
    lr: float = 0.01
    momentum: float = 0.9
    batch: int = 64
    dropout: float = 0.1
    weight_decay: float = 0.0
    lr_decay_epochs: tuple = ()
    lr_decay: float = 0.1
    F_scale: float = 0.05
    normalize: bool = False
    mirror: MirrorConfig | None = None
    seed: int = 0
    eval_batch: int = 4096
    local_fields: list | None = None
    freeze_hidden: bool = False

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; allowed: {', '.join(RULES)}")
        self.hidden = [int(h) for h in self.hidden]
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive integers, got {self.hidden}")
        if self.epochs < 0 or self.batch < 1:
            raise ValueError("epochs must be >= 0 and batch >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.lr > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0):
            raise ValueError("need lr > 0, 0 <= momentum < 1, weight_decay >= 0")
        if isinstance(self.mirror, dict):
            self.mirror = MirrorConfig(**self.mirror)
        if self.mirror is not None and self.rule not in PEPITA_RULES:
            raise ValueError(f"mirror applies to PEPITA rules ({', '.join(PEPITA_RULES)}) only")
        self.lr_decay_epochs = tuple(int(e) for e in self.lr_decay_epochs)
        from .local_fields import parse_local_fields

        parse_local_fields(self.local_fields, len(self.hidden))


@dataclass
class Network:
    """Weights ``W[ℓ]`` (d_ℓ × d_{ℓ−1}), PEPITA feedback ``F`` (d_0 × d_L), fixed FA/DFA
    feedback ``B`` and the mirror factors ``mirror_factors`` (``F`` = their product)."""

    W: list
    F: np.ndarray
    B: list
    mirror_factors: list | None = None
    F_std: float = 0.0  # std(F) at initialisation, kept fixed by mirroring

    @property
    def sizes(self):
        return [self.W[0].shape[1]] + [w.shape[0] for w in self.W]


@dataclass
class SlownessFit:
    """``a(t) = a_max t / (s + t)``; ``s`` is the epoch at which half of a_max is reached."""

    a_max: float
    s: float
    ok: bool


@dataclass
class TrainResult:
    """Per-epoch history of one run (index 0 = before training).

    train_acc, test_acc, train_loss, test_loss : arrays (epochs_done + 1,)
    angle : degrees between F and (W_L…W_1)ᵀ, (epochs_done + 1,) (NaN-free; empty for
        rules without F)
    diverged : True if a non-finite loss stopped the run (histories end there)
    network : final :class:`Network`
    """

    config: DeepConfig
    train_acc: np.ndarray
    test_acc: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    angle: np.ndarray
    diverged: bool
    network: Network
    epochs_done: int


def _he_uniform(rng, d_out, d_in, dtype):
    lim = math.sqrt(6.0 / d_in)
    return rng.uniform(-lim, lim, size=(d_out, d_in)).astype(dtype)


def init_network(
    sizes, rule="pepita", F_scale=0.05, seed=0, mirror=None, dtype=np.float32
) -> Network:
    """He-uniform weights for layer sizes ``[d_0, …, d_L]``, PEPITA ``F``, FA/DFA ``B``."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list >= 2 positive widths, got {sizes}")
    rng = np.random.default_rng(seed)
    W = [_he_uniform(rng, sizes[i + 1], sizes[i], dtype) for i in range(len(sizes) - 1)]
    lim = F_scale * math.sqrt(6.0 / sizes[0])
    F = rng.uniform(-lim, lim, size=(sizes[0], sizes[-1])).astype(dtype)
    if rule == "fa":
        B = [_he_uniform(rng, w.shape[0], w.shape[1], dtype) for w in W]
    elif rule == "dfa":
        B = [_he_uniform(rng, sizes[-1], d, dtype).T.copy() for d in sizes[1:-1]]
    else:
        B = []
    factors = None
    if mirror is not None:
        factors = [
            _he_uniform(rng, sizes[i + 1], sizes[i], dtype).T.copy() for i in range(len(sizes) - 1)
        ]
        _rescale_factors(factors, float(F.std()))
        F = _product(factors)
    return Network(W, F, B, factors, float(F.std()))


def _product(factors):
    P = factors[0]
    for B in factors[1:]:
        P = P @ B
    return P


def _rescale_factors(factors, target_std):
    s = float(_product(factors).std())
    if s > 0 and np.isfinite(s):
        c = (target_std / s) ** (1.0 / len(factors))
        for B in factors:
            B *= c


def _softmax(a):
    a = a - a.max(axis=1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=1, keepdims=True)
    return a


def forward(net: Network, x, masks=None, normalize=False):
    """Activities ``[h_0 = x, h_1, …, h_L]`` and pre-activations ``[a_1, …, a_L]``.

    ``masks[ℓ]`` (already divided by 1−p) multiplies hidden layer ℓ+1; None = no dropout.
    """
    hs, As = [x], []
    h = x
    L = len(net.W)
    for i, W in enumerate(net.W):
        a = h @ W.T
        As.append(a)
        if i < L - 1:
            h = np.maximum(a, 0)
            if normalize:
                # only the direction of the activity is passed on; the scale is treated as
                # a constant in every rule (no gradient through it)
                h = h / (np.sqrt(np.mean(h * h, axis=1, keepdims=True)) + 1e-6)
            if masks is not None:
                h = h * masks[i]
        else:
            h = _softmax(a.copy())
        hs.append(h)
    return hs, As


def _cross_entropy(p, y):
    return float(-np.mean(np.log(np.maximum(p[np.arange(y.size), y], 1e-30))))


def evaluate(net: Network, x, y, normalize=False, chunk=4096):
    """(accuracy, mean cross-entropy) without dropout."""
    correct, loss = 0, 0.0
    for s in range(0, y.size, chunk):
        p = forward(net, x[s : s + chunk], None, normalize)[0][-1]
        correct += int(np.sum(p.argmax(1) == y[s : s + chunk]))
        loss += _cross_entropy(p, y[s : s + chunk]) * min(chunk, y.size - s)
    return correct / max(y.size, 1), loss / max(y.size, 1)


def feedback_angle(net: Network) -> float:
    """Angle in degrees between ``F`` and ``(W_L … W_1)ᵀ`` (Frobenius inner product)."""
    M = net.W[0].T.astype(np.float64)
    for W in net.W[1:]:
        M = M @ W.T.astype(np.float64)
    F = net.F.astype(np.float64)
    c = float(np.sum(F * M) / (np.linalg.norm(F) * np.linalg.norm(M) + 1e-300))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def pepita_updates(net: Network, x, y_onehot, rule="pepita", masks=None, normalize=False):
    """The PEPITA ``ΔW_ℓ`` (batch means) of ``rule`` for one batch, without applying them.

    For ``pepita-time-local`` this returns the same total as ``pepita-hebbian`` (the split
    application lives in :func:`train_deep`). Returns ``(dW list, e, first-pass hs)``.
    """
    n = x.shape[0]
    hs, _ = forward(net, x, masks, normalize)
    e = hs[-1] - y_onehot
    xt = x - e @ net.F.T
    ht, _ = forward(net, xt, masks, normalize)
    L = len(net.W)
    dW = []
    for l in range(1, L + 1):
        if rule in ("pepita", "pepita-forward"):
            pre = ht[l - 1] if rule == "pepita" else hs[l - 1]
            post = e if l == L else hs[l] - ht[l]
            dW.append(post.T @ pre / n)
        else:  # Hebbian on the first pass minus anti-Hebbian on the modulated pass
            target = y_onehot if l == L else ht[l]
            dW.append((hs[l].T @ hs[l - 1] - target.T @ ht[l - 1]) / n)
    return dW, e, hs


def _bp_like_updates(net, hs, As, e, masks, rule):
    L = len(net.W)
    n = e.shape[0]
    dW = [None] * L
    delta = e
    for l in range(L, 0, -1):
        dW[l - 1] = delta.T @ hs[l - 1] / n
        if l == 1:
            break
        d = (As[l - 2] > 0).astype(e.dtype)
        if masks is not None:
            d *= masks[l - 2]
        if rule == "bp":
            delta = (delta @ net.W[l - 1]) * d
        elif rule == "fa":
            delta = (delta @ net.B[l - 1]) * d
        else:  # dfa: every hidden layer gets e directly through its own B
            delta = (e @ net.B[l - 2].T) * d
    return dW


def _mirror_step(net: Network, m: MirrorConfig, rng):
    for W, B in zip(net.W, net.mirror_factors):
        xi = rng.normal(0.0, m.noise_std, size=(m.batch, W.shape[1])).astype(W.dtype)
        # the increment is measured in units of |B|/|W| so that lr is the fraction of B
        # renewed per step whatever the overall scale that the std(F) rescaling imposes
        step = (xi.T @ (xi @ W.T)) / (m.batch * m.noise_std**2)
        scale = np.linalg.norm(B) / (np.linalg.norm(W) + 1e-30)
        B *= 1.0 - m.decay
        B += (m.lr * scale) * step
    _rescale_factors(net.mirror_factors, net.F_std)
    net.F = _product(net.mirror_factors)


def train_deep(data, config: DeepConfig, progress=None) -> TrainResult:
    """Train one network on ``data``; see :func:`_train_deep` (BLAS threads limited by
    :func:`default_blas_threads`)."""
    # overflow on the way to a divergence is expected and detected below, not warned about
    with blas_threads(default_blas_threads()), np.errstate(over="ignore", invalid="ignore"):
        return _train_deep(data, config, progress)


# Long on purpose: the training loop with its per-rule update branches side by side, which is how
# the rules are compared
def _train_deep(data, config: DeepConfig, progress=None) -> TrainResult:
    """Train one network on ``data`` (a :class:`simulations.data.Dataset`).

    Parameters
    ----------
    progress : callable(epoch, batch, n_batches, info: dict) or None, called after every
        batch (the CLI draws its progress bar with it)

    Returns
    -------
    TrainResult; if the training loss becomes non-finite the run stops there with
    ``diverged=True`` and the histories end at the last finite epoch.
    """
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    x_train = np.asarray(data.x_train, dtype=np.float32)
    y_train = np.asarray(data.y_train)
    x_test = np.asarray(data.x_test, dtype=np.float32)
    y_test = np.asarray(data.y_test)
    n_classes = int(data.n_classes)
    sizes = [x_train.shape[1]] + list(cfg.hidden) + [n_classes]
    net = init_network(sizes, cfg.rule, cfg.F_scale, int(rng.integers(2**63)), cfg.mirror)
    lmasks = _local_masks(net, cfg)
    eye = np.eye(n_classes, dtype=np.float32)
    pepita = cfg.rule in PEPITA_RULES
    vel = [np.zeros_like(W) for W in net.W]
    n = y_train.size
    n_batches = max(1, math.ceil(n / cfg.batch))
    keep = 1.0 - cfg.dropout

    hist = {k: [] for k in ("train_acc", "test_acc", "train_loss", "test_loss", "angle")}

    def record():
        tr = evaluate(net, x_train, y_train, cfg.normalize, cfg.eval_batch)
        te = evaluate(net, x_test, y_test, cfg.normalize, cfg.eval_batch)
        hist["train_acc"].append(tr[0])
        hist["train_loss"].append(tr[1])
        hist["test_acc"].append(te[0])
        hist["test_loss"].append(te[1])
        if pepita:
            hist["angle"].append(feedback_angle(net))
        return np.isfinite(tr[1]) and np.isfinite(te[1])

    if cfg.mirror is not None:
        for _ in range(cfg.mirror.pre_epochs * n_batches):
            _mirror_step(net, cfg.mirror, rng)
    record()
    lr = cfg.lr
    diverged, done = False, 0
    for epoch in range(cfg.epochs):
        if epoch in cfg.lr_decay_epochs:
            lr *= cfg.lr_decay
        order = rng.permutation(n)
        for b in range(n_batches):
            idx = order[b * cfg.batch : (b + 1) * cfg.batch]
            x, y = x_train[idx], eye[y_train[idx]]
            masks = None
            if cfg.dropout > 0:
                masks = [
                    (rng.random((idx.size, h)) < keep).astype(np.float32) / keep for h in cfg.hidden
                ]
            if cfg.rule == "pepita-time-local":
                loss = _time_local_step(net, x, y, masks, cfg, vel, lr, cfg.freeze_hidden)
                for W, M in zip(net.W, lmasks):
                    if M is not None:  # both halves masked = the sum masked
                        W *= M
            else:
                if pepita:
                    dW, e, hs = pepita_updates(net, x, y, cfg.rule, masks, cfg.normalize)
                else:
                    hs, As = forward(net, x, masks, cfg.normalize)
                    e = hs[-1] - y
                    if cfg.freeze_hidden:  # the read-out's delta rule only, no backward pass
                        dW = [None] * (len(net.W) - 1) + [e.T @ hs[-2] / idx.size]
                    else:
                        dW = _bp_like_updates(net, hs, As, e, masks, cfg.rule)
                loss = _cross_entropy(hs[-1], y_train[idx])
                n_frozen = len(net.W) - 1 if cfg.freeze_hidden else 0
                for W, v, g, M in list(zip(net.W, vel, dW, lmasks))[n_frozen:]:
                    if M is not None:
                        g = g * M
                    v *= cfg.momentum
                    v += g
                    if cfg.weight_decay:
                        v += cfg.weight_decay * W
                    W -= lr * v
            if not np.isfinite(loss) or not all(np.isfinite(W).all() for W in net.W[-1:]):
                diverged = True
                break
            if cfg.mirror is not None:
                for _ in range(cfg.mirror.steps):
                    _mirror_step(net, cfg.mirror, rng)
            if progress is not None:
                progress(epoch, b + 1, n_batches, {"loss": loss})
        if diverged or not all(np.isfinite(W).all() for W in net.W):
            diverged = True
            break
        if not record():
            for k in hist:
                if hist[k]:
                    hist[k].pop()
            diverged = True
            break
        done = epoch + 1
        if progress is not None:
            progress(
                epoch,
                n_batches,
                n_batches,
                {
                    "loss": hist["train_loss"][-1],
                    "test_acc": hist["test_acc"][-1],
                    "epoch_done": True,
                },
            )
    out = {k: np.asarray(v, dtype=np.float64) for k, v in hist.items()}
    return TrainResult(
        cfg,
        out["train_acc"],
        out["test_acc"],
        out["train_loss"],
        out["test_loss"],
        out["angle"],
        diverged,
        net,
        done,
    )


def _local_masks(net, cfg):
    """Masks of the local hidden layers (None = dense; the read-out is dense), applied here
    to the initial weights (and to the FA feedback of the same layer)."""
    from .local_fields import build_masks, init_masked

    masks = build_masks(net.sizes[0], cfg.hidden, cfg.local_fields) or []
    masks = masks + [None] * (len(net.W) - len(masks))
    for l, M in enumerate(masks):
        if M is not None:
            init_masked(net.W[l], M)
            if cfg.rule == "fa":
                init_masked(net.B[l], M)
    return masks


def _time_local_step(net, x, y, masks, cfg, vel, lr, freeze_hidden=False):
    """PEPITA-TL: Hebbian half (plus momentum carry-over and decay) after pass 1, the
    anti-Hebbian half after pass 2; see the module docstring. ``freeze_hidden``: only the
    read-out ``W_L`` moves."""
    n = x.shape[0]
    hs, _ = forward(net, x, masks, cfg.normalize)
    e = hs[-1] - y
    loss = _cross_entropy(hs[-1], y.argmax(1))
    hebb = []
    L = len(net.W)
    for l, (W, v) in enumerate(zip(net.W, vel), start=1):
        if freeze_hidden and l < L:
            hebb.append(None)
            continue
        g1 = hs[l].T @ hs[l - 1] / n
        if cfg.weight_decay:
            g1 = g1 + cfg.weight_decay * W
        v *= cfg.momentum
        W -= lr * (v + g1)
        hebb.append(g1)
    xt = x - e @ net.F.T
    ht, _ = forward(net, xt, masks, cfg.normalize)
    for l, (W, v, g1) in enumerate(zip(net.W, vel, hebb), start=1):
        if g1 is None:
            continue
        target = y if l == L else ht[l]
        g2 = -(target.T @ ht[l - 1]) / n
        W -= lr * g2
        v += g1 + g2
    return loss


def slowness_fit(test_acc, epochs=None) -> SlownessFit:
    """Least-squares fit of ``a(t) = a_max t / (s + t)`` to a test-accuracy curve.

    Parameters
    ----------
    test_acc : accuracies at epochs ``t`` (default ``t = 0, 1, …``; the point t = 0 is
        dropped because the model is 0 there whatever the chance level)
    """
    from scipy.optimize import curve_fit

    a = np.asarray(test_acc, dtype=float)
    t = np.arange(a.size, dtype=float) if epochs is None else np.asarray(epochs, float)
    ok = (t > 0) & np.isfinite(a)
    t, a = t[ok], a[ok]
    if t.size < 2:
        raise ValueError("slowness_fit needs at least two points with t > 0")

    def model(t, amax, s):
        return amax * t / (s + t)

    import warnings

    try:
        with warnings.catch_warnings():
            # short curves leave the covariance undetermined; only the estimates are used
            warnings.simplefilter("ignore")
            p, _ = curve_fit(
                model,
                t,
                a,
                p0=(max(a.max(), 1e-3), 1.0),
                bounds=([0.0, 0.0], [np.inf, np.inf]),
                maxfev=10000,
            )
        return SlownessFit(float(p[0]), float(p[1]), True)
    except (RuntimeError, ValueError):
        return SlownessFit(float(a.max()), float("nan"), False)


def config_from_dict(d: dict) -> DeepConfig:
    """A :class:`DeepConfig` from a plain dict, unknown keys rejected."""
    names = {f.name for f in dataclasses.fields(DeepConfig)}
    bad = sorted(set(d) - names)
    if bad:
        raise ValueError(f"unknown DeepConfig keys {bad}; allowed: {sorted(names)}")
    return DeepConfig(**d)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m simulations train CONFIG.json -o OUT.npz")
