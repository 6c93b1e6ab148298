"""Cost of the persistence domain on the pmem driver's hot path, and of crash exploration.

Wall-clock figures of the model on this machine (not modeled time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nvdimm.metrics import Metrics
from nvdimm.platform.media import SparseMedia
from nvdimm.platform.persistence import AdrRule, PersistenceDomain
from nvdimm.trace import Trace

PAGE = 4096
SPAN = 256  # distinct pages the loops cycle over


def _rate(fn: Callable[[int], None], n: int) -> float:
    """Calls per second of ``fn(i)`` for i in range(n)."""
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def _domain(tracking: bool) -> PersistenceDomain:
    media = SparseMedia(1 << 30)
    return PersistenceDomain(media, AdrRule(), tracking=tracking, metrics=Metrics(),
                             trace=Trace(on=False))


def _fig(name: str, value: float, unit: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "value": round(value), "unit": unit, "params": params}


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 20_000 if quick else 200_000
    page = bytes(range(256)) * 16
    out = []

    for tracking in (True, False):
        dom = _domain(tracking)

        def write(i: int, dom: PersistenceDomain = dom) -> None:
            dom.write_flushcache((i % SPAN) * PAGE, page)
            dom.fence()

        out.append(_fig("persistence.write_flushcache_fence_4k", _rate(write, n), "ops/s",
                        tracking=tracking, rule="adr", calls=n))

    media = SparseMedia(1 << 30)
    out.append(_fig("persistence.media_write_4k", _rate(
        lambda i: media.write((i % SPAN) * PAGE, page), n), "ops/s", calls=n))

    dom = _domain(True)
    for i in range(SPAN):
        dom.write_flushcache(i * PAGE, page)
    dom.fence()
    out.append(_fig("persistence.load_4k", _rate(
        lambda i: dom.load((i % SPAN) * PAGE, PAGE), n), "ops/s",
        tracking=True, pending_elsewhere=0, calls=n))

    # many pending stores on other pages must not slow a load of a clean page down
    busy = _domain(True)
    for i in range(SPAN):
        busy.write_flushcache(i * PAGE, page)
    busy.fence()
    for i in range(SPAN):
        busy.store(SPAN * PAGE + i * PAGE + 8, b"\x01" * 8)
    out.append(_fig("persistence.load_4k", _rate(
        lambda i: busy.load((i % SPAN) * PAGE, PAGE), n), "ops/s",
        tracking=True, pending_elsewhere=SPAN, calls=n))
    out.append(_fig("persistence.load_4k_over_pending", _rate(
        lambda i: busy.load(SPAN * PAGE + (i % SPAN) * PAGE, PAGE), n), "ops/s",
        tracking=True, pending_on_page=1, calls=n))

    line_dom = _domain(True)

    def cached_line(i: int) -> None:
        a = (i % (SPAN * 64)) * 64
        line_dom.store(a, page[:64])
        line_dom.writeback(a, 64)
        line_dom.fence()

    out.append(_fig("persistence.store_clwb_fence_64", _rate(cached_line, n), "ops/s",
                    tracking=True, rule="adr", calls=n))

    # crash exploration: 64 lines with a torn-able 64-byte store each, nothing flushed
    lines = 64
    explore = _domain(True)
    for i in range(lines):
        explore.store(i * 128, page[i:i + 64])
    reps = 20 if quick else 200
    t = time.perf_counter()
    for _ in range(reps):
        count = explore.count_crash_images()
    out.append(_fig("persistence.count_crash_images", reps / (time.perf_counter() - t),
                    "ops/s", pending_lines=lines, images=float(count)))
    k = 2000 if quick else 20_000
    t = time.perf_counter()
    got = sum(1 for _ in explore.crash_images(limit=k))
    out.append(_fig("persistence.crash_images", got / (time.perf_counter() - t), "images/s",
                    pending_lines=lines, images=got))
    return out


if __name__ == "__main__":
    import json

    for fig in run(quick=True):
        print(json.dumps(fig))
