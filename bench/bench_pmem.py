"""Raw pmem block I/O: 4 KiB random writes and reads per second through /dev/pmem0
(block layer, pmem driver, CPU persistence model, memory controller, sparse media),
with crash bookkeeping on and off."""

from __future__ import annotations

import random
import time
from typing import Any

from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import GiB, MiB

BLK = 4096


def _machine(tracking: bool) -> Any:
    m = Machine.create(MachineConfig(dimms=1, dimm_size=2 * GiB, tracking=tracking))
    m.bus.disable_region("region0")
    m.bus.init_labels("nmem0")
    m.bus.enable_region("region0")
    m.trace.on = False
    m.bus.create_namespace(mode="raw", size=1 * GiB)
    return m


def _rate(n: int, fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 50_000 if quick else 300_000
    out = []
    # Random offsets within 4 MiB (the host's caches hold the model's pages) and within
    # 256 MiB (every 4 KiB copy misses the host's caches: the media copy alone costs more
    # than a microsecond then).
    for span_mib in (4, 256):
        for tracking in (False, True):
            out.extend(_measure(tracking, n, span_mib))
    return out


def _measure(tracking: bool, n: int, span_mib: int) -> list[dict[str, Any]]:
    span = span_mib * MiB // BLK  # blocks the random offsets fall in
    out: list[dict[str, Any]] = []
    m = _machine(tracking)
    disk = m.block_device("pmem0")
    rng = random.Random(1)
    offs = [rng.randrange(span) * BLK for _ in range(n)]
    data = bytes(range(256)) * (BLK // 256)
    write, read, flush = disk.write, disk.read, disk.flush

    def writes() -> None:
        # A flush every 64 writes, as a file system's journal commit would send.
        for i, off in enumerate(offs):
            write(off, data)
            if i & 63 == 63:
                flush()
        flush()

    def fua_writes() -> None:
        for off in offs:
            write(off, data, fua=True)

    def reads() -> None:
        for off in offs:
            read(off, BLK)

    for off in range(0, span * BLK, BLK):  # touch every page first: no first-touch cost
        write(off, data, fua=True)
    params = {"ops": n, "block": BLK, "span_mib": span_mib, "crash_tracking": tracking}
    out.append({"name": "pmem.randwrite_4k", "value": round(_rate(n, writes)),
                "unit": "ops/s", "params": {**params, "flush_every": 64}})
    out.append({"name": "pmem.randwrite_4k_fua", "value": round(_rate(n, fua_writes)),
                "unit": "ops/s", "params": params})
    out.append({"name": "pmem.randread_4k", "value": round(_rate(n, reads)),
                "unit": "ops/s", "params": params})
    return out
