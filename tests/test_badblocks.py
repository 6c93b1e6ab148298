from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from block.badblocks import BB_MAX_LEN, MAX_BADBLOCKS, BadBlockEntry, BadBlocks
from nvdimm.errors import InvalidArgument, NoSpace


def layout(bb):
    return [(e.start, e.length, e.acknowledged) for e in bb]


def assert_well_formed(bb):
    """Sorted, disjoint, 1..BB_MAX_LEN long, no adjacent pair that could be one entry."""
    es = layout(bb)
    assert bb.count == len(bb) == len(es) <= MAX_BADBLOCKS
    for start, length, _ in es:
        assert start >= 0 and 1 <= length <= BB_MAX_LEN << max(bb.shift, 0)
    for (s0, n0, a0), (s1, n1, a1) in pairwise(es):
        assert s0 + n0 <= s1, "entries overlap or are out of order"
        if s0 + n0 == s1 and a0 == a1:
            assert n0 + n1 > BB_MAX_LEN << bb.shift, "mergeable neighbours left apart"


def table_as_sectors(bb):
    return {s: a for start, length, a in layout(bb) for s in range(start, start + length)}


class Model:
    """The simple truth: which sectors are bad, and whether acknowledged."""

    def __init__(self):
        self.bad = {}

    def set(self, start, n, ack):
        for s in range(start, start + n):
            # acknowledged wins: an unacknowledged set never downgrades a sector
            self.bad[s] = self.bad.get(s, False) or ack

    def clear(self, start, n):
        for s in range(start, start + n):
            self.bad.pop(s, None)

    def check(self, start, n):
        hits = [self.bad[s] for s in range(start, start + n) if s in self.bad]
        if not hits:
            return 0
        return 1 if all(hits) else -1

    def first_bad(self, start, n):
        return next(s for s in range(start, start + n) if s in self.bad)


def assert_check_agrees(bb, model, start, n):
    rc, first, length = bb.check(start, n)
    assert rc == model.check(start, n)
    if rc == 0:
        assert (first, length) == (0, 0)
    else:
        lowest = model.first_bad(start, n)
        assert first <= lowest < first + length
        assert any(e.start == first and e.length == length for e in bb)


# -- layout, as in the worked examples of Linux's badblocks.c ------------------------


def test_disjoint_ranges_take_their_own_entries():
    bb = BadBlocks()
    assert bb.set(100, 10) and bb.set(0, 10) and bb.set(50, 5)
    assert layout(bb) == [(0, 10, True), (50, 5, True), (100, 10, True)]


def test_adjacent_range_extends_an_entry_up_to_the_maximum_length():
    bb = BadBlocks()
    bb.set(0, 500)
    bb.set(500, 20)
    assert layout(bb) == [(0, 512, True), (512, 8, True)]


def test_long_range_is_cut_into_maximum_length_entries():
    bb = BadBlocks()
    assert bb.set(0, 1200)
    assert layout(bb) == [(0, 512, True), (512, 512, True), (1024, 176, True)]


def test_filling_a_gap_joins_both_neighbours_when_they_fit():
    bb = BadBlocks()
    bb.set(0, 10)
    bb.set(20, 10)
    bb.set(10, 10)
    assert layout(bb) == [(0, 30, True)]


def test_filling_a_gap_keeps_a_neighbour_whole_when_it_does_not_fit():
    bb = BadBlocks()
    bb.set(0, 100)
    bb.set(200, 400)
    bb.set(100, 100)
    assert layout(bb) == [(0, 200, True), (200, 400, True)]


def test_unacknowledged_set_never_downgrades_acknowledged_sectors():
    bb = BadBlocks()
    bb.set(10, 10, ack=True)
    assert bb.set(0, 30, ack=False)
    assert layout(bb) == [(0, 10, False), (10, 10, True), (20, 10, False)]


def test_acknowledged_set_overwrites_the_middle_of_an_unacknowledged_entry():
    bb = BadBlocks()
    bb.set(0, 30, ack=False)
    assert bb.set(10, 10, ack=True)
    assert layout(bb) == [(0, 10, False), (10, 10, True), (20, 10, False)]


def test_overwrite_combines_with_an_acknowledged_neighbour():
    bb = BadBlocks()
    bb.set(0, 10, ack=True)
    bb.set(10, 20, ack=False)
    bb.set(10, 10, ack=True)
    assert layout(bb) == [(0, 20, True), (20, 10, False)]


