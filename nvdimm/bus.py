"""ndbus0: the libnvdimm bus. Builds DIMMs and regions from the platform table, scans
labels into namespaces, and carries the operations ndctl asks of the kernel:
create, destroy, enable, disable, init-labels, scrub.

Every operation validates before it mutates: a refused request leaves labels and
media as they were.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from typing import Any

import attrs

from nvdimm import label as labelmod
from nvdimm.claim import CLAIM_CLASS, MODES, DriverRegistry, check_claimable, detect_mode
from nvdimm.dimm import Dimm
from nvdimm.errors import Busy, InvalidArgument, NotFound, NotSupported, NvdimmError
from nvdimm.label_format import iset_cookie_v11, iset_cookie_v12
from nvdimm.metrics import Metrics
from nvdimm.namespace import Namespace
from nvdimm.platform.platform import Platform
from nvdimm.platform.ranges import RangeSet
from nvdimm.region import Region
from nvdimm.trace import Trace
from nvdimm.units import SECTOR_SIZE, human_size

NAME_MAX = 63  # the label's 64-byte name field holds a NUL-terminated string


@attrs.define(slots=True, eq=False)
class NvdimmBus:
    platform: Platform
    drivers: DriverRegistry
    trace: Trace
    metrics: Metrics
    rng: random.Random
    platform_advertises_persistence: bool = True
    dimms: list[Dimm] = attrs.field(factory=list)
    regions: list[Region] = attrs.field(factory=list)
    badrange: RangeSet = attrs.field(factory=RangeSet)  # SPA ranges known bad (from ARS)

    # -- discovery --------------------------------------------------------------------

    def probe(self) -> None:
        """Build DIMMs and regions, scan labels, attach drivers (what boot does)."""
        table = self.platform.table
        self.dimms = [Dimm(info, self.platform) for info in table.dimms]
        self.regions = []
        for r in table.ranges:
            dimms = [self.dimms[m.dimm] for m in r.mappings]
            recs = [(m.dpa, d.info.serial, d.info.vendor_id, d.info.manufacturing_date,
                     d.info.manufacturing_location)
                    for m, d in zip(r.mappings, dimms, strict=True)]
            region = Region(self, r.index, r, dimms, iset_cookie_v11(recs),
                            iset_cookie_v12(recs))
            self.regions.append(region)
            self._scan_region(region)
        self.scrub()
        for region in self.regions:
            for ns in region.namespaces:
                self._autobind(ns)

    def _scan_region(self, region: Region) -> None:
        """Namespaces from labels; a region without a valid index on every DIMM is
        label-less and gets one io namespace spanning it (as Linux does)."""
        region.namespaces = []
        areas: list[labelmod.LabelArea] = []
        for d in region.dimms:
            area = labelmod.LabelArea.load(d.label_storage()) if d.has_label_area else None
            if area is None or not area.valid:
                areas = []
                break
            areas.append(area)
        if not areas:
            region.labelled, region.label_version = False, ""
            ns = Namespace(region, 0, "io", 0, region.size)
            region.namespaces = [ns]
            region.seed_id = 1
            self._detect(ns)
            return
        region.labelled = True
        region.label_version = areas[0].version
        cookie = region.iset_cookie
        found: dict[uuidlib.UUID, list[Any]] = {}
        for pos, area in enumerate(areas):
            for lbl in area.labels:
                if lbl.isetcookie != cookie or lbl.nlabel != region.ways:
                    self.trace.emit("nd.label_skip", dimm=region.dimms[pos].dev,
                                    uuid=str(lbl.uuid), reason="cookie or nlabel mismatch")
                    continue
                found.setdefault(lbl.uuid, []).append(lbl)
        spans = []
        for uid, lbls in found.items():
            if len(lbls) != region.ways:
                self.trace.emit("nd.label_skip", uuid=str(uid), reason="incomplete set")
                continue
            first = lbls[0]
            spans.append((first.dpa - region.spa.mappings[0].dpa, first))
        region.seed_id = 0
        for dpa_off, lbl in sorted(spans, key=lambda s: s[0]):
            ns = Namespace(region, region.seed_id, "pmem", dpa_off * region.ways,
                           lbl.rawsize * region.ways, uuid=lbl.uuid, name=lbl.name,
                           lbasize=lbl.lbasize or SECTOR_SIZE,
                           label_claim_class=labelmod.claim_class_of(lbl))
            region.seed_id += 1
            region.namespaces.append(ns)
            self._detect(ns)

    def _detect(self, ns: Namespace) -> None:
        """Linux's raw-namespace probe: BTT, then PFN, then DAX; a personality is found
        only when its driver validates its info block (a bad checksum falls through to
        the next, and finally to raw). A mode whose driver has not landed is named by
        its signature alone, so the namespace shows its mode but gets no device."""
        def read(offset: int, length: int) -> bytes:
            return ns.read_bytes(offset, length) if offset + length <= ns.size else b""

        for mode in ("sector", "fsdax", "devdax"):
            driver = self.drivers.drivers.get(mode)
            try:
                found = (driver.detect(ns) if driver is not None
                         else detect_mode(read, only=mode) == mode)
            except NotSupported:  # present but unusable: the probe fails (EOPNOTSUPP)
                found = True
            except NvdimmError:  # unreadable metadata: Linux moves on
                found = False
            if found:
                ns.mode = mode
                return
        ns.mode = "raw"

    def _autobind(self, ns: Namespace) -> None:
        """Attach the driver for the namespace's mode, if the machine has one."""
        if not ns.size:
            return
        driver = self.drivers.drivers.get(ns.mode)
        if driver is None:
            self.trace.emit("nd.probe", ns=ns.dev, mode=ns.mode, result="no driver")
            return
        try:
            self._bind(ns, driver)
        except NvdimmError as e:
            # A probe failure leaves the namespace without a device; boot goes on.
            self.metrics.c["nd.probe_failures"] += 1
            self.trace.emit("nd.probe", ns=ns.dev, mode=ns.mode, result="failed",
                            error=e.message)

    def _bind(self, ns: Namespace, driver: Any) -> None:
        ns.device = driver.attach(ns)
        ns.driver = driver
        ns.enabled = True
        self.trace.emit("nd.probe", ns=ns.dev, mode=ns.mode, result="bound",
                        device=getattr(ns.device, "name", ""))

    # -- lookups --------------------------------------------------------------------

    def region(self, name: str) -> Region:
        key = name if name.startswith("region") else f"region{name}"
        for r in self.regions:
            if r.dev == key:
                return r
        raise NotFound(f"no region {name!r}; regions: {', '.join(r.dev for r in self.regions)}")

    def dimm(self, name: str) -> Dimm:
        key = name if name.startswith("nmem") else f"nmem{name}"
        for d in self.dimms:
            if d.dev == key:
                return d
        raise NotFound(f"no DIMM {name!r}; DIMMs: {', '.join(d.dev for d in self.dimms)}")

    def namespaces(self) -> list[Namespace]:
        return [ns for r in self.regions for ns in r.namespaces]

    def namespace(self, name: str) -> Namespace:
        for ns in self.namespaces():
            if ns.dev == name or (ns.device is not None
                                  and getattr(ns.device, "name", None) == name):
                return ns
        idle = [ns.dev for ns in self.namespaces() if not ns.enabled]
        hint = (f" (disabled namespaces have no block device: {', '.join(idle)})"
                if idle else "")
        raise NotFound(f"no namespace or block device {name!r}; namespaces: "
                       f"{', '.join(ns.dev for ns in self.namespaces()) or 'none'}{hint}")

    # -- namespace lifecycle ------------------------------------------------------

    def create_namespace(self, *, region: str | None = None, mode: str = "fsdax",
                         size: int | None = None, name: str = "",
                         uuid: uuidlib.UUID | None = None, sector_size: int | None = None,
                         **personality: Any) -> Namespace:
        """ndctl create-namespace: allocate, write labels, format the personality, enable."""
        if mode not in MODES:
            raise InvalidArgument(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        driver = self.drivers.for_mode(mode)  # raises NotAvailableYet early
        if len(name.encode()) > NAME_MAX:
            raise InvalidArgument(f"namespace name is {len(name.encode())} bytes; at most "
                                  f"{NAME_MAX} fit in a label")
        regions = [self.region(region)] if region else self.regions
        lbasize = sector_size if sector_size is not None else SECTOR_SIZE
        if mode == "raw" and lbasize not in (512, 4096):
            raise InvalidArgument(f"raw namespaces have 512 or 4096-byte sectors, not {lbasize}")
        if uuid is not None and any(ns.uuid == uuid for ns in self.namespaces()):
            raise Busy(f"a namespace with uuid {uuid} already exists")
        target = None
        problems = []
        for r in regions:
            if not r.enabled:
                problems.append(f"{r.dev} is disabled")
                continue
            if not r.labelled:
                problems.append(f"{r.dev} has no labels (run init-labels, or reconfigure "
                                f"its label-less namespace)")
                continue
            want = size if size is not None else r.max_available_extent
            if want == 0:
                problems.append(f"{r.dev} has no free capacity")
                continue
            if size is None or r.max_available_extent >= want:
                target = (r, want)
                break
            problems.append(f"{r.dev} has at most {human_size(r.max_available_extent)} free")
        if target is None:
            from nvdimm.errors import NoSpace

            raise NoSpace("cannot create a namespace: " + "; ".join(problems))
        r, want = target
        offset = r.allocate(want)  # validates alignment and space
        ns = Namespace(r, r.seed_id, "pmem", offset, want, uuid=uuid or self._new_uuid(),
                       name=name, lbasize=lbasize, label_claim_class="none", mode=mode)
        driver.validate(ns, sector_size=sector_size, **personality)  # before any write
        self._write_labels(ns)
        ns.label_claim_class = CLAIM_CLASS[mode]
        r.namespaces.append(ns)
        r.advance_seed()
        self.metrics.c["nd.namespaces_created"] += 1
        self.trace.emit("nd.create_namespace", ns=ns.dev, mode=mode, size=want,
                        offset=offset, uuid=str(ns.uuid))
        driver.format(ns, sector_size=sector_size, **personality)
        self._bind(ns, driver)
        return ns

    def reconfigure_namespace(self, dev: str, *, mode: str = "fsdax", force: bool = False,
                              sector_size: int | None = None, name: str | None = None,
                              **personality: Any) -> Namespace:
        """``ndctl create-namespace -f -e NS -m MODE``: a new personality on an existing
        namespace, in place. The capacity stays; a labelled namespace keeps its uuid (and
        name unless given). As ndctl: disable, zero the info-block area, rewrite the labels
        with the new claim class and sector size, format, enable. This is how a label-less
        namespace gets a mode."""
        ns = self.namespace(dev)
        if mode not in MODES:
            raise InvalidArgument(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        driver = self.drivers.for_mode(mode)
        if ns.enabled and not force:
            raise Busy(f"{ns.dev} is active; use --force to reconfigure it")
        if name is not None and ns.kind == "io":
            raise InvalidArgument(f"{ns.dev} is label-less: it has no label to hold a name")
        if name is not None and len(name.encode()) > NAME_MAX:
            raise InvalidArgument(f"namespace name is {len(name.encode())} bytes; at most "
                                  f"{NAME_MAX} fit in a label")
        if mode == "raw" and sector_size not in (None, 512, 4096):
            raise InvalidArgument(f"raw namespaces have 512 or 4096-byte sectors, not "
                                  f"{sector_size}")
        old = (ns.lbasize, ns.name)
        driver.validate(ns, sector_size=sector_size, **personality)  # before any write
        if mode == "raw":
            ns.lbasize = sector_size or SECTOR_SIZE
        if ns.enabled:
            self.disable_namespace(ns.dev)
        ns.write_bytes(0, bytes(min(ns.size, 8192)))
        ns.mode = mode
        if name is not None:
            ns.name = name
        if ns.kind == "pmem":
            self._write_labels(ns)
        ns.label_claim_class = CLAIM_CLASS[mode]
        self.metrics.c["nd.namespaces_reconfigured"] += 1
        self.trace.emit("nd.reconfigure_namespace", ns=ns.dev, mode=mode,
                        old_lbasize=old[0], lbasize=ns.lbasize)
        driver.format(ns, sector_size=sector_size, **personality)
        self._bind(ns, driver)
        return ns

    def _new_uuid(self) -> uuidlib.UUID:
        """A random (seeded, so repeatable) uuid no namespace on the bus has."""
        taken = {ns.uuid for ns in self.namespaces()}
        while True:
            uid = uuidlib.UUID(int=self.rng.getrandbits(128), version=4)
            if uid not in taken:
                return uid

    def _write_labels(self, ns: Namespace, claim_class: str | None = None) -> None:
        r = ns.region
        if claim_class is None:
            claim_class = CLAIM_CLASS[ns.mode] if ns.mode != "raw" else "none"
        for pos, d in enumerate(r.dimms):
            labelmod.write_namespace_label(
                d.label_storage(), uuid=ns.uuid or uuidlib.UUID(int=0), name=ns.name,
                nlabel=r.ways, position=pos, isetcookie=r.iset_cookie, lbasize=ns.lbasize,
                dpa=r.spa.mappings[pos].dpa + ns.dpa_offset, rawsize=ns.size // r.ways,
                claim_class=claim_class)

    def destroy_namespace(self, dev: str, *, force: bool = False) -> Namespace:
        ns = self.namespace(dev)
        if ns.kind == "io":
            raise NotSupported(f"{ns.dev} is a label-less namespace: it spans its region and "
                               "cannot be destroyed")
        if ns.enabled and not force:
            raise Busy(f"{ns.dev} is active; use --force to disable and destroy it")
        if ns.enabled:
            self.disable_namespace(ns.dev)
        r = ns.region
        # ndctl's order: force the claim class back to none (a label rewrite), zero the
        # info-block area (the first 8 KiB, whatever the mode), then size 0 deletes the
        # labels.
        self._write_labels(ns, claim_class="none")
        ns.write_bytes(0, bytes(min(ns.size, 8192)))
        for d in r.dimms:
            labelmod.delete_namespace_label(d.label_storage(), ns.uuid or uuidlib.UUID(int=0))
        r.namespaces.remove(ns)
        self.metrics.c["nd.namespaces_destroyed"] += 1
        self.trace.emit("nd.destroy_namespace", ns=ns.dev, uuid=str(ns.uuid))
        return ns

    def enable_namespace(self, dev: str) -> Namespace:
        ns = self.namespace(dev)
        if ns.enabled:
            return ns
        if not ns.region.enabled:
            raise Busy(f"{ns.region.dev} is disabled; enable it first")
        self._detect(ns)
        self._bind(ns, self.drivers.for_mode(ns.mode))
        return ns

    def disable_namespace(self, dev: str) -> Namespace:
        ns = self.namespace(dev)
        if not ns.enabled:
            return ns
        assert ns.driver is not None
        ns.driver.detach(ns, ns.device)
        self.trace.emit("nd.disable", ns=ns.dev)
        ns.enabled, ns.driver, ns.device = False, None, None
        return ns

    def check_claim(self, ns: Namespace, mode: str) -> None:
        check_claimable(ns, mode)

    # -- regions and labels ------------------------------------------------------------

    def disable_region(self, name: str) -> Region:
        r = self.region(name)
        for ns in r.namespaces:
            self.disable_namespace(ns.dev)
        r.enabled = False
        return r

    def enable_region(self, name: str) -> Region:
        r = self.region(name)
        if r.enabled:
            return r
        r.enabled = True
        self._scan_region(r)
        for ns in r.namespaces:
            self._autobind(ns)
        return r

    def init_labels(self, dimm: str, *, version: str = "1.1", force: bool = False) -> Dimm:
        """ndctl init-labels: write empty index blocks. Refused while a region using the
        DIMM is enabled, or when labels exist and ``force`` is not given."""
        d = self.dimm(dimm)
        if version not in ("1.1", "1.2"):
            raise InvalidArgument(f"label version must be 1.1 or 1.2, not {version!r}")
        if not d.has_label_area:
            raise NotSupported(f"{d.dev} has no label area (label size 0)")
        for r in self.regions:
            if d in r.dimms and r.enabled:
                raise Busy(f"{d.dev} is in use by active {r.dev}; disable the region first")
        area = labelmod.LabelArea.load(d.label_storage())
        if area.valid and area.labels and not force:
            raise Busy(f"{d.dev} has {len(area.labels)} active labels; use --force to erase")
        labelmod.initialize(d.label_storage(), version=version)
        self.trace.emit("nd.init_labels", dimm=d.dev, version=version)
        return d

    # -- errors --------------------------------------------------------------------------

    def scrub(self) -> int:
        """Address range scrub of every region; badrange gains what firmware found."""
        found = 0
        for r in self.regions:
            self.platform.ars_start(r.spa.base, r.spa.size)
            for rec in self.platform.ars_status():
                self.badrange.add(rec.address, rec.length)
                found += 1
        self._notify_badblocks()
        return found

    def add_badrange(self, spa: int, length: int) -> None:
        self.badrange.add(spa, length)
        self._notify_badblocks()

    def clear_poison(self, spa: int, length: int) -> int:
        """nvdimm_clear_poison: clear through the platform, then forget the range."""
        unit = self.platform.ars_cap(spa, length)
        if spa % unit or length % unit:
            raise InvalidArgument(f"cannot clear poison at {spa:#x}+{length:#x}: not aligned "
                                  f"to the platform's {unit}-byte clear unit")
        cleared = self.platform.clear_error(spa, length)
        self.badrange.remove(spa, cleared)
        self.metrics.c["nd.poison_cleared_bytes"] += cleared
        self.trace.emit("nd.clear_poison", spa=spa, length=cleared)
        self._notify_badblocks()
        return cleared

    def _notify_badblocks(self) -> None:
        for ns in self.namespaces():
            refresh = getattr(ns.device, "refresh_badblocks", None)
            if refresh is not None:
                refresh()
