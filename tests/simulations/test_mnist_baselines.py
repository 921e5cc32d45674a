"""The random-feature baselines of the MNIST table train only the read-out.

On the shipped 1000-image fixture (800/200 split): the baseline configs of the table
(deep rules with ``freeze_hidden``, FF rows as the same network at epoch 0 with a linear
head, top-down FF with ``train_hidden: false``) leave every hidden weight bit-identical to
its initialisation, move the read-out, and differ from the trained run only there.
"""

import numpy as np
import pytest
from mnist_data import FIXTURE_DIR

from simulations.data import load_dataset
from simulations.deep import DeepConfig, init_network, train_deep
from simulations.forward_forward import FFConfig, train_ff
from simulations.train import parse_config


@pytest.fixture(scope="module")
def data():
    return load_dataset(name="mnist", dir=str(FIXTURE_DIR), n_train=800, n_test=200)


def _initial(cfg, data):
    """The network :func:`train_deep` starts from (same seed path)."""
    rng = np.random.default_rng(cfg.seed)
    sizes = [data.x_train.shape[1]] + cfg.hidden + [data.n_classes]
    return init_network(sizes, cfg.rule, cfg.F_scale, int(rng.integers(2**63)), cfg.mirror)


@pytest.mark.parametrize("rule", ["bp", "fa", "pepita", "pepita-hebbian", "pepita-time-local"])
def test_frozen_hidden_trains_only_the_readout(data, rule):
    cfg = DeepConfig(hidden=[128, 64], rule=rule, epochs=5, lr=0.05, seed=1, freeze_hidden=True)
    W0 = _initial(cfg, data).W
    r = train_deep(data, cfg)
    for l in range(len(W0) - 1):  # hidden layers: bit-identical
        assert np.array_equal(r.network.W[l], W0[l]), (rule, l)
    assert not np.allclose(r.network.W[-1], W0[-1])  # the read-out learned
    # and it learned something: measured 57.5-60.5 % on seeds 0-2 for every rule (chance
    # 10 %; random two-layer features learn slowly from a 10-class read-out)
    assert r.test_acc[-1] > 0.45, r.test_acc
    # without the freeze the same run moves the hidden weights
    free = train_deep(data, DeepConfig(hidden=[128, 64], rule=rule, epochs=1, seed=1))
    assert not np.array_equal(free.network.W[0], W0[0])


def test_frozen_bp_fa_dfa_readouts_are_the_same_delta_rule(data):
    """With the hidden layers frozen, BP, FA and DFA update the read-out with the same
    ``e ⊗ h_{L−1}`` (same init, dropout masks and batch order), which is why the table's
    bp/fa/dfa rows share one baseline."""
    runs = [
        train_deep(data, DeepConfig(hidden=[64], rule=r, epochs=1, seed=1, freeze_hidden=True))
        for r in ("bp", "fa", "dfa")
    ]
    for r in runs[1:]:
        assert np.array_equal(r.network.W[-1], runs[0].network.W[-1])


def test_linear_classifier_on_pixels(data):
    """``layers: []`` is softmax regression on the pixels; on the fixture it reaches the
    accuracy of a linear model (measured ≈ 80 % on 200 test images; chance 10 %)."""
    _, make, _, _ = parse_config({"rule": "bp", "layers": [], "epochs": 3})
    r = train_deep(data, make(0))
    assert len(r.network.W) == 1 and r.network.W[0].shape == (10, 784)
    assert r.test_acc[-1] > 0.6
    with pytest.raises(ValueError, match="non-empty list"):
        parse_config({"rule": "ff", "layers": []})


def test_ff_baseline_is_the_untrained_network_with_a_head(data):
    """The FF rows' baseline: the same initial weights (same seed, same draw), no FF step,
    a linear head on the normalised activities; weights bit-identical to the supervised
    run's initialisation."""
    base = train_ff(
        data,
        FFConfig(hidden=[64, 64], mode="unsupervised", epochs=0, head_layers=[0, 1], seed=2),
    )
    trained = train_ff(data, FFConfig(hidden=[64, 64], epochs=0, seed=2))
    for a, b in zip(base.weights, trained.weights):
        assert np.array_equal(a, b)
    assert base.test_acc.size == 1 and base.test_acc[0] > 0.5


