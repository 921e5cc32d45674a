"""Local receptive fields: masks, masked layer = dense layer with zeroed weights, bad input."""

import numpy as np
import pytest

from simulations.data import Dataset
from simulations.deep import DeepConfig, Network, _bp_like_updates, forward, train_deep
from simulations.forward_forward import FFConfig, embed_label, layer_loss_grad, train_ff
from simulations.local_fields import (
    LocalField,
    build_masks,
    layer_mask,
    parse_local_fields,
    patch_matrix,
)


def _toy(n=64, side=8, seed=0, n_test=16):
    rng = np.random.default_rng(seed)
    x = rng.random((n + n_test, side * side)).astype(np.float32)
    y = rng.integers(0, 4, n + n_test)
    return Dataset(x[:n], y[:n], x[n:], y[n:], 4, "toy")


def test_patch_layout_by_hand():
    # 8-pixel rows, 3 grid points, 4-wide patches: centres (i + 1/2) 8/3 - 1/2 = 0.83, 3.5,
    # 6.17 → starts round(c - 1.5) = -1 → clamped 0, 2, 5 → clamped to s - f = 4
    A = patch_matrix(8, 3, 4)
    assert [list(np.flatnonzero(r)) for r in A] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    M = layer_mask(2, 8, 3 * 3 * 5, LocalField(4, 3))  # 5 channels at each of 3×3 points
    assert M.shape == (45, 128) and set(np.unique(M)) == {0.0, 1.0}
    assert np.all(M.sum(1) == 2 * 16)  # every unit: 4×4 patch × 2 input channels
    # unit (channel 1, grid point (2, 0)) sees rows 4..7, columns 0..3 of both input channels
    u = 1 * 9 + 2 * 3 + 0
    img = M[u].reshape(2, 8, 8)
    assert np.all(img[:, 4:, :4] == 1) and img.sum() == 32


def test_masked_ff_layer_equals_dense_layer_with_zeroed_weights():
    """One SGD step of a local FF layer = the dense layer's step on the same zeroed weights,
    masked; the masked-out weights stay exactly zero although their dense gradient is not."""
    data = _toy()
    lf = [{"field": 5, "grid": 2}]
    common = dict(
        hidden=[8], optimizer="sgd", momentum=0.0, lr=0.05, batch=64, seed=3, eval_train=64
    )
    W0 = train_ff(data, FFConfig(epochs=0, **common)).weights[0]
    loc0 = train_ff(data, FFConfig(epochs=0, local_fields=lf, **common)).weights[0]
    M = build_masks(64, [8], lf, always_seen=range(4))[0]
    # forward: the initial local weights are the dense ones, zeroed outside the patches and
    # rescaled to the patch's fan-in (29 = 25 pixels + 4 label slots, overlapping)
    fan = M.sum(1, keepdims=True)
    assert np.allclose(loc0, W0 * M * np.sqrt(64 / fan), rtol=1e-6)
    # update: one epoch of one batch, batch order irrelevant (the whole set is the batch)
    loc1 = train_ff(data, FFConfig(epochs=1, local_fields=lf, **common)).weights[0]
    # batch order and negatives come from the training loop's generator: replay its draws
    rng = np.random.default_rng(3)
    rng.uniform(-1, 1, W0.shape)  # initial weights
    perm = rng.permutation(64)  # batch order
    y = data.y_train[perm]
    wrong = (y + rng.integers(1, 4, size=64)) % 4  # random wrong labels
    xp = embed_label(data.x_train[perm], y, 4)
    xn = embed_label(data.x_train[perm], wrong, 4)
    _, g, _, _ = layer_loss_grad(loc0.astype(np.float64), xp, xn, 8.0)
    assert np.max(np.abs(g * (1 - M))) > 1e-3  # the mask does something
    expect = loc0 - 0.05 * g * M
    assert np.all(loc1[M == 0] == 0)
    assert np.allclose(loc1, expect, atol=1e-5), np.max(np.abs(loc1 - expect))


