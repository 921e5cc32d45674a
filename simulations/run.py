"""``python -m simulations run CONFIG.json -o OUT.npz [--quiet] [--threads N]``

Runs the teacher–student ensemble described by a JSON config (see
:func:`simulations.teacher_student.validate_config`) and writes a
:class:`~simulations.teacher_student.SimulationResult` (``.npz``, or ``.json`` if the output
path ends in ``.json``). The ``.npz`` holds the initial state as ``init_Q, init_R, …``, so
``OrderParameters.load(OUT.npz)`` gives the ODE solver its starting point.

Exit codes: 0 success, 2 bad arguments or config, 1 I/O error.
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m simulations run",
        description="Online teacher-student simulations (bp, fa, afa, pepita, pepita-forward, "
                    "ff).")
    p.add_argument("config", help="JSON config file (keys: rule, N, K, M, activation, eta, "
                                  "eta_v, sigma, sigma_F, b_scale, alpha_max, record, seeds, "
                                  "same_init, init, mc_test, divergence, threads, "
                                  "record_weights, description; rule ff: eta_u, theta and "
                                  "init.u_scale/u instead of eta_v and v)")
    p.add_argument("-o", "--output", required=True, help="output file (.npz or .json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--threads", type=int, default=None,
                   help="worker threads (overrides the config; default: all cores)")
    return p


def main(argv=None) -> int:
    """Entry point; ``argv`` are the arguments after ``run``. Returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:            # argparse exits on --help and on errors
        return int(exc.code or 0)
    try:
        with open(args.config) as fh:
            config = json.load(fh)
    except OSError as exc:
        print(f"error: cannot read config {args.config!r}: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: {args.config!r} is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None:
        config["threads"] = args.threads
    from .teacher_student import simulate    # numba import only once the arguments are fine
    try:
        result = simulate(config, progress=not args.quiet)
    except ValueError as exc:
        print(f"error: invalid config {args.config!r}: {exc}", file=sys.stderr)
        return 2
    try:
        result.save(args.output)
    except OSError as exc:
        print(f"error: cannot write {args.output!r}: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"{result.summary()}\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
