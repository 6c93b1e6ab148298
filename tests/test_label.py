"""Label storage area logic (nvdimm.label): loading as Linux does, the update protocol,
and byte-for-byte agreement with label areas real Linux wrote (golden images)."""

from __future__ import annotations

import functools
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.label import (
    LabelArea,
    MemoryLabelStorage,
    best_seq,
    claim_class_of,
    delete_namespace_label,
    initialize,
    next_seq,
    read_labels_json,
    write_namespace_label,
)
from nvdimm.label_format import (
    BTT2_GUID,
    NULL_GUID,
    PFN_GUID,
    PMEM_TYPE_GUID,
    IndexBlock,
    LabelFlag,
    NamespaceLabel,
)

KiB = 1024
COOKIE11 = 0x2468AC00123456
COOKIE12 = 0xBA90120012B4DC
U1 = uuid.UUID("11111111-2222-3333-4444-555555555555")


def create(area: LabelArea, lsa: MemoryLabelStorage, uid: uuid.UUID = U1, **kw: Any) -> Any:
    args: dict[str, Any] = {"rawsize": 16 << 20, "dpa": 0, "isetcookie": COOKIE11}
    args.update(kw)
    return area.update_namespace(lsa, uuid=uid, **args)


# -- sequence numbers ------------------------------------------------------------------


def test_seq_cycle() -> None:
    assert [next_seq(s) for s in (0, 1, 2, 3)] == [0, 2, 3, 1]
    assert next_seq(0x7) == 1  # only the low two bits count


@pytest.mark.parametrize(("a", "b", "best"), [
    (3, 2, 3), (2, 3, 3), (1, 3, 1), (3, 1, 1), (1, 2, 2), (2, 1, 2),
    (0, 2, 2), (2, 0, 2), (2, 2, 2), (0, 0, 0), (6, 3, 3),
])
def test_best_seq(a: int, b: int, best: int) -> None:
    assert best_seq(a, b) == best


# -- initialisation --------------------------------------------------------------------


def test_initialize_like_ndctl() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    assert lsa.log == [(0, 256), (256, 256)]  # index0 first, then index1
    assert (area.version, area.current, area.nslot, area.nfree) == ("1.1", 0, 1020, 1020)
    assert [b.seq for b in area.index] == [3, 2]
    # ndctl fills the bitmap one 64-bit word at a time: bits 1020..1023 end up set
    assert lsa.data[72:200] == b"\xff" * 128 and lsa.data[200:256] == bytes(56)
    assert LabelArea.load(lsa) == area


def test_initialize_like_the_kernel_clears_bits_past_nslot() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa, version="1.2", writer="kernel")
    assert (area.version, area.nslot, area.index_size) == ("1.2", 510, 256)
    # 510 slots: 63 bytes of ones, then bits 510 and 511 clear
    assert lsa.data[72:135] == b"\xff" * 63 and lsa.data[135] == 0x3F
    assert lsa.data[136:256] == bytes(120)
    assert lsa.data[256 + 72 + 63] == 0x3F
    assert LabelArea.load(lsa).version == "1.2"


def test_initialize_keeps_bytes_after_the_bitmap_and_the_slots() -> None:
    lsa = MemoryLabelStorage.zeroed(2 * KiB)
    lsa.data[250] = 0xAA  # inside index0, past its bitmap
    lsa.data[600] = 0xBB  # in a label slot
    initialize(lsa)
    assert lsa.data[250] == 0xAA and lsa.data[600] == 0xBB
    assert LabelArea.load(lsa).valid


def test_initialize_rejects() -> None:
    with pytest.raises(InvalidArgument):
        initialize(MemoryLabelStorage.zeroed(), version="2.0")
    tiny = MemoryLabelStorage.zeroed(512)
    with pytest.raises(InvalidArgument):
        initialize(tiny)
    assert tiny.log == []


# -- the update protocol ---------------------------------------------------------------


