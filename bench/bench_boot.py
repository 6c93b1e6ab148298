"""Boot a machine with 64 TiB of pmem, init-labels, create a namespace: seconds and
peak RSS, measured in a fresh interpreter so the figure is the model's alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""
import json, time
t0 = time.perf_counter()
from nvdimm.machine import Machine, MachineConfig
t_import = time.perf_counter() - t0
t = time.perf_counter()
m = Machine.create(MachineConfig(dimms=DIMMS, dimm_size=SIZE))
t_boot = time.perf_counter() - t
t = time.perf_counter()
for r in m.bus.regions:
    m.bus.disable_region(r.dev)
for d in m.bus.dimms:
    m.bus.init_labels(d.dev)
for r in m.bus.regions:
    m.bus.enable_region(r.dev)
ns = m.bus.create_namespace(mode="raw")
m.block_device(ns.device.name).write(ns.size - 4096, b"x" * 4096, fua=True)
t_ns = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork.
rss = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"boot": t_boot, "labels_and_namespace": t_ns, "import": t_import,
                  "rss": rss, "ns_size": ns.size}))
"""


def run(quick: bool = False) -> list[dict[str, Any]]:
    dimms, size = 8, 8 << 40  # 8 DIMMs of 8 TiB: 64 TiB of pmem
    code = SCRIPT.replace("DIMMS", str(dimms)).replace("SIZE", str(size))
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True)
    fig = json.loads(res.stdout)
    params = {"pmem_tib": dimms * size >> 40, "dimms": dimms}
    total = fig["boot"] + fig["labels_and_namespace"]
    return [
        {"name": "boot.64tib_seconds", "value": round(total, 3), "unit": "s",
         "params": {**params, "boot": round(fig["boot"], 3),
                    "init_labels_and_create_namespace": round(fig["labels_and_namespace"], 3),
                    "python_imports": round(fig["import"], 3)}},
        {"name": "boot.64tib_peak_rss", "value": round(fig["rss"] / 2**20, 1), "unit": "MiB",
         "params": params},
    ]
