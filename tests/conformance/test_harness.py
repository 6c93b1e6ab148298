"""The conformance harness itself: parsers, golden facts, runner wrapper, diffs.

Golden-file tests run whenever ../shared/golden exists; none of these boots Linux (a fake
runner stands in for run_guest.sh).
"""

from __future__ import annotations

import copy
import hashlib
import shlex
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conformance import fielddiff, golden, oracle
from tests.conformance.fielddiff import (
    assert_same,
    byte_ranges,
    diff_json,
    diff_namespaces,
    render_byte_diff,
    render_diffs,
)
from tests.conformance.golden import linux_report, load_case
from tests.conformance.oracle import (
    GuestResult,
    OracleError,
    OracleUnavailable,
    batch_script,
    parse_sections,
    split_json,
)

HAVE_GOLDEN = golden.golden_dir() is not None
needs_golden = pytest.mark.skipif(not HAVE_GOLDEN, reason="no ../shared/golden")
CASES = golden.case_names()


def report(name: str) -> golden.LinuxReport:
    return linux_report(load_case(name))


# --------------------------------------------------------------------------- trace parsing


@needs_golden
@pytest.mark.golden
def test_trace_sections_follow_the_commands_in_order() -> None:
    sections = report("raw").sections
    assert [s.command for s in sections[:4]] == [
        "ndctl disable-region all",
        "ndctl init-labels all",
        "ndctl enable-region all",
        "ndctl create-namespace -m raw -r region0 "
        "-u 11111111-2222-3333-4444-555555555555 -n golden-raw",
    ]
    assert sections[0].output == "disabled 1 region\n"
    assert all(s.rc is None for s in sections)  # sh -x does not report exit statuses


@needs_golden
@pytest.mark.golden
def test_json_is_separated_from_the_summary_line_after_it() -> None:
    labels = next(s for s in report("raw").sections if s.argv[:2] == ["ndctl", "read-labels"])
    assert labels.json["dev"] == "nmem0"
    assert [lab["slot"] for lab in labels.json["label"]] == [0, 1]
    assert labels.text == "read 1 nmem"


@needs_golden
@pytest.mark.golden
def test_command_that_printed_only_an_error_has_no_json() -> None:
    first = next(s for s in report("devdax").sections if s.argv[:2] == ["ndctl", "read-infoblock"])
    assert first.json is None
    assert "Device or resource busy" in first.text


@needs_golden
@pytest.mark.golden
def test_section_matches_a_command_however_sh_quoted_it() -> None:
    r = report("raw")
    dd = next(s for s in r.sections if s.argv[:1] == ["dd"])
    assert dd.command == "dd 'if=/in/pattern-1M.bin' 'of=/dev/pmem0' 'bs=4096' 'conv=fsync'"
    assert dd.matches("dd if=/in/pattern-1M.bin of=/dev/pmem0 bs=4096 conv=fsync")
    assert not dd.matches("dd if=/in/pattern-1M.bin of=/dev/pmem0s bs=4096 conv=fsync")


# --------------------------------------------------------------------------- golden facts


@needs_golden
@pytest.mark.golden
def test_readme_table_lists_exactly_the_cases_with_images() -> None:
    directory = golden.require_golden_dir()
    assert set(golden.readme_table(directory)) == set(CASES)
    assert len(CASES) >= 12


@needs_golden
@pytest.mark.golden
@pytest.mark.parametrize("name", CASES)
def test_final_listing_has_the_qemu_dimm_and_one_region(name: str) -> None:
    case = load_case(name)
    r = linux_report(case)
    assert [(d["dev"], d["id"]) for d in r.dimms] == [("nmem0", "8680-56341200")]
    (region,) = r.regions
    assert region["dev"] == "region0"
    if case.labelled:  # label area taken off the end; interleave-set cookie as iset_id
        assert region["size"] == 256 * 2**20 - golden.LABEL_SIZE_BYTES
        assert "iset_id" in region
    else:
        assert region["size"] == 256 * 2**20
        assert "iset_id" not in region


