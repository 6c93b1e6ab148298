"""Workloads of the built-in experiments that need a filesystem: ``btt-remap``,
``direct-access`` and ``persistence-stack`` (see :mod:`nvdimm.explore.builtin`).

Each is a module-level function of a booted machine (labels initialised) returning an
:class:`~nvdimm.explore.experiment.Outcome`, so sweeps can ship it to other processes.
"""

from __future__ import annotations

from typing import Any

from fs.extentfs.layout import BLOCK
from mm.fault import SIGBUS
from mm.gup import pin_user_pages
from nvdimm import ndctl
from nvdimm.errors import InvalidArgument, NvdimmError
from nvdimm.explore.experiment import Check, Outcome, tagged_block
from nvdimm.machine import Machine
from nvdimm.platform.crash import policy_from_name
from nvdimm.units import MiB

FS_SIZE = 32 * MiB


def _fs(m: Machine, mode: str, dax: str, **kw: Any) -> tuple[str, Any]:
    extra: dict[str, Any] = {"sector_size": 4096} if mode == "sector" else {}
    name = ndctl.create_namespace(m, mode=mode, size=FS_SIZE, **extra, **kw)["blockdev"]
    m.mkfs(name)
    return name, m.mount(name, "/mnt", dax=dax)


def _block(tag: int, i: int, seed: int) -> bytes:
    """4 KiB naming itself in every 8-byte word, never zero (see tagged_block)."""
    return tagged_block(seed, tag, i)


# -- btt-remap -------------------------------------------------------------------------


