"""Follow one write(2) from the VFS down to cache lines, on the DAX path and on the page
cache path, and see when it becomes durable.

Run it with ``python examples/trace_write.py``. For each path it mounts a fresh extentfs
on an fsdax namespace, writes 11 bytes into a new file, then fsyncs, and prints the
machine's trace events with a line saying what each step is. After the write and after
the fsync it asks the CPU model how many cache lines are still in flight (visible to
loads, not yet durable).

What to see:

* DAX: ``fs.write`` (path dax) finds a hole, allocates a block (``fs.alloc``; the
  inode table block it needs is read first), and copies the bytes straight into the
  pmem with ``memcpy_flushcache`` (``dax.copy_in``: non-temporal stores to the block's
  physical address). Those lines are in flight: no fence has run. fsync fences and
  flushes (``cpu.fence``, ``pmem.flush``), then commits the journal: descriptor and
  metadata images, flush, commit block, flush, checkpoint, flush.
* Page cache: the write only dirties a DRAM page (``mm.page_alloc`` for the page cache);
  nothing reaches pmem until fsync writes the page back as a bio (``mm.writeback``,
  ``block.submit``, ``pmem.write``: the pmem driver's own non-temporal copy) into the
  block the delayed allocation chose at writeback (``fs.alloc``), then the same commit.
"""

from __future__ import annotations

from nvdimm import ndctl
from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import MiB

SAYS = {
    "fs.write": "vfs write(2) enters the filesystem",
    "fs.alloc": "the file block was a hole: allocate a device block",
    "dax.copy_in": "copy into pmem through the direct map",
    "mm.page_alloc": "a DRAM page for the page cache",
    "mm.writeback": "writeback: dirty page cache pages become a bio",
    "block.submit": "a bio enters the block layer",
    "pmem.read": "pmem driver reads (a metadata block)",
    "pmem.write": "pmem driver copies the bio into pmem (NT stores)",
    "pmem.flush": "nvdimm_flush: fence (+ flush hints if the DIMMs have them)",
    "cpu.fence": "SFENCE: written-back lines and NT stores reach the ADR domain",
    "fs.journal.log": "journal: descriptor + metadata images into the log, then flush",
    "fs.journal.commit": "commit block written and flushed: the transaction is durable;"
                         " now checkpoint the images home",
    "fs.journal.done": "checkpoint flushed; the journal superblock moves past it",
}


def trace_one(dax: str) -> list[str]:
    m = Machine.create(MachineConfig(dimms=1, dimm_size=256 * MiB))
    m.init_labels()
    name = ndctl.create_namespace(m, mode="fsdax", size=64 * MiB)["blockdev"]
    m.mkfs(name)
    m.mount(name, "/mnt", dax=dax)
    f = m.vfs.open("/mnt/hello", "w")
    out = [f"== dax={dax}: write(fd, 'hello world', 11) =="]
    start = m.trace.last_seq
    f.write(b"hello world")
    out += _events(m, start)
    out.append(f"   -> lines in flight after write(2): {_in_flight(m)}")
    out.append("== fsync(fd) ==")
    start = m.trace.last_seq
    f.fsync()
    out += _events(m, start)
    out.append(f"   -> lines in flight after fsync(2): {_in_flight(m)}")
    f.close()
    return out


def _events(m: Machine, start: int) -> list[str]:
    lines = []
    told: set[str] = set()
    for e in m.trace.since(start):
        fields = ", ".join(f"{k}={v:#x}" if k == "spa" else f"{k}={v}"
                           for k, v in e.fields.items()
                           if k not in ("fs", "dev", "disk", "how"))
        say = SAYS.get(e.name, "") if e.name not in told else ""
        told.add(e.name)
        lines.append(f"  {e.name:<18} {fields:<58} {'# ' + say if say else ''}".rstrip())
    return lines


def _in_flight(m: Machine) -> int:
    pending = m.platform.cpu.pending()
    return len({a >> 6 for s in pending for a in range(s.addr, s.addr + s.length, 64)})


def main() -> None:
    for dax in ("always", "never"):
        print("\n".join(trace_one(dax)))
        print()


if __name__ == "__main__":
    main()