@needs_golden
@pytest.mark.golden
def test_the_last_listing_is_the_one_kept() -> None:
    # labelless-sector lists the raw io namespace first, then converts it to sector
    r = report("labelless-sector")
    assert next(s.command for s in r.sections if s.argv[:2] == ["ndctl", "list"]) == (
        "ndctl list -RN -v"
    )
    assert [ns["mode"] for ns in r.namespaces] == ["sector"]


@needs_golden
@pytest.mark.golden
def test_namespaces_keep_the_order_ndctl_printed() -> None:
    assert [ns["dev"] for ns in report("multi").namespaces] == [
        "namespace0.2",
        "namespace0.1",
        "namespace0.0",
    ]


@needs_golden
@pytest.mark.golden
def test_namespace_facts_keep_only_the_compared_fields() -> None:
    (facts,) = report("sector").namespace_facts()
    assert list(facts) == [
        "dev",
        "mode",
        "size",
        "uuid",
        "raw_uuid",
        "sector_size",
        "blockdev",
        "name",
    ]
    assert facts["raw_uuid"] == "11111111-2222-3333-4444-555555555555"


@needs_golden
@pytest.mark.golden
@pytest.mark.parametrize("name", CASES)
def test_pattern_writes_agree_with_the_readme_table(name: str) -> None:
    case = load_case(name)
    r = linux_report(case)
    targets = [w.blockdev for w in r.pattern_writes]
    if case.pattern_to is None:
        assert targets == []
    elif case.pattern_to.startswith("/dev/"):
        assert targets == [case.pattern_to.removeprefix("/dev/")]
    else:  # multi: "sector and fsdax ones"
        modes = {ns["dev"]: ns["mode"] for ns in r.namespaces}
        assert sorted(modes[w.namespace] for w in r.pattern_writes if w.namespace) == [
            "fsdax",
            "sector",
        ]
    assert all(w.namespace is not None for w in r.pattern_writes)


@needs_golden
@pytest.mark.golden
@pytest.mark.parametrize("name", CASES)
def test_read_labels_shape_follows_the_label_version(name: str) -> None:
    case = load_case(name)
    labels = linux_report(case).labels
    if not case.labelled:
        assert labels is None
        return
    sizes = {"v1.1": (128, 1020), "v1.2": (256, 510)}[case.labels]
    assert {(i["labelsize"], i["nslot"]) for i in labels["index"]} == {sizes}


@needs_golden
@pytest.mark.golden
def test_check_namespace_results_are_found_with_and_without_verbose() -> None:
    checked = {n: [(c.namespace, c.ok) for c in report(n).checks] for n in CASES}
    assert checked["sector"] == [("namespace0.0", True)]  # `check-namespace -v`, piped
    assert checked["labelless-sector"] == [("namespace0.0", True)]
    assert checked["raw"] == []


@needs_golden
@pytest.mark.golden
def test_readback_hash_is_found_after_a_traced_pipeline() -> None:
    sha = golden.pattern_sha256(golden.require_golden_dir())
    assert [(b.blockdev, b.sha256) for b in report("raw").readbacks] == [("pmem0", sha)]
    assert [(b.blockdev, b.sha256) for b in report("sector").readbacks] == [("pmem0s", sha)]


def test_readback_hash_is_found_whichever_pipeline_stage_was_traced_last() -> None:
    h = "ab" * 32
    trace = (
        "+ dd 'if=/dev/pmem0' 'bs=4096' 'count=256'\n"
        "+ sha256sum\n"
        f"256+0 records in\n256+0 records out\n{h}  -\n"
        "+ ndctl list -DRN -v\n{\n}\n"
    )
    assert [(b.blockdev, b.sha256) for b in golden.parse_ndctl_txt(trace).readbacks] == [
        ("pmem0", h)
    ]


@needs_golden
@pytest.mark.golden
def test_sysfs_reads_are_paired_with_their_paths() -> None:
    sysfs = report("fsdax-mem").sysfs
    assert sysfs["/sys/bus/nd/devices/pfn0.0/mode"] == "ram"
    assert sysfs["/sys/bus/nd/devices/namespace0.0/resource"] == "0x100000000"


