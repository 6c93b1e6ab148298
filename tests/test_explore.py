"""Design exploration: experiments, results as data, sweeps, comparisons, built-ins."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

from nvdimm.cli import main
from nvdimm.errors import Busy, InvalidArgument, NotAvailableYet, NotSupported
from nvdimm.explore import builtin
from nvdimm.explore import invariants as inv
from nvdimm.explore.compare import compare
from nvdimm.explore.cost import DRAM, OPTANE, MediaAccesses, estimate
from nvdimm.explore.experiment import (
    Check,
    Experiment,
    Outcome,
    Results,
    parse_vary,
    run_job,
)
from nvdimm.explore.sweep import StderrProgress, sweep
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import KeepNothing
from nvdimm.platform.persistence import Stage, StageRule
from nvdimm.seams import seam, variant
from nvdimm.units import KiB, MiB

ROOT = Path(__file__).resolve().parents[1]
SMALL = MachineConfig(dimms=1, dimm_size=32 * MiB, label_size=128 * KiB)


ALL_DURABLE = "test-explore-all-durable"


@attrs.frozen(slots=True)
class AllDurable(StageRule):
    """Every store, cached or NT, is durable when visible (registered by the fixture
    below, so other tests see the catalogue as shipped)."""

    name: str = ALL_DURABLE
    persistence_domain: str = "cpu_cache"
    cached_durable_at: Stage = Stage.VISIBLE
    nt_durable_at: Stage = Stage.VISIBLE


@contextlib.contextmanager
def user_variant() -> Iterator[str]:
    """A user's variant, registered by decorator for the duration of a test."""
    variant("persistence", ALL_DURABLE,
            history="Made up for the explore tests: every visible store is durable.",
            tradeoffs="None worth having outside a test.")(AllDurable)
    try:
        yield ALL_DURABLE
    finally:
        seam("persistence").variants.pop(ALL_DURABLE, None)


@pytest.fixture
def all_durable() -> Iterator[str]:
    with user_variant() as name:
        yield name


def unflushed_write(m: Machine, blocks: int = 2) -> Outcome:
    """Module level, so process pools can import it: block writes with no FUA, a crash."""
    m.bus.create_namespace(mode="raw", size=16 * MiB)
    disk = m.block_device("pmem0")
    data = [bytes([m.config.seed + 1 + i]) * 4096 for i in range(blocks)]
    for i, d in enumerate(data):
        disk.write(i * 4096, d)
    report = m.crash(KeepNothing())
    m.boot()
    disk = m.block_device("pmem0")
    return Outcome([Check(f"blk[{i}]", d, disk.read(i * 4096, 4096)) for i, d in
                    enumerate(data)], [report], {"blocks": blocks})


def small_experiment(**kw) -> Experiment:
    return Experiment("unflushed", unflushed_write, SMALL,
                      **{"vary": {"persistence": ["adr", "eadr"]}, "seeds": [0, 1], **kw})


# -- experiments and results ------------------------------------------------------------


def test_experiment_runs_each_configuration_and_seed_on_a_fresh_machine():
    results = small_experiment().run()
    got = [(r.config["persistence"], r.seed, r.machine["persistence"], r.machine["seed"])
           for r in results.runs]
    assert got == [("adr", 0, "adr", 0), ("adr", 1, "adr", 1),
                   ("eadr", 0, "eadr", 0), ("eadr", 1, "eadr", 1)]
    for r in results.runs:  # each machine was fresh: exactly this run's writes
        assert r.metrics["block.bytes_written"] == 2 * 4096
        assert r.metrics["nd.namespaces_created"] == 1
        assert r.trace["power.crash"] == 1
        assert r.status_counts() == {"intact": 0, "torn": 0, "lost": 2, "corrupt": 0}
        assert r.notes == {"blocks": 2}
        assert r.crashes[0]["lines_lost"] == 128
        assert set(r.cost) == {"dram", "optane"}
        assert set(r.violations) >= {"data.expected", "data.words-old-or-new"}


def test_workload_parameters_can_be_varied_like_config_fields():
    results = small_experiment(vary={"blocks": [1, 3]}, seeds=[0]).run()
    assert [(r.config, r.params, len(r.checks)) for r in results.runs] == [
        ({"blocks": 1}, {"blocks": 1}, 1), ({"blocks": 3}, {"blocks": 3}, 3)]


