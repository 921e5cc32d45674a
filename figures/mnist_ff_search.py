"""The FF settings search of docs/mnist.md, on a validation split (never the test set).

``python -m figures.mnist_ff_search [--config figures/configs/mnist-ff-search.json]
[-o out/ff-search.json]`` runs every entry of the config's ``runs`` (a ``python -m
simulations train`` config merged onto ``base``) with ``data.validation`` held out of the
8000 training images, and for supervised FF also reads the trained network out with the
baseline's head: a linear softmax head (Adam, 20 epochs) on the normalised activities with
the label pixels blank, so "did FF learn features?" is answered with the read-out of the
random-feature baseline held fixed (recurrent and top-down FF runs with ``ff.head_readout``
report their own head read-out, :func:`simulations.forward_forward.head_readout_accuracy`).
Results go to a JSON file, one record per run, written
after every run (a stopped search keeps what it finished), with the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parent / "configs" / "mnist-ff-search.json"


def _head_readout(data, cfg, weights, layers):
    """Accuracy of the random-feature baseline's head on the given (trained) weights."""
    from simulations.forward_forward import _head_features, _train_head

    x_tr = np.asarray(data.x_train, np.float32).copy()
    x_te = np.asarray(data.x_test, np.float32).copy()
    x_tr[:, : data.n_classes] = 0.0  # neutral label: the label pixels blank
    x_te[:, : data.n_classes] = 0.0
    f_tr = _head_features(weights, x_tr, layers)
    f_te = _head_features(weights, x_te, layers)
    rng = np.random.default_rng([cfg.seed, 2, 0])
    W, b = _train_head(f_tr, np.asarray(data.y_train), data.n_classes, cfg, rng)
    return float(np.mean((f_te @ W.T + b).argmax(1) == np.asarray(data.y_test)))


def _hidden_weights(rule, r):
    """The bottom-up hidden weights of a finished run (recurrent FF: its ``W_k``)."""
    if rule == "ff-recurrent":
        return r.weights[0]
    if rule == "ff-topdown":
        return r.network.W[:-1]
    return r.weights


def dead_units(weights, x) -> list:
    """Per hidden layer, the fraction of units that are zero on every image of ``x`` in the
    feed-forward pass the linear head reads (they carry nothing to it)."""
    from simulations.forward_forward import _layers_forward

    hs = _layers_forward(weights, np.asarray(x, np.float32))
    return [float(np.mean(np.all(h <= 0, axis=0))) for h in hs]


def run_one(base: dict, over: dict) -> dict:
    """One search entry: train, read out, time."""
    from figures.mnist_table import _merge_baseline as _merge  # null removes a key
    from simulations.data import load_dataset
    from simulations.forward_forward import FFConfig
    from simulations.train import _train_one, parse_config, validation_split

    cfg = _merge(base, over)
    rule, make, seeds, data_kw = parse_config(cfg)
    data_kw = dict(data_kw)
    n_val = data_kw.pop("validation")
    data = validation_split(load_dataset(**data_kw), n_val, data_kw.get("split_seed", 0))
    out = []
    t0 = time.time()
    for seed in seeds:
        c = make(seed)
        r = _train_one(rule, data, c, None)
        rec = {"seed": seed, "val_acc": [float(v) for v in r.test_acc]}
        if rule == "ff":
            L = len(c.hidden)
            head = FFConfig(hidden=c.hidden, head_epochs=20, head_lr=0.01, seed=seed)
            rec["head_val_acc"] = _head_readout(data, head, r.weights, list(range(L)))
        elif np.isfinite(getattr(r, "head_test_acc", np.nan)):
            # recurrent / top-down FF with ``head_readout``: the same head, on the
            # validation images (the run's evaluation slot)
            rec["head_val_acc"] = float(r.head_test_acc)
            rec["dead_units"] = dead_units(_hidden_weights(rule, r), data.x_test)
        out.append(rec)
    return {"over": over, "config": cfg, "runs": out, "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m figures.mnist_ff_search")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("-o", "--output", default="out/ff-search.json")
    p.add_argument("--only", nargs="+", type=int, help="indices of the runs to do")
    a = p.parse_args(argv)
    raw = json.loads(Path(a.config).read_text())
    outp = Path(a.output)
    done = json.loads(outp.read_text()) if outp.is_file() else []
    have = {json.dumps(d["over"], sort_keys=True) for d in done}
    for i, over in enumerate(raw["runs"]):
        if a.only is not None and i not in a.only:
            continue
        if json.dumps(over, sort_keys=True) in have:
            continue
        rec = run_one(raw["base"], over)
        done.append(rec)
        outp.parent.mkdir(parents=True, exist_ok=True)
        outp.write_text(json.dumps(done, indent=1) + "\n")
        fin = [r["val_acc"][-1] for r in rec["runs"]]
        head = [r.get("head_val_acc") for r in rec["runs"]]
        print(
            f"{json.dumps(over)}: validation {100 * np.mean(fin):.2f} "
            f"(per epoch seed 0: {', '.join(f'{100 * v:.1f}' for v in rec['runs'][0]['val_acc'])})"
            + (f"; head on its features {100 * np.mean(head):.2f}" if head[0] is not None else "")
            + f"; {rec['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
