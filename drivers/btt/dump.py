"""A readable dump of a BTT's metadata, straight from the media (no recovery run).

One block per arena: the info block's fields (and whether the backup matches), a
summary of the map and its written entries, and the flog lane by lane with the newest
entry of each pair marked ``*`` and the free block recovery would hand that lane.
The same media gives the same text on every run (here Linux's golden "sector" image,
the parent uuid shortened)::

    namespace0.0: BTT 1.1 at 0x1000: 1 arena, 61116 blocks of 4096 bytes
    arena 0 at 0x1000 (0xefff000 bytes, last)
      info   uuid 24d910a9-4ffe-4266-b91c-46e767dbe318  parent 11111111-2222-3333-...
             flags 0x0  version 1.1  checksum ok  backup same
             external 61116 x 4096  internal 61372 x 4096  nfree 256
             data 0x2000  map 0xefbf000  flog 0xeffb000  info2 0xefff000
      map    61116 entries: 256 normal, 60860 initial (identity), 0 zero, 0 error
             lba         entry       block
             0x0         0xc000eebc  0xeebc normal
             0x1         0xc0000000  0x0 normal
             ... 254 more written entries
      flog   slots (0, 1); 1 of 256 lanes used since the layout was written
             lane slot  lba         old         new         seq
             0    0*    0xff        0xff        0xfe        2   free 0xff
             0    1     0xfe        0xfe        0xfd        1
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from drivers.btt.format import (
    INFO_SIZE,
    LOG_GRP_SIZE,
    MAP_ENT_SIZE,
    V1_1,
    V2_0,
    ArenaGeometry,
    InfoBlock,
    info_checksum,
    info_is_valid,
    log_indices,
    log_old_slot,
    map_entries,
    unpack_groups,
)
from nvdimm.errors import CorruptMetadata


def _state(raw: int) -> str:
    return ("initial", "error", "zero", "normal")[raw >> 30]


def dump_btt(io: Any, *, dev: str, size: int, parent_uuid: uuidlib.UUID | None,
             map_limit: int = 16, all_lanes: bool = False) -> str:
    """The metadata of the BTT on ``io`` (namespace bytes, ``size`` of them)."""
    start = None
    for v in (V1_1, V2_0):
        if size >= v.initial_offset + INFO_SIZE and info_is_valid(
                io.read(v.initial_offset, INFO_SIZE), parent_uuid):
            start = v
            break
    if start is None:
        return f"{dev}: no valid BTT info block at 0x1000 (BTT 1.1) or 0 (BTT 2.0)"
    out: list[str] = []
    arenas: list[tuple[ArenaGeometry, InfoBlock, bytes]] = []
    off, lba = start.initial_offset, 0
    while off + INFO_SIZE <= size:
        raw = io.read(off, INFO_SIZE)
        if not info_is_valid(raw, parent_uuid):
            out.append(f"arena {len(arenas)} at {off:#x}: info block not valid")
            break
        info = InfoBlock.unpack(raw)
        geo = ArenaGeometry.from_info(info, off, lba)
        arenas.append((geo, info, raw))
        lba += geo.external_nlba
        off += geo.size
        if not info.nextoff:
            break
    first = arenas[0][1]
    nblocks = sum(g.external_nlba for g, _, _ in arenas)
    head = (f"{dev}: BTT {start} at {start.initial_offset:#x}: {len(arenas)} "
            f"arena{'s' if len(arenas) != 1 else ''}, {nblocks} blocks of "
            f"{first.external_lbasize} bytes")
    out.insert(0, head)
    for n, (g, info, raw) in enumerate(arenas):
        out += _dump_arena(io, n, g, info, raw, size, map_limit, all_lanes)
    return "\n".join(out)


def _dump_arena(io: Any, n: int, g: ArenaGeometry, info: InfoBlock, raw: bytes, size: int,
                map_limit: int, all_lanes: bool) -> list[str]:
    out = [f"arena {n} at {g.infooff:#x} ({g.size:#x} bytes, "
           f"{'next at +' + hex(info.nextoff) if info.nextoff else 'last'})"]
    csum = "ok" if info.checksum == info_checksum(raw) else "BAD"
    backup = "?"
    if g.info2off + INFO_SIZE <= size:
        backup = "same" if io.read(g.info2off, INFO_SIZE) == raw else "DIFFERS"
    out.append(f"  info   uuid {info.uuid}  parent {info.parent_uuid}")
    out.append(f"         flags {info.flags:#x}  version {info.version}  checksum {csum}  "
               f"backup {backup}")
    out.append(f"         external {g.external_nlba} x {g.external_lbasize}  internal "
               f"{g.internal_nlba} x {g.internal_lbasize}  nfree {g.nfree}")
    out.append(f"         data {g.dataoff:#x}  map {g.mapoff:#x}  flog {g.logoff:#x}  "
               f"info2 {g.info2off:#x}")
    ents = map_entries(io.read(g.mapoff, g.external_nlba * MAP_ENT_SIZE))
    counts = [0, 0, 0, 0]
    for r in ents:
        counts[r >> 30] += 1
    out.append(f"  map    {len(ents)} entries: {counts[3]} normal, {counts[0]} initial "
               f"(identity), {counts[2]} zero, {counts[1]} error")
    written = [(i, r) for i, r in enumerate(ents) if r]
    if written:
        out.append("         lba         entry       block")
        for i, r in written[:map_limit]:
            out.append(f"         {i:<#11x} {r:#010x}  {r & 0x3FFFFFFF:#x} {_state(r)}")
        if len(written) > map_limit:
            out.append(f"         ... {len(written) - map_limit} more written entries")
    groups = unpack_groups(io.read(g.logoff, g.nfree * LOG_GRP_SIZE))
    try:
        idx = log_indices(groups)
    except CorruptMetadata as e:
        out.append(f"  flog   {e.message}")
        return out
    used = [lane for lane, grp in enumerate(groups)
            if all_lanes or grp[idx[0] * 4 + 1] != grp[idx[0] * 4 + 2]
            or any(grp[idx[1] * 4:idx[1] * 4 + 4])]
    out.append(f"  flog   slots {idx}; {len(used)} of {g.nfree} lanes "
               f"{'shown' if all_lanes else 'used since the layout was written'}")
    if used:
        out.append("         lane slot  lba         old         new         seq")
    for lane in used:
        grp = groups[lane]
        s0, s1 = grp[idx[0] * 4 + 3], grp[idx[1] * 4 + 3]
        try:
            new = 1 - log_old_slot(s0, s1)
        except CorruptMetadata:
            new = -1
        for k, slot in enumerate(idx):
            b = slot * 4
            lba, old, nw, seq = grp[b:b + 4]
            mark = "*" if k == new else " "
            tail = f"   free {old & 0x3FFFFFFF:#x}" if k == new else ""
            if new < 0 and k == 1:
                tail = "   CORRUPT: sequence numbers do not order"
            out.append(f"         {lane:<4} {slot}{mark}    {lba:<#11x} {old:<#11x} "
                       f"{nw:<#11x} {seq}{tail}")
    return out