def test_bad_experiments_are_refused_before_anything_runs():
    with pytest.raises(InvalidArgument, match="no variant 'nope'"):
        small_experiment(vary={"persistence": ["adr", "nope"]}).jobs()
    with pytest.raises(InvalidArgument, match="neither a machine config field"):
        small_experiment(vary={"colour": ["red"]}).jobs()
    with pytest.raises(InvalidArgument, match="no cost preset"):
        small_experiment(presets=("hdd",)).jobs()
    with pytest.raises(InvalidArgument, match="no invariant"):
        small_experiment(invariants=("no.such",)).jobs()
    with pytest.raises(InvalidArgument, match="seeds="):
        small_experiment(vary={"seed": [1, 2]}).jobs()


def test_check_classifies_intact_torn_lost_and_corrupt_by_8_byte_word():
    new = bytes(range(1, 65)) * 2
    torn = new[:8] + bytes(120)
    corrupt = bytes(8) + b"\xff" * 8 + bytes(112)
    assert Check("a", new, new).status() == "intact"
    assert Check("a", new, bytes(128)).status() == "lost"
    assert Check("a", new, torn).status() == "torn"
    assert Check("a", new, torn).bytes_lost() == 120
    assert Check("a", new, corrupt).status() == "corrupt"
    assert Check("a", new, corrupt).foreign_words() == 1
    assert Check("a", new, b"\x07" * 128, before=b"\x07" * 128).status() == "lost"
    assert Check("grp[3]", new, new).group == "grp"
    with pytest.raises(InvalidArgument):
        Check("a", new, new[:64])


def test_results_save_and_load_as_equal_plain_data(tmp_path):
    results = small_experiment().run()
    path = tmp_path / "r.json"
    results.save(path)
    assert json.loads(path.read_text())["format"] == "nvdimm-explore/1"
    again = Results.load(path)
    assert again == results
    assert compare(again).table() == compare(results).table()


def test_loading_something_that_is_not_results_is_refused(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"format": "other"}')
    with pytest.raises(InvalidArgument, match="not saved experiment results"):
        Results.load(p)
    with pytest.raises(InvalidArgument, match="no saved results"):
        Results.load(tmp_path / "missing.json")


def test_workload_failure_is_recorded_as_an_answer_not_raised():
    def refuses(m):
        raise Busy("namespace is pinned")

    (run,) = Experiment("fails", refuses, SMALL).run().runs
    assert run.error == "Busy: namespace is pinned"
    table = compare(Results("fails", {}, (0,), (run,))).table()
    assert "workload failed" in table


def test_a_registered_invariant_runs_after_every_workload():
    def at_most_one_block(m, outcome):
        return [f"{len(outcome.checks)} checks"] if len(outcome.checks) > 1 else []

    inv.register_invariant("test.at-most-one-check", at_most_one_block, subsystem="test",
                           doc="made up for the test")
    try:
        results = small_experiment(vary={"blocks": [1, 2]}, seeds=[0]).run()
        assert [r.violations["test.at-most-one-check"] for r in results.runs] == [
            (), ("2 checks",)]
    finally:
        inv._REGISTRY.pop("test.at-most-one-check")


def test_data_promised_durable_but_lost_violates_data_expected():
    def promised(m):
        m.bus.create_namespace(mode="raw", size=16 * MiB)
        m.block_device("pmem0").write(0, b"p" * 4096)  # no FUA: not really durable
        m.crash(KeepNothing())
        m.boot()
        return [Check("blk", b"p" * 4096, m.block_device("pmem0").read(0, 4096),
                      durable=True)]

    (run,) = Experiment("promise", promised, SMALL).run().runs
    assert run.violations["data.expected"] == ("blk: promised durable, reads back lost",)


# -- cost model ---------------------------------------------------------------------------