def test_masked_bp_layer_equals_dense_layer_with_zeroed_weights():
    data = _toy(seed=1)
    lf = [{"field": 3, "grid": 4}]
    common = dict(hidden=[32], rule="bp", dropout=0.0, momentum=0.0, lr=0.1, batch=64, seed=5)
    dense0 = train_deep(data, DeepConfig(epochs=0, **common)).network
    loc0 = train_deep(data, DeepConfig(epochs=0, local_fields=lf, **common)).network
    M = build_masks(64, [32], lf)[0]
    assert np.allclose(loc0.W[0], dense0.W[0] * M * np.sqrt(64 / 9), rtol=1e-6)
    assert np.array_equal(loc0.W[1], dense0.W[1])  # the read-out stays dense
    # forward pass = the dense network's with the zeroed weights
    zeroed = Network([loc0.W[0].copy(), loc0.W[1].copy()], loc0.F, [])
    x = data.x_train
    hs, As = forward(zeroed, x)
    assert np.array_equal(forward(loc0, x)[0][-1], hs[-1])
    # one full-batch step: the dense BP update on the zeroed weights, masked
    loc1 = train_deep(data, DeepConfig(epochs=1, local_fields=lf, **common)).network
    perm = np.random.default_rng(5)
    perm.integers(2**63)
    perm = perm.permutation(64)
    hs, As = forward(zeroed, x[perm])
    e = hs[-1] - np.eye(4, dtype=np.float32)[data.y_train[perm]]
    dW = _bp_like_updates(zeroed, hs, As, e, None, "bp")
    assert np.max(np.abs(dW[0] * (1 - M))) > 1e-4
    assert np.allclose(loc1.W[0], loc0.W[0] - 0.1 * dW[0] * M, atol=1e-6)
    assert np.allclose(loc1.W[1], loc0.W[1] - 0.1 * dW[1], atol=1e-6)


def test_bad_local_fields():
    with pytest.raises(ValueError, match="larger than the map"):
        build_masks(784, [196], [{"field": 29, "grid": 7}])
    with pytest.raises(ValueError, match="larger than the map"):
        train_ff(_toy(), FFConfig(hidden=[16], epochs=0, local_fields=[{"field": 9, "grid": 4}]))
    with pytest.raises(ValueError, match="multiple of grid"):
        build_masks(784, [100], [{"field": 5, "grid": 7}])
    with pytest.raises(ValueError, match="sits on a dense layer"):
        build_masks(784, [98, 98], [None, {"field": 3, "grid": 7}])
    with pytest.raises(ValueError, match="square images"):
        build_masks(50, [4], [{"field": 2, "grid": 2}])
    with pytest.raises(ValueError, match="only 1 hidden"):
        FFConfig(hidden=[16], local_fields=[None, None])
    with pytest.raises(ValueError, match="positive integers"):
        DeepConfig(hidden=[16], local_fields=[{"field": 0, "grid": 4}])
    assert parse_local_fields(None, 2) == [None, None]


def test_paper_layouts():
    """The FF paper's MNIST network: 4 × 4 locations, stride 6, 10 × 10 patches; then squares
    of 2 × 2 adjacent grid points. CIFAR-10: 11 × 11 patches of all three channels."""
    assert [int(np.flatnonzero(r)[0]) for r in patch_matrix(28, 4, 10)] == [0, 6, 12, 18]
    assert [list(np.flatnonzero(r)) for r in patch_matrix(4, 3, 2)] == [[0, 1], [1, 2], [2, 3]]
    assert [list(np.flatnonzero(r)) for r in patch_matrix(3, 2, 2)] == [[0, 1], [1, 2]]
    masks = build_masks(
        784,
        [2048, 1980, 2048],
        [{"field": 10, "grid": 4}, {"field": 2, "grid": 3}, {"field": 2, "grid": 2}],
    )
    assert [int(m.sum(1)[0]) for m in masks] == [100, 4 * 128, 4 * 220]
    assert all(np.all(m.sum(1) == m.sum(1)[0]) for m in masks)
    M = build_masks(3072, [3072], [{"field": 11, "grid": 32}])[0]
    assert np.all(M.sum(1) == 363)
