"""Round trips with real Linux: what the model writes Linux reads, and the reverse.

Model -> Linux: the model builds a machine like the golden one (one QEMU DIMM backed by a
256 MiB file; labels v1.1 or v1.2 with several raw namespaces, or label-less), writes
known data through each block device with FUA and saves it; one boot per image asks Linux
for its listings, its reading of the labels and a hash of each block device's first MiB,
which must be what the model says about its own machine.

Linux -> model: on a fresh image Linux initialises labels, creates raw namespaces (sizes,
names, uuids, a 4096-byte sector size) and writes data, in one boot. The model, doing
the same through its ndctl layer on a fresh machine of its own, must print what ndctl
printed at every step and leave the same image, byte for byte; and the model importing
Linux's image must list the same namespaces and read the same data. The same boot asks
Linux the questions whose answers the model encodes: is a size that is not a multiple of
the region's 16 MiB alignment refused or rounded, and what shape has ``ndctl list -N``
with exactly one namespace.

Destroy and re-create: Linux destroys the middle one of three namespaces and creates two
more (one fits the hole); the model doing the same must leave what Linux leaves, and a
second, read-only boot checks the numbering after a reboot.

Seven boots of about five seconds each (under a minute in all); every test skips without
``NVDIMM_LINUX_ORACLE``.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nvdimm import ndctl
from nvdimm.errors import InvalidArgument, NvdimmError
from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import KiB, MiB
from tests.conformance import golden, oracle
from tests.conformance.fielddiff import diff_json, render_byte_diff, render_diffs

pytestmark = pytest.mark.linux

DIMM_FILE = 256 * MiB
LABEL_SIZE = 128 * KiB
READ_LEN = 1 << 20  # dd bs=4096 count=256
LISTING = "ndctl list -DRN -v"
LABELS = "ndctl read-labels -j -u nmem0"

#: ``ndctl list`` variants compared with the model's ``ndctl.list_`` (shape and content).
LIST_VARIANTS: dict[str, dict[str, Any]] = {
    "ndctl list": {},
    "ndctl list -N": {"namespaces": True},
    "ndctl list -R": {"regions": True},
    "ndctl list -D": {"dimms": True},
    "ndctl list -DN": {"dimms": True, "namespaces": True},
    "ndctl list -RN": {"regions": True, "namespaces": True},
    "ndctl list -DR": {"dimms": True, "regions": True},
    "ndctl list -R -v": {"regions": True, "verbose": True},
    "ndctl list -N -v": {"namespaces": True, "verbose": True},
    LISTING: {"dimms": True, "regions": True, "namespaces": True, "verbose": True},
    "ndctl list -r region0": {"region": "region0"},
    "ndctl list -n namespace0.0": {"namespace": "namespace0.0"},
}


def key_order(model_value: Any, linux_value: Any, path: str = "") -> list[str]:
    """Objects with the same keys printed in another order (lists walked by position)."""
    out: list[str] = []
    if isinstance(model_value, Mapping) and isinstance(linux_value, Mapping):
        if set(model_value) == set(linux_value) and list(model_value) != list(linux_value):
            out.append(
                f"{path or '(top)'}: key order: model {list(model_value)}, "
                f"linux {list(linux_value)}"
            )
        for k in linux_value:
            if k in model_value:
                out += key_order(model_value[k], linux_value[k], f"{path}.{k}")
    elif isinstance(model_value, list) and isinstance(linux_value, list):
        for i, (a, b) in enumerate(zip(model_value, linux_value, strict=False)):
            out += key_order(a, b, f"{path}[{i}]")
    return out


def same(model_value: Any, linux_value: Any, what: str) -> str:
    """ "" when equal (fields, list order, shape and key order), else the differences."""
    diffs = diff_json(model_value, linux_value)
    text = render_diffs(diffs) or "\n".join(key_order(model_value, linux_value))
    return f"{what}:\n{text}" if text else ""


def assert_all_same(pairs: list[tuple[Any, Any, str]]) -> None:
    problems = [p for m, lx, what in pairs if (p := same(m, lx, what))]
    assert not problems, "\n\n".join(problems)


def pattern_for(index: int) -> bytes:
    """The golden pattern rotated by ``index`` sectors, so every namespace's data differ
    (namespace 0 gets the pattern itself) and a swap between namespaces shows."""
    p = golden.pattern_bytes()
    k = index * 512
    return p[k:] + p[:k]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dd_hash(blockdev: str) -> str:
    return f"dd if=/dev/{blockdev} bs=4096 count=256 2>/dev/null | sha256sum"


def linux_hash(result: oracle.GuestResult, blockdev: str) -> str:
    section = result.section(dd_hash(blockdev))
    words = section.output.split()
    return words[0] if section.rc == 0 and words else f"(failed: {section.output.strip()})"


def nth(result: oracle.GuestResult, command: str, index: int) -> oracle.Section:
    """The ``index``-th run of ``command`` in the batch (``-1``: the last)."""
    return [s for s in result.sections if s.matches(command)][index]


def require_ok(result: oracle.GuestResult, *commands: str) -> None:
    bad = [
        s for s in result.sections if s.rc not in (None, 0) and any(s.matches(c) for c in commands)
    ]
    assert not bad, "Linux refused:\n" + "\n".join(f"+ {s.command}\n{s.output}" for s in bad)


# =========================================================================== model -> Linux


@dataclass(frozen=True)
class NsSpec:
    size: int
    name: str
    uuid: str
    sector_size: int = 512


@dataclass(frozen=True)
class ModelImage:
    """A machine the model built and saved, with what it wrote to each block device."""

    label_version: str | None  # None: label-less DIMM
    machine: Machine
    image: Path
    written: dict[str, bytes]  # blockdev -> first MiB written

    @property
    def label_size(self) -> str:
        return "0" if self.label_version is None else "128K"


#: Six namespaces: more than three, so that ndctl's listing order (sysfs's name-hash
#: order, reversed) is not simply newest first.
MODEL_SPECS = (
    NsSpec(64 * MiB, "rt-a", "11111111-aaaa-4000-8000-000000000001"),
    NsSpec(32 * MiB, "rt-b", "11111111-aaaa-4000-8000-000000000002", sector_size=4096),
    NsSpec(16 * MiB, "", "11111111-aaaa-4000-8000-000000000003"),
    NsSpec(16 * MiB, "rt-d", "11111111-aaaa-4000-8000-000000000004"),
    NsSpec(16 * MiB, "rt-e", "11111111-aaaa-4000-8000-000000000005", sector_size=4096),
    NsSpec(32 * MiB, "rt-f", "11111111-aaaa-4000-8000-000000000006"),
)


def build_model_image(label_version: str | None, directory: Path) -> ModelImage:
    if label_version is None:  # the whole file is DPA space: one io namespace
        config = MachineConfig(
            dimms=1, dimm_size=DIMM_FILE, label_size=0, advertise_persistence=False
        )
    else:
        config = MachineConfig(
            dimms=1,
            dimm_size=DIMM_FILE - LABEL_SIZE,
            label_size=LABEL_SIZE,
            advertise_persistence=False,
        )
    m = Machine.create(config)
    if label_version is not None:
        m.bus.disable_region("region0")
        ndctl.init_labels(m, "all", version=label_version)
        m.bus.enable_region("region0")
        for spec in MODEL_SPECS:
            m.bus.create_namespace(
                region="region0",
                mode="raw",
                size=spec.size,
                name=spec.name,
                uuid=uuidlib.UUID(spec.uuid),
                sector_size=spec.sector_size,
            )
    written: dict[str, bytes] = {}
    for i, ns in enumerate(sorted(m.bus.namespaces(), key=lambda n: n.id)):
        disk = m.block_device(ns.dev)
        data = pattern_for(i)
        disk.write(0, data, fua=True)
        written[disk.name] = data
    m.save(directory)
    return ModelImage(label_version, m, directory / "nmem0.img", written)


@dataclass
class ModelToLinux:
    built: ModelImage
    result: oracle.GuestResult

    def model_list(self, **options: Any) -> Any:
        return ndctl.list_(self.built.machine, **options)


@pytest.fixture(
    scope="module", params=["1.1", "1.2", None], ids=["labels-v1.1", "labels-v1.2", "label-less"]
)
def model_to_linux(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ModelToLinux:
    runner = oracle.require_runner()
    version: str | None = request.param
    built = build_model_image(version, tmp_path_factory.mktemp("model-image"))
    commands = [*LIST_VARIANTS, LABELS, *(dd_hash(b) for b in built.written)]
    result = oracle.run_batch(
        built.image, commands, label_size=built.label_size, read_only=True, runner=runner
    )
    assert result.rc == 0, result.describe()
    return ModelToLinux(built, result)


def test_linux_lists_the_models_machine_as_the_model_does(model_to_linux: ModelToLinux) -> None:
    """Every ``ndctl list`` variant, shape included (bare array, object, nothing)."""
    r = model_to_linux.result
    assert_all_same(
        [
            (model_to_linux.model_list(**opts), r.section(cmd).json, cmd)
            for cmd, opts in LIST_VARIANTS.items()
        ]
    )


def test_linux_reads_the_models_labels_as_the_model_does(model_to_linux: ModelToLinux) -> None:
    linux = model_to_linux.result.section(LABELS)
    mine = ndctl.read_labels(model_to_linux.built.machine, "nmem0")
    assert_all_same([(mine, linux.json, LABELS)])
    if model_to_linux.built.label_version is None:
        assert "read 0 nmem" in linux.text


def test_linux_reads_the_data_the_model_wrote(model_to_linux: ModelToLinux) -> None:
    built = model_to_linux.built
    got = {b: linux_hash(model_to_linux.result, b) for b in built.written}
    want = {b: sha(data) for b, data in built.written.items()}
    assert got == want, f"sha256 of the first MiB per block device: linux {got}, model {want}"
    for blockdev, data in built.written.items():  # and the model reads back its own data
        assert bytes(built.machine.block_device(blockdev).read(0, READ_LEN)) == data


# =========================================================================== Linux -> model


@dataclass(frozen=True)
class LinuxNs:
    size: str
    name: str
    uuid: str
    sector_size: int | None = None

    def command(self) -> str:
        words = ["ndctl create-namespace -m raw -r region0", f"-s {self.size}"]
        if self.name:
            words.append(f"-n {self.name}")
        words.append(f"-u {self.uuid}")
        if self.sector_size:
            words.append(f"-l {self.sector_size}")
        return " ".join(words)

    def create_in(self, m: Machine) -> Any:
        return ndctl.create_namespace(
            m,
            region="region0",
            mode="raw",
            size=self.size,
            name=self.name,
            uuid=self.uuid,
            sector_size=self.sector_size,
        )


LINUX_SPECS = (
    LinuxNs("64M", "lx-a", "22222222-bbbb-4000-8000-000000000001"),
    LinuxNs("32M", "lx-b", "22222222-bbbb-4000-8000-000000000002", sector_size=4096),
    LinuxNs("16M", "", "22222222-bbbb-4000-8000-000000000003"),
)
#: A size that is not a multiple of the region's 16 MiB alignment.
ODD_SIZE = LinuxNs("20M", "odd-size", "22222222-bbbb-4000-8000-0000000000ff")
LIST_N, LIST_N_HUMAN = "ndctl list -N", "ndctl list -N -u"


def init_command(version: str) -> str:
    v = "" if version == "1.1" else f" -V {version}"
    return f"ndctl disable-region all && ndctl init-labels{v} all && ndctl enable-region all"


def linux_script(version: str, data_files: list[Path], blockdevs: list[str]) -> list[str]:
    """The guest's commands, in the order :func:`mirror` does the same in the model."""
    steps = [
        [LISTING, LABELS],  # 0: the fresh image, labels never initialised
        [init_command(version), LIST_N],  # 1: an empty index
        [ODD_SIZE.command()],  # 2: refused or rounded?
        [LINUX_SPECS[0].command(), LIST_N, LIST_N_HUMAN],  # 3: exactly one namespace
        [s.command() for s in LINUX_SPECS[1:]],  # 4
        [
            f"dd if=/in/{f.name} of=/dev/{b} bs=4096 conv=fsync 2>/dev/null"  # 5
            for f, b in zip(data_files, blockdevs, strict=True)
        ],
        [*LIST_VARIANTS, LABELS, *(dd_hash(b) for b in blockdevs)],  # 6: the end state
    ]
    return [c for step in steps for c in step]


