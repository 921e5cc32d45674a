"""FF with top-down negatives x̃ = x − F e: first-order expansion in F, cosine to PEPITA."""

import copy

import numpy as np
import pytest
from mnist_data import bound
from mnist_data import mnist as load_mnist_split

from simulations.deep import init_network
from simulations.ff_topdown import (
    TopDownConfig,
    first_order_updates,
    topdown_updates,
    train_ff_topdown,
    update_cosines,
)
from simulations.forward_forward import _normalize


@pytest.fixture(scope="module")
def mnist_small():
    return load_mnist_split(2000, 500)  # fixture: its 800/200 split


def _updates_at(net, x, y, eps):
    n2 = copy.deepcopy(net)
    n2.F = net.F * eps
    return topdown_updates(n2, x, y, 1.0)


def test_first_order_expansion_in_F_matches_finite_differences():
    """g(εF) = g_0 + ε g_1 + O(ε²) for both losses and both layers of a 2-hidden-layer net:
    g_0 = the update at F = 0 exactly; g_1 = the central difference (error O(ε²)) at ε = 1e-3,
    relative to |g_1|, below 1e-4 (measured ~2e-7; ReLU kinks are not crossed at this ε)."""
    rng = np.random.default_rng(0)
    net = init_network([50, 20, 15, 4], "pepita", 0.5, seed=1, dtype=np.float64)
    x = _normalize(rng.random((30, 50)))
    y = np.eye(4)[rng.integers(0, 4, 30)]
    delta = topdown_updates(net, x, y)["e"] @ net.F.T  # e does not depend on F
    g0, g1, gc1 = first_order_updates(net.W[:-1], x, delta, 1.0)
    eps = 1e-3
    up, um, u0 = (
        _updates_at(net, x, y, eps),
        _updates_at(net, x, y, -eps),
        _updates_at(net, x, y, 0.0),
    )
    for l in range(2):
        assert np.allclose(u0["g"][l], g0[l], atol=1e-6 * np.abs(g0[l]).max())
        assert np.abs(u0["gc"][l]).max() < 1e-12  # contrastive: no zeroth order
        fd = (up["g"][l] - um["g"][l]) / (2 * eps)
        fdc = (up["gc"][l] - um["gc"][l]) / (2 * eps)
        assert np.abs(g1[l]).max() > 1e-3  # not vacuous
        assert np.abs(fd - g1[l]).max() < 1e-4 * np.abs(g1[l]).max()
        assert np.abs(fdc - gc1[l]).max() < 1e-4 * np.abs(gc1[l]).max()


def test_cosine_to_pepita_at_realistic_F(mnist_small):
    """Measured at PEPITA's F (F_scale 0.05, |F e|/|x| ≈ 0.25 %) on 500 MNIST images and a
    784-256-256-10 network at initialisation, layer by layer, against the first-order
    prediction: second-order terms are O(|F e|/|x|) relative to the first-order ones, so the
    measured and predicted cosines agree to 1e-2 (measured: 1e-5 for the full update, 2e-3
    for its error-driven part). Flipping the sign of the top-down signal (x + F e) flips the
    error-driven part's cosine, again up to O(|F e|/|x|)."""
    x = _normalize(mnist_small.x_train[:500].astype(np.float64))
    y = np.eye(10)[mnist_small.y_train[:500]]
    net = init_network([784, 256, 256, 10], "pepita", 0.05, seed=1)
    c = update_cosines(net, x, y)
    flipped = update_cosines(net, x, y, sign=-1)
    print({k: np.round(v, 4) for k, v in c.items()})
    assert c["rel_delta"] < 0.01
    assert np.allclose(c["cos_ff"], c["cos_pred"], atol=1e-2)
    assert np.allclose(c["cos_ff_err"], c["cos_pred_err"], atol=1e-2)
    assert np.allclose(flipped["cos_ff_err"], -c["cos_ff_err"], atol=2e-2)
    # what it shows (checked against the prediction above, not hard-coded): the error-driven
    # part of the FF update points against PEPITA's update in the first layer, while the
    # whole update is nearly orthogonal to it (the F-independent homeostatic term dominates)
    assert c["cos_pred_err"][0] < 0 and abs(c["cos_ff"][0]) < abs(c["cos_ff_err"][0])


