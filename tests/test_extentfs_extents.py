"""extentfs's extent maps and block allocator against simple models (hypothesis)."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fs.extentfs import extents as ext
from fs.extentfs.bitmap import Allocator
from fs.extentfs.layout import BITS_PER_BLOCK, BLOCK, Extent, plan
from nvdimm.errors import NoSpace

OPS = st.lists(st.one_of(
    st.tuples(st.just("map"), st.integers(0, 200), st.integers(1, 20)),
    st.tuples(st.just("unmap"), st.integers(0, 220), st.integers(1, 40)),
), max_size=40)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_an_extent_map_maps_exactly_what_a_block_by_block_model_does(ops) -> None:  # type: ignore[no-untyped-def]
    model: dict[int, int] = {}
    extents: list[Extent] = []
    nxt = 1000
    for kind, lblk, n in ops:
        if kind == "map":
            b = lblk
            while b < lblk + n:  # each run of holes: one extent of fresh, contiguous blocks
                if b in model:
                    b += 1
                    continue
                run = 0
                while b + run < lblk + n and b + run not in model:
                    run += 1
                ext.insert(extents, Extent(b, nxt, run))
                for i in range(run):
                    model[b + i] = nxt + i
                nxt += run
                b += run
        else:
            freed = ext.remove(extents, lblk, n)
            gone = sorted(b for b in model if lblk <= b < lblk + n)
            assert sorted(p + i for p, k in freed for i in range(k)) == sorted(
                model[b] for b in gone)
            for b in gone:
                del model[b]
        # sorted, non-overlapping, merged where both sides continue
        for a, b in itertools.pairwise(extents):
            assert a.lend <= b.lblk
            assert not (a.lend == b.lblk and a.pend == b.pblk)
        for b in range(0, 260):
            pblk, run = ext.lookup(extents, b)
            assert pblk == model.get(b)
            if pblk is not None:
                assert all(model.get(b + i) == pblk + i for i in range(run))


def _allocator(blocks: int) -> Allocator:
    sb = plan(blocks, journal_blocks=64)
    used = sb.data_start  # metadata is in use, as mkfs leaves it
    images = {}
    for i in range(sb.bitmap_blocks):
        lo = i * BITS_PER_BLOCK
        n = max(0, min(used - lo, BITS_PER_BLOCK))
        bits = (1 << n) - 1
        beyond = blocks - lo
        if beyond < BITS_PER_BLOCK:
            bits |= ((1 << BITS_PER_BLOCK) - 1) ^ ((1 << max(beyond, 0)) - 1)
        images[sb.bitmap_start + i] = bits.to_bytes(BLOCK, "little")
    return Allocator(sb, lambda b: images[b])


class AllocatorMachine(RuleBasedStateMachine):
    """Blocks handed out are never in use already; freed blocks come back only after the
    commit; the free count is the number of clear bits."""

    def __init__(self) -> None:
        super().__init__()
        self.a = _allocator(512 + 3000)  # data from block 512
        self.owned: set[int] = set()
        self.pending: set[int] = set()

    @rule(want=st.integers(1, 700), goal=st.one_of(st.none(), st.integers(0, 3600)))
    def alloc(self, want: int, goal: int | None) -> None:
        free = self.a.count_free() - len(self.pending)
        try:
            runs = self.a.alloc(want, goal)
        except NoSpace:
            assert want > free
            return
        got = [b for p, n in runs for b in range(p, p + n)]
        assert len(got) == want == len(set(got))
        assert not set(got) & self.owned and not set(got) & self.pending
        assert all(self.a.sb.data_start <= b < self.a.sb.blocks for b in got)
        self.owned |= set(got)

    @precondition(lambda self: self.owned)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        b = data.draw(st.sampled_from(sorted(self.owned)))
        n = 1
        while b + n in self.owned and n < 50:
            n += 1
        self.a.free(b, n)
        for x in range(b, b + n):
            self.owned.discard(x)
            self.pending.add(x)

    @rule()
    def commit(self) -> None:
        self.a.release_pending()
        self.pending.clear()

    @invariant()
    def counts_agree(self) -> None:
        total = self.a.sb.blocks - self.a.sb.data_start
        assert self.a.count_free() == total - len(self.owned)
        for b in list(self.owned)[:50]:
            assert self.a.is_used(b)


AllocatorMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_the_allocator_never_hands_out_a_used_or_uncommitted_block = AllocatorMachine.TestCase