@dataclass
class Mirror:
    """What the model printed doing the same steps on a fresh machine of its own."""

    fresh_listing: Any = None
    fresh_labels: Any = None
    empty_listing: Any = "(not run)"
    odd_size: Any = None  # the JSON it printed, or the InvalidArgument it raised
    odd_labels_unchanged: bool = False
    created: list[Any] = field(default_factory=list)
    one_listing: Any = None
    machine: Machine | None = None


def mirror(version: str, data: list[bytes], blockdevs: list[str], directory: Path) -> Mirror:
    out = Mirror()
    m = Machine.create(
        MachineConfig(
            dimms=1,
            dimm_size=DIMM_FILE - LABEL_SIZE,
            label_size=LABEL_SIZE,
            advertise_persistence=False,
        )
    )
    out.fresh_listing = ndctl.list_(m, dimms=True, regions=True, namespaces=True, verbose=True)
    out.fresh_labels = ndctl.read_labels(m, "nmem0")
    m.bus.disable_region("region0")
    ndctl.init_labels(m, "all", version=version)
    m.bus.enable_region("region0")
    out.empty_listing = ndctl.list_(m, namespaces=True)
    before = ndctl.read_labels(m, "nmem0")
    try:
        out.odd_size = ODD_SIZE.create_in(m)
    except NvdimmError as e:
        out.odd_size = e
    out.odd_labels_unchanged = ndctl.read_labels(m, "nmem0") == before
    out.created.append(LINUX_SPECS[0].create_in(m))
    out.one_listing = ndctl.list_(m, namespaces=True)
    out.created += [s.create_in(m) for s in LINUX_SPECS[1:]]
    for blockdev, d in zip(blockdevs, data, strict=True):
        m.block_device(blockdev).write(0, d, fua=True)
    m.save(directory)
    out.machine = m
    return out


