"""Benchmark suite: ``python benchmarks/run.py [--full] [--only WORKLOAD]`` (same as ``metajax bench``).

The code lives in ``metajax/_src/bench.py`` so that an installed package can
run it too; see ``benchmarks/README.md`` for the results and how to read them.
"""

import sys

from metajax._src.bench import main

if __name__ == "__main__":
    sys.exit(main())
