"""Sphinx configuration for loopscale's documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (the ``docs``
extra installs what is needed: sphinx, myst-parser, numpydoc).
"""

from __future__ import annotations

import os
import sys

# Document the source tree this file belongs to, whether or not it is installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import loopscale  # noqa: E402

project = "loopscale"
author = "loopscale developers"
copyright = "2026, loopscale developers"
version = release = loopscale.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: fenced ``{directive}`` blocks, and anchors for headings to link to.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc + numpydoc: signatures with their type hints, members in source order,
# no autosummary tables of class members (they would need stub pages).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "alabaster"
html_title = f"loopscale {release}"
html_static_path: list[str] = []