@dataclass
class LinuxToModel:
    version: str
    result: oracle.GuestResult
    image: Path  # what Linux left
    data: dict[str, bytes]  # blockdev -> what Linux wrote to its first MiB
    mirror: Mirror
    mirror_image: Path
    imported: Machine


@pytest.fixture(scope="module", params=["1.1", "1.2"], ids=["labels-v1.1", "labels-v1.2"])
def linux_to_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LinuxToModel:
    runner = oracle.require_runner()
    version: str = request.param
    work = tmp_path_factory.mktemp(f"linux-v{version}")
    blockdevs = ["pmem0", "pmem0.1", "pmem0.2"]
    files = []
    for i in range(len(blockdevs)):
        f = work / f"data{i}.bin"
        f.write_bytes(pattern_for(i))
        files.append(f)
    image = work / "linux.img"
    result = oracle.run_batch(
        image,
        linux_script(version, files, blockdevs),
        label_size="128K",
        create_size="256M",
        files=files,
        runner=runner,
    )
    assert result.rc == 0, result.describe()
    data = {b: f.read_bytes() for b, f in zip(blockdevs, files, strict=True)}
    mine = mirror(version, list(data.values()), blockdevs, work / "model")
    imported = Machine.import_image(image, label_size=LABEL_SIZE)
    return LinuxToModel(version, result, image, data, mine, work / "model" / "nmem0.img", imported)


