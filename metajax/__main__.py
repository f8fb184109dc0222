"""``python -m metajax`` is the ``metajax`` command."""

import sys

from metajax.cli import main

sys.exit(main())
