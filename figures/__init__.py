"""One module per figure; ``python -m figures NAME [--quick] [-o DIR]``.

Every figure module defines ``NAME``, ``DESCRIPTION`` and ``make(outdir, quick=False)``,
which regenerates the figure from nothing, writes ``NAME.png``, ``NAME.pdf``, ``NAME.npz``
(the data) and ``NAME.json`` (the exact parameters) into ``outdir`` via
:func:`figures._common.save_figure`, and returns the data dict.
"""
import importlib

#: registry: figure name -> module
FIGURES = {
    "learning-curves": "figures.learning_curves",
    "pepita-vs-afa": "figures.pepita_vs_afa",
    "alignment": "figures.alignment",
    "feedback-noise": "figures.feedback_noise",
    "saad-solla": "figures.saad_solla",
    "scaling": "figures.scaling",
    "mnist-table": "figures.mnist_table",
    "ff-pepita-link": "figures.ff_pepita_link",
}


def get(name: str):
    """The module of figure ``name``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; available: {', '.join(FIGURES)}")
    return importlib.import_module(FIGURES[name])