def btt_remap_workload(m: Machine, blocks: int = 8, writes: int = 2) -> Outcome:
    """A file on a sector (BTT, 4 KiB sectors) namespace, mounted with DAX when the
    machine's ``btt_remap`` variant allows it (page cache otherwise). A process maps the
    file and stores a tag into every block; write(2) then rewrites ``writes`` blocks (a
    BTT block write moves each); a second file is written (the lanes reuse their free
    blocks); the process stores a second tag into every block. Every block of both
    files is checked against what the workload wrote, in the order it wrote it."""
    if not 1 <= writes <= blocks:
        raise InvalidArgument(f"writes must be between 1 and blocks ({blocks}), not {writes}")
    seed = m.config.seed
    name = ndctl.create_namespace(m, mode="sector", size=FS_SIZE, sector_size=4096)["blockdev"]
    m.mkfs(name)
    try:
        policy = m.mount(name, "/mnt", dax="always").provider.policy
        dax = "yes"
    except NvdimmError as e:
        policy = None
        dax = f"refused ({type(e).__name__})"
        m.mount(name, "/mnt", dax="never")
    v = m.vfs
    p = m.mm.spawn("app")
    f = v.open("/mnt/shared", "w+")
    base = [_block(0, i, seed) for i in range(blocks)]
    f.write(b"".join(base))
    f.fsync()
    a = f.mmap(p, blocks * BLOCK)
    expect = [bytearray(b) for b in base]
    for i in range(blocks):
        p.store(a + i * BLOCK, b"MAP1" + bytes([i]))
        expect[i][0:5] = b"MAP1" + bytes([i])
    rewritten = list(range(1, blocks, max(1, blocks // writes)))[:writes]
    for i in rewritten:
        data = _block(1, i, seed)
        f.pwrite(data, i * BLOCK)
        expect[i][:] = data
    other = [_block(2, i, seed) for i in range(blocks)]
    with v.open("/mnt/other", "w+") as g:  # the lanes reuse the blocks the BTT freed
        g.write(b"".join(other))
        g.fsync()
        for i in range(blocks):  # then the mapping is used again
            p.store(a + i * BLOCK + 8, b"MAP2" + bytes([i]))
            expect[i][8:13] = b"MAP2" + bytes([i])
        p.msync(a, blocks * BLOCK)
        found_other = [g.pread(BLOCK, i * BLOCK) for i in range(blocks)]
    found = [f.pread(BLOCK, i * BLOCK) for i in range(blocks)]
    p.munmap(a, blocks * BLOCK)
    f.close()
    checks = [Check(f"mapped file[{i}]", bytes(expect[i]), found[i], before=base[i],
                    durable=True, group="mapped file") for i in range(blocks)]
    checks += [Check(f"other file[{i}]", other[i], found_other[i], durable=True,
                     group="other file") for i in range(blocks)]
    c = m.metrics.c
    notes = {
        "dax": dax,
        "block writes to mapped blocks": len(rewritten) if dax == "yes" else 0,
        "remaps of mapped blocks": c["btt.remap.mapped_remaps"],
        "holder notifications": c["btt.remap.notifications"],
        "leaves unmapped for a remap": c["fs.dax.remap_unmaps"],
        "refaults after unmap": c["fs.dax.faults"] - blocks if dax == "yes" else 0,
        "writes deferred in place": c["btt.remap.deferred_writes"],
        "sector atomicity while mapped": ("n/a (no DAX)" if policy is None
                                          else "kept" if policy.atomic_while_mapped
                                          else "lost (in-place writes can tear)"),
        "corrupted blocks": sum(1 for ch in checks if ch.found != ch.expected),
    }
    return Outcome(checks, (), notes)


# -- direct-access -----------------------------------------------------------------------

SCENARIOS = ("truncate-pinned", "media-error", "dax-over-btt")


def direct_access_workload(m: Machine, scenario: str = "truncate-pinned") -> Outcome:
    """One of three situations the DAX contract must express, under the machine's
    ``direct_access`` variant:

    * ``truncate-pinned``: a process maps a file and pins one page for DMA
      (get_user_pages); the file is truncated; another file is written; the DMA then
      writes into the page it pinned. Can the filesystem see the pin before freeing the
      block (dax_layout_busy_page)? If not, the other file gets the DMA's bytes.
    * ``media-error``: a mapped file's block goes bad (poison, reported by the platform
      to the provider); the process reads the file with read(2) and then touches the
      mapping. Is the kernel's copy machine-check safe? Is the holder told, so the
      mapping is pulled before the process consumes the poison?
    * ``dax-over-btt``: can a filesystem get DAX on a sector namespace (only if the
      ``btt_remap`` variant allows it)?
    """
    if scenario not in SCENARIOS:
        raise InvalidArgument(f"scenario must be one of {', '.join(SCENARIOS)}, not "
                              f"{scenario!r}")
    if scenario == "dax-over-btt":
        return _dax_over_btt(m)
    if scenario == "media-error":
        return _media_error(m)
    return _truncate_pinned(m)


def _mapped_file(m: Machine, path: str, comm: str) -> tuple[str, Any, Any, Any, int,
                                                             list[bytes]]:
    """A DAX extentfs with a 4-block file at ``path``, fsync'd and mapped by a new
    process ``comm``: (device, fs, process, open file, address, the blocks)."""
    name, fs = _fs(m, "fsdax", "always")
    p = m.mm.spawn(comm)
    f = m.vfs.open(path, "w+")
    blocks = [_block(0, i, m.config.seed) for i in range(4)]
    f.write(b"".join(blocks))
    f.fsync()
    return name, fs, p, f, f.mmap(p, 4 * BLOCK), blocks


def _truncate_pinned(m: Machine) -> Outcome:
    seed = m.config.seed
    v = m.vfs
    _, fs, p, f, a, _ = _mapped_file(m, "/mnt/buffer", "dma-app")
    pages = pin_user_pages(p.mm, a + 2 * BLOCK, 1, write=True, who="dma")
    dma_phys = pages[0].pfn << 12
    outcome = "truncated"
    try:
        f.truncate(0)
        f.fsync()
    except NvdimmError as e:
        outcome = f"refused ({type(e).__name__}: {e.errno})"
    other = [_block(1, i, seed) for i in range(64)]
    with v.open("/mnt/other", "w+") as g:
        g.write(b"".join(other))
        g.fsync()
    dma = _block(9, 0, seed)
    m.platform.cpu.store_nt(dma_phys, dma)  # the device's DMA lands in the pinned page
    m.platform.cpu.fence()
    data = v.read_file("/mnt/other")
    found = [data[i * BLOCK:(i + 1) * BLOCK] for i in range(64)]
    checks = [Check(f"other file[{i}]", other[i], found[i], durable=True, group="other file")
              for i in range(64)]
    notes = {"truncate": outcome,
             "busy pages seen": m.metrics.c["fs.dax.busy_waits"],
             "pinned block freed": "yes" if outcome == "truncated" else "no",
             "other file blocks hit by the DMA": sum(ch.found != ch.expected for ch in checks),
             "layout_busy": bool(fs.provider.layout_busy)}
    return Outcome(checks, (), notes)


def _media_error(m: Machine) -> Outcome:
    v = m.vfs
    name, fs, p, f, a, blocks = _mapped_file(m, "/mnt/data", "app")
    for i in range(4):
        p.load(a + i * BLOCK, 8)  # fault every page in
    pblk, _ = fs.bmap(fs.iget(f.ino), 1)
    dev_off = pblk * BLOCK
    ns = m.bus.namespace(name)
    data_offset = fs.provider.device.data_offset
    ndctl.inject_error(m, ns.dev, block=(data_offset + dev_off) // 512, count=8)
    told = fs.provider.media_error(dev_off, BLOCK)  # the platform reports it (ARS/MCE)
    c = m.metrics.c
    try:
        got = f.pread(4 * BLOCK, 0)
        read = f"{len(got)} of {4 * BLOCK} bytes (short read)" if len(got) < 4 * BLOCK \
            else "all bytes"
    except NvdimmError as e:
        kind = type(e).__name__
        read = "kernel machine check (panic)" if kind == "KernelMachineCheck" \
            else f"{kind} (errno {e.errno})"
    consumed_before = c["mm.memory_failures"]
    try:
        p.load(a + BLOCK, 8)
        touch = "read poison?!"
    except SIGBUS as sig:
        touch = f"SIGBUS code {sig.code}"
    poison_consumed = c["mm.memory_failures"] - consumed_before
    p.munmap(a, 4 * BLOCK)
    f.close()
    good = [i for i in range(4) if i != 1]
    checks = [Check(f"good block[{i}]", blocks[i], _safe_read(v, i), durable=True,
                    group="good blocks") for i in good]
    notes = {"holders told": told, "read(2) of the file": read,
             "touching the mapping": touch,
             "poison consumed by the process": "yes" if poison_consumed else "no",
             "leaves pulled on notice": c["fs.unmapped_leaves"]}
    return Outcome(checks, (), notes)


def _safe_read(v: Any, i: int) -> bytes:
    try:
        with v.open("/mnt/data") as f:
            return bytes(f.pread(BLOCK, i * BLOCK))
    except NvdimmError:
        return bytes(BLOCK)


def _dax_over_btt(m: Machine) -> Outcome:
    name = ndctl.create_namespace(m, mode="sector", size=FS_SIZE, sector_size=4096)["blockdev"]
    m.mkfs(name)
    try:
        fs = m.mount(name, "/mnt", dax="always")
        got = f"yes ({fs.provider.name})"
    except NvdimmError as e:
        got = f"no ({type(e).__name__}, errno {e.errno})"
    return Outcome((), (), {"DAX on a sector namespace": got,
                            "btt_remap": m.config.btt_remap})


# -- persistence-stack -------------------------------------------------------------------

STACKS = ("btt", "fs-dax", "fs-buffered")


def persistence_stack_workload(m: Machine, stack: str = "fs-dax", crash: str = "random",
                               blocks: int = 4) -> Outcome:
    """What survives a power failure one layer up: a BTT (sector) namespace written with
    and without a flush, or an extentfs (DAX or page cache) written with write(2) with
    and without fsync, and through a shared mapping with and without msync. Then the
    power fails (``crash``), the machine reboots, mounts (journal replay) and reads."""
    if stack not in STACKS:
        raise InvalidArgument(f"stack must be one of {', '.join(STACKS)}, not {stack!r}")
    if blocks < 1:
        raise InvalidArgument(f"blocks must be at least 1, not {blocks}")
    seed = m.config.seed
    policy = policy_from_name(crash, seed)
    if stack == "btt":
        return _btt_stack(m, policy, blocks, seed)
    dax = "always" if stack == "fs-dax" else "never"
    name, _ = _fs(m, "fsdax", dax)
    v = m.vfs
    groups = (("write+fsync", True), ("mmap store+msync", True),
              ("write (no fsync)", False), ("mmap store (no msync)", False))
    data = {(g, i): _block(t, i, seed) for t, (g, _) in enumerate(groups) for i in range(blocks)}
    size = blocks * BLOCK
    for t, _ in enumerate(groups):  # every file exists, allocated and committed: zeroes
        with v.open(f"/mnt/{groups[t][0].split()[0]}-{t}", "w+") as f:
            f.fallocate(0, size)
            f.fsync()
    p = m.mm.spawn("app")
    for t, (g, _) in enumerate(groups):
        path = f"/mnt/{g.split()[0]}-{t}"
        f = v.open(path, "r+")
        payload = b"".join(data[g, i] for i in range(blocks))
        if g.startswith("write"):
            f.pwrite(payload, 0)
            if "no fsync" not in g:
                f.fsync()
        else:
            a = f.mmap(p, size)
            p.store(a, payload)
            if "no msync" not in g:
                p.msync(a, size)
            p.munmap(a, size)
        f.close()
    report = m.crash(policy)
    m.boot()
    fs = m.mount(name, "/mnt", dax=dax)
    checks = []
    for t, (g, durable) in enumerate(groups):
        got = m.vfs.read_file(f"/mnt/{g.split()[0]}-{t}")
        for i in range(blocks):
            checks.append(Check(f"{g}[{i}]", data[g, i], got[i * BLOCK:(i + 1) * BLOCK],
                                durable=durable, group=g))
    notes = {"journal blocks replayed": fs.replayed,
             "crash: lines in flight": report.lines_pending,
             "crash: lines torn": report.lines_torn}
    return Outcome(checks, (report,), notes)


def _btt_stack(m: Machine, policy: Any, blocks: int, seed: int) -> Outcome:
    name = ndctl.create_namespace(m, mode="sector", size=FS_SIZE, sector_size=4096)["blockdev"]
    disk = m.block_device(name)
    groups = (("write+flush", True), ("write (no flush)", True))
    data = {(g, i): _block(t, i, seed) for t, (g, _) in enumerate(groups) for i in range(blocks)}
    for t, (g, _) in enumerate(groups):
        for i in range(blocks):
            disk.write((t * blocks + i) * BLOCK, data[g, i])
        if "no flush" not in g:
            disk.flush()
    report = m.crash(policy)
    m.boot()
    disk = m.block_device(name)
    checks = [Check(f"{g}[{i}]", data[g, i], disk.read((t * blocks + i) * BLOCK, BLOCK),
                    durable=durable, group=g)
              for t, (g, durable) in enumerate(groups) for i in range(blocks)]
    return Outcome(checks, (report,), {"crash: lines in flight": report.lines_pending,
                                       "crash: lines torn": report.lines_torn})


# -- fs-paths ------------------------------------------------------------------------------


def fs_paths_workload(m: Machine, dax: str = "always", io_kib: int = 4, size_mib: int = 8,
                      rereads: int = 3) -> Outcome:
    """The storage-vs-memory trade-off of one file: written with write(2) in ``io_kib``
    calls and fsync'd, read back cold then ``rereads`` more times, then mapped and read
    through the mapping, on a ``dax`` mount (``always``: straight to pmem; ``never``:
    the page cache in DRAM). Reports per phase: bytes copied per byte of file, pmem
    bytes moved, DRAM pages the page cache holds, faults and their entry size, and a
    modeled time that prices pmem accesses with the optane preset and page-cache copies
    with the dram preset (a model output, labelled so)."""
    from nvdimm.explore.cost import estimate, preset

    if dax not in ("always", "never"):
        raise InvalidArgument(f"dax must be always or never, not {dax!r}")
    if io_kib < 1 or size_mib < 1 or rereads < 0:
        raise InvalidArgument("io_kib and size_mib must be positive, rereads not negative")
    name, _ = _fs(m, "fsdax", dax)
    v = m.vfs
    size, io = size_mib * MiB, io_kib * 1024
    seed = m.config.seed
    data = b"".join(_block(7, i, seed) for i in range(size // BLOCK))
    c = m.metrics.c
    dram = preset("dram")
    notes: dict[str, Any] = {}

    def phase(label: str, nbytes: int, run: Any) -> Any:
        before = dict(c)
        out = run()
        diff = {k: v - before.get(k, 0) for k, v in c.items()}
        pmem_moved = sum(diff.get(k, 0) for k in ("cpu.bytes_stored", "block.bytes_read",
                                                   "dax.bytes_read", "mm.pmem_bytes_loaded"))
        # page-cache copies (user <-> DRAM) run at DRAM speed; what touched pmem at Optane's
        dram_bytes = (diff.get("fs.bytes_read", 0) + diff.get("fs.bytes_written", 0)
                      if dax == "never" else 0)
        copies = (diff.get("fs.dax.copies_in", 0) + diff.get("fs.dax.copies_out", 0)
                  + dram_bytes + diff.get("mm.pagecache.writeback_pages", 0) * BLOCK
                  + diff.get("mm.pagecache.read_pages", 0) * BLOCK)
        modeled = estimate(diff, "optane").modeled_ns + dram_bytes / dram.read_bandwidth_gbs
        notes[f"{label}: copies per byte"] = round(copies / nbytes, 2)
        notes[f"{label}: pmem MiB moved"] = round(pmem_moved / MiB, 2)
        notes[f"{label}: modeled ms"] = round(modeled / 1e6, 3)
        return out

    def write() -> None:
        with v.open("/mnt/file", "w") as f:
            for off in range(0, size, io):
                f.pwrite(data[off:off + io], off)
            f.fsync()

    phase("write+fsync", size, write)
    m.vfs.umount("/mnt")  # a cold start: nothing cached
    m.mount(name, "/mnt", dax=dax)

    def read_all() -> bytes:
        with v.open("/mnt/file") as f:
            return b"".join(f.pread(io, off) for off in range(0, size, io))

    cold = phase("cold read", size, read_all)
    warm = cold
    for _ in range(rereads):
        warm = phase("re-read (each)", size, read_all)
    p = m.mm.spawn("reader")
    f = v.open("/mnt/file")
    faults_before = {k: c[k] for k in ("mm.faults.4k", "mm.faults.2m")}

    def touch() -> bytes:
        a = f.mmap(p, size, prot=1)  # PROT_READ
        got = b"".join(p.load(a + off, BLOCK) for off in range(0, size, BLOCK))
        p.munmap(a, size)
        return got

    mapped = phase("mmap read", size, touch)
    f.close()
    notes["page cache pages (DRAM)"] = sum(
        st.cache.nrpages for st in v.mounts["/mnt"].fs.inodes.values() if st.cache)
    notes["mmap faults 4K / 2M"] = (f"{c['mm.faults.4k'] - faults_before['mm.faults.4k']} / "
                                    f"{c['mm.faults.2m'] - faults_before['mm.faults.2m']}")
    checks = [Check("cold read", data, cold, durable=True),
              Check("re-read", data, warm, durable=True),
              Check("mmap read", data, mapped, durable=True)]
    return Outcome(checks, (), notes)
