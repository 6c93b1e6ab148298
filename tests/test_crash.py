"""Crash policies, crash images and the enumerator, checked against a per-unit oracle.

The oracle below knows nothing of records, pages or splitting: it keeps every store as
8-byte units per cache line, moves them through the stages one by one, and says which
images a crash may leave (durable prefix ... every prefix, per line).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvdimm.errors import InvalidArgument, MediaError
from nvdimm.platform.crash import (
    CrashImage,
    KeepEverything,
    KeepNothing,
    PendingLine,
    RandomCrash,
    policy_from_name,
    unit_count,
)
from nvdimm.platform.media import SparseMedia
from nvdimm.platform.persistence import AdrRule, EadrRule, FlushHintRule, PersistenceDomain

RULES = {"adr": AdrRule(), "eadr": EadrRule(), "flush-hint": FlushHintRule()}
WINDOW = 4096 - 128  # the window straddles a page boundary: 4 lines each side
WSIZE = 256
MEDIA = 3 * 4096
FULL_CHECK = 3000  # compare the whole image set when there are at most this many


# -- the oracle ------------------------------------------------------------------------

@dataclass
class _Unit:
    addr: int
    data: bytes
    nt: bool
    stage: int


@dataclass
class Oracle:
    cached_at: int
    nt_at: int
    base: bytes  # the window before any store
    lines: dict[int, list[_Unit]] = field(default_factory=dict)

    def store(self, addr: int, data: bytes, nt: bool) -> None:
        end = addr + len(data)
        w = addr
        while w < end:
            nxt = min(end, (w // 8 + 1) * 8)
            self.lines.setdefault(w // 64 * 64, []).append(
                _Unit(w, data[w - addr:nxt - addr], nt, 1 if nt else 0))
            w = nxt

    def advance(self, addr: int, n: int, frm: tuple[int, ...], to: int, cached_only: bool) -> None:
        if n == 0:
            return
        for line in range(addr // 64 * 64, addr + n, 64):
            for u in self.lines.get(line, []):
                if u.stage in frm and not (cached_only and u.nt):
                    u.stage = to

    def stage_all(self, frm: int, to: int) -> None:
        for units in self.lines.values():
            for u in units:
                if u.stage == frm:
                    u.stage = to

    def durable_prefix(self, line: int) -> int:
        d = 0
        for i, u in enumerate(self.lines[line], 1):
            if u.stage >= (self.nt_at if u.nt else self.cached_at):
                d = i
        return d

    def line_after(self, line: int, kept: int) -> bytearray:
        lo = line - WINDOW
        buf = bytearray(self.base[lo:lo + 64])
        for u in self.lines[line][:kept]:
            buf[u.addr - line:u.addr - line + len(u.data)] = u.data
        return buf

    def image(self, kept: dict[int, int]) -> bytes:
        img = bytearray(self.base)
        for line, k in kept.items():
            img[line - WINDOW:line - WINDOW + 64] = self.line_after(line, k)
        return bytes(img)

    def durable(self) -> bytes:
        return self.image({line: self.durable_prefix(line) for line in self.lines})

    def visible(self) -> bytes:
        return self.image({line: len(units) for line, units in self.lines.items()})

    def line_choices(self) -> dict[int, set[bytes]]:
        out = {}
        for line, units in self.lines.items():
            out[line] = {bytes(self.line_after(line, k))
                         for k in range(self.durable_prefix(line), len(units) + 1)}
        return out

    def count(self) -> int:
        total = 1
        for choices in self.line_choices().values():
            total *= len(choices)
        return total

    def images(self) -> set[bytes]:
        choices = self.line_choices()
        lines = sorted(choices)
        out = set()
        for combo in itertools.product(*(sorted(choices[line]) for line in lines)):
            img = bytearray(self.base)
            for line, content in zip(lines, combo, strict=True):
                img[line - WINDOW:line - WINDOW + 64] = content
            out.add(bytes(img))
        return out

    def may_hold(self, image: bytes) -> bool:
        """Each line of ``image`` is the base plus a prefix of its stores, at least the
        durable one."""
        for line, choices in self.line_choices().items():
            if image[line - WINDOW:line - WINDOW + 64] not in choices:
                return False
        untouched = set(range(WSIZE)) - {
            i for line in self.lines for i in range(line - WINDOW, line - WINDOW + 64)}
        return all(image[i] == self.base[i] for i in untouched)


# -- driving both ----------------------------------------------------------------------

def _range(draw: st.DrawFn, max_len: int = 24) -> tuple[int, int]:
    # half the ranges start near the page boundary in the middle of the window
    off = draw(st.integers(0, WSIZE - 1) | st.integers(WSIZE // 2 - 30, WSIZE // 2 + 2))
    n = draw(st.integers(1, min(max_len, WSIZE - off)))
    return WINDOW + off, n


@st.composite
def op(draw: st.DrawFn) -> tuple[object, ...]:
    kind = draw(st.sampled_from(
        ["store", "store", "store", "store_nt", "wfc", "writeback", "writeback", "evict",
         "fence", "fence", "flush_hint", "nvdimm_flush"]))
    if kind in ("store", "store_nt", "wfc"):
        addr, n = _range(draw)
        data = draw(st.binary(min_size=n, max_size=n).map(lambda b: bytes(x & 3 for x in b)))
        return (kind, addr, data)
    if kind in ("writeback", "evict"):
        addr, n = _range(draw, 160)
        return (kind, addr, n)
    return (kind,)


programs = st.lists(op(), max_size=10)
bases = st.binary(min_size=WSIZE, max_size=WSIZE).map(lambda b: bytes(x & 1 for x in b))


def replay(rule_name: str, base: bytes, ops: list[tuple[object, ...]],
           tracking: bool = True) -> tuple[PersistenceDomain, SparseMedia, Oracle]:
    rule = RULES[rule_name]
    media = SparseMedia(MEDIA)
    media.write(WINDOW, base)
    dom = PersistenceDomain(media, rule, tracking=tracking)
    orc = Oracle(int(rule.cached_durable_at), int(rule.nt_durable_at), base)
    for o in ops:
        kind = o[0]
        if kind == "store":
            dom.store(o[1], o[2])  # type: ignore[arg-type]
            orc.store(o[1], o[2], False)  # type: ignore[arg-type]
        elif kind == "store_nt":
            dom.store_nt(o[1], o[2])  # type: ignore[arg-type]
            orc.store(o[1], o[2], True)  # type: ignore[arg-type]
        elif kind == "wfc":
            addr, data = o[1], o[2]
            dom.write_flushcache(addr, data)  # type: ignore[arg-type]
            _oracle_flushcache(orc, addr, data)  # type: ignore[arg-type]
        elif kind == "writeback":
            dom.writeback(o[1], o[2])  # type: ignore[arg-type]
            orc.advance(o[1], o[2], (0,), 1, True)  # type: ignore[arg-type]
        elif kind == "evict":
            dom.evict(o[1], o[2])  # type: ignore[arg-type]
            orc.advance(o[1], o[2], (0, 1), 2, True)  # type: ignore[arg-type]
        elif kind == "fence":
            dom.fence()
            orc.stage_all(1, 2)
        elif kind == "flush_hint":
            dom.flush_hint()
            orc.stage_all(2, 3)
        elif kind == "nvdimm_flush":
            dom.nvdimm_flush()
            orc.stage_all(1, 2)
            if rule.flush_hints:
                orc.stage_all(2, 3)
    return dom, media, orc


def _oracle_flushcache(orc: Oracle, addr: int, data: bytes) -> None:
    """memcpy_flushcache, written out the long way: cached head up to 8-byte alignment,
    8-byte NT stores, one 4-byte NT store, cached tail; cached parts written back."""
    n = len(data)
    i = min((8 - addr % 8) % 8, n)
    if i:
        orc.store(addr, data[:i], False)
        orc.advance(addr, i, (0,), 1, True)
    while n - i >= 8:
        orc.store(addr + i, data[i:i + 8], True)
        i += 8
    if n - i >= 4:
        orc.store(addr + i, data[i:i + 4], True)
        i += 4
    if i < n:
        orc.store(addr + i, data[i:], False)
        orc.advance(addr + i, n - i, (0,), 1, True)


def window(media: SparseMedia) -> bytes:
    return media.read(WINDOW, WSIZE)


def after(media: SparseMedia, image: CrashImage) -> bytes:
    m = media.copy()
    image.apply_to(m)
    return window(m)


def flushed_bytes(orc: Oracle) -> set[int]:
    """Window offsets whose every store is in its line's durable prefix."""
    out = set()
    for line, units in orc.lines.items():
        d = orc.durable_prefix(line)
        late = {i for u in units[d:] for i in range(u.addr, u.addr + len(u.data))}
        for u in units[:d]:
            out |= {i - WINDOW for i in range(u.addr, u.addr + len(u.data)) if i not in late}
    return out


