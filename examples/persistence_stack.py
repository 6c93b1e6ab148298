"""The persistence domain one layer up: a BTT namespace and extentfs (DAX and page
cache), written with and without fsync/msync, then a power failure, under ADR, eADR
and a flush-hint platform.

Run it with ``python examples/persistence_stack.py`` (about a second).

What it shows:

* fsync(2) and msync(MS_SYNC) keep the data on every platform and every stack: the
  filesystem writes back (page cache) or writes back the mapping's dirty lines (DAX),
  fences, flushes, then commits its journal.
* A BTT block write is durable when it completes, flush or not (every BTT write ends in
  nvdimm_flush), and is never torn.
* Without fsync, write(2) on the page cache is lost whole (it never left DRAM); on DAX
  it was copied with non-temporal stores that nobody fenced, so it comes back torn.
* A store through a DAX mapping without msync survives only under eADR, where the CPU
  caches are inside the persistence domain.
"""

from __future__ import annotations

from nvdimm.explore import builtin


def main() -> None:
    c = builtin.run("persistence-stack", jobs=1, progress=False)
    print(c.table())


if __name__ == "__main__":
    main()
