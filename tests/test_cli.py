"""The nvdimm command: ndctl's verbs on a machine kept in a directory."""

from __future__ import annotations

import io
import json
import sys

import pytest

from nvdimm.cli import build_parser, main


def run(capsys, *argv, stdin: bytes | None = None):
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        rc = main(list(argv))
    finally:
        sys.stdin = sys.__stdin__
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def mdir(tmp_path, capsys):
    d = tmp_path / "m"
    rc, _, _ = run(capsys, "--machine", str(d), "init", "--dimms", "1", "--dimm-size", "256M")
    assert rc == 0
    return d


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage:"), name
        assert p.description or p.format_usage(), name


def test_init_creates_qemu_layout_images_and_lists_the_machine(mdir, capsys):
    img = mdir / "nmem0.img"
    assert img.stat().st_size == 256 * 2**20 + 128 * 1024
    _rc, out, _ = run(capsys, "--machine", str(mdir), "list", "-R")
    (region,) = json.loads(out)  # ndctl prints a one-element array
    assert region["dev"] == "region0" and region["available_size"] == 256 * 2**20


def test_create_write_read_round_trip_across_commands(mdir, capsys):
    m = ["--machine", str(mdir)]
    rc, out, _ = run(capsys, *m, "create-namespace", "-m", "raw", "-s", "64M", "-n", "cli")
    ns = json.loads(out)
    assert (rc, ns["blockdev"], ns["size"], ns["name"]) == (0, "pmem0", "64.00 MiB (67.11 MB)",
                                                          "cli")
    rc, _, _ = run(capsys, *m, "write", "pmem0", "--offset", "100", "--sync", stdin=b"hello")
    assert rc == 0
    rc, out, _ = run(capsys, *m, "read", "pmem0", "--offset", "100", "--length", "5")
    assert out == "hello"


def test_errors_are_one_line_with_exit_status_1_and_change_nothing(mdir, capsys):
    m = ["--machine", str(mdir)]
    before = (mdir / "nmem0.img").read_bytes()
    rc, _, err = run(capsys, *m, "create-namespace", "-m", "raw", "-s", "20M")
    assert rc == 1 and "multiple of the region alignment" in err and "Traceback" not in err
    rc, _, err = run(capsys, *m, "create-namespace", "-m", "devdax", "-a", "8K")
    assert rc == 1 and "unsupported align" in err
    rc, _, err = run(capsys, *m, "read", "pmem7", "--length", "1")
    assert rc == 1 and "no namespace or block device" in err
    assert (mdir / "nmem0.img").read_bytes() == before


def test_bad_sizes_are_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--machine", str(tmp_path / "x"), "init", "--dimm-size", "lots"])
    assert e.value.code == 2
    assert "not a size" in capsys.readouterr().err


def test_crash_loses_an_unflushed_write_made_by_an_earlier_command(mdir, capsys):
    m = ["--machine", str(mdir)]
    run(capsys, *m, "create-namespace", "-m", "raw", "-s", "16M")
    run(capsys, *m, "write", "pmem0", "--offset", "0", "--fua", stdin=b"A" * 512)
    run(capsys, *m, "write", "pmem0", "--offset", "4096", stdin=b"B" * 512)
    rc, out, _ = run(capsys, *m, "crash", "--policy", "nothing")
    report = json.loads(out)
    assert rc == 0 and report["lines_lost"] == 8
    _, out, _ = run(capsys, *m, "read", "pmem0", "--offset", "0", "--length", "512")
    assert out == "A" * 512
    _, out, _ = run(capsys, *m, "read", "pmem0", "--offset", "4096", "--length", "512")
    assert out == "\0" * 512


def test_read_labels_and_media_errors_show_as_ndctl_json(mdir, capsys):
    m = ["--machine", str(mdir)]
    run(capsys, *m, "create-namespace", "-m", "raw", "-s", "16M", "-n", "lbl")
    _, out, _ = run(capsys, *m, "read-labels", "nmem0")
    labels = json.loads(out)
    assert labels["dev"] == "nmem0" and labels["label"][-1]["name"] == "lbl"
    run(capsys, *m, "inject-error", "namespace0.0", "-B", "8", "-n", "2")
    _, out, _ = run(capsys, *m, "list", "-N", "-M")
    ns = json.loads(out)
    ns = ns[0] if isinstance(ns, list) else ns
    assert ns["badblock_count"] == 2 and ns["badblocks"][0]["offset"] == 8


def test_tour_runs_and_shows_a_torn_or_lost_block(capsys):
    rc, out, _ = run(capsys, "tour", "--seed", "3")
    assert rc == 0
    assert "block A: intact" in out
    assert "block B: torn" in out or "block B: lost" in out


def test_import_image_adopts_a_qemu_backing_file(tmp_path, mdir, capsys):
    m = ["--machine", str(mdir)]
    run(capsys, *m, "create-namespace", "-m", "raw", "-s", "32M", "-n", "exported")
    run(capsys, *m, "write", "pmem0", "--fua", stdin=b"Q" * 4096)
    other = tmp_path / "other"
    rc, out, _ = run(capsys, "--machine", str(other), "import-image", str(mdir / "nmem0.img"))
    listing = json.loads(out)
    ns = listing["regions"][0]["namespaces"][0]
    assert (rc, ns["name"], ns["size"]) == (0, "exported", 32 * 2**20)
    _, out, _ = run(capsys, "--machine", str(other), "read", "pmem0", "--length", "4")
    assert out == "QQQQ"


def test_import_rejects_a_truncated_image(tmp_path, capsys):
    bad = tmp_path / "tiny.img"
    bad.write_bytes(b"\0" * 4096)
    rc, _, err = run(capsys, "--machine", str(tmp_path / "m"), "import-image", str(bad))
    assert rc == 1 and "too small" in err


def test_namespaces_created_by_separate_commands_get_distinct_uuids(mdir, capsys):
    m = ["--machine", str(mdir)]
    uuids = set()
    for name in ("one", "two", "three"):
        _, out, _ = run(capsys, *m, "create-namespace", "-m", "raw", "-s", "16M", "-n", name)
        uuids.add(json.loads(out)["uuid"])
    assert len(uuids) == 3
    _, out, _ = run(capsys, *m, "list", "-N")
    assert sorted(ns["name"] for ns in json.loads(out)) == ["one", "three", "two"]
