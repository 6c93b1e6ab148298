"""A DIMM's namespace label storage area: reading it the way Linux does, and updating it
with Linux's protocol, on anything with ``read(off, n)``, ``write(off, data)`` and ``size``.

Nothing is updated in place. A change writes a label into a free slot and then the
*next* index block (sequence number one step on), which becomes current. Creating or
resizing a namespace does that twice per DIMM: first with the UPDATING flag, then
without. A first namespace on a freshly initialised area therefore goes::

    init-labels      index0 seq 3 (current), index1 seq 2; all slots free
    pass 1           slot 0 <- label(flags=UPDATING); index1 seq 1 uses {0}  -> current
    pass 2           slot 1 <- label(flags=0);        index0 seq 2 uses {1}  -> current

and slot 0 keeps its stale UPDATING label, which ``ndctl read-labels`` still prints.

Every operation works out all its writes before issuing the first one, so a refused
request (bad field, no free slot) leaves the area untouched. The layout itself
(offsets, checksums) lives in :mod:`nvdimm.label_format`.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any, Literal, Protocol

import attrs

from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.label_format import (
    BITS_PER_LONG,
    INDEX_HEADER_SIZE,
    LABEL_SIZE_V11,
    LABEL_SIZE_V12,
    LABEL_SIZES,
    NSINDEX_ALIGN,
    NSINDEX_SIGNATURE,
    NSLABEL_NAME_LEN,
    NULL_GUID,
    PMEM_TYPE_GUID,
    ClaimClass,
    IndexBlock,
    LabelFlag,
    NamespaceLabel,
    area_index_size,
    claim_class_guid,
    num_label_slots,
)
from nvdimm.units import human_size

Writer = Literal["ndctl", "kernel"]

_NEXT_SEQ = (0, 2, 3, 1)  # 1 -> 2 -> 3 -> 1; 0 is never valid
_SEQ_MASK = 3
_SLOT_PROBLEM = re.compile(r"slot (\d+):")


class LabelStorage(Protocol):
    """The DIMM's config-data area as the DSM commands expose it."""

    @property
    def size(self) -> int: ...

    def read(self, off: int, n: int) -> bytes: ...

    def write(self, off: int, data: bytes) -> None: ...


@attrs.define(slots=True)
class MemoryLabelStorage:
    """A label area held in memory, for tests and tools. ``log`` records each write
    as ``(offset, length)``."""

    data: bytearray
    log: list[tuple[int, int]] = attrs.Factory(list)

    @classmethod
    def zeroed(cls, size: int = 128 * 1024) -> MemoryLabelStorage:
        return cls(bytearray(size))

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or n < 0 or off + n > len(self.data):
            raise InvalidArgument(f"config read [{off:#x}, +{n:#x}) outside {len(self.data):#x}")
        return bytes(self.data[off:off + n])

    def write(self, off: int, data: bytes) -> None:
        if off < 0 or off + len(data) > len(self.data):
            raise InvalidArgument(f"config write [{off:#x}, +{len(data):#x}) outside "
                                  f"{len(self.data):#x}")
        self.data[off:off + len(data)] = data
        self.log.append((off, len(data)))


def next_seq(seq: int) -> int:
    """The sequence number after ``seq``: 1 -> 2 -> 3 -> 1 (low two bits only)."""
    return _NEXT_SEQ[seq & _SEQ_MASK]


def best_seq(a: int, b: int) -> int:
    """Which of two index sequence numbers is newer (Linux's cyclic rule)."""
    a &= _SEQ_MASK
    b &= _SEQ_MASK
    if a == 0 or a == b:
        return b
    if b == 0:
        return a
    return b if next_seq(a) == b else a


def _index_problem(block: IndexBlock, raw: bytes | bytearray, i: int, isz: int, ls: int,
                   config_size: int) -> str | None:
    """Why Linux would reject index ``i`` when probing label size ``ls``; None if valid.
    The checks run in Linux's order, so the reason is the one Linux would log."""
    if block.sig != NSINDEX_SIGNATURE:
        return "bad signature"
    if block.label_size != ls:
        return f"implies {block.label_size}-byte labels"
    computed = IndexBlock.compute_checksum(raw)
    if computed != block.checksum:
        return f"checksum {block.checksum:#x} != computed {computed:#x}"
    if block.seq & _SEQ_MASK == 0:
        return f"sequence {block.seq:#x} invalid"
    if block.myoff != i * isz:
        return f"myoff {block.myoff:#x} != {i * isz:#x}"
    if block.otheroff != (1 - i) * isz:
        return f"otheroff {block.otheroff:#x} != {(1 - i) * isz:#x}"
    if block.labeloff != 2 * isz:
        return f"labeloff {block.labeloff:#x} != {2 * isz:#x}"
    if not INDEX_HEADER_SIZE <= block.mysize <= isz:
        return f"mysize {block.mysize} outside [{INDEX_HEADER_SIZE}, {isz}]"
    if block.nslot * ls + 2 * isz > config_size:
        return f"nslot {block.nslot} does not fit in {config_size} bytes"
    return None