def test_cost_model_counts_lines_and_charges_the_preset():
    diff = {"cpu.bytes_stored": 4096, "block.bytes_read": 100, "block.pmem0.reads": 1,
            "cpu.fences": 2, "cpu.flush_hints": 1}
    a = MediaAccesses.from_metrics(diff)
    assert (a.lines_written, a.lines_read, a.read_ops, a.fences, a.flush_hints) == (64, 2, 1,
                                                                                   2, 1)
    d, o = estimate(diff, DRAM), estimate(diff, OPTANE)
    assert d.modeled_ns == pytest.approx(d.read_ns + d.write_ns + d.fence_ns + d.flush_ns)
    assert o.read_ns > d.read_ns and o.write_ns > d.write_ns  # pmem is slower, writes most
    assert estimate({}, "optane").modeled_ns == 0
    assert "1903.05714" in OPTANE.source and "general knowledge" in DRAM.label


# -- sweeps -------------------------------------------------------------------------------


def test_sweep_on_a_thread_pool_equals_the_serial_run():
    exp = small_experiment()
    with ThreadPoolExecutor(max_workers=3) as ex:
        assert sweep(exp, executor=ex) == exp.run()


def test_sweep_on_worker_processes_equals_the_serial_run():
    exp = small_experiment()
    with ProcessPoolExecutor(max_workers=2) as ex:
        assert sweep(exp, executor=ex) == exp.run()
    assert sweep(exp, jobs=2) == exp.run()


def test_user_variant_by_decorator_appears_in_a_process_sweep(all_durable):
    exp = small_experiment(vary={"persistence": ["adr", all_durable]})
    results = sweep(exp, jobs=2)
    by = {r.label: r for r in results.runs if r.seed == 0}
    assert by["adr"].status_counts()["lost"] == 2
    assert by["test-explore-all-durable"].status_counts()["intact"] == 2
    assert "test-explore-all-durable" in compare(results).columns


def test_a_variant_unknown_to_the_worker_travels_with_the_job(all_durable):
    job = small_experiment(vary={"persistence": [all_durable]}).jobs()[0]
    variants = seam("persistence").variants
    del variants[all_durable]  # as on a worker that never registered it
    run = run_job(job)
    assert run.status_counts()["intact"] == 2
    assert variants[all_durable].cls is AllDurable


def test_progress_is_reported_on_stderr_for_long_sweeps(capsys):
    small_experiment().run(progress=True)
    err = capsys.readouterr().err
    assert "explore unflushed: 4/4 runs (100%)" in err
    stream = io.StringIO()
    p = StderrProgress("quiet", after=60.0, stream=stream)
    p(1, 2)
    p(2, 2)
    assert stream.getvalue() == "" and not p.shown  # a short sweep prints nothing


# -- comparisons --------------------------------------------------------------------------


def test_comparison_shows_what_differs_and_hides_rows_equal_everywhere(all_durable):
    results = small_experiment(vary={"persistence": ["adr", all_durable]}, seeds=[0]).run()
    c = compare(results)
    assert c.row("data after recovery", "blk") == {"adr": 2.0,
                                                   "test-explore-all-durable": 0.0}
    metrics = c.section("metrics")
    assert metrics.hidden > 0 and all(len(set(r.cells)) > 1 for r in metrics.rows)
    full = compare(results, all_rows=True).section("metrics")
    assert full.hidden == 0 and len(full.rows) == len(metrics.rows) + metrics.hidden
    assert "| `adr` | `test-explore-all-durable` |" in c.markdown()
    assert "not wall-clock" in c.table()
    assert json.loads(c.to_json())["results"] == results.to_dict()


def test_plot_is_written_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    out = compare(small_experiment(seeds=[0]).run()).plot(tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_optional_extra_is_named(monkeypatch):
    import importlib

    from nvdimm.explore import optional

    def no_such(name):
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_such)
    with pytest.raises(NotSupported, match=r"nvdimm-model\[plot\]"):
        optional.require("matplotlib", "plot", "plotting")


# -- built-in experiments -----------------------------------------------------------------


@pytest.fixture(scope="module")
def persistence():
    return builtin.run("persistence", jobs=1, progress=False)


def _not_intact(c, group: str) -> dict[str, float | None]:
    return c.row("data after recovery", group)


def test_fua_and_flushed_writes_survive_every_persistence_domain(persistence):
    for group in ("write+fua *", "write+flush *", "app clwb+sfence+deep_flush *"):
        assert set(_not_intact(persistence, group).values()) == {0.0}, group


