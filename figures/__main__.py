"""``python -m figures NAME [--quick] [-o DIR]``; ``python -m figures --list``."""
import argparse
import sys

import matplotlib

matplotlib.use("Agg")

from . import FIGURES, get  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m figures", description=__doc__)
    p.add_argument("names", nargs="*", help="figure names (see --list); 'all' for every one")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quick", action="store_true", help="a smaller, faster version")
    p.add_argument("-o", "--outdir", default="out/figures", help="output directory")
    a = p.parse_args(argv)
    if a.list or not a.names:
        for name in FIGURES:
            try:
                desc = get(name).DESCRIPTION
            except ImportError as exc:
                desc = f"(unavailable: {exc})"
            print(f"{name:18s} {desc}")
        return 0
    names = list(FIGURES) if a.names == ["all"] else a.names
    for name in names:
        try:
            mod = get(name)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        outdir = a.outdir + ("/quick" if a.quick else "")
        mod.make(outdir, quick=a.quick)
        print(f"{name}: wrote {outdir}/{name}.png (+ .pdf, .npz data, .json parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
