"""The ``metajax`` command line (also ``python -m metajax``): ``metajax --help`` lists the commands.

``main(argv)`` runs one command and returns its exit status, as the ``metajax`` script does.
"""

from metajax._src.app.cli import build_parser, main

__all__ = ["build_parser", "main"]