def test_eadr_keeps_cached_stores_that_were_never_written_back(persistence):
    for group in ("app store (no clwb)", "app clwb (no sfence)"):
        row = _not_intact(persistence, group)
        assert row["eadr nothing"] == row["eadr random"] == 0
        assert row["adr nothing"] > 0 and row["flush-hint nothing"] > 0


def test_adr_loses_what_was_not_written_back_and_fenced(persistence):
    for group in ("app store (no clwb)", "app clwb (no sfence)", "write (no flush)"):
        assert _not_intact(persistence, group)["adr nothing"] > 0
    for group in ("app clwb+sfence *", "app nt+sfence *"):
        assert _not_intact(persistence, group)["adr nothing"] == 0


def test_flush_hint_loses_fenced_data_that_never_went_through_the_hint(persistence):
    for group in ("app clwb+sfence *", "app nt+sfence *"):
        row = _not_intact(persistence, group)
        assert row["flush-hint nothing"] > 0 and row["flush-hint random"] > 0
        assert row["adr nothing"] == row["eadr nothing"] == 0
    violations = persistence.row("invariants", "data.expected")
    assert {k for k, v in violations.items() if v} == {"flush-hint nothing",
                                                      "flush-hint random"}


def test_unflushed_block_writes_are_lost_even_on_eadr(persistence):
    row = _not_intact(persistence, "write (no flush)")
    assert all(v and v > 0 for v in row.values())


def test_random_crashes_tear_blocks_but_never_words(persistence):
    torn = [c for r in persistence.results.runs if r.config["crash"] == "random"
            for c in r.checks if c.status == "torn"]
    assert torn
    assert set(persistence.row("invariants", "data.words-old-or-new").values()) == {0.0}
    lost = persistence.row("bytes lost", "all checks")
    assert lost["adr nothing"] > lost["adr random"] > 0
    assert lost["flush-hint nothing"] > lost["adr nothing"] > lost["eadr nothing"]


def test_flush_hint_platform_pays_modeled_time_for_its_hints(persistence):
    optane = persistence.row("modeled cost", "optane")
    dram = persistence.row("modeled cost", "dram")
    assert optane["flush-hint nothing"] > optane["adr nothing"] == optane["eadr nothing"]
    assert all(optane[k] > dram[k] for k in optane)


def test_crash_images_multiply_with_each_in_flight_write():
    c = builtin.run("crash-states", vary={"writes": [1, 2, 3]}, seeds=1, jobs=1,
                    progress=False)
    images = {r.config["writes"]: r.notes["distinct crash images"] for r in c.results.runs}
    assert images[1] == 9 ** 64  # 64 lines, each keeps 0..8 of its 8-byte words
    assert images[2] == images[1] ** 2 and images[3] == images[1] ** 3
    atomic = {r.config["writes"]: r.notes["images if each write were atomic"]
              for r in c.results.runs}
    assert all(images[n] > atomic[n] ** 100 for n in images)


def test_an_experiment_waiting_for_a_seam_says_which_issue():
    b = builtin.Builtin("later", "needs a seam nobody built", needs=(("no_such_seam", 9),))
    assert not b.available
    with pytest.raises(NotAvailableYet, match="issue 9"):
        b.experiment()
    assert all(x.available for x in builtin.list_experiments())


def test_unknown_builtin_lists_the_experiments():
    with pytest.raises(InvalidArgument, match="persistence"):
        builtin.get("nope")


def test_vary_text_is_typed_by_config_field_or_workload_default():
    got = parse_vary(["persistence=adr,eadr", "dimm-size=64M,1G", "blocks=1,2",
                      "crash=nothing"], builtin.persistence_workload)
    assert got == {"persistence": ("adr", "eadr"), "dimm_size": (64 * MiB, 1 << 30),
                   "blocks": (1, 2), "crash": ("nothing",)}
    with pytest.raises(InvalidArgument, match="KEY=V1"):
        parse_vary(["persistence"])
    with pytest.raises(InvalidArgument, match="not a int"):
        parse_vary(["blocks=many"], builtin.persistence_workload)


# -- the command ---------------------------------------------------------------------------


