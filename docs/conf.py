"""Sphinx configuration: the API reference from docstrings (autodoc + napoleon), pages in MyST Markdown.

Build: ``pip install -e ".[docs]"`` then ``sphinx-build -W --keep-going docs docs/_build`` (offline; warnings
are errors). ``.ci/run`` builds it.
"""

from metajax import __version__

project = "metajax"
author = "The metajax authors"
copyright = "2026, the metajax authors"  # noqa: A001 - Sphinx's name
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    # MathJax served from the built site, not a CDN: the maths renders offline (pip package sphinx-mathjax-offline)
    "sphinx-mathjax-offline",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "imported-members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "furo"
html_title = f"metajax {release}"
# Links from the pages to files of the repository (benchmarks, configs) are not documents of this site.
suppress_warnings = ["myst.xref_missing"]
napoleon_use_ivar = True