def word_prefix_ok(orc: Oracle, image: bytes) -> bool:
    """Every aligned 8-byte word holds the word after some prefix (>= durable) of the
    units stored to it: a unit is never torn."""
    for line, units in orc.lines.items():
        d = orc.durable_prefix(line)
        for w in range(line, line + 64, 8):
            mine = [i for i, u in enumerate(units) if u.addr // 8 * 8 == w]
            if not mine:
                continue
            got = image[w - WINDOW:w - WINDOW + 8]
            candidates = set()
            for k in range(len(units) + 1):
                if k < d:
                    continue
                candidates.add(bytes(orc.line_after(line, k)[w - line:w - line + 8]))
            if got not in candidates:
                return False
    return True


COMMON = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])


# -- properties ------------------------------------------------------------------------

@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs)
def test_visible_and_durable_state_match_the_unit_oracle(rule, base, ops):
    dom, media, orc = replay(rule, base, ops)
    assert dom.load(WINDOW, WSIZE) == orc.visible()
    assert window(media) == orc.durable()


@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs)
def test_enumerator_yields_exactly_the_distinct_prefix_images(rule, base, ops):
    dom, media, orc = replay(rule, base, ops)
    count = dom.count_crash_images()
    assert count == orc.count()
    limit = None if count <= FULL_CHECK else 200
    images = [after(media, im) for im in dom.crash_images(limit)]
    assert len(images) == (count if limit is None else limit)
    assert len(set(images)) == len(images), "crash images must be distinct"
    if limit is None:
        assert set(images) == orc.images()
        assert images[0] == orc.durable()
        assert orc.visible() in images
    else:
        assert all(orc.may_hold(img) for img in images)


