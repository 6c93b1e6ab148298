"""Cost of a trace event on the write path, enabled and disabled."""

from __future__ import annotations

import time
from typing import Any

from nvdimm.trace import Trace


def _per_call(fn: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 200_000 if quick else 2_000_000
    off = Trace(on=False)
    on = Trace(on=True, capacity=1000)

    def guarded_off() -> None:
        if off.on:
            off.emit("pmem.write", dev="pmem0", sector=8, len=4096)

    def guarded_on() -> None:
        if on.on:
            on.emit("pmem.write", dev="pmem0", sector=8, len=4096)

    def nothing() -> None:
        pass

    base = _per_call(nothing, n)
    t_off = _per_call(guarded_off, n) - base
    t_on = _per_call(guarded_on, n // 4) - base
    params = {"calls": n}
    return [
        {"name": "trace.disabled_event", "value": round(t_off * 1e9, 1), "unit": "ns/event",
         "params": params},
        {"name": "trace.enabled_event", "value": round(t_on * 1e9, 1), "unit": "ns/event",
         "params": params},
    ]
