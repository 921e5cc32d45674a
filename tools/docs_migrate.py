"""One-off migration for the documentation site (run once after merging, from the repo root).

1. Docstrings, comments and config descriptions cite the documentation pages users have
   (docs/theory.md, docs/quadrature.md, docs/ff-theory.md, docs/guide/...) instead of
   SCIENCE.md, whose section numbers differ from docs/theory.md. The mapping (SCIENCE.md
   section → docs page and section) is MAPPING below.
2. Three docstrings that Sphinx (autodoc + numpydoc, warnings as errors) cannot parse are
   fixed (DOCSTRING_FIXES).
3. The MNIST tables now live in docs/mnist.md: ``figures/mnist_table.py`` writes them there
   (MNIST_TABLE).

Usage::

    python tools/docs_migrate.py            # rewrite the files, report what changed
    python tools/docs_migrate.py --check    # change nothing; exit 1 if anything is left to do

Every replacement is exact or a narrow regex; anything that no longer matches (because the
text moved) is reported, never guessed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("theory", "odeflow", "simulations", "figures", "tests", "benchmarks")
TH, QU, FF = "docs/theory.md", "docs/quadrature.md", "docs/ff-theory.md"
PEP = QU  # its section "Exact PEPITA"

#: SCIENCE.md citation (regex, applied in this order) → docs citation.
#: SCIENCE.md §1 model → theory §1; §2 rules → theory §2; §3 order parameters and the ODE
#: recipe with the closed forms → theory §4 (§3 where only the order parameters are meant);
#: §4 initial conditions (a: measured, b: specified) → theory §6; §5, 5.1–5.3 AFA → theory
#: §5; §5.4 the reference AFA run → theory §7; §5.5 exact PEPITA → quadrature.md
#: "Exact PEPITA"; §6 real data → guide/simulations.md; §9 FF → ff-theory.md; §10
#: quadrature → quadrature.md.
MAPPING = [
    (r"SCIENCE\.md §1–2", f"{TH} §1–2"),
    (r"SCIENCE\.md §1, §10", f"{TH} §1, {QU}"),
    (r"SCIENCE\.md §2, §5\.5", f"{TH} §2, §7"),
    (r"SCIENCE\.md 2, 5\.5", f"{TH} §2, {PEP}"),
    (r"SCIENCE\.md §3, §5\.3", f"{TH} §3, §5"),
    (r"SCIENCE\.md §3 and §5", f"{TH} §3 and §5"),
    (r"SCIENCE\.md §3/§5\.1", f"{TH} §4/§5"),
    (r"SCIENCE\.md §3, §5", f"{TH} §4–5"),
    (r"SCIENCE\.md(\s+)§3 and §5\.1–5\.2", TH + r"\1§4 and §5"),
    (r"SCIENCE\.md §5\.5, §10", QU),
    (r"SCIENCE\.md 5\.2, 5\.4", f"{TH} §5, §7"),
    (r"SCIENCE\.md §4a", f"{TH} §6"),
    (r"SCIENCE\.md §4b", f"{TH} §6"),
    (r"SCIENCE(?:\.md)? §?5\.5", PEP),
    (r"SCIENCE\.md §?5\.4", f"{TH} §7"),
    (r"SCIENCE\.md §?5\.[123]", f"{TH} §5"),
    (r"SCIENCE\.md §5\b", f"{TH} §5"),
    (r"SCIENCE\.md §9", FF),
    (r"SCIENCE\.md §10", QU),
    (r"SCIENCE\.md (?:§|section )2\b", f"{TH} §2"),
    (r"SCIENCE\.md 2\b", f"{TH} §2"),
    (r"SCIENCE\.md(\s+)§3\b", TH + r"\1§4"),
    (r"SCIENCE\.md §1\b", f"{TH} §1"),
    (r"SCIENCE\.md section 6", "docs/guide/simulations.md"),
]

#: (file, old, new): docstrings Sphinx cannot parse. A definition-list term must be one line
#: (train.py); "|·|" is a substitution reference in reST (activations.py); a simple table's
#: first column must be as wide as its widest entry (rules.py).
DOCSTRING_FIXES = [
    (
        "simulations/train.py",
        "``epochs`` (5), ``lr`` (0.01; FF 0.003), ``momentum`` (0.9), ``batch`` (64),\n"
        "``weight_decay`` (0)\n    optimiser options",
        "``epochs`` (5), ``lr`` (0.01; FF 0.003), ``momentum`` (0.9), ``batch`` (64)\n"
        "    optimiser options, and ``weight_decay`` (0)\n   ",
    ),
    (
        "simulations/train.py",
        "``dropout`` (0.1), ``lr_decay_epochs`` ([]), ``lr_decay`` (0.1), ``F_scale`` (0.05),\n"
        "``normalize`` (false), ``mirror`` (null)\n    deep-network options (not for FF): ",
        "``dropout`` (0.1), ``lr_decay_epochs`` ([]), ``lr_decay`` (0.1), ``F_scale`` (0.05)\n"
        "    deep-network options (not for FF), with ``normalize`` (false) and ``mirror``\n"
        "    (null): ",
    ),
    (
        "theory/activations.py",
        "(max, min, |·|, sign, θ, piecewise)",
        "(max, min, abs, sign, θ, piecewise)",
    ),
    (
        "theory/rules.py",  # both borders of the table (replaced everywhere, see main)
        "\n========  =================================================================\n",
        "\n========= =================================================================\n",
    ),
]

#: the MNIST tables moved from README.md into docs/mnist.md
MNIST_TABLE = [
    (
        "figures/mnist_table.py",
        'README = REPO / "README.md"',
        'README = REPO / "docs" / "mnist.md"      # the page that holds the tables',
    ),
    ("figures/mnist_table.py", "``README.md`` between", "``docs/mnist.md`` between"),
    ("figures/mnist_table.py", '"write it into README.md."', '"write it into docs/mnist.md."'),
    (
        "figures/mnist_table.py",
        "leave README.md and the store",
        "leave docs/mnist.md and the store",
    ),
]


def _files():
    for folder in FOLDERS:
        for p in sorted((REPO / folder).rglob("*")):
            if p.suffix in (".py", ".json", ".cfg", ".toml") and p.is_file():
                yield p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if work is left")
    a = ap.parse_args(argv)
    todo = 0
    for p in _files():
        text = p.read_text(encoding="utf-8")
        if "SCIENCE" not in text:
            continue
        new = text
        for pat, rep in MAPPING:
            new = re.sub(pat, rep, new)
        left = [m.start() for m in re.finditer(r"SCIENCE", new)]
        rel = p.relative_to(REPO)
        if left:
            lines = sorted({new.count("\n", 0, i) + 1 for i in left})
            print(f"UNMAPPED: {rel}: lines {lines}", file=sys.stderr)
        if new != text:
            todo += 1
            print(f"{'would cite' if a.check else 'cites'} docs: {rel}")
            if not a.check:
                p.write_text(new, encoding="utf-8")
    for rel, old, new in DOCSTRING_FIXES + MNIST_TABLE:
        p = REPO / rel
        text = p.read_text(encoding="utf-8")
        if old in text:
            todo += 1
            print(f"{'would fix' if a.check else 'fixed'}: {rel}: {old.splitlines()[0][:60]}")
            if not a.check:
                p.write_text(text.replace(old, new), encoding="utf-8")
        elif new not in text:
            print(f"NOT FOUND (edit by hand): {rel}: {old.splitlines()[0][:70]}", file=sys.stderr)
    return 1 if (a.check and todo) else 0


if __name__ == "__main__":
    sys.exit(main())