@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs,
       seed=st.integers(0, 2**32))
def test_every_crash_image_is_durable_base_plus_a_line_prefix(rule, base, ops, seed):
    dom, media, orc = replay(rule, base, ops)
    for im in itertools.islice(dom.crash_images(), 50):
        img = after(media, im)
        assert orc.may_hold(img)
        assert word_prefix_ok(orc, img)
    dom.crash(RandomCrash(seed))
    img = window(media)
    assert orc.may_hold(img)
    assert word_prefix_ok(orc, img)


@COMMON
@given(base=bases, ops=programs, seed=st.integers(0, 2**32))
def test_adr_written_back_and_fenced_data_survives_every_crash(base, ops, seed):
    ops = [*ops, ("store", WINDOW + 40, b"\x07" * 16), ("writeback", WINDOW + 40, 16),
           ("fence",)]
    dom, media, orc = replay("adr", base, ops)
    visible = dom.load(WINDOW, WSIZE)
    keep = flushed_bytes(orc)
    assert set(range(40, 56)) <= keep
    images = [after(media, im) for im in itertools.islice(dom.crash_images(), 100)]
    for policy in (KeepNothing(), KeepEverything(), RandomCrash(seed)):
        d2, m2, _ = replay("adr", base, ops)
        d2.crash(policy)
        images.append(window(m2))
    for img in images:
        assert all(img[i] == visible[i] for i in keep)


@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs)
def test_keep_nothing_is_the_durable_state_and_keep_everything_the_visible(rule, base, ops):
    dom, media, orc = replay(rule, base, ops)
    dom.crash(KeepNothing())
    assert window(media) == orc.durable()
    dom, media, orc = replay(rule, base, ops)
    visible = dom.load(WINDOW, WSIZE)
    dom.crash(KeepEverything())
    assert window(media) == visible == orc.visible()
    assert dom.pending_bytes() == 0


