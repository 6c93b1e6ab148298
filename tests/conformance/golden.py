"""The golden images real Linux wrote, and what Linux said about them.

``../shared/golden`` (next to the repository; or ``$NVDIMM_GOLDEN_DIR``) holds, per case,
``<case>.img.gz`` (a QEMU NVDIMM backing file after real Linux and ndctl worked on it),
``<case>.ndctl.txt`` (everything the guest printed, as an ``sh -x`` trace) and
``<case>.layout.json``; plus ``README.md`` (a table of cases), ``SHA256SUMS`` (of the
uncompressed images) and ``pattern-1M.bin.gz`` (the data written to the namespaces).

:func:`load_case` gives a :class:`GoldenCase`; :func:`linux_report` parses its
``ndctl.txt`` into a :class:`LinuxReport` of the facts the model must reproduce;
:func:`image` gunzips its image once per session (sparse, checksum verified).

    case = load_case("multi")
    report = linux_report(case)
    [ns["dev"] for ns in report.namespaces]  # ['namespace0.2', 'namespace0.1', ...]
"""

from __future__ import annotations

import atexit
import functools
import gzip
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conformance.oracle import Json, Section, parse_sections

GOLDEN_ENV = "NVDIMM_GOLDEN_DIR"
#: /work/shared/golden when the repository is /work/main.
DEFAULT_GOLDEN_DIR = Path(__file__).resolve().parents[3] / "shared" / "golden"

#: The namespace fields of ``ndctl list -N -v`` a conformance check compares.
NAMESPACE_FIELDS = (
    "dev",
    "mode",
    "size",
    "uuid",
    "raw_uuid",
    "sector_size",
    "map",
    "align",
    "blockdev",
    "name",
)

#: ``run_guest.sh -L`` value for a labelled case (README: 128 KiB unless label-less).
LABEL_SIZE = "128K"
LABEL_SIZE_BYTES = 128 * 1024
#: Inside the guest, the pattern file is /in/<this>.
PATTERN_NAME = "pattern-1M.bin"

_HEX64 = re.compile(r"^([0-9a-f]{64})\s+-$", re.MULTILINE)
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- locating


def golden_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The golden folder (``$NVDIMM_GOLDEN_DIR`` or ``../shared/golden``), if it exists."""
    env = os.environ if environ is None else environ
    value = env.get(GOLDEN_ENV, "").strip()
    path = Path(value).expanduser() if value else DEFAULT_GOLDEN_DIR
    return path if (path / "README.md").is_file() else None


def require_golden_dir() -> Path:
    """The golden folder, or skip the calling test saying where it was looked for."""
    path = golden_dir()
    if path is None:
        pytest.skip(f"no golden images: neither ${GOLDEN_ENV} nor {DEFAULT_GOLDEN_DIR} exists")
    return path


def case_names(directory: Path | None = None) -> list[str]:
    """Every case in the golden folder (those with an image and an ndctl.txt), sorted.

    Empty when there is no golden folder, so it can feed ``pytest.mark.parametrize``.
    """
    d = golden_dir() if directory is None else directory
    if d is None:
        return []
    return sorted(
        p.name.removesuffix(".ndctl.txt")
        for p in d.glob("*.ndctl.txt")
        if (d / p.name.replace(".ndctl.txt", ".img.gz")).is_file()
    )


# --------------------------------------------------------------------------- README


@dataclass(frozen=True)
class ReadmeRow:
    """One row of the README's table of cases."""

    case: str
    labels: str  # "v1.1", "v1.2" or "none"
    action: str  # what Linux did, as the README says it
    pattern_to: str | None  # "/dev/pmem0s", "sector and fsdax ones", or None


