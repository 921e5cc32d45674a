"""One module per figure; ``python -m figures NAME [--quick] [-o DIR]``.

Every figure module defines ``NAME``, ``DESCRIPTION`` and ``make(outdir, quick=False)``,
which regenerates the figure from nothing, writes ``NAME.png``, ``NAME.pdf``, ``NAME.npz``
(the data) and ``NAME.json`` (the exact parameters) into ``outdir`` via
:func:`figures._common.save_figure`, and returns the data dict.
"""

import importlib
import importlib.util

#: registry: figure name -> module
FIGURES = {
    "learning-curves": "figures.learning_curves",
    "pepita-vs-afa": "figures.pepita_vs_afa",
    "alignment": "figures.alignment",
    "feedback-noise": "figures.feedback_noise",
    "saad-solla": "figures.saad_solla",
    "scaling": "figures.scaling",
    "mnist-table": "figures.mnist_table",
    "activations": "figures.activations",
    "plateau-exit": "figures.plateau_exit",
    "ff-theory": "figures.ff_theory",
    "afa-phase": "figures.afa_phase",
    "pepita-phase": "figures.pepita_phase",
    "ff-pepita-link": "figures.ff_pepita_link",
    "deep-alignment": "figures.deep_alignment",
    "finite-size": "figures.finite_size",
}


def get(name: str):
    """The module of figure ``name``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; available: {', '.join(FIGURES)}")
    return importlib.import_module(FIGURES[name])


def describe(name: str) -> str:
    """The ``DESCRIPTION`` of figure ``name``, read from its source without importing it
    (so ``python -m figures --list`` loads neither matplotlib nor numba)."""
    import ast

    spec = importlib.util.find_spec(FIGURES[name])
    if spec is None or spec.origin is None:
        return "(module not found)"
    try:
        tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    except (OSError, SyntaxError) as exc:
        return f"(unreadable: {exc})"
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and getattr(node.targets[0], "id", None) == "DESCRIPTION"
        ):
            try:
                return str(ast.literal_eval(node.value))
            except ValueError:
                break
    return "(no description)"
