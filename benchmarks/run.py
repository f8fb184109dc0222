"""Benchmark suite: ``python benchmarks/run.py [--full] [--only WORKLOAD]``.

The harness is ``benchmarks/harness.py``; see ``benchmarks/README.md`` for the results and how to read them.
"""

import sys

from harness import main

if __name__ == "__main__":
    sys.exit(main())