def end_state_pairs(m: Machine, result: oracle.GuestResult) -> list[tuple[Any, Any, str]]:
    """(model, Linux, command) for every listing variant and read-labels at the end."""
    pairs = [
        (ndctl.list_(m, **opts), nth(result, cmd, -1).json, cmd)
        for cmd, opts in LIST_VARIANTS.items()
    ]
    pairs.append((ndctl.read_labels(m, "nmem0"), nth(result, LABELS, -1).json, LABELS))
    return pairs


def _all_created_ok(t: LinuxToModel) -> None:
    require_ok(t.result, init_command(t.version), *(s.command() for s in LINUX_SPECS))


def test_fresh_image_is_label_less_to_linux_and_to_the_model(linux_to_model: LinuxToModel) -> None:
    """Labels never initialised: one io namespace over the whole region, no iset_id, and
    read-labels shows the blank index blocks and slot 0."""
    t = linux_to_model
    first = nth(t.result, LISTING, 0)
    first_labels = nth(t.result, LABELS, 0)
    assert_all_same(
        [
            (t.mirror.fresh_listing, first.json, f"{LISTING} (fresh)"),
            (t.mirror.fresh_labels, first_labels.json, f"{LABELS} (fresh)"),
        ]
    )


def test_empty_listing_prints_nothing(linux_to_model: LinuxToModel) -> None:
    t = linux_to_model
    empty = nth(t.result, LIST_N, 0)
    assert empty.rc == 0 and empty.output == "", f"Linux printed {empty.output!r}"
    assert t.mirror.empty_listing is None, f"model: {t.mirror.empty_listing!r}"


def test_size_not_a_multiple_of_the_region_align(linux_to_model: LinuxToModel) -> None:
    """Linux (ndctl 76): "align setting is 0x1000000 size 0x1400000 is misaligned",
    EINVAL, nothing written. The model must refuse too (or round as Linux would)."""
    t = linux_to_model
    linux = t.result.section(ODD_SIZE.command())
    mine = t.mirror.odd_size
    if linux.rc != 0:
        assert isinstance(mine, InvalidArgument), (
            f"Linux refused -s {ODD_SIZE.size} ({linux.output.strip()}); model: {mine!r}"
        )
        assert t.mirror.odd_labels_unchanged, "the model's refusal changed the labels"
        assert "misaligned" in linux.output  # the answer this test documents
    else:
        assert not isinstance(mine, Exception), (
            f"Linux created {linux.json}; the model refused: {mine}"
        )
        assert_all_same([(mine, linux.json, ODD_SIZE.command())])


