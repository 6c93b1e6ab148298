"""Power failure: crash policies, crash images and their enumeration.

What may survive a crash is decided per cache line. The stores made to a line since its
last durable point are split into *atomic units* (the intersection of a store with an
aligned 8-byte word: x86 never tears such a unit). A line can have been evicted at any
moment, so what survives is the durable content plus **any prefix** of those units, in
program order; lines are independent of each other.

A :class:`PendingLine` lists one line's non-durable stores. This module turns a list
of them into what survives: a :class:`CrashPolicy` picks one prefix per line for
:meth:`PersistenceDomain.crash`, :func:`enumerate_images` yields every distinct
outcome as a :class:`CrashImage` (patches over the durable media), and
:class:`CrashReport` says what was kept, dropped and torn.

Per-line objects exist only here, at crash and enumeration time; the hot path in
:mod:`nvdimm.platform.persistence` keeps whole stores as ranges.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import attrs

from nvdimm.errors import InvalidArgument, MediaError

UNIT_SHIFT = 3  # the power-fail atomic unit: an aligned 8-byte word
MAX_LISTED = 32  # how many line addresses a report lists (counts are always complete)

Patch = tuple[int, bytes]
Chooser = Callable[[int, int], int]


def unit_count(addr: int, end: int) -> int:
    """Atomic units in the store ``[addr, end)`` (aligned 8-byte words it touches)."""
    return ((end - 1) >> UNIT_SHIFT) - (addr >> UNIT_SHIFT) + 1


class PendingLine:
    """One cache line's stores that are visible but not yet durable, in program order.

    ``segments`` are ``(addr, data)`` pieces of stores, all inside the line at ``addr``.
    ``units`` is how many atomic units they hold; a crash keeps a prefix of them.
    """

    __slots__ = ("addr", "hi", "lo", "segments", "units")

    def __init__(self, addr: int, segments: Iterable[Patch]) -> None:
        self.addr = addr
        self.segments = tuple(segments)
        self.units = sum(unit_count(a, a + len(d)) for a, d in self.segments)
        self.lo = min(a for a, _ in self.segments)
        self.hi = max(a + len(d) for a, d in self.segments)

    def __repr__(self) -> str:
        return f"PendingLine({self.addr:#x}, units={self.units})"

    def iter_units(self) -> Iterator[Patch]:
        """The atomic units, in the order a crash keeps them."""
        for a, d in self.segments:
            end = a + len(d)
            w = a
            while w < end:
                nxt = min(end, ((w >> UNIT_SHIFT) + 1) << UNIT_SHIFT)
                yield w, d[w - a:nxt - a]
                w = nxt

    def prefix_bytes(self, kept: int) -> int:
        """Bytes stored by the first ``kept`` units."""
        return sum(len(d) for _, d in itertools.islice(self.iter_units(), kept))

    def prefix_patches(self, kept: int) -> list[Patch]:
        """The first ``kept`` units merged into runs of bytes: what to write over the media."""
        if kept <= 0:
            return []
        lo = self.lo
        buf = bytearray(self.hi - lo)
        mask = bytearray(self.hi - lo)
        left = kept
        for a, d in self.segments:
            cnt = unit_count(a, a + len(d))
            take = len(d) if left >= cnt else (((a >> UNIT_SHIFT) + left) << UNIT_SHIFT) - a
            buf[a - lo:a - lo + take] = d[:take]
            mask[a - lo:a - lo + take] = b"\x01" * take
            left -= min(left, cnt)
            if left == 0:
                break
        out: list[Patch] = []
        i = mask.find(1)
        while i >= 0:
            j = mask.find(0, i)
            if j < 0:
                j = len(mask)
            out.append((lo + i, bytes(buf[i:j])))
            i = mask.find(1, j)
        return out

    def distinct_prefixes(self, base: bytes | None) -> tuple[int, ...]:
        """The shortest prefix for each distinct content this line can have after a crash.

        ``base`` is the durable media over ``[lo, hi)``, or None when it cannot be read
        (poison): then bytes no kept unit covers count as unknown, equal only to themselves.
        """
        span = self.hi - self.lo
        buf = bytearray(base) if base is not None else bytearray(span)
        mask = None if base is not None else bytearray(span)
        seen = {self._key(buf, mask)}
        out = [0]
        for p, (a, d) in enumerate(self.iter_units(), 1):
            s = a - self.lo
            buf[s:s + len(d)] = d
            if mask is not None:
                mask[s:s + len(d)] = b"\x01" * len(d)
            key = self._key(buf, mask)
            if key not in seen:
                seen.add(key)
                out.append(p)
        return tuple(out)

    @staticmethod
    def _key(buf: bytearray, mask: bytearray | None) -> bytes:
        return bytes(buf) if mask is None else bytes(mask) + bytes(buf)


# ---------------------------------------------------------------------------------------
# Policies


class CrashPolicy(Protocol):
    """Decides, line by line, how many of a line's pending units survive a crash."""

    @property
    def name(self) -> str: ...

    def chooser(self) -> Chooser:
        """A fresh ``(line_addr, units) -> kept`` function for one crash (0 <= kept <= units)."""
        ...


