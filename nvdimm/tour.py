"""``nvdimm tour``: one write followed through every layer, a power cut, and what survived.

On a fresh machine: provision a raw namespace, write block A with FUA (durable when the
write returns) and block B without (still in flight), cut the power, reboot, and show
what each layer did (from the machine's trace and metrics) and what came back. Block B
is written so that every 8-byte word names itself, so a torn block shows exactly which
cache lines made it to media. The same seed gives the same tour.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from nvdimm import ndctl
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import RandomCrash
from nvdimm.seams import seam
from nvdimm.trace import Event
from nvdimm.units import MiB, human_size

BLOCK = 4096
LINE = 64
A_OFFSET = 0
B_OFFSET = 8 * BLOCK


def block_a() -> bytes:
    return (b"A: durable (FUA)" * (BLOCK // 16))[:BLOCK]


def block_b() -> bytes:
    """Every 8-byte word says which line and word it is: ``B12.w3`` = line 12, word 3."""
    words = [f"B{ln:02d}.w{w}  ".encode() for ln in range(BLOCK // LINE) for w in range(8)]
    return b"".join(words)


def line_map(data: bytes, new: bytes) -> str:
    """One character per 64-byte line: ``#`` new, ``.`` old (zero), ``~`` torn."""
    out = []
    for i in range(0, len(new), LINE):
        got, want = data[i:i + LINE], new[i:i + LINE]
        if got == want:
            out.append("#")
        elif got == bytes(LINE):
            out.append(".")
        else:
            out.append("~")
    return "".join(out)


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0

    def h(self, title: str) -> None:
        self.step += 1
        print(f"\n== {self.step}. {title} ", file=self.out)

    def p(self, text: str = "") -> None:
        print(text, file=self.out)

    def events(self, evs: list[Event], limit: int = 14) -> None:
        shown = evs[:limit]
        for e in shown:
            print(f"   {e.subsystem:>8} | {e.render()}", file=self.out)
        if len(evs) > limit:
            print(f"   {'':>8} | ... {len(evs) - limit} more events", file=self.out)

    def metrics(self, diff: dict[str, int | float], prefixes: tuple[str, ...]) -> None:
        items = [(k, v) for k, v in diff.items() if k.startswith(prefixes)]
        for k, v in items:
            print(f"   {k:<34} {v:>10}", file=self.out)


