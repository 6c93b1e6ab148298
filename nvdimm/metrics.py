"""Counters and gauges, cheap enough to be always on.

Counters are a plain dict so hot paths can do ``m.c["pmem.bytes_written"] += n``
after one ``add`` at wiring time; names are dotted, subsystem first.
"""

from __future__ import annotations

from collections import defaultdict

import attrs


def _counter_dict() -> defaultdict[str, int]:
    return defaultdict(int)


@attrs.define(slots=True)
class Metrics:
    c: defaultdict[str, int] = attrs.field(factory=_counter_dict)
    gauges: dict[str, int | float] = attrs.field(factory=dict)

    def inc(self, name: str, n: int = 1) -> None:
        self.c[name] += n

    def set(self, name: str, value: int | float) -> None:
        self.gauges[name] = value

    def get(self, name: str) -> int | float:
        if name in self.gauges:
            return self.gauges[name]
        return self.c.get(name, 0)

    def snapshot(self, prefix: str = "") -> dict[str, int | float]:
        out: dict[str, int | float] = {k: v for k, v in self.c.items() if k.startswith(prefix)}
        out.update({k: v for k, v in self.gauges.items() if k.startswith(prefix)})
        return dict(sorted(out.items()))

    def diff(self, before: dict[str, int | float]) -> dict[str, int | float]:
        """What changed since ``before`` (a snapshot)."""
        now = self.snapshot()
        return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}