@attrs.frozen(slots=True)
class KeepNothing:
    """Only durable data survives: every pending store is lost (the pessimist's crash)."""

    @property
    def name(self) -> str:
        return "nothing"

    def chooser(self) -> Chooser:
        return lambda _addr, _units: 0


@attrs.frozen(slots=True)
class KeepEverything:
    """Everything visible survives, as if every line had just been evicted in time."""

    @property
    def name(self) -> str:
        return "everything"

    def chooser(self) -> Chooser:
        return lambda _addr, units: units


@attrs.frozen(slots=True)
class RandomCrash:
    """Each line keeps a random prefix of its pending units; the same seed, the same crash."""

    seed: int = 0

    @property
    def name(self) -> str:
        return f"random(seed={self.seed})"

    def chooser(self) -> Chooser:
        rng = random.Random(self.seed)
        return lambda _addr, units: rng.randint(0, units)


POLICY_NAMES = ("nothing", "everything", "random")


def policy_from_name(name: str, seed: int = 0) -> CrashPolicy:
    """The policy the CLI calls ``name``: ``nothing``, ``everything`` or ``random``."""
    if name == "nothing":
        return KeepNothing()
    if name == "everything":
        return KeepEverything()
    if name == "random":
        return RandomCrash(seed)
    raise InvalidArgument(f"no crash policy {name!r}; choose one of: {', '.join(POLICY_NAMES)}")


# ---------------------------------------------------------------------------------------
# Images and reports


class _Writable(Protocol):
    def write(self, addr: int, data: bytes | bytearray | memoryview, /) -> None: ...


@attrs.frozen(slots=True)
class CrashImage:
    """One possible outcome of a crash, as patches over the durable media.

    ``patches`` are ``(addr, data)`` writes that turn the durable media into this image.
    ``prefixes`` explain it: ``(line_addr, kept_units, pending_units)`` for every line
    that had pending stores. ``index`` is its place in the enumeration; ``owner`` and
    ``epoch`` tie it to the state it was computed from.
    """

    index: int
    patches: tuple[Patch, ...]
    prefixes: tuple[tuple[int, int, int], ...]
    owner: int = attrs.field(default=0, repr=False)
    epoch: int = attrs.field(default=0, repr=False)

    def apply_to(self, backend: _Writable) -> None:
        """Write this image over ``backend`` (a copy of the durable media, say)."""
        for addr, data in self.patches:
            backend.write(addr, data)

    @property
    def torn_lines(self) -> tuple[int, ...]:
        return tuple(a for a, kept, total in self.prefixes if 0 < kept < total)

    @property
    def lost_lines(self) -> tuple[int, ...]:
        return tuple(a for a, kept, total in self.prefixes if kept == 0 < total)

    def describe(self) -> str:
        """One line per pending cache line: ``0x1040 kept 3/8 (torn)``."""
        rows = [f"image {self.index}: {len(self.patches)} patches"]
        for a, kept, total in self.prefixes:
            tag = "kept" if kept == total else "lost" if kept == 0 else "torn"
            rows.append(f"  {a:#010x} kept {kept}/{total} ({tag})")
        return "\n".join(rows)


