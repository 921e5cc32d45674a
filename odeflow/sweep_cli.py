"""``python -m odeflow sweep SWEEP.json -o DIR``: the command line of :mod:`odeflow.sweep`.

Exit status: 0 every point ok; 1 some points failed or stopped early (diverged; their
rows and files are written); 2 invalid sweep (nothing ran) or Dask asked for but not
installed, no Dask scheduler at the --scheduler address (nothing is written then), another
live sweep holds the directory's lock, or a file could not be written (named); 130
interrupted (finished points are kept: re-run to complete the rest).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument(
        "sweep",
        type=Path,
        help='JSON sweep file: {"base": {...}, "grid": {...}, optional "kind", "zip", "seeds"}',
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="DIR",
        help="sweep directory (summary.csv, points/); finished points found there are skipped",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes (default: all cores; 0: run in this "
        "process); with --dask local, the LocalCluster's workers",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--dask", choices=["local"], default=None, help="run on a new dask.distributed LocalCluster"
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.1:8786)",
    )
    parser.add_argument(
        "--no-retry", action="store_true", help="keep points recorded as failed by an earlier run"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the sweep and list its points; run nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _dry_run(sw) -> int:
    """Say the size at once, then list the points as they are built and validated (a
    10⁶-point grid validates at some thousand points per second: the listing streams)."""
    axes = " × ".join(f"{'+'.join(names)}[{len(vals)}]" for names, vals in sw.axes)
    print(
        f"odeflow sweep: {len(sw)} {sw.kind} points over {axes or 'no axes'}; "
        "validating and listing them:",
        flush=True,
    )
    t0 = time.perf_counter()
    said = False
    for p in sw.points:
        try:
            print(f"  {p.index:5d} {p.key} {p.values}")
        except BrokenPipeError:  # piped into head: the reader has enough
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        el = time.perf_counter() - t0
        if not said and el > 2.0 and p.index + 1 < len(sw):
            left = el / (p.index + 1) * (len(sw) - p.index - 1)
            print(
                f"odeflow sweep: validating the other {len(sw) - p.index - 1} points will "
                f"take about {left:.0f} s more (Ctrl-C stops)",
                file=sys.stderr,
                flush=True,
            )
            said = True
    sys.stdout.flush()
    print(f"odeflow sweep: all {len(sw)} points are valid", file=sys.stderr)
    return 0


def run(args) -> int:
    from theory.runtime.cli import activity, check_output_dir

    from .sweep import load_sweep, sweep

    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.dry_run:
        return _dry_run(load_sweep(args.sweep, lazy=True))  # ValueError → exit 2 (in main)
    n = len(load_sweep(args.sweep, lazy=True))  # ValueError → exit 2 (in main)
    # every point is validated before any runs: say so when that takes a while
    with activity(f"odeflow sweep: validating {n} points", delay=0.5, force=not args.quiet):
        sw = load_sweep(args.sweep)
    check_output_dir(args.output, "sweep directory")
    dask = "local" if args.dask else args.scheduler
    try:
        res = sweep(
            sw,
            args.output,
            workers=args.workers,
            dask=dask,
            retry_failed=not args.no_retry,
            progress=not args.quiet,
        )
    except ImportError as exc:  # dask asked for but missing
        print(f"odeflow sweep: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk: name the file
        where = exc.filename or args.output
        print(
            f"odeflow sweep: error: cannot write {where}: {exc.strerror or exc} (finished "
            f"points are kept in {args.output})",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            f"odeflow sweep: interrupted; finished points are kept in {args.output} "
            "(run the same command again to complete the rest)",
            file=sys.stderr,
        )
        return 130
    if res.broken:
        print(
            f"odeflow sweep: {len(res.broken)} point(s) recorded as finished had a missing,"
            f" truncated or corrupt result file and were run again: "
            f"{', '.join(map(str, res.broken[:10]))}{' …' if len(res.broken) > 10 else ''}",
            file=sys.stderr,
        )
    print(res.summary())
    failed = [(p, r) for p, r in zip(sw.points, res.rows) if r and r["status"] == "failed"]
    for p, r in failed[:5]:
        print(f"  point {p.index} {p.values}: {r['message']}", file=sys.stderr)
    if len(failed) > 5:
        print(f"  … and {len(failed) - 5} more failed points (see summary.csv)", file=sys.stderr)
    return res.exit_code
