"""The model reads every golden image as real Linux did.

For each case of ``../shared/golden`` the model imports the image (``Machine.import_image``
with the case's label size) and what it reports is compared, field by field, with what
Linux printed in ``<case>.ndctl.txt``:

- the DIMMs, the region (without its namespaces) and ``read-labels``: these do not depend
  on a namespace's personality, so they must match for every case;
- each namespace: its identity (dev, mode, name, numa/target node) must match always; the
  fields a personality decides (size, uuid, raw_uuid, sector_size, blockdev, map, align...)
  and the whole ``ndctl list -DRN -v`` must match, except where the namespace's mode is one
  whose driver the model has not got yet: then the difference is an expected failure
  naming the issue that brings it (sector: issue 4, fsdax and devdax: issue 5). Once the
  model registers that mode's driver the same checks are strict, with no edit here;
- the first MiB of every block device Linux wrote the pattern to reads back as the pattern.

Nothing boots Linux here: the facts come from the golden files.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from nvdimm import ndctl
from nvdimm.claim import MODE_ISSUE
from nvdimm.errors import NvdimmError
from nvdimm.machine import Machine
from tests.conformance import golden
from tests.conformance.fielddiff import (
    FieldDiff,
    diff_json,
    render_byte_diff,
    render_diffs,
)

pytestmark = pytest.mark.golden

CASES = golden.case_names()

#: ``ndctl list -N`` fields that name a namespace whatever its personality: always strict.
IDENTITY_FIELDS = ("dev", "mode", "name", "numa_node", "target_node")
#: Everything else ndctl prints about a namespace is the personality's (or its absence:
#: ``state: disabled`` when the model has no driver to bind).

PATTERN_LEN = 1 << 20


# --------------------------------------------------------------------------- helpers


@functools.cache
def model(name: str) -> Machine:
    """The model's machine on the case's image (imported once; the file is only read)."""
    case = golden.load_case(name)
    return Machine.import_image(golden.image(case), label_size=case.label_size_bytes)


def model_listing(name: str, *, idle: bool = False) -> Any:
    """The model's ``ndctl list -DRN -v`` (``-i`` with ``idle``)."""
    return ndctl.list_(
        model(name), dimms=True, regions=True, namespaces=True, verbose=True, idle=idle
    )


def pending(machine: Machine, mode: str) -> str | None:
    """Why ``mode`` cannot match yet (its driver's issue has not landed), or None."""
    if mode == "raw" or mode in machine.drivers.drivers:
        return None
    issue = MODE_ISSUE.get(mode)
    return f"{mode} personality is not modelled yet (issue {issue})"


def key_order_diffs(model_value: Any, linux_value: Any, path: str = "") -> list[str]:
    """Objects whose keys are the same but printed in another order (ndctl's order is
    part of its output). Lists are walked by position: call after the fields agree."""
    out: list[str] = []
    if isinstance(model_value, Mapping) and isinstance(linux_value, Mapping):
        if set(model_value) == set(linux_value) and list(model_value) != list(linux_value):
            out.append(
                f"{path or '(top)'}: key order: model {list(model_value)}, "
                f"linux {list(linux_value)}"
            )
        for k in linux_value:
            if k in model_value:
                out += key_order_diffs(model_value[k], linux_value[k], f"{path}.{k}")
    elif isinstance(model_value, list) and isinstance(linux_value, list):
        for i, (a, b) in enumerate(zip(model_value, linux_value, strict=False)):
            label = b.get("dev", i) if isinstance(b, Mapping) else i
            out += key_order_diffs(a, b, f"{path}[{label}]")
    return out


def differences(model_value: Any, linux_value: Any, **options: Any) -> str:
    """Every field difference, then every key-order difference; "" when identical."""
    diffs: list[FieldDiff] = diff_json(model_value, linux_value, **options)
    text = render_diffs(diffs)
    if not diffs:
        text = "\n".join(key_order_diffs(model_value, linux_value))
    return text


def strip_namespaces(regions: list[Any]) -> list[Any]:
    return [{k: v for k, v in r.items() if k != "namespaces"} for r in regions]


def namespace_params() -> Iterator[Any]:
    for name in CASES:
        for ns in golden.linux_report(golden.load_case(name)).namespaces:
            yield pytest.param(name, ns["dev"], id=f"{name}/{ns['dev']}")


def pattern_params() -> Iterator[Any]:
    for name in CASES:
        for w in golden.linux_report(golden.load_case(name)).pattern_writes:
            yield pytest.param(name, w.blockdev, w.namespace, id=f"{name}/{w.blockdev}")


def readback_params() -> Iterator[Any]:
    for name in CASES:
        for rb in golden.linux_report(golden.load_case(name)).readbacks:
            yield pytest.param(name, rb.blockdev, rb.sha256, id=f"{name}/{rb.blockdev}")


def linux_namespace(name: str, dev: str) -> dict[str, Any]:
    report = golden.linux_report(golden.load_case(name))
    (ns,) = [ns for ns in report.namespaces if ns["dev"] == dev]
    return dict(ns)


def model_namespace(name: str, dev: str) -> dict[str, Any] | None:
    """The namespace as the model lists it with ``-i`` (so inactive ones are there)."""
    listing = ndctl.list_(model(name), namespaces=True, verbose=True, idle=True) or []
    for ns in listing:
        if ns["dev"] == dev:
            return dict(ns)
    return None


# --------------------------------------------------------------------------- strict


@pytest.mark.parametrize("name", CASES)
def test_dimms_are_listed_as_linux_listed_them(name: str) -> None:
    linux = golden.linux_report(golden.load_case(name))
    text = differences(model_listing(name)["dimms"], linux.dimms)
    assert not text, f"{name}: ndctl list -D:\n{text}"


