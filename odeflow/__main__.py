"""Command line: ``python -m odeflow COMMAND ...``.

    python -m odeflow solve CONFIG.json -o OUT.npz [--init-from SIM.npz] [--quiet]
    python -m odeflow sde   CONFIG.json -o OUT.npz [--init-from SIM.npz] [--quiet]

Subcommands live in :data:`COMMANDS` (name → :class:`Command`); to add one (e.g.
``compare``), write ``add_arguments(parser)`` and ``run(args) -> int`` and register
``COMMANDS["compare"] = Command("help text", add_arguments, run)``.

Exit status (:mod:`theory.runtime.cli`, the same for every command of the project): 0 when the
run succeeded (reached alpha_max or converged), 1 when it stopped early (diverged; the
truncated result is still written), 2 for invalid input, 130 when interrupted (Ctrl-C; no
output file is left behind). Output paths are checked before any work.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from theory.runtime import cli


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _common_arguments(parser):
    parser.add_argument("config", type=Path, help="JSON run configuration")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="output file, .npz or .json"
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="SIM.npz",
        help="start from the initial state stored in a simulation output "
        "(arrays with prefix init_); overrides the config's init",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_output(path: Path):
    cli.check_output(path, (".npz", ".json"))


def _save(res, path):
    with cli.atomic_path(path) as tmp:  # never a partial file, even on Ctrl-C
        res.save(tmp)


def _config(path):
    """The config file, a relative rule file path taken from the config's folder."""
    from theory.runtime.cli import rule_relative_to

    from .config import load_config

    return rule_relative_to(load_config(path), Path(path).resolve().parent)


def _run_solve(args) -> int:
    from .api import solve
    from .config import to_solve_args, validate_config

    _check_output(args.output)
    cfg = validate_config(_config(args.config), "solve", init_from=args.init_from)
    rule, init, kw = to_solve_args(cfg)
    res = solve(rule, init, progress=not args.quiet, **kw)
    _save(res, args.output)
    last = f"ε_g = {res.eg[-1]:.4g} at α = {res.alpha[-1]:.4g}" if len(res.alpha) else "no records"
    print(
        f"odeflow solve {res.params['rule']} K={res.K} M={res.M} {res.params['method']}: "
        f"{res.message}; {last}; wrote {args.output}"
    )
    return 0 if res.success else 1


def _run_sde(args) -> int:
    from .config import to_sde_args, validate_config
    from .sde_solve import solve_sde

    _check_output(args.output)
    cfg = validate_config(_config(args.config), "sde", init_from=args.init_from)
    rule, init, kw = to_sde_args(cfg)
    res = solve_sde(rule, init, progress=not args.quiet, **kw)
    _save(res, args.output)
    last = res.n_alive[-1]
    if last > 0:
        summary = (
            f"mean ε_g = {res.eg_mean[-1]:.4g} ± {res.eg_std[-1]:.2g} at α = "
            f"{res.alpha[-1]:.4g} over {last} paths"
        )
    else:
        summary = "no path reached alpha_max (no final statistics)"
    print(
        f"odeflow sde {res.params['rule']} K={init.K} M={init.M} ×{res.n_paths} paths "
        f"(seed {res.params['seed']}): {res.message}; {summary}; wrote {args.output}"
    )
    return 0 if res.success else 1


COMMANDS: dict[str, Command] = {
    "solve": Command("integrate the order-parameter ODEs", _common_arguments, _run_solve),
    "sde": Command(
        'Euler–Maruyama ensemble: AFA\'s feedback noise, or with "N" the finite-N noise of '
        "every order parameter",
        _common_arguments,
        _run_sde,
    ),
}

# theory vs simulation (odeflow.compare imports simulations lazily, only when run)
import importlib  # noqa: E402

# the module (odeflow.compare is the function compare at the package level)
_compare = importlib.import_module(".compare", __package__)

COMMANDS["compare"] = Command(
    "simulation ensemble vs ODE from the same measured initial "
    "state: discrepancy per order parameter",
    _compare.add_arguments,
    _compare.run,
)


# parameter sweeps (odeflow.sweep; dask imported only with --dask/--scheduler)
from . import sweep_cli as _sweep_cli  # noqa: E402

COMMANDS["sweep"] = Command(
    "run a base config over a grid of parameters (local worker processes or Dask); resumable",
    _sweep_cli.add_arguments,
    _sweep_cli.run,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m odeflow",
        description="Integrate the order-parameter ODEs (and the AFA feedback SDE) of "
        "two-layer teacher-student networks.",
        epilog=cli.EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, epilog=cli.EXIT_CODES)
        cmd.add_arguments(p)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    # status messages (deriving / compiling / integrating) on stderr unless --quiet
    cli.set_verbose(not getattr(args, "quiet", False))
    # ConfigError and the API's input errors are ValueErrors: message and exit 2
    return cli.run_command(f"odeflow {args.command}", COMMANDS[args.command].run, args)


if __name__ == "__main__":
    from theory.runtime.cli import exit as _exit

    _exit(main())
