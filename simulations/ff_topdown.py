"""Forward-Forward with top-down negatives: PEPITA's modulated input as FF's negative sample.

The network is a stack of FF layers (no bias, ReLU, each layer length-normalises its input:
``h_ℓ = relu(W_ℓ n(h_{ℓ−1}))``, ``n(z) = z / rms(z)``) with a softmax read-out on the
normalised last hidden layer, ``p = softmax(W_out n(h_L))``, and a fixed random feedback
``F ∈ R^{d_0 × C}`` (PEPITA's, uniform in ``±F_scale·√(6/d_0)``). Inputs are the
length-normalised images ``x ← n(x)`` (so ``F_scale`` measures ``F`` against unit-RMS inputs).
One training step on a batch:

1. positive pass on ``x``: activities ``h_ℓ``, read-out error ``e = p − y*``;
2. negative sample ``x̃ = x − s F e`` (``s = sign``, +1 = PEPITA's modulated input);
   negative pass gives ``h̃_ℓ``;
3. every hidden layer takes the FF goodness-loss step on (positive ``n(h_{ℓ−1})``, negative
   ``n(h̃_{ℓ−1})``) — the softplus loss ``−log σ(G⁺ − θ) − log σ(θ − G⁻)``, gradient
   ``g_ℓ = −2(1 − p⁺) h⁺ ⊗ n(h⁺_{ℓ−1}) + 2 p⁻ h⁻ ⊗ n(h⁻_{ℓ−1})`` (see
   :mod:`simulations.forward_forward`);
4. the read-out takes the cross-entropy step ``e ⊗ n(h_L)``.

No error crosses a hidden layer: the only top-down signal is ``F e`` in the input.

Comparison with exact PEPITA (:func:`update_cosines`). With the same weights, the network
above *is* the deep PEPITA network of :mod:`simulations.deep` with activation normalisation
(``normalize=True``) fed the normalised images, so on the same batch exact PEPITA's update
``ΔW_1 = (h_1 − h̃_1) ⊗ x̃``, ``ΔW_ℓ = (h_ℓ − h̃_ℓ) ⊗ h̃_{ℓ−1}`` (:func:`deep.pepita_updates`)
is computed from the *same two passes*. Both ``g_ℓ`` and ``ΔW_ℓ`` are applied as
``W ← W − η (·)``, so their cosine (Frobenius) says whether they push the weights the same
way. Reported per hidden layer:

- ``cos_ff``: the FF update ``g_ℓ`` (softplus loss) against ``ΔW_ℓ``;
- ``cos_ff_err``: its error-driven part ``g_ℓ − g_ℓ|_{F=0}`` (``g|_{F=0}`` = the same step with
  the negative equal to the positive: a pure homeostatic term ``2(2p − 1) h ⊗ n(h_{ℓ−1})``
  pushing each goodness towards θ, present whatever the error);
- ``cos_contrastive``: the update of the contrastive loss ``G⁻ − G⁺`` (unit gains);
- ``cos_pred``: the cosine of the first-order expansion ``g_0 + g_1`` of the FF update
  (:func:`first_order_updates`) with ``ΔW_ℓ`` — the prediction of ``cos_ff``.

The expansion itself and where FF and PEPITA differ are written out in ``docs/ff-pepita.md``.
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
    check_head,
    check_training,
    end_epoch,
    head_readout_accuracy,
    layer_loss_grad,
)

__all__ = [
    "TopDownConfig",
    "TopDownResult",
    "train_ff_topdown",
    "topdown_updates",
    "first_order_updates",
    "update_cosines",
    "topdown_config_from_dict",
]


@dataclass
class TopDownConfig:
    """Options of :func:`train_ff_topdown`.

    hidden : hidden widths
    epochs, batch, lr, optimizer ("adam" | "sgd"), momentum, weight_decay : per-matrix
        optimiser (the read-out uses the same)
    theta : FF threshold per unit, θ_ℓ = theta · d_ℓ
    F_scale : feedback scale, ``F`` uniform in ``±F_scale·√(6/d_0)`` (PEPITA's 0.05 =
        "realistic F")
    sign : +1: negative ``x − F e`` (PEPITA's modulated input); −1: ``x + F e``
    cos_every : measure the update cosines every this many batches (0 = once per epoch)
    cos_batch : size of the fixed training subset on which the cosines are measured
    local_fields : local receptive fields of the hidden layers (:mod:`simulations.local_fields`)
    train_hidden : False = only the read-out learns (baseline: read-out on the fixed random
        hidden layers; the cosines are still measured)
    eval_train : training examples on which train accuracy and FF losses are measured
    head_readout : after training, also read the hidden layers out with the linear head of
        the FF baselines (softmax regression on ``n(h_ℓ)`` of every hidden layer, Adam,
        ``head_lr``, ``head_epochs`` epochs; :func:`simulations.forward_forward.
        head_readout_accuracy`): with ``train_hidden`` false it reads the random layers, so
        trained and random layers are compared with the read-out held fixed
        (``head_test_acc``)
    head_epochs, head_lr : training of that head
    seed : seed of everything random
    """

    hidden: list = field(default_factory=lambda: [256])
    epochs: int = 5
    batch: int = 64
    lr: float = 0.003
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    theta: float = 1.0
    F_scale: float = 0.05
    sign: int = 1
    cos_every: int = 0
    cos_batch: int = 500
    local_fields: list | None = None
    train_hidden: bool = True
    eval_train: int = 2000
    head_readout: bool = False
    head_epochs: int = 20
    head_lr: float = 0.01
    seed: int = 0

    def __post_init__(self):
        check_training(self)
        check_head(self)
        if not self.F_scale > 0:
            raise ValueError(f"F_scale must be > 0, got {self.F_scale}")
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be +1 (x - F e) or -1 (x + F e), got {self.sign!r}")
        if self.cos_every < 0 or self.cos_batch < 1:
            raise ValueError("need cos_every >= 0 and cos_batch >= 1")
        from .local_fields import parse_local_fields

        parse_local_fields(self.local_fields, len(self.hidden))


@dataclass
class TopDownResult:
    """History (index 0 = before training).

    train_acc, test_acc : read-out accuracy per epoch, (epochs_done + 1,)
    loss, layer_loss : FF losses (summed, per layer) on the evaluation subset per epoch
    cos_step : batch count at each cosine measurement, (n_meas,)
    cos_ff, cos_ff_err, cos_contrastive, cos_pred : (n_meas, L), see the module docstring
    diverged, epochs_done, network (a :class:`simulations.deep.Network`: hidden weights,
    read-out, F)
    head_test_acc : test accuracy of the linear head on the final hidden layers
        (``head_readout``), NaN when not asked for or diverged
    """

    config: TopDownConfig
    train_acc: np.ndarray
    test_acc: np.ndarray
    loss: np.ndarray
    layer_loss: np.ndarray
    cos_step: np.ndarray
    cos_ff: np.ndarray
    cos_ff_err: np.ndarray
    cos_contrastive: np.ndarray
    cos_pred: np.ndarray
    diverged: bool
    network: object
    epochs_done: int
    head_test_acc: float = float("nan")


# ----------------------------------------------------------------------------- passes


def _hidden_forward(Ws, x):
    """Raw hidden activities ``[h_1, …, h_L]`` (each layer normalises its input)."""
    hs, h = [], x
    for W in Ws:
        h = np.maximum(_normalize(h) @ W.T, 0)
        hs.append(h)
    return hs


def _readout(W_out, hL):
    a = _normalize(hL) @ W_out.T
    a = a - a.max(1, keepdims=True)
    p = np.exp(a)
    return p / p.sum(1, keepdims=True)


def topdown_updates(net, x, y_onehot, theta=1.0, sign=1):
    """The FF-with-top-down-negatives updates of one batch, without applying them.

    Parameters
    ----------
    net : :class:`simulations.deep.Network` (hidden ``W[:-1]``, read-out ``W[-1]``, ``F``)
    x : normalised inputs (n, d_0); y_onehot : (n, C)
    theta : threshold per unit

    Returns
    -------
    dict with ``g`` (softplus-loss gradients of the hidden layers), ``g0`` (the same with the
    negative equal to the positive), ``gc`` (contrastive-loss gradients), ``readout``
    (``e ⊗ n(h_L)``), ``loss`` (per-layer softplus losses), ``e``, ``xt`` (the negative),
    ``hs``, ``hts`` (raw activities of both passes).
    """
    Ws = net.W[:-1]
    n = x.shape[0]
    hs = _hidden_forward(Ws, x)
    p = _readout(net.W[-1], hs[-1])
    e = p - y_onehot
    xt = x - sign * (e @ net.F.T)
    hts = _hidden_forward(Ws, xt)
    g, g0, gc, losses = [], [], [], []
    for l, W in enumerate(Ws):
        th = theta * W.shape[0]
        pos = x if l == 0 else hs[l - 1]
        neg = xt if l == 0 else hts[l - 1]
        loss, gl, _, _ = layer_loss_grad(W, pos, neg, th)
        g.append(gl)
        losses.append(loss)
        g0.append(layer_loss_grad(W, pos, pos, th)[1])
        gc.append(2.0 * (hts[l].T @ _normalize(neg) - hs[l].T @ _normalize(pos)) / n)
    readout = e.T @ _normalize(hs[-1]) / n
    return dict(g=g, g0=g0, gc=gc, readout=readout, loss=losses, e=e, xt=xt, hs=hs, hts=hts)


def first_order_updates(Ws, x, delta, theta=1.0):
    """First-order expansion in ``ε`` of the FF updates with negative input ``x − ε δ``.

    For layer ℓ with positive input ``z`` (raw; ``ẑ = n(z)``, ``r = rms(z)``, width ``d``)
    and negative input ``z − ε δ_ℓ``, to first order ``n(z − ε δ_ℓ) = ẑ − ε δ̂_ℓ`` with
    ``δ̂_ℓ = (δ_ℓ − ẑ (ẑ·δ_ℓ)/d) / r``, ``h⁻ = h − ε D W δ̂_ℓ`` (``D = diag 1[W ẑ > 0]``),
    ``G⁻ = G − 2 ε h·W δ̂_ℓ``, and the next layer's input perturbation is
    ``δ_{ℓ+1} = D W δ̂_ℓ``. Per sample, with ``p = σ(G − θ)``:

    softplus loss:  ``g = g_0 + ε g_1 + O(ε²)``,
        ``g_0 = 2(2p − 1) h ⊗ ẑ``,
        ``g_1 = −4p(1 − p)(h·W δ̂) h ⊗ ẑ − 2p (D W δ̂) ⊗ ẑ − 2p h ⊗ δ̂``;
    contrastive loss ``G⁻ − G⁺``:  ``g_0 = 0``,  ``g_1 = −2 (D W δ̂) ⊗ ẑ − 2 h ⊗ δ̂``.

    Returns (g0, g1, gc1): lists over layers of batch means.
    """
    n = x.shape[0]
    z, dz = x, delta
    g0s, g1s, gc1s = [], [], []
    for W in Ws:
        d = z.shape[1]
        r = np.sqrt(np.mean(z * z, 1, keepdims=True))
        zh = z / r
        dh = (dz - zh * np.sum(zh * dz, 1, keepdims=True) / d) / r
        a = zh @ W.T
        h = np.maximum(a, 0)
        Dwd = (a > 0) * (dh @ W.T)
        G = np.sum(h * h, 1)
        p = _sigmoid(G - theta * W.shape[0])
        hwd = np.sum(h * Dwd, 1)
        g0s.append(((2 * (2 * p - 1))[:, None] * h).T @ zh / n)
        c = (-4 * p * (1 - p) * hwd)[:, None]
        g1s.append(
            ((c * h).T @ zh - (2 * p[:, None] * Dwd).T @ zh - (2 * p[:, None] * h).T @ dh) / n
        )
        gc1s.append((-2 * Dwd.T @ zh - 2 * h.T @ dh) / n)
        z, dz = h, Dwd
    return g0s, g1s, gc1s


def _cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def update_cosines(net, x, y_onehot, theta=1.0, sign=1):
    """Per hidden layer, cosines of the top-down-negative FF updates with exact PEPITA's.

    Both updates come from the same weights and batch (``x`` already normalised): PEPITA's is
    :func:`simulations.deep.pepita_updates` on the same network with activation
    normalisation. Computed in float64.

    Returns dict of arrays (L,): ``cos_ff``, ``cos_ff_err``, ``cos_contrastive``,
    ``cos_pred`` (first-order prediction of ``cos_ff``) and ``rel_delta`` (``|F e| / |x|``,
    batch mean), ``cos_pred_err`` (first-order prediction of ``cos_ff_err``).
    """
    from .deep import Network, pepita_updates

    net64 = Network([W.astype(np.float64) for W in net.W], net.F.astype(np.float64), [])
    x = np.asarray(x, np.float64)
    u = topdown_updates(net64, x, y_onehot, theta, sign)
    P, _, _ = pepita_updates(net64, x, y_onehot, "pepita", None, normalize=True)
    delta = sign * (u["e"] @ net64.F.T)
    g0, g1, _ = first_order_updates(net64.W[:-1], x, delta, theta)
    L = len(net.W) - 1
    out = {
        k: np.zeros(L)
        for k in ("cos_ff", "cos_ff_err", "cos_contrastive", "cos_pred", "cos_pred_err")
    }
    for l in range(L):
        out["cos_ff"][l] = _cos(u["g"][l], P[l])
        out["cos_ff_err"][l] = _cos(u["g"][l] - u["g0"][l], P[l])
        out["cos_contrastive"][l] = _cos(u["gc"][l], P[l])
        out["cos_pred"][l] = _cos(g0[l] + g1[l], P[l])
        out["cos_pred_err"][l] = _cos(g1[l], P[l])
    out["rel_delta"] = float(np.mean(np.linalg.norm(delta, axis=1) / np.linalg.norm(x, axis=1)))
    return out


# ----------------------------------------------------------------------------- training


def train_ff_topdown(data, config: TopDownConfig, progress=None) -> TopDownResult:
    """Train FF with top-down negatives on ``data`` (:class:`simulations.data.Dataset`).

    progress : callable(epoch, batch, n_batches, info) or None, called after every batch.
    Stops with ``diverged=True`` at a non-finite loss or weight.
    """
    from .deep import blas_threads, default_blas_threads

    with blas_threads(default_blas_threads()), np.errstate(over="ignore", invalid="ignore"):
        return _train(data, config, progress)


def _train(data, cfg: TopDownConfig, progress):
    from .deep import init_network
    from .local_fields import build_masks, init_masked

    rng = np.random.default_rng(cfg.seed)
    x_train = _normalize(np.asarray(data.x_train, np.float32))
    y_train = np.asarray(data.y_train)
    x_test = _normalize(np.asarray(data.x_test, np.float32))
    y_test = np.asarray(data.y_test)
    C = int(data.n_classes)
    eye = np.eye(C, dtype=np.float32)
    sizes = [x_train.shape[1]] + cfg.hidden + [C]
    net = init_network(sizes, "pepita", cfg.F_scale, int(rng.integers(2**63)))
    masks = build_masks(sizes[0], cfg.hidden, cfg.local_fields) or [None] * len(cfg.hidden)
    masks = list(masks) + [None]
    for W, M in zip(net.W, masks):
        if M is not None:
            init_masked(W, M)
    if cfg.optimizer == "adam":
        opts = [_Adam(W.shape, cfg.lr, cfg.weight_decay, np.float32) for W in net.W]
    else:
        opts = [_SGD(W.shape, cfg.lr, cfg.weight_decay, np.float32, cfg.momentum) for W in net.W]
    L = len(cfg.hidden)
    n = y_train.size
    ev_idx = np.random.default_rng([cfg.seed, 1]).choice(n, min(cfg.eval_train, n), False)
    cos_idx = np.random.default_rng([cfg.seed, 2]).choice(n, min(cfg.cos_batch, n), False)
    n_batches = max(1, math.ceil(n / cfg.batch))
    cos_every = cfg.cos_every or n_batches

    hist = {k: [] for k in ("train_acc", "test_acc", "loss", "layer_loss")}
    cos = {k: [] for k in ("cos_ff", "cos_ff_err", "cos_contrastive", "cos_pred")}
    cos_step = []

    def acc(x, y):
        return float(
            np.mean(_readout(net.W[-1], _hidden_forward(net.W[:-1], x)[-1]).argmax(1) == y)
        )

    def record():
        u = topdown_updates(net, x_train[ev_idx], eye[y_train[ev_idx]], cfg.theta, cfg.sign)
        hist["layer_loss"].append(u["loss"])
        hist["loss"].append(float(np.sum(u["loss"])))
        hist["train_acc"].append(acc(x_train[ev_idx], y_train[ev_idx]))
        hist["test_acc"].append(acc(x_test, y_test))
        return bool(np.isfinite(hist["loss"][-1]))

    def measure(step):
        c = update_cosines(net, x_train[cos_idx], eye[y_train[cos_idx]], cfg.theta, cfg.sign)
        for k in cos:
            cos[k].append(c[k])
        cos_step.append(step)

    record()
    measure(0)
    diverged, done, step = False, 0, 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        for b in range(n_batches):
            idx = order[b * cfg.batch : (b + 1) * cfg.batch]
            u = topdown_updates(net, x_train[idx], eye[y_train[idx]], cfg.theta, cfg.sign)
            for l, (W, opt, g, M) in enumerate(zip(net.W, opts, u["g"] + [u["readout"]], masks)):
                if l < L and not cfg.train_hidden:
                    continue
                if M is not None:
                    g *= M
                opt.step(W, g)
            step += 1
            total = float(np.sum(u["loss"]))
            if not np.isfinite(total) or not all(np.isfinite(W).all() for W in net.W):
                diverged = True
                break
            if step % cos_every == 0:
                measure(step)
            if progress is not None:
                progress(epoch, b + 1, n_batches, {"loss": total})
        done, diverged = end_epoch(hist, done, diverged or not record(), epoch, n_batches, progress)
        if diverged:
            break
    head = float("nan")
    if cfg.head_readout and not diverged:
        layers = list(range(L))
        head = head_readout_accuracy(
            net.W[:-1], data, layers, cfg.head_epochs, cfg.head_lr, cfg.seed
        )
    arr = {k: np.asarray(v, dtype=float).reshape(-1, L) for k, v in cos.items()}
    return TopDownResult(
        cfg,
        np.asarray(hist["train_acc"]),
        np.asarray(hist["test_acc"]),
        np.asarray(hist["loss"]),
        np.asarray(hist["layer_loss"], dtype=float),
        np.asarray(cos_step),
        arr["cos_ff"],
        arr["cos_ff_err"],
        arr["cos_contrastive"],
        arr["cos_pred"],
        diverged,
        net,
        done,
        head,
    )


def topdown_config_from_dict(d: dict) -> TopDownConfig:
    """A :class:`TopDownConfig` from a plain dict, unknown keys rejected."""
    names = {f.name for f in dataclasses.fields(TopDownConfig)}
    bad = sorted(set(d) - names)
    if bad:
        raise ValueError(f"unknown ff-topdown keys {bad}; allowed: {sorted(names)}")
    return TopDownConfig(**d)