def test_first_namespace_goes_updating_slot0_then_final_slot1() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    lsa.log.clear()
    final = create(area, lsa, name="golden-raw")
    assert lsa.log == [(512, 128), (256, 256), (640, 128), (0, 256)]
    assert final.slot == 1 and final.flags == 0
    stale = NamespaceLabel.unpack(lsa.data[512:640], 128)
    assert stale.slot == 0 and stale.flags == LabelFlag.UPDATING and stale.uuid == U1
    assert [(b.seq, b.used_slots()) for b in area.index] == [(2, [1]), (1, [0])]
    assert area.current == 0 and area.labels == [final]
    assert LabelArea.load(lsa) == area


def test_resize_replaces_the_label() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    create(area, lsa)
    final = create(area, lsa, rawsize=32 << 20)
    # slot 0 (stale) is reused for UPDATING, releasing slot 1; final lands in slot 1
    assert final.slot == 1 and final.rawsize == 32 << 20
    assert area.find(U1) == [final]
    assert area.current_index is not None and area.current_index.used_slots() == [1]
    assert LabelArea.load(lsa) == area


def test_second_namespace_keeps_the_first() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    a = create(area, lsa)
    u2 = uuid.uuid4()
    b = create(area, lsa, u2, dpa=16 << 20)
    assert (a.slot, b.slot) == (1, 2)
    assert set(area.namespaces()) == {U1, u2}
    assert LabelArea.load(lsa) == area


def test_delete_frees_slots_with_one_index_write() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    create(area, lsa)
    seq = area.current_index.seq if area.current_index else None
    lsa.log.clear()
    assert delete_namespace_label(lsa, U1) == [1]
    assert lsa.log == [(256, 256)]
    again = LabelArea.load(lsa)
    assert again.labels == [] and again.current == 1
    assert again.current_index is not None and again.current_index.seq == next_seq(seq or 0)
    with pytest.raises(InvalidArgument):
        again.delete_namespace(lsa, U1)


def test_refusals_write_nothing() -> None:
    lsa = MemoryLabelStorage.zeroed(1 * KiB)  # v1.1: 4 slots
    area = initialize(lsa)
    for _ in range(3):
        create(area, lsa, uuid.uuid4())  # each new namespace needs two free slots
    assert area.nfree == 1
    before = bytes(lsa.data)
    lsa.log.clear()
    with pytest.raises(NoSpace):
        create(area, lsa, uuid.uuid4())
    for bad in ({"name": "x" * 64}, {"position": 1}, {"rawsize": 0}, {"dpa": -1},
                {"flags": LabelFlag.UPDATING}, {"lbasize": 1 << 64}):
        with pytest.raises(InvalidArgument):
            create(area, lsa, **bad)
    with pytest.raises(InvalidArgument):
        create(area, lsa, uuid.UUID(int=0))
    assert lsa.log == [] and bytes(lsa.data) == before
    assert LabelArea.load(lsa) == area
    # an existing namespace still fits: its old slot is released in the first pass
    existing = area.labels[0].uuid
    create(area, lsa, existing, rawsize=1 << 20)
    assert LabelArea.load(lsa).find(existing)[0].rawsize == 1 << 20


def test_update_on_blank_area_initialises_like_the_kernel() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = LabelArea.load(lsa)
    assert not area.valid and area.version == "1.2"  # what Linux assumes when nothing validates
    final = area.update_namespace(lsa, uuid=U1, rawsize=1 << 24, dpa=0, isetcookie=COOKIE12,
                                  abstraction_guid=PFN_GUID)
    assert lsa.log[:2] == [(0, 256), (256, 256)]
    assert lsa.data[135] == 0x3F  # kernel init: no bits past nslot
    assert final.slot == 1 and final.type_guid == PMEM_TYPE_GUID
    assert claim_class_of(final) == "pfn"
    assert LabelArea.load(lsa) == area


def test_guids_are_dropped_on_v11_labels() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    final = create(area, lsa, abstraction_guid=BTT2_GUID)
    assert final.abstraction_guid == NULL_GUID and claim_class_of(final) == "none"


