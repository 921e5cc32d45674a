"""Forward-Forward (Hinton 2022): supervised, unsupervised, and on a teacher–student task.

Layer ℓ (no bias, ReLU) sees the length-normalised activity of the layer below,
``x̂ = x / rms(x)`` (layer normalisation without mean subtraction, so only the direction is
passed on), and computes ``h = relu(W x̂)``. Its goodness is ``G = Σ_j h_j²`` and its local
loss, for a positive sample ``+`` and a negative sample ``−``,

    L = −log σ(G⁺ − θ) − log σ(θ − G⁻),        θ = theta · d_ℓ (default theta = 1)

(with He-uniform weights and unit-RMS inputs ``E[h_j²] ≈ 1``, so ``G ≈ d_ℓ`` at the start).
Writing ``p = σ(G − θ)``, its gradient is exactly (ReLU: ``h relu'(a) = h``)

    ∂L/∂W = −2 (1 − p⁺) h⁺ ⊗ x̂⁺ + 2 p⁻ h⁻ ⊗ x̂⁻

— a Hebbian term on the positive pass minus an anti-Hebbian term on the negative pass (cf.
PEPITA-Hebbian). Each layer has its own optimiser (Adam or SGD with momentum); no error
crosses layers (inputs to a layer are treated as constants).

Supervised FF: the label is written one-hot (value ``label_scale``) into the first
``n_classes`` input components (for MNIST the first 10 pixels, always blank corners).
Positive = true label; negative = a wrong label, uniformly at random (``negatives="random"``)
or the wrong label with the highest current goodness (``"hardest"``). Prediction: the label
with the highest goodness accumulated over layers, excluding the first layer when there is
more than one.

Unsupervised FF: positives are real images, negatives hybrid images ``m x_a + (1 − m) x_b``
with a mask ``m`` made by blurring random bits ``n_blur`` times with the filter
``[1/4, 1/2, 1/4]`` along both image axes and thresholding at 1/2. Accuracy comes from a
linear softmax head trained (Adam, cross-entropy) on the length-normalised activities of the
last layers (``head_layers``; default all but the first when there is more than one).
Unsupervised FF needs a small step (Adam lr ≈ 3·10⁻⁴): at 0.003 about half the units of
the upper layers die in the first epoch and the head ends below the same head on the
untrained network (``docs/mnist.md``). Options for both modes: peer normalisation
(:func:`peer_norm_grad`, ``peer_norm``, off by default) and the mean goodness
(``goodness="mean"``).

Teacher–student classification (:func:`simulations.data.teacher_student_task`): Gaussian inputs
``x ∈ R^N``, a committee-machine teacher ``y = Σ_m v*_m erf(w*_m·x/√(2N))`` with
``w*_m ~ N(0, I)``, ``v*_m = 1``; class = ``[y > 0]`` (``kind="sign"``, 2 classes) or
``argmax_m w*_m·x`` (``kind="argmax"``, M classes). The inputs get ``n_classes`` leading zero
components where FF embeds its label, so FF and the deep PEPITA networks
(:mod:`simulations.deep`) run on the very same data set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .data import teacher_student_task  # noqa: F401 (re-exported; it lives with the data)

__all__ = [
    "FFConfig",
    "FFResult",
    "train_ff",
    "layer_loss",
    "layer_loss_grad",
    "peer_norm_grad",
    "embed_label",
    "predict",
    "hybrid_negatives",
    "teacher_student_task",
    "FF_MODES",
    "FF_NEGATIVES",
    "FF_OPTIMIZERS",
    "FF_GOODNESS",
]

FF_MODES = ("supervised", "unsupervised")
FF_NEGATIVES = ("random", "hardest")
FF_OPTIMIZERS = ("adam", "sgd")
FF_GOODNESS = ("sum", "mean")


def check_training(cfg) -> None:
    """The checks every FF trainer's config shares (FFConfig, RecurrentFFConfig,
    TopDownFFConfig): ``hidden`` a non-empty list of positive widths (normalised to ints),
    ``epochs >= 0``, ``batch >= 1``, ``lr > 0``, ``theta > 0`` and a known ``optimizer``.
    ValueError naming what is wrong."""
    cfg.hidden = [int(h) for h in cfg.hidden]
    if not cfg.hidden or min(cfg.hidden) < 1:
        raise ValueError(f"hidden must list positive widths, got {cfg.hidden}")
    if cfg.epochs < 0 or cfg.batch < 1 or cfg.lr <= 0 or cfg.theta <= 0:
        raise ValueError("need epochs >= 0, batch >= 1, lr > 0, theta > 0")
    if cfg.optimizer not in FF_OPTIMIZERS:
        raise ValueError(
            f"unknown FF optimizer {cfg.optimizer!r}; allowed: {', '.join(FF_OPTIMIZERS)}"
        )


def check_head(cfg) -> None:
    """The linear-head read-out options of the FF variants (``head_readout``, ``head_epochs``,
    ``head_lr``): a bool, an integer >= 1 and a positive number; ValueError naming the
    option, the value given and what is allowed."""
    if not isinstance(cfg.head_readout, (bool, np.bool_)):
        raise ValueError(f"head_readout must be true or false, got {cfg.head_readout!r}")
    e = cfg.head_epochs
    if not isinstance(e, (int, np.integer)) or isinstance(e, bool) or e < 1:
        raise ValueError(f"head_epochs must be an integer >= 1, got {e!r}")
    if not cfg.head_lr > 0:
        raise ValueError(f"head_lr must be > 0, got {cfg.head_lr!r}")


@dataclass
class FFConfig:
    """Options of :func:`train_ff`.

    hidden : layer widths, e.g. ``[2000, 2000, 2000, 2000]``
    mode : "supervised" or "unsupervised"
    epochs, batch, lr, weight_decay : training options (per-layer optimiser)
    optimizer : "adam" (β = 0.9, 0.999; lr ≈ 0.003) or "sgd" (with ``momentum``; lr ≈ 0.001,
        0.003 already fails on MNIST)
    theta : threshold per unit, θ_ℓ = theta · d_ℓ (``goodness="sum"``) or θ_ℓ = theta
        (``"mean"``)
    goodness : "sum" (``G = Σ_j h_j²``) or "mean" (``G = Σ_j h_j² / d_ℓ``): the same
        classifier ``G ≷ θ``, but the logit ``G − θ`` is ``d_ℓ`` times smaller, so
        ``σ(G − θ)`` is not saturated (a softer, non-hinge loss)
    peer_norm : weight ``λ_p`` of peer normalisation (0 = off); see :func:`peer_norm_grad`
    peer_momentum : momentum of the running mean activity used by peer normalisation
    negatives : "random" or "hardest" (supervised)
    label_scale : value of the embedded one-hot label
    n_blur : blurring passes of the hybrid-image mask (unsupervised)
    head_layers : layers (0-based) feeding the linear head (unsupervised); None = default
    head_epochs, head_lr : training of the linear head (Adam)
    eval_train : number of training examples on which train accuracy / loss are measured
    head_readout : supervised mode: after training, also read the trained layers out with
        the unsupervised mode's linear head (``head_layers``, default all layers;
        ``head_epochs``, ``head_lr``; the images as they are, label pixels blank) —
        the read-out of the random-feature baseline, so the two compare features with the
        read-out held fixed (``FFResult.head_test_acc``)
    local_fields : local receptive fields of the hidden layers (see
        :mod:`simulations.local_fields`), None = all dense; in supervised mode every unit of
        the first layer also sees the label components
    seed : seed of everything random
    """

    hidden: list = field(default_factory=lambda: [256])
    mode: str = "supervised"
    epochs: int = 5
    batch: int = 64
    lr: float = 0.003
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    theta: float = 1.0
    goodness: str = "sum"
    peer_norm: float = 0.0
    peer_momentum: float = 0.9
    negatives: str = "random"
    label_scale: float = 1.0
    n_blur: int = 6
    head_layers: list | None = None
    head_epochs: int = 5
    head_lr: float = 0.01
    eval_train: int = 2000
    head_readout: bool = False
    local_fields: list | None = None
    seed: int = 0

    def __post_init__(self):
        if self.mode not in FF_MODES:
            raise ValueError(f"unknown FF mode {self.mode!r}; allowed: {', '.join(FF_MODES)}")
        if self.negatives not in FF_NEGATIVES:
            raise ValueError(
                f"unknown FF negatives {self.negatives!r}; allowed: {', '.join(FF_NEGATIVES)}"
            )
        check_training(self)
        if self.goodness not in FF_GOODNESS:
            raise ValueError(
                f"unknown FF goodness {self.goodness!r}; allowed: {', '.join(FF_GOODNESS)}"
            )
        if self.peer_norm < 0 or not 0 <= self.peer_momentum < 1:
            raise ValueError(
                f"need peer_norm >= 0 and 0 <= peer_momentum < 1, got "
                f"{self.peer_norm}, {self.peer_momentum}"
            )
        if self.head_layers is not None:
            self.head_layers = [int(i) for i in self.head_layers]
            if any(not 0 <= i < len(self.hidden) for i in self.head_layers):
                raise ValueError(f"head_layers must index 0..{len(self.hidden) - 1}")
        from .local_fields import parse_local_fields

        parse_local_fields(self.local_fields, len(self.hidden))


@dataclass
class FFResult:
    """Per-epoch history (index 0 = before training).

    train_acc, test_acc : (epochs_done + 1,)
    loss : summed layer losses on the evaluation subset, (epochs_done + 1,)
    layer_loss : (epochs_done + 1, n_layers)
    diverged : a non-finite loss or weights, or a loss > ``LOSS_BLOWUP`` × the initial
        one (:func:`blew_up`), stopped the run
    weights : final ``W_ℓ`` (d_ℓ × d_{ℓ−1})
    head_test_acc : test accuracy of the linear head on the final layers (``head_readout``),
        NaN when not asked for
    """

    config: FFConfig
    train_acc: np.ndarray
    test_acc: np.ndarray
    loss: np.ndarray
    layer_loss: np.ndarray
    diverged: bool
    weights: list
    epochs_done: int
    head_test_acc: float = float("nan")


# ----------------------------------------------------------------------------- one layer


def _normalize(x):
    return x / (np.sqrt(np.mean(x * x, axis=1, keepdims=True)) + 1e-8)


def _softplus(z):
    return np.logaddexp(0.0, z)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def layer_loss(W, x_pos, x_neg, theta, gscale=1.0):
    """Mean FF loss of one layer, ``−log σ(G⁺ − θ) − log σ(θ − G⁻)``, on raw layer inputs
    (normalised here), with goodness ``G = gscale · Σ_j h_j²``."""
    hp = np.maximum(_normalize(x_pos) @ W.T, 0)
    hn = np.maximum(_normalize(x_neg) @ W.T, 0)
    gp, gn = gscale * np.sum(hp * hp, 1), gscale * np.sum(hn * hn, 1)
    return float(np.mean(_softplus(-(gp - theta)) + _softplus(gn - theta)))


def layer_loss_grad(W, x_pos, x_neg, theta, gscale=1.0):
    """The loss of :func:`layer_loss`, its gradient with respect to ``W`` and the outputs.

    ``∂L/∂W = mean[−2 c (1 − p⁺) h⁺ ⊗ x̂⁺ + 2 c p⁻ h⁻ ⊗ x̂⁻]``, ``p = σ(G − θ)``,
    ``G = c Σ_j h_j²`` with ``c = gscale`` (1 for the summed goodness, ``1/d_ℓ`` for the mean).

    Returns (loss, grad, h_pos, h_neg).
    """
    xp, xn = _normalize(x_pos), _normalize(x_neg)
    hp = np.maximum(xp @ W.T, 0)
    hn = np.maximum(xn @ W.T, 0)
    gp, gn = gscale * np.sum(hp * hp, 1), gscale * np.sum(hn * hn, 1)
    loss = float(np.mean(_softplus(-(gp - theta)) + _softplus(gn - theta)))
    cp = -2.0 * gscale * _sigmoid(-(gp - theta))  # -2 c (1 - p+)
    cn = 2.0 * gscale * _sigmoid(gn - theta)  # +2 c p-
    n = x_pos.shape[0]
    grad = ((cp[:, None] * hp).T @ xp + (cn[:, None] * hn).T @ xn) / n
    return loss, grad, hp, hn


def peer_norm_grad(h_pos, x_pos, running, weight, momentum=0.9):
    """Peer normalisation of one layer: loss, gradient, and the running mean updated in place.

    Hinton (2022) keeps every unit in use by pulling its mean activity towards the mean of
    the layer; public FF implementations do it with a running mean over positive batches,
    ``r ← μ r + (1 − μ) ⟨h⁺⟩_batch``, and the loss ``λ_p · mean_j (r̄ − r_j)²``
    (``r̄ = mean_j r_j``), differentiated through the current batch only and through a ReLU
    whose derivative is taken as 1 for every sample (so a silent unit, which gets no
    goodness gradient, still gets pushed back into use). That gives, for row ``j`` of ``W``,

        ∂L_p/∂W_j = λ_p (1 − μ) (2/d) (r_j − r̄) ⟨x̂⁺⟩_batch

    — units busier than average turn away from the mean input, idle ones towards it.

    h_pos : (n, d) positive activities of the layer; x_pos : (n, d_in) its raw inputs
    running : (d,) running mean activity, updated in place

    Returns (loss, grad).
    """
    running *= momentum
    running += (1.0 - momentum) * h_pos.mean(0)
    dev = running - running.mean()
    loss = float(weight * np.mean(dev * dev))
    d = running.size
    grad = (weight * (1.0 - momentum) * 2.0 / d) * np.outer(dev, _normalize(x_pos).mean(0))
    return loss, grad.astype(h_pos.dtype, copy=False)


#: Adam first-moment entries below this magnitude are set to 0 (see :class:`_Adam`)
ADAM_FLUSH = 1e-30
#: ... every this many steps
ADAM_FLUSH_EVERY = 100


class _Adam:
    """Adam (β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸) that keeps its first moment out of subnormals.

    A dead ReLU unit gets an exactly zero gradient row, so its first moment decays as
    ``0.9^t`` and reaches float32's subnormal range (< 1.2·10⁻³⁸) after a few hundred steps;
    arithmetic on subnormals takes a slow path on x86 and made FF epochs ~75 % slower from
    epoch ~6 on (51 % of layer 2's entries were subnormal by epoch 7). Every
    ``ADAM_FLUSH_EVERY`` = 100 steps, entries with ``|m| < ADAM_FLUSH`` = 10⁻³⁰ are set to 0:
    from 10⁻³⁰ an entry needs ~180 steps of decay to become subnormal, so it is caught first.
    The results do not change: such an entry moves a weight by at most
    ``lr·10⁻³⁰/(1−0.9^t)/ε`` ≈ 10⁻²⁴, far below half an ulp of any weight above 10⁻¹⁶
    (float32), so the weights stay bit-identical (checked on the quick MNIST table).
    ``flush=False`` restores the plain update (for the benchmark).
    """

    flush = True

    def __init__(self, shape, lr, wd, dtype):
        self.m = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self.t = 0
        self.lr, self.wd = lr, wd

    def step(self, W, g):
        if self.wd:
            g = g + self.wd * W
        self.t += 1
        self.m *= 0.9
        self.m += 0.1 * g
        if self.flush and self.t % ADAM_FLUSH_EVERY == 0:
            self.m[np.abs(self.m) < ADAM_FLUSH] = 0.0
        self.v *= 0.999
        self.v += 0.001 * g * g
        mh = self.m / (1 - 0.9**self.t)
        vh = self.v / (1 - 0.999**self.t)
        W -= self.lr * mh / (np.sqrt(vh) + 1e-8)


class _SGD:
    def __init__(self, shape, lr, wd, dtype, momentum):
        self.v = np.zeros(shape, dtype)
        self.lr, self.wd, self.mu = lr, wd, momentum

    def step(self, W, g):
        self.v *= self.mu
        self.v += g + self.wd * W
        W -= self.lr * self.v


# ----------------------------------------------------------------------------- data helpers


def embed_label(x, labels, n_classes, scale=1.0):
    """Copy of ``x`` with its first ``n_classes`` components set to ``scale · onehot(label)``."""
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, :n_classes] = 0.0
    out[np.arange(out.shape[0]), labels] = scale
    return out


def _blur(m, n_blur):
    # [1/4, 1/2, 1/4] along both image axes, edges replicated
    for _ in range(n_blur):
        for ax in (1, 2):
            p = np.concatenate([np.take(m, [0], axis=ax), m, np.take(m, [-1], axis=ax)], ax)
            sl = [slice(None)] * 3
            sl[ax] = slice(0, -2)
            a = p[tuple(sl)]
            sl[ax] = slice(1, -1)
            b = p[tuple(sl)]
            sl[ax] = slice(2, None)
            c = p[tuple(sl)]
            m = 0.25 * a + 0.5 * b + 0.25 * c
    return m


def hybrid_negatives(x, rng, n_blur=6):
    """Hybrid images ``m x + (1 − m) x[π]`` (π a random permutation), ``m`` a thresholded,
    ``n_blur``-times blurred random bit image of the input's square shape.

    Inputs are square single-channel images (d = s², MNIST) or channel-major three-channel
    ones (d = 3 s², CIFAR-10), where one mask serves all channels."""
    n, d = x.shape
    channels = 1
    side = int(round(math.sqrt(d)))
    if side * side != d:
        channels, side = 3, int(round(math.sqrt(d / 3)))
        if 3 * side * side != d:
            raise ValueError(
                f"hybrid negatives need square images (d = s² or 3 s²); input "
                f"dimension {d} is neither"
            )
    m = rng.integers(0, 2, size=(n, side, side)).astype(np.float32)
    m = (_blur(m, n_blur) > 0.5).astype(np.float32).reshape(n, 1, side * side)
    m = np.broadcast_to(m, (n, channels, side * side)).reshape(n, d)
    partner = x[rng.permutation(n)]
    return m * x + (1.0 - m) * partner


# ----------------------------------------------------------------------------- network


def _layers_forward(Ws, x):
    """Raw activities ``[h_1, …, h_L]`` (each layer normalises its input)."""
    hs = []
    h = x
    for W in Ws:
        h = np.maximum(_normalize(h) @ W.T, 0)
        hs.append(h)
    return hs


def _goodness_all_labels(Ws, x, n_classes, scale, skip_first=True):
    """Goodness accumulated over layers for every candidate label, shape (n, n_classes)."""
    G = np.zeros((x.shape[0], n_classes))
    first = 1 if (skip_first and len(Ws) > 1) else 0
    for c in range(n_classes):
        hs = _layers_forward(Ws, embed_label(x, np.full(x.shape[0], c), n_classes, scale))
        G[:, c] = sum(np.sum(h * h, 1) for h in hs[first:])
    return G


def predict(Ws, x, n_classes, label_scale=1.0, chunk=2000):
    """Supervised-FF prediction: the label with the highest accumulated goodness
    (excluding the first layer when there is more than one)."""
    out = []
    for s in range(0, x.shape[0], chunk):
        out.append(_goodness_all_labels(Ws, x[s : s + chunk], n_classes, label_scale).argmax(1))
    return np.concatenate(out) if out else np.zeros(0, int)


def _wrong_labels(y, n_classes, rng):
    return (y + rng.integers(1, n_classes, size=y.size)) % n_classes


def _negative_batch(Ws, x, y, cfg, n_classes, rng):
    if cfg.mode == "unsupervised":
        return x, hybrid_negatives(x, rng, cfg.n_blur)
    pos = embed_label(x, y, n_classes, cfg.label_scale)
    if cfg.negatives == "hardest":
        G = _goodness_all_labels(Ws, x, n_classes, cfg.label_scale, skip_first=False)
        G[np.arange(y.size), y] = -np.inf
        wrong = G.argmax(1)
    else:
        wrong = _wrong_labels(y, n_classes, rng)
    return pos, embed_label(x, wrong, n_classes, cfg.label_scale)


def _head_features(Ws, x, layers):
    hs = _layers_forward(Ws, x)
    return np.concatenate([_normalize(hs[i]) for i in layers], axis=1)


def _train_head(feat, y, n_classes, cfg, rng):
    W = np.zeros((n_classes, feat.shape[1]), np.float32)
    b = np.zeros(n_classes, np.float32)
    optW = _Adam(W.shape, cfg.head_lr, 0.0, np.float32)
    optb = _Adam(b.shape, cfg.head_lr, 0.0, np.float32)
    eye = np.eye(n_classes, dtype=np.float32)
    for _ in range(cfg.head_epochs):
        order = rng.permutation(y.size)
        for s in range(0, y.size, 128):
            idx = order[s : s + 128]
            a = feat[idx] @ W.T + b
            a -= a.max(1, keepdims=True)
            p = np.exp(a)
            p /= p.sum(1, keepdims=True)
            e = p - eye[y[idx]]
            optW.step(W, e.T @ feat[idx] / idx.size)
            optb.step(b, e.mean(0))
    return W, b


def head_readout_accuracy(Ws, data, layers, head_epochs, head_lr, seed) -> float:
    """Test accuracy of the linear head on the hidden layers ``layers`` of the feed-forward
    pass ``h_ℓ = relu(W_ℓ n(h_{ℓ−1}))`` (``n`` = length normalisation, ``h_0`` the image):
    softmax regression on the concatenated ``n(h_ℓ)``, Adam (``head_lr``) for ``head_epochs``
    epochs on the training set, shuffled by the generator ``[seed, 2, 0]`` — the head that
    unsupervised FF's epoch-0 record trains on its random layers, so trained and random
    layers are compared with the read-out held fixed (``head_readout`` of the FF variants)."""
    x_train = np.asarray(data.x_train, np.float32)
    x_test = np.asarray(data.x_test, np.float32)
    cfg = SimpleNamespace(head_epochs=int(head_epochs), head_lr=float(head_lr))
    ftr = _head_features(Ws, x_train, layers)
    rng = np.random.default_rng([seed, 2, 0])
    Wh, bh = _train_head(ftr, np.asarray(data.y_train), int(data.n_classes), cfg, rng)
    fte = _head_features(Ws, x_test, layers)
    return float(np.mean((fte @ Wh.T + bh).argmax(1) == np.asarray(data.y_test)))


def train_ff(data, config: FFConfig, progress=None, checkpoint=None) -> FFResult:
    """Train a Forward-Forward network; see :func:`_train_ff` (BLAS threads limited by
    :func:`simulations.deep.default_blas_threads`)."""
    from .deep import blas_threads, default_blas_threads

    with blas_threads(default_blas_threads()), np.errstate(over="ignore", invalid="ignore"):
        return _train_ff(data, config, progress, checkpoint)


def _ckpt_key(cfg, data) -> str:
    """What a checkpoint must match to be resumed: the config but its ``epochs`` (FF has no
    schedule, so a longer run continues a shorter one exactly) and the data's identity."""
    import json

    c = dataclasses.asdict(cfg)
    c.pop("epochs")
    return json.dumps(
        {"config": c, "data": [data.source, int(data.y_train.size)]},
        sort_keys=True,
        default=str,
    )


def _save_checkpoint(path, key, done, Ws, opts, running, rng, hist):
    """Everything the training loop carries from one epoch to the next, written atomically
    (a run stopped while writing keeps the previous epoch's file)."""
    import json
    import os
    from pathlib import Path

    arrays = {f"W{i}": W for i, W in enumerate(Ws)}
    for i, o in enumerate(opts):
        for name in ("m", "v"):
            if hasattr(o, name):
                arrays[f"opt{i}_{name}"] = getattr(o, name)
    for i, r in enumerate(running):
        arrays[f"run{i}"] = r
    meta = {
        "key": key,
        "done": done,
        "t": [getattr(o, "t", 0) for o in opts],
        "rng": rng.bit_generator.state,
        "hist": hist,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def _load_checkpoint(path, key, epochs, Ws, opts, running, rng, hist):
    """Restore a checkpoint of the same config and data into the loop's state; returns the
    epochs it had done (0 when there is no usable checkpoint: absent, or of another run)."""
    import json
    from pathlib import Path

    if path is None or not Path(path).is_file():
        return 0
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        if meta["key"] != key:
            return 0
        if meta["done"] > epochs:
            raise ValueError(
                f"{path}: checkpoint has {meta['done']} epochs, more than the {epochs} asked "
                "for; raise epochs or remove the checkpoint"
            )
        for i, W in enumerate(Ws):
            W[...] = z[f"W{i}"]
        for i, o in enumerate(opts):
            for name in ("m", "v"):
                if hasattr(o, name):
                    getattr(o, name)[...] = z[f"opt{i}_{name}"]
            if hasattr(o, "t"):
                o.t = meta["t"][i]
        for i, r in enumerate(running):
            r[...] = z[f"run{i}"]
    rng.bit_generator.state = meta["rng"]
    for k in hist:
        hist[k][:] = meta["hist"][k]
    return int(meta["done"])


def _train_ff(data, config: FFConfig, progress=None, checkpoint=None) -> FFResult:
    """Train a Forward-Forward network on ``data`` (:class:`simulations.data.Dataset`).

    progress : callable(epoch, batch, n_batches, info) or None, called after every batch.
    checkpoint : path of a per-epoch checkpoint (``.npz``) or None. After every epoch the
        whole loop state (weights, optimiser moments, peer-norm means, the generator state,
        the histories) is written there; a later call with the same config (``epochs`` may
        be larger) and data resumes from it and ends bit-identical to an uninterrupted run
        (a checkpoint of another config is ignored and overwritten; one with more epochs
        than asked for is a ValueError).
    """
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    x_train = np.asarray(data.x_train, np.float32)
    y_train = np.asarray(data.y_train)
    x_test = np.asarray(data.x_test, np.float32)
    y_test = np.asarray(data.y_test)
    C = int(data.n_classes)
    if cfg.mode == "supervised" and x_train.shape[1] <= C:
        raise ValueError(f"input dimension {x_train.shape[1]} too small to embed {C} labels")
    sizes = [x_train.shape[1]] + cfg.hidden
    Ws = []
    for i in range(len(cfg.hidden)):
        lim = math.sqrt(6.0 / sizes[i])
        Ws.append(rng.uniform(-lim, lim, (sizes[i + 1], sizes[i])).astype(np.float32))
    masks = _local_masks(Ws, cfg, C)
    if cfg.goodness == "sum":
        thetas, gscales = [cfg.theta * d for d in cfg.hidden], [1.0] * len(cfg.hidden)
    else:
        thetas, gscales = [cfg.theta] * len(cfg.hidden), [1.0 / d for d in cfg.hidden]
    # running mean activities for peer normalisation (0.5 at the start, as public code does)
    running = [np.full(d, 0.5, np.float32) for d in cfg.hidden]
    if cfg.optimizer == "adam":
        opts = [_Adam(W.shape, cfg.lr, cfg.weight_decay, np.float32) for W in Ws]
    else:
        opts = [_SGD(W.shape, cfg.lr, cfg.weight_decay, np.float32, cfg.momentum) for W in Ws]
    L = len(Ws)
    head_layers = cfg.head_layers or (list(range(1, L)) if L > 1 else [0])

    n_ev = min(cfg.eval_train, y_train.size)
    ev_rng = np.random.default_rng([cfg.seed, 1])
    ev_idx = ev_rng.choice(y_train.size, n_ev, replace=False)
    # fixed evaluation negatives so the loss curve is not noisier than it has to be
    ev_x, ev_y = x_train[ev_idx], y_train[ev_idx]
    if cfg.mode == "supervised":
        ev_pos = embed_label(ev_x, ev_y, C, cfg.label_scale)
        ev_neg = embed_label(ev_x, _wrong_labels(ev_y, C, ev_rng), C, cfg.label_scale)
    else:
        ev_pos, ev_neg = ev_x, hybrid_negatives(ev_x, ev_rng, cfg.n_blur)

    hist = {"train_acc": [], "test_acc": [], "loss": [], "layer_loss": []}

    def record():
        ll, hp, hn = [], ev_pos, ev_neg
        for W, th, gs in zip(Ws, thetas, gscales):
            loss, _, hp, hn = layer_loss_grad(W, hp, hn, th, gs)
            ll.append(loss)
        if cfg.mode == "supervised":
            tr = float(np.mean(predict(Ws, ev_x, C, cfg.label_scale) == ev_y))
            te = float(np.mean(predict(Ws, x_test, C, cfg.label_scale) == y_test))
        else:
            head_rng = np.random.default_rng([cfg.seed, 2, len(hist["loss"])])
            ftr = _head_features(Ws, x_train, head_layers)
            Wh, bh = _train_head(ftr, y_train, C, cfg, head_rng)
            tr = float(np.mean((ftr[ev_idx] @ Wh.T + bh).argmax(1) == ev_y))
            fte = _head_features(Ws, x_test, head_layers)
            te = float(np.mean((fte @ Wh.T + bh).argmax(1) == y_test))
        hist["train_acc"].append(tr)
        hist["test_acc"].append(te)
        hist["layer_loss"].append(ll)
        hist["loss"].append(float(np.sum(ll)))
        return bool(np.isfinite(hist["loss"][-1]))

    key = _ckpt_key(cfg, data) if checkpoint is not None else None
    done = _load_checkpoint(checkpoint, key, cfg.epochs, Ws, opts, running, rng, hist)
    if done == 0:
        record()
    n = y_train.size
    n_batches = max(1, math.ceil(n / cfg.batch))
    diverged = False
    for epoch in range(done, cfg.epochs):
        order = rng.permutation(n)
        for b in range(n_batches):
            idx = order[b * cfg.batch : (b + 1) * cfg.batch]
            hp, hn = _negative_batch(Ws, x_train[idx], y_train[idx], cfg, C, rng)
            total = 0.0
            for W, th, gs, opt, run, M in zip(Ws, thetas, gscales, opts, running, masks):
                loss, g, hp_new, hn_new = layer_loss_grad(W, hp, hn, th, gs)
                if cfg.peer_norm > 0:
                    lp, gp = peer_norm_grad(hp_new, hp, run, cfg.peer_norm, cfg.peer_momentum)
                    loss, g = loss + lp, g + gp
                if M is not None:
                    g *= M  # in place: the masked step costs one elementwise product
                opt.step(W, g)
                total += loss
                hp, hn = hp_new, hn_new  # next layer trains on this layer's outputs
            if not np.isfinite(total) or not all(np.isfinite(W).all() for W in Ws):
                diverged = True
                break
            if progress is not None:
                progress(epoch, b + 1, n_batches, {"loss": total})
        done, diverged = end_epoch(hist, done, diverged or not record(), epoch, n_batches, progress)
        if diverged:
            break
        if checkpoint is not None:
            _save_checkpoint(checkpoint, key, done, Ws, opts, running, rng, hist)
    head_acc = float("nan")
    if cfg.head_readout and cfg.mode == "supervised" and not diverged:
        # the baseline's head (same generator stream as its epoch-0 head) on these layers
        layers = cfg.head_layers or list(range(L))
        ftr = _head_features(Ws, x_train, layers)
        Wh, bh = _train_head(ftr, y_train, C, cfg, np.random.default_rng([cfg.seed, 2, 0]))
        fte = _head_features(Ws, x_test, layers)
        head_acc = float(np.mean((fte @ Wh.T + bh).argmax(1) == y_test))
    return FFResult(
        cfg,
        np.asarray(hist["train_acc"]),
        np.asarray(hist["test_acc"]),
        np.asarray(hist["loss"]),
        np.asarray(hist["layer_loss"], dtype=float),
        diverged,
        Ws,
        done,
        head_acc,
    )


#: an FF run has diverged when its loss exceeds this many times its initial value
LOSS_BLOWUP = 1e4


def blew_up(hist) -> bool:
    """Whether the last recorded loss left the range of a run that learns.

    The FF loss is a softplus of ``±(goodness − θ)``: at a learning rate far too large
    the goodness of every input explodes, the loss grows to 10¹⁰–10¹⁴ and stays finite
    while the accuracy sits at chance (a silent failure before). A run that learns keeps
    its loss within a small factor of the initial one (which is ``L log 2``-ish, of order
    1–30), so ``LOSS_BLOWUP`` = 10⁴ × the initial loss separates the two by orders of
    magnitude.
    """
    loss = hist["loss"]
    if len(loss) < 2:
        return False
    return not loss[-1] <= LOSS_BLOWUP * max(abs(loss[0]), 1e-12)


def end_epoch(hist, done, failed, epoch, n_batches, progress):
    """End-of-epoch book-keeping shared by the FF trainers (supervised, unsupervised,
    recurrent, top-down): after a failed epoch (a non-finite loss or weights, or a loss
    that blew up, :func:`blew_up`) drop its half-written record so that every history has
    ``done + 1`` entries, else count the epoch and report it. Returns
    ``(done, diverged)``."""
    failed = failed or blew_up(hist)
    if failed:
        if len(hist["loss"]) > done + 1:
            for k in hist:
                hist[k].pop()
        return done, True
    if progress is not None:
        progress(
            epoch,
            n_batches,
            n_batches,
            {"loss": hist["loss"][-1], "test_acc": hist["test_acc"][-1], "epoch_done": True},
        )
    return epoch + 1, False


def _local_masks(Ws, cfg, n_classes):
    """Masks of local layers (None entries = dense), applied to the initial weights here."""
    # hook of simulations.local_fields: the masks are fixed; weights and updates are masked
    from .local_fields import build_masks, init_masked

    seen = range(n_classes) if cfg.mode == "supervised" else ()
    masks = build_masks(Ws[0].shape[1], cfg.hidden, cfg.local_fields, seen)
    masks = masks or [None] * len(Ws)
    for W, M in zip(Ws, masks):
        if M is not None:
            init_masked(W, M)
    return masks


def ff_config_from_dict(d: dict) -> FFConfig:
    """An :class:`FFConfig` from a plain dict, unknown keys rejected."""
    names = {f.name for f in dataclasses.fields(FFConfig)}
    bad = sorted(set(d) - names)
    if bad:
        raise ValueError(f"unknown FFConfig keys {bad}; allowed: {sorted(names)}")
    return FFConfig(**d)
