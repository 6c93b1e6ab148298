"""Benchmarks. Prints one JSON object a line: {"name", "value", "unit", "params"}.

    python bench/run.py [--quick] [NAME ...]

Figures are wall-clock measurements of the model on this machine (not modeled time).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SUITES = {
    "pmem": "bench.bench_pmem",
    "boot": "bench.bench_boot",
    "trace": "bench.bench_trace",
    "persistence": "bench.bench_persistence",
    "btt": "bench.bench_btt",
    "memmap": "bench.bench_memmap",
    "mm": "bench.bench_mm",
    "tiers": "bench.bench_tiers",
    "fs": "bench.bench_fs",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: finishes in under a minute")
    p.add_argument("names", nargs="*", help=f"suites to run (default all): {', '.join(SUITES)}")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in SUITES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    for name in args.names or list(SUITES):
        mod = importlib.import_module(SUITES[name])
        for fig in mod.run(quick=args.quick):
            print(json.dumps(fig), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
