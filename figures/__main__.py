"""python -m figures NAME... [--quick] [-o DIR] [--quiet]; python -m figures --list"""

import argparse
import time

from . import FIGURES, describe

HELP = """Regenerate figures from nothing: each writes NAME.png, NAME.pdf, NAME.npz (the data)
and NAME.json (the exact parameters) into the output directory. Parameters come from
figures/configs/NAME.json; --quick uses its "quick" overrides (smaller, faster) and writes
into DIR/quick/ so that quick and full results never mix."""


def _parser():
    from theory.runtime.cli import EXIT_CODES

    p = argparse.ArgumentParser(prog="python -m figures", description=HELP, epilog=EXIT_CODES)
    p.add_argument("names", nargs="*", help="figure names (see --list); 'all' for every one")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument(
        "--quick", action="store_true", help="a smaller, faster version, written into DIR/quick/"
    )
    p.add_argument(
        "-o",
        "--outdir",
        default="out/figures",
        help="output directory DIR (default out/figures; created if needed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv=None):
    try:
        a = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if a.list or not a.names:
        for name in FIGURES:
            print(f"{name:18s} {describe(name)}")
        return 0
    from theory.runtime import cli

    cli.set_verbose(not a.quiet)
    return cli.run_command("figures", _make, a)


def _make(a) -> int:
    from theory.runtime import cli

    names = list(FIGURES) if a.names == ["all"] else a.names
    unknown = [n for n in names if n not in FIGURES]
    if unknown:  # every name checked before any work
        raise ValueError(
            f"unknown figure {', '.join(map(repr, unknown))}; available: {', '.join(FIGURES)}"
        )
    cli.check_output_dir(a.outdir)
    outdir = a.outdir + ("/quick" if a.quick else "")
    cli.check_output_dir(outdir)

    import matplotlib

    matplotlib.use("Agg")
    from . import get

    for i, name in enumerate(names):
        mode = " (quick)" if a.quick else ""
        cli.status(f"[{i + 1}/{len(names)}] {name}{mode}: computing …")
        t0 = time.perf_counter()
        with cli.activity(f"{name}: computing", delay=15.0, heartbeat=15.0, announce=False):
            get(name).make(outdir, quick=a.quick)
        print(
            f"{name}: wrote {outdir}/{name}.png (+ .pdf, .npz data, .json parameters) in "
            f"{time.perf_counter() - t0:.0f} s"
        )
    return 0


if __name__ == "__main__":
    from theory.runtime.cli import exit as _exit

    _exit(main())
