"""DAX on a sector-mode (BTT) namespace: what each ``btt_remap`` variant does when a
process stores through a mapping of a file while write(2) rewrites the same blocks.

Run it with ``python examples/dax_on_btt.py`` (under a second). It runs the built-in
``btt-remap`` experiment and then reads the answer out of the results as data.

What it shows, in a kernel engineer's terms:

* ``deny-dax`` is Linux: a filesystem on a sector namespace gets no DAX
  ("DAX unsupported by block device"), so mmap goes through the page cache and nothing
  can go wrong -- nothing direct can happen either.
* ``unsafe``: the BTT writes each block write to a free block and flips its map entry;
  the process's mapping still points at the old block, which is now the lane's free
  block. Its later stores are lost to the file, and the next block write reuses that
  block for another LBA, which then holds the stale mapping's bytes. The experiment
  counts the corrupted blocks (and the ``data.expected`` invariant flags the run).
* ``notify-holder``: before moving a mapped block the BTT calls the holder (the
  filesystem), which unmaps it; the process refaults onto the new block. Nothing is
  lost; each block write to a mapped block costs a notification, an unmap and a fault.
* ``defer``: a block write to a mapped block goes in place instead; nothing is lost
  without a crash, but such a write is no longer atomic: a power failure in the middle
  can tear the sector, which is the one thing BTT exists to prevent.
"""

from __future__ import annotations

from nvdimm.explore import builtin


def main() -> None:
    c = builtin.run("btt-remap", jobs=1, progress=False)
    print(c.table())
    print()
    for run in c.results.runs:
        n = run.notes
        print(f"{run.config['btt_remap']:>14}: dax {n['dax']}, corrupted blocks "
              f"{n['corrupted blocks']}, holder notifications {n['holder notifications']}, "
              f"sector atomicity while mapped: {n['sector atomicity while mapped']}")


if __name__ == "__main__":
    main()
