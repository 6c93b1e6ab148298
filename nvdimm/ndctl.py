"""The admin tool: ndctl's verbs over a :class:`~nvdimm.machine.Machine`, returning the
JSON ndctl would print (same keys, same shapes), for the CLI and for scripts.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from nvdimm import label as labelmod
from nvdimm.errors import InvalidArgument
from nvdimm.machine import Machine
from nvdimm.namespace import Namespace
from nvdimm.units import SECTOR_SIZE, human_size, json_size, parse_size

JSON = Any


def _one_or_list(items: list[Any]) -> Any:
    # ndctl prints a lone object without the enclosing array.
    return items[0] if len(items) == 1 else items


_GOLDEN_RATIO_64 = 0x61C8864680B583EB
_U64 = (1 << 64) - 1
_INT_MAX = 0x7FFFFFFF


def kernfs_hash(name: str) -> int:
    """Linux's ``kernfs_name_hash`` (fs/kernfs/dir.c, 64-bit): a sysfs directory is read
    back sorted by this hash, then by name."""
    h = 0
    for c in name.encode():
        h = ((h + (c << 4) + (c >> 4)) * 11) & _U64  # partial_name_hash
    h = ((h * _GOLDEN_RATIO_64) & _U64) >> 32  # end_name_hash: hash_long(h, 32)
    h &= _INT_MAX
    if h < 2:
        h += 2
    return min(h, _INT_MAX - 1)


def _namespaces(machine: Machine, region: Any, include_idle: bool) -> list[Namespace]:
    # libndctl reads the region's sysfs directory (kernfs order: name hash, then name) and
    # prepends each namespace it finds, so ndctl lists them in the reverse of that order:
    # namespace0.2, 0.1, 0.0 for three, but 0.2, 0.1, 0.3, 0.0 for four.
    ordered = sorted(region.namespaces, key=lambda ns: (kernfs_hash(ns.dev), ns.dev),
                     reverse=True)
    return [ns for ns in ordered if ns.enabled or include_idle]


def namespace_json(ns: Namespace, *, verbose: bool = False, media_errors: bool = False,
                   human: bool = False, daxregion: bool | None = None) -> dict[str, Any]:
    """One namespace as ndctl prints it. A device-dax namespace shows its ``daxregion``
    object (with ``-v``, and in create-namespace's output: ``daxregion=True``) or, in a
    plain listing, only its ``chardev`` in the same place."""
    out = ns.to_json(verbose=verbose)
    if not verbose:
        out.pop("raw_uuid", None)
    size = out.get("size")
    if human and isinstance(size, int):
        out["size"] = json_size(size)
    dax = out.get("daxregion")
    if isinstance(dax, dict) and not (verbose if daxregion is None else daxregion):
        chardev = dax["devices"][0]["chardev"] if dax.get("devices") else None
        out = {("chardev" if k == "daxregion" else k): (chardev if k == "daxregion" else v)
               for k, v in out.items()}
    elif human and isinstance(dax, dict):  # device-dax: the region and its devices too
        dax["size"] = json_size(dax["size"])
        for d in dax.get("devices", []):
            d["size"] = json_size(d["size"])
    # ndctl prints badblock_count whenever it is non-zero, the list itself only with -M.
    bb = getattr(ns.device, "badblocks_json", None)
    bbs = bb() if bb is not None else []
    if bbs:
        out["badblock_count"] = sum(b["length"] for b in bbs)
        if media_errors:
            out["badblocks"] = bbs
    return out


def list_(machine: Machine, *, dimms: bool = False, regions: bool = False,
          namespaces: bool = False, verbose: bool = False, idle: bool = False,
          media_errors: bool = False, region: str | None = None,
          namespace: str | None = None) -> JSON:
    """ndctl list [-D] [-R] [-N] [-v] [-i] [-M] [-r REGION] [-n NAMESPACE].

    The shape is ndctl 76's (``ndctl/list.c``): each kind of object listed goes in an
    array; when more than one kind is non-empty they are keys of one object (regions
    carry their namespaces); a single kind is printed as the bare array, even with one
    element (only ``-u``, which this does not model, unwraps it). An empty listing is
    ``None``: ndctl prints nothing at all. ``-v`` implies ``-N`` and ``-M``; with no kind
    asked for, ``-r`` lists regions and otherwise namespaces are listed. Per-DIMM
    ``mappings`` appear in regions only when DIMMs are listed too.
    """
    bus = machine.bus
    if not (dimms or regions or namespaces):
        regions = region is not None
    if verbose:
        namespaces = media_errors = True
    if not (dimms or regions or namespaces):
        namespaces = True
    regs = [bus.region(region)] if region else bus.regions
    ns_filter = (lambda ns: ns.dev == namespace) if namespace else (lambda ns: True)

    def ns_list(r: Any) -> list[dict[str, Any]]:
        if not namespaces:
            return []
        return [namespace_json(ns, verbose=verbose, media_errors=media_errors)
                for ns in _namespaces(machine, r, idle) if ns_filter(ns)]

    jdimms = [d.to_json() for d in bus.dimms] if dimms else []
    jregions: list[dict[str, Any]] = []
    jnamespaces: list[dict[str, Any]] = []
    for r in regs:
        if not regions:
            jnamespaces += ns_list(r)
            continue
        if not (r.enabled or idle):
            continue
        rj = r.to_json(verbose=verbose, mappings=dimms)
        # ndctl starts a new namespace array per region: only the last region's counts
        # when deciding between the bare array and the object below.
        jnamespaces = ns_list(r)
        if jnamespaces:
            rj["namespaces"] = jnamespaces
        jregions.append(rj)
    kinds = [("dimms", jdimms), ("regions", jregions), ("namespaces", jnamespaces)]
    present = [(k, v) for k, v in kinds if v]
    if len(present) > 1:
        return {k: v for k, v in present if not (k == "namespaces" and jregions)}
    if present:
        return present[0][1]
    return None


def create_namespace(machine: Machine, *, region: str | None = None, mode: str = "fsdax",
                     size: str | int | None = None, name: str = "", uuid: str | None = None,
                     sector_size: int | None = None, map: str | None = None,
                     align: str | int | None = None, reconfig: str | None = None,
                     force: bool = False) -> JSON:
    """ndctl create-namespace; returns the new namespace as ndctl prints it. With
    ``reconfig`` (ndctl's ``-e``), gives that existing namespace the new mode in place
    (``force`` when it is active)."""
    personality: dict[str, Any] = {}
    if map is not None:
        if map not in ("mem", "dev"):
            raise InvalidArgument(f"--map must be 'mem' or 'dev', not {map!r}")
        personality["map"] = map
    if align is not None:
        personality["align"] = parse_size(align)
    if mode in ("raw", "sector") and personality:
        raise InvalidArgument(f"--map and --align apply to fsdax and devdax, not {mode}")
    if reconfig is not None:
        if size is not None or uuid is not None or region is not None:
            raise InvalidArgument("--reconfig keeps the namespace's region, size and uuid; "
                                  "destroy and create it to change those")
        ns = machine.bus.reconfigure_namespace(reconfig, mode=mode, force=force,
                                               sector_size=sector_size,
                                               name=name or None, **personality)
        return namespace_json(ns, human=True, daxregion=True)
    try:
        uid = uuidlib.UUID(uuid) if uuid else None
    except ValueError:
        raise InvalidArgument(f"not a uuid: {uuid!r}") from None
    ns = machine.bus.create_namespace(
        region=region, mode=mode, size=parse_size(size) if size is not None else None,
        name=name, uuid=uid, sector_size=sector_size, **personality)
    return namespace_json(ns, human=True, daxregion=True)


def destroy_namespace(machine: Machine, dev: str, *, force: bool = False) -> str:
    machine.bus.destroy_namespace(dev, force=force)
    return "destroyed 1 namespace"


def enable_namespace(machine: Machine, dev: str) -> str:
    machine.bus.enable_namespace(dev)
    return "enabled 1 namespace"


def disable_namespace(machine: Machine, dev: str) -> str:
    machine.bus.disable_namespace(dev)
    return "disabled 1 namespace"


def _dimm_names(machine: Machine, dimm: str) -> list[str]:
    return [d.dev for d in machine.bus.dimms] if dimm == "all" else [dimm]


def init_labels(machine: Machine, dimm: str = "all", *, version: str = "1.1",
                force: bool = False) -> str:
    """ndctl init-labels; like ndctl, the regions on those DIMMs must be disabled first.
    ``disable_regions=True`` in the CLI does disable/enable around it for convenience."""
    names = _dimm_names(machine, dimm)
    for n in names:  # validate every DIMM before writing any
        d = machine.bus.dimm(n)
        if not d.has_label_area:
            raise InvalidArgument(f"{d.dev} has no label area")
    for n in names:
        machine.bus.init_labels(n, version=version, force=force)
    return f"initialized {len(names)} nmem"


def read_labels(machine: Machine, dimm: str = "all") -> JSON:
    out = []
    for n in _dimm_names(machine, dimm):
        d = machine.bus.dimm(n)
        if not d.has_label_area:
            continue
        j = labelmod.read_labels_json(d.label_storage())
        out.append({"dev": d.dev, **j})
    if not out:
        return None  # ndctl prints no JSON, only "read 0 nmem"
    return _one_or_list(out)


def inject_error(machine: Machine, dev: str, *, block: int, count: int = 1,
                 notify: bool = True) -> JSON:
    """ndctl inject-error: poison ``count`` 512-byte blocks at ``block`` of a namespace."""
    ns = machine.bus.namespace(dev)
    if block < 0 or count <= 0:
        raise InvalidArgument("--block must be >= 0 and --count > 0")
    if (block + count) * SECTOR_SIZE > ns.size:
        raise InvalidArgument(f"blocks [{block}, {block + count}) are beyond {ns.dev}'s "
                              f"{ns.size // SECTOR_SIZE} blocks")
    spa = ns.spa + block * SECTOR_SIZE
    machine.platform.inject_error(spa, count * SECTOR_SIZE)
    if notify:
        machine.bus.add_badrange(spa, count * SECTOR_SIZE)
    return {"dev": ns.dev, "block": block, "count": count, "notified": notify}


def start_scrub(machine: Machine) -> JSON:
    found = machine.bus.scrub()
    return {"scrubbed": [r.dev for r in machine.bus.regions], "records": found}


def _block_span(bdev: Any, offset: int, length: int) -> tuple[int, int]:
    if offset < 0 or length < 0 or offset + length > bdev.size:
        raise InvalidArgument(f"{bdev.name}: [{offset}, {offset + length}) is outside its "
                              f"{bdev.size} bytes")
    lbs = bdev.logical_block_size
    start = offset - offset % lbs
    end = -(-(offset + length) // lbs) * lbs
    return start, end


def read_block_device(machine: Machine, dev: str, offset: int, length: int) -> bytes:
    """Read any byte range: whole blocks are read and the range is cut out of them."""
    bdev = machine.block_device(dev)
    if length == 0:
        return b""
    start, end = _block_span(bdev, offset, length)
    data = bdev.read(start, end - start)
    return bytes(data[offset - start:offset - start + length])


def write_block_device(machine: Machine, dev: str, offset: int, data: bytes, *,
                       fua: bool = False, sync: bool = False) -> int:
    """Write any byte range. Partial blocks are read, patched and written back whole,
    as a buffered write through the page cache would (the block device itself only
    takes whole blocks)."""
    bdev = machine.block_device(dev)
    start, end = _block_span(bdev, offset, len(data))
    if (start, end) != (offset, offset + len(data)):
        buf = bytearray(bdev.read(start, end - start))
        buf[offset - start:offset - start + len(data)] = data
        data = bytes(buf)
    bdev.write(start, data, fua=fua)
    if sync:
        bdev.flush()
    return end - start


def check_namespace(machine: Machine, dev: str, *, repair: bool = False,
                    verbose: bool = False, force: bool = False) -> str:
    """ndctl check-namespace [--repair] [-v] [-f]: check a sector namespace's BTT offline.

    Returns what ndctl prints (its log lines, then ``checked 1 namespace``); a failed
    check raises :class:`~nvdimm.errors.CorruptMetadata` carrying the same text, ending
    as ndctl's does. An active namespace is refused unless ``force`` (it is disabled
    for the check and enabled again afterwards, which runs recovery).
    """
    from drivers.btt.check import check_namespace as check
    from drivers.btt.check import strerror
    from nvdimm.errors import Busy, CorruptMetadata

    ns = machine.bus.namespace(dev)
    was_enabled = ns.enabled
    if was_enabled and not force:
        raise Busy(f"{ns.dev}: namespace_check: {ns.dev}: check aborted, namespace online\n"
                   "error checking namespaces: Device or resource busy\nchecked 0 namespaces")
    if was_enabled:
        machine.bus.disable_namespace(ns.dev)
    try:
        result = check(ns, repair=repair)
    finally:
        if was_enabled:
            machine.bus.enable_namespace(ns.dev)
    text = result.render(verbose=verbose)
    if not result.ok:
        tail = f"error checking namespaces: {strerror(result.errno)}\nchecked 0 namespaces"
        raise CorruptMetadata(f"{text}\n{tail}" if text else tail)
    return f"{text}\nchecked 1 namespace" if text else "checked 1 namespace"


def dump(machine: Machine, dev: str, *, map_limit: int = 16, all_lanes: bool = False) -> str:
    """A readable dump of a sector namespace's BTT metadata (info block, map, flog),
    read from the media as it is (no recovery)."""
    from drivers.btt.btt import NamespaceIO
    from drivers.btt.dump import dump_btt

    ns = machine.bus.namespace(dev)
    return dump_btt(NamespaceIO(ns), dev=ns.dev, size=ns.size, parent_uuid=ns.uuid,
                    map_limit=map_limit, all_lanes=all_lanes)


NO_PROCESSES = "no processes yet (issue 5 part 2)"


def explain_page(machine: Machine, dev: str, offset: int, *,
                 mm: Any = None) -> dict[str, Any]:
    """Explain the page holding byte ``offset`` of a device (pmemN, daxR.M, or the
    namespace's name): its physical address and pfn, the DIMM behind it, its dev_pagemap,
    which struct page describes it and where that struct page lives (DRAM, or which
    range of pmem), and who maps or pins it. Looking creates nothing.

    "Who" comes from ``mm`` (an :class:`mm.process.MemorySystem`; default: the
    machine's ``mm`` attribute when it has one): a list of ``{pid, process, address,
    entry, ...}`` per mapping and per pin. A machine without processes says so."""
    from mm.memmap import PAGE_SIZE

    ns = machine.bus.namespace(dev)
    device = ns.device
    if not ns.enabled or device is None:
        raise InvalidArgument(f"{ns.dev} is disabled: it has no device to explain")
    name = getattr(device, "name", ns.dev)
    size = getattr(device, "size", 0)
    if not 0 <= offset < size:
        raise InvalidArgument(f"{name}: offset {offset:#x} is outside its {size:#x} bytes")
    out: dict[str, Any] = {"device": name, "namespace": ns.dev, "mode": ns.mode,
                           "offset": offset}
    layout = getattr(device, "layout", None)
    if layout is not None:
        out["map"] = layout.mode.map
    pgmap = getattr(device, "pgmap", None)
    spa = getattr(device, "spa", None)
    if spa is None or (ns.mode == "sector"):
        out["pfn"] = None
        out["why"] = ("sector mode: the BTT moves a block to a new place on every write, "
                      "so a sector has no fixed pfn and cannot be mapped (no DAX on BTT)")
        out["mapped_by"] = out["pinned_by"] = NO_PROCESSES
        return out
    phys = spa + offset
    pfn = phys // PAGE_SIZE
    dimm, dpa, _ = machine.platform.memctrl.pieces(pfn * PAGE_SIZE, 1)[0]
    out.update({"phys": phys, "pfn": pfn, "page_offset": phys % PAGE_SIZE,
                "media": {"dimm": machine.bus.dimms[dimm].dev, "dpa": dpa}})
    if pgmap is None:
        out["pgmap"] = None
        out["struct_page"] = {
            "exists": False,
            "why": "raw mode: the namespace is mapped with memremap(), not "
                   "memremap_pages(): no dev_pagemap, no struct pages, no DAX"}
    else:
        out["pgmap"] = pgmap.to_json()
        out["struct_page"] = _struct_page_json(machine, ns, pgmap, pfn)
    _who(out, mm if mm is not None else getattr(machine, "mm", None), pfn)
    return out


def _who(out: dict[str, Any], mm: Any, pfn: int) -> None:
    if mm is None:
        out["mapped_by"] = out["pinned_by"] = NO_PROCESSES
        return
    out["mapped_by"] = mm.who_maps(pfn)
    out["pinned_by"] = mm.who_pins(pfn)
    if out["mapped_by"] and not out["struct_page"].get("exists"):
        out["rmap_note"] = ("no struct page: the kernel keeps no reverse map for this pfn "
                            "(VM_PFNMAP); the model's own table answers")


def _struct_page_json(machine: Machine, ns: Namespace, pgmap: Any, pfn: int) -> dict[str, Any]:
    from mm.page import Page

    home = pgmap.home(pfn)
    sp: dict[str, Any] = {"exists": home.where != "none", "vaddr": home.vaddr,
                          "lives_in": home.where, "shared": home.shared, "note": home.note}
    if home.phys is not None:
        dimm, dpa, _ = machine.platform.memctrl.pieces(home.phys, 1)[0]
        sp["phys"] = home.phys
        sp["pmem"] = {"namespace": ns.dev, "offset": home.phys - ns.spa,
                      "reserved": [8192, pgmap.first_pfn * 4096 - ns.spa],
                      "dimm": machine.bus.dimms[dimm].dev, "dpa": dpa}
    if home.where == "none":
        return sp
    if not pgmap.pfn_valid(pfn):
        sp["usable"] = False
        sp["why"] = ("in the namespace's reserved head (info block and memmap): never "
                     "handed out, its struct page is not initialised")
        return sp
    sp["usable"] = True
    page = pgmap.peek(pfn)
    sp["created"] = page is not None
    sp["fields"] = (page or Page(pfn)).to_json()
    if pgmap.vmemmap_shift:
        first = pgmap.first_pfn
        head = first + ((pfn - first) >> pgmap.vmemmap_shift << pgmap.vmemmap_shift)
        sp["fields"]["compound_head"] = head
        sp["fields"]["compound_order"] = pgmap.vmemmap_shift
    return sp


def render_explain(e: dict[str, Any]) -> str:
    """:func:`explain_page` as aligned lines, one per structure."""
    def nbytes(n: int) -> str:
        text = human_size(n)
        return f"{text} bytes" if text.isdigit() else text

    mapping = f", map={e['map']}" if "map" in e else ""
    lines = [f"device      {e['device']} ({e['namespace']}, {e['mode']}{mapping})"]
    if e.get("pfn") is None:
        lines.append(f"offset      {e['offset']:#x}: {e['why']}")
    else:
        m = e["media"]
        lines.append(f"offset      {e['offset']:#x} -> physical {e['phys']:#x}, pfn "
                     f"{e['pfn']:#x} ({m['dimm']} DPA {m['dpa']:#x})")
        pg = e["pgmap"]
        if pg is None:
            lines.append("pgmap       none")
        else:
            lines.append(f"pgmap       {pg['type']} pfns [{pg['pfns'][0]:#x}, {pg['pfns'][1]:#x})"
                         f" first usable {pg['first_pfn']:#x}, owner {pg['owner']}")
            alt = pg.get("altmap")
            if alt:
                lines.append(f"            altmap base {alt['base_pfn']:#x} reserve "
                             f"{alt['reserve']} free {alt['free']}")
            c = pg.get("cost", {})
            lines.append(f"            memmap {pg['memmap']}: DRAM {nbytes(c.get('dram', 0))}, "
                         f"pmem {nbytes(c.get('pmem', 0))} for {c.get('pages', 0)} struct "
                         f"pages; {pg['struct_pages_created']} created so far")
        sp = e["struct_page"]
        if not sp["exists"]:
            lines.append(f"struct page none: {sp.get('why') or sp.get('note')}")
        else:
            where = sp["lives_in"].upper() if sp["lives_in"] == "dram" else sp["lives_in"]
            place = f"in {where}"
            if "pmem" in sp:
                p = sp["pmem"]
                place = (f"on pmem at {sp['phys']:#x} ({p['namespace']} +{p['offset']:#x}, "
                         f"{p['dimm']} DPA {p['dpa']:#x})")
            lines.append(f"struct page at vmemmap {sp['vaddr']:#x}, {place}"
                         + (" (shared tail page)" if sp["shared"] else ""))
            if sp["note"]:
                lines.append(f"            {sp['note']}")
            if not sp.get("usable", True):
                lines.append(f"            {sp['why']}")
            else:
                f = sp["fields"]
                made = "created" if sp["created"] else "not created yet (made on first use)"
                head = (f" compound head {f['compound_head']:#x} order {f['compound_order']}"
                        if "compound_head" in f else "")
                lines.append(f"            {made}: flags {f['flags']} refcount "
                             f"{f['refcount']} pincount {f['pincount']} mapping "
                             f"{f['mapping'] or '-'} index {f['index']}{head}")
    lines.append(f"mapped by   {_render_who(e['mapped_by'], 'mapping')}")
    if e.get("rmap_note"):
        lines.append(f"            {e['rmap_note']}")
    lines.append(f"pinned by   {_render_who(e['pinned_by'], 'pin')}")
    return "\n".join(lines)


def _render_who(who: Any, what: str) -> str:
    if isinstance(who, str):
        return who
    if not who:
        return "nobody"
    parts = []
    for w in who:
        if what == "mapping":
            rw = "rw" if w["writable"] else "ro"
            parts.append(f"pid {w['pid']} ({w['process']}) at {w['address']:#x}, "
                         f"{w['entry']} entry {rw}")
        else:
            by = f" for {w['who']}" if w["who"] else ""
            parts.append(f"pid {w['pid']} ({w['process']}) at {w['address']:#x}{by}"
                         + (" (long-term)" if w["longterm"] else ""))
    return ("\n" + " " * 12).join(parts)