def test_topdown_readout_only(data):
    from simulations.ff_topdown import TopDownConfig, train_ff_topdown

    cfg = TopDownConfig(hidden=[64], epochs=1, seed=0, train_hidden=False)
    r = train_ff_topdown(data, cfg)
    rng = np.random.default_rng(0)
    net0 = init_network([784, 64, 10], "pepita", cfg.F_scale, int(rng.integers(2**63)))
    assert np.array_equal(r.network.W[0], net0.W[0])
    assert not np.array_equal(r.network.W[1], net0.W[1])


def test_ff_checkpoint_resumes_bit_identically(data, tmp_path):
    """A long FF run can be finished across sessions: 2 epochs with a checkpoint, then the
    3-epoch config resumes from it and ends exactly where an uninterrupted 3-epoch run
    ends (weights and every history entry); a checkpoint of another config is ignored, one
    with more epochs than asked for is refused."""
    ck = tmp_path / "ff.npz"
    kw = dict(hidden=[64, 64], seed=4, eval_train=200)
    train_ff(data, FFConfig(epochs=2, **kw), checkpoint=ck)
    resumed = train_ff(data, FFConfig(epochs=3, **kw), checkpoint=ck)
    straight = train_ff(data, FFConfig(epochs=3, **kw))
    for a, b in zip(resumed.weights, straight.weights):
        assert np.array_equal(a, b)
    assert np.array_equal(resumed.test_acc, straight.test_acc) and resumed.test_acc.size == 4
    assert np.array_equal(resumed.layer_loss, straight.layer_loss)
    other = train_ff(data, FFConfig(epochs=1, lr=0.001, **kw), checkpoint=ck)  # ignored
    assert other.test_acc.size == 2
    train_ff(data, FFConfig(epochs=3, **kw), checkpoint=ck)
    with pytest.raises(ValueError, match="more than the 2 asked"):
        train_ff(data, FFConfig(epochs=2, **kw), checkpoint=ck)


def test_head_readout_is_the_baselines_readout(data):
    """``head_readout`` reads supervised FF's layers out with exactly the baseline's head:
    with no FF step it reproduces the baseline's accuracy to the last bit, and after
    training it is the head fitted on the trained layers (recomputed here from the
    returned weights)."""
    from simulations.forward_forward import _head_features, _train_head

    kw = dict(hidden=[64, 64], head_layers=[0, 1], head_epochs=3, seed=5, eval_train=200)
    base = train_ff(data, FFConfig(mode="unsupervised", epochs=0, **kw))
    same = train_ff(data, FFConfig(epochs=0, head_readout=True, **kw))
    assert same.head_test_acc == base.test_acc[0]
    r = train_ff(data, FFConfig(epochs=1, head_readout=True, **kw))
    f_tr = _head_features(r.weights, data.x_train, [0, 1])
    W, b = _train_head(f_tr, data.y_train, 10, r.config, np.random.default_rng([5, 2, 0]))
    f_te = _head_features(r.weights, data.x_test, [0, 1])
    assert r.head_test_acc == np.mean((f_te @ W.T + b).argmax(1) == data.y_test)
    assert np.isnan(train_ff(data, FFConfig(epochs=0, **kw)).head_test_acc)


def test_validation_split_never_touches_the_test_set(data):
    """``data.validation``: the evaluation slot holds training images only (disjoint from
    the rest, stratified: each class within one image of its share), the test set is gone;
    bad sizes are ValueErrors."""
    from simulations.train import validation_split

    v = validation_split(data, 160, seed=0)
    assert v.y_train.size == 640 and v.y_test.size == 160
    rows = {r.tobytes() for r in data.x_train}
    assert all(r.tobytes() in rows for r in v.x_test)  # from the training images only
    assert not {r.tobytes() for r in v.x_test} & {r.tobytes() for r in v.x_train}
    share = np.bincount(data.y_train, minlength=10) * 160 / 800
    assert np.all(np.abs(np.bincount(v.y_test, minlength=10) - share) <= 1)
    for bad in (0, 800, 1.5, True):
        with pytest.raises(ValueError, match="data.validation must be an integer"):
            validation_split(data, bad)