def test_different_acknowledgement_keeps_adjacent_entries_apart():
    bb = BadBlocks()
    bb.set(0, 10, ack=True)
    bb.set(10, 10, ack=False)
    assert layout(bb) == [(0, 10, True), (10, 10, False)]


def test_clear_in_the_middle_splits_an_entry():
    bb = BadBlocks()
    bb.set(0, 100, ack=False)
    assert bb.clear(40, 20)
    assert layout(bb) == [(0, 40, False), (60, 40, False)]


def test_clear_trims_heads_and_tails_and_drops_covered_entries():
    bb = BadBlocks()
    for start in (0, 20, 40, 60):
        bb.set(start, 10)
    assert bb.clear(5, 60)
    assert layout(bb) == [(0, 5, True), (65, 5, True)]


def test_clearing_sectors_that_are_not_bad_succeeds():
    bb = BadBlocks()
    assert bb.clear(0, 100)
    bb.set(10, 5)
    assert bb.clear(100, 5) and bb.clear(0, 10)
    assert layout(bb) == [(10, 5, True)]


def test_shortened_entry_combines_with_its_neighbour_after_a_clear():
    bb = BadBlocks()
    bb.set(0, 612)
    assert layout(bb) == [(0, 512, True), (512, 100, True)]
    bb.clear(0, 100)  # Linux would keep (100, 412) and (512, 100) apart
    assert layout(bb) == [(100, 512, True)]


def test_ack_all_acknowledges_and_combines():
    bb = BadBlocks()
    bb.set(0, 10, ack=True)
    bb.set(10, 10, ack=False)
    assert bb.has_unacked
    bb.ack_all()
    assert layout(bb) == [(0, 20, True)]
    assert not bb.has_unacked


# -- check ---------------------------------------------------------------------------


def test_check_reports_none_all_acknowledged_or_some_unacknowledged():
    bb = BadBlocks()
    bb.set(100, 10, ack=True)
    bb.set(200, 10, ack=False)
    assert bb.check(0, 100) == (0, 0, 0)
    assert bb.check(0, 101) == (1, 100, 10)
    assert bb.check(105, 200) == (-1, 100, 10)
    assert bb.check(150, 60) == (-1, 200, 10)
    assert bb.check(110, 90) == (0, 0, 0)


def test_check_of_an_empty_range_finds_nothing():
    bb = BadBlocks()
    bb.set(0, 10)
    assert bb.check(5, 0) == (0, 0, 0)


def test_is_bad_matches_check():
    bb = BadBlocks()
    assert not bb.is_bad(0, 8)
    bb.set(7, 1)
    assert bb.is_bad(0, 8) and not bb.is_bad(8, 8)


# -- table limits --------------------------------------------------------------------


def fill(bb, n=MAX_BADBLOCKS):
    for k in range(n):
        assert bb.set(2 * k, 1)


def test_table_holds_at_most_one_page_of_entries():
    bb = BadBlocks()
    fill(bb)
    assert bb.full and bb.count == MAX_BADBLOCKS
    assert not bb.set(10_000, 1)
    assert bb.count == MAX_BADBLOCKS and bb.check(10_000, 1)[0] == 0


def test_full_table_still_extends_or_overlaps_without_a_new_slot():
    bb = BadBlocks()
    fill(bb)
    assert bb.set(0, 1) and bb.set(2 * MAX_BADBLOCKS - 2, 2)  # same sector; extension
    assert bb.count == MAX_BADBLOCKS
    assert bb.set(1, 1)  # joins two entries: frees a slot
    assert bb.count == MAX_BADBLOCKS - 1


def test_set_that_runs_out_of_slots_keeps_what_it_did_and_reports_failure():
    bb = BadBlocks()
    fill(bb, MAX_BADBLOCKS - 1)
    # [5000, 6100) needs three entries; only one slot is left
    assert not bb.set(5000, 1100)
    assert bb.count == MAX_BADBLOCKS
    assert layout(bb)[-1] == (5000, 512, True)


def test_clear_that_must_split_a_full_table_changes_nothing():
    bb = BadBlocks()
    fill(bb, MAX_BADBLOCKS - 1)
    bb.set(5000, 10)
    before = layout(bb)
    assert not bb.clear(5003, 2)
    assert layout(bb) == before
    assert bb.clear(5000, 2)  # trimming needs no slot
    assert layout(bb)[-1] == (5002, 8, True)


