"""A Ctrl-C whose KeyboardInterrupt is swallowed on the way (it can land in a ctypes
callback while numba compiles, where Python prints "Exception ignored" and goes on) must
still end the command with 130 and commit no output: seen once in CI, where the
figures Ctrl-C test got exit 0 after the interrupt hit numba's object-cache callback."""

import numpy as np

from theory.runtime import cli


def _swallowed_interrupt():
    """What our SIGINT handler does, with its exception then lost."""
    try:
        cli._on_sigint(2, None)
    except KeyboardInterrupt:
        pass


def test_swallowed_interrupt_still_exits_130_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.npz"

    def command():
        _swallowed_interrupt()
        with cli.atomic_path(out) as tmp:
            np.savez(tmp, a=np.ones(3))
        return 0

    assert cli.run_command("test", command) == cli.EXIT_INTERRUPTED
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
    assert "interrupted" in capsys.readouterr().err
    cli.status("the flag is cleared once the command has returned")  # must not raise


def test_swallowed_interrupt_after_the_last_checkpoint(capsys):
    def command():
        _swallowed_interrupt()
        return 0

    assert cli.run_command("test", command) == cli.EXIT_INTERRUPTED


def test_no_interrupt_no_change(tmp_path):
    out = tmp_path / "y.npz"

    def command():
        with cli.atomic_path(out) as tmp:
            np.savez(tmp, a=np.ones(3))
        return 0

    assert cli.run_command("test", command) == 0
    assert out.exists()
