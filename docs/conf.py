"""Sphinx configuration of the odeflow documentation.

Build (from the repository root; warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The markdown pages are read by MyST, the API reference is generated from the NumPy-style
docstrings (autodoc + autosummary + numpydoc), and the gallery runs ``docs/examples/plot_*.py``
(sphinx-gallery) and shows their figures.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout, not an installed copy
os.environ.setdefault("MPLBACKEND", "Agg")

project = "odeflow"
author = "the odeflow authors"
copyright = "the odeflow authors, MIT licence"
try:  # the version of this checkout (setup.cfg)
    import configparser

    _cfg = configparser.ConfigParser()
    _cfg.read(ROOT / "setup.cfg")
    release = version = _cfg["metadata"]["version"]
except Exception:  # pragma: no cover - only a cosmetic fallback
    release = version = ""

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "examples",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.md5",
    "auto_examples/*.json",
]

# --- MyST: GitHub-flavoured markdown pages, heading anchors for "page.md#section" links
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- API reference
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say it better
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
numpydoc_show_class_members = False  # autosummary/autodoc list the members once
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()  # docstring style is checked by review, not here
numpydoc_xref_param_type = False

# --- sphinx-gallery: short executed examples, figures shown on their pages
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
}

html_theme = "alabaster"
html_title = f"odeflow {release}"
html_static_path = []
html_theme_options = {
    "description": "statistical physics of forward-only learning",
    "fixed_sidebar": True,
}
suppress_warnings = []
