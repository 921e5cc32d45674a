"""``python -m simulations run CONFIG.json -o OUT.npz [--quiet] [--threads N]``

Runs the teacher–student ensemble described by a JSON config (see
:func:`simulations.teacher_student.validate_config`) and writes a
:class:`~simulations.teacher_student.SimulationResult` (``.npz``, or ``.json`` if the output
path ends in ``.json``). The ``.npz`` holds the initial state as ``init_Q, init_R, …``, so
``OrderParameters.load(OUT.npz)`` gives the ODE solver its starting point.

Exit codes (:mod:`theory.runtime.cli`, the same for every command): 0 success, 1 every seed
diverged (the output is still written), 2 bad arguments, config or output path, 130
interrupted (Ctrl-C; no output file is left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from theory.runtime import cli

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m simulations run",
        description="Online teacher-student simulations (bp, fa, afa, pepita, pepita-forward, "
        "ff, or a rule from a Python file).",
        epilog=cli.EXIT_CODES,
    )
    p.add_argument(
        "config",
        help="JSON config file (keys: rule, N, K, M, activation, eta, "
        "eta_v, sigma, sigma_F, b_scale, alpha_max, record, seeds, "
        "same_init, init, mc_test, divergence, threads, "
        "record_weights, description; rule ff: eta_u, theta and "
        "init.u_scale/u instead of eta_v and v; a deep student: widths "
        "[K1, K2, ...] with eta_W, rules bp fa dfa afa pepita pepita-forward "
        "pepita-hebbian)",
    )
    p.add_argument("-o", "--output", required=True, help="output file (.npz or .json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="worker threads (overrides the config; default: all cores)",
    )
    return p


def main(argv=None) -> int:
    """Entry point; ``argv`` are the arguments after ``run``. Returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on errors
        return int(exc.code or 0)
    cli.set_verbose(not args.quiet)
    return cli.run_command("simulations run", _run, args)


def _run(args) -> int:
    cli.check_output(args.output, (".npz", ".json"))  # before any work
    try:
        with open(args.config) as fh:
            config = json.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read config {args.config!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{args.config!r} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{args.config!r} is not a text (JSON) file") from None
    if not isinstance(config, dict):
        raise ValueError(f"{args.config!r} must hold a JSON object {{...}}")
    if args.threads is not None:
        config["threads"] = args.threads
    from .teacher_student import rule_relative_to, simulate  # numba import only now

    # "rule": "my_rules.py:NAME" is relative to the config file's directory
    config = rule_relative_to(config, os.path.dirname(os.path.abspath(args.config)))
    try:
        result = simulate(config, progress=not args.quiet)
    except ValueError as exc:
        raise ValueError(f"invalid config {args.config!r}: {exc}") from None
    with cli.atomic_path(args.output) as tmp:
        result.save(tmp)
    if not args.quiet:
        print(f"{result.summary()}\nwrote {args.output}", file=sys.stderr)
    if result.diverged.all():
        print(f"simulations run: every seed diverged (see {args.output})", file=sys.stderr)
        return cli.EXIT_STOPPED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
