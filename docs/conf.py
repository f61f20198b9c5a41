"""Sphinx configuration: the Markdown pages of this folder and an API reference from docstrings.

Build (offline, warnings are errors, as the test suite does)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import re
import sys
from pathlib import Path

# Document the source next to these pages, even where another copy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fusionrec

project = "fusionrec"
author = "The fusionrec developers"
copyright = author
release = version = fusionrec.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
# README.md is what GitHub shows for this folder; index.md includes it.
exclude_patterns = ["_build", "README.md"]

# Links such as images.md#photo-folders point at headings.
myst_heading_anchors = 3

# Docstrings follow numpydoc; their parameter types are prose, so keep them as written.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_typehints = "none"
autodoc_member_order = "bysource"

# Explicit cross-references (:func:, :mod:, :meth:, See Also entries) must resolve. Class
# references are not checked: parameter types are prose ("str or os.PathLike"), and an offline
# build has no other project's inventory to link numpy's or scikit-learn's classes to.
nitpicky = True
nitpick_ignore_regex = [("py:class", ".*")]

html_theme = "furo"
html_title = f"fusionrec {release}"


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """Leave out the ``set_<method>_request`` methods scikit-learn generates for metadata routing.

    They are scikit-learn's, not fusionrec's, and their docstrings cite scikit-learn's glossary.
    """
    return True if re.fullmatch(r"set_\w+_request", name) else None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