def test_acknowledged_overwrite_that_needs_slots_fails_on_a_full_table():
    bb = BadBlocks()
    fill(bb, MAX_BADBLOCKS - 1)
    bb.set(5000, 30, ack=False)
    assert not bb.set(5010, 10, ack=True)
    assert bb.check(5010, 10)[0] == -1


# -- sysfs ---------------------------------------------------------------------------


def test_show_prints_one_start_length_line_per_entry():
    bb = BadBlocks()
    bb.set(8, 8)
    bb.set(32, 4, ack=False)
    assert bb.show() == "8 8\n32 4\n"
    assert bb.show(unack=True) == "32 4\n"


def test_show_is_cut_to_one_page_like_sysfs():
    bb = BadBlocks()
    for k in range(MAX_BADBLOCKS):
        bb.set(10**9 + 2 * k, 1)
    assert len(bb.show()) == 4095


@pytest.mark.parametrize("text, expect", [
    ("100 8\n", [(100, 8, True)]),
    ("100 8", [(100, 8, True)]),
    ("  100   8\n", [(100, 8, True)]),
    ("100 +8\n", [(100, 8, True)]),
])
def test_store_accepts_the_sysfs_forms(text, expect):
    bb = BadBlocks()
    bb.store(text)
    assert layout(bb) == expect


def test_store_to_the_unacknowledged_file_sets_unacknowledged():
    bb = BadBlocks()
    bb.store("100 8\n", unack=True)
    assert layout(bb) == [(100, 8, False)]


@pytest.mark.parametrize("text", ["", "100", "100 0\n", "100 -3\n", "100 8 \n", "100 8x",
                                  "x 8\n", "1008\n"])
def test_store_rejects_malformed_text_and_changes_nothing(text):
    bb = BadBlocks()
    with pytest.raises(InvalidArgument):
        bb.store(text)
    assert bb.count == 0


def test_store_into_a_full_table_is_no_space():
    bb = BadBlocks()
    fill(bb)
    with pytest.raises(NoSpace):
        bb.store("100000 1\n")


# -- arguments, shift, disabled -------------------------------------------------------


def test_negative_ranges_are_invalid_and_change_nothing():
    bb = BadBlocks()
    for call in (lambda: bb.set(-1, 4), lambda: bb.set(0, -4), lambda: bb.clear(-1, 4)):
        with pytest.raises(InvalidArgument):
            call()
    assert bb.count == 0


def test_zero_length_set_or_clear_fails_as_in_linux():
    bb = BadBlocks()
    assert not bb.set(0, 0)
    assert not bb.clear(0, 0)


def test_shift_widens_set_and_check_but_narrows_clear():
    bb = BadBlocks(shift=3)  # 4 KiB blocks
    assert bb.set(9, 2)  # sectors 9-10 lie in block 1
    assert list(bb) == [BadBlockEntry(8, 8, True)]
    assert bb.show() == "8 8\n"
    assert bb.check(15, 1) == (1, 8, 8)
    assert bb.check(16, 8) == (0, 0, 0)
    assert bb.clear(9, 14)  # covers no whole block: nothing forgotten
    assert bb.show() == "8 8\n"
    assert bb.clear(8, 8)
    assert bb.count == 0


def test_shifted_entries_hold_up_to_512_blocks():
    bb = BadBlocks(shift=3)
    bb.set(0, 8 * 600)
    assert layout(bb) == [(0, 8 * 512, True), (8 * 512, 8 * 88, True)]


def test_disabled_table_records_nothing():
    bb = BadBlocks(shift=-1)
    assert not bb.enabled
    assert not bb.set(0, 8)
    assert not bb.clear(0, 8)
    assert bb.check(0, 8) == (0, 0, 0)
    assert bb.show() == ""


def test_shift_is_fixed_at_creation():
    bb = BadBlocks()
    with pytest.raises(Exception):  # noqa: B017 - attrs raises FrozenAttributeError
        bb.shift = 3
    with pytest.raises(InvalidArgument):
        BadBlocks(shift=-2)


def test_reset_forgets_everything():
    bb = BadBlocks()
    bb.set(0, 1000)
    bb.reset()
    assert bb.count == 0 and bb.check(0, 2000) == (0, 0, 0)


# -- properties against the set-of-sectors model ---------------------------------------

DOMAIN = 2400

ops = st.lists(
    st.tuples(st.sampled_from(["set", "clear"]), st.integers(0, DOMAIN - 1),
              st.integers(1, 1100), st.booleans()),
    max_size=30)