def test_multi_dimm_protocol_with_write_label() -> None:
    # Linux: UPDATING on every DIMM first, then the final label on every DIMM
    lsas = [MemoryLabelStorage.zeroed() for _ in range(2)]
    areas = [initialize(lsa) for lsa in lsas]
    templates = [a.make_template(uuid=U1, rawsize=1 << 24, dpa=0, isetcookie=7, nlabel=2,
                                 position=i) for i, a in enumerate(areas)]
    dimms = list(zip(areas, lsas, templates, strict=True))
    mid = [a.write_label(lsa, t, updating=True) for a, lsa, t in dimms]
    assert all(m.updating for m in mid)
    final = [a.write_label(lsa, t, updating=False) for a, lsa, t in dimms]
    assert [f.position for f in final] == [0, 1] and not any(f.updating for f in final)
    assert all(LabelArea.load(lsa).find(U1) == [f] for lsa, f in zip(lsas, final, strict=True))


def test_write_namespace_label_picks_btt2_on_v12() -> None:
    lsa = MemoryLabelStorage.zeroed()
    initialize(lsa, version="1.2")
    lbl = write_namespace_label(lsa, uuid=U1, rawsize=1 << 24, dpa=0, isetcookie=COOKIE12,
                                lbasize=4096, claim_class="btt")
    assert lbl.abstraction_guid == BTT2_GUID and claim_class_of(lbl) == "btt"


# -- loading what is there -------------------------------------------------------------


def test_blank_area_has_no_labels() -> None:
    area = LabelArea.load(MemoryLabelStorage.zeroed())
    assert not area.valid and area.labels == [] and area.current is None
    assert area.problems == ["index0: bad signature", "index1: bad signature",
                             "no valid index block: the DIMM has no labels"]


def test_too_small_area() -> None:
    area = LabelArea.load(MemoryLabelStorage.zeroed(512))
    assert not area.valid and "cannot hold" in area.problems[0]


def test_corrupt_index_falls_back_to_the_other() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    create(area, lsa)  # index0 (seq 2) current with slot 1, index1 (seq 1) with slot 0
    lsa.data[100] ^= 0x01
    again = LabelArea.load(lsa)
    assert again.index_valid == [False, True] and again.current == 1
    assert "index0: checksum" in again.problems[0]
    # index1 still names the UPDATING label in slot 0
    assert [(lbl.slot, lbl.updating) for lbl in again.labels] == [(0, True)]
    # the next update rewrites index0, making both valid again
    create(again, lsa, rawsize=1 << 20)
    assert again.problems == []
    assert LabelArea.load(lsa) == again and again.index_valid == [True, True]


@pytest.mark.parametrize(("offset", "field"), [(24, "myoff"), (40, "otheroff"),
                                                (48, "labeloff"), (32, "mysize"),
                                                (56, "nslot"), (20, "sequence")])
def test_index_checks(offset: int, field: str) -> None:
    lsa = MemoryLabelStorage.zeroed()
    initialize(lsa)
    block = bytearray(lsa.data[256:512])
    block[offset:offset + 4] = (0x40000 if field != "sequence" else 4).to_bytes(4, "little")
    block[64:72] = IndexBlock.compute_checksum(block).to_bytes(8, "little")
    lsa.data[256:512] = block
    area = LabelArea.load(lsa)
    assert area.index_valid == [True, False]
    assert area.problems[0].startswith(f"index1: {field}")