def test_list_of_exactly_one_namespace_is_a_one_element_array(linux_to_model: LinuxToModel) -> None:
    """ndctl unwraps a lone object only with ``-u``; the model's ``list_`` (no ``-u``)
    gives the array."""
    t = linux_to_model
    after_first = nth(t.result, LIST_N, 1)
    human = t.result.section(LIST_N_HUMAN)
    assert isinstance(after_first.json, list) and len(after_first.json) == 1, after_first.output
    assert isinstance(human.json, dict), human.output  # -u: the object itself
    assert_all_same([(t.mirror.one_listing, after_first.json, f"{LIST_N} (one namespace)")])


def test_create_namespace_prints_what_ndctl_printed(linux_to_model: LinuxToModel) -> None:
    t = linux_to_model
    _all_created_ok(t)
    assert_all_same(
        [
            (mine, t.result.section(spec.command()).json, spec.command())
            for spec, mine in zip(LINUX_SPECS, t.mirror.created, strict=True)
        ]
    )


def test_model_doing_the_same_lists_and_labels_the_same(linux_to_model: LinuxToModel) -> None:
    t = linux_to_model
    _all_created_ok(t)
    m = t.mirror.machine
    assert m is not None
    assert_all_same(end_state_pairs(m, t.result))


def test_model_doing_the_same_leaves_the_same_image(linux_to_model: LinuxToModel) -> None:
    """Same commands, same uuids, same data: the label area (index blocks, slots, sequence
    numbers, checksums) and the data must be the bytes Linux wrote."""
    t = linux_to_model
    _all_created_ok(t)
    linux = t.image.read_bytes()
    mine = t.mirror_image.read_bytes()
    area = len(linux) - LABEL_SIZE
    text = render_byte_diff(mine, linux, annotations=[(area, len(linux), "label area")])
    assert not text, f"model image vs Linux image (labels v{t.version}): {text}"


def test_model_imports_what_linux_made(linux_to_model: LinuxToModel) -> None:
    """The model adopts Linux's image: the same listing and labels, the same data."""
    t = linux_to_model
    _all_created_ok(t)
    assert_all_same(end_state_pairs(t.imported, t.result))
    for blockdev, data in t.data.items():
        assert linux_hash(t.result, blockdev) == sha(data), f"Linux misread /dev/{blockdev}"
        got = bytes(t.imported.block_device(blockdev).read(0, READ_LEN))
        assert got == data, f"/dev/{blockdev}: " + render_byte_diff(got, data, max_ranges=5)


# =========================================================================== destroy, re-create


DESTROY_SPECS = (
    LinuxNs("32M", "a", "33333333-cccc-4000-8000-000000000001"),
    LinuxNs("32M", "b", "33333333-cccc-4000-8000-000000000002"),
    LinuxNs("32M", "c", "33333333-cccc-4000-8000-000000000003"),
)
#: After b (namespace0.1, DPA 32 MiB) is destroyed: d fits in its hole, e does not.
RECREATE_SPECS = (
    LinuxNs("16M", "d", "33333333-cccc-4000-8000-000000000004"),
    LinuxNs("48M", "e", "33333333-cccc-4000-8000-000000000005"),
)
DESTROY = "ndctl destroy-namespace -f namespace0.1"


@dataclass
class DestroyCase:
    result: oracle.GuestResult  # the boot that created, destroyed and re-created
    rebooted: oracle.GuestResult  # a second boot on what it left, read-only
    image: Path
    model: Machine  # the model doing the same on its own machine
    model_image: Path
    labels_after_destroy: Any
    created: list[Any]
    imported: Machine


@pytest.fixture(scope="module")
def destroy_case(tmp_path_factory: pytest.TempPathFactory) -> DestroyCase:
    runner = oracle.require_runner()
    work = tmp_path_factory.mktemp("destroy")
    data = work / "data1.bin"
    data.write_bytes(pattern_for(1))
    commands = [
        init_command("1.1"),
        *(s.command() for s in DESTROY_SPECS),
        f"dd if=/in/{data.name} of=/dev/pmem0.1 bs=4096 conv=fsync 2>/dev/null",
        DESTROY,
        LABELS,
        *(s.command() for s in RECREATE_SPECS),
        LISTING,
        LABELS,
    ]
    image = work / "linux.img"
    result = oracle.run_batch(
        image, commands, label_size="128K", create_size="256M", files=[data], runner=runner
    )
    assert result.rc == 0, result.describe()
    rebooted = oracle.run_batch(image, [LISTING, LABELS], read_only=True, runner=runner)
    assert rebooted.rc == 0, rebooted.describe()

    m = Machine.create(
        MachineConfig(
            dimms=1,
            dimm_size=DIMM_FILE - LABEL_SIZE,
            label_size=LABEL_SIZE,
            advertise_persistence=False,
        )
    )
    m.bus.disable_region("region0")
    ndctl.init_labels(m, "all", version="1.1")
    m.bus.enable_region("region0")
    for spec in DESTROY_SPECS:
        spec.create_in(m)
    m.block_device("pmem0.1").write(0, pattern_for(1), fua=True)
    ndctl.destroy_namespace(m, "namespace0.1", force=True)
    after_destroy = ndctl.read_labels(m, "nmem0")
    created = [spec.create_in(m) for spec in RECREATE_SPECS]
    m.save(work / "model")
    imported = Machine.import_image(image, label_size=LABEL_SIZE)
    return DestroyCase(
        result, rebooted, image, m, work / "model" / "nmem0.img", after_destroy, created, imported
    )


