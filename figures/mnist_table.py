"""MNIST table: a linear classifier on pixels, BP, FA, DFA, PEPITA (four variants, and with
weight mirroring), BP on supervised FF's network and Forward-Forward (supervised, local
receptive fields, recurrent, top-down, unsupervised), each next to its random-feature
baseline, on the offline MNIST subset, next to the published full-MNIST numbers.

The rows are data, not code: ``figures/configs/mnist-table.json`` lists them, each a
``python -m simulations train`` config (a template merged with the row's own keys), run over
the config's seeds on the same data (the fixed, stratified 8000/2000 split of the
10,000-image MNIST test set, the only MNIST available offline). Adding a row is adding an
entry there (any rule :mod:`simulations.train` knows); its ``quick`` entry overrides seeds,
templates and rows for the small version the tests run. A row's ``baseline`` is
``"untrained"`` (its own head at epoch 0) or an object of config keys merged into the row's
config (``null`` removes a key; ``"score": "head"`` scores it by its linear head,
``head_test``, instead of its own read-out): the same architecture with frozen random hidden
layers and the same read-out, run as its own config and stored as ``<label> · baseline``;
``vs_bp`` names the row with BP on the same network (the table shows the error ratio).

Writes into ``outdir``

- ``mnist-table.md``: the markdown table (exact settings of every row, seeds, mean ± std and
  per-seed test accuracy, the baseline, the paired gain and a verdict, FF's error over
  BP's; an FF row (supervised, recurrent, top-down) run with ``head_readout`` gets a second
  line, its trained layers read out by the baseline's linear head, compared with that head
  on the baseline's layers), the baselines' settings, the machine-dependence footnote,
  then the published full-MNIST numbers (clearly labelled as such);
- ``mnist-table.png/.pdf``: test accuracy and error against epoch (mean ± std band), the
  PEPITA alignment angle, and the FF rows per seed against their baselines;
- ``mnist-table.npz/.json``: the curves and the exact parameters;

and, unless ``update_readme=False`` (what the tests pass), replaces the table in
``docs/mnist.md`` between ``<!-- mnist-table:start -->`` and ``<!-- mnist-table:end -->``
(full run) or ``<!-- mnist-table-quick:start/end -->`` (quick run). A full run also stores
every row's per-seed results (and every epoch's wall time) in
``figures/results/mnist-table-full.json``: a run of only some rows (``python -m
figures.mnist_table --rows bp fa``, ``--only baselines``) updates those and renders the
others from the store; a row whose stored settings differ from the config's is shown as
"not regenerated in this version" rather than with a stale number, a baseline as "not
run". FF rows of a full run checkpoint every epoch (:data:`CHECKPOINTS`) and resume.
``tests/simulations/test_mnist_table.py`` regenerates the quick table and checks that the
README's quick block equals it and that the README's full block equals the rendering of the
store under the current config (drift in either is a test failure).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

from ._common import save_figure
from ._mnist_text import HEAD_WHAT, KERNEL_NOTE, KERNEL_SPREAD, PUBLISHED

NAME = "mnist-table"
DESCRIPTION = (
    "BP, FA, DFA, PEPITA variants and Forward-Forward on MNIST (table + accuracy "
    "curves; unsupervised FF against its untrained network)"
)

REPO = Path(__file__).resolve().parents[1]
#: per-epoch checkpoints of the full run's FF rows (resumed by the next full run)
CHECKPOINTS = REPO / "out" / "checkpoints" / "mnist-table"
CONFIG = Path(__file__).resolve().parent / "configs" / f"{NAME}.json"
STORE = Path(__file__).resolve().parent / "results" / f"{NAME}-full.json"
README = REPO / "docs" / "mnist.md"  # the page that holds the tables
MARKERS = {
    False: ("<!-- mnist-table:start -->", "<!-- mnist-table:end -->"),
    True: ("<!-- mnist-table-quick:start -->", "<!-- mnist-table-quick:end -->"),
}
#: row keys that describe the row rather than its training run
META_KEYS = ("label", "template", "baseline", "note", "vs_bp")
#: suffix of the store label of a row's random-feature baseline
BASE_SUFFIX = " · baseline"


# ----------------------------------------------------------------------------- config


def _merge(base, over):
    """``base`` with ``over`` merged in, dicts recursively (lists and scalars replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_baseline(cfg, over):
    """The row's config ``cfg`` with the baseline's keys ``over`` merged in (dicts
    recursively); a ``null`` value removes the key (an option the baseline's rule lacks)."""
    out = copy.deepcopy(cfg)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_baseline(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_table_config(quick: bool = False, path=CONFIG) -> dict:
    """The table's config with the ``quick`` overrides applied when ``quick``.

    Returns a dict with ``seeds``, ``data`` and ``rows``: a list of ``{"label", "baseline",
    "base_config", "base_note", "base_score", "vs_bp", "note", "config"}`` where ``config``
    is a complete :mod:`simulations.train` config (validated here, before anything runs). A
    row's ``baseline`` is ``"untrained"`` (the row's own head at epoch 0, unsupervised FF),
    an object (keys merged into the row's config, ``null`` removes a key, ``note`` describes
    it: the random-feature baseline, run as its own config into ``base_config``) or absent.
    ``score`` of a baseline object says which number of that run is the baseline
    (``base_score``): ``"final"`` (default; its own read-out's final test accuracy) or
    ``"head"`` (its linear head's, ``head_test``: for a network whose own read-out has
    nothing to train at epoch 0, recurrent FF's goodness). ``vs_bp`` names the row holding
    BP on the same network.

    Raises ValueError for an unknown template, a duplicate or unknown label, a row
    config that :func:`simulations.train.parse_config` rejects, a baseline that trains
    hidden layers' options it should not have, an unknown ``score`` (or ``"head"`` without
    ``ff.head_readout``), or an unknown ``vs_bp``.
    """
    from simulations.train import parse_config

    raw = json.loads(Path(path).read_text())
    q = raw.get("quick", {}) if quick else {}
    bad = sorted(set(q) - {"seeds", "data", "templates", "rows", "skip"})
    if bad:
        raise ValueError(
            f"{path}: unknown quick keys {bad}; allowed: seeds, data, templates, rows, skip"
        )
    seeds = list(q.get("seeds", raw["seeds"]))
    data = _merge(raw["data"], q.get("data", {}))
    templates = _merge(raw.get("templates", {}), q.get("templates", {}))
    labels = [r["label"] for r in raw["rows"]]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: duplicate row labels in {labels}")
    for lbl in list(q.get("rows", {})) + list(q.get("skip", [])):
        if lbl not in labels:
            raise ValueError(f"{path}: quick refers to unknown row {lbl!r}; rows: {labels}")
    rows = []
    for row in raw["rows"]:
        if row["label"] in q.get("skip", []):
            continue
        row = _merge(row, q.get("rows", {}).get(row["label"], {}))
        tpl = row.get("template")
        if tpl is not None and tpl not in templates:
            raise ValueError(
                f"{path}: row {row['label']!r}: unknown template {tpl!r}; "
                f"templates: {sorted(templates)}"
            )
        cfg = _merge(templates.get(tpl, {}), {k: v for k, v in row.items() if k not in META_KEYS})
        cfg["seeds"], cfg["data"] = seeds, data
        try:
            parse_config(cfg)
        except ValueError as exc:
            raise ValueError(f"{path}: row {row['label']!r}: {exc}") from None
        base = row.get("baseline")
        kind, bcfg, bnote, bscore = None, None, "", "final"
        if base == "untrained" or base is True:
            kind = "untrained"
        elif isinstance(base, dict):
            kind = "random"
            over = {k: v for k, v in base.items() if k not in ("note", "score")}
            bnote = base.get("note", "")
            bscore = base.get("score", "final")
            bcfg = _merge_baseline(cfg, over)
            try:
                parse_config(bcfg)
            except ValueError as exc:
                raise ValueError(f"{path}: baseline of row {row['label']!r}: {exc}") from None
            hr = bcfg.get("ff", {}).get("head_readout")
            why = (
                f'score must be "final" or "head", got {bscore!r}'
                if bscore not in ("final", "head")
                else f'score "head" needs ff.head_readout true in the baseline\'s config '
                f"(the run has no head otherwise), got {hr!r}"
                if bscore == "head" and hr is not True
                else None
            )
            if why:
                raise ValueError(f"{path}: baseline of row {row['label']!r}: {why}")
        elif base is not None:
            raise ValueError(
                f'{path}: row {row["label"]!r}: baseline must be "untrained" or an object '
                f"of config keys, got {base!r}"
            )
        rows.append(
            {
                "label": row["label"],
                "baseline": kind,
                "base_config": bcfg,
                "base_note": bnote,
                "base_score": bscore,
                "vs_bp": row.get("vs_bp"),
                "note": row.get("note", ""),
                "config": cfg,
            }
        )
    shown = {r["label"] for r in rows}
    for r in rows:
        if r["vs_bp"] is not None and r["vs_bp"] not in labels:
            raise ValueError(
                f"{path}: row {r['label']!r}: vs_bp names no row of the table: {r['vs_bp']!r}"
            )
        if r["vs_bp"] not in shown:  # skipped in the quick table
            r["vs_bp"] = None
    return {"seeds": seeds, "data": data, "rows": rows, "quick": quick}


# ----------------------------------------------------------------------------- running


def run_row(row: dict, log=None, checkpoints=None) -> dict:
    """Train one row over its seeds; the per-seed record the table is rendered from.

    checkpoints : folder of per-epoch checkpoints of the FF rows (None = none): a stopped
    long run resumes from its last finished epoch.
    The record keeps every epoch's wall time (``epoch_seconds``, seconds since the previous
    epoch ended, evaluation included) so a slowdown over the epochs shows in the store and
    in the log line written to ``log`` (a stream, e.g. stderr; None = silent)."""
    from simulations.train import run_config

    t0 = time.time()
    stamps = {}
    last_end = [t0]

    def hook(i, epoch, info):
        now = time.time()
        stamps.setdefault(i, []).append(round(now - last_end[0], 2))
        last_end[0] = now

    out = run_config(row["config"], quiet=True, on_epoch=hook, checkpoint_dir=checkpoints)
    S = out["test_acc"].shape[0]
    done = out["epochs_done"]
    last = lambda a: [float(a[i, done[i]]) for i in range(S)]  # noqa: E731
    rec = {
        "label": row["label"],
        "config": row["config"],
        "test_acc": out["test_acc"].tolist(),  # (S, E+1), NaN-padded after divergence
        "final_test": last(out["test_acc"]),
        "final_train": last(out["train_acc"]),
        "untrained_test": [float(v) for v in out["test_acc"][:, 0]],
        "diverged": [bool(v) for v in out["diverged"]],
        "seconds": round(time.time() - t0, 1),
        "epoch_seconds": [stamps.get(i, []) for i in range(S)],
    }
    if log is not None:
        per = rec["epoch_seconds"][0]
        print(
            f"{row['label']}: {rec['seconds']:.0f} s; seed 0 epoch seconds "
            + ", ".join(f"{t:.1f}" for t in per),
            file=log,
            flush=True,
        )
    head = out.get("head_test_acc")
    if head is not None and np.all(np.isfinite(head)):
        rec["head_test"] = [float(v) for v in head]
    if "angle" in out:
        rec["angle"] = out["angle"].tolist()
        rec["final_angle"] = last(out["angle"])
    return rec


def _nan_to_none(x):
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and not np.isfinite(x) else x


def _none_to_nan(x):
    if isinstance(x, list):
        return [_none_to_nan(v) for v in x]
    return np.nan if x is None else x


def load_store(path=STORE) -> dict:
    """label -> stored full-run record (empty if there is no store yet)."""
    path = Path(path)
    if not path.is_file():
        return {}
    return {
        r["label"]: {k: _none_to_nan(v) for k, v in r.items()}
        for r in json.loads(path.read_text())["rows"]
    }


def save_store(records: dict, path=STORE):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: _nan_to_none(v) for k, v in r.items()} for r in records.values()]
    path.write_text(json.dumps({"figure": NAME, "rows": rows}, indent=1, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- table


def _layers(widths):
    w = list(widths)
    if not w:
        return "no hidden layer (softmax regression on the pixels)"
    return f"{len(w)}×{w[0]}" if len(set(w)) == 1 else "–".join(map(str, w))


def _kv(d):
    def val(v):
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v

    return ", ".join(f"{k} {val(v)}" for k, v in d.items())


def describe(cfg: dict) -> str:
    """Every training option of a row config, in words (options not listed are at the
    defaults of :mod:`simulations.train`)."""
    c = copy.deepcopy(cfg)  # popped below; the row's config must stay intact
    parts = [_layers(c.pop("layers", [256]))]
    rule = c.pop("rule")
    c.pop("seeds", None)
    c.pop("data", None)
    for k in ("name", "description"):
        c.pop(k, None)
    ff = c.pop("ff", {}) if rule.startswith("ff") else {}
    opt = ff.pop("optimizer", "adam") if rule.startswith("ff") else "sgd"
    mom = c.pop("momentum", None)
    head = f"{opt.upper() if opt == 'sgd' else 'Adam'} lr {c.pop('lr', '(default)')}"
    if opt == "sgd" and mom is not None:
        head += f", momentum {mom}"
    parts.append(head)
    if "batch" in c:
        parts.append(f"batch {c.pop('batch')}")
    if "epochs" in c:
        parts.append(f"{c.pop('epochs')} epochs")
    dec = c.pop("lr_decay_epochs", [])
    factor = c.pop("lr_decay", 0.1)
    if dec:
        parts.append(f"lr ×{factor} at epoch {', '.join(map(str, dec))}")
    elif not rule.startswith("ff"):
        parts.append("no lr decay")
    ff.pop("eval_train", None)  # only where train accuracy is measured
    if c:
        parts.append(_kv(c))
    if ff:
        parts.append(_kv(ff))
    return "; ".join(parts)


def _pct(vals, nd=2):
    v = 100 * np.asarray(vals, float)
    return f"{np.mean(v):.{nd}f} ± {np.std(v):.{nd}f}"


def baseline_values(row: dict, records: dict):
    """Per-seed test accuracy of ``row``'s baseline (its untrained network or its
    random-feature run: its final test accuracy, or its linear head's when the row's
    ``base_score`` is ``"head"``), or None when it has none or it was not run under the
    current config."""
    rec = records.get(row["label"])
    if row["baseline"] == "untrained":
        ok = rec is not None and rec["config"] == row["config"]
        return np.asarray(rec["untrained_test"], float) if ok else None
    if row["baseline"] == "random":
        b = records.get(row["label"] + BASE_SUFFIX)
        key = "head_test" if row.get("base_score") == "head" else "final_test"
        ok = b is not None and b["config"] == row["base_config"] and key in b
        return np.asarray(b[key], float) if ok else None
    return None


def _signed(text):
    return text.replace("-", "−", 1) if text.startswith("-") else "+" + text


def _verdict(g):
    m, sd = float(np.mean(g)), float(np.std(g))
    return "beats" if m > 2 * sd else ("loses" if m < -2 * sd else "tie")


def head_baseline_values(row: dict, records: dict):
    """Per-seed accuracy the "→ linear head" line of ``row`` is compared with: the same head
    on the baseline's frozen layers when the baseline run has one (``head_test``), else the
    baseline itself (whose read-out already is that head); None when not run."""
    if row["baseline"] == "random":
        b = records.get(row["label"] + BASE_SUFFIX)
        if b is not None and b["config"] == row["base_config"] and "head_test" in b:
            return np.asarray(b["head_test"], float)
    return baseline_values(row, records)


def _head_line(lbl, rule, h, u, ok, bp):
    """The extra line of an FF row run with ``head_readout``: its trained layers read out by
    the baseline's own head, so features are compared with the read-out fixed."""
    base = gain = verdict = ratio = "—"
    if u is not None:
        base, gain, verdict = _pct(u), _signed(_pct(h - u)), _verdict(100 * (h - u))
    if bp is not None and bp in ok:
        ratio = f"{(1 - h.mean()) / (1 - ok[bp].mean()):.2f}"
    per = ", ".join(f"{100 * v:.2f}" for v in h)
    what = HEAD_WHAT.get(rule, HEAD_WHAT["ff"])
    return (
        f"| {lbl} → linear head | {what} | {_pct(h)} | {per} | {base} | {gain} | {verdict} "
        f"| {ratio} | — |"
    )


def render_table(table: dict, records: dict) -> str:
    """The markdown table of ``table`` (from :func:`load_table_config`) with the results in
    ``records`` (label -> record of :func:`run_row`). A row whose record is missing or was
    made with other settings is marked "not regenerated in this version"; a baseline not
    run under the current config reads "not run"."""
    quick = table["quick"]
    d = table["data"]
    seeds = ", ".join(map(str, table["seeds"]))
    lines = [
        f"MNIST, {d.get('n_train')}/{d.get('n_test')} stratified split "
        f"(split_seed {d.get('split_seed', 0)}) of the official 10,000-image test set; "
        f"{'quick' if quick else 'full'} settings of `figures/configs/mnist-table.json`, seeds "
        f"{seeds}; test accuracy in %, mean ± std over seeds (population std), then per seed. "
        "Baseline: the same architecture with its hidden layers frozen as initialised (same "
        "seed, init and scaling) and the same read-out trained the same way (listed under "
        "the table); for unsupervised FF its own head on the untrained network (epoch 0). "
        "Gain: trained − baseline, paired per seed (mean ± std); verdict: *beats* when the "
        "mean gain exceeds twice its std, *loses* when it is below minus twice its std, else "
        "*tie*. err. ÷ BP: test error over that of BP on the same network.",
        "",
        "| rule | settings | test acc. | per seed | baseline | gain | verdict | err. ÷ BP "
        "| angle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ok = {
        r["label"]: np.asarray(records[r["label"]]["final_test"], float)
        for r in table["rows"]
        if r["label"] in records and records[r["label"]]["config"] == r["config"]
    }
    for row in table["rows"]:
        lbl, cfg = row["label"], row["config"]
        setting = describe(cfg) + (f" ({row['note']})" if row["note"] else "")
        setting = setting.replace("|", "\\|")  # a literal bar would split the cell
        rec = records.get(lbl)
        if rec is None or rec["config"] != cfg:
            lines.append(f"| {lbl} | {setting} | not regenerated in this version | | | | | | |")
            continue
        fin = ok[lbl]
        ndiv = int(np.sum(rec["diverged"]))
        acc = _pct(fin) + (f" ({ndiv} diverged)" if ndiv else "")
        per = ", ".join(f"{100 * v:.2f}" for v in fin)
        base = gain = verdict = ratio = "—"
        u = baseline_values(row, records)
        if row["baseline"] is not None and u is None:
            base = "not run"
        elif u is not None:
            base, gain = _pct(u), _signed(_pct(fin - u))
            verdict = _verdict(100 * (fin - u))
        bp = row["vs_bp"]
        if bp is not None and bp in ok:
            ratio = f"{(1 - fin.mean()) / (1 - ok[bp].mean()):.2f}"
        ang = rec.get("final_angle")
        ang = f"{np.mean(ang):.1f}°" if ang is not None and np.all(np.isfinite(ang)) else "—"
        lines.append(
            f"| {lbl} | {setting} | {acc} | {per} | {base} | {gain} | {verdict} | {ratio} | {ang} |"
        )
        if "head_test" in rec:
            hu = head_baseline_values(row, records)
            h = np.asarray(rec["head_test"], float)
            lines.append(_head_line(lbl, cfg["rule"], h, hu, ok, bp))
    lines += ["", "Baselines (hidden weights bit-identical before and after training):"]
    groups = {}
    for row in table["rows"]:
        if row["baseline"] == "random":
            key = json.dumps(row["base_config"], sort_keys=True)
            groups.setdefault(key, []).append(row)
    for rows in groups.values():
        b = rows[0]
        what = describe(b["base_config"]) + (f" ({b['base_note']})" if b["base_note"] else "")
        lines.append(f"- {', '.join(r['label'] for r in rows)}: {what}.")
    lines += [
        "",
        KERNEL_NOTE.format(spread=KERNEL_SPREAD),
        "",
        "Angle: final angle between F and (W_L…W₁)ᵀ (PEPITA rules). "
        "Published, full MNIST (60,000 training images, longer runs; not comparable "
        "one-to-one with this subset):",
    ]
    for key, (acc, how) in PUBLISHED.items():
        lines.append(f"- {key}: {acc} % test accuracy, {how}.")
    return "\n".join(lines) + "\n"


def insert_block(text: str, block: str, quick: bool) -> str:
    """``text`` with the part between the table's markers replaced by ``block``."""
    start, end = MARKERS[quick]
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"README has no '{start}' … '{end}' markers (in that order)")
    return text[: i + len(start)] + "\n" + block + text[j:]


def readme_block(text: str, quick: bool) -> str:
    """The part of ``text`` between the table's markers (as :func:`insert_block` writes it)."""
    start, end = MARKERS[quick]
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"README has no '{start}' … '{end}' markers (in that order)")
    return text[i + len(start) + 1 : j]