def test_label_slot_mismatch_and_bad_checksum_are_ignored() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa, version="1.2")
    create(area, lsa, isetcookie=COOKIE12)
    u2 = uuid.uuid4()
    create(area, lsa, u2, dpa=1 << 24, isetcookie=COOKIE12)
    # slot 1 holds U1, slot 2 holds u2 (256-byte labels from 0x200)
    lsa.data[0x200 + 256 + 16] ^= 0x20  # a byte of U1's name: checksum fails
    lsa.data[0x200 + 512 + 120] = 9  # u2's slot field
    again = LabelArea.load(lsa)
    assert again.labels == []
    assert [p.split(":")[0] for p in again.problems] == ["slot 1", "slot 2"]
    assert "checksum" in again.problems[0] and "label says slot 9" in again.problems[1]
    # those slots stay in use (Linux cannot tell whose they are), and so do the problems
    create(again, lsa, uuid.uuid4(), dpa=2 << 24, isetcookie=COOKIE12)
    assert LabelArea.load(lsa) == again and len(again.problems) == 2


def test_probe_finds_v12_and_ignores_mismatched_sizes() -> None:
    lsa = MemoryLabelStorage.zeroed()
    initialize(lsa, version="1.2")
    area = LabelArea.load(lsa)
    assert area.version == "1.2" and area.index_valid == [True, True] and area.problems == []


def test_duplicate_uuid_is_reported() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa)
    create(area, lsa)
    cur = area.current_index
    assert cur is not None
    # forge: mark stale slot 0 (same uuid) in use in index0 too
    block = cur.with_slots(used=[0])
    raw = bytearray(block.pack())
    lsa.data[0:256] = raw
    lsa.data[0x200 + 80] = 0  # clear UPDATING on slot 0
    again = LabelArea.load(lsa)
    assert len(again.find(U1)) == 2
    assert any("second label" in p for p in again.problems)
    # the next update of U1 releases both
    create(again, lsa, rawsize=1 << 20)
    assert len(again.find(U1)) == 1 and again.problems == []
    assert LabelArea.load(lsa) == again


# -- ndctl read-labels -j --------------------------------------------------------------


def test_ndctl_json_of_fresh_area_shows_zero_slot0() -> None:
    lsa = MemoryLabelStorage.zeroed()
    initialize(lsa)
    j = read_labels_json(lsa)
    assert "dev" not in j and [i["seq"] for i in j["index"]] == [3, 2]
    assert j["label"] == [{"uuid": "00000000-0000-0000-0000-000000000000", "name": "",
                           "slot": 0, "position": 0, "nlabel": 0, "flags": "0",
                           "isetcookie": "0", "lbasize": 0, "dpa": "0", "rawsize": 0}]


def test_ndctl_json_v12_prints_guids_raw() -> None:
    lsa = MemoryLabelStorage.zeroed()
    area = initialize(lsa, version="1.2")
    create(area, lsa, isetcookie=COOKIE12, abstraction_guid=BTT2_GUID, rawsize=4 << 20)
    j = area.to_ndctl_json("nmem0")
    assert list(j) == ["dev", "index", "label"]
    last = j["label"][-1]
    assert last["type_guid"] == "79d3f066-f3b4-7440-ac43-0d3318b78cdb"
    assert last["abstraction_guid"] == "fc3b6318-3517-1742-8ac9-17239282d3f8"
    assert last["rawsize"] == 4 << 20  # under 5000 KiB ndctl prints a plain number


# -- stateful: any sequence of creates, resizes and deletes ----------------------------


