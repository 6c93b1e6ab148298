"""End to end: real Linux, booted by the oracle, says what the golden ndctl.txt says.

Validates the harness (runner wrapper, batch parsing, golden facts, diffs) before any
model test relies on it: if Linux itself disagrees with the golden record, the fault is
in the harness or the oracle, not the model. One boot per case, read-only.
"""

from __future__ import annotations

import pytest

from tests.conformance import golden
from tests.conformance.fielddiff import assert_same
from tests.conformance.oracle import require_runner, run_batch

pytestmark = [pytest.mark.linux, pytest.mark.golden]

LISTING = "ndctl list -DRN -v"
LABELS = "ndctl read-labels -j -u nmem0"
KERNEL = "uname -r"


# multi: three namespaces (sector, fsdax, raw) on a labelled DIMM, listed newest first;
# labelless-sector: a label-less DIMM (run_guest.sh -L 0) whose BTT carries the uuid.
@pytest.mark.parametrize("name", ["multi", "labelless-sector"])
def test_linux_reads_a_golden_image_as_its_ndctl_txt_says(name: str) -> None:
    runner = require_runner()
    case = golden.load_case(name)
    expected = golden.linux_report(case)
    pattern = golden.pattern_file()
    reads = {
        w.blockdev: f"dd if=/dev/{w.blockdev} bs=4096 count=256 2>/dev/null"
        f" | cmp - /in/{pattern.name}"
        for w in expected.pattern_writes
    }
    result = run_batch(
        golden.image(case),
        [LISTING, LABELS, *reads.values(), KERNEL],
        label_size=case.label_size,
        read_only=True,
        files=[pattern],
        runner=runner,
    )
    assert result.rc == 0, result.describe()

    assert result.section(KERNEL).output.startswith("6.1."), result.describe()
    assert_same(
        result.section(LISTING).json,
        expected.listing,
        what=f"{name}: {LISTING}",
        names=("linux now", "golden"),
    )
    assert_same(
        result.section(LABELS).json,
        expected.labels,
        what=f"{name}: {LABELS}",
        names=("linux now", "golden"),
    )
    assert reads, "every golden case used here has the pattern written"
    for blockdev, command in reads.items():
        section = result.section(command)
        assert section.rc == 0, f"/dev/{blockdev} does not hold the pattern:\n{section.output}"