@pytest.mark.parametrize("name", CASES)
def test_region_is_listed_as_linux_listed_it(name: str) -> None:
    """Size, align, available capacity (from the labels), iset_id, mappings: every field
    of the region but its namespaces, for every case whatever the personality."""
    linux = golden.linux_report(golden.load_case(name))
    mine = model_listing(name)["regions"]
    text = differences(strip_namespaces(mine), strip_namespaces(linux.regions))
    assert not text, f"{name}: ndctl list -R -v (namespaces left out):\n{text}"


@pytest.mark.parametrize("name", CASES)
def test_read_labels_is_what_linux_printed(name: str) -> None:
    """``ndctl read-labels -j -u nmem0``; label-less: no JSON at all ("read 0 nmem")."""
    linux = golden.linux_report(golden.load_case(name))
    mine = ndctl.read_labels(model(name), "nmem0")
    text = differences(mine, linux.labels)
    assert not text, f"{name}: ndctl read-labels -j -u nmem0:\n{text}"


@pytest.mark.parametrize(("name", "dev"), list(namespace_params()))
def test_namespace_identity_matches_whatever_the_personality(name: str, dev: str) -> None:
    """The model finds every namespace Linux listed, under the same name, and detects its
    mode from the info-block signature even without the personality's driver."""
    linux = linux_namespace(name, dev)
    mine = model_namespace(name, dev)
    assert mine is not None, (
        f"{name}: the model has no {dev} (Linux listed {linux}); "
        f"model: {json.dumps(ndctl.list_(model(name), idle=True, verbose=True))}"
    )
    fields = [f for f in IDENTITY_FIELDS if f in linux or f in mine]
    text = differences({f: mine.get(f) for f in fields}, {f: linux.get(f) for f in fields})
    assert not text, f"{name}: {dev}:\n{text}"


# --------------------------------------------------------------------------- by mode


@pytest.mark.parametrize(("name", "dev"), list(namespace_params()))
def test_namespace_personality_fields_match(name: str, dev: str) -> None:
    """All of ``ndctl list -N -v`` for one namespace, key order included. The model's
    entry is the active one; an inactive namespace (no driver) shows ``state``."""
    linux = linux_namespace(name, dev)
    mine = model_namespace(name, dev)
    assert mine is not None, f"{name}: the model has no {dev}"
    text = differences(mine, linux)
    if not text:
        return
    why = pending(model(name), linux["mode"])
    if why:
        pytest.xfail(f"{name}: {dev}: {why}; differs in: {text.splitlines()[0]}")
    raise AssertionError(f"{name}: {dev} (mode {linux['mode']}):\n{text}")


@pytest.mark.parametrize("name", CASES)
def test_whole_listing_is_what_linux_printed(name: str) -> None:
    """``ndctl list -DRN -v`` exactly: the same objects, fields, namespace order and key
    order (only active namespaces are listed, as ndctl does without ``-i``)."""
    linux = golden.linux_report(golden.load_case(name))
    text = differences(model_listing(name), linux.listing)
    if not text:
        return
    reasons = sorted(
        {why for ns in linux.namespaces if (why := pending(model(name), ns["mode"])) is not None}
    )
    if reasons:
        pytest.xfail(f"{name}: {'; '.join(reasons)}")
    raise AssertionError(f"{name}: ndctl list -DRN -v:\n{text}")


@pytest.mark.parametrize(("name", "blockdev", "dev"), list(pattern_params()))
def test_block_device_reads_back_the_pattern_linux_wrote(
    name: str, blockdev: str, dev: str | None
) -> None:
    """The first MiB of the block device Linux wrote the pattern to (``dd bs=4096``)."""
    assert dev is not None, f"{name}: /dev/{blockdev} is in no namespace of the listing"
    machine = model(name)
    mode = linux_namespace(name, dev)["mode"]
    why = pending(machine, mode)
    try:
        disk = machine.block_device(dev)
    except NvdimmError as e:
        if why:
            pytest.xfail(f"{name}: /dev/{blockdev}: {why} ({e})")
        raise
    data = bytes(disk.read(0, PATTERN_LEN))
    pattern = golden.pattern_bytes()
    if data == pattern and disk.name == blockdev:
        return
    problem = (
        f"{name}: the model's {dev} is /dev/{disk.name}, Linux's /dev/{blockdev}"
        if disk.name != blockdev
        else f"{name}: /dev/{blockdev}, first MiB: " + render_byte_diff(data, pattern, max_ranges=5)
    )
    if why:
        pytest.xfail(f"{why}: {problem.splitlines()[0]}")
    raise AssertionError(problem)


@pytest.mark.parametrize(("name", "blockdev", "sha256"), list(readback_params()))
def test_readback_hashes_linux_printed_are_the_models(
    name: str, blockdev: str, sha256: str
) -> None:
    """Where the trace hashed a block device (``dd bs=4096 count=256 | sha256sum``), the
    model's first MiB of it hashes the same."""
    report = golden.linux_report(golden.load_case(name))
    (ns,) = [ns for ns in report.namespaces if ns.get("blockdev") == blockdev]
    machine = model(name)
    why = pending(machine, ns["mode"])
    try:
        data = bytes(machine.block_device(ns["dev"]).read(0, PATTERN_LEN))
    except NvdimmError as e:
        if why:
            pytest.xfail(f"{name}: /dev/{blockdev}: {why} ({e})")
        raise
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256 and why:
        pytest.xfail(f"{name}: /dev/{blockdev}: {why}")
    assert digest == sha256, f"{name}: /dev/{blockdev}: model {digest}, linux {sha256}"
