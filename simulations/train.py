"""``python -m simulations train CONFIG.json -o OUT.npz [--quiet]``: networks on real data.

Trains one network per seed with the rule named in the config and saves every per-epoch
history in one ``.npz``. A hand-written progress bar goes to stderr (none with ``--quiet``).

Config keys (JSON object; unknown keys are an error)
----------------------------------------------------
``rule`` (required)
    ``bp``, ``fa``, ``dfa``, ``pepita``, ``pepita-forward``, ``pepita-hebbian``,
    ``pepita-time-local``, ``ff`` (supervised Forward-Forward), ``ff-unsupervised``,
    ``ff-recurrent`` (recurrent FF, :mod:`simulations.ff_recurrent`), ``ff-topdown`` (FF
    with top-down negatives ``x − F e``, :mod:`simulations.ff_topdown`).
``layers``
    hidden-layer widths, e.g. ``[1024]`` (input and output widths come from the data).
    Default ``[256]``.
``epochs`` (5), ``lr`` (0.01; FF 0.003), ``momentum`` (0.9), ``batch`` (64)
    optimiser options, and ``weight_decay`` (0)
    (BP/FA/DFA/PEPITA: SGD with momentum; FF: see ``ff.optimizer``).
``dropout`` (0.1), ``lr_decay_epochs`` ([]), ``lr_decay`` (0.1), ``F_scale`` (0.05)
    deep-network options (not for FF), with ``normalize`` (false) and ``mirror``
    (null): dropout probability (same mask in both PEPITA
    passes), epochs at which the lr is multiplied by ``lr_decay``, PEPITA feedback scale
    (F uniform in ±F_scale·√(6/d₀)), per-sample RMS normalisation of hidden activities,
    weight mirroring ``{"pre_epochs": 2, "steps": 1, "lr": 0.01, "decay": 0.0,
    "noise_std": 1.0, "batch": 64}`` (PEPITA rules only), and ``freeze_hidden`` (false;
    true = only the read-out learns, on the hidden layers as initialised: the random-feature
    baseline). ``layers: []`` with a deep rule is softmax regression on the pixels.
``ff``
    Forward-Forward options: ``optimizer`` ("adam" | "sgd"), ``theta`` (threshold per unit,
    1.0), ``negatives`` ("random" | "hardest"), ``label_scale`` (1.0), ``n_blur`` (6),
    ``head_layers`` (null), ``head_epochs`` (5), ``head_lr`` (0.01), ``eval_train`` (2000),
    ``goodness`` ("sum" | "mean"), ``peer_norm`` (0: off), ``peer_momentum`` (0.9),
    ``head_readout`` (false; supervised: also the linear head on the trained layers,
    output ``head_test_acc``).
    ``ff-recurrent``: ``optimizer``, ``theta``, ``label_scale``, ``eval_train``, ``steps`` (8),
    ``damping`` (0.3), ``window`` ([3, 5]). ``ff-topdown``: ``optimizer``, ``theta``,
    ``eval_train``, ``sign`` (+1: negative ``x − F e``; −1: ``x + F e``), ``cos_every`` (0 =
    once per epoch), ``cos_batch`` (500), ``train_hidden`` (true; false = read-out only, on
    the fixed random hidden layers); its feedback scale is the top-level ``F_scale``. Both
    also take ``head_readout`` (false; the linear head of the FF baselines on the trained
    hidden layers, ``head_epochs`` 20, ``head_lr`` 0.01; output ``head_test_acc``).
``local_fields`` (null)
    local receptive fields of the hidden layers, ``[{"field": f, "grid": g} | null, …]``
    (:mod:`simulations.local_fields`); every rule but ``ff-recurrent``.
``seeds``
    list of run seeds (default ``[0]``); an integer n means ``[0, …, n−1]``.
``data``
    ``{"name": "mnist" | "cifar10" | "teacher-student", "dir": null, "n_train": 8000,
    "n_test": 2000, "split": "auto" | "official" | "subset", "split_seed": 0,
    "download": false}``; for ``teacher-student`` also ``N``, ``M``, ``kind`` ("sign" |
    "argmax"), ``input_scale``. ``dir`` defaults to ``$ODEFLOW_MNIST_DIR``, else
    ``$ODEFLOW_DATA/mnist``, else ``~/.cache/odeflow/data/mnist`` (``…CIFAR10…``,
    ``cifar10`` for CIFAR-10; :mod:`simulations.datasets`); ``download: true`` fetches
    missing files there (SHA-256 verified); ``n_train``/``n_test`` null = all available.
    ``validation`` (null): an integer n carves a stratified validation set of n examples out
    of the *training* set (seeded by ``split_seed``) and evaluates on it instead of the test
    set, which is then never touched (for tuning; :func:`validation_split`).
``name``, ``description``
    free text, stored with the results.

Output (``OUT.npz``), S seeds, E epochs, index 0 = before training
------------------------------------------------------------------
``seeds`` (S,), ``config`` (the JSON text), ``data_source``, ``train_acc``, ``test_acc``
(S, E+1), ``train_loss``, ``test_loss`` (S, E+1; FF: summed layer losses in ``train_loss``,
``layer_loss`` (S, E+1, L)), ``angle`` (S, E+1, PEPITA rules: degrees between F and
(W_L…W₁)ᵀ), ``diverged`` (S,) bool, ``epochs_done`` (S,), ``slowness_a_max``,
``slowness_s`` (S,): fit ``a(t) = a_max t/(s+t)`` of the test accuracy. ``ff-topdown``
also: ``cos_step`` (M,) batches at which the update cosines were measured and ``cos_ff``,
``cos_ff_err``, ``cos_contrastive``, ``cos_pred`` (S, M, L), see :mod:`simulations.ff_topdown`.
Histories of a run that diverged end at ``epochs_done``; the padding after it is NaN, flagged by
``diverged``.

Exit code: 0 on success, 1 if every run diverged, 2 for a bad config or unreadable data
(the message names the key or file and what is allowed).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .data import load_dataset
from .deep import PEPITA_RULES, DeepConfig, slowness_fit, train_deep
from .deep import RULES as DEEP_RULES
from .forward_forward import FFConfig, train_ff
from .train_checks import check_train_config

__all__ = [
    "ALL_RULES",
    "CONFIG_KEYS",
    "CHECKPOINT_RULES",
    "parse_config",
    "load_config",
    "run_config",
    "validation_split",
    "checkpoint_path",
    "main",
]

ALL_RULES = DEEP_RULES + ("ff", "ff-unsupervised", "ff-recurrent", "ff-topdown")
_COMMON = (
    "rule",
    "layers",
    "epochs",
    "lr",
    "momentum",
    "batch",
    "weight_decay",
    "seeds",
    "data",
    "name",
    "description",
    "local_fields",
)
_DEEP_ONLY = (
    "dropout",
    "lr_decay_epochs",
    "lr_decay",
    "F_scale",
    "normalize",
    "mirror",
    "freeze_hidden",
)
_FF_ONLY = ("ff",)
CONFIG_KEYS = _COMMON + _DEEP_ONLY + _FF_ONLY
_FF_KEYS = (
    "optimizer",
    "theta",
    "negatives",
    "label_scale",
    "n_blur",
    "head_layers",
    "head_epochs",
    "head_lr",
    "eval_train",
    "goodness",
    "peer_norm",
    "peer_momentum",
    "head_readout",
)
_DATA_KEYS = (
    "name",
    "dir",
    "n_train",
    "n_test",
    "split",
    "split_seed",
    "download",
    "N",
    "M",
    "kind",
    "input_scale",
    "validation",
)


#: (key, integer?, test, what is allowed) for the optimiser options
_NUMBERS = (
    ("epochs", True, lambda x: x >= 0, "an integer >= 0"),
    ("batch", True, lambda x: x >= 1, "an integer >= 1"),
    ("lr", False, lambda x: x > 0, "a number > 0"),
    ("momentum", False, lambda x: 0 <= x < 1, "a number in [0, 1)"),
    ("weight_decay", False, lambda x: x >= 0, "a number >= 0"),
)


def _check_numbers(cfg: dict) -> None:
    """Wrong types or values of the optimiser options, naming the key and the value
    (``"lr": "0.1"``, ``true``, ``null`` or ``-0.1`` are errors, never converted)."""
    for key, integer, ok, allowed in _NUMBERS:
        if key not in cfg:
            continue
        x = cfg[key]
        typ = int if integer else (int, float)
        if isinstance(x, bool) or not isinstance(x, typ) or not ok(x) or x != x:
            raise ValueError(f"{key} must be {allowed}, got {json.dumps(x)}")


def parse_config(cfg: dict):
    """Validate a config dict.

    Returns
    -------
    (rule, make_config, seeds, data_kwargs) where ``make_config(seed)`` builds the
    :class:`DeepConfig` or :class:`FFConfig` of one run.

    Raises
    ------
    ValueError naming the offending key and the allowed values.
    """
    if not isinstance(cfg, dict):
        raise ValueError("config must be a JSON object")
    bad = sorted(set(cfg) - set(CONFIG_KEYS))
    if bad:
        raise ValueError(f"unknown config keys {bad}; allowed: {', '.join(CONFIG_KEYS)}")
    rule = cfg.get("rule")
    if rule not in ALL_RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(ALL_RULES)}")
    is_ff = rule.startswith("ff")
    wrong = [
        k
        for k in (_DEEP_ONLY if is_ff else _FF_ONLY)
        if k in cfg and not (rule == "ff-topdown" and k == "F_scale")
    ]
    if rule == "ff-recurrent" and "local_fields" in cfg:
        wrong.append("local_fields")
    if wrong:
        raise ValueError(f"config keys {wrong} do not apply to rule {rule!r}")
    seeds = cfg.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ValueError(f"seeds must be a non-empty list of integers or a count, got {seeds!r}")
    data = dict(cfg.get("data", {"name": "mnist"}))
    bad = sorted(set(data) - set(_DATA_KEYS))
    if bad:
        raise ValueError(f"unknown data keys {bad}; allowed: {', '.join(_DATA_KEYS)}")
    data.setdefault("name", "mnist")
    layers = cfg.get("layers", [256])
    _check_numbers(cfg)
    check_train_config(cfg)
    common = {
        k: cfg[k]
        for k in ("epochs", "lr", "momentum", "batch", "weight_decay", "local_fields")
        if k in cfg
    }
    if rule in _FF_VARIANTS:
        make = _ff_variant_maker(rule, cfg, layers, common)
    elif is_ff:
        ff = dict(cfg.get("ff", {}))
        bad = sorted(set(ff) - set(_FF_KEYS))
        if bad:
            raise ValueError(f"unknown ff keys {bad}; allowed: {', '.join(_FF_KEYS)}")
        mode = "unsupervised" if rule == "ff-unsupervised" else "supervised"

        def make(seed):
            return FFConfig(hidden=layers, mode=mode, seed=seed, **common, **ff)
    else:
        deep = {k: cfg[k] for k in _DEEP_ONLY if k in cfg}

        def make(seed):
            return DeepConfig(hidden=layers, rule=rule, seed=seed, **common, **deep)

    make(seeds[0])  # validate the option values now, before any data is loaded
    return rule, make, seeds, data


#: FF variants of issue 14: rule -> (module, config class, keys allowed in "ff")
_FF_VARIANTS = {
    "ff-recurrent": (
        "ff_recurrent",
        "RecurrentFFConfig",
        (
            "optimizer",
            "theta",
            "label_scale",
            "eval_train",
            "steps",
            "damping",
            "window",
            "head_readout",
            "head_epochs",
            "head_lr",
        ),
    ),
    "ff-topdown": (
        "ff_topdown",
        "TopDownConfig",
        (
            "optimizer",
            "theta",
            "eval_train",
            "sign",
            "cos_every",
            "cos_batch",
            "train_hidden",
            "head_readout",
            "head_epochs",
            "head_lr",
        ),
    ),
}


def _ff_variant_maker(rule, cfg, layers, common):
    import importlib

    mod, cls, keys = _FF_VARIANTS[rule]
    ff = dict(cfg.get("ff", {}))
    bad = sorted(set(ff) - set(keys))
    if bad:
        raise ValueError(f"unknown ff keys {bad} for rule {rule!r}; allowed: {', '.join(keys)}")
    if "F_scale" in cfg:
        ff["F_scale"] = cfg["F_scale"]
    Config = getattr(importlib.import_module(f"simulations.{mod}"), cls)

    def make(seed):
        return Config(hidden=layers, seed=seed, **common, **ff)

    return make


def _train_one(rule, data, c, bar, checkpoint=None):
    """Train one run of ``rule`` with config ``c`` (``checkpoint``: FF and unsupervised FF
    only, see :func:`simulations.forward_forward.train_ff`)."""
    if rule == "ff-recurrent":
        from .ff_recurrent import train_ff_recurrent

        return train_ff_recurrent(data, c, progress=bar)
    if rule == "ff-topdown":
        from .ff_topdown import train_ff_topdown

        return train_ff_topdown(data, c, progress=bar)
    if rule.startswith("ff"):
        return train_ff(data, c, progress=bar, checkpoint=checkpoint)
    return train_deep(data, c, progress=bar)


def load_config(path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the config ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


class EpochBar:
    """The trainers' progress callback ``(epoch, batch, n_batches, info)``: one
    :class:`theory.runtime.progress.ProgressBar` per epoch, the loss after it, the test
    accuracy when the epoch ends."""

    def __init__(self, label_fn, stream=None):
        self.label_fn, self.stream = label_fn, stream
        self._bar, self._epoch = None, None

    def __call__(self, epoch, batch, n_batches, info):
        from theory.runtime.progress import ProgressBar

        if self._bar is None or epoch != self._epoch:
            self._bar = ProgressBar(
                n_batches,
                label=self.label_fn(epoch),
                stream=self.stream,
                delay=0.0,
                min_interval=0.1,
                unit="batch",
            )
            self._epoch = epoch
        loss = f"loss {info['loss']:.4g}"
        if info.get("epoch_done", False):
            self._bar.update(batch, extra=loss, force=True)
            self._bar.close(note=f"test acc {100 * info['test_acc']:.2f}%")
            self._bar = None
        else:
            self._bar.update(batch, extra=loss)


def _pad(rows, fill=np.nan):
    n = max(len(r) for r in rows)
    out = np.full((len(rows), n) + np.shape(rows[0])[1:], fill, dtype=float)
    for i, r in enumerate(rows):
        if len(r):
            out[i, : len(r)] = r
    return out


class _EpochHook:
    """Progress callback that calls ``hook(epoch, info)`` when an epoch ends and passes
    every call on to ``inner`` (a progress bar or None)."""

    def __init__(self, inner, hook):
        self.inner, self.hook = inner, hook

    def __call__(self, epoch, batch, n_batches, info):
        if info.get("epoch_done", False):
            self.hook(epoch, info)
        if self.inner is not None:
            self.inner(epoch, batch, n_batches, info)


def validation_split(data, n_val: int, seed: int = 0):
    """``data`` with ``n_val`` training examples (stratified, seeded) moved into the
    evaluation slot and the test set dropped: a tuning split that never sees the test set.

    Raises ValueError unless 1 <= n_val < the number of training examples."""
    import dataclasses

    from .data import stratified_split

    n = data.y_train.size
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 1 <= n_val < n:
        raise ValueError(
            f"data.validation must be an integer in [1, {n - 1}] (training examples to "
            f"hold out), got {n_val!r}"
        )
    tr, va = stratified_split(data.y_train, n - n_val, n_val, seed=[seed, 25])
    return dataclasses.replace(
        data,
        x_train=data.x_train[tr],
        y_train=data.y_train[tr],
        x_test=data.x_train[va],
        y_test=data.y_train[va],
        source=f"{data.source}; validation: {n_val} of its training examples (test set unused)",
    )


#: rules whose trainer writes a per-epoch checkpoint and resumes from it
CHECKPOINT_RULES = ("ff", "ff-unsupervised")


def checkpoint_path(directory, cfg: dict, seed: int):
    """``directory/<rule>-<hash of the config without seeds and epochs>-seed<k>.npz``: the
    same file for a longer run of the same settings, so it continues the shorter one."""
    import hashlib

    c = {k: v for k, v in cfg.items() if k not in ("seeds", "epochs", "name", "description")}
    h = hashlib.sha1(json.dumps(c, sort_keys=True).encode()).hexdigest()[:12]
    return Path(directory) / f"{cfg['rule']}-{h}-seed{seed}.npz"


def run_config(cfg: dict, quiet: bool = True, on_epoch=None, checkpoint_dir=None) -> dict:
    """Run every seed of a config; returns the arrays written by :func:`main`.

    on_epoch : callable(seed_index, epoch, info) called when an epoch ends (``info`` has
        ``loss`` and ``test_acc``), or None
    checkpoint_dir : folder of per-epoch checkpoints (rules in :data:`CHECKPOINT_RULES`;
        :func:`checkpoint_path`): a stopped run resumes where its last epoch ended, and a
        run with more epochs continues a finished shorter one. None = no checkpoints.
    """
    rule, make, seeds, data_kw = parse_config(cfg)
    data_kw = dict(data_kw)
    n_val = data_kw.pop("validation", None)
    data = load_dataset(**data_kw)
    if n_val is not None:
        data = validation_split(data, n_val, data_kw.get("split_seed", 0))
    runs = []
    for i, seed in enumerate(seeds):
        c = make(seed)
        bar = None
        if not quiet:
            bar = EpochBar(
                lambda ep, i=i, c=c: (
                    f"{rule} seed {seeds[i]} ({i + 1}/{len(seeds)}) epoch {ep + 1}/{c.epochs}"
                )
            )
        if on_epoch is not None:
            bar = _EpochHook(bar, lambda ep, info, i=i: on_epoch(i, ep, info))
        ck = None
        if checkpoint_dir is not None and rule in CHECKPOINT_RULES:
            ck = checkpoint_path(checkpoint_dir, cfg, seed)
        r = _train_one(rule, data, c, bar, ck)
        if r.diverged and not quiet:
            why = (
                "the loss became non-finite or grew beyond 10⁴ × its initial value"
                if rule.startswith("ff")
                else "non-finite loss"
            )
            print(
                f"\n{rule} seed {seed}: diverged after {r.epochs_done} epochs ({why}; "
                "learning rate too large?); run stopped",
                file=sys.stderr,
            )
        runs.append(r)
    out = {
        "seeds": np.asarray(seeds),
        "config": json.dumps(cfg, sort_keys=True),
        "data_source": data.source,
        "rule": rule,
        "train_acc": _pad([r.train_acc for r in runs]),
        "test_acc": _pad([r.test_acc for r in runs]),
        "diverged": np.asarray([r.diverged for r in runs]),
        "epochs_done": np.asarray([r.epochs_done for r in runs]),
    }
    if rule.startswith("ff"):  # NaN where no head read-out was asked for
        out["head_test_acc"] = np.asarray([r.head_test_acc for r in runs], float)
    if rule.startswith("ff"):
        out["train_loss"] = _pad([r.loss for r in runs])
        out["layer_loss"] = _pad([r.layer_loss for r in runs])
        if rule == "ff-topdown":
            out["cos_step"] = max((r.cos_step for r in runs), key=len)
            for k in ("cos_ff", "cos_ff_err", "cos_contrastive", "cos_pred"):
                out[k] = _pad([getattr(r, k) for r in runs])
    else:
        out["train_loss"] = _pad([r.train_loss for r in runs])
        out["test_loss"] = _pad([r.test_loss for r in runs])
        if rule in PEPITA_RULES:
            out["angle"] = _pad([r.angle for r in runs])
    fits = [slowness_fit(r.test_acc) if r.test_acc.size >= 3 else None for r in runs]
    out["slowness_a_max"] = np.asarray([f.a_max if f and f.ok else np.nan for f in fits])
    out["slowness_s"] = np.asarray([f.s if f and f.ok else np.nan for f in fits])
    return out


def main(argv=None) -> int:
    from theory.runtime import cli

    from .train_args import parser

    try:
        a = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    cli.set_verbose(not a.quiet)
    return cli.run_command("simulations train", _main, a)


def _main(a) -> int:
    from theory.runtime import cli

    outp = cli.check_output(a.output, (".npz",))  # before any work
    cfg = load_config(a.config)
    t0 = time.time()
    out = run_config(cfg, quiet=a.quiet)
    with cli.atomic_path(outp) as tmp:
        np.savez(tmp, **out)
    if not a.quiet:
        fin = out["test_acc"][np.arange(out["test_acc"].shape[0]), out["epochs_done"]]
        print(
            f"{out['rule']}: final test accuracy {100 * np.mean(fin):.2f}% "
            f"± {100 * np.std(fin):.2f}% over {fin.size} seed(s) in {time.time() - t0:.0f} s; "
            f"wrote {outp}",
            file=sys.stderr,
        )
    return cli.EXIT_STOPPED if bool(np.all(out["diverged"])) else cli.EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
