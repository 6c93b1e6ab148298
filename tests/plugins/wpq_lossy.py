"""A persistence variant written outside the project, loaded through the entry point
group ``nvdimm.variants`` (the test fakes the installed entry point)."""

from __future__ import annotations

import attrs

from nvdimm.platform.persistence import Stage
from nvdimm.seams import variant


@variant("persistence", "test-plugin-nt-only",
         history="A made-up platform for the entry-point test.",
         tradeoffs="Cached stores need the flush hint; NT stores only a fence.")
@attrs.frozen
class NtOnlyRule:
    """Made-up: cached stores durable only after the flush hint, NT after a fence."""

    @property
    def name(self) -> str:
        return "test-plugin-nt-only"

    @property
    def persistence_domain(self) -> str:
        return ""

    @property
    def cached_durable_at(self) -> Stage:
        return Stage.FLUSHED

    @property
    def nt_durable_at(self) -> Stage:
        return Stage.FENCED

    @property
    def flush_hints(self) -> bool:
        return True
