"""The random-feature baselines of the MNIST table train only the read-out.

On the shipped 1000-image fixture (800/200 split): the baseline configs of the table
(deep rules with ``freeze_hidden``, FF rows as the same network at epoch 0 with a linear
head, recurrent FF as its own initial network with its head, top-down FF with
``train_hidden: false``) leave every hidden weight bit-identical to
its initialisation, move the read-out, and differ from the trained run only there.
"""

import re

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


def _head_acc(feats_tr, feats_te, data, cfg, seed):
    """The baseline's head (same Adam head, same generator stream) on given features."""
    from simulations.forward_forward import _train_head

    W, b = _train_head(feats_tr, data.y_train, 10, cfg, np.random.default_rng([seed, 2, 0]))
    return np.mean((feats_te @ W.T + b).argmax(1) == data.y_test)


def test_recurrent_head_readout_reads_step_zero_of_the_dynamics(data):
    """``head_readout`` of recurrent FF reads the trained bottom-up weights through the
    dynamics' own step 0 (computed here by :func:`run_dynamics`, with two different clamped
    labels: step 0 does not see the label), with the baseline's head; NaN when not asked."""
    from simulations.ff_recurrent import RecurrentFFConfig, run_dynamics, train_ff_recurrent
    from simulations.forward_forward import _normalize

    kw = dict(hidden=[64, 32], epochs=1, seed=3, eval_train=200, head_epochs=3)
    r = train_ff_recurrent(data, RecurrentFFConfig(head_readout=True, **kw))
    Ws, Vs = r.weights

    def step0(x, label):
        top = np.zeros((x.shape[0], 10), np.float32)
        top[:, label] = 1.0
        h0 = run_dynamics(Ws, Vs, x, top, 2, 0.3)[0][0]
        return np.concatenate([_normalize(h) for h in h0], axis=1)

    f_tr, f_te = step0(data.x_train, 0), step0(data.x_test, 7)
    assert np.array_equal(f_tr, step0(data.x_train, 3))  # label-free
    assert r.head_test_acc == _head_acc(f_tr, f_te, data, r.config, 3)
    # a real read-out: measured 70.5 % on the 200 fixture test images (chance 10 %)
    assert r.head_test_acc > 0.5
    assert np.isnan(train_ff_recurrent(data, RecurrentFFConfig(**kw)).head_test_acc)


def test_recurrent_baseline_is_the_rows_own_initial_network(data, monkeypatch):
    """The table's recurrent FF baselines are the rows' own configs at ``epochs: 0``, scored
    by the linear head: run here on the fixture, the baseline's ``W_k, V_k`` are bit-identical
    to the initial weights the trained row starts from (captured inside its run, before its
    first FF step) and to the He-uniform/√2 draw rebuilt by hand from the seed; they are
    unchanged by the baseline run (no FF step) and its head is the head on their step 0."""
    import math

    import figures.mnist_table as mt
    import simulations.ff_recurrent as fr
    from simulations.forward_forward import _normalize

    rows = {r["label"]: r for r in mt.load_table_config(quick=False)["rows"]}
    for lbl in ("ff-recurrent", "ff-recurrent (lr 0.001)"):
        row = rows[lbl]
        assert row["base_config"] == {**row["config"], "epochs": 0}, lbl
        assert row["base_score"] == "head" and row["config"]["ff"]["head_readout"], lbl
    row, seed = rows["ff-recurrent (lr 0.001)"], 1
    cfg = parse_config(row["base_config"])[1](seed)
    cfg.eval_train = 200  # speed: only the training-accuracy estimate uses it
    base = fr.train_ff_recurrent(data, cfg)
    assert base.test_acc.size == 1 and base.epochs_done == 0

    # the documented init, in the trainer's draw order W_1, V_1, W_2, V_2
    rng = np.random.default_rng(seed)
    sizes = [784] + row["config"]["layers"] + [10]
    hand = []
    for k in range(1, len(sizes) - 1):
        for fan_in in (sizes[k - 1], sizes[k + 1]):
            lim = math.sqrt(6.0 / fan_in) / math.sqrt(2.0)
            hand.append(rng.uniform(-lim, lim, (sizes[k], fan_in)).astype(np.float32))
    Ws, Vs = base.weights
    got = [m for pair in zip(Ws, Vs) for m in pair]
    assert len(got) == len(hand) == 4
    assert all(np.array_equal(a, b) for a, b in zip(got, hand))

    # the trained row's weights before its first FF step: its first goodness evaluation
    # (the epoch-0 record) runs before any optimiser step; stop the run there
    seen = []

    class Seen(Exception):
        pass

    def spy(W, V, *args):
        seen.append([m.copy() for m in W + V])
        raise Seen

    monkeypatch.setattr(fr, "_grads", spy)
    with pytest.raises(Seen):
        fr.train_ff_recurrent(data, parse_config(row["config"])[1](seed))
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], Ws + Vs))

    def step0(x):
        h, out = _normalize(x), []
        for W in Ws:
            out.append(_normalize(np.maximum(h @ W.T, 0)))
            h = out[-1]
        return np.concatenate(out, axis=1)

    want = _head_acc(step0(data.x_train), step0(data.x_test), data, base.config, seed)
    assert base.head_test_acc == want
    # a real read-out: measured 86.0 % on the 200 fixture test images (chance 10 %), while
    # the untrained goodness read-out (the run's own test_acc) is at 2 %
    assert base.head_test_acc > 0.5