windows = st.lists(st.tuples(st.integers(0, DOMAIN + 1200), st.integers(1, 1500)),
                   min_size=1, max_size=5)


@settings(max_examples=300)
@given(ops=ops, windows=windows)
def test_table_agrees_with_the_set_of_bad_sectors(ops, windows):
    bb, model = BadBlocks(), Model()
    for op, start, n, ack in ops:
        if op == "set":
            assert bb.set(start, n, ack)
            model.set(start, n, ack)
        else:
            assert bb.clear(start, n)
            model.clear(start, n)
        assert_well_formed(bb)
        assert table_as_sectors(bb) == model.bad
    for start, n in windows:
        assert_check_agrees(bb, model, start, n)


@settings(max_examples=200)
@given(ops=st.lists(st.tuples(st.sampled_from(["set", "clear"]), st.integers(0, 1200),
                              st.integers(1, 40), st.booleans()), max_size=25),
       windows=st.lists(st.tuples(st.integers(0, 1300), st.integers(1, 100)), max_size=5))
def test_nearly_full_table_fails_cleanly_and_never_lies(ops, windows):
    bb, model = BadBlocks(), Model()
    for k in range(MAX_BADBLOCKS - 3):  # every other sector, unacknowledged
        bb.set(2 * k, 1, ack=False)
        model.set(2 * k, 1, False)
    for op, start, n, ack in ops:
        before = dict(model.bad)
        if op == "set":
            if bb.set(start, n, ack):
                model.set(start, n, ack)
            else:
                # partial: nothing outside the range changed, nothing was forgotten,
                # and acknowledged sectors stayed acknowledged
                now = table_as_sectors(bb)
                assert {s for s in now if s not in before} <= set(range(start, start + n))
                assert all(s in now and (now[s] or not a) for s, a in before.items())
                model.bad = now
        else:
            if bb.clear(start, n):
                model.clear(start, n)
            else:
                assert table_as_sectors(bb) == before
        assert_well_formed(bb)
        assert table_as_sectors(bb) == model.bad
    for start, n in windows:
        assert_check_agrees(bb, model, start, n)


@given(sets=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 200)), max_size=10),
       shift=st.integers(1, 3),
       clears=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 200)), max_size=5))
def test_shifted_table_tracks_whole_blocks(sets, shift, clears):
    bb, blocks = BadBlocks(shift=shift), set()
    size = 1 << shift
    for start, n in sets:
        assert bb.set(start, n)
        blocks |= set(range(start // size, -(-(start + n) // size)))
    for start, n in clears:
        assert bb.clear(start, n)
        blocks -= set(range(-(-start // size), (start + n) // size))
    assert_well_formed(bb)
    assert set(table_as_sectors(bb)) == {s for b in blocks for s in range(b * size,
                                                                          (b + 1) * size)}


class BadBlocksMachine(RuleBasedStateMachine):
    """Lifecycle: sets, clears, acknowledgements and sysfs stores in any order."""

    def __init__(self):
        super().__init__()
        self.bb = BadBlocks()
        self.model = Model()

    @rule(start=st.integers(0, 3000), n=st.integers(1, 700), ack=st.booleans())
    def set(self, start, n, ack):
        assert self.bb.set(start, n, ack)
        self.model.set(start, n, ack)

    @rule(start=st.integers(0, 3000), n=st.integers(1, 700))
    def clear(self, start, n):
        assert self.bb.clear(start, n)
        self.model.clear(start, n)

    @rule(start=st.integers(0, 3000), n=st.integers(1, 700), unack=st.booleans())
    def store(self, start, n, unack):
        self.bb.store(f"{start} {n}\n", unack=unack)
        self.model.set(start, n, not unack)

    @precondition(lambda self: self.bb.count)
    @rule()
    def ack_all(self):
        self.bb.ack_all()
        self.model.bad = dict.fromkeys(self.model.bad, True)

    @rule(start=st.integers(0, 3800), n=st.integers(1, 800))
    def check(self, start, n):
        assert_check_agrees(self.bb, self.model, start, n)

    @invariant()
    def table_matches_model(self):
        assert_well_formed(self.bb)
        assert table_as_sectors(self.bb) == self.model.bad

    @invariant()
    def show_lists_every_entry(self):
        lines = self.bb.show().splitlines()
        assert lines == [f"{e.start} {e.length}" for e in self.bb][:len(lines)]
        assert self.bb.has_unacked == any(not a for a in self.model.bad.values())


TestBadBlocksMachine = BadBlocksMachine.TestCase
