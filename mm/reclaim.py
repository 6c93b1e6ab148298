"""Reclaim and tiering: the LRU lists, the choice of cold pages, demotion and promotion.

:class:`Lru` is one node's pair of lists, as Linux keeps them: new pages enter the
*inactive* list; an access sets the page's referenced bit (the accessed bit of its PTE);
reclaim takes pages from the cold end of the inactive list and gives a referenced page a
second chance on the *active* list instead; when the inactive list gets shorter than the
active one, pages move from the cold end of the active list back to the inactive one,
their referenced bits cleared (``shrink_active_list``). Reclaim works in batches of
``SWAP_CLUSTER_MAX`` (32) pages.

What reclaim then does with a cold page is the caller's business (the ``pmem_tier``
variants in :mod:`mm.tier`): demote it to a slower node (Linux 5.15, "migrate pages in
lieu of discard"), swap it out, write it back and drop it, or hand it to a second-level
cache.

:class:`NumaBalancing` decides promotion. Linux learns about accesses to pages on a slow
node only through NUMA hinting faults: the scanner makes their PTEs inaccessible once
per scan period, and the next access faults; in memory-tiering mode
(``numa_balancing=2``, 5.18+) a page whose fault comes soon after the scan (6.0+: hint
fault latency under a threshold) is hot and is promoted, within a rate limit. The model
counts accesses per page within a scan period instead (the clock is the workload's
access count): a page's first access in a period is its hint fault (counted as a minor
fault); once it has been accessed ``threshold`` times in the period it is promoted,
unless ``rate_limit`` pages were already promoted in that period.

::

    scan_period 2048, threshold 2
    access 1 to page P on pmem in this period    hint fault, count 1
    access 2                                     count 2: promote P to DRAM
    page Q touched once per period               never promoted: it stays cold
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

import attrs

from nvdimm.errors import InvalidArgument

#: Pages reclaim isolates per batch (include/linux/swap.h).
SWAP_CLUSTER_MAX = 32

K = TypeVar("K", bound=Hashable)


@attrs.define(slots=True, eq=False)
class Lru(Generic[K]):
    """One node's active and inactive lists (oldest first) and referenced bits."""

    # OrderedDicts: taking the cold end is O(1) (a plain dict scans past the holes its
    # deletions leave at the front).
    inactive: OrderedDict[K, None] = attrs.field(factory=OrderedDict)
    active: OrderedDict[K, None] = attrs.field(factory=OrderedDict)
    referenced: set[K] = attrs.field(factory=set)

    def __len__(self) -> int:
        return len(self.inactive) + len(self.active)

    def __contains__(self, k: object) -> bool:
        return k in self.inactive or k in self.active

    def add(self, k: K, *, active: bool = False) -> None:
        """A page joins the node (new, faulted in or migrated here)."""
        if k in self:
            raise InvalidArgument(f"{k!r} is already on this LRU")
        (self.active if active else self.inactive)[k] = None

    def touch(self, k: K) -> None:
        """An access: set the referenced bit (the hardware sets the PTE's accessed bit)."""
        self.referenced.add(k)

    def remove(self, k: K) -> bool:
        """Take ``k`` off the lists (freed or migrated away); whether it was there."""
        self.referenced.discard(k)
        if k in self.inactive:
            del self.inactive[k]
            return True
        if k in self.active:
            del self.active[k]
            return True
        return False

    def _deactivate(self, nr: int) -> None:
        # shrink_active_list: the cold end of the active list goes to the inactive list,
        # its referenced bits cleared (checking them is what clears them).
        act, ina, ref = self.active, self.inactive, self.referenced
        for _ in range(min(nr, len(act))):
            k = act.popitem(last=False)[0]
            ref.discard(k)
            ina[k] = None

    def isolate(self, nr: int) -> list[K]:
        """Up to ``nr`` cold pages, coldest first, taken off the lists. A referenced page
        at the cold end of the inactive list is activated instead (a second chance)."""
        out: list[K] = []
        ina, act, ref = self.inactive, self.active, self.referenced
        while len(out) < nr and (ina or act):
            if not ina or len(ina) < len(act):  # inactive_is_low: refill it
                self._deactivate(max(nr, (len(act) - len(ina) + 1) // 2))
            k = ina.popitem(last=False)[0]
            if k in ref:
                ref.discard(k)
                act[k] = None
                continue
            out.append(k)
        return out

    def check(self) -> list[str]:
        both = self.inactive.keys() & self.active.keys()
        bad = [f"{k!r} is on both lists" for k in list(both)[:3]]
        stray = self.referenced - self.inactive.keys() - self.active.keys()
        bad += [f"{k!r} is referenced but on no list" for k in list(stray)[:3]]
        return bad


class Sampled(Protocol):
    """A page's NUMA-balancing state: the scan period it was last seen in, and its
    accesses within that period."""

    epoch: int
    hits: int


@attrs.define(slots=True, eq=False)
class NumaBalancing:
    """Promotion of hot pages from slow nodes (see the module docstring)."""

    scan_period: int = 4096
    threshold: int = 2
    rate_limit: int = 256
    enabled: bool = True
    clock: int = 0  # accesses so far
    epoch: int = 0
    promoted_in_epoch: int = 0

    def __attrs_post_init__(self) -> None:
        if self.scan_period < 1 or self.threshold < 1 or self.rate_limit < 0:
            raise InvalidArgument(
                f"NUMA balancing needs scan_period >= 1, threshold >= 1 and rate_limit >= 0 "
                f"(got {self.scan_period}, {self.threshold}, {self.rate_limit})")

    def tick(self) -> None:
        """One access happened (anywhere): the scanner's clock."""
        self.clock += 1
        if self.clock % self.scan_period == 0:
            self.epoch += 1
            self.promoted_in_epoch = 0

    def sample(self, page: Sampled) -> tuple[bool, bool]:
        """An access to a page on a slow node: ``(hint fault taken, promote now)``."""
        fault = False
        if page.epoch != self.epoch:  # the scanner armed it since: this access faults
            page.epoch = self.epoch
            page.hits = 0
            fault = True
        page.hits += 1
        promote = (self.enabled and page.hits >= self.threshold
                   and self.promoted_in_epoch < self.rate_limit)
        return fault, promote

    def promoted(self) -> None:
        self.promoted_in_epoch += 1