def _ndctl_hex(v: int) -> str:
    # printf("%#llx"): no 0x prefix for zero
    return hex(v) if v else "0"


def _ndctl_size(v: int) -> int | str:
    # ndctl prints sizes below 5000 KiB as plain numbers even in human mode
    return v if v < 5000 * 1024 else human_size(v)


def claim_class_of(label: NamespaceLabel) -> str:
    """The personality a label reserves its namespace for: "none", "btt", "pfn", "dax"
    or "unknown" (both BTT layouts are "btt"; v1.1 labels are always "none")."""
    cls = label.claim_class
    return "btt" if cls is ClaimClass.BTT2 else cls.value


@attrs.define(slots=True)
class LabelArea:
    """What Linux makes of one DIMM's label area.

    ``index`` holds both index blocks as parsed at the chosen label size and
    ``index_valid`` which of them pass Linux's checks; ``current`` is the index in
    force (None: no valid index, the DIMM is label-less). ``labels`` are the valid
    labels the current index marks in use, by slot. ``problems`` says, in words,
    everything Linux would have ignored or rejected. ``image`` mirrors the bytes of
    the area as last read or written (``ndctl read-labels`` prints from it).
    """

    config_size: int
    label_size: int = LABEL_SIZE_V12
    index_size: int = 0
    index: list[IndexBlock] = attrs.Factory(list)
    index_valid: list[bool] = attrs.Factory(list)
    current: int | None = None
    labels: list[NamespaceLabel] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)
    image: bytearray = attrs.field(factory=bytearray, repr=False, eq=False)

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def load(cls, lsa: LabelStorage) -> LabelArea:
        """Read the whole area and interpret it as Linux does at DIMM probe."""
        return cls.from_image(lsa.read(0, lsa.size))

    @classmethod
    def from_image(cls, data: bytes | bytearray) -> LabelArea:
        """Interpret area bytes already in hand (no I/O)."""
        image = bytearray(data)
        size = len(image)
        # Probe 128-byte labels, then 256 (Linux's order); the first size under which
        # some index validates wins. With none, Linux is left assuming 256.
        attempts: list[tuple[int, int, list[IndexBlock], list[str | None]]] = []
        for ls in LABEL_SIZES:
            isz = area_index_size(size, ls)
            if isz is None:
                continue
            raws = [image[i * isz:(i + 1) * isz] for i in (0, 1)]
            blocks = [IndexBlock.unpack(r) for r in raws]
            why = [_index_problem(blocks[i], raws[i], i, isz, ls, size) for i in (0, 1)]
            attempts.append((ls, isz, blocks, why))
            if None in why:
                return cls._with_index(image, ls, isz, blocks, why)
        area = cls(size, image=image)
        if not attempts:
            area.problems.append(f"label area of {size} bytes cannot hold two index blocks "
                                 "and two labels")
            return area
        ls, isz, blocks, why = attempts[-1]
        area.label_size, area.index_size, area.index = ls, isz, blocks
        area.index_valid = [False, False]
        for i in (0, 1):
            # Report each block's failure under the label size it claims, if probed.
            reasons = [a[3][i] for a in attempts if a[2][i].label_size == a[0]]
            area.problems.append(f"index{i}: {(reasons or [why[i]])[0]}")
        area.problems.append("no valid index block: the DIMM has no labels")
        return area

    @classmethod
    def _with_index(cls, image: bytearray, ls: int, isz: int, blocks: list[IndexBlock],
                    why: list[str | None]) -> LabelArea:
        valid = [w is None for w in why]
        area = cls(len(image), label_size=ls, index_size=isz, index=blocks,
                   index_valid=valid, image=image)
        for i in (0, 1):
            if not valid[i]:
                area.problems.append(f"index{i}: {why[i]}")
        if all(valid):
            win = best_seq(blocks[0].seq, blocks[1].seq)
            area.current = 1 if win == blocks[1].seq & _SEQ_MASK else 0
        else:
            area.current = valid.index(True)
        cur = blocks[area.current]
        seen: dict[uuidlib.UUID, int] = {}
        for slot in cur.used_slots():
            raw = image[area.label_offset(slot):area.label_offset(slot) + ls]
            lbl = NamespaceLabel.unpack(raw, ls)
            if lbl.slot != slot:
                area.problems.append(f"slot {slot}: label says slot {lbl.slot}; ignored")
                continue
            if not NamespaceLabel.checksum_ok(raw, ls):
                area.problems.append(f"slot {slot}: checksum {lbl.checksum:#x} != computed "
                                     f"{NamespaceLabel.compute_checksum(raw):#x}; ignored")
                continue
            if lbl.uuid in seen:
                area.problems.append(f"slot {slot}: second label for {lbl.uuid} "
                                     f"(also in slot {seen[lbl.uuid]})")
            seen.setdefault(lbl.uuid, slot)
            area.labels.append(lbl)
        return area

    # -- derived views -----------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """True when some index block is valid, i.e. the DIMM has labels."""
        return self.current is not None

    @property
    def version(self) -> str:
        return "1.1" if self.label_size == LABEL_SIZE_V11 else "1.2"

    @property
    def current_index(self) -> IndexBlock | None:
        return None if self.current is None else self.index[self.current]

    @property
    def next(self) -> int | None:
        """Number of the index block the next update writes."""
        return None if self.current is None else 1 - self.current

    @property
    def nslot(self) -> int:
        cur = self.current_index
        return cur.nslot if cur else num_label_slots(self.config_size, self.label_size)

    @property
    def nfree(self) -> int:
        """Free slots in the current index (0 without one)."""
        cur = self.current_index
        return 0 if cur is None else cur.nslot - len(cur.used_slots())

    def label_offset(self, slot: int) -> int:
        """Byte offset of a slot: labels start right after the two index blocks."""
        return 2 * self.index_size + slot * self.label_size

    def find(self, uuid: uuidlib.UUID) -> list[NamespaceLabel]:
        return [lbl for lbl in self.labels if lbl.uuid == uuid]

    def namespaces(self) -> dict[uuidlib.UUID, list[NamespaceLabel]]:
        out: dict[uuidlib.UUID, list[NamespaceLabel]] = {}
        for lbl in self.labels:
            out.setdefault(lbl.uuid, []).append(lbl)
        return out

    # -- writing -----------------------------------------------------------------------

    @classmethod
    def initialize(cls, lsa: LabelStorage, version: str = "1.1",
                   writer: Writer = "ndctl") -> LabelArea:
        """Write both index blocks, index0 seq 3 then index1 seq 2, every slot free.

        ``writer="ndctl"`` is ``ndctl init-labels``: it sets the bitmap a whole 64-bit
        word at a time, so bits past ``nslot`` come out set (slots 1020-1023 on a
        128 KiB v1.1 area). ``writer="kernel"`` is the kernel initialising an area
        it found empty: it clears those bits. Either way the other bytes of each
        block are kept as read, and label slots are left alone.
        """
        if version not in ("1.1", "1.2"):
            raise InvalidArgument(f"label version must be 1.1 or 1.2, not {version!r}")
        area = cls.load(lsa)
        ls = LABEL_SIZE_V11 if version == "1.1" else LABEL_SIZE_V12
        writes, staged = area._stage_init(ls, writer)
        area._commit(lsa, writes, staged)
        return area

    def update_namespace(self, lsa: LabelStorage, *, uuid: uuidlib.UUID, rawsize: int,
                         dpa: int, isetcookie: int, name: str = "", lbasize: int = 512,
                         nlabel: int = 1, position: int = 0, flags: int = 0,
                         type_guid: uuidlib.UUID = PMEM_TYPE_GUID,
                         abstraction_guid: uuidlib.UUID = NULL_GUID) -> NamespaceLabel:
        """Create or change this DIMM's label of a namespace: both passes of Linux's
        protocol (UPDATING, then final), each a label write then a next-index write.

        Any older label with the same uuid is released in the first pass. A DIMM with
        no valid index is first initialised as the kernel does (at the label size it
        was left assuming, 256 bytes). GUIDs are dropped on 128-byte labels. Returns
        the final label. Raises InvalidArgument or NoSpace before writing anything.
        """
        template = self.make_template(uuid=uuid, rawsize=rawsize, dpa=dpa,
                                      isetcookie=isetcookie, name=name, lbasize=lbasize,
                                      nlabel=nlabel, position=position, flags=flags,
                                      type_guid=type_guid, abstraction_guid=abstraction_guid)
        stages: list[tuple[list[tuple[int, bytes]], LabelArea]] = []
        area = self
        if not area.valid:
            stages.append(area._stage_init(self.label_size, "kernel"))
            area = stages[-1][1]
        for updating in (True, False):
            stages.append(area._stage_pass(template, updating=updating))
            area = stages[-1][1]
        for writes, staged in stages:
            self._commit(lsa, writes, staged)
        return self.find(uuid)[-1]

    def write_label(self, lsa: LabelStorage, template: NamespaceLabel, *,
                    updating: bool) -> NamespaceLabel:
        """One pass of the protocol on this DIMM, for callers driving several DIMMs
        (Linux runs the UPDATING pass on every DIMM before any final pass).
        ``template`` comes from :meth:`make_template`; its slot is ignored."""
        if not self.valid:
            raise InvalidArgument("no valid index block: initialise the label area first")
        self._check_template(template)
        writes, staged = self._stage_pass(template, updating=updating)
        self._commit(lsa, writes, staged)
        return self.find(template.uuid)[-1]

    def delete_namespace(self, lsa: LabelStorage, uuid: uuidlib.UUID) -> list[int]:
        """Release every slot holding a label of ``uuid`` by writing the next index.
        Returns the freed slots. The label bytes stay where they were."""
        cur = self.current_index
        if cur is None or self.current is None:
            raise InvalidArgument("no valid index block: there are no labels to delete")
        victims = [lbl.slot for lbl in self.find(uuid)]
        if not victims:
            raise InvalidArgument(f"no label for namespace {uuid} on this DIMM")
        block, packed = self._next_block(cur, freed=victims)
        staged = attrs.evolve(self, index=self._replace_index(block), index_valid=[True, True],
                              current=1 - self.current,
                              labels=[lbl for lbl in self.labels if lbl.uuid != uuid])
        self._commit(lsa, [(block.myoff, packed)], staged)
        return victims

    def make_template(self, *, uuid: uuidlib.UUID, rawsize: int, dpa: int, isetcookie: int,
                      name: str = "", lbasize: int = 512, nlabel: int = 1, position: int = 0,
                      flags: int = 0, type_guid: uuidlib.UUID = PMEM_TYPE_GUID,
                      abstraction_guid: uuidlib.UUID = NULL_GUID) -> NamespaceLabel:
        """A validated label (slot 0) ready for :meth:`write_label`."""
        if self.label_size == LABEL_SIZE_V11:
            type_guid = abstraction_guid = NULL_GUID  # 128-byte labels have no room
        template = NamespaceLabel(uuid=uuid, name=name, flags=flags, nlabel=nlabel,
                                  position=position, isetcookie=isetcookie, lbasize=lbasize,
                                  dpa=dpa, rawsize=rawsize, type_guid=type_guid,
                                  abstraction_guid=abstraction_guid)
        self._check_template(template)
        return template

    def _check_template(self, t: NamespaceLabel) -> None:
        if t.uuid.int == 0:
            raise InvalidArgument("a namespace label needs a non-zero uuid")
        if t.flags & LabelFlag.UPDATING:
            raise InvalidArgument("the UPDATING flag is the protocol's to set, not the caller's")
        if t.rawsize <= 0:
            raise InvalidArgument(f"rawsize must be positive, not {t.rawsize} "
                                  "(use delete_namespace to remove a namespace)")
        if not 0 <= t.position < t.nlabel:
            raise InvalidArgument(f"position {t.position} outside an interleave set of "
                                  f"{t.nlabel}")
        if len(t.encoded_name()) >= NSLABEL_NAME_LEN:
            raise InvalidArgument(f"name must be under {NSLABEL_NAME_LEN} bytes: {t.name!r}")
        t.pack(self.label_size)  # every field fits its width

    # -- staging: work out writes and the resulting state, touching nothing ------------

    def _stage_init(self, ls: int, writer: Writer) -> tuple[list[tuple[int, bytes]], LabelArea]:
        isz = area_index_size(self.config_size, ls)
        if isz is None:
            raise InvalidArgument(f"label area of {self.config_size} bytes is too small for "
                                  f"{ls}-byte labels")
        nslot = num_label_slots(self.config_size, ls)
        span = -(-nslot // BITS_PER_LONG) * BITS_PER_LONG
        ones = min(span // 8, isz - INDEX_HEADER_SIZE)
        writes: list[tuple[int, bytes]] = []
        blocks: list[IndexBlock] = []
        for i in (0, 1):
            old = bytes(self.image[i * isz:(i + 1) * isz]).ljust(isz, b"\0")
            bits = bytearray(old[INDEX_HEADER_SIZE:])
            bits[:ones] = b"\xff" * ones
            block = IndexBlock(seq=3 - i, myoff=i * isz, mysize=isz, otheroff=(1 - i) * isz,
                               labeloff=2 * isz, nslot=nslot,
                               minor=1 if ls < LABEL_SIZE_V12 else 2, free=bytes(bits),
                               labelsize=ls >> 8)
            if writer == "kernel":
                block = block.with_slots(used=range(nslot, min(span, 8 * len(bits))))
            packed = block.pack()
            writes.append((i * isz, packed))
            blocks.append(IndexBlock.unpack(packed))
        staged = attrs.evolve(self, label_size=ls, index_size=isz, index=blocks,
                              index_valid=[True, True], current=0, labels=[], problems=[])
        return writes, staged

    def _stage_pass(self, template: NamespaceLabel, *,
                    updating: bool) -> tuple[list[tuple[int, bytes]], LabelArea]:
        cur = self.current_index
        assert cur is not None and self.current is not None
        slot = cur.first_free()
        if slot is None:
            raise NoSpace(f"no free label slot: all {cur.nslot} are in use")
        flags = template.flags | (LabelFlag.UPDATING if updating else 0)
        packed_label = attrs.evolve(template, slot=slot, flags=int(flags)).pack(self.label_size)
        label = NamespaceLabel.unpack(packed_label, self.label_size)
        victims = self.find(template.uuid)
        block, packed = self._next_block(cur, used=[slot], freed=[v.slot for v in victims])
        keep = [lbl for lbl in self.labels if lbl.uuid != template.uuid]
        # Both blocks are valid from here on: the one just written, and the old current.
        staged = attrs.evolve(self, index=self._replace_index(block), index_valid=[True, True],
                              current=1 - self.current,
                              labels=sorted([*keep, label], key=lambda lbl: lbl.slot))
        return [(self.label_offset(slot), packed_label), (block.myoff, packed)], staged

    def _next_block(self, cur: IndexBlock, *, used: list[int] | None = None,
                    freed: list[int] | None = None) -> tuple[IndexBlock, bytes]:
        """The next index: the current one's bitmap (and trailing bytes) with the given
        changes, header rewritten, sequence one step on."""
        assert self.current is not None
        nxt = 1 - self.current
        isz, ls = self.index_size, self.label_size
        block = attrs.evolve(cur.with_slots(used=used or (), freed=freed or ()),
                             sig=NSINDEX_SIGNATURE, flags=0, labelsize=ls >> 8,
                             seq=next_seq(cur.seq), myoff=nxt * isz, mysize=isz,
                             otheroff=self.current * isz, labeloff=2 * isz, major=1,
                             minor=1 if ls < LABEL_SIZE_V12 else 2)
        packed = block.pack()
        return IndexBlock.unpack(packed), packed

    def _replace_index(self, block: IndexBlock) -> list[IndexBlock]:
        blocks = list(self.index)
        blocks[block.myoff // self.index_size] = block
        return blocks

    def _commit(self, lsa: LabelStorage, writes: list[tuple[int, bytes]],
                staged: LabelArea) -> None:
        """Issue the writes in order, then adopt the staged state. If a write fails the
        in-memory state is stale: load() again."""
        for off, data in writes:
            lsa.write(off, data)
            self.image[off:off + len(data)] = data
        for a in ("label_size", "index_size", "index", "index_valid", "current", "labels"):
            setattr(self, a, getattr(staged, a))
        # After any write both index blocks are valid; a bad label is still worth
        # mentioning while the current index keeps its slot in use.
        cur = self.current_index
        self.problems = [p for p in staged.problems
                         if (m := _SLOT_PROBLEM.match(p)) and cur and not cur.is_free(int(m[1]))]

    # -- ndctl read-labels -j ----------------------------------------------------------

    def to_ndctl_json(self, dev: str | None = None) -> dict[str, Any]:
        """What ``ndctl read-labels -j -u`` prints for this area.

        ndctl parses loosely: index blocks at 0 and 256 whatever the index size, label
        size 256 only if more blocks say v1.2 than v1.1, labels from byte 512, and
        *every* slot whose slot field matches its position, in use or not (so stale
        UPDATING labels and an all-zero slot 0 show up). v1.2 GUIDs are printed in raw
        byte order.
        """
        img = self.image
        out: dict[str, Any] = {} if dev is None else {"dev": dev}
        index: list[dict[str, Any]] = []
        v11 = v12 = 0
        for off in (0, NSINDEX_ALIGN):
            if off + INDEX_HEADER_SIZE > len(img):
                break
            b = IndexBlock.unpack(img[off:off + INDEX_HEADER_SIZE])
            index.append({"signature": b.sig[:15].split(b"\0", 1)[0].decode("ascii", "replace"),
                          "major": b.major, "minor": b.minor, "labelsize": 1 << (7 + b.labelsize),
                          "seq": b.seq, "nslot": b.nslot})
            if b.major == 1:
                v11 += b.minor == 1
                v12 += b.minor == 2
        out["index"] = index
        ls = LABEL_SIZE_V12 if v12 > v11 else LABEL_SIZE_V11
        labels: list[dict[str, Any]] = []
        for slot, off in enumerate(range(2 * NSINDEX_ALIGN, len(img) - ls + 1, ls)):
            lbl = NamespaceLabel.unpack(img[off:off + ls], ls)
            if lbl.slot != slot:
                continue
            name = lbl.name.encode("utf-8", "surrogateescape")[:NSLABEL_NAME_LEN - 1]
            j: dict[str, Any] = {
                "uuid": str(lbl.uuid), "name": name.decode("utf-8", "replace"), "slot": lbl.slot,
                "position": lbl.position, "nlabel": lbl.nlabel, "flags": _ndctl_hex(lbl.flags),
                "isetcookie": _ndctl_hex(lbl.isetcookie), "lbasize": lbl.lbasize,
                "dpa": _ndctl_hex(lbl.dpa), "rawsize": _ndctl_size(lbl.rawsize),
            }
            if ls >= LABEL_SIZE_V12:
                j["type_guid"] = str(uuidlib.UUID(bytes=lbl.type_guid.bytes_le))
                j["abstraction_guid"] = str(uuidlib.UUID(bytes=lbl.abstraction_guid.bytes_le))
            labels.append(j)
        out["label"] = labels
        return out


# -- one-call conveniences for the bus -------------------------------------------------


def initialize(lsa: LabelStorage, version: str = "1.1", writer: Writer = "ndctl") -> LabelArea:
    """``ndctl init-labels [-V version]`` on one DIMM (see :meth:`LabelArea.initialize`)."""
    return LabelArea.initialize(lsa, version, writer)


def write_namespace_label(lsa: LabelStorage, *, uuid: uuidlib.UUID, rawsize: int, dpa: int,
                          isetcookie: int, name: str = "", lbasize: int = 512, nlabel: int = 1,
                          position: int = 0,
                          claim_class: ClaimClass | str = "none") -> NamespaceLabel:
    """Load the area and run both update passes for one DIMM's label of a namespace.
    ``claim_class`` ("none", "btt", "pfn", "dax") becomes the v1.2 abstraction GUID."""
    area = LabelArea.load(lsa)
    return area.update_namespace(lsa, uuid=uuid, rawsize=rawsize, dpa=dpa,
                                 isetcookie=isetcookie, name=name, lbasize=lbasize,
                                 nlabel=nlabel, position=position,
                                 abstraction_guid=claim_class_guid(claim_class, area.version))


def delete_namespace_label(lsa: LabelStorage, uuid: uuidlib.UUID) -> list[int]:
    """Load the area and release this DIMM's labels of ``uuid``."""
    return LabelArea.load(lsa).delete_namespace(lsa, uuid)


def read_labels_json(lsa: LabelStorage) -> dict[str, Any]:
    """``ndctl read-labels -j -u`` for one DIMM, without the "dev" key."""
    return LabelArea.load(lsa).to_ndctl_json()
