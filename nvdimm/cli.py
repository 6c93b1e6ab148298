"""The ``nvdimm`` command: ndctl's verbs on a simulated machine kept in a directory.

Every command loads the machine from ``--machine DIR`` (default ./nvdimm-machine,
created with the default platform on first use), does its work, and saves it back,
including stores still in flight in the CPU cache, so a later ``crash`` can lose them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from nvdimm import ndctl
from nvdimm.errors import InvalidArgument, NvdimmError
from nvdimm.machine import CONFIG_FILE, Machine, MachineConfig
from nvdimm.units import parse_size

DEFAULT_DIR = Path("nvdimm-machine")


def _emit(obj: Any) -> None:
    if obj is None:  # ndctl prints nothing for an empty listing
        return
    if isinstance(obj, str):
        print(obj)
    else:
        print(json.dumps(obj, indent=2))


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _open(args: argparse.Namespace) -> Machine:
    d: Path = args.machine
    if not (d / CONFIG_FILE).exists():
        print(f"nvdimm: creating a default machine in {d}", file=sys.stderr)
        m = Machine.create(MachineConfig())
        m.init_labels()
        m.save(d)
        return m
    return Machine.load(d)


def crash_report_json(report: Any) -> dict[str, Any]:
    out = attrs.asdict(report)
    out["lost"] = [hex(a) for a in report.lost]
    out["torn"] = [hex(a) for a in report.torn]
    return out


# -- commands ----------------------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    d: Path = args.machine
    if (d / CONFIG_FILE).exists() and not args.force:
        raise InvalidArgument(f"{d} already holds a machine; use --force to replace it")
    cfg = MachineConfig(dimms=args.dimms, dimm_size=args.dimm_size, label_size=args.label_size,
                        interleave=args.interleave, persistence=args.persistence,
                        tracking=not args.no_crash_tracking, seed=args.seed,
                        direct_access=args.direct_access, btt_remap=args.btt_remap)
    m = Machine.create(cfg)  # refuses an unknown variant, naming those there are
    if cfg.label_size and not args.no_labels:
        m.init_labels(args.label_version)
    m.save(d)
    _emit(ndctl.list_(m, dimms=True, regions=True, namespaces=True))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    m = _open(args)
    _emit(ndctl.list_(m, dimms=args.dimms, regions=args.regions, namespaces=args.namespaces,
                      verbose=args.verbose, idle=args.idle, media_errors=args.media_errors,
                      region=args.region, namespace=args.namespace))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    m = _open(args)
    out = ndctl.create_namespace(m, region=args.region, mode=args.mode, size=args.size,
                                 name=args.name or "", uuid=args.uuid,
                                 sector_size=args.sector_size, map=args.map, align=args.align,
                                 reconfig=args.reconfig, force=args.force)
    m.save(args.machine)
    _emit(out)
    return 0


def _simple(fn: Callable[..., Any], *names: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        m = _open(args)
        out = fn(m, *(getattr(args, n) for n in names), **getattr(args, "_kw", {}))
        m.save(args.machine)
        _emit(out)
        return 0

    return run


def cmd_destroy(args: argparse.Namespace) -> int:
    m = _open(args)
    out = ndctl.destroy_namespace(m, args.namespace, force=args.force)
    m.save(args.machine)
    _emit(out)
    return 0


def cmd_init_labels(args: argparse.Namespace) -> int:
    m = _open(args)
    out = ndctl.init_labels(m, args.dimm, version=args.label_version, force=args.force)
    m.save(args.machine)
    _emit(out)
    return 0


def cmd_read_labels(args: argparse.Namespace) -> int:
    m = _open(args)
    _emit(ndctl.read_labels(m, args.dimm))
    return 0


def cmd_region(args: argparse.Namespace) -> int:
    m = _open(args)
    names = [r.dev for r in m.bus.regions] if args.region == "all" else [args.region]
    for n in names:
        (m.bus.enable_region if args.enable else m.bus.disable_region)(n)
    m.save(args.machine)
    _emit(f"{'enabled' if args.enable else 'disabled'} {len(names)} region")
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    m = _open(args)
    out = ndctl.inject_error(m, args.namespace, block=args.block, count=args.count,
                             notify=not args.no_notify)
    m.save(args.machine)
    _emit(out)
    return 0


def cmd_scrub(args: argparse.Namespace) -> int:
    m = _open(args)
    out = ndctl.start_scrub(m)
    m.save(args.machine)
    _emit(out)
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    m = _open(args)
    data = ndctl.read_block_device(m, args.device, args.offset, args.length)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read()
    if not data:
        raise InvalidArgument("nothing to write: standard input was empty")
    m = _open(args)
    n = ndctl.write_block_device(m, args.device, args.offset, data, fua=args.fua,
                                 sync=args.sync)
    m.save(args.machine)
    print(f"wrote {n} bytes to {args.device} at offset {args.offset}", file=sys.stderr)
    return 0


def cmd_crash(args: argparse.Namespace) -> int:
    from nvdimm.platform.crash import policy_from_name

    m = _open(args)
    report = m.crash(policy_from_name(args.policy, seed=args.seed))
    m.boot()
    m.save(args.machine)
    _emit(crash_report_json(report))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    d: Path = args.machine
    if (d / CONFIG_FILE).exists() and not args.force:
        raise InvalidArgument(f"{d} already holds a machine; use --force to replace it")
    m = Machine.import_image(args.image, label_size=args.label_size)
    m.save(d)
    _emit(ndctl.list_(m, dimms=True, regions=True, namespaces=True, verbose=True))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    m = _open(args)
    out = ndctl.check_namespace(m, args.namespace, repair=args.repair, verbose=args.verbose,
                                force=args.force)
    m.save(args.machine)
    _emit(out)
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    m = _open(args)
    _emit(ndctl.dump(m, args.namespace, map_limit=args.map_limit, all_lanes=args.all_lanes))
    return 0


def cmd_explain_page(args: argparse.Namespace) -> int:
    m = _open(args)
    e = ndctl.explain_page(m, args.device, args.offset)
    _emit(e if args.json else ndctl.render_explain(e))
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from nvdimm.tour import run_tour

    return run_tour(seed=args.seed, persistence=args.persistence, reveal=not args.quiz)


def cmd_explore(args: argparse.Namespace) -> int:
    from nvdimm.explore import builtin
    from nvdimm.explore.compare import compare
    from nvdimm.explore.experiment import Results, parse_vary

    if args.list:
        width = max(len(b.name) for b in builtin.list_experiments())
        for b in builtin.list_experiments():
            status = "" if b.available else f"  [{b.unavailable_reason()}]"
            print(f"{b.name:<{width}}  {b.summary}{status}")
        return 0
    if args.load is not None:
        comparison = compare(Results.load(args.load), all_rows=args.all)
    elif args.name is None:
        raise InvalidArgument("name an experiment (nvdimm explore --list shows them) or "
                              "--load saved results")
    else:
        b = builtin.get(args.name)
        vary = parse_vary(args.vary, b.workload, b.base) if b.workload is not None else None
        comparison = builtin.run(b.name, vary=vary, seeds=args.seeds, jobs=args.jobs,
                                 scheduler=args.scheduler, all_rows=args.all)
    if args.save is not None:
        comparison.results.save(args.save)
    if args.json:
        print(comparison.to_json())
    elif args.markdown:
        print(comparison.markdown())
    else:
        print(comparison.table())
    if args.plot is not None:
        sys.stdout.flush()
        print(f"nvdimm explore: plot written to {comparison.plot(args.plot)}", file=sys.stderr)
    return 0


# -- extentfs: mkfs, fsck, and file operations ----------------------------------------------

#: Where the fs commands mount the namespace in the kernel they boot.
FS_MOUNT = "/mnt"


def _fs_disk(m: Machine, namespace: str) -> Any:
    """The block device a filesystem lives on, or a clear refusal."""
    ns = m.bus.namespace(namespace)
    if ns.mode == "devdax":
        raise InvalidArgument(f"{ns.dev} is a devdax namespace: it has no block device to "
                              "hold a filesystem (use an fsdax, sector or raw namespace)")
    return m.block_device(namespace)


def _superblock_json(device: str, sb: Any) -> dict[str, Any]:
    from fs.extentfs.layout import BLOCK

    return {"device": device, "uuid": str(sb.uuid), "block_size": BLOCK, "blocks": sb.blocks,
            "inodes": sb.inodes, "root_ino": sb.root_ino,
            "bitmap": {"start": sb.bitmap_start, "blocks": sb.bitmap_blocks},
            "inode_table": {"start": sb.inode_table_start, "blocks": sb.inode_table_blocks},
            "journal": {"start": sb.journal_start, "blocks": sb.journal_blocks},
            "data_start": sb.data_start, "state": "clean" if sb.state else "mounted",
            "mount_count": sb.mount_count}


def _superblock_text(device: str, sb: Any) -> str:
    def span(start: int, n: int) -> str:
        return f"{start}-{start + n - 1}"

    return "\n".join([
        f"Creating extentfs on {device}: {sb.blocks} 4k blocks and {sb.inodes} inodes",
        f"Filesystem UUID: {sb.uuid}",
        f"Block bitmap:    blocks {span(sb.bitmap_start, sb.bitmap_blocks)}",
        f"Inode table:     blocks {span(sb.inode_table_start, sb.inode_table_blocks)}",
        f"Journal:         blocks {span(sb.journal_start, sb.journal_blocks)} "
        f"({sb.journal_blocks} blocks)",
        f"Data:            blocks {span(sb.data_start, sb.blocks - sb.data_start)} "
        "(from a 2 MiB boundary)"])


def cmd_mkfs(args: argparse.Namespace) -> int:
    m = _open(args)
    disk = _fs_disk(m, args.namespace)
    sb = m.mkfs(args.namespace, inodes=args.inodes, journal_blocks=args.journal_blocks)
    m.save(args.machine)
    _emit(_superblock_json(disk.name, sb) if args.json else _superblock_text(disk.name, sb))
    return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    """Exit codes are e2fsck's: 0 clean, 1 errors corrected, 4 errors left, 8 fsck could
    not check (no such device, no superblock)."""
    from fs.extentfs.fsck import EXIT_ERROR, fsck

    try:
        m = _open(args)
        report = fsck(_fs_disk(m, args.namespace), repair=args.repair)
    except NvdimmError as e:
        print(f"nvdimm fsck: error: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    if args.repair:
        m.save(args.machine)
    _emit(report.to_json() if args.json else report.render())
    return report.exit_code


def _fs_path(path: str) -> str:
    """A path inside the filesystem ('/a/b', or 'a/b' from its root) under the mount."""
    import posixpath

    inner = posixpath.normpath("/" + path.lstrip("/"))
    return FS_MOUNT if inner == "/" else FS_MOUNT + inner


def _stat_json(path: str, name: str, st: Any) -> dict[str, Any]:
    import stat as statmod

    return {"path": path, "name": name, "ino": st.ino,
            "type": "directory" if st.is_dir else "file", "mode": f"{st.mode & 0o7777:04o}",
            "nlink": st.nlink, "size": st.size, "blocks": st.blocks,
            "dax": st.dax, "mtime": st.mtime, "ctime": st.ctime,
            "filemode": statmod.filemode(st.mode)}


def _fs_ls(m: Machine, args: argparse.Namespace) -> Any:
    import posixpath

    v = m.vfs
    where = _fs_path(args.path)
    st = v.stat(where)
    if st.is_dir:
        names = sorted(v.listdir(where))
        rows = [_stat_json(posixpath.join(args.path, n), n, v.stat(f"{where.rstrip('/')}/{n}"))
                for n in names]
    else:
        rows = [_stat_json(args.path, posixpath.basename(args.path), st)]
    if args.json:
        return rows
    return "\n".join(f"{r['ino']:>5} {r['filemode']} {r['nlink']:>2} {r['size']:>10} "
                     f"{r['name']}{'/' if r['type'] == 'directory' else ''}"
                     for r in rows) or None


def _fs_cat(m: Machine, args: argparse.Namespace) -> Any:
    return m.vfs.read_file(_fs_path(args.path))


def _fs_put(m: Machine, args: argparse.Namespace) -> Any:
    data: bytes = args.payload
    where = _fs_path(args.path)
    with m.vfs.open(where, "w" if args.offset is None else "a") as f:
        if args.offset is None:
            f.write(data)
        else:
            f.pwrite(data, args.offset)
        if not args.no_sync:
            f.fsync()
    offset = 0 if args.offset is None else args.offset
    print(f"wrote {len(data)} bytes to {args.path} at offset {offset}"
          f"{' (not synced)' if args.no_sync else ''}", file=sys.stderr)
    return None


def _fs_rm(m: Machine, args: argparse.Namespace) -> Any:
    where = _fs_path(args.path)
    if args.dir and m.vfs.stat(where).is_dir:
        m.vfs.rmdir(where)
    else:
        m.vfs.unlink(where)
    return None


def _fs_mkdir(m: Machine, args: argparse.Namespace) -> Any:
    where = _fs_path(args.path)
    if not args.parents:
        m.vfs.mkdir(where)
        return None
    parts = where[len(FS_MOUNT):].strip("/").split("/")
    at = FS_MOUNT
    for part in parts:
        at = f"{at}/{part}"
        if not m.vfs.exists(at):
            m.vfs.mkdir(at)
    return None


def _fs_stat(m: Machine, args: argparse.Namespace) -> Any:
    import posixpath

    st = _stat_json(args.path, posixpath.basename(args.path) or "/",
                    m.vfs.stat(_fs_path(args.path)))
    if args.json:
        return st
    kind = "directory" if st["type"] == "directory" else "regular file"
    return "\n".join([
        f"  File: {st['path']}",
        f"  Size: {st['size']:<12} Blocks: {st['blocks']:<8} IO Block: 4096   {kind}",
        f" Inode: {st['ino']:<12} Links: {st['nlink']}",
        f"Access: ({st['mode']}/{st['filemode']})",
        f"   DAX: {'yes' if st['dax'] else 'no'}",
        f"Modify: {st['mtime']}  Change: {st['ctime']}  (the filesystem's clock)"])


_FS_OPS: dict[str, Callable[[Machine, argparse.Namespace], Any]] = {
    "ls": _fs_ls, "cat": _fs_cat, "put": _fs_put, "rm": _fs_rm, "mkdir": _fs_mkdir,
    "stat": _fs_stat}


def cmd_fs(args: argparse.Namespace) -> int:
    """Boot the saved machine, mount the namespace, do one operation, unmount cleanly,
    save. A path error reads as the shell's (``/x: No such file or directory``); any
    error saves nothing, so the machine is as it was."""
    import os

    from fs.errors import PathError

    verb = args.fs_command
    if verb == "put":
        args.payload = _put_payload(args)
    m = _open(args)
    try:
        _fs_disk(m, args.namespace)
        m.mount(args.namespace, FS_MOUNT, dax=args.dax)
        out = _FS_OPS[verb](m, args)
        if not (verb == "put" and args.no_sync):
            m.vfs.umount(FS_MOUNT)
    except NvdimmError as e:
        path_error = isinstance(e, PathError)
        text = f"{args.path}: {os.strerror(e.errno)}" if path_error else e.message
        print(f"nvdimm fs {verb}: error: {text}", file=sys.stderr)
        return 1
    m.save(args.machine)
    if isinstance(out, bytes):
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    else:
        _emit(out)
    return 0


def _put_payload(args: argparse.Namespace) -> bytes:
    if args.data is not None:
        return str(args.data).encode()
    if str(args.from_file) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.from_file).read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read {args.from_file}: {e.strerror}") from None


# -- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nvdimm",
        description="A libnvdimm-style model of the Linux persistent-memory stack. "
                    "Manage a simulated machine's NVDIMMs the way ndctl does.")
    p.add_argument("--machine", type=Path, default=DEFAULT_DIR, metavar="DIR",
                   help="directory holding the machine (default: ./nvdimm-machine, created "
                        "with a default platform on first use)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="create a machine with NVDIMMs (and initialise labels)")
    s.add_argument("--dimms", type=int, default=2, help="number of NVDIMMs (default 2)")
    s.add_argument("--dimm-size", type=_size, default=MachineConfig().dimm_size,
                   help="pmem capacity per DIMM, e.g. 4G (default 4G); the image file adds "
                        "the label area")
    s.add_argument("--label-size", type=_size, default=128 * 1024,
                   help="label storage area per DIMM (default 128K; 0 = label-less)")
    s.add_argument("--label-version", choices=["1.1", "1.2"], default="1.1")
    s.add_argument("--no-labels", action="store_true",
                   help="leave label areas blank (regions come up label-less)")
    s.add_argument("--interleave", action="store_true",
                   help="one region interleaved across all DIMMs instead of one per DIMM")
    s.add_argument("--persistence", default="adr",
                   help="persistence domain variant: adr, eadr or flush-hint (default adr)")
    s.add_argument("--direct-access", default="dax-ops", metavar="VARIANT",
                   help="what DAX providers promise filesystems: bdev-2016, dax-ops or "
                        "widened (default dax-ops)")
    s.add_argument("--btt-remap", default="deny-dax", metavar="VARIANT",
                   help="DAX on sector (BTT) namespaces: deny-dax (Linux, the default), "
                        "unsafe, notify-holder or defer")
    s.add_argument("--no-crash-tracking", action="store_true",
                   help="cheaper mode: do not track in-flight stores (crash keeps everything)")
    s.add_argument("--seed", type=int, default=0, help="seed for uuids and random crashes")
    s.add_argument("-f", "--force", action="store_true", help="replace an existing machine")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("list", help="list DIMMs, regions and namespaces as ndctl JSON")
    s.add_argument("-D", "--dimms", action="store_true", help="include DIMMs")
    s.add_argument("-R", "--regions", action="store_true", help="include regions")
    s.add_argument("-N", "--namespaces", action="store_true", help="include namespaces")
    s.add_argument("-v", "--verbose", action="store_true", help="more attributes")
    s.add_argument("-i", "--idle", action="store_true", help="include disabled namespaces")
    s.add_argument("-M", "--media-errors", action="store_true", help="include bad blocks")
    s.add_argument("-r", "--region", help="only this region")
    s.add_argument("-n", "--namespace", help="only this namespace")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("create-namespace", help="provision a namespace")
    s.add_argument("-r", "--region", help="region to allocate from (default: first that fits)")
    s.add_argument("-m", "--mode", default="fsdax",
                   choices=["raw", "sector", "fsdax", "devdax"],
                   help="namespace mode (default fsdax, as ndctl)")
    s.add_argument("-s", "--size", help="size, e.g. 1G (default: the largest free extent)")
    s.add_argument("-n", "--name", help="label name (at most 63 bytes)")
    s.add_argument("-u", "--uuid", help="namespace uuid (default: random, from the seed)")
    s.add_argument("-l", "--sector-size", type=int, help="sector size (raw: 512 or 4096)")
    s.add_argument("-M", "--map", choices=["mem", "dev"], help="fsdax: where struct pages live")
    s.add_argument("-a", "--align", help="fsdax/devdax: mapping alignment (4K, 2M, 1G)")
    s.add_argument("-e", "--reconfig", metavar="NAMESPACE",
                   help="give this existing namespace the new mode in place (how a "
                        "label-less namespace gets one)")
    s.add_argument("-f", "--force", action="store_true",
                   help="with --reconfig: reconfigure even if the namespace is active")
    s.set_defaults(func=cmd_create)

    s = sub.add_parser("destroy-namespace", help="destroy a namespace and free its capacity")
    s.add_argument("namespace", help="namespace (namespace0.0) or block device (pmem0)")
    s.add_argument("-f", "--force", action="store_true", help="destroy even if active")
    s.set_defaults(func=cmd_destroy)

    for verb, fn in (("enable-namespace", ndctl.enable_namespace),
                     ("disable-namespace", ndctl.disable_namespace)):
        s = sub.add_parser(verb, help=f"{verb.split('-')[0]} a namespace")
        s.add_argument("namespace", help="namespace (namespace0.0)")
        s.set_defaults(func=_simple(fn, "namespace"))

    for verb, enable in (("enable-region", True), ("disable-region", False)):
        s = sub.add_parser(verb, help=f"{verb.split('-')[0]} a region and its namespaces")
        s.add_argument("region", help="region (region0) or 'all'")
        s.set_defaults(func=cmd_region, enable=enable)

    s = sub.add_parser("init-labels", help="write empty label index blocks to DIMMs")
    s.add_argument("dimm", nargs="?", default="all", help="DIMM (nmem0) or 'all'")
    s.add_argument("-V", "--label-version", choices=["1.1", "1.2"], default="1.1")
    s.add_argument("-f", "--force", action="store_true", help="erase existing labels")
    s.set_defaults(func=cmd_init_labels)

    s = sub.add_parser("read-labels", help="dump label areas as ndctl JSON")
    s.add_argument("dimm", nargs="?", default="all", help="DIMM (nmem0) or 'all'")
    s.add_argument("-j", "--json", action="store_true", help="JSON output (always on)")
    s.set_defaults(func=cmd_read_labels)

    s = sub.add_parser("inject-error", help="poison blocks of a namespace (ARS inject)")
    s.add_argument("namespace")
    s.add_argument("-B", "--block", type=_int, required=True, help="first 512-byte block")
    s.add_argument("-n", "--count", type=_int, default=1, help="number of blocks (default 1)")
    s.add_argument("-N", "--no-notify", action="store_true",
                   help="do not tell the kernel (the error shows up after a scrub)")
    s.set_defaults(func=cmd_inject)

    s = sub.add_parser("start-scrub", help="address range scrub: refresh bad blocks")
    s.set_defaults(func=cmd_scrub)

    s = sub.add_parser("read", help="read bytes from a block device to stdout")
    s.add_argument("device", help="block device (pmem0) or namespace")
    s.add_argument("--offset", type=_size, default=0, help="byte offset (default 0)")
    s.add_argument("--length", type=_size, required=True, help="bytes to read")
    s.set_defaults(func=cmd_read)

    s = sub.add_parser("write", help="write bytes from stdin to a block device")
    s.add_argument("device", help="block device (pmem0) or namespace")
    s.add_argument("--offset", type=_size, default=0, help="byte offset (default 0)")
    s.add_argument("--fua", action="store_true", help="forced unit access: durable on return")
    s.add_argument("--sync", action="store_true", help="send a cache flush afterwards")
    s.set_defaults(func=cmd_write)

    s = sub.add_parser("crash", help="cut the power: see what survives, then boot again")
    s.add_argument("--policy", default="random", choices=["nothing", "everything", "random"],
                   help="what in-flight stores survive (default random)")
    s.add_argument("--seed", type=int, default=0, help="seed for the random policy")
    s.set_defaults(func=cmd_crash)

    s = sub.add_parser("import-image", help="adopt a QEMU nvdimm backing file as a machine")
    s.add_argument("image", type=Path)
    s.add_argument("--label-size", type=_size, default=128 * 1024,
                   help="label area at the end of the file (default 128K; 0 = none)")
    s.add_argument("-f", "--force", action="store_true", help="replace an existing machine")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("check-namespace", help="check a sector namespace's BTT offline "
                                               "(ndctl check-namespace)")
    s.add_argument("namespace", help="namespace (namespace0.0)")
    s.add_argument("-r", "--repair", action="store_true", help="fix what the check finds")
    s.add_argument("-v", "--verbose", action="store_true", help="show every step")
    s.add_argument("-f", "--force", action="store_true",
                   help="check an active namespace (disabled for the check, then enabled)")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("dump", help="show a sector namespace's BTT metadata: info block, "
                                    "map, flog")
    s.add_argument("namespace", help="namespace (namespace0.0) or its block device")
    s.add_argument("--map-limit", type=int, default=16,
                   help="written map entries to list (default 16)")
    s.add_argument("--all-lanes", action="store_true",
                   help="list every flog lane, not only those used")
    s.set_defaults(func=cmd_dump)

    s = sub.add_parser("explain-page", help="explain one page of a device: pfn, struct "
                                            "page, where that lives, its pagemap")
    s.add_argument("device", help="device (pmem0, dax0.0) or namespace (namespace0.0)")
    s.add_argument("--offset", type=_size, default=0, help="byte offset in the device "
                                                           "(default 0)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_explain_page)

    s = sub.add_parser("tour", help="follow one write through every layer, crash, reboot")
    s.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    s.add_argument("--persistence", default="adr", help="adr, eadr or flush-hint")
    s.add_argument("--quiz", action="store_true",
                   help="ask what survives before revealing it")
    s.set_defaults(func=cmd_tour)

    s = sub.add_parser("explore", help="run an experiment on machines that differ in a seam; "
                                       "compare every subsystem's answer side by side")
    s.add_argument("name", nargs="?", help="built-in experiment (see --list)")
    s.add_argument("--list", action="store_true", help="list the built-in experiments")
    s.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="values of a seam, machine config field or workload parameter to "
                        "compare (replaces that key's default; repeatable)")
    s.add_argument("--seeds", type=int, help="seeds 0..N-1 per configuration "
                                             "(default: the experiment's)")
    s.add_argument("--json", action="store_true", help="the comparison and every run as JSON")
    s.add_argument("--markdown", action="store_true", help="the comparison as Markdown")
    s.add_argument("--plot", type=Path, metavar="FILE",
                   help="also draw the comparison to FILE (.png, .svg; extra 'plot')")
    s.add_argument("--all", action="store_true",
                   help="also show metrics and trace rows equal in every configuration")
    s.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes (default: one per CPU; 1 runs in this process)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this Dask distributed scheduler (extra 'distributed')")
    s.add_argument("--save", type=Path, metavar="FILE", help="save the results as JSON")
    s.add_argument("--load", type=Path, metavar="FILE",
                   help="compare results saved with --save instead of running")
    s.set_defaults(func=cmd_explore)

    s = sub.add_parser("mkfs", help="make an extentfs on a namespace's block device "
                                    "(mkfs.extentfs)")
    s.add_argument("namespace", help="namespace (namespace0.0) or block device (pmem0)")
    s.add_argument("--inodes", type=_int, metavar="N",
                   help="number of inodes (default: one per 64 KiB, 64..65536)")
    s.add_argument("--journal-blocks", type=_int, metavar="N",
                   help="journal size in 4 KiB blocks (default: 1/64 of the blocks, "
                        "64..8192)")
    s.add_argument("--json", action="store_true", help="print the superblock as JSON")
    s.set_defaults(func=cmd_mkfs)

    s = sub.add_parser("fsck", help="check an extentfs offline (e2fsck's passes and exit "
                                    "codes: 0 clean, 1 corrected, 4 errors left, 8 failed)")
    s.add_argument("namespace", help="namespace (namespace0.0) or block device (pmem0)")
    s.add_argument("-r", "--repair", action="store_true",
                   help="fix what the check finds (replays the journal too)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_fsck)

    s = sub.add_parser("fs", help="file operations on an extentfs: ls, cat, put, rm, mkdir, "
                                  "stat (each mounts, works, unmounts cleanly)")
    fs_sub = s.add_subparsers(dest="fs_command", required=True, metavar="OPERATION")

    def fs_op(verb: str, help_text: str, *, path_help: str = "path inside the filesystem",
              path_default: str | None = None, json: bool = False) -> argparse.ArgumentParser:
        op = fs_sub.add_parser(verb, help=help_text, description=help_text)
        op.add_argument("namespace", help="namespace (namespace0.0) or block device (pmem0)")
        if path_default is None:
            op.add_argument("path", help=path_help)
        else:
            op.add_argument("path", nargs="?", default=path_default, help=path_help)
        op.add_argument("--dax", choices=["never", "always", "inode"], default="never",
                        help="mount option dax= (default never)")
        if json:
            op.add_argument("--json", action="store_true", help="print JSON")
        op.set_defaults(func=cmd_fs)
        return op

    fs_op("ls", "list a directory (or show one file)", path_default="/",
          path_help="directory or file (default /)", json=True)
    fs_op("cat", "print a file's bytes")
    op = fs_op("put", "write a file (replaced whole, or patched at --offset) and fsync it")
    src = op.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="TEXT", help="the bytes to write, as text")
    src.add_argument("--from", dest="from_file", metavar="FILE",
                     help="read the bytes from FILE ('-' for standard input)")
    op.add_argument("--offset", type=_size, metavar="BYTES",
                    help="write at this offset into the existing file instead of replacing "
                         "it (creating it if missing)")
    op.add_argument("--no-sync", action="store_true",
                    help="no fsync and no unmount: nothing is committed, the filesystem is "
                         "left not cleanly unmounted. Names and sizes live only in this "
                         "command's kernel (gone from the next command on, as after a "
                         "crash); bytes stored in place (--dax always, with --offset inside "
                         "the file) stay in flight in the CPU cache, for 'nvdimm crash' to "
                         "lose")
    op = fs_op("rm", "remove a file")
    op.add_argument("-d", "--dir", action="store_true", help="remove an empty directory too")
    op = fs_op("mkdir", "make a directory")
    op.add_argument("-p", "--parents", action="store_true",
                    help="make parents as needed; no error if it exists")
    fs_op("stat", "show a file's inode: size, blocks, links, mode, DAX", json=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except NvdimmError as e:
        print(f"nvdimm {args.command}: error: {e.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
