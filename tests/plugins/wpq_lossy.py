"""A persistence variant written outside the project, loaded through the entry point
group ``nvdimm.variants`` (the test fakes the installed entry point)."""

from __future__ import annotations

import attrs

from nvdimm.platform.persistence import Stage, StageRule
from nvdimm.seams import variant


@variant("persistence", "test-plugin-nt-only",
         history="A made-up platform for the entry-point test.",
         tradeoffs="Cached stores need the flush hint; NT stores only a fence.")
@attrs.frozen(slots=True)
class NtOnlyRule(StageRule):
    """Made-up: cached stores durable only after the flush hint, NT after a fence."""

    name: str = "test-plugin-nt-only"
    persistence_domain: str = ""
    cached_durable_at: Stage = Stage.FLUSHED
    nt_durable_at: Stage = Stage.FENCED
    flush_hints: bool = True
