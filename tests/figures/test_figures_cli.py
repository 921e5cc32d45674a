"""Issue 11 for ``python -m figures``: progress on stderr, Ctrl-C, output directory
checked first, a --list/--help that loads no heavy module, readable --help."""

import subprocess
import sys

from reliability_helpers import REPO, env, interrupt

from figures.__main__ import main


def test_progress_shown_and_ctrl_c_leaves_nothing(tmp_path):
    """The main job said nothing for 77 s; now it says what it computes at once, and
    Ctrl-C stops it (exit 130) without leaving files."""
    out = tmp_path / "figs"
    rc, dt, err = interrupt(
        ["figures", "learning-curves", "--quick", "-o", out],
        marker="learning-curves (quick): computing",
    )
    assert rc == 130, err
    assert dt < 3.0, (dt, err)
    assert not list(out.rglob("*.png")) and not list(out.rglob(".*part*"))


def test_outdir_that_is_a_file_is_refused_first(tmp_path, capsys):
    f = tmp_path / "x"
    f.write_text("")
    assert main(["learning-curves", "-o", str(f)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_unknown_names_refused_before_any_figure(tmp_path, capsys):
    assert main(["learning-curves", "nope", "-o", str(tmp_path)]) == 2
    assert "unknown figure 'nope'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_list_and_help_load_no_heavy_module():
    code = (
        "import sys\nfrom figures.__main__ import main\n"
        "assert main(['--list']) == 0\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', [m for m in ('numba', 'matplotlib', 'sympy', 'scipy', "
        "'figures.learning_curves') if m in sys.modules])"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    assert "learning-curves" in r.stdout and "ε_g(α)" in r.stdout  # descriptions listed
    assert "``" not in r.stdout  # no raw reStructuredText in --help
    assert "DIR/quick/" in r.stdout  # where --quick writes, documented


def test_corrupt_mnist_file_is_a_message(tmp_path, capsys, monkeypatch):
    """A corrupt MNIST file gave a traceback; now one line naming the file, exit 2."""
    for f in (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ):
        (tmp_path / f).write_bytes(b"garbage")
    monkeypatch.setenv("ODEFLOW_MNIST_DIR", str(tmp_path))
    assert main(["mnist-table", "--quick", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "idx3-ubyte.gz: cannot be read as gzip data" in err and "Traceback" not in err