@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs,
       seed=st.integers(0, 2**32))
def test_tracking_off_crashes_like_keep_everything(rule, base, ops, seed):
    dom, media, orc = replay(rule, base, ops, tracking=False)
    assert dom.load(WINDOW, WSIZE) == orc.visible()
    assert dom.count_crash_images() == 1
    report = dom.crash(RandomCrash(seed))
    assert not report.tracking
    assert window(media) == orc.visible()


@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs,
       pick=st.integers(0, 10**6))
def test_applying_an_enumerated_image_leaves_exactly_that_image(rule, base, ops, pick):
    dom, media, _ = replay(rule, base, ops)
    images = list(dom.crash_images(64))
    chosen = images[pick % len(images)]
    expect = after(media, chosen)
    report = dom.apply_crash_image(chosen)
    assert window(media) == expect
    assert dom.pending_bytes() == 0
    assert report.lines_pending == len(chosen.prefixes)


@COMMON
@given(rule=st.sampled_from(sorted(RULES)), base=bases, ops=programs,
       seed=st.integers(0, 2**32))
def test_random_crash_is_repeatable_for_a_seed(rule, base, ops, seed):
    d1, m1, _ = replay(rule, base, ops)
    d2, m2, _ = replay(rule, base, ops)
    assert d1.crash(RandomCrash(seed)) == d2.crash(RandomCrash(seed))
    assert window(m1) == window(m2)


# -- examples --------------------------------------------------------------------------

def _adr() -> tuple[PersistenceDomain, SparseMedia]:
    media = SparseMedia(MEDIA)
    return PersistenceDomain(media, AdrRule()), media


def test_one_line_of_three_words_has_four_images_in_prefix_order():
    dom, media = _adr()
    dom.store(0x40, b"\x01" * 24)
    assert dom.count_crash_images() == 4
    images = list(dom.crash_images())
    assert [im.prefixes for im in images] == [((0x40, k, 3),) for k in range(4)]
    contents = []
    for im in images:
        m = media.copy()
        im.apply_to(m)
        contents.append(m.read(0x40, 24))
    assert contents == [bytes(24), b"\x01" * 8 + bytes(16), b"\x01" * 16 + bytes(8),
                        b"\x01" * 24]


def test_lines_are_independent_so_images_multiply():
    dom, _ = _adr()
    dom.store(0x00, b"\x01" * 16)  # line 0: 2 units -> 3 outcomes
    dom.store(0x40, b"\x02" * 8)  # line 1: 1 unit -> 2 outcomes
    assert dom.count_crash_images() == 6
    assert len({im.patches for im in dom.crash_images()}) == 6


def test_rewriting_the_same_value_does_not_add_images():
    dom, _ = _adr()
    dom.store(0x00, b"\x05" * 8)
    dom.store(0x00, b"\x05" * 8)
    assert dom.count_crash_images() == 2
    dom.store(0x08, bytes(8))  # the media already holds zeros there
    assert dom.count_crash_images() == 2


def test_an_unaligned_store_is_split_into_word_units():
    assert unit_count(6, 9) == 2
    assert unit_count(8, 16) == 1
    line = PendingLine(0, [(6, b"abc")])
    assert list(line.iter_units()) == [(6, b"ab"), (8, b"c")]
    assert line.prefix_patches(1) == [(6, b"ab")]
    assert line.prefix_patches(2) == [(6, b"abc")]


def test_crash_images_limit_and_order_are_deterministic():
    dom, _ = _adr()
    for i in range(4):
        dom.store(i * 64, b"\x01" * 16)
    first = [im.prefixes for im in dom.crash_images(10)]
    again = [im.prefixes for im in dom.crash_images(10)]
    assert first == again and len(first) == 10
    assert first[0] == tuple((i * 64, 0, 2) for i in range(4))
    assert first[1] == ((0, 0, 2), (64, 0, 2), (128, 0, 2), (192, 1, 2))
    with pytest.raises(InvalidArgument):
        list(dom.crash_images(-1))


