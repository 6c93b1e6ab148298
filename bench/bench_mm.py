"""Processes over 64 TiB of pmem: a process maps a few GiB of an fsdax data area or a
device-dax instance on a machine with 64 TiB of pmem and touches it (one 8-byte access
per entry: per 2 MiB with 2 MiB entries, per 4 KiB with 4 KiB entries). A store makes
the media model keep the 4 KiB page it lands in, so the 4 KiB cases are measured with
loads (mm's own cost) and once with stores (plus the data written). Reports the setup
seconds (machine, labels, namespace, mm, mmap), the touch seconds, faults per GiB, and
peak RSS (VmHWM), each case in a fresh interpreter so the figure is the model's alone.

The CPU model runs in its cheap mode (``tracking=False``, no crash bookkeeping) and the
trace is off, as for any run that is not exploring crashes; ``tracked`` repeats the
2 MiB case with crash tracking on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""
import json, time
from nvdimm.machine import Machine, MachineConfig
from nvdimm.trace import Trace
from nvdimm import ndctl
from mm.process import MemorySystem
from mm.vma import DeviceDaxOps, PfnRangeOps
TiB, GiB, MiB = 1 << 40, 1 << 30, 1 << 20
MODE, ENTRY, SPAN, TRACKING, OP = "@MODE@", @ENTRY@, @SPAN@, @TRACKING@, "@OP@"
t0 = time.perf_counter()
m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * TiB, dram_size=2 * TiB,
                                 tracking=TRACKING), trace=Trace(on=False))
m.init_labels()
if MODE == "fsdax":
    out = ndctl.create_namespace(m, mode="fsdax", map="dev")
    dev = m.bus.namespace(out["dev"]).device
    backing = PfnRangeOps(dev.spa >> 12, dev.size >> 12, name=dev.name, fsdax=True)
else:
    align = "4K" if ENTRY == 4096 else "2M"
    out = ndctl.create_namespace(m, mode="devdax", map="dev", align=align)
    dev = m.bus.namespace(out["dev"]).device
    backing = DeviceDaxOps(dev)
system = MemorySystem.create(dram=m.platform.dram, cpu=m.platform.cpu,
                             pagemaps=m.drivers.drivers["fsdax"].pagemaps,
                             metrics=m.metrics, trace=m.trace)
p = system.spawn("bench")
a = p.mmap(SPAN, shared=True, backing=backing, max_fault=ENTRY)
t_setup = time.perf_counter() - t0
t1 = time.perf_counter()
if OP == "store":
    for off in range(0, SPAN, ENTRY):
        p.store(a + off, b"touched!")
else:
    for off in range(0, SPAN, ENTRY):
        p.load(a + off, 8)
t_touch = time.perf_counter() - t1
faults = sum(v for k, v in m.metrics.snapshot("mm.faults.").items())
rss = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"setup": t_setup, "touch": t_touch, "faults": faults, "rss": rss,
                  "leaves": len(p.mm.pt), "struct_pages": len(dev.pgmap.pages),
                  "pmem": dev.size}))
"""


def measure(mode: str, entry: int, span: int, tracking: bool = False,
            op: str = "store") -> dict[str, Any]:
    code = (SCRIPT.replace("@MODE@", mode).replace("@ENTRY@", str(entry))
            .replace("@SPAN@", str(span)).replace("@TRACKING@", str(tracking))
            .replace("@OP@", op))
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True)
    fig: dict[str, Any] = json.loads(res.stdout)
    return fig


def run(quick: bool = False) -> list[dict[str, Any]]:
    gib = 1 << 30
    big = 4 * gib  # touched with 2 MiB entries
    small = (256 << 20) if quick else gib  # touched with 4 KiB entries
    cases = [("fsdax", 2 << 20, big, False, "store"), ("devdax", 2 << 20, big, False, "store"),
             ("fsdax", 2 << 20, big, True, "store"),
             ("fsdax", 4096, small, False, "load"), ("devdax", 4096, small, False, "load"),
             # a stored-to 4 KiB page costs the media model 4 KiB: keep this one small
             ("fsdax", 4096, 256 << 20, False, "store")]
    out = []
    for mode, entry, span, tracking, op in cases:
        fig = measure(mode, entry, span, tracking, op)
        label = (f"{mode}_{'2m' if entry > 4096 else '4k'}_{op}"
                 f"{'_tracked' if tracking else ''}")
        params = {"pmem_tib": 64, "mode": mode, "entry": entry, "span_gib": span / gib,
                  "op": op, "tracking": tracking, "faults": fig["faults"],
                  "leaves": fig["leaves"], "struct_pages_created": fig["struct_pages"]}
        out += [
            {"name": f"mm.64tib_{label}_setup_seconds", "value": round(fig["setup"], 3),
             "unit": "s", "params": params},
            {"name": f"mm.64tib_{label}_touch_seconds", "value": round(fig["touch"], 3),
             "unit": "s", "params": params},
            {"name": f"mm.64tib_{label}_faults_per_gib",
             "value": round(fig["faults"] / (span / gib)), "unit": "faults/GiB",
             "params": params},
            {"name": f"mm.64tib_{label}_faults_per_second",
             "value": round(fig["faults"] / fig["touch"]), "unit": "faults/s",
             "params": params},
            {"name": f"mm.64tib_{label}_peak_rss", "value": round(fig["rss"] / 2**20, 1),
             "unit": "MiB", "params": params},
        ]
    return out


if __name__ == "__main__":  # pragma: no cover
    for f in run(quick="--quick" in sys.argv):
        print(json.dumps(f))
