"""pmem as a tier of memory: the same workload on every shape of the ``pmem_tier`` seam.

Run it with ``python examples/memory_tiers.py`` (about half a minute on two cores). It
runs the built-in ``memory-tiers`` experiment through the API on worker processes: a
machine with 64 MiB of DRAM and 256 MiB of pmem, a working set of 192 MiB (half
anonymous memory, half a file on a slow disk), 200,000 accesses of 64 bytes with a Zipf
0.99 skew, 30 % of them stores, the hot set moving once half-way. Each variant gets the
same pmem in its own shape; ``dram-only`` (no pmem, swap on the disk) is the baseline.
It prints the metrics side by side, then swap on a raw namespace against swap on a
sector (BTT) one, then reads a few answers back out of the results as data.

What it shows, in the terms a memory-management engineer uses (modeled time prices DRAM
with the ``dram`` preset, pmem with ``optane``, the disk as a NAND SSD at 80 µs a read,
and 1 µs of software per fault; it is a model output, not a measurement):

* **kmem-numa** (pmem onlined by dax/kmem as a CPU-less node in ``memory_tier22``) takes
  no major fault at all after warm-up: a cold page is demoted to pmem and used there in
  place (about a quarter of the accesses), and a page that turns hot is promoted back
  (NUMA balancing's hint faults count its accesses per scan period). It has the least
  modeled time by far, and most of what it pays is hint faults. Its prices: 4 MiB of
  DRAM for the struct pages of 256 MiB of hot-added memory (1.56 %, so a smaller DRAM
  node for the workload; ``--vary kmem_memmap=pmem`` moves them onto the pmem itself),
  and stores that reach pmem in place.
* **swap**, **pagecache-ext** and **dax-cache** take exactly the same faults as the
  DRAM-only baseline, because mm does exactly the same thing: the same LRU evicts the
  same pages and the same accesses fault them back. What differs is where a fault is
  served from. swap serves anonymous pages from pmem and file pages from the disk;
  pagecache-ext (cleancache on pmem) the reverse: it turns the re-reads of evicted clean
  file pages into pmem hits and does nothing for anonymous memory, which still swaps to
  the disk. dax-cache sits under the block layer and caches every disk block, file and
  swap alike, so after warm-up no fault reaches the disk: its modeled time is close to
  kmem-numa's, but each access still costs a major fault, a bio and a 4 KiB copy, and
  hot blocks live twice (DRAM and pmem).
* **Wear**: pagecache-ext writes pmem once per evicted file page (every put), swap once
  per anonymous page that goes out (a synchronous device drops the copy at swap-in, so
  a page that leaves again is written again), kmem-numa only for demotions and in-place
  stores, which for this read-mostly workload is the least.
* **BTT under swap**: the same pages go out either way; on a sector namespace every
  4 KiB slot write also writes the BTT's flog and map entries and fences eight times.
  That buys sector atomicity that swap never uses (nobody reads a swap area after a
  crash), which is why the seed's "reworked swap" wanted a raw, synchronous path.
"""

from __future__ import annotations

import sys

from nvdimm.explore import builtin
from nvdimm.explore.sweep import sweep
from nvdimm.explore.tiers import rows_table

VARIANTS = ("kmem-numa", "swap", "pagecache-ext", "dax-cache", "dram-only")


def main() -> int:
    exp = builtin.get("memory-tiers").experiment(vary={"pmem_tier": VARIANTS})
    results = sweep(exp)  # one worker process per CPU
    notes = {r.config["pmem_tier"]: r.notes for r in results.runs}
    print("The default tier workload on each shape of pmem (measured after warm-up):\n")
    print(rows_table(notes))

    btt = builtin.get("memory-tiers").experiment(
        vary={"pmem_tier": ("swap",), "swap_mode": ("raw", "sector"),
              "file_fraction": (0.0,), "accesses": (50_000,)})
    swap = {r.config["swap_mode"]: r.notes for r in sweep(btt).runs}
    print("\nSwap on a raw namespace and on a sector (BTT) one (anonymous memory only, "
          "50,000 accesses):\n")
    print(rows_table({k: {n: v[n] for n in ("pages swapped out", "pages swapped in",
                                            "pmem data written (MiB)",
                                            "pmem media written (MiB)", "pmem fences",
                                            "modeled time (ms)")}
                      for k, v in swap.items()}))

    print("\nRead back from the results:")
    kmem = notes["kmem-numa"]
    others = {v: notes[v]["faults: major"] for v in VARIANTS if v != "kmem-numa"}
    print(f"  kmem-numa: {kmem['faults: major']} major faults; the others: {others}")
    fastest = min(notes, key=lambda v: notes[v]["modeled time (ms)"])
    print(f"  least modeled time: {fastest}")
    no_disk = [v for v in VARIANTS if notes[v]["disk reads"] == 0]
    print(f"  no disk reads after warm-up: {', '.join(no_disk)}")
    bad = [r.label for r in results.runs if r.error or r.notes["invariant violations"]
           or r.notes["read-back mismatches"]]
    print(f"  runs with errors, violations or data that did not read back: {bad or 'none'}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