# ----------------------------------------------------------------------------- make


def make(
    outdir,
    quick: bool = False,
    seeds=None,
    rows=None,
    update_readme: bool = True,
    config=CONFIG,
    store=STORE,
    readme=README,
    only=None,
    log=None,
    checkpoints=CHECKPOINTS,
):
    """Run the table's rows, write table, figure and data; update the README and the store.

    seeds : override the config's seeds (the README and the store are then left alone,
        since the numbers would not be the config's)
    rows : labels of the rows to run (default all); in a full run the others come from the
        store
    update_readme : write the table into ``readme`` between its markers (and, in a full run,
        the results into ``store``)
    only : None (run the rows and their baselines), "rows" or "baselines" (run only those;
        the others come from the store)
    log : stream for one line per run (seconds, per-epoch seconds), e.g. ``sys.stderr``
    checkpoints : folder of the FF rows' per-epoch checkpoints in a full run (resumed: a
        paper-size run can be finished across sessions), None = none; quick runs never
        checkpoint
    """
    t0 = time.time()
    table = load_table_config(quick, config)
    if seeds is not None:
        update_readme = False
        table["seeds"] = list(seeds)
        for r in table["rows"]:
            r["config"]["seeds"] = list(seeds)
    labels = [r["label"] for r in table["rows"]]
    todo = labels if rows is None else list(rows)
    bad = [lbl for lbl in todo if lbl not in labels]
    if bad:
        raise ValueError(f"unknown rows {bad}; rows of the table: {labels}")
    if only not in (None, "rows", "baselines"):
        raise ValueError(f"only must be None, 'rows' or 'baselines', got {only!r}")
    records = load_store(store) if (not quick and update_readme) else {}
    keep = not quick and update_readme
    fresh = []  # baselines run in this call

    def put(label, rec):
        nonlocal records
        records[label] = rec
        if keep:
            # re-read first: another run of other rows may have stored results meanwhile;
            # saving after every row keeps what is done if a later row is stopped
            records = {**load_store(store), label: rec}
            save_store(records, store)

    for row in table["rows"]:
        if row["label"] not in todo:
            continue
        if only != "baselines":
            put(row["label"], run_row(row, log, None if quick else checkpoints))
        if row["baseline"] == "random" and only != "rows":
            blabel = row["label"] + BASE_SUFFIX
            # rows whose baselines are the same run (bp, fa, dfa: one delta-rule read-out
            # on the same frozen network) share it instead of training it again
            same = [r for r in fresh if r["config"] == row["base_config"]]
            if same:
                rec = {**same[0], "label": blabel}
            else:
                rec = run_row({"label": blabel, "config": row["base_config"]}, log)
                fresh.append(rec)
            put(blabel, rec)
    md = render_table(table, records)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{NAME}.md").write_text(
        f"# MNIST table ({'quick' if quick else 'full'})\n\n"
        + md
        + f"\n({time.time() - t0:.0f} s)\n"
    )
    if update_readme:
        path = Path(readme)
        path.write_text(insert_block(path.read_text(), md, quick))

    shown = [
        r
        for r in table["rows"]
        if r["label"] in records and records[r["label"]]["config"] == r["config"]
    ]
    fig = _plot(shown, records, table)
    params = {
        "quick": quick,
        "seeds": table["seeds"],
        "data": table["data"],
        "rows": [{"label": r["label"], **r["config"]} for r in table["rows"]],
        "ran": todo,
    }
    out = {}
    for r in shown:
        rec = records[r["label"]]
        key = r["label"].replace(" ", "_")
        out[key] = np.asarray(rec["test_acc"], float)
        if "angle" in rec:
            out[key + "_angle"] = np.asarray(rec["angle"], float)
    out["labels"] = np.array([r["label"] for r in shown])
    out["final_mean"] = np.array([np.mean(records[r["label"]]["final_test"]) for r in shown])
    out["final_std"] = np.array([np.std(records[r["label"]]["final_test"]) for r in shown])
    save_figure(fig, outdir, NAME, params, out)
    out["markdown"] = md
    return out