def run_cli(capsys, *argv):
    rc = main(["explore", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_explore_lists_experiments_and_what_they_wait_for(capsys):
    rc, out, _ = run_cli(capsys, "--list")
    assert rc == 0
    lines = {ln.split()[0]: ln for ln in out.splitlines()}
    assert {"persistence", "crash-states", "btt-remap", "memmap", "direct-access",
            "persistence-stack", "memory-tiers"} <= set(lines)
    assert "btt_remap variants" in lines["btt-remap"]


def test_cli_explore_prints_json(capsys):
    rc, out, _ = run_cli(capsys, "persistence", "--vary", "persistence=adr,flush-hint",
                         "--vary", "crash=nothing", "--seeds", "1", "--jobs", "1", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["columns"] == ["adr nothing", "flush-hint nothing"]
    assert [r["config"] for r in doc["results"]["runs"]] == [
        {"persistence": "adr", "crash": "nothing"},
        {"persistence": "flush-hint", "crash": "nothing"}]


def test_cli_explore_table_markdown_save_and_load(capsys, tmp_path):
    saved = tmp_path / "r.json"
    rc, out, _ = run_cli(capsys, "crash-states", "--vary", "writes=1,2", "--seeds", "1",
                         "--jobs", "1", "--save", str(saved))
    assert rc == 0 and "distinct crash images" in out and "1.17e61" in out
    rc, md, _ = run_cli(capsys, "--load", str(saved), "--markdown")
    assert rc == 0 and md.startswith("## Experiment `crash-states`")


def test_cli_explore_reports_unavailable_and_bad_input(capsys):
    rc, _, err = run_cli(capsys, "persistence", "--vary", "persistence=nope", "--jobs", "1")
    assert rc == 1 and "no variant 'nope'" in err
    rc, _, err = run_cli(capsys)
    assert rc == 1 and "--list" in err


def test_user_variant_example_runs_outside_the_project():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "my_variant.py"),
                          "--seeds", "1", "--jobs", "1"], capture_output=True, text=True,
                         check=True, cwd=ROOT / "examples").stdout
    header = next(ln for ln in out.splitlines() if ln.startswith("persistence "))
    assert "eadr-wc" in header
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("write (no flush)"))
    assert row.split()[-3:] == ["0/0/4", "0/0/4", "4/0/0"]  # only the made-up platform


@pytest.fixture(scope="module")
def memmap_runs() -> dict[tuple[str, int], dict[str, object]]:
    c = builtin.run("memmap", seeds=1, jobs=1, progress=False)
    return {(r.config["variant"], r.config["size_gib"]): r.notes for r in c.results.runs}


def test_memmap_in_dram_costs_16_gib_per_tib_up_to_1_tib_for_64_tib(memmap_runs):
    for size in (16, 1024, 65536):
        assert memmap_runs["ram", size]["DRAM per TiB of pmem (GiB)"] == 16
    assert memmap_runs["ram", 65536]["DRAM for struct pages (GiB)"] == 1024


def test_memmap_on_pmem_costs_no_dram_but_capacity(memmap_runs):
    for size in (16, 1024, 65536):
        notes = memmap_runs["pmem", size]
        assert notes["DRAM for struct pages (GiB)"] == 0
        assert 1.5 < notes["capacity lost %"] < 1.7
        assert notes["struct page lives in"] == "pmem"


def test_compound_pages_cut_the_dram_memmap_but_lose_per_page_state(memmap_runs):
    ram = memmap_runs["ram", 1024]["DRAM for struct pages (GiB)"]
    compound = memmap_runs["compound", 1024]["DRAM for struct pages (GiB)"]
    assert compound == ram / 4  # 2 of 8 vmemmap pages kept per 2 MiB
    assert memmap_runs["compound", 1024]["per-4K page state"].startswith("no")


def test_no_memmap_is_free_and_cannot_pin_for_dma(memmap_runs):
    notes = memmap_runs["none", 65536]
    assert notes["DRAM for struct pages (GiB)"] == 0
    assert notes["pmem reserved for struct pages (GiB)"] == 0
    assert notes["pin for DMA"].startswith("no")
    assert all(memmap_runs[v, 16]["pin for DMA"] == "yes" for v in ("ram", "pmem", "compound"))
