"""What the DAX contract can express: the ``direct_access`` variants (bdev-2016,
dax-ops, widened) under a truncate of a page pinned for DMA, a media error inside a
mapped range, and DAX over BTT.

Run it with ``python examples/dax_contract.py`` (under a second).

What it shows:

* truncate with a pinned page: the 2016 contract has no way for the filesystem to find
  DAX pages still held by get_user_pages (dax_layout_busy_page came in 4.17). The
  truncate frees the block, the next file to be written gets it, and the DMA that was
  still in flight lands in that file. dax-ops and widened see the busy page: truncate
  waits, or here, with nothing to end the wait, fails with EBUSY and frees nothing.
* a media error in a mapped block: under bdev-2016 nobody is told, the kernel's own copy
  (read(2)) is not machine-check safe (the model raises where Linux would panic), and
  the process consumes the poison through its mapping. dax-ops tells the device's one
  holder and widened each mapping's holder; the filesystem unmaps the block, the
  process's next access is refused with SIGBUS before it touches the poison, and read(2)
  returns what it could copy (a short read).
* DAX over BTT: refused under every variant while ``btt_remap`` is ``deny-dax``; try
  ``nvdimm explore direct-access --vary scenario=dax-over-btt --vary
  btt_remap=deny-dax,notify-holder``.
"""

from __future__ import annotations

from nvdimm.explore import builtin


def main() -> None:
    c = builtin.run("direct-access", jobs=1, progress=False)
    print(c.table())


if __name__ == "__main__":
    main()
