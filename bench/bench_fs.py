"""extentfs: file I/O on the DAX path versus the page cache path, mmap faults, and
copies per byte.

* ``fs.write`` / ``fs.read``: sequential write(2) (then one fsync) and read(2) of a
  file in 4 KiB and 2 MiB calls, on a ``dax=always`` and a ``dax=never`` mount of one
  fsdax namespace; MB/s of file data, wall-clock of the model. Reads are of a file that
  was written and fsync'd before (cold page cache on the buffered path: a fresh mount).
* ``fs.faults_per_gib``: a shared mapping of a 1 GiB file (DAX) touched once per 4 KiB,
  with 4 KiB entries only and with 2 MiB entries allowed; page faults per GiB mapped.
* ``fs.copies_per_byte``: bytes copied per byte written (write + fsync) or read, per
  path, from the counters: DAX copies once (user buffer <-> pmem); the page cache twice
  (user buffer <-> DRAM page, DRAM page <-> pmem by the pmem driver).

The CPU model runs in its cheap mode (no crash bookkeeping) and the trace is off.
"""

from __future__ import annotations

import time
from typing import Any

MiB = 1 << 20
GiB = 1 << 30


def _machine(dax: str, ns_size: int) -> tuple[Any, Any, str]:
    from nvdimm import ndctl
    from nvdimm.machine import Machine, MachineConfig
    from nvdimm.trace import Trace

    m = Machine.create(MachineConfig(dimms=1, dimm_size=ns_size + 64 * MiB, tracking=False,
                                     dram_size=4 * GiB), trace=Trace(on=False))
    m.init_labels()
    name = ndctl.create_namespace(m, mode="fsdax", size=ns_size)["blockdev"]
    m.mkfs(name)
    fs = m.mount(name, "/mnt", dax=dax)
    return m, fs, name


def _io(dax: str, io: int, total: int) -> list[dict[str, Any]]:
    m, _, name = _machine(dax, total + 256 * MiB)
    buf = b"\xa5" * io
    f = m.vfs.open("/mnt/f", "w")
    t0 = time.perf_counter()
    for off in range(0, total, io):
        f.pwrite(buf, off)
    f.fsync()
    tw = time.perf_counter() - t0
    f.close()
    c = m.metrics.c
    copies_w = (c["fs.dax.copies_in"] + c["mm.pagecache.writeback_pages"] * 4096
                + (total if dax == "never" else 0)) / total
    m.vfs.umount("/mnt")
    m.mount(name, "/mnt", dax=dax)
    before = dict(c)
    f = m.vfs.open("/mnt/f")
    t0 = time.perf_counter()
    for off in range(0, total, io):
        f.pread(io, off)
    tr = time.perf_counter() - t0
    f.close()
    read_in = c["mm.pagecache.misses"] - before.get("mm.pagecache.misses", 0)
    copies_r = ((c["fs.dax.copies_out"] - before.get("fs.dax.copies_out", 0))
                + (read_in * 4096 + total if dax == "never" else 0)) / total
    path = "dax" if dax == "always" else "buffered"
    p = {"path": path, "io": io, "total": total}
    return [
        {"name": "fs.write", "value": round(total / tw / 1e6, 1), "unit": "MB/s", "params": p},
        {"name": "fs.read", "value": round(total / tr / 1e6, 1), "unit": "MB/s", "params": p},
        {"name": "fs.copies_per_byte", "value": round(copies_w, 2), "unit": "copies",
         "params": {**p, "op": "write+fsync"}},
        {"name": "fs.copies_per_byte", "value": round(copies_r, 2), "unit": "copies",
         "params": {**p, "op": "read"}},
    ]


def _faults(entry: int, span: int) -> dict[str, Any]:
    m, _, _ = _machine("always", span + 64 * MiB)
    f = m.vfs.open("/mnt/map", "w+")
    f.fallocate(0, span)
    p = m.mm.spawn("bench")
    a = p.mm.mmap(span, shared=True, backing=m.vfs.mounts["/mnt"].fs.mapping_of(f.ino),
                  max_fault=entry)
    t0 = time.perf_counter()
    for off in range(0, span, 4096):
        p.load(a + off, 8)
    dt = time.perf_counter() - t0
    faults = sum(v for k, v in m.metrics.snapshot("mm.faults.").items()
                 if k in ("mm.faults.4k", "mm.faults.2m", "mm.faults.1g"))
    return {"name": "fs.faults_per_gib", "value": round(faults * GiB / span),
            "unit": "faults/GiB",
            "params": {"entry": "2M" if entry == 2 * MiB else "4K", "span": span,
                       "touch_seconds": round(dt, 3)}}


def run(quick: bool = False) -> list[dict[str, Any]]:
    total = 16 * MiB if quick else 128 * MiB
    out: list[dict[str, Any]] = []
    for dax in ("always", "never"):
        for io in (4096, 2 * MiB):
            out += _io(dax, io, total)
    span = 256 * MiB if quick else GiB
    out.append(_faults(4096, span))
    out.append(_faults(2 * MiB, span))
    return out
