"""Every ```python block of README.md and docs/**/*.md runs, so the documentation cannot go
stale.

Each page is one test: its blocks run in order in one namespace (a later block may use the
names of an earlier one, as a reader would), in a fresh temporary working directory, with
a non-interactive matplotlib backend. Markers, written as HTML comments (invisible on
GitHub and in the Sphinx site):

``<!-- skip-test -->`` on the line before a fence
    the block is deliberately not run (a long run, a placeholder file name); skipped blocks
    are counted and reported, and a marker that is not followed by a fence is an error.
``<!-- docs-test: slow -->`` on a line of its own, anywhere in a page
    the page's blocks take more than a few seconds: the page runs with ``pytest -m slow``.
``<!-- run-test -->`` on the line before a ``bash`` fence
    the block's commands (one per line, each starting with ``python``; ``#`` comments
    allowed) are run, after the page's python blocks, in the same working directory, where
    the repository's ``configs`` folders are linked, so ``odeflow/configs/...`` paths work;
    each must exit with status 0.

A block whose first line is ``# NAME.py`` (e.g. ``# my_rules.py``) is a file the reader is
asked to write: it is written into the working directory instead of being executed, so the
blocks after it can import or load it. Only ``python`` blocks and marked ``bash`` blocks run;
other ``bash`` and ``text`` blocks show commands and signatures.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = "<!-- skip-test -->"
RUN = "<!-- run-test -->"
SLOW = "<!-- docs-test: slow -->"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
FILE_BLOCK = re.compile(r"^#\s*([\w.-]+\.py)\s*$")
#: folders of docs/ that hold generated pages, not sources
GENERATED = ("_build", "auto_examples", "generated")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: bool
    run: bool = False


def pages() -> list[Path]:
    docs = sorted(
        p
        for p in (REPO / "docs").rglob("*.md")
        if not any(part in GENERATED for part in p.relative_to(REPO).parts)
    )
    return [REPO / "README.md", *docs]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, with their skip markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i, prev = [], 0, ""
    while i < len(lines):
        m = FENCE.match(lines[i].strip())
        if not m:
            if lines[i].strip():
                if prev.strip() in (SKIP, RUN) and lines[i].strip() not in (SKIP, RUN):
                    raise AssertionError(
                        f"{page.name}:{i}: {prev.strip()} is not followed by a code fence"
                    )
                prev = lines[i]
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        out.append(
            Block(
                page,
                start + 1,
                lang,
                "\n".join(body) + "\n",
                prev.strip() == SKIP,
                prev.strip() == RUN,
            )
        )
        prev = ""
        i += 1
    return out


def _id(page: Path) -> str:
    return str(page.relative_to(REPO)) if page.is_relative_to(REPO) else page.name


def _params():
    out = []
    for page in pages():
        if not any(b.lang in ("python", "py") or b.run for b in blocks(page)):
            continue  # nothing to run on this page
        slow = any(line.strip() == SLOW for line in page.read_text(encoding="utf-8").splitlines())
        marks = [pytest.mark.slow] if slow else []
        out.append(pytest.param(page, marks=marks, id=_id(page)))
    return out


def _commands(block: Block) -> list[list[str]]:
    """The command lines of a marked bash block (comments and blank lines dropped)."""
    out = []
    for line in block.code.splitlines():
        cmd = shlex.split(line, comments=True)
        if not cmd:
            continue
        if cmd[0] not in ("python", "python3"):
            raise AssertionError(
                f"{_id(block.page)}:{block.line}: a {RUN} block runs only "
                f"`python ...` commands, not {line!r}"
            )
        out.append(cmd)
    return out


def _link_configs(where: Path) -> None:
    """Link each package's ``configs`` folder into ``where`` (paths as in the docs). The
    linked folders are no packages: the real ones are imported from the repository."""
    for pkg in ("odeflow", "simulations", "figures"):
        src = REPO / pkg / "configs"
        if src.is_dir():
            (where / pkg).mkdir(exist_ok=True)
            (where / pkg / "configs").symlink_to(src, target_is_directory=True)


@pytest.fixture
def _isolated_model_registry():
    """A page may register a model of its own (docs/architecture.md does): it must not leak
    into the tests that run after it in this process."""
    import theory.models as tm

    saved = dict(tm.MODELS), dict(tm.RULE_MODELS)
    yield
    for reg, old in zip((tm.MODELS, tm.RULE_MODELS), saved):
        reg.clear()
        reg.update(old)


@pytest.mark.usefixtures("_isolated_model_registry")
@pytest.mark.parametrize("page", _params())
def test_page_blocks_run(page, tmp_path, monkeypatch, capsys):
    runnable = [b for b in blocks(page) if b.lang in ("python", "py")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # commands a block starts (python -m odeflow ...) import this checkout too
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # files written by "# NAME.py" blocks
    monkeypatch.syspath_prepend(str(REPO))
    ns = {"__name__": "__docs__"}
    skipped = 0
    for b in runnable:
        if b.skip:
            skipped += 1
            continue
        first = b.code.lstrip().splitlines()[0] if b.code.strip() else ""
        m = FILE_BLOCK.match(first)
        if m:
            (tmp_path / m.group(1)).write_text(b.code, encoding="utf-8")
            continue
        try:
            exec(compile(b.code, f"{_id(page)}:{b.line}", "exec"), ns)
        except Exception as exc:
            raise AssertionError(
                f"the python block at {_id(page)}:{b.line} failed: {type(exc).__name__}: {exc}"
            ) from exc
    commands = [b for b in blocks(page) if b.run]
    if commands:
        _link_configs(tmp_path)
    for b in commands:
        for cmd in _commands(b):
            r = subprocess.run(
                [sys.executable, *cmd[1:]],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert r.returncode == 0, (
                f"{_id(page)}:{b.line}: `{shlex.join(cmd)}` exited "
                f"with {r.returncode}:\n{r.stderr[-2000:]}"
            )
    try:
        import matplotlib.pyplot as plt

        plt.close("all")
    except ImportError:  # pragma: no cover
        pass
    # modules a page wrote (e.g. my_rules) must not leak into the next page
    for name in [
        n
        for n, m in sys.modules.items()
        if getattr(m, "__file__", None)
        and os.path.dirname(os.path.abspath(m.__file__)) == str(tmp_path)
    ]:
        del sys.modules[name]
    with capsys.disabled():
        if skipped:
            print(
                f"\n{_id(page)}: {len(runnable) - skipped} python blocks run, "
                f"{skipped} marked {SKIP}",
                end="",
            )


def test_block_parser_and_markers(tmp_path):
    """The parser finds fences, skip and run markers and file blocks: checked on a small page."""
    page = tmp_path / "probe.md"
    page.write_text(
        "# t\n\n```python\nx = 1\n```\n\n<!-- skip-test -->\n```python\n"
        "raise SystemExit\n```\n\n<!-- run-test -->\n````bash\necho ```\n````\n"
        "\n```python\n# mod_x.py\nY = 2\n```\n",
        encoding="utf-8",
    )
    bs = blocks(page)
    assert [(b.lang, b.skip, b.run, b.line) for b in bs] == [
        ("python", False, False, 3),
        ("python", True, False, 8),
        ("bash", False, True, 13),
        ("python", False, False, 17),
    ]
    assert bs[2].code == "echo ```\n"
    assert FILE_BLOCK.match(bs[3].code.splitlines()[0]).group(1) == "mod_x.py"
    with pytest.raises(AssertionError, match="runs only"):
        _commands(bs[2])  # `echo` is not a python command


def test_every_page_is_parsed_and_runs_something():
    """Each skip marker precedes a fence (blocks() raises otherwise), and the documentation
    as a whole runs more python blocks than it skips."""
    run = skipped = 0
    for page in pages():
        for b in blocks(page):
            if b.lang in ("python", "py"):
                skipped += b.skip
                run += not b.skip
    assert run > 2 * skipped, (run, skipped)


#: the project's private notes file, which users do not have (a regex, so that this test file
#: does not cite it itself)
_PRIVATE_NOTES = re.compile(r"SCIENCE(\.md|\s*§)|/work/|DEEP\.md|SDE\.md")


def test_sources_cite_the_docs_not_a_file_users_do_not_have():
    """Docstrings, comments and configs cite pages of docs/; the project's private notes
    (a notes file next to the repository, matched by ``_PRIVATE_NOTES``) are not shipped, so
    citing them helps no user."""
    bad = []
    for pkg in ("theory", "odeflow", "simulations", "figures", "benchmarks", "tests", "docs"):
        for f in sorted((REPO / pkg).rglob("*")):
            if f.suffix in (".py", ".json", ".md") and f != Path(__file__).resolve():
                for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                    if _PRIVATE_NOTES.search(line):
                        bad.append(f"{f.relative_to(REPO)}:{i}")
    assert not bad, "cite docs/ instead of the private notes: " + ", ".join(bad)
