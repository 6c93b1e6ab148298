"""A persistence variant written outside the project, in an experiment beside Linux's.

The question: *what if the platform's hold-up energy also drained the CPU's
write-combining buffers?* Under eADR the caches are in the persistence domain, but
non-temporal stores (what the pmem driver's ``memcpy_flushcache`` uses for block
writes) still sit in write-combining buffers until an SFENCE, so a block write with
neither FUA nor a flush is lost on eADR too. The hypothetical ``eadr-wc`` platform
below protects those buffers: every visible store is durable.

The variant is a :class:`~nvdimm.platform.persistence.StageRule` (a persistence rule
stated as data) registered with the ``@variant`` decorator. Nothing in the project
changes: the decorator adds it to the seam's catalogue, and the experiment names it in
``vary`` like a built-in variant. Sweeps on other processes get it too (each job
carries the variants it needs). To make it available to the ``nvdimm`` command as
well, publish the class under the entry-point group ``nvdimm.variants`` of an
installed package::

    [project.entry-points."nvdimm.variants"]
    eadr-wc = "my_platforms:EadrWc"

and then ``nvdimm explore persistence --vary persistence=eadr,eadr-wc``.

What it shows (``python examples/my_variant.py``): in the ``eadr-wc`` column the row
``write (no flush)`` reads intact where ``adr`` and ``eadr`` lose it, and the crash
leaves nothing in flight at all; everything else matches ``eadr``.
"""

from __future__ import annotations

import argparse

import attrs

from nvdimm.explore import builtin
from nvdimm.platform.persistence import Stage, StageRule
from nvdimm.seams import variant


@variant(
    "persistence", "eadr-wc",
    history="""Hypothetical, for exploration: eADR whose hold-up energy also drains the
    write-combining buffers.""",
    tradeoffs="""No store needs a flush or a fence to be durable, NT stores included;
    the platform pays for even more hold-up energy.""",
)
@attrs.frozen(slots=True)
class EadrWc(StageRule):
    """Every store is durable as soon as it is visible.

    ::

        movnti [0x40] = 1    visible 1, durable 1   (the WC buffer is protected)
        store  [0x80] = 2    visible 1, durable 1   (so is the cache)
    """

    name: str = "eadr-wc"
    persistence_domain: str = "cpu_cache"
    cached_durable_at: Stage = Stage.VISIBLE
    nt_durable_at: Stage = Stage.VISIBLE
    flush_hints: bool = False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=None, help="worker processes (1: serial)")
    args = p.parse_args()
    comparison = builtin.run("persistence", seeds=args.seeds, jobs=args.jobs,
                             vary={"persistence": ["adr", "eadr", "eadr-wc"],
                                   "crash": ["nothing"]})
    print(comparison.table())


if __name__ == "__main__":
    main()
