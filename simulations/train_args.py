"""The command line of ``python -m simulations train`` (arguments only).

Kept apart from :mod:`simulations.train` so that ``--help`` imports neither numpy nor the
training code (start-up time)."""

import argparse

from theory.runtime.cli import EXIT_CODES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulations train",
        description="Train networks on MNIST / CIFAR-10 / a "
        "teacher-student task (see the module docstring "
        "of simulations.train for the config keys).",
        epilog=EXIT_CODES,
    )
    p.add_argument("config", help="JSON config file")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p