def run_tour(*, seed: int = 1, persistence: str = "adr", reveal: bool = True,
             out: TextIO | None = None, answer: str | None = None) -> int:
    out = out or sys.stdout
    pr = _Printer(out)
    rule_info = seam("persistence").info(persistence)
    m = Machine.create(MachineConfig(dimms=2, dimm_size=1024 * MiB, persistence=persistence,
                                     seed=seed))
    bus = m.bus

    pr.h("The machine")
    pr.p(f"Two NVDIMMs, each {_prose(m.config.dimm_size)} of pmem plus a "
         f"{m.config.label_size // 1024} KiB label area, one region each (as QEMU builds them).")
    for r in bus.regions:
        dimms = ", ".join(d.dev for d in r.dimms)
        pr.p(f"   {r.dev}: [{dimms}] at {r.spa.base:#x}, {_prose(r.size)}, "
             f"{r.namespaces[0].dev} is label-less until labels exist")
    summary = (rule_info.cls.__doc__ or rule_info.history).strip().splitlines()[0]
    pr.p(f"Persistence domain: {persistence} ({summary})")

    pr.h("Labels: ndctl init-labels, then create-namespace -m raw -s 256M")
    seq = m.trace.last_seq
    m.init_labels()
    before = m.metrics.snapshot()
    ns_json = ndctl.create_namespace(m, mode="raw", size=256 * MiB, name="tour",
                                     region="region0")
    pr.events([e for e in m.trace.since(seq) if e.name.startswith("nd.")])
    diff = m.metrics.diff(before)
    pr.p(f"   The label area took {diff.get('dsm.set_config_data', 0)} DSM writes "
         f"({diff.get('dsm.label_bytes_written', 0)} bytes): the label goes to a free slot "
         "with the UPDATING flag, a new index block makes it current, then the final label.")
    pr.p(f"   ndctl says: {json.dumps(ns_json)}")
    disk = m.block_device("pmem0")

    pr.h("write(2) of block A with FUA: durable when it returns")
    seq, before = m.trace.last_seq, m.metrics.snapshot()
    disk.write(A_OFFSET, block_a(), fua=True)
    pr.events(list(m.trace.since(seq)))
    pr.metrics(m.metrics.diff(before), ("block.", "pmem.", "cpu."))
    pr.p("   pmem copies with non-temporal stores (memcpy_flushcache); FUA then runs "
         "nvdimm_flush: a fence, and a write to each DIMM's flush hint.")

    pr.h("write(2) of block B, no FUA and no fsync: in flight")
    seq, before = m.trace.last_seq, m.metrics.snapshot()
    disk.write(B_OFFSET, block_b())
    pr.events(list(m.trace.since(seq)))
    pr.metrics(m.metrics.diff(before), ("block.", "pmem.", "cpu."))
    cpu = m.platform.cpu
    b_spa = bus.namespace("pmem0").spa + B_OFFSET
    pr.p(f"   Visible to every load, yet {cpu.pending_bytes()} bytes are not durable: the "
         f"NT stores sit in write-combining buffers until a fence "
         f"(block B durable: {cpu.is_durable(b_spa, BLOCK)}).")

    pr.h("Power cut")
    policy = RandomCrash(seed)
    if not reveal:
        pr.p("Under x86 rules each 64-byte line keeps any prefix of its 8-byte stores.")
        pr.p("Which blocks come back intact: A, B, both, or neither?")
        guess = answer if answer is not None else _ask()
        pr.p(f"   your answer: {guess or '(none)'}")
    report = m.crash(policy)
    pr.p(f"   {report.summary().splitlines()[0]}")
    pr.p(f"   {cpu.count_crash_images()} crash images remain possible now (nothing is pending).")

    pr.h("Reboot: the kernel rediscovers everything from the media")
    seq = m.trace.last_seq
    m.boot()
    pr.events([e for e in m.trace.since(seq) if e.name.startswith(("machine.", "nd."))])

    pr.h("What survived")
    disk = m.block_device("pmem0")
    a = disk.read(A_OFFSET, BLOCK)
    b = disk.read(B_OFFSET, BLOCK)
    a_ok = a == block_a()
    pr.p(f"   block A: {'intact' if a_ok else 'DAMAGED'} (it was durable before the crash)")
    lm = line_map(b, block_b())
    state = ("intact" if set(lm) == {"#"} else "lost" if set(lm) == {"."} else "torn")
    pr.p(f"   block B: {state}; its 64 lines ('#' new, '.' old, '~' torn inside the line):")
    pr.p(f"      {lm[:32]}\n      {lm[32:]}")
    torn_line = lm.find("~")
    if torn_line >= 0:
        chunk = b[torn_line * LINE:(torn_line + 1) * LINE]
        words = [chunk[i:i + 8] for i in range(0, LINE, 8)]
        shown = " ".join(w.decode().strip() if any(w) else "<old>" for w in words)
        pr.p(f"   line {torn_line} kept a prefix of its eight 8-byte words: {shown}")
    pr.p("   Raw pmem gives no sector atomicity: a 4 KiB write can tear at any cache line,")
    pr.p("   and inside a line at any 8-byte word. Sector mode (BTT) exists to fix exactly")
    pr.p("   this; FUA or fsync (a flush) is what made block A safe.")
    pr.p("")
    pr.p("Where to go next:")
    pr.p("   nvdimm create-namespace -m fsdax -s 64M    # /dev/pmem0 in ./nvdimm-machine")
    pr.p("   nvdimm mkfs pmem0 && nvdimm fs put pmem0 /f --data hi --dax always")
    pr.p("   nvdimm create-namespace -m sector -s 64M   # BTT: a crash leaves old or new")
    pr.p("   nvdimm explore --list                      # swap a seam, compare every layer")
    return 0 if a_ok else 1


def _prose(n: int) -> str:
    """Sizes for sentences (ndctl's own format is for JSON)."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return human_size(n)


def _ask() -> str:
    if not sys.stdin.isatty():
        return ""
    try:
        return input("   > ").strip()
    except EOFError:
        return ""