class LabelMachine(RuleBasedStateMachine):
    """A 2 KiB area (12 v1.1 slots or 6 v1.2 slots) under random updates; after every
    step a fresh load() must agree with the in-memory state and with the model."""

    names = Bundle("names")

    def __init__(self) -> None:
        super().__init__()
        self.lsa = MemoryLabelStorage.zeroed(2 * KiB)
        self.area: LabelArea | None = None
        self.live: dict[uuid.UUID, int] = {}
        self.seq_history: list[int] = []

    @rule(version=st.sampled_from(["1.1", "1.2"]), writer=st.sampled_from(["ndctl", "kernel"]))
    def init(self, version: str, writer: Any) -> None:
        self.area = initialize(self.lsa, version=version, writer=writer)
        self.live.clear()
        self.seq_history = [3]

    def _write(self, uid: uuid.UUID, size: int) -> bool:
        if self.area is None:
            self.area = LabelArea.load(self.lsa)
            if not self.area.valid:
                self.seq_history = [3]
        before = bytes(self.lsa.data)
        needed = 1 if uid in self.live else 2
        if self.area.valid and self.area.nfree < needed:
            with pytest.raises(NoSpace):
                self.area.update_namespace(self.lsa, uuid=uid, rawsize=size, dpa=0,
                                           isetcookie=1)
            assert bytes(self.lsa.data) == before
            return False
        self.area.update_namespace(self.lsa, uuid=uid, rawsize=size, dpa=0, isetcookie=1)
        self.live[uid] = size
        self.seq_history += [next_seq(self.seq_history[-1]), next_seq(next_seq(
            self.seq_history[-1]))]
        return True

    @rule(target=names, size=st.integers(1, 1 << 40))
    def create(self, size: int) -> uuid.UUID:
        uid = uuid.uuid4()
        self._write(uid, size)
        return uid

    @rule(uid=names, size=st.integers(1, 1 << 40))
    def resize(self, uid: uuid.UUID, size: int) -> None:
        if uid in self.live:
            self._write(uid, size)

    @rule(uid=consumes(names))
    def delete(self, uid: uuid.UUID) -> None:
        if self.area is None or uid not in self.live:
            return
        self.area.delete_namespace(self.lsa, uid)
        del self.live[uid]
        self.seq_history.append(next_seq(self.seq_history[-1]))

    @invariant()
    def load_agrees(self) -> None:
        if self.area is None:
            return
        loaded = LabelArea.load(self.lsa)
        assert loaded == self.area
        if not loaded.valid:
            assert not self.live
            return
        assert {lbl.uuid: lbl.rawsize for lbl in loaded.labels} == self.live
        assert all(not lbl.updating for lbl in loaded.labels)
        assert loaded.problems == []
        # the current index carries the newest sequence number, the other the one before
        cur, other = loaded.index[loaded.current or 0], loaded.index[1 - (loaded.current or 0)]
        assert cur.seq == self.seq_history[-1]
        assert next_seq(other.seq) == cur.seq
        assert best_seq(cur.seq, other.seq) == cur.seq


TestLabelMachine = LabelMachine.TestCase
TestLabelMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


# -- golden images ---------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
LABEL_AREA = 128 * KiB


def _layouts() -> dict[str, dict[str, Any]]:
    if not GOLDEN.is_dir():
        return {}
    out = {}
    for p in sorted(GOLDEN.glob("*.layout.json")):
        layout = json.loads(p.read_text())
        if layout.get("index_blocks"):
            out[p.name.removesuffix(".layout.json")] = layout
    return out


LAYOUTS = _layouts()
CASES = sorted(LAYOUTS) or ["(no golden images)"]
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(),
                                  reason=f"golden images not found at {GOLDEN}")


@functools.cache
def golden_label_area(case: str) -> bytes:
    """The last 128 KiB of ``<case>.img.gz``: gzip has to stream through the 256 MiB
    image, but seeking discards output instead of keeping it. Once per case."""
    layout = LAYOUTS[case]
    start, size = int(layout["label_area"]["start"], 16), int(layout["label_area"]["size"], 16)
    assert size == LABEL_AREA
    with gzip.open(GOLDEN / f"{case}.img.gz", "rb") as f:
        f.seek(start)
        data = f.read(size)
    assert len(data) == size
    return data


def golden_read_labels(case: str) -> tuple[str, Any]:
    """The text and parsed JSON ``ndctl read-labels -j`` printed in ``<case>.ndctl.txt``."""
    lines = (GOLDEN / f"{case}.ndctl.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("+ ndctl read-labels -j"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i] == "}")
    text = "\n".join(lines[start + 1:end + 1])
    return text, json.loads(text)