def test_destroy_writes_the_label_area_linux_writes(destroy_case: DestroyCase) -> None:
    t = destroy_case
    require_ok(t.result, DESTROY)
    linux = nth(t.result, LABELS, 0).json
    assert_all_same([(t.labels_after_destroy, linux, f"{LABELS} after {DESTROY}")])


def test_destroy_leaves_the_data_linux_leaves(destroy_case: DestroyCase) -> None:
    t = destroy_case
    linux = t.image.read_bytes()
    mine = t.model_image.read_bytes()
    area = len(linux) - LABEL_SIZE
    text = render_byte_diff(mine[:area], linux[:area], annotations=[(32 * MiB, 64 * MiB, "b")])
    assert not text, f"data area after destroy + re-create: {text}"


def test_recreated_namespaces_are_placed_where_linux_placed_them(
    destroy_case: DestroyCase,
) -> None:
    """d goes into the hole b left (first fit), e after c: the same DPAs and sizes."""
    t = destroy_case
    linux = nth(t.result, LABELS, -1).json
    mine = ndctl.read_labels(t.model, "nmem0")
    assert_all_same([(mine["label"], linux["label"], f"{LABELS}: label")])


def test_recreated_namespaces_get_the_ids_linux_gives(destroy_case: DestroyCase) -> None:
    t = destroy_case
    pairs = [
        (mine, t.result.section(spec.command()).json, spec.command())
        for spec, mine in zip(RECREATE_SPECS, t.created, strict=True)
    ]
    pairs.append(
        (
            ndctl.list_(t.model, dimms=True, regions=True, namespaces=True, verbose=True),
            nth(t.result, LISTING, -1).json,
            LISTING,
        )
    )
    assert_all_same(pairs)


def test_after_a_reboot_the_model_numbers_namespaces_as_linux(destroy_case: DestroyCase) -> None:
    """On boot Linux numbers namespaces by DPA; the model importing the image does too."""
    t = destroy_case
    assert_all_same(
        [
            (
                ndctl.list_(t.imported, dimms=True, regions=True, namespaces=True, verbose=True),
                t.rebooted.section(LISTING).json,
                f"{LISTING} (after reboot)",
            ),
            (ndctl.read_labels(t.imported, "nmem0"), t.rebooted.section(LABELS).json, LABELS),
        ]
    )


# =========================================================================== fsdax and devdax
#
# Issue 5: the pfn and dax personalities. Model -> Linux: the model makes fsdax and
# devdax namespaces (map=dev and map=mem, 2 MiB and 4 KiB alignments, label-less too) and
# writes data through the fsdax disks; Linux must list them as the model does, read the
# data, and decode the same info blocks. Linux -> model: Linux makes the same namespaces;
# the model doing the same prints what ndctl printed and leaves the same image (but for
# the run-to-run parts: the info blocks' uuid and checksum and the map=dev struct page
# reservation), and the model importing Linux's image lists it as Linux does.


@dataclass(frozen=True)
class PfnSpec:
    mode: str
    size: str
    name: str
    uuid: str
    map: str | None = None
    align: str | None = None
    sector_size: int | None = None

    def command(self) -> str:
        words = [f"ndctl create-namespace -m {self.mode} -r region0 -s {self.size}",
                 f"-n {self.name} -u {self.uuid}"]
        if self.map:
            words.append(f"--map={self.map}")
        if self.align:
            words.append(f"-a {self.align}")
        if self.sector_size:
            words.append(f"-l {self.sector_size}")
        return " ".join(words)

    def create_in(self, m: Machine) -> Any:
        return ndctl.create_namespace(
            m, region="region0", mode=self.mode, size=self.size, name=self.name,
            uuid=self.uuid, map=self.map, align=self.align, sector_size=self.sector_size)