@functools.cache
def readme_table(directory: Path) -> dict[str, ReadmeRow]:
    """The README's table of cases, by case name."""
    rows: dict[str, ReadmeRow] = {}
    for line in (directory / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not line.lstrip().startswith("|"):
            continue
        case, labels, action, pattern = cells
        if case in ("case", "") or set(case) <= set("- "):
            continue
        rows[case] = ReadmeRow(case, labels, action, None if pattern in ("-", "") else pattern)
    return rows


@functools.cache
def pattern_sha256(directory: Path) -> str:
    """The pattern's sha256 as the README states it."""
    m = re.search(r"sha256 is ([0-9a-f]{64})", (directory / "README.md").read_text())
    if m is None:
        raise ValueError(f"{directory / 'README.md'}: no pattern sha256")
    return m.group(1)


@functools.cache
def sha256sums(directory: Path) -> dict[str, str]:
    """``SHA256SUMS``: uncompressed image name (``raw.img``) -> sha256."""
    sums: dict[str, str] = {}
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


@functools.cache
def pattern_bytes(directory: Path | None = None) -> bytes:
    """The 1 MiB test pattern, checked against the README's sha256."""
    d = require_golden_dir() if directory is None else directory
    data = gzip.decompress((d / f"{PATTERN_NAME}.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != pattern_sha256(d):
        raise ValueError(f"{d / PATTERN_NAME}.gz does not match the README's sha256")
    return data


def pattern_file(directory: Path | None = None) -> Path:
    """The pattern as a file named ``pattern-1M.bin`` (for ``oracle.run(files=...)``)."""
    path = _session_dir() / PATTERN_NAME
    if not path.exists():
        path.write_bytes(pattern_bytes(directory))
    return path


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class GoldenCase:
    """One golden case: its files and how its DIMM was set up."""

    name: str
    directory: Path
    labels: str  # "v1.1", "v1.2" or "none" (label-less DIMM)
    action: str
    pattern_to: str | None
    image_sha256: str

    @property
    def image_gz(self) -> Path:
        return self.directory / f"{self.name}.img.gz"

    @property
    def ndctl_txt(self) -> Path:
        return self.directory / f"{self.name}.ndctl.txt"

    @property
    def layout_json(self) -> Path:
        return self.directory / f"{self.name}.layout.json"

    @property
    def labelled(self) -> bool:
        return self.labels != "none"

    @property
    def label_size(self) -> str:
        """The ``run_guest.sh -L`` / ``import-image --label-size`` value: "128K" or "0"."""
        return LABEL_SIZE if self.labelled else "0"

    @property
    def label_size_bytes(self) -> int:
        return LABEL_SIZE_BYTES if self.labelled else 0


def load_case(name: str, directory: Path | None = None) -> GoldenCase:
    """The case ``name``; KeyError when the README's table or SHA256SUMS lacks it."""
    d = require_golden_dir() if directory is None else directory
    row = readme_table(d).get(name)
    if row is None:
        raise KeyError(f"golden case {name!r} is not in {d / 'README.md'}")
    return GoldenCase(
        name=name,
        directory=d,
        labels=row.labels,
        action=row.action,
        pattern_to=row.pattern_to,
        image_sha256=sha256sums(d)[f"{name}.img"],
    )


def all_cases(directory: Path | None = None) -> list[GoldenCase]:
    return [load_case(n, directory) for n in case_names(directory)]


# --------------------------------------------------------------------------- images


@functools.cache
def _session_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="nvdimm-golden-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def gunzip_sparse(src: Path, dest: Path) -> str:
    """Decompress ``src`` to ``dest`` leaving zero MiBs as holes; return the sha256."""
    digest = hashlib.sha256()
    zero = bytes(_CHUNK)
    size = 0
    with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            if chunk == zero[: len(chunk)]:
                fout.seek(len(chunk), os.SEEK_CUR)
            else:
                fout.write(chunk)
            size += len(chunk)
        fout.truncate(size)
    return digest.hexdigest()


_images: dict[tuple[Path, str], Path] = {}


def image(case: GoldenCase) -> Path:
    """The case's uncompressed image, made once per session and shared: do not write it.

    Its sha256 is checked against ``SHA256SUMS``. For a writable image use
    :func:`image_copy`; for the oracle, ``run(..., read_only=True)`` leaves it untouched.
    """
    key = (case.directory, case.name)
    path = _images.get(key)
    if path is None:
        path = _session_dir() / f"{case.name}.img"
        digest = gunzip_sparse(case.image_gz, path)
        if digest != case.image_sha256:
            path.unlink()
            raise ValueError(
                f"{case.image_gz}: sha256 {digest}, SHA256SUMS says {case.image_sha256}"
            )
        _images[key] = path
    return path


def image_copy(case: GoldenCase, dest: Path) -> Path:
    """A private writable copy of the case's image at ``dest`` (sparse where zero)."""
    gunzip_sparse(case.image_gz, dest)
    return dest


# --------------------------------------------------------------------------- ndctl.txt


@dataclass(frozen=True)
class CheckResult:
    """One ``ndctl check-namespace`` run and whether it passed (``checked 1 namespace``)."""

    namespace: str
    ok: bool
    output: str


@dataclass(frozen=True)
class PatternWrite:
    """``dd if=/in/pattern-1M.bin of=/dev/BLOCKDEV``; ``namespace`` from the final list."""

    blockdev: str
    namespace: str | None


@dataclass(frozen=True)
class Readback:
    """``dd if=/dev/BLOCKDEV ... | sha256sum``: the hash Linux read back."""

    blockdev: str
    sha256: str


@dataclass(frozen=True)
class LinuxReport:
    """What Linux reported in one ``ndctl.txt``: the facts the model must reproduce."""

    sections: list[Section]
    listing: Json  # the final `ndctl list -DRN -v`
    created: list[Json]  # `ndctl create-namespace` outputs, in order
    labels: Json  # `ndctl read-labels -j` (None: "read 0 nmem", label-less)
    checks: list[CheckResult]
    pattern_writes: list[PatternWrite]
    readbacks: list[Readback]
    infoblocks: list[Json]  # `ndctl read-infoblock -j` entries that succeeded
    sysfs: dict[str, str] = field(default_factory=dict)  # `cat /sys/...` path -> value

    @property
    def dimms(self) -> list[Json]:
        return list(self.listing.get("dimms", [])) if self.listing else []

    @property
    def regions(self) -> list[Json]:
        return list(self.listing.get("regions", [])) if self.listing else []

    @property
    def namespaces(self) -> list[Json]:
        """All namespaces of the final listing, in the order ndctl printed them."""
        return [ns for r in self.regions for ns in r.get("namespaces", [])]

    def namespace_facts(self) -> list[dict[str, Json]]:
        """:data:`NAMESPACE_FIELDS` of each namespace (those Linux printed), in order."""
        return [namespace_facts(ns) for ns in self.namespaces]


def namespace_facts(ns: Mapping[str, Json]) -> dict[str, Json]:
    """The :data:`NAMESPACE_FIELDS` present in one ``ndctl list`` namespace object."""
    return {k: ns[k] for k in NAMESPACE_FIELDS if k in ns}


def _is(section: Section, *words: str) -> bool:
    return section.argv[: len(words)] == list(words)


def _dd_arg(section: Section, key: str) -> str | None:
    for a in section.argv[1:]:
        if a.startswith(f"{key}="):
            return a[len(key) + 1 :]
    return None


def _blockdev(path: str) -> str:
    return path.removeprefix("/dev/")


def parse_ndctl_txt(text: str) -> LinuxReport:
    """Parse a golden ``ndctl.txt`` (an ``sh -x`` trace of the guest) into facts."""
    sections = parse_sections(text)
    listings = [s for s in sections if _is(s, "ndctl", "list", "-DRN", "-v")]
    if not listings:
        raise ValueError("no `ndctl list -DRN -v` in the trace")
    listing = listings[-1].json

    labels: Json = None
    for s in sections:
        if _is(s, "ndctl", "read-labels") and "-j" in s.argv:
            labels = s.json

    checks = [
        CheckResult(s.argv[-1], "checked 1 namespace" in s.text, s.output)
        for s in sections
        if _is(s, "ndctl", "check-namespace")
    ]

    by_blockdev = {
        ns["blockdev"]: ns["dev"]
        for r in (listing or {}).get("regions", [])
        for ns in r.get("namespaces", [])
        if "blockdev" in ns
    }
    writes = []
    readbacks = []
    for i, s in enumerate(sections):
        if not _is(s, "dd"):
            continue
        src, dst = _dd_arg(s, "if"), _dd_arg(s, "of")
        if src == f"/in/{PATTERN_NAME}" and dst is not None:
            writes.append(PatternWrite(_blockdev(dst), by_blockdev.get(_blockdev(dst))))
        elif src is not None and src.startswith("/dev/") and dst is None:
            # `dd ... | sha256sum`: the hash lands after whichever stage was traced last
            near = [s] + [
                sections[j]
                for j in (i - 1, i + 1)
                if 0 <= j < len(sections) and _is(sections[j], "sha256sum")
            ]
            for n in near:
                m = _HEX64.search(n.output)
                if m:
                    readbacks.append(Readback(_blockdev(src), m.group(1)))
                    break

    infoblocks: list[Json] = []
    for s in sections:
        if _is(s, "ndctl", "read-infoblock") and isinstance(s.json, list):
            infoblocks.extend(s.json)

    sysfs: dict[str, str] = {}
    for s in sections:
        paths = s.argv[1:]
        if _is(s, "cat") and paths and all(p.startswith("/sys/") for p in paths):
            values = s.output.splitlines()
            if len(values) == len(paths):
                sysfs.update(zip(paths, values, strict=True))

    return LinuxReport(
        sections=sections,
        listing=listing,
        created=[s.json for s in sections if _is(s, "ndctl", "create-namespace")],
        labels=labels,
        checks=checks,
        pattern_writes=writes,
        readbacks=readbacks,
        infoblocks=infoblocks,
        sysfs=sysfs,
    )


_reports: dict[Path, LinuxReport] = {}


def linux_report(case: GoldenCase) -> LinuxReport:
    """:func:`parse_ndctl_txt` of the case's ``ndctl.txt`` (parsed once per session)."""
    report = _reports.get(case.ndctl_txt)
    if report is None:
        report = _reports[case.ndctl_txt] = parse_ndctl_txt(case.ndctl_txt.read_text())
    return report
