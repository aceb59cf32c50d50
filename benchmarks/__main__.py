"""``python -m benchmarks`` (``make bench``): B1-B12, one JSON line each (docs/performance.md).

Each benchmark runs in its own interpreter so that its peak memory is its own; the figures,
targets and what they mean are in ``benchmarks/suite.py``.
"""

from __future__ import annotations

import json
import sys

from benchmarks.suite import NAMES, run_isolated


def main(argv: list[str]) -> int:
    names = [a.upper() for a in argv] or list(NAMES)
    failed = 0
    for name in names:
        row = run_isolated(name)
        failed += "error" in row
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