# ----------------------------------------------------------------------------- figure


def _bname(row):
    return "untrained network" if row["baseline"] == "untrained" else "random features"


def _plot(rows, records, table):
    """(a) test accuracy, (b) test error (log) with the published full-MNIST errors,
    (c) PEPITA alignment angle, against epoch, mean ± std over seeds; (d) unsupervised
    rows: final accuracy per seed against the untrained network's."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axs = plt.subplots(2, 2, figsize=(12.5, 9))
    ax, axe, ax2, axb = axs.ravel()
    cmap = plt.get_cmap("tab10")
    colours = {}
    lo = 100.0
    for i, row in enumerate(rows):
        lbl, rule = row["label"], row["config"]["rule"]
        rec = records[lbl]
        A = 100 * np.asarray(rec["test_acc"], float)
        t = np.arange(A.shape[1])
        m, sd = np.nanmean(A, 0), np.nanstd(A, 0)
        ls = "--" if rule.startswith("ff") else ("-" if rule.startswith("pepita") else ":")
        c = colours[lbl] = cmap(i % 10)
        ax.plot(t, m, ls, color=c, lw=1.8, label=lbl)
        ax.fill_between(t, m - sd, m + sd, color=c, alpha=0.2, lw=0)
        lo = min(lo, m[-1])
        axe.semilogy(t, 100 - m, ls, color=c, lw=1.8)
        axe.fill_between(
            t, np.clip(100 - m - sd, 1e-2, None), 100 - m + sd, color=c, alpha=0.2, lw=0
        )
        if "angle" in rec:
            G = np.asarray(rec["angle"], float)
            ax2.plot(np.arange(G.shape[1]), np.nanmean(G, 0), ls, color=c, lw=1.8, label=lbl)
        ub = baseline_values(row, records) if rule.startswith("ff") else None
        if ub is not None:
            u = 100 * np.mean(ub)
            ax.axhline(u, color=c, lw=1.6, ls=(0, (1, 1.2)), label=f"{lbl}: {_bname(row)}")
            ax.annotate(
                f"{lbl}, {_bname(row)}",
                (0.2, u),
                xycoords=("axes fraction", "data"),
                xytext=(0, -10),
                textcoords="offset points",
                fontsize=7,
                color=c,
            )
    ax.set_ylabel("test accuracy (%)")
    # epoch 0 of the supervised rules is chance level; zoom on where the rules end up
    ax.set_ylim(max(0.0, np.floor(lo / 5) * 5 - 5), 100)
    d = table["data"]
    ax.set_title(
        f"MNIST {d.get('n_train')}/{d.get('n_test')} subset, mean ± std over "
        f"{len(table['seeds'])} seeds",
        fontsize=10,
    )
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    axe.axhline(2.0, color="0.15", lw=1.0, ls="-.", label="PEPITA (1×1024, 100 ep)")
    axe.axhline(1.36, color="0.45", lw=1.0, ls=(0, (4, 2)), label="FF (4×2000, 60 ep)")
    axe.set_ylim(0.35, 100)
    axe.legend(
        fontsize=7, loc="lower left", title="published, full MNIST", title_fontsize=7, ncol=2
    )
    axe.set_ylabel("test error (%)")
    axe.set_title("test error, log scale", fontsize=10)
    ax2.set_ylabel(r"angle between $F$ and $(W_L\cdots W_1)^\top$ (deg)")
    ax2.set_title("PEPITA feedback alignment", fontsize=10)
    if ax2.lines:
        ax2.legend(fontsize=7)
    for a in (ax, axe, ax2):
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    base = [
        r
        for r in rows
        if r["config"]["rule"].startswith("ff") and baseline_values(r, records) is not None
    ]
    for k, row in enumerate(base):
        rec = records[row["label"]]
        u = 100 * baseline_values(row, records)
        f = 100 * np.asarray(rec["final_test"], float)
        x = np.array([2 * k, 2 * k + 1], float)
        for s in range(u.size):
            axb.plot(x, [u[s], f[s]], "-o", color=colours[row["label"]], alpha=0.9, ms=4)
        axb.plot(
            x,
            [u.mean(), f.mean()],
            "-s",
            color="k",
            lw=2,
            ms=7,
            label="mean over seeds" if k == 0 else None,
        )
    axb.set_xticks([x for k in range(len(base)) for x in (2 * k, 2 * k + 1)])
    axb.set_xticklabels(
        [t for r in base for t in (f"{r['label']}\n{_bname(r)}", f"{r['label']}\ntrained")],
        fontsize=7,
        rotation=30,
        ha="right",
    )
    axb.set_xlim(-0.5, 2 * max(len(base), 1) - 0.5)
    axb.set_ylabel("test accuracy (%)")
    axb.set_title("FF rows: baseline vs trained (one line per seed)", fontsize=10)
    if base:
        axb.legend(fontsize=8)
    for a, letter in zip((ax, axe, ax2, axb), "abcd"):
        a.text(-0.12, 1.02, f"({letter})", transform=a.transAxes, fontweight="bold")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    """``python -m figures.mnist_table [--quick] [--rows LABEL … | --render-only]
    [--only rows|baselines] [--checkpoints DIR | --no-checkpoints] [--no-readme] [-o DIR]``;
    one log line per run (seconds, per-epoch seconds) on stderr; exit code 0 ok, 2 bad
    input."""
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="python -m figures.mnist_table",
        description="Regenerate (some rows of) the MNIST table and write it into docs/mnist.md.",
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rows", nargs="+", help="labels of the rows to run (default: all)")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: redraw table and figure from the stored full results",
    )
    p.add_argument(
        "--only",
        choices=("rows", "baselines"),
        help="run only the trained rows or only their random-feature baselines",
    )
    p.add_argument(
        "--checkpoints",
        default=str(CHECKPOINTS),
        help="folder of the FF rows' per-epoch checkpoints (full runs resume from them)",
    )
    p.add_argument("--no-checkpoints", action="store_true")
    p.add_argument("--no-readme", action="store_true", help="leave docs/mnist.md and the store")
    p.add_argument("-o", "--outdir", default="out/figures")
    a = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    outdir = a.outdir + ("/quick" if a.quick else "")
    try:
        if a.render_only and (a.quick or a.rows):
            raise ValueError("--render-only redraws the stored full table; no --quick/--rows")
        make(
            outdir,
            quick=a.quick,
            rows=[] if a.render_only else a.rows,
            update_readme=not a.no_readme,
            only=a.only,
            log=sys.stderr,
            checkpoints=None if a.no_checkpoints else a.checkpoints,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{NAME}: wrote {outdir}/{NAME}.md, .png (+ .pdf, .npz, .json)"
        + ("" if a.no_readme else " and the README table")
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
