"""Sector mode (BTT): 4 KiB random writes and reads per second through /dev/pmem0s
(block layer, BTT arena: data, flog halves, map entry, each flushed; CPU persistence
model, memory controller, sparse media), with crash bookkeeping off and on; and crash
states explored and checked per second for single-sector writes (every per-line prefix
of every durable piece, each recovered as attach would and checked: old-or-new sector,
map + free list a permutation, check-namespace clean)."""

from __future__ import annotations

import random
import time
from typing import Any

from drivers.btt.crashcheck import CrashExplorer
from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import GiB, MiB

BLK = 4096


def _machine(tracking: bool, size: int, lbasize: int = BLK, dimm: int = 2 * GiB) -> Any:
    from drivers.btt import BttDriver

    m = Machine.create(MachineConfig(dimms=1, dimm_size=dimm, tracking=tracking))
    if "sector" not in m.drivers.drivers:
        m.drivers.register(BttDriver())
    m.bus.disable_region("region0")
    m.bus.init_labels("nmem0")
    m.bus.enable_region("region0")
    m.trace.on = False
    m.bus.create_namespace(mode="sector", size=size, sector_size=lbasize)
    return m


def _rate(n: int, fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 50_000 if quick else 300_000
    out: list[dict[str, Any]] = []
    for span_mib in (4, 256):
        for tracking in (False, True):
            out.extend(_throughput(tracking, n, span_mib))
    for lbasize in (4096, 512):
        out.extend(_crash_states(lbasize, 20 if quick else 100))
    return out


def _throughput(tracking: bool, n: int, span_mib: int) -> list[dict[str, Any]]:
    span = span_mib * MiB // BLK
    m = _machine(tracking, 1 * GiB)
    disk = m.block_device("pmem0s")
    rng = random.Random(1)
    offs = [rng.randrange(span) * BLK for _ in range(n)]
    data = bytes(range(256)) * (BLK // 256)
    write, read = disk.write, disk.read

    def writes() -> None:
        for off in offs:
            write(off, data)

    def reads() -> None:
        for off in offs:
            read(off, BLK)

    for off in range(0, span * BLK, BLK):  # map every block once: no first-touch cost
        write(off, data)
    params = {"ops": n, "block": BLK, "span_mib": span_mib, "crash_tracking": tracking}
    return [
        {"name": "btt.randwrite_4k", "value": round(_rate(n, writes)), "unit": "ops/s",
         "params": params},
        {"name": "btt.randread_4k", "value": round(_rate(n, reads)), "unit": "ops/s",
         "params": params},
    ]


def _crash_states(lbasize: int, writes: int) -> list[dict[str, Any]]:
    out = []
    for fast in (True, False):
        m = _machine(True, 32 * MiB, lbasize, dimm=64 * MiB)
        dev = m.bus.namespace("namespace0.0").device
        ex = CrashExplorer(dev, fast=fast)
        rng = random.Random(2)
        count = writes if fast else max(2, writes // 10)
        lbas = [rng.randrange(64) for _ in range(count)]
        blobs = [rng.randbytes(lbasize) for _ in range(count)]
        t = time.perf_counter()
        for lba, blob in zip(lbas, blobs, strict=True):
            ex.write(lba, blob)
        dt = time.perf_counter() - t
        st = ex.stats
        if st.failures:
            raise AssertionError(f"BTT crash check failed: {st.failures[0]}")
        out.append({"name": "btt.crash_states_checked", "value": round(st.images / dt),
                    "unit": "states/s",
                    "params": {"sector_size": lbasize, "writes": st.writes,
                               "crash_points": st.points, "states": st.images,
                               "fully_recovered": st.full,
                               "shortcut_for_data_only_states": fast,
                               "namespace_mib": 32}})
    return out