PFN_SPECS = (
    PfnSpec("fsdax", "64M", "pfn-a", "33333333-cccc-4000-8000-000000000001"),
    PfnSpec("fsdax", "32M", "pfn-b", "33333333-cccc-4000-8000-000000000002", map="mem",
            sector_size=4096),
    PfnSpec("devdax", "64M", "dax-c", "33333333-cccc-4000-8000-000000000003"),
    PfnSpec("devdax", "32M", "dax-d", "33333333-cccc-4000-8000-000000000004", map="mem",
            align="4K"),
    PfnSpec("fsdax", "32M", "pfn-e", "33333333-cccc-4000-8000-000000000005", align="4K"),
)
PFN_BLOCKDEVS = ("pmem0", "pmem0.1", "pmem0.4")  # the fsdax ones, in PFN_SPECS order
PFN_LIST_VARIANTS = {k: LIST_VARIANTS[k] for k in (LISTING, "ndctl list -N", "ndctl list")}


def read_infoblock(dev: str) -> str:
    return f"ndctl read-infoblock -j {dev}"


def model_infoblocks(m: Machine) -> dict[str, Any]:
    """What ``ndctl read-infoblock -j`` prints for each pfn/dax namespace of the model."""
    return {ns.dev: [ns.device.info.to_json(ns.dev)] for ns in m.bus.namespaces()
            if ns.mode in ("fsdax", "devdax")}


def build_pfn_image(label_version: str | None, directory: Path) -> ModelImage:
    if label_version is None:
        m = Machine.create(MachineConfig(dimms=1, dimm_size=DIMM_FILE, label_size=0,
                                         advertise_persistence=False))
        ns = m.bus.namespace("namespace0.0")  # create-namespace -f -e namespace0.0 -m fsdax
        m.bus.disable_namespace(ns.dev)
        drv = m.drivers.for_mode("fsdax")
        drv.validate(ns)
        drv.format(ns)
        m.bus.enable_namespace(ns.dev)
        blockdevs: tuple[str, ...] = ("pmem0",)
    else:
        m = Machine.create(MachineConfig(dimms=1, dimm_size=DIMM_FILE - LABEL_SIZE,
                                         label_size=LABEL_SIZE, advertise_persistence=False))
        m.bus.disable_region("region0")
        ndctl.init_labels(m, "all", version=label_version)
        m.bus.enable_region("region0")
        for spec in PFN_SPECS:
            spec.create_in(m)
        blockdevs = PFN_BLOCKDEVS
    written = {}
    for i, b in enumerate(blockdevs):
        data = pattern_for(i)
        m.block_device(b).write(0, data, fua=True)
        written[b] = data
    m.save(directory)
    return ModelImage(label_version, m, directory / "nmem0.img", written)


@dataclass
class PfnModelToLinux:
    built: ModelImage
    result: oracle.GuestResult


