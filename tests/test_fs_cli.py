"""The nvdimm command's filesystem verbs: mkfs, fsck, and fs ls/cat/put/rm/mkdir/stat."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import pytest

from nvdimm.cli import build_parser, main
from tests.test_cli import run


@pytest.fixture
def mdir(tmp_path, capsys):
    """A machine with a 64 MiB fsdax namespace (pmem0), not formatted."""
    d = tmp_path / "m"
    assert run(capsys, "--machine", str(d), "init", "--dimms", "1", "--dimm-size", "256M")[0] == 0
    rc, out, _ = run(capsys, "--machine", str(d), "create-namespace", "-m", "fsdax", "-s", "64M")
    assert rc == 0 and json.loads(out)["blockdev"] == "pmem0"
    return d


@pytest.fixture
def fsdir(mdir, capsys):
    """``mdir`` with an extentfs on pmem0."""
    assert run(capsys, "--machine", str(mdir), "mkfs", "pmem0")[0] == 0
    return mdir


def nv(capsys: Any, d: Path, *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    return run(capsys, "--machine", str(d), *argv, stdin=stdin)


def test_every_fs_operation_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = cast(dict[str, argparse.ArgumentParser], sub.choices)
    ops = next(a for a in commands["fs"]._actions if a.dest == "fs_command")
    verbs = cast(dict[str, argparse.ArgumentParser], ops.choices)
    assert set(verbs) == {"ls", "cat", "put", "rm", "mkdir", "stat"}
    for name, p in verbs.items():
        assert p.format_help().startswith("usage:") and p.description, name
    for name in ("mkfs", "fsck"):
        assert commands[name].format_help().startswith("usage:")


# -- mkfs ------------------------------------------------------------------------------------


def test_mkfs_prints_the_superblock_summary(mdir, capsys):
    rc, out, _ = nv(capsys, mdir, "mkfs", "pmem0")
    assert rc == 0
    assert out.startswith("Creating extentfs on pmem0: 15872 4k blocks and 992 inodes\n")
    assert "Filesystem UUID: " in out and "Journal:         blocks" in out


def test_mkfs_options_and_json(mdir, capsys):
    rc, out, _ = nv(capsys, mdir, "mkfs", "namespace0.0", "--inodes", "100",
                    "--journal-blocks", "80", "--json")
    sb = json.loads(out)
    assert rc == 0 and sb["device"] == "pmem0" and sb["inodes"] == 112  # whole table blocks
    assert sb["journal"]["blocks"] == 80 and sb["block_size"] == 4096
    assert sb["data_start"] % 512 == 0 and sb["state"] == "clean"
    rc, out, _ = nv(capsys, mdir, "fsck", "pmem0")
    assert rc == 0 and out.rstrip().endswith("pmem0: 1/111 files, 513/15872 blocks")


def test_mkfs_rejects_a_devdax_namespace_clearly(mdir, capsys):
    rc, out, _ = nv(capsys, mdir, "create-namespace", "-m", "devdax", "-s", "32M")
    dev = json.loads(out)["dev"]
    before = (mdir / "nmem0.img").read_bytes()
    rc, _, err = nv(capsys, mdir, "mkfs", dev)
    assert rc == 1 and "Traceback" not in err
    assert f"nvdimm mkfs: error: {dev} is a devdax namespace: it has no block device" in err
    assert (mdir / "nmem0.img").read_bytes() == before


def test_mkfs_rejects_a_bad_journal_size(mdir, capsys):
    rc, _, err = nv(capsys, mdir, "mkfs", "pmem0", "--journal-blocks", "2")
    assert rc == 1 and "too small" in err


# -- fsck ------------------------------------------------------------------------------------


def test_fsck_on_an_unformatted_device_says_run_mkfs(mdir, capsys):
    rc, out, err = nv(capsys, mdir, "fsck", "pmem0")
    assert rc == 8 and out == ""
    assert err == "nvdimm fsck: error: pmem0: no extentfs superblock: run mkfs first\n"


def test_fsck_of_a_missing_namespace_is_an_operational_error(fsdir, capsys):
    rc, _, err = nv(capsys, fsdir, "fsck", "pmem9")
    assert rc == 8 and "no namespace or block device 'pmem9'" in err


def test_fsck_finds_repairs_and_reports_like_e2fsck(fsdir, capsys):
    assert nv(capsys, fsdir, "fs", "put", "pmem0", "/a", "--data", "x" * 100)[0] == 0
    # a stray bitmap bit: block 1000 (data starts at 512; /a and / use 512 and 513)
    _, byte, _ = nv(capsys, fsdir, "read", "pmem0", "--offset", str(4096 + 125), "--length", "1")
    assert byte == "\x00"
    rc, _, _ = nv(capsys, fsdir, "write", "pmem0", "--offset", str(4096 + 125), "--sync",
                  stdin=b"\x01")
    assert rc == 0
    rc, out, _ = nv(capsys, fsdir, "fsck", "pmem0")
    assert rc == 4
    assert ("Block bitmap differences: 1 block(s) marked in use but used by nothing "
            "(leaked): -1000.  Fix? no") in out
    assert "WARNING: Filesystem still has errors" in out
    rc, out, _ = nv(capsys, fsdir, "fsck", "--repair", "pmem0", "--json")
    report = json.loads(out)
    assert rc == 1 and report["exit_code"] == 1 and report["fixed"] == 1
    assert report["problems"][0]["pass"] == 5 and report["problems"][0]["fixed"]
    rc, out, _ = nv(capsys, fsdir, "fsck", "pmem0", "--json")
    assert rc == 0 and json.loads(out)["clean"]
    assert nv(capsys, fsdir, "fs", "cat", "pmem0", "/a")[1] == "x" * 100


# -- fs operations ---------------------------------------------------------------------------


def test_put_cat_ls_stat_mkdir_rm_round_trip(fsdir, capsys, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 40)
    assert nv(capsys, fsdir, "fs", "mkdir", "pmem0", "/d/e", "-p")[0] == 0
    rc, _, err = nv(capsys, fsdir, "fs", "put", "pmem0", "/d/e/f", "--from", str(src))
    assert rc == 0 and err == "wrote 10240 bytes to /d/e/f at offset 0\n"
    assert nv(capsys, fsdir, "fs", "put", "pmem0", "top", "--data", "hello")[0] == 0
    rc, out, _ = nv(capsys, fsdir, "fs", "cat", "pmem0", "/top")
    assert (rc, out) == (0, "hello")
    rc, out, _ = nv(capsys, fsdir, "fs", "ls", "pmem0")
    assert rc == 0
    names = [line.split()[-1] for line in out.splitlines()]
    assert names == ["d/", "top"]
    assert "-rw-r--r--" in out and "drwxr-xr-x" in out
    rc, out, _ = nv(capsys, fsdir, "fs", "ls", "pmem0", "/d/e", "--json")
    (row,) = json.loads(out)
    assert row["path"] == "/d/e/f" and row["size"] == 10240 and row["type"] == "file"
    assert row["blocks"] == 24 and row["nlink"] == 1 and row["mode"] == "0644"
    rc, out, _ = nv(capsys, fsdir, "fs", "stat", "pmem0", "/d", "--json")
    st = json.loads(out)
    assert st["type"] == "directory" and st["nlink"] == 3 and st["dax"] is False
    rc, out, _ = nv(capsys, fsdir, "fs", "stat", "pmem0", "/top")
    assert "Size: 5 " in out and "regular file" in out and "Links: 1" in out
    rc, _, err = nv(capsys, fsdir, "fs", "rm", "pmem0", "/d/e")
    assert rc == 1 and err == "nvdimm fs rm: error: /d/e: Is a directory\n"
    assert nv(capsys, fsdir, "fs", "rm", "pmem0", "/d/e/f")[0] == 0
    assert nv(capsys, fsdir, "fs", "rm", "pmem0", "-d", "/d/e")[0] == 0
    rc, out, _ = nv(capsys, fsdir, "fs", "ls", "pmem0", "/d", "--json")
    assert (rc, json.loads(out)) == (0, [])
    assert nv(capsys, fsdir, "fsck", "pmem0")[0] == 0


def test_cat_of_a_missing_path_is_enoent_and_changes_nothing(fsdir, capsys):
    before = (fsdir / "nmem0.img").read_bytes()
    rc, out, err = nv(capsys, fsdir, "fs", "cat", "pmem0", "/nope")
    assert rc == 1 and out == ""
    assert err == "nvdimm fs cat: error: /nope: No such file or directory\n"
    rc, _, err = nv(capsys, fsdir, "fs", "put", "pmem0", "/no/such/dir", "--data", "x")
    assert rc == 1 and "/no/such/dir: No such file or directory" in err
    assert (fsdir / "nmem0.img").read_bytes() == before


def test_put_reads_standard_input_and_patches_at_an_offset(fsdir, capsys):
    assert nv(capsys, fsdir, "fs", "put", "pmem0", "/s", "--from", "-", stdin=b"0123456789")[0] == 0
    assert nv(capsys, fsdir, "fs", "put", "pmem0", "/s", "--offset", "2", "--data", "ab")[0] == 0
    assert nv(capsys, fsdir, "fs", "cat", "pmem0", "/s")[1] == "01ab456789"
    rc, _, err = nv(capsys, fsdir, "fs", "put", "pmem0", "/s", "--from", "/no/such/file")
    assert rc == 1 and "cannot read /no/such/file: No such file or directory" in err


def test_put_needs_exactly_one_source(fsdir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--machine", str(fsdir), "fs", "put", "pmem0", "/x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["--machine", str(fsdir), "fs", "put", "pmem0", "/x", "--data", "a", "--from", "b"])


def test_dax_mount_options(fsdir, capsys):
    assert nv(capsys, fsdir, "fs", "put", "pmem0", "/x", "--data", "dax", "--dax", "always")[0] == 0
    _, out, _ = nv(capsys, fsdir, "fs", "stat", "pmem0", "/x", "--dax", "always", "--json")
    assert json.loads(out)["dax"] is True
    _, out, _ = nv(capsys, fsdir, "fs", "stat", "pmem0", "/x", "--json")
    assert json.loads(out)["dax"] is False
    assert nv(capsys, fsdir, "fs", "cat", "pmem0", "/x", "--dax", "inode")[1] == "dax"


def test_fs_on_an_unformatted_namespace_says_run_mkfs(mdir, capsys):
    rc, _, err = nv(capsys, mdir, "fs", "ls", "pmem0")
    assert rc == 1 and "run mkfs first" in err


def test_put_no_sync_commits_nothing_and_leaves_the_fs_unclean(fsdir, capsys):
    rc, _, err = nv(capsys, fsdir, "fs", "put", "pmem0", "/new", "--data", "x", "--no-sync")
    assert rc == 0 and "(not synced)" in err
    # the name never reached the journal: the next command's kernel has no such file
    rc, out, _ = nv(capsys, fsdir, "fsck", "pmem0")
    assert rc == 4 and "pmem0 was not cleanly unmounted (mounted, or it crashed)" in out
    assert nv(capsys, fsdir, "fsck", "pmem0", "--repair")[0] == 1
    assert nv(capsys, fsdir, "fsck", "pmem0")[0] == 0
    rc, _, err = nv(capsys, fsdir, "fs", "cat", "pmem0", "/new")
    assert rc == 1 and "No such file or directory" in err


@pytest.mark.parametrize("crash", [True, False])
def test_put_no_sync_overwrite_in_place_is_in_flight_until_a_crash(fsdir, capsys, crash):
    assert nv(capsys, fsdir, "fs", "put", "pmem0", "/f", "--data", "A" * 16)[0] == 0
    nothing_in_flight = (fsdir / "cpu-cache.bin").stat().st_size
    rc, _, _ = nv(capsys, fsdir, "fs", "put", "pmem0", "/f", "--offset", "0", "--data", "BBBB",
                  "--dax", "always", "--no-sync")
    assert rc == 0 and (fsdir / "cpu-cache.bin").stat().st_size > nothing_in_flight
    if crash:
        rc, out, _ = nv(capsys, fsdir, "crash", "--policy", "nothing")
        assert rc == 0 and json.loads(out)["lines_pending"] >= 1
    want = "A" * 16 if crash else "BBBB" + "A" * 12
    assert nv(capsys, fsdir, "fs", "cat", "pmem0", "/f")[1] == want
    assert nv(capsys, fsdir, "fsck", "pmem0")[0] == 0


def test_init_picks_the_dax_seams_and_a_sector_namespace_then_gets_dax(tmp_path, capsys):
    d = str(tmp_path / "m")
    rc, _, err = run(capsys, "--machine", d, "init", "--btt-remap", "nope")
    assert rc == 1 and "no variant 'nope'" in err and "notify-holder" in err
    assert run(capsys, "--machine", d, "init", "--dimms", "1", "--dimm-size", "256M",
               "--btt-remap", "notify-holder")[0] == 0
    rc, out, _ = run(capsys, "--machine", d, "create-namespace", "-m", "sector", "-l", "4096",
                     "-s", "64M")
    assert rc == 0 and json.loads(out)["blockdev"] == "pmem0s"
    assert run(capsys, "--machine", d, "mkfs", "pmem0s")[0] == 0
    assert run(capsys, "--machine", d, "fs", "put", "pmem0s", "/f", "--data", "x",
               "--dax", "always")[0] == 0
    rc, out, _ = run(capsys, "--machine", d, "fs", "stat", "pmem0s", "/f", "--json",
                     "--dax", "always")
    assert rc == 0 and json.loads(out)["dax"] is True
