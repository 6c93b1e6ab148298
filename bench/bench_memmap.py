"""The 64 TiB memmap case: a machine with 64 TiB of pmem and an fsdax namespace over all
of it, with map=mem (1 TiB of struct pages charged to DRAM) and with map=dev (1 TiB
reserved on the device). Setup seconds, the memmap figures, peak RSS, and the cost of
creating struct pages for the pages a workload touches, each measured in a fresh
interpreter so the figure is the model's alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""
import json, time
from nvdimm.machine import Machine, MachineConfig
from nvdimm import ndctl
TiB = 1 << 40
t = time.perf_counter()
m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * TiB, dram_size=2 * TiB))
m.init_labels()
t_boot = time.perf_counter() - t
t = time.perf_counter()
out = ndctl.create_namespace(m, mode="fsdax", map="MAP")
t_ns = time.perf_counter() - t
dev = m.bus.namespace(out["dev"]).device
pg = dev.pgmap
objects_after_setup = len(pg.pages)
t = time.perf_counter()
step = dev.size // TOUCH // 4096 * 4096
for i in range(TOUCH):
    pg.page(dev.pfn_of(i * step)).get()
t_touch = time.perf_counter() - t
rss = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"boot": t_boot, "create": t_ns, "touch": t_touch, "rss": rss,
                  "dram": m.platform.dram.used, "pmem": pg.cost.pmem_bytes,
                  "objects_after_setup": objects_after_setup, "pages": len(pg.pages),
                  "dataoff": dev.layout.dataoff}))
"""


def measure(mapping: str, touch: int) -> dict[str, Any]:
    code = SCRIPT.replace("MAP", mapping).replace("TOUCH", str(touch))
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True)
    fig: dict[str, Any] = json.loads(res.stdout)
    return fig


def run(quick: bool = False) -> list[dict[str, Any]]:
    touch = 16384 if quick else 262144  # struct pages created: 64 MiB or 1 GiB of pages
    out = []
    for mapping in ("mem", "dev"):
        fig = measure(mapping, touch)
        params = {"pmem_tib": 64, "map": mapping, "memmap_dram_bytes": fig["dram"],
                  "memmap_pmem_bytes": fig["pmem"], "dataoff": fig["dataoff"],
                  "struct_pages_after_setup": fig["objects_after_setup"]}
        out += [
            {"name": f"memmap.64tib_map_{mapping}_setup_seconds",
             "value": round(fig["boot"] + fig["create"], 3), "unit": "s",
             "params": {**params, "boot_and_init_labels": round(fig["boot"], 3),
                        "create_namespace": round(fig["create"], 4)}},
            {"name": f"memmap.64tib_map_{mapping}_struct_pages_per_second",
             "value": round(fig["pages"] / fig["touch"]), "unit": "pages/s",
             "params": {**params, "pages": fig["pages"]}},
            {"name": f"memmap.64tib_map_{mapping}_peak_rss",
             "value": round(fig["rss"] / 2**20, 1), "unit": "MiB",
             "params": {**params, "struct_pages_created": fig["pages"]}},
        ]
    return out


if __name__ == "__main__":  # pragma: no cover
    for f in run(quick="--quick" in sys.argv):
        print(json.dumps(f))
