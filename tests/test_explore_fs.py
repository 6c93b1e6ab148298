"""The filesystem experiments of issue 7 show the differences a kernel engineer expects,
and these tests assert the differences rather than print them."""

from __future__ import annotations

from typing import Any

from nvdimm.explore import builtin


def _notes(name: str, **vary: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    c = builtin.run(name, vary=vary or None, seeds=1, jobs=1, progress=False)
    out = {}
    for r in c.results.runs:
        out[tuple(r.config.values())] = {**r.notes, "statuses": r.status_counts()}
    return out


def _counts(r: Any, group: str) -> dict[str, int]:
    return {k: v for k, v in r.status_counts(group).items() if v}


def test_btt_remap_unsafe_corrupts_and_the_other_variants_do_not() -> None:
    n = _notes("btt-remap")
    assert n[("unsafe",)]["corrupted blocks"] > 0
    # both ways: the file lost stores, and another file got them
    assert n[("unsafe",)]["statuses"]["corrupt"] >= 2
    assert n[("notify-holder",)]["corrupted blocks"] == 0
    assert n[("notify-holder",)]["holder notifications"] > 0
    assert n[("defer",)]["corrupted blocks"] == 0
    assert n[("defer",)]["sector atomicity while mapped"].startswith("lost")
    assert n[("deny-dax",)]["dax"].startswith("refused")
    assert n[("deny-dax",)]["corrupted blocks"] == 0


def test_direct_access_2016_frees_pinned_blocks_and_consumes_poison() -> None:
    n = _notes("direct-access")
    old, ops, wide = (n[(v, "truncate-pinned")] for v in ("bdev-2016", "dax-ops", "widened"))
    assert old["pinned block freed"] == "yes" and old["other file blocks hit by the DMA"] > 0
    for new in (ops, wide):
        assert new["pinned block freed"] == "no"
        assert new["other file blocks hit by the DMA"] == 0
    old, ops, wide = (n[(v, "media-error")] for v in ("bdev-2016", "dax-ops", "widened"))
    assert old["poison consumed by the process"] == "yes"
    assert old["read(2) of the file"].startswith("kernel machine check")
    assert old["holders told"] == 0
    for new in (ops, wide):
        assert new["poison consumed by the process"] == "no"
        assert "short read" in new["read(2) of the file"]
        assert new["holders told"] >= 1
    for v in ("bdev-2016", "dax-ops", "widened"):
        assert n[(v, "dax-over-btt")]["DAX on a sector namespace"].startswith("no")


def test_dax_over_btt_exists_when_the_btt_remap_variant_allows_it() -> None:
    n = _notes("direct-access", scenario=["dax-over-btt"], direct_access=["dax-ops"],
               btt_remap=["deny-dax", "notify-holder"])
    got = {k[-1]: v["DAX on a sector namespace"] for k, v in n.items()}
    assert got["deny-dax"].startswith("no") and got["notify-holder"].startswith("yes")


def test_persistence_stack_fsync_survives_everywhere_and_eadr_keeps_unsynced_dax_stores() -> None:
    c = builtin.run("persistence-stack", seeds=1, jobs=1, progress=False)
    runs = {tuple(r.config.values()): r for r in c.results.runs}
    for (_, stack), r in runs.items():
        groups = ("write+flush", "write (no flush)") if stack == "btt" else (
            "write+fsync", "mmap store+msync")
        for g in groups:
            assert _counts(r, g) == {"intact": 4}, (stack, g, _counts(r, g))
        assert not any(r.violations.values()), (stack, r.violations)
    assert _counts(runs["eadr", "fs-dax"], "mmap store (no msync)") == {"intact": 4}
    assert _counts(runs["adr", "fs-dax"], "mmap store (no msync)").get("intact", 0) < 4
    for p in ("adr", "eadr", "flush-hint"):
        assert _counts(runs[p, "fs-buffered"], "write (no fsync)") == {"lost": 4}
        assert _counts(runs[p, "fs-buffered"], "mmap store (no msync)") == {"lost": 4}


def test_the_example_scripts_run_and_show_their_point() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    want = {"dax_on_btt.py": "unsafe: dax yes, corrupted blocks 3",
            "dax_contract.py": "kernel machine check",
            "persistence_stack.py": "mmap store (no msync)",
            "fs_paths.py": "re-read (each): pmem MiB moved"}
    for script, text in want.items():
        out = subprocess.run([sys.executable, str(root / "examples" / script)],
                             capture_output=True, text=True, check=True,
                             cwd=root / "examples").stdout
        assert text in out, script


def test_a_workload_parameter_named_after_a_seam_is_checked_before_running() -> None:
    import pytest

    from nvdimm.errors import InvalidArgument

    exp = builtin.get("memory-tiers").experiment(vary={"pmem_tier": ["bogus"]})
    with pytest.raises(InvalidArgument, match="no variant 'bogus'"):
        exp.validate()


def test_fs_paths_shows_the_storage_versus_memory_trade_off() -> None:
    n = _notes("fs-paths")
    for io in (4, 2048):
        pc, dax = n[("never", io)], n[("always", io)]
        assert pc["write+fsync: copies per byte"] == 2 and dax["write+fsync: copies per byte"] == 1
        assert pc["cold read: copies per byte"] == 2 and dax["cold read: copies per byte"] == 1
        assert pc["re-read (each): pmem MiB moved"] == 0 < dax["re-read (each): pmem MiB moved"]
        assert pc["re-read (each): modeled ms"] < dax["re-read (each): modeled ms"]
        assert pc["page cache pages (DRAM)"] > 0 == dax["page cache pages (DRAM)"]
        assert pc["mmap faults 4K / 2M"].endswith("/ 0")
        assert not any(v for k, v in pc["statuses"].items() if k != "intact")
    assert n[("always", 2048)]["mmap faults 4K / 2M"] == "0 / 4"