@attrs.frozen(slots=True)
class CrashReport:
    """What a crash kept and dropped. Bytes count pending store bytes, units being whole.

    ``lost`` and ``torn`` list line addresses (at most :data:`MAX_LISTED` of each);
    the ``lines_*`` counts are always complete.
    """

    policy: str
    tracking: bool
    lines_pending: int = 0
    lines_kept: int = 0
    lines_lost: int = 0
    lines_torn: int = 0
    bytes_kept: int = 0
    bytes_lost: int = 0
    lost: tuple[int, ...] = ()
    torn: tuple[int, ...] = ()

    def summary(self) -> str:
        if not self.tracking:
            return (f"crash ({self.policy}): tracking off, everything visible was already "
                    "on media")
        text = (f"crash ({self.policy}): {self.lines_pending} lines pending: "
                f"{self.lines_kept} kept, {self.lines_lost} lost, {self.lines_torn} torn; "
                f"{self.bytes_kept} bytes kept, {self.bytes_lost} lost")
        if self.lost:
            text += "\n  lost: " + " ".join(f"{a:#x}" for a in self.lost)
        if self.torn:
            text += "\n  torn: " + " ".join(f"{a:#x}" for a in self.torn)
        return text


def choose_prefixes(lines: list[PendingLine], policy: CrashPolicy) -> list[int]:
    """Ask ``policy`` for each line's kept prefix; check the answers before anything moves."""
    choose = policy.chooser()
    kept = [choose(line.addr, line.units) for line in lines]
    for line, k in zip(lines, kept, strict=True):
        if not 0 <= k <= line.units:
            raise InvalidArgument(f"crash policy {policy.name!r} kept {k} of {line.units} "
                                  f"units on line {line.addr:#x}")
    return kept


def patches_for(lines: list[PendingLine], kept: list[int]) -> list[Patch]:
    out: list[Patch] = []
    for line, k in zip(lines, kept, strict=True):
        out.extend(line.prefix_patches(k))
    return out


def build_report(policy: str, lines: list[PendingLine], kept: list[int]) -> CrashReport:
    n_kept = n_lost = n_torn = b_kept = b_lost = 0
    lost: list[int] = []
    torn: list[int] = []
    for line, k in zip(lines, kept, strict=True):
        total = line.prefix_bytes(line.units)
        got = line.prefix_bytes(k)
        b_kept += got
        b_lost += total - got
        if k == line.units:
            n_kept += 1
        elif k == 0:
            n_lost += 1
            if len(lost) < MAX_LISTED:
                lost.append(line.addr)
        else:
            n_torn += 1
            if len(torn) < MAX_LISTED:
                torn.append(line.addr)
    return CrashReport(policy, True, len(lines), n_kept, n_lost, n_torn, b_kept, b_lost,
                       tuple(lost), tuple(torn))


BaseReader = Callable[[int, int], bytes]


def line_options(lines: list[PendingLine], read: BaseReader) -> list[tuple[int, ...]]:
    """Per line, the shortest prefix of each distinct outcome (see ``distinct_prefixes``)."""
    out = []
    for line in lines:
        try:
            base: bytes | None = read(line.lo, line.hi - line.lo)
        except MediaError:
            base = None
        out.append(line.distinct_prefixes(base))
    return out


def count_images(lines: list[PendingLine], read: BaseReader) -> int:
    """Distinct crash images: lines are independent, so the product of per-line counts."""
    total = 1
    for opts in line_options(lines, read):
        total *= len(opts)
    return total


def enumerate_images(lines: list[PendingLine], read: BaseReader, *, owner: int, epoch: int,
                     limit: int | None = None) -> Iterator[CrashImage]:
    """Every distinct crash image, in a fixed order.

    Each line's outcomes are ordered by the shortest prefix that gives them, and lines
    combine in ``itertools.product`` order (the last line varies fastest). So the first
    image is what :class:`KeepNothing` leaves; what :class:`KeepEverything` leaves is
    the last image unless a line's stores put back content it had before (its outcome
    is then listed under the shorter prefix)."""
    options = line_options(lines, read)
    patch_table = [{k: line.prefix_patches(k) for k in opts}
                   for line, opts in zip(lines, options, strict=True)]
    combos: Iterator[tuple[int, ...]] = itertools.product(*options)
    if limit is not None:
        combos = itertools.islice(combos, limit)
    for index, combo in enumerate(combos):
        patches: list[Patch] = []
        for table, k in zip(patch_table, combo, strict=True):
            patches.extend(table[k])
        prefixes = tuple((line.addr, k, line.units)
                         for line, k in zip(lines, combo, strict=True))
        yield CrashImage(index, tuple(patches), prefixes, owner, epoch)
