"""The storage-vs-memory trade-off of one file: extentfs through the page cache and
through DAX, side by side.

Run it with ``python examples/fs_paths.py`` (a couple of seconds). It runs the built-in
``fs-paths`` experiment: an 8 MiB file written with write(2) (4 KiB and 2 MiB calls) and
fsync'd, read cold, re-read three times, then mapped and read through the mapping.

What it shows:

* Copies: the page cache copies every byte twice (the user's buffer to a DRAM page, the
  DRAM page to pmem at writeback; the reverse on a cold read); DAX once.
* Memory: the page cache holds the file in 2,048 DRAM pages; DAX holds none.
* Re-reads: the page cache serves them from DRAM with no pmem traffic; DAX reads pmem
  every time, so the modeled time (pmem priced as Optane, DRAM copies as DRAM) favours
  the page cache for data read more than once, and DAX for data read once or written.
* mmap: a page-cache mapping takes one 4 KiB fault per page; a DAX mapping maps the pmem
  itself, with 2 MiB entries when the file's extents are 2 MiB aligned (written 2 MiB at
  a time) and 4 KiB ones when they are not (written 4 KiB at a time, the file starts a
  block past a 2 MiB boundary): alignment is the filesystem's job.
"""

from __future__ import annotations

from nvdimm.explore import builtin


def main() -> None:
    c = builtin.run("fs-paths", jobs=1, progress=False)
    print(c.table())


if __name__ == "__main__":
    main()
