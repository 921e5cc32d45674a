"""``python -m odeflow sweep SWEEP.json -o DIR``: the command line of :mod:`odeflow.sweep`.

Exit status: 0 every point ok; 1 some points failed or stopped early (diverged; their
rows and files are written); 2 invalid sweep (nothing ran) or Dask asked for but not
installed; 130 interrupted (finished points are kept: re-run to complete the rest).
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("sweep", type=Path, help="JSON sweep file: {\"base\": {...}, "
                        "\"grid\": {...}, optional \"kind\", \"zip\", \"seeds\"}")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="sweep directory (summary.csv, points/); finished points found "
                             "there are skipped")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="local worker processes (default: all cores; 0: run in this "
                             "process); with --dask local, the LocalCluster's workers")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dask", choices=["local"], default=None,
                       help="run on a new dask.distributed LocalCluster")
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run on the Dask cluster whose scheduler is at ADDRESS "
                            "(e.g. tcp://10.0.0.1:8786)")
    parser.add_argument("--no-retry", action="store_true",
                        help="keep points recorded as failed by an earlier run")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the sweep and list its points; run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .sweep import load_sweep, sweep

    sw = load_sweep(args.sweep)                       # ValueError → exit 2 (in main)
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.dry_run:
        print(f"odeflow sweep: {len(sw)} valid {sw.kind} points over "
              f"{' × '.join(f'{n}[{k}]' for n, k in zip(map('+'.join, (a for a, _ in sw.axes)), sw.shape)) or 'no axes'}")
        for p in sw.points:
            print(f"  {p.index:5d} {p.key} {p.values}")
        return 0
    dask = "local" if args.dask else args.scheduler
    try:
        res = sweep(sw, args.output, workers=args.workers, dask=dask,
                    retry_failed=not args.no_retry, progress=not args.quiet)
    except ImportError as exc:                       # dask asked for but missing
        print(f"odeflow sweep: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:                           # e.g. the output is not a directory
        print(f"odeflow sweep: error: cannot write to {args.output}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"odeflow sweep: interrupted; finished points are kept in {args.output} "
              "(run the same command again to complete the rest)", file=sys.stderr)
        return 130
    print(res.summary())
    failed = [(p, r) for p, r in zip(sw.points, res.rows) if r and r["status"] == "failed"]
    for p, r in failed[:5]:
        print(f"  point {p.index} {p.values}: {r['message']}", file=sys.stderr)
    if len(failed) > 5:
        print(f"  … and {len(failed) - 5} more failed points (see summary.csv)",
              file=sys.stderr)
    return res.exit_code
