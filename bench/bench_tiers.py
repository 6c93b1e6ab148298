"""pmem as a tier of memory: how fast the model runs the tier workload, per variant.

Each ``pmem_tier`` variant runs the default tier workload (64 MiB of DRAM, a working set
three times that, 256 MiB of pmem; ``--quick``: 16 MiB of DRAM, 128 MiB of pmem, fewer
accesses) on a fresh machine. Reported: wall-clock seconds of the measured accesses and
accesses per second (the model's speed on this machine), with the run's modeled time
and major faults as params so a change in behaviour shows next to a change in speed.
Wall-clock figures are measurements of the Python model; modeled time is a model output.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from nvdimm.explore.tiers import VARIANTS, TierWorkload, fresh_machine
from nvdimm.explore.tiers import run as run_tier
from nvdimm.units import MiB


def measure(variant: str, dram: int, pmem: int, accesses: int) -> dict[str, Any]:
    m = fresh_machine(dram, pmem)
    wl = TierWorkload(dram_pages=dram // 4096, accesses=accesses)
    t = time.perf_counter()
    result, _, _ = run_tier(m, variant, wl, pmem_size=pmem, verify_data=False)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "accesses": wl.pages + accesses,
            "modeled_ms": round(result.cost.total_ns / 1e6, 2),
            "major_faults": int(result.diff.get("tier.faults.major", 0)),
            "violations": len(result.violations)}


def run(quick: bool = False) -> list[dict[str, Any]]:
    dram, pmem, accesses = (16 * MiB, 128 * MiB, 50_000) if quick else (
        64 * MiB, 256 * MiB, 200_000)
    out = []
    for v in (*VARIANTS, "dram-only"):
        fig = measure(v, dram, pmem, accesses)
        params = {"variant": v, "dram_mib": dram >> 20, "pmem_mib": pmem >> 20,
                  "accesses": fig["accesses"], "modeled_ms": fig["modeled_ms"],
                  "major_faults": fig["major_faults"], "violations": fig["violations"]}
        out += [
            {"name": f"tiers.{v}_seconds", "value": round(fig["seconds"], 3), "unit": "s",
             "params": params},
            {"name": f"tiers.{v}_accesses_per_second",
             "value": round(fig["accesses"] / fig["seconds"]), "unit": "accesses/s",
             "params": params},
        ]
    return out


if __name__ == "__main__":  # pragma: no cover
    for f in run(quick="--quick" in sys.argv):
        print(json.dumps(f))