@needs_golden
@pytest.mark.golden
def test_golden_image_gunzips_to_its_sha256_once_per_session() -> None:
    case = load_case("raw")
    path = golden.image(case)
    assert golden.image(case) == path
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == case.image_sha256
    assert len(data) == 256 * 2**20
    label_area = len(data) - case.label_size_bytes
    assert data[label_area : label_area + 16] == b"NAMESPACE_INDEX\0"


def test_sparse_gunzip_reproduces_the_bytes(tmp_path: Path) -> None:
    import gzip

    payload = b"head" + bytes(3 << 20) + b"middle" + bytes(1 << 20) + b"tail" + bytes(5)
    src = tmp_path / "x.gz"
    src.write_bytes(gzip.compress(payload))
    digest = golden.gunzip_sparse(src, tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == payload
    assert digest == hashlib.sha256(payload).hexdigest()


@needs_golden
@pytest.mark.golden
def test_pattern_matches_the_readme_and_describes_each_sector() -> None:
    data = golden.pattern_bytes()
    assert len(data) == 1 << 20
    assert data[5 * 512 :].startswith(b"ORACLE-PATTERN sector512=000005 byteoff=0x00000a00")
    assert golden.pattern_file().read_bytes() == data


def test_golden_dir_can_be_moved_with_an_environment_variable(tmp_path: Path) -> None:
    assert golden.golden_dir({golden.GOLDEN_ENV: str(tmp_path)}) is None  # no README.md
    (tmp_path / "README.md").write_text("# golden\n")
    assert golden.golden_dir({golden.GOLDEN_ENV: str(tmp_path)}) == tmp_path
    assert golden.case_names(tmp_path) == []


# --------------------------------------------------------------------------- batch scripts


def run_locally(script: str) -> str:
    """Run a batch script with the host's sh, as the guest's busybox sh would."""
    proc = subprocess.run(["sh", "-"], input=script, capture_output=True, text=True, check=False)
    return proc.stdout


def test_batch_reports_each_commands_output_and_exit_status() -> None:
    commands = [
        "echo one",
        "printf 'no newline'",
        "false",
        "echo oops >&2; exit_code() { return 3; }; exit_code",
        "printf '{\\n  \"dev\":\"nmem0\"\\n}\\nread 1 nmem\\n'",
        "echo '+ looks like a header'; echo last",
    ]
    sections = parse_sections(run_locally(batch_script(commands)))
    assert [s.command for s in sections] == commands
    assert [s.rc for s in sections] == [0, 0, 1, 3, 0, 0]
    assert [s.output for s in sections[:4]] == ["one\n", "no newline", "", "oops\n"]
    assert sections[4].json == {"dev": "nmem0"}
    assert sections[4].text == "read 1 nmem"
    assert sections[5].output == "+ looks like a header\nlast\n"


def test_batch_section_of_a_command_that_ended_the_script_has_no_status() -> None:
    sections = parse_sections(run_locally(batch_script(["echo a", "echo b; exit 7", "echo c"])))
    assert [(s.command, s.rc) for s in sections] == [("echo a", 0), ("echo b; exit 7", None)]


@pytest.mark.parametrize("bad", ["echo a\necho b", "  "])
def test_batch_commands_must_be_single_nonempty_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        batch_script([bad])


def test_text_before_the_first_command_is_kept() -> None:
    sections = parse_sections("boot noise\n+ echo x\nx\n")
    assert [(s.command, s.output) for s in sections] == [("", "boot noise\n"), ("echo x", "x\n")]


def test_brace_lines_that_are_not_json_stay_text() -> None:
    values, text = split_json('{not json\n[1,\n 2]\nafter\n')
    assert values == [[1, 2]]
    assert text == "{not json\nafter\n"


def test_json_property_refuses_to_pick_one_of_several_documents() -> None:
    (section,) = parse_sections("+ x\n{}\n[]\n")
    assert section.json_values == [{}, []]
    with pytest.raises(ValueError):
        _ = section.json


def test_result_section_lookup_names_the_commands_that_ran() -> None:
    result = GuestResult(
        stdout="+ echo a\na\nORACLE-RC=0\n+ false\nORACLE-RC=1\n",
        stderr="",
        rc=0,
        elapsed=0.0,
        argv=("run_guest.sh",),
        script="",
    )
    assert result.section("echo a").output == "a\n"
    assert [s.command for s in result.failed()] == ["false"]
    with pytest.raises(KeyError, match="echo a"):
        result.section("ndctl list")


# --------------------------------------------------------------------------- runner


FAKE_RUNNER = """#!/bin/bash
# stands in for run_guest.sh: records its arguments, runs the script with the host's sh
printf '%s\\n' "$@" > "$(dirname "$0")/argv.txt"
x=""
while getopts "s:L:rf:x:o:t:m:a:kc:E" o; do case $o in x) x=$OPTARG;; esac; done
shift $((OPTIND-1))
[ "$2" = "-" ] || { echo "run_guest: expected the script on stdin" >&2; exit 125; }
if [ -n "${FAKE_NO_BOOT:-}" ]; then
  echo "run_guest: guest did not finish (qemu rc=1)" >&2; exit 125
fi
[ -n "$x" ] && printf 'EXPORTED' > "$x"
sh
"""


@pytest.fixture
def fake_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runner = tmp_path / "run_guest.sh"
    runner.write_text(FAKE_RUNNER)
    runner.chmod(0o755)
    monkeypatch.setenv(oracle.ENV_VAR, str(runner))
    return runner


def test_runner_is_absent_when_the_variable_is_unset() -> None:
    assert oracle.find_runner({}) is None
    assert oracle.find_runner({oracle.ENV_VAR: " "}) is None


def test_skip_reason_says_how_to_enable_linux_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(oracle.ENV_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        oracle.require_runner()
    message = str(info.value)
    assert "linux-oracle/setup.sh" in message
    assert "export NVDIMM_LINUX_ORACLE=/path/to/run_guest.sh" in message


def test_runner_variable_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailable, match="no such file"):
        oracle.find_runner({oracle.ENV_VAR: str(tmp_path / "nope.sh")})
    script = tmp_path / "run_guest.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    with pytest.raises(OracleUnavailable, match="not executable"):
        oracle.find_runner({oracle.ENV_VAR: str(script)})


def test_run_passes_options_and_the_script_to_the_runner(fake_runner: Path, tmp_path: Path) -> None:
    extra = tmp_path / "data.bin"
    extra.write_bytes(b"x")
    image = tmp_path / "dimm.img"
    result = oracle.run_batch(
        image,
        ["echo hello", "false"],
        label_size="0",
        read_only=True,
        files=[extra],
        timeout=60,
        export=True,
    )
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[:4] == ["-L", "0", "-t", "60"]
    assert "-r" in argv
    assert argv[argv.index("-f") + 1] == str(extra)
    assert argv[-2:] == [str(image), "-"]
    assert result.exported == b"EXPORTED"
    assert [(s.command, s.rc) for s in result.sections] == [("echo hello", 0), ("false", 1)]
    assert result.rc == 0
    assert shlex.join(result.argv) in result.describe()


def test_run_defaults_to_a_labelled_writable_dimm(fake_runner: Path, tmp_path: Path) -> None:
    oracle.run(tmp_path / "dimm.img", "true\n")
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[:2] == ["-L", "128K"]
    assert "-r" not in argv and "-x" not in argv


def test_a_guest_that_did_not_boot_raises_with_the_runners_message(
    fake_runner: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NO_BOOT", "1")
    with pytest.raises(OracleError, match="guest did not finish"):
        oracle.run(tmp_path / "dimm.img", "true\n")


def test_a_failing_script_is_a_result_not_an_error(fake_runner: Path, tmp_path: Path) -> None:
    result = oracle.run(tmp_path / "dimm.img", "echo out; exit 125\n")
    assert (result.rc, result.stdout) == (125, "out\n")


# --------------------------------------------------------------------------- field diff


NS = {
    "dev": "namespace0.0",
    "mode": "raw",
    "size": 251658240,
    "uuid": "11111111-2222-3333-4444-555555555555",
    "sector_size": 512,
}


def ns(**changes: Any) -> dict[str, Any]:
    return {**NS, **changes}


def test_equal_structures_have_no_differences() -> None:
    listing = {"dimms": [{"dev": "nmem0"}], "regions": [{"dev": "region0", "namespaces": [NS]}]}
    assert diff_json(listing, copy.deepcopy(listing)) == []
    assert render_diffs([]) == ""


def test_a_field_difference_names_the_namespace_and_both_values() -> None:
    diffs = diff_json([ns(size=251658240)], [ns(size=250000000)])
    assert render_diffs(diffs) == "namespace0.0: size: model 251658240, linux 250000000"


def test_namespaces_are_matched_by_uuid_when_the_model_names_them_differently() -> None:
    diffs = diff_namespaces([ns(dev="namespace0.1")], [ns()])
    assert render_diffs(diffs) == 'namespace0.0: dev: model "namespace0.1", linux "namespace0.0"'


def test_namespaces_without_uuid_are_matched_by_dev() -> None:
    io = {k: v for k, v in NS.items() if k != "uuid"}
    diffs = diff_namespaces([io, {**io, "dev": "namespace0.1"}], [{**io, "size": 1}])
    assert [d.render() for d in diffs] == [
        "namespace0.0: size: model 251658240, linux 1",
        'namespace0.1: model {"dev":"namespace0.1","mode":"raw","size":251658240,'
        '"sector_size":512}, linux (absent)',
    ]


def test_missing_fields_and_namespaces_are_reported() -> None:
    other = ns(dev="namespace0.1", uuid="aaaaaaaa-2222-3333-4444-555555555555")
    diffs = diff_json([{k: v for k, v in NS.items() if k != "mode"}], [NS, other])
    rendered = [d.render() for d in diffs]
    assert rendered[0] == 'namespace0.0: mode: model (absent), linux "raw"'
    assert rendered[1].startswith('namespace0.1: model (absent), linux {"dev":"namespace0.1"')
    assert len(diffs) == 2


def test_listing_order_is_compared_unless_told_otherwise() -> None:
    a = ns()
    b = ns(dev="namespace0.1", uuid="aaaaaaaa-2222-3333-4444-555555555555")
    region = {"dev": "region0", "namespaces": [a, b]}
    reordered = {"dev": "region0", "namespaces": [b, a]}
    assert render_diffs(diff_json(region, reordered)) == (
        'order of namespaces: model ["namespace0.0","namespace0.1"], '
        'linux ["namespace0.1","namespace0.0"]'
    )
    assert diff_json(region, reordered, ordered=False) == []


def test_ignored_fields_are_not_compared_at_any_depth() -> None:
    model = {"regions": [{"dev": "region0", "numa_node": 1, "namespaces": [ns(numa_node=1)]}]}
    linux = {"regions": [{"dev": "region0", "numa_node": 0, "namespaces": [ns(numa_node=0)]}]}
    assert len(diff_json(model, linux)) == 2
    assert diff_json(model, linux, ignore={"numa_node"}) == []


def test_labels_with_repeated_uuids_are_matched_by_slot() -> None:
    label = {"uuid": NS["uuid"], "slot": 0, "flags": "0x8"}
    model = {"label": [label, {**label, "slot": 1, "flags": "0x8"}]}
    linux = {"label": [label, {**label, "slot": 1, "flags": "0"}]}
    assert render_diffs(diff_json(model, linux)) == 'label[slot=1]: flags: model "0x8", linux "0"'


@pytest.mark.parametrize(("model", "linux"), [("0x8", 8), (True, 1), ("512", 512), (None, 0)])
def test_values_of_different_json_types_differ(model: object, linux: object) -> None:
    assert len(diff_json({"flags": model}, {"flags": linux})) == 1


def test_int_and_float_of_the_same_value_are_equal() -> None:
    assert diff_json({"size": 1}, {"size": 1.0}) == []


def test_unkeyed_lists_are_compared_by_position() -> None:
    diffs = diff_json({"index": [{"seq": 2}, {"seq": 1}]}, {"index": [{"seq": 3}]})
    assert [d.render() for d in diffs] == [
        "index[0]: seq: model 2, linux 3",
        'index[1]: model {"seq":1}, linux (absent)',
    ]


def test_assert_same_lists_every_difference_under_a_title() -> None:
    with pytest.raises(AssertionError) as info:
        assert_same([ns(size=1, mode="sector")], [ns()], what="ndctl list -N")
    assert str(info.value) == (
        "ndctl list -N: 2 differences\n"
        "  namespace0.0: mode: model \"sector\", linux \"raw\"\n"
        "  namespace0.0: size: model 1, linux 251658240"
    )


# --------------------------------------------------------------------------- byte diff


def test_byte_differences_closer_than_the_gap_merge() -> None:
    a = bytes(64)
    b = bytearray(a)
    b[10] = b[20] = 1
    assert byte_ranges(a, bytes(b)) == [(10, 21)]
    assert byte_ranges(a, bytes(b), merge_gap=0) == [(10, 11), (20, 21)]


def test_extra_bytes_of_the_longer_input_differ() -> None:
    assert byte_ranges(b"abc", b"abcde") == [(3, 5)]
    assert byte_ranges(b"", b"") == []


def test_ignored_ranges_are_cut_out() -> None:
    a, b = bytes(100), b"\1" * 100
    assert byte_ranges(a, b, ignore=[(10, 20), (50, 100)], merge_gap=0) == [(0, 10), (20, 50)]


def test_a_difference_across_a_chunk_boundary_is_one_range() -> None:
    size = 3 * fielddiff._CHUNK
    b = bytearray(size)
    b[fielddiff._CHUNK - 2 : fielddiff._CHUNK + 3] = b"\xff" * 5
    assert byte_ranges(bytes(size), bytes(b)) == [(fielddiff._CHUNK - 2, fielddiff._CHUNK + 3)]


def test_byte_diff_shows_hex_offsets_structure_and_bytes() -> None:
    size = 0x100
    a = bytearray(size)
    b = bytearray(size)
    b[0x10:0x18] = bytes(range(1, 9))
    text = render_byte_diff(
        bytes(a), bytes(b), base=0xFFE0000, annotations=[(0xFFE0000, 0x10000000, "label area")]
    )
    assert text.splitlines() == [
        "1 differing byte range (model 256 bytes, linux 256 bytes):",
        "  [0xffe0010, 0xffe0018) 8 bytes  label area+0x10",
        "    model: 00 00 00 00 00 00 00 00",
        "    linux: 01 02 03 04 05 06 07 08",
    ]
    assert render_byte_diff(bytes(a), bytes(a)) == ""


def test_byte_diff_elides_ranges_beyond_the_limit() -> None:
    b = bytearray(1000)
    b[0:1000:100] = b"\1" * 10
    text = render_byte_diff(bytes(1000), bytes(b), max_ranges=3)
    assert text.splitlines()[0].startswith("10 differing byte ranges")
    assert text.splitlines()[-1] == "  ... 7 more, the last [0x384, 0x385)"


def naive_ranges(a: bytes, b: bytes, gap: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in range(max(len(a), len(b))):
        if i < len(a) and i < len(b) and a[i] == b[i]:
            continue
        if out and i - out[-1][1] <= gap:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


@settings(max_examples=200, deadline=None)
@given(
    a=st.binary(max_size=64),
    flips=st.lists(st.integers(0, 70), max_size=12),
    extra=st.binary(max_size=5),
    gap=st.integers(0, 8),
)
def test_byte_ranges_agree_with_a_byte_by_byte_scan(
    a: bytes, flips: list[int], extra: bytes, gap: int
) -> None:
    b = bytearray(a)
    for i in flips:
        if i < len(b):
            b[i] ^= 0x5A
    b += extra
    with mock.patch.object(fielddiff, "_CHUNK", 7):  # many chunk boundaries
        assert byte_ranges(a, bytes(b), merge_gap=gap) == naive_ranges(a, bytes(b), gap)