def test_topdown_ff_trains_and_records_cosines(mnist_small):
    """Three epochs on 2000 images (1 × 128): the read-out learns (seeds 0-2: 56.4, 58.6,
    63.0 % after three epochs, 35-41 % after one; bound 45 %, chance 10 %), and the
    first-order prediction tracks the measured cosine over training (|F e|/|x| stays at a
    few 1e-3, so the agreement of the test above holds: 2e-2). Fixture (800/200, seeds 0-9):
    mean 44.1 %, min 33.5, std 5.9; bound 20 %."""
    r = train_ff_topdown(
        mnist_small,
        TopDownConfig(hidden=[128], epochs=3, cos_every=10, cos_batch=200, eval_train=500, seed=0),
    )
    assert not r.diverged and r.epochs_done == 3
    assert r.test_acc[-1] > bound(0.45, 0.2), r.test_acc
    steps = 3 * -(-mnist_small.y_train.size // 64)  # 3 epochs of ceil(n / 64) batches
    n_cos = len(range(0, steps, 10))  # 96 steps -> 10 measurements
    assert r.cos_ff.shape == (n_cos, 1) and list(r.cos_step) == list(range(0, steps, 10))
    assert np.allclose(r.cos_ff, r.cos_pred, atol=2e-2)
    assert np.all(np.abs(r.cos_ff) <= 1) and r.layer_loss.shape == (4, 1)


def test_topdown_bad_input():
    with pytest.raises(ValueError, match="F_scale"):
        TopDownConfig(F_scale=0.0)
    with pytest.raises(ValueError, match="sign"):
        TopDownConfig(sign=0)
    with pytest.raises(ValueError, match="larger than the map"):
        from simulations.data import Dataset

        d = Dataset(
            np.zeros((4, 16), np.float32),
            np.zeros(4, int),
            np.zeros((2, 16), np.float32),
            np.zeros(2, int),
            2,
            "toy",
        )
        train_ff_topdown(d, TopDownConfig(hidden=[4], local_fields=[{"field": 5, "grid": 2}]))


def test_contrastive_ff_is_minus_twice_pepita_hebbian_without_normalisation():
    """Without input normalisation, the gradient of the contrastive loss G(x̃) − G(x) with
    respect to W_1 (central finite differences, x̃ = x − F e) equals −2 × PEPITA-Hebbian's
    ΔW_1 = h ⊗ x − h̃ ⊗ x̃ exactly, at any F (here a large one, |F e|/|x| ~ 0.5)."""
    from simulations.deep import pepita_updates

    rng = np.random.default_rng(2)
    net = init_network([12, 7, 3], "pepita", 20.0, seed=4, dtype=np.float64)
    x = rng.random((9, 12))
    y = np.eye(3)[rng.integers(0, 3, 9)]
    dW, e, _ = pepita_updates(net, x, y, "pepita-hebbian")
    xt = x - e @ net.F.T
    assert np.mean(np.linalg.norm(e @ net.F.T, axis=1) / np.linalg.norm(x, axis=1)) > 0.2

    def loss(W):
        G = lambda z: np.sum(np.maximum(z @ W.T, 0) ** 2, 1)  # noqa: E731
        return np.mean(G(xt) - G(x))

    W, eps = net.W[0], 1e-6
    num = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += eps
        Wm[idx] -= eps
        num[idx] = (loss(Wp) - loss(Wm)) / (2 * eps)
    assert np.abs(dW[0]).max() > 1e-2
    assert np.allclose(num, -2 * dW[0], atol=1e-6)