@pytest.mark.golden
@needs_golden
@pytest.mark.parametrize("case", CASES)
def test_golden_load(case: str) -> None:
    layout = LAYOUTS[case]
    area = LabelArea.from_image(golden_label_area(case))
    assert area.problems == []
    assert area.index_valid == [True, True]
    for block, want in zip(area.index, layout["index_blocks"], strict=True):
        assert block.seq == want["seq"]
        assert block.nslot == want["nslot"]
        assert (block.major, block.minor) == (want["major"], want["minor"])
        assert block.checksum == int(want["checksum"], 16)
        assert block.labelsize == want["labelsize_field"]
        assert block.used_slots() == want["used_slots"]
    assert area.label_size == layout["index_blocks"][0]["labelsize"]
    cur_off = int(layout["current_index"], 16) - int(layout["label_area"]["start"], 16)
    assert area.current == cur_off // area.index_size
    got = [(lbl.slot, str(lbl.uuid), lbl.name, lbl.flags, lbl.nlabel, lbl.position,
            lbl.isetcookie, lbl.lbasize, lbl.dpa, lbl.rawsize) for lbl in area.labels]
    want_labels = [(w["slot"], w["uuid"], w["name"], int(w["flags"], 16), w["nlabel"],
                    w["position"], int(w["isetcookie"], 16), w["lbasize"], int(w["dpa"], 16),
                    int(w["rawsize"], 16)) for w in layout["labels"]]
    assert got == want_labels
    for lbl, w in zip(area.labels, layout["labels"], strict=True):
        if "type_guid" in w:
            assert str(lbl.type_guid) == w["type_guid"]
            assert str(lbl.abstraction_guid) == w["abstraction_guid"]
            assert lbl.checksum == int(w["checksum"], 16)


@pytest.mark.golden
@needs_golden
@pytest.mark.parametrize("case", CASES)
def test_golden_ndctl_read_labels(case: str) -> None:
    text, want = golden_read_labels(case)
    got = LabelArea.from_image(golden_label_area(case)).to_ndctl_json("nmem0")
    assert got == want
    # json-c's pretty printer and Python's agree on these documents, byte for byte
    assert json.dumps(got, indent=2, separators=(",", ":")) == text


@pytest.mark.golden
@needs_golden
def test_golden_initialize_reproduces_labels_empty() -> None:
    lsa = MemoryLabelStorage.zeroed(LABEL_AREA)
    initialize(lsa, version="1.1")
    assert bytes(lsa.data) == golden_label_area("labels-empty")


@pytest.mark.golden
@needs_golden
@pytest.mark.parametrize("case", [c for c in CASES if c != "labels-empty"])
def test_golden_replay_reproduces_label_area(case: str) -> None:
    """init-labels, then each namespace of the case in creation order (which is the order
    of their final slots), must give Linux's label area byte for byte: both index
    blocks, the final labels and the stale UPDATING label left in slot 0."""
    layout = LAYOUTS[case]
    version = "1.2" if layout["index_blocks"][0]["minor"] == 2 else "1.1"
    lsa = MemoryLabelStorage.zeroed(LABEL_AREA)
    area = initialize(lsa, version=version)
    for w in sorted(layout["labels"], key=lambda w: w["slot"]):
        kw: dict[str, Any] = {}
        if "abstraction_guid" in w:
            kw = {"type_guid": uuid.UUID(w["type_guid"]),
                  "abstraction_guid": uuid.UUID(w["abstraction_guid"])}
        area.update_namespace(lsa, uuid=uuid.UUID(w["uuid"]), name=w["name"],
                              rawsize=int(w["rawsize"], 16), dpa=int(w["dpa"], 16),
                              lbasize=w["lbasize"], isetcookie=int(w["isetcookie"], 16),
                              nlabel=w["nlabel"], position=w["position"], **kw)
    golden = golden_label_area(case)
    if bytes(lsa.data) != golden:
        diff = [hex(i) for i in range(LABEL_AREA) if lsa.data[i] != golden[i]]
        pytest.fail(f"{len(diff)} bytes differ, first at {diff[:8]}")