@pytest.fixture(
    scope="module", params=["1.1", "1.2", None], ids=["labels-v1.1", "labels-v1.2", "label-less"]
)
def pfn_model_to_linux(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> PfnModelToLinux:
    runner = oracle.require_runner()
    built = build_pfn_image(request.param, tmp_path_factory.mktemp("model-pfn-image"))
    devs = sorted(model_infoblocks(built.machine))
    commands = [*PFN_LIST_VARIANTS, LABELS, *(dd_hash(b) for b in built.written),
                "ndctl disable-namespace all", *(read_infoblock(d) for d in devs)]
    result = oracle.run_batch(
        built.image, commands, label_size=built.label_size, read_only=True, runner=runner
    )
    assert result.rc == 0, result.describe()
    return PfnModelToLinux(built, result)


def test_linux_lists_the_models_fsdax_and_devdax_as_the_model_does(
    pfn_model_to_linux: PfnModelToLinux,
) -> None:
    r, m = pfn_model_to_linux.result, pfn_model_to_linux.built.machine
    pairs = [(ndctl.list_(m, **opts), r.section(cmd).json, cmd)
             for cmd, opts in PFN_LIST_VARIANTS.items()]
    pairs.append((ndctl.read_labels(m, "nmem0"), r.section(LABELS).json, LABELS))
    assert_all_same(pairs)


def test_linux_decodes_the_models_info_blocks_as_the_model_does(
    pfn_model_to_linux: PfnModelToLinux,
) -> None:
    r, m = pfn_model_to_linux.result, pfn_model_to_linux.built.machine
    assert_all_same([(mine, r.section(read_infoblock(dev)).json, read_infoblock(dev))
                     for dev, mine in model_infoblocks(m).items()])


def test_linux_reads_the_data_the_model_wrote_through_fsdax(
    pfn_model_to_linux: PfnModelToLinux,
) -> None:
    built = pfn_model_to_linux.built
    got = {b: linux_hash(pfn_model_to_linux.result, b) for b in built.written}
    want = {b: sha(data) for b, data in built.written.items()}
    assert got == want, f"sha256 of the first MiB per fsdax disk: linux {got}, model {want}"


@dataclass
class PfnLinuxToModel:
    version: str
    result: oracle.GuestResult
    image: Path
    data: dict[str, bytes]
    model: Machine
    model_created: list[Any]
    model_image: Path
    imported: Machine


@pytest.fixture(scope="module", params=["1.1", "1.2"], ids=["labels-v1.1", "labels-v1.2"])
def pfn_linux_to_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> PfnLinuxToModel:
    runner = oracle.require_runner()
    version: str = request.param
    work = tmp_path_factory.mktemp(f"linux-pfn-v{version}")
    files = []
    for i in range(len(PFN_BLOCKDEVS)):
        f = work / f"data{i}.bin"
        f.write_bytes(pattern_for(i))
        files.append(f)
    commands = [
        init_command(version),
        *(s.command() for s in PFN_SPECS),
        *(f"dd if=/in/{f.name} of=/dev/{b} bs=4096 conv=fsync 2>/dev/null"
          for f, b in zip(files, PFN_BLOCKDEVS, strict=True)),
        *PFN_LIST_VARIANTS, LABELS,
    ]
    image = work / "linux.img"
    result = oracle.run_batch(image, commands, label_size="128K", create_size="256M",
                              files=files, runner=runner)
    assert result.rc == 0, result.describe()
    require_ok(result, *(s.command() for s in PFN_SPECS))
    data = {b: f.read_bytes() for b, f in zip(PFN_BLOCKDEVS, files, strict=True)}
    m = Machine.create(MachineConfig(dimms=1, dimm_size=DIMM_FILE - LABEL_SIZE,
                                     label_size=LABEL_SIZE, advertise_persistence=False))
    m.bus.disable_region("region0")
    ndctl.init_labels(m, "all", version=version)
    m.bus.enable_region("region0")
    created = [s.create_in(m) for s in PFN_SPECS]
    for b, d in data.items():
        m.block_device(b).write(0, d, fua=True)
    m.save(work / "model")
    imported = Machine.import_image(image, label_size=LABEL_SIZE)
    return PfnLinuxToModel(version, result, image, data, m, created,
                           work / "model" / "nmem0.img", imported)


def _without_run_to_run(m: Machine, image: bytes) -> bytes:
    """The image with what differs between runs of the same steps zeroed: each info
    block's uuid and checksum and, with map=dev, the struct page reservation."""
    buf = bytearray(image)
    for ns in m.bus.namespaces():
        if ns.mode not in ("fsdax", "devdax"):
            continue
        start = ns.dpa_offset  # one DIMM: DPA = file offset
        buf[start + 4096 + 16:start + 4096 + 32] = bytes(16)
        buf[start + 8192 - 8:start + 8192] = bytes(8)
        reserved = ns.device.layout.memmap_reserved
        buf[start + 8192:start + 8192 + reserved] = bytes(reserved)
    return bytes(buf)


def test_model_creating_fsdax_and_devdax_prints_what_ndctl_printed(
    pfn_linux_to_model: PfnLinuxToModel,
) -> None:
    t = pfn_linux_to_model
    pairs = []
    for spec, mine in zip(PFN_SPECS, t.model_created, strict=True):
        linux = t.result.section(spec.command()).json
        pairs.append(({**mine, "uuid": "(run to run)"}, {**linux, "uuid": "(run to run)"},
                      spec.command()))
    assert_all_same(pairs)


def test_model_creating_fsdax_and_devdax_leaves_linuxs_image(
    pfn_linux_to_model: PfnLinuxToModel,
) -> None:
    t = pfn_linux_to_model
    mine = _without_run_to_run(t.model, t.model_image.read_bytes())
    linux = _without_run_to_run(t.model, t.image.read_bytes())
    text = render_byte_diff(mine, linux, max_ranges=8)
    assert not text, f"image (info block uuids, checksums, map=dev memmaps left out): {text}"


def test_model_imports_linuxs_fsdax_and_devdax(pfn_linux_to_model: PfnLinuxToModel) -> None:
    t = pfn_linux_to_model
    pairs = [(ndctl.list_(t.imported, **opts), nth(t.result, cmd, -1).json, cmd)
             for cmd, opts in PFN_LIST_VARIANTS.items()]
    pairs.append((ndctl.read_labels(t.imported, "nmem0"), nth(t.result, LABELS, -1).json,
                  LABELS))
    assert_all_same(pairs)
    for b, d in t.data.items():
        assert bytes(t.imported.block_device(b).read(0, READ_LEN)) == d, b