def test_a_line_that_returns_to_old_content_lists_it_under_the_shorter_prefix():
    dom, _ = _adr()
    dom.store(0x00, b"\x01")
    dom.store(0x00, b"\x00")  # back to what the media holds
    assert [im.prefixes for im in dom.crash_images()] == [((0, 0, 2),), ((0, 1, 2),)]


def test_crash_images_do_not_change_state():
    dom, media = _adr()
    dom.store(0x10, b"\x09" * 8)
    before = (dom.pending(), media.copy())
    list(dom.crash_images())
    dom.count_crash_images()
    assert dom.pending() == before[0]
    assert media.same_content(before[1])


def test_a_stale_image_is_refused_before_anything_changes():
    dom, media = _adr()
    dom.store(0x10, b"\x09" * 8)
    image = list(dom.crash_images())[-1]
    dom.store(0x80, b"\x01")
    with pytest.raises(InvalidArgument):
        dom.apply_crash_image(image)
    assert dom.pending_bytes() == 9
    other, _ = _adr()
    other.store(0x10, b"\x09" * 8)
    with pytest.raises(InvalidArgument):
        other.apply_crash_image(next(iter(dom.crash_images())))
    assert media.read(0x10, 8) == bytes(8)


def test_crash_report_counts_kept_lost_and_torn_lines():
    dom, _ = _adr()
    dom.store(0x00, b"\x01" * 64)  # 8 units
    dom.store(0x40, b"\x02" * 8)
    dom.store(0x80, b"\x03" * 8)

    def chooser_policy(kept: dict[int, int]):
        class P:
            name = "fixed"

            def chooser(self):
                return lambda addr, units: kept[addr]
        return P()

    report = dom.crash(chooser_policy({0x00: 3, 0x40: 1, 0x80: 0}))
    assert (report.lines_pending, report.lines_kept, report.lines_lost, report.lines_torn) \
        == (3, 1, 1, 1)
    assert report.torn == (0x00,) and report.lost == (0x80,)
    assert (report.bytes_kept, report.bytes_lost) == (24 + 8, 40 + 8)
    assert "1 torn" in report.summary() and "0x80" in report.summary()


def test_a_policy_keeping_more_than_was_stored_is_refused_before_the_crash():
    dom, media = _adr()
    dom.store(0x00, b"\x01" * 8)

    class Greedy:
        name = "greedy"

        def chooser(self):
            return lambda addr, units: units + 1

    with pytest.raises(InvalidArgument):
        dom.crash(Greedy())
    assert dom.pending_bytes() == 8 and media.read(0, 8) == bytes(8)


def test_policy_from_name_knows_the_cli_names():
    assert policy_from_name("nothing") == KeepNothing()
    assert policy_from_name("everything") == KeepEverything()
    assert policy_from_name("random", seed=7) == RandomCrash(7)
    assert RandomCrash(7).name == "random(seed=7)"
    with pytest.raises(InvalidArgument):
        policy_from_name("some")


def test_images_over_poisoned_media_still_enumerate():
    class Poisoned(SparseMedia):
        def read(self, off: int, n: int) -> bytes:
            if off < 0x40 + 64 and off + n > 0x40:
                raise MediaError("poison", off, n)
            return super().read(off, n)

    media = Poisoned(MEDIA)
    dom = PersistenceDomain(media, AdrRule())
    dom.store(0x40, b"\x01" * 8)
    dom.store(0x40, b"\x01" * 8)  # same value again: unknown base, known overlay
    dom.store(0x48, b"\x02" * 8)
    assert dom.count_crash_images() == 3  # nothing, 0x40 kept, 0x40 and 0x48 kept
    assert [im.prefixes[0][1] for im in dom.crash_images()] == [0, 1, 3]


def test_describe_explains_an_image_line_by_line():
    dom, _ = _adr()
    dom.store(0x00, b"\x01" * 16)
    im = list(dom.crash_images())[1]
    assert im.describe().splitlines()[1].split() == ["0x00000000", "kept", "1/2", "(torn)"]
    assert im.torn_lines == (0,) and im.lost_lines == ()
