"""Recurrent Forward-Forward: a static image treated as a "boring video" (Hinton 2022, §4).

Layers ``0 … K+1``: the image ``h_0 = x`` at the bottom and the label one-hot ``h_{K+1} =
label_scale · onehot(c)`` at the top, both clamped; hidden layers ``k = 1 … K`` (no bias,
ReLU) have bottom-up weights ``W_k`` (``d_k × d_{k−1}``) and top-down weights ``V_k``
(``d_k × d_{k+1}``). With ``n(z) = z / rms(z)`` (length normalisation; the clamped layers are
normalised too, so the label enters as ``√C · onehot``) the dynamics is synchronous and
damped:

    t = 0:   h_k(0) = relu(W_k n(h_{k−1}(0)))                        (one bottom-up pass)
    t ≥ 1:   a_k(t) = W_k n(h_{k−1}(t−1)) + V_k n(h_{k+1}(t−1))
             h_k(t) = ρ h_k(t−1) + (1 − ρ) relu(a_k(t))             (ρ = ``damping``)

Goodness ``G_k(t) = Σ_j h_k(t)_j²``; threshold ``θ_k = theta · d_k``. Each step ``t`` of the
window ``t_1 … t_2`` (``window``, inclusive) is an FF sample of every hidden layer: loss
``−log σ(G⁺_k(t) − θ_k) − log σ(θ_k − G⁻_k(t))`` for the positive run (true label at the top)
and the negative run (a wrong label, uniformly at random). Prediction: run ``steps`` steps
with each label clamped and pick the label whose goodness, summed over hidden layers and over
the window, is highest.

Choices made where the paper's description leaves room
-------------------------------------------------------
- Defaults from the paper: ``steps = 8`` iterations, damping ``ρ = 0.3`` (new state = 0.3
  old + 0.7 computed), goodness window steps 3…5, layers initialised by one bottom-up pass.
- Gradients are local in space *and time*: at step ``t`` the inputs ``h_{k±1}(t−1)`` and the
  old state ``h_k(t−1)`` are constants (no backpropagation through time), so
  ``∂G_k(t)/∂W_k = 2(1−ρ) (h_k(t) ⊙ 1[a_k(t) > 0]) ⊗ n(h_{k−1}(t−1))`` and likewise for
  ``V_k`` with ``n(h_{k+1}(t−1))``. The per-step gradients of the window are averaged and
  one optimiser step (Adam per matrix) is taken per batch. The training window is the test
  window: the network is trained on exactly the goodness it is judged by.
- The goodness is that of the damped state ``h_k(t)`` (what the layer *is* at step t), not
  of the fresh drive ``relu(a_k(t))``.
- Negatives: one wrong label per example, uniformly at random (the paper picks wrong labels
  in proportion to a one-pass prediction; uniform keeps the training label-free of the
  current model and is the choice of :mod:`simulations.forward_forward`).
- Every hidden layer's goodness counts in the prediction (the first layer too: after one
  step it already receives the label from above).
- Initialisation: ``W_k, V_k`` He-uniform for their own fan-in, both divided by √2 so that
  the summed drive has the variance of one dense layer (``G ≈ d_k ≈ θ_k`` at the start).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .forward_forward import (
    _SGD,
    _Adam,
    _normalize,
    _sigmoid,
    _softplus,
    check_head,
    check_training,
    end_epoch,
    head_readout_accuracy,
)

__all__ = [
    "RecurrentFFConfig",
    "RecurrentFFResult",
    "train_ff_recurrent",
    "run_dynamics",
    "goodness_all_labels",
    "predict_recurrent",
    "recurrent_config_from_dict",
]


@dataclass
class RecurrentFFConfig:
    """Options of :func:`train_ff_recurrent` (see the module docstring).

    hidden : hidden widths (K ≥ 1 layers)
    steps : iterations T after the bottom-up pass (≥ 2)
    damping : ρ, fraction of the old state kept at each step (0 ≤ ρ < 1)
    window : (t_1, t_2), inclusive 1-based steps whose goodness is trained and tested;
        default (3, 5) clipped to ``steps``
    label_scale : value of the clamped one-hot label (before normalisation)
    epochs, batch, lr, optimizer ("adam" | "sgd"), momentum, weight_decay, theta : as FF
    eval_train : training examples on which train accuracy and losses are measured
    head_readout : after training, also read the trained bottom-up weights out with a
        linear head: the dynamics' label-free bottom-up pass ``h_k = relu(W_k n(h_{k−1}))``
        (step 0), softmax regression on ``n(h_k)`` of every hidden layer (Adam, ``head_lr``,
        ``head_epochs`` epochs) — the read-out of the random-feature baseline, so the two
        compare features with the read-out held fixed (``head_test_acc``)
    head_epochs, head_lr : training of that head
    seed : seed of everything random
    """

    hidden: list = field(default_factory=lambda: [256, 256])
    steps: int = 8
    damping: float = 0.3
    window: tuple | None = None
    label_scale: float = 1.0
    epochs: int = 5
    batch: int = 64
    lr: float = 0.003
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    theta: float = 1.0
    eval_train: int = 2000
    head_readout: bool = False
    head_epochs: int = 20
    head_lr: float = 0.01
    seed: int = 0

    def __post_init__(self):
        check_training(self)
        check_head(self)
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 2:
            raise ValueError(
                f"recurrent FF needs steps >= 2 (an integer: the bottom-up pass "
                f"is step 0, then at least two damped steps), got {self.steps!r}"
            )
        if not 0 <= self.damping < 1:
            raise ValueError(f"damping must be in [0, 1), got {self.damping}")
        if self.window is None:
            self.window = (min(3, self.steps), min(5, self.steps))
        w = tuple(int(t) for t in self.window)
        if len(w) != 2 or not 1 <= w[0] <= w[1] <= self.steps:
            raise ValueError(
                f"window must be (t1, t2) with 1 <= t1 <= t2 <= steps = "
                f"{self.steps}, got {self.window!r}"
            )
        self.window = w
        if self.label_scale <= 0:
            raise ValueError("label_scale must be > 0")


@dataclass
class RecurrentFFResult:
    """Per-epoch history (index 0 = before training): ``train_acc``, ``test_acc``,
    ``loss`` (summed), ``layer_loss`` (per hidden layer, window-averaged) on the evaluation
    subset; ``weights`` = (W list, V list); ``diverged``; ``epochs_done``;
    ``head_test_acc``: test accuracy of the linear head on the trained bottom-up pass
    (``head_readout``), NaN when not asked for or diverged."""

    config: RecurrentFFConfig
    train_acc: np.ndarray
    test_acc: np.ndarray
    loss: np.ndarray
    layer_loss: np.ndarray
    diverged: bool
    weights: tuple
    epochs_done: int
    head_test_acc: float = float("nan")


def run_dynamics(Ws, Vs, x, top, steps, damping):
    """States of the damped dynamics: list over t = 0 … steps of lists over hidden layers,
    plus the drives ``a_k(t)`` (t ≥ 1). ``top`` is the clamped top layer (n, C)."""
    K = len(Ws)
    xn, topn = _normalize(x), _normalize(top)
    h = []
    z = xn
    for W in Ws:  # one bottom-up pass
        z = np.maximum(z @ W.T, 0)
        h.append(z)
        z = _normalize(z)
    states, drives = [h], [None]
    for _ in range(steps):
        nh = [_normalize(s) for s in h]
        new, acts = [], []
        for k in range(K):
            below = xn if k == 0 else nh[k - 1]
            above = topn if k == K - 1 else nh[k + 1]
            a = below @ Ws[k].T + above @ Vs[k].T
            new.append(damping * h[k] + (1 - damping) * np.maximum(a, 0))
            acts.append(a)
        h = new
        states.append(h)
        drives.append(acts)
    return states, drives


def goodness_all_labels(Ws, Vs, x, n_classes, cfg: RecurrentFFConfig, chunk=1000):
    """Goodness summed over hidden layers and window steps for every label, (n, C)."""
    t1, t2 = cfg.window
    out = np.zeros((x.shape[0], n_classes))
    for s in range(0, x.shape[0], chunk):
        xs = x[s : s + chunk]
        for c in range(n_classes):
            top = np.zeros((xs.shape[0], n_classes), xs.dtype)
            top[:, c] = cfg.label_scale
            states, _ = run_dynamics(Ws, Vs, xs, top, cfg.steps, cfg.damping)
            out[s : s + chunk, c] = sum(
                np.sum(hk * hk, 1) for t in range(t1, t2 + 1) for hk in states[t]
            )
    return out


def predict_recurrent(Ws, Vs, x, n_classes, cfg):
    """The label with the highest window goodness."""
    return goodness_all_labels(Ws, Vs, x, n_classes, cfg).argmax(1)


def _grads(Ws, Vs, x, top, cfg, thetas, positive):
    """Window-averaged loss per layer and its gradients for W and V (one run)."""
    states, drives = run_dynamics(Ws, Vs, x, top, cfg.steps, cfg.damping)
    t1, t2 = cfg.window
    K, n, nt = len(Ws), x.shape[0], t2 - t1 + 1
    xn, topn = _normalize(x), _normalize(top)
    gW = [np.zeros_like(W) for W in Ws]
    gV = [np.zeros_like(V) for V in Vs]
    losses = np.zeros(K)
    for t in range(t1, t2 + 1):
        prev = [_normalize(s) for s in states[t - 1]]
        for k in range(K):
            h, a = states[t][k], drives[t][k]
            G = np.sum(h * h, 1) - thetas[k]
            if positive:  # −log σ(G − θ): dL/dG = −(1 − σ(G − θ))
                losses[k] += float(np.mean(_softplus(-G)))
                c = -_sigmoid(-G)
            else:  # −log σ(θ − G): dL/dG = σ(G − θ)
                losses[k] += float(np.mean(_softplus(G)))
                c = _sigmoid(G)
            # dG/da = 2 (1 − ρ) h ⊙ 1[a > 0]; the inputs at t − 1 are constants
            d = (2 * (1 - cfg.damping) * c)[:, None] * h * (a > 0)
            below = xn if k == 0 else prev[k - 1]
            above = topn if k == K - 1 else prev[k + 1]
            gW[k] += d.T @ below / (n * nt)
            gV[k] += d.T @ above / (n * nt)
    return losses / nt, gW, gV


def train_ff_recurrent(data, config: RecurrentFFConfig, progress=None) -> RecurrentFFResult:
    """Train recurrent FF on ``data`` (:class:`simulations.data.Dataset`); progress as in
    :func:`simulations.forward_forward.train_ff`. Stops with ``diverged=True`` at a
    non-finite loss."""
    from .deep import blas_threads, default_blas_threads

    with blas_threads(default_blas_threads()), np.errstate(over="ignore", invalid="ignore"):
        return _train(data, config, progress)


def _train(data, cfg, progress):
    rng = np.random.default_rng(cfg.seed)
    x_train = np.asarray(data.x_train, np.float32)
    y_train = np.asarray(data.y_train)
    x_test = np.asarray(data.x_test, np.float32)
    y_test = np.asarray(data.y_test)
    C = int(data.n_classes)
    sizes = [x_train.shape[1]] + cfg.hidden + [C]
    K = len(cfg.hidden)
    Ws, Vs = [], []
    for k in range(1, K + 1):
        lw = math.sqrt(6.0 / sizes[k - 1]) / math.sqrt(2.0)
        lv = math.sqrt(6.0 / sizes[k + 1]) / math.sqrt(2.0)
        Ws.append(rng.uniform(-lw, lw, (sizes[k], sizes[k - 1])).astype(np.float32))
        Vs.append(rng.uniform(-lv, lv, (sizes[k], sizes[k + 1])).astype(np.float32))
    thetas = [cfg.theta * d for d in cfg.hidden]
    mats = Ws + Vs
    if cfg.optimizer == "adam":
        opts = [_Adam(M.shape, cfg.lr, cfg.weight_decay, np.float32) for M in mats]
    else:
        opts = [_SGD(M.shape, cfg.lr, cfg.weight_decay, np.float32, cfg.momentum) for M in mats]
    eye = np.eye(C, dtype=np.float32) * cfg.label_scale
    n = y_train.size
    ev_rng = np.random.default_rng([cfg.seed, 1])
    ev_idx = ev_rng.choice(n, min(cfg.eval_train, n), replace=False)
    ev_x, ev_y = x_train[ev_idx], y_train[ev_idx]
    ev_wrong = (ev_y + ev_rng.integers(1, C, ev_y.size)) % C

    hist = {k: [] for k in ("train_acc", "test_acc", "loss", "layer_loss")}

    def record():
        lp, _, _ = _grads(Ws, Vs, ev_x, eye[ev_y], cfg, thetas, True)
        ln, _, _ = _grads(Ws, Vs, ev_x, eye[ev_wrong], cfg, thetas, False)
        hist["layer_loss"].append(lp + ln)
        hist["loss"].append(float(np.sum(lp + ln)))
        hist["train_acc"].append(float(np.mean(predict_recurrent(Ws, Vs, ev_x, C, cfg) == ev_y)))
        hist["test_acc"].append(float(np.mean(predict_recurrent(Ws, Vs, x_test, C, cfg) == y_test)))
        return bool(np.isfinite(hist["loss"][-1]))

    record()
    n_batches = max(1, math.ceil(n / cfg.batch))
    diverged, done = False, 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        for b in range(n_batches):
            idx = order[b * cfg.batch : (b + 1) * cfg.batch]
            x, y = x_train[idx], y_train[idx]
            wrong = (y + rng.integers(1, C, y.size)) % C
            lp, gWp, gVp = _grads(Ws, Vs, x, eye[y], cfg, thetas, True)
            ln, gWn, gVn = _grads(Ws, Vs, x, eye[wrong], cfg, thetas, False)
            for M, opt, g in zip(mats, opts, [a + b for a, b in zip(gWp + gVp, gWn + gVn)]):
                opt.step(M, g)
            total = float(np.sum(lp + ln))
            if not np.isfinite(total) or not all(np.isfinite(M).all() for M in mats):
                diverged = True
                break
            if progress is not None:
                progress(epoch, b + 1, n_batches, {"loss": total})
        done, diverged = end_epoch(hist, done, diverged or not record(), epoch, n_batches, progress)
        if diverged:
            break
    head = float("nan")
    if cfg.head_readout and not diverged:
        layers = list(range(K))
        head = head_readout_accuracy(Ws, data, layers, cfg.head_epochs, cfg.head_lr, cfg.seed)
    return RecurrentFFResult(
        cfg,
        np.asarray(hist["train_acc"]),
        np.asarray(hist["test_acc"]),
        np.asarray(hist["loss"]),
        np.asarray(hist["layer_loss"], dtype=float),
        diverged,
        (Ws, Vs),
        done,
        head,
    )


def recurrent_config_from_dict(d: dict) -> RecurrentFFConfig:
    """A :class:`RecurrentFFConfig` from a plain dict, unknown keys rejected."""
    names = {f.name for f in dataclasses.fields(RecurrentFFConfig)}
    bad = sorted(set(d) - names)
    if bad:
        raise ValueError(f"unknown ff-recurrent keys {bad}; allowed: {sorted(names)}")
    return RecurrentFFConfig(**d)