def test_topdown_head_readout_on_the_frozen_layer_is_the_random_feature_head(data):
    """With ``train_hidden`` false, top-down FF's ``head_readout`` is the head on the layer
    as initialised (rebuilt here from the seed), so the table's "→ linear head" line of the
    trained row is compared with the same head on random features."""
    from simulations.ff_topdown import TopDownConfig, train_ff_topdown
    from simulations.forward_forward import _normalize

    kw = dict(hidden=[64], epochs=1, seed=0, head_readout=True, head_epochs=3)
    base = train_ff_topdown(data, TopDownConfig(train_hidden=False, **kw))
    rng = np.random.default_rng(0)
    W0 = init_network([784, 64, 10], "pepita", 0.05, int(rng.integers(2**63))).W[0]

    def feats(x, W):
        return _normalize(np.maximum(_normalize(x) @ W.T, 0))

    want = _head_acc(feats(data.x_train, W0), feats(data.x_test, W0), data, base.config, 0)
    assert base.head_test_acc == want
    r = train_ff_topdown(data, TopDownConfig(**kw))
    W1 = r.network.W[0]
    assert not np.array_equal(W1, W0)
    assert r.head_test_acc == _head_acc(
        feats(data.x_train, W1), feats(data.x_test, W1), data, r.config, 0
    )


@pytest.mark.parametrize("rule", ["ff-recurrent", "ff-topdown"])
@pytest.mark.parametrize(
    "key, value, msg",
    [
        ("head_epochs", 0, "head_epochs must be an integer >= 1, got 0"),
        ("head_epochs", 2.5, "head_epochs must be an integer >= 1, got 2.5"),
        ("head_lr", -0.1, "head_lr must be > 0, got -0.1"),
        ("head_readout", "yes", "head_readout must be true or false, got 'yes'"),
    ],
)
def test_variant_head_options_are_checked(rule, key, value, msg):
    """The configs themselves refuse bad head options (parse_config checks the JSON types
    before them: its message for a fractional head_epochs is checked too)."""
    from simulations.ff_recurrent import RecurrentFFConfig
    from simulations.ff_topdown import TopDownConfig

    Config = RecurrentFFConfig if rule == "ff-recurrent" else TopDownConfig
    with pytest.raises(ValueError, match=re.escape(msg)):
        Config(**{key: value})
    with pytest.raises(ValueError, match="ff.head_epochs must be"):
        parse_config({"rule": rule, "ff": {"head_epochs": 2.5}})


def test_dead_units_of_the_search(data):
    """``figures.mnist_ff_search.dead_units``: a unit whose incoming weights are all negative
    never fires on images (pixels >= 0) and is counted; a unit with positive weights always
    fires, and a unit that fires on some images only is alive. Layer 2 of a network whose
    layer 1 is all dead is all dead too."""
    from figures.mnist_ff_search import dead_units

    rng = np.random.default_rng(0)
    W1 = np.abs(rng.normal(size=(8, 784))).astype(np.float32)  # every unit fires
    W1[[2, 5]] *= -1  # two units can never fire
    W1[0] = np.where(np.arange(784) < 392, 1.0, -1.0)  # top half minus bottom half
    top = data.x_test[:, :392].sum(1) > data.x_test[:, 392:].sum(1)
    assert 0 < top.mean() < 1  # unit 0 fires on some images, not on others
    W2 = rng.normal(size=(4, 8)).astype(np.float32)
    assert dead_units([W1, np.abs(W2)], data.x_test) == [2 / 8, 0.0]
    assert dead_units([-np.abs(W1), W2], data.x_test) == [1.0, 1.0]
