"""The cost model: media accesses counted in 64-byte lines, turned into *modeled* time.

Everything here is a model output. A :class:`CostEstimate` says what a run's accesses
would cost on a memory with a preset's latency and bandwidth; it is never a wall-clock
measurement of the Python model, and every rendering labels it "modeled".

Accesses come from a run's metrics diff (:class:`MediaAccesses`):

* bytes written to media: ``cpu.bytes_stored`` (every store the CPU makes towards pmem,
  cached or non-temporal; the pmem and BTT drivers store through it) plus
  ``dsm.label_bytes_written`` (label-area writes by DIMM firmware);
* bytes read from media: ``block.bytes_read`` (data read by every block driver),
  ``dax.bytes_read`` (a filesystem's DAX copies out of pmem), ``mm.pmem_bytes_loaded``
  (processes' loads through DAX mappings) and ``app.bytes_loaded`` (loads a workload
  makes itself);
* read operations: every ``block.<disk>.reads`` counter plus ``dax.reads``,
  ``mm.pmem_loads`` and ``app.loads``;
* fences (``cpu.fences``) and flush-hint writes (``cpu.flush_hints``).

Bytes become lines by rounding up to 64 bytes. The modeled time is::

    read    = read_ops x read_latency + lines_read x 64 B / read_bandwidth
    write   = lines_written x 64 B / write_bandwidth      (stores are posted)
    fence   = fences x fence_latency     (waiting for the memory controller to accept)
    flush   = flush_hints x flush_hint_latency    (an uncached write that drains the WPQ)
    modeled = read + write + fence + flush

Not modeled (the aggregate counters keep no locality): the 256-byte internal write
granularity of Optane media (small random writes amplified up to 4x), sequential vs
random latency, bandwidth scaling with interleaved DIMMs, and contention between
threads. Metadata loads that today's drivers do not count (BTT map reads) are missing
from the read side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from nvdimm.errors import InvalidArgument

LINE = 64

WRITE_BYTES = ("cpu.bytes_stored", "dsm.label_bytes_written")
READ_BYTES = ("block.bytes_read", "dax.bytes_read", "mm.pmem_bytes_loaded",
              "app.bytes_loaded")
READ_OPS = ("dax.reads", "mm.pmem_loads", "app.loads")


@attrs.frozen(slots=True)
class CostPreset:
    """Latency and bandwidth of one kind of memory. Bandwidths in GB/s (= bytes/ns)."""

    name: str
    label: str
    read_latency_ns: float
    read_bandwidth_gbs: float
    write_bandwidth_gbs: float
    fence_ns: float
    flush_hint_ns: float
    source: str


DRAM = CostPreset(
    name="dram",
    label="DRAM (general knowledge, approximate: one DDR4-2666 channel)",
    read_latency_ns=80.0,
    read_bandwidth_gbs=15.0,
    write_bandwidth_gbs=15.0,
    fence_ns=100.0,
    flush_hint_ns=80.0,
    source="""Not from the project's reference: round figures from general knowledge of
    DDR4 servers. Idle load latency about 80 ns (the reference's section 8.2 quotes
    80-100 ns for the DRAM its Optane papers compared against); a DDR4-2666 channel
    peaks at 21.3 GB/s, about 15 GB/s sustained, reads and writes alike. The fence
    waits for the memory controller to accept written-back lines, as on Optane (Yang et
    al. found store+flush latency on Optane similar to DRAM), so both presets use
    100 ns. DRAM has no flush hints; one is charged as a DRAM write round trip.""",
)

OPTANE = CostPreset(
    name="optane",
    label="Optane-like pmem (1st-gen Optane DC PMem, one DIMM, published figures)",
    read_latency_ns=305.0,
    read_bandwidth_gbs=6.6,
    write_bandwidth_gbs=2.3,
    fence_ns=100.0,
    flush_hint_ns=346.0,
    source="""From ../shared/reference/linux-stack.md section 8:

    * Izraelevitz et al., "Basic Performance Measurements of the Intel Optane DC
      Persistent Memory Module", arXiv:1903.05714 (2019): random load latency 305 ns
      (about 3x DRAM); one DIMM's maximum read bandwidth 6.6 GB/s and write bandwidth
      2.3 GB/s; idle latency 346 ns (abstract).
    * Yang et al., "An Empirical Guide to the Behavior and Use of Scalable Persistent
      Memory", USENIX FAST 2020: store + flush latency similar to DRAM (about
      90-100 ns) because under ADR the write-pending queue is the persistence point;
      the reference marks this figure uncertain. Used for the fence: 100 ns.
    * The flush hint (an uncached write that drains the WPQ to media) has no published
      figure there; it is charged one idle round trip to the DIMM, 346 ns: an
      assumption, not a measurement.

    Per-DIMM figures: six interleaved DIMMs reach 39.4 GB/s read and 13.9 GB/s write,
    which this preset does not scale to.""",
)

PRESETS: dict[str, CostPreset] = {p.name: p for p in (DRAM, OPTANE)}


def preset(name: str) -> CostPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidArgument(f"no cost preset {name!r}; presets: "
                              f"{', '.join(PRESETS)}") from None


def _lines(n: float) -> int:
    return -(-int(n) // LINE) if n > 0 else 0


@attrs.frozen(slots=True)
class MediaAccesses:
    """What a run did to the media, in lines and operations (see the module docstring)."""

    lines_read: int = 0
    lines_written: int = 0
    read_ops: int = 0
    fences: int = 0
    flush_hints: int = 0

    @classmethod
    def from_metrics(cls, diff: Mapping[str, int | float]) -> MediaAccesses:
        read_ops = sum(v for k, v in diff.items()
                       if (k.startswith("block.") and k.endswith(".reads")) or k in READ_OPS)
        return cls(
            lines_read=_lines(sum(diff.get(k, 0) for k in READ_BYTES)),
            lines_written=_lines(sum(diff.get(k, 0) for k in WRITE_BYTES)),
            read_ops=int(read_ops),
            fences=int(diff.get("cpu.fences", 0)),
            flush_hints=int(diff.get("cpu.flush_hints", 0)),
        )


@attrs.frozen(slots=True)
class CostEstimate:
    """Modeled time of one run's media accesses on one preset (nanoseconds, modeled)."""

    preset: str
    modeled_ns: float
    read_ns: float
    write_ns: float
    fence_ns: float
    flush_ns: float
    accesses: MediaAccesses

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CostEstimate:
        kw = dict(d)
        kw["accesses"] = MediaAccesses(**kw["accesses"])
        return cls(**kw)


def estimate(diff: Mapping[str, int | float], which: CostPreset | str) -> CostEstimate:
    """Modeled time of the accesses in a metrics diff on preset ``which``."""
    p = preset(which) if isinstance(which, str) else which
    a = MediaAccesses.from_metrics(diff)
    read = a.read_ops * p.read_latency_ns + a.lines_read * LINE / p.read_bandwidth_gbs
    write = a.lines_written * LINE / p.write_bandwidth_gbs
    fence = a.fences * p.fence_ns
    flush = a.flush_hints * p.flush_hint_ns
    return CostEstimate(p.name, read + write + fence + flush, read, write, fence, flush, a)


def format_ns(ns: float) -> str:
    """``1.23 µs`` style: modeled durations in a readable unit."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"
