"""Readable differences between what the model says and what Linux says.

Two kinds: JSON-like structures (ndctl output) compared field by field, with lists of
objects matched by a key (``uuid``, ``dev``, ...) rather than by position::

    >>> print(render_diffs(diff_json(
    ...     [{"dev": "namespace0.0", "size": 251658240}],
    ...     [{"dev": "namespace0.0", "size": 250000000}])))
    namespace0.0: size: model 251658240, linux 250000000

and byte strings (images, info blocks, label areas) compared as merged byte ranges::

    >>> print(render_byte_diff(b"abcdef", b"abXdeY", merge_gap=0))
    2 differing byte ranges (model 6 bytes, linux 6 bytes):
      [0x2, 0x3) 1 byte
        model: 63
        linux: 58
      [0x5, 0x6) 1 byte
        model: 66
        linux: 59

Every conformance failure message is built from these (:func:`assert_same`,
:func:`assert_same_bytes`).
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Json = Any
Bytes = bytes | bytearray | memoryview | mmap.mmap


class _Absent:
    """Marks a field or list item that one side does not have."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Final = _Absent()

#: Keys tried, in order, to match list items: the first that every item on both sides
#: has, with values unique on each side. uuid first so that a namespace the model named
#: differently is still matched to Linux's and its ``dev`` reported as a difference.
DEFAULT_KEYS = ("uuid", "dev", "slot", "chardev", "dimm")
#: A key whose value names the item by itself (``namespace0.0``), shown without ``key=``.
SELF_NAMING_KEYS = frozenset({"dev", "chardev"})
NAMES = ("model", "linux")


@dataclass(frozen=True)
class FieldDiff:
    """One difference: where (``path``) and the two values (:data:`ABSENT` if missing)."""

    path: tuple[str, ...]
    model: Json
    linux: Json

    def render(self, names: tuple[str, str] = NAMES) -> str:
        where = ": ".join(self.path) if self.path else "(top)"
        return f"{where}: {names[0]} {_show(self.model)}, {names[1]} {_show(self.linux)}"


def _show(value: Json, limit: int = 160) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, separators=(",", ":"), sort_keys=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- JSON


def diff_json(
    model: Json,
    linux: Json,
    *,
    ignore: Collection[str] = (),
    keys: Sequence[str] = DEFAULT_KEYS,
    ordered: bool = True,
) -> list[FieldDiff]:
    """Field-by-field differences between two JSON-like values.

    Lists of objects are matched by the first of ``keys`` that works (else by position);
    with ``ordered`` a different order of matched items is itself a difference (ndctl's
    listing order is part of its output). ``ignore`` names fields skipped at any depth.
    """
    out: list[FieldDiff] = []
    _diff(model, linux, (), out, frozenset(ignore), tuple(keys), ordered)
    return out


def _same_scalar(a: Json, b: Json) -> bool:
    return (type(a) is type(b) and a == b) or (
        isinstance(a, int | float)
        and isinstance(b, int | float)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _diff(
    a: Json,
    b: Json,
    path: tuple[str, ...],
    out: list[FieldDiff],
    ignore: frozenset[str],
    keys: tuple[str, ...],
    ordered: bool,
) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in list(b) + [k for k in a if k not in b]:
            if k in ignore:
                continue
            va, vb = a.get(k, ABSENT), b.get(k, ABSENT)
            if va is ABSENT or vb is ABSENT:
                out.append(FieldDiff((*path, str(k)), va, vb))
            elif _is_object_list(va) and _is_object_list(vb):
                _diff_list(va, vb, path, str(k), out, ignore, keys, ordered)
            else:
                _diff(va, vb, (*path, str(k)), out, ignore, keys, ordered)
    elif isinstance(a, list) and isinstance(b, list):
        _diff_list(a, b, path, None, out, ignore, keys, ordered)
    elif not _same_scalar(a, b):
        out.append(FieldDiff(path, a, b))


def _is_object_list(v: Json) -> bool:
    return isinstance(v, list) and all(isinstance(x, Mapping) for x in v)


def _pick_key(a: list[Json], b: list[Json], keys: tuple[str, ...]) -> str | None:
    items = a + b
    if not items or not all(isinstance(x, Mapping) for x in items):
        return None
    for k in keys:
        if not all(isinstance(x.get(k), str | int) for x in items):
            continue
        if len({x[k] for x in a}) == len(a) and len({x[k] for x in b}) == len(b):
            return k
    return None


def _label(field: str | None, key: str, item_a: Json, item_b: Json) -> str:
    """How a matched list item is named in a path: its dev, or ``field[key=value]``."""
    for item in (item_b, item_a):  # prefer Linux's name
        if item is not ABSENT and isinstance(item.get("dev"), str):
            return str(item["dev"])
    item = item_b if item_b is not ABSENT else item_a
    value = item[key]
    if key in SELF_NAMING_KEYS:
        return str(value)
    return f"{field or ''}[{key}={value}]"


def _diff_list(
    a: list[Json],
    b: list[Json],
    path: tuple[str, ...],
    field: str | None,
    out: list[FieldDiff],
    ignore: frozenset[str],
    keys: tuple[str, ...],
    ordered: bool,
) -> None:
    key = _pick_key(a, b, keys)
    if key is None:
        base = (*path, field) if field else path
        n = max(len(a), len(b))
        for i in range(n):
            va = a[i] if i < len(a) else ABSENT
            vb = b[i] if i < len(b) else ABSENT
            at = (*base[:-1], f"{base[-1]}[{i}]") if base else (f"[{i}]",)
            if va is ABSENT or vb is ABSENT:
                out.append(FieldDiff(at, va, vb))
            else:
                _diff(va, vb, at, out, ignore, keys, ordered)
        return
    in_a = {x[key]: x for x in a}
    in_b = {x[key]: x for x in b}

    def where(ia: Json, ib: Json) -> tuple[str, ...]:
        # a self-named item (namespace0.0) stands for itself: no "namespaces" in the path
        return (*path, _label(field, key, ia, ib))

    if ordered:
        common_b = [x[key] for x in b if x[key] in in_a]
        common_a = [x[key] for x in a if x[key] in in_b]
        if common_a != common_b:
            names_a = [_label(field, key, in_a[k], in_b[k]) for k in common_a]
            names_b = [_label(field, key, in_a[k], in_b[k]) for k in common_b]
            out.append(FieldDiff((*path, f"order of {field or 'items'}"), names_a, names_b))
    for k, vb in in_b.items():
        va = in_a.get(k, ABSENT)
        if va is ABSENT:
            out.append(FieldDiff(where(ABSENT, vb), ABSENT, vb))
        else:
            _diff(va, vb, where(va, vb), out, ignore, keys, ordered)
    for k, va in in_a.items():
        if k not in in_b:
            out.append(FieldDiff(where(va, ABSENT), va, ABSENT))


def select_fields(
    items: Iterable[Mapping[str, Json]], fields: Sequence[str]
) -> list[dict[str, Json]]:
    """Each item restricted to ``fields`` (those it has), e.g. the namespace facts."""
    return [{f: item[f] for f in fields if f in item} for item in items]


def diff_namespaces(
    model: Sequence[Mapping[str, Json]],
    linux: Sequence[Mapping[str, Json]],
    *,
    fields: Sequence[str] | None = None,
    ignore: Collection[str] = (),
    ordered: bool = True,
) -> list[FieldDiff]:
    """Differences between two ``ndctl list -N`` namespace lists, matched by uuid or dev.

    ``fields`` restricts the comparison (e.g. ``golden.NAMESPACE_FIELDS``).
    """
    a: Sequence[Mapping[str, Json]] = model
    b: Sequence[Mapping[str, Json]] = linux
    if fields is not None:
        a, b = select_fields(model, fields), select_fields(linux, fields)
    return diff_json(list(a), list(b), ignore=ignore, ordered=ordered, keys=("uuid", "dev"))


def render_diffs(
    diffs: Sequence[FieldDiff], *, names: tuple[str, str] = NAMES, title: str = ""
) -> str:
    """One line per difference, under ``title`` when given; "" when there are none."""
    if not diffs:
        return ""
    lines = [d.render(names) for d in diffs]
    if title:
        count = f"{len(diffs)} difference{'s' if len(diffs) != 1 else ''}"
        lines.insert(0, f"{title}: {count}")
        lines[1:] = ["  " + line for line in lines[1:]]
    return "\n".join(lines)


def assert_same(
    model: Json,
    linux: Json,
    *,
    what: str = "model vs linux",
    names: tuple[str, str] = NAMES,
    **options: Any,
) -> None:
    """Raise AssertionError listing every field difference (``options``: :func:`diff_json`)."""
    diffs = diff_json(model, linux, **options)
    if diffs:
        raise AssertionError(render_diffs(diffs, names=names, title=what))


# --------------------------------------------------------------------------- bytes


_NONZERO = re.compile(rb"[^\x00]+")
_CHUNK = 1 << 16


def byte_ranges(
    a: Bytes,
    b: Bytes,
    *,
    merge_gap: int = 16,
    ignore: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` ranges where ``a`` and ``b`` differ, in order.

    Ranges closer than ``merge_gap`` bytes are merged; bytes past the shorter input
    differ. ``ignore`` ranges (e.g. a run-to-run uuid) are cut out first.
    """
    ma, mb = memoryview(a).cast("B"), memoryview(b).cast("B")
    n = min(len(ma), len(mb))
    raw: list[tuple[int, int]] = []
    for off in range(0, n, _CHUNK):
        end = min(off + _CHUNK, n)
        x, y = ma[off:end], mb[off:end]
        if x == y:
            continue
        xor = int.from_bytes(x, "little") ^ int.from_bytes(y, "little")
        diff = xor.to_bytes(len(x), "little")
        raw.extend((off + m.start(), off + m.end()) for m in _NONZERO.finditer(diff))
    if len(ma) != len(mb):
        raw.append((n, max(len(ma), len(mb))))
    raw = _subtract(raw, sorted(ignore))
    merged: list[tuple[int, int]] = []
    for s, e in raw:
        if merged and s - merged[-1][1] <= merge_gap:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _subtract(ranges: list[tuple[int, int]], cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in ranges:
        pieces = [(s, e)]
        for cs, ce in cuts:
            nxt = []
            for ps, pe in pieces:
                if ce <= ps or cs >= pe:
                    nxt.append((ps, pe))
                    continue
                if ps < cs:
                    nxt.append((ps, cs))
                if ce < pe:
                    nxt.append((ce, pe))
            pieces = nxt
        out.extend(pieces)
    return out


def _hex(data: bytes) -> str:
    return " ".join(f"{c:02x}" for c in data)


def render_byte_diff(
    a: Bytes,
    b: Bytes,
    *,
    names: tuple[str, str] = NAMES,
    base: int = 0,
    merge_gap: int = 16,
    ignore: Sequence[tuple[int, int]] = (),
    annotations: Sequence[tuple[int, int, str]] = (),
    max_ranges: int = 20,
    show: int = 16,
) -> str:
    """The differing ranges of :func:`byte_ranges`, with hex offsets and the first bytes.

    ``base`` is added to every offset shown (when ``a``/``b`` are a slice of an image);
    ``annotations`` are ``(start, end, name)`` structures (in shown offsets) a range is
    placed in, e.g. ``(0xffe0000, 0x10000000, "label area")`` gives ``label area+0x10``.
    Returns "" when the inputs are equal.
    """
    ranges = byte_ranges(a, b, merge_gap=merge_gap, ignore=ignore)
    if not ranges:
        return ""
    ma, mb = memoryview(a).cast("B"), memoryview(b).cast("B")
    plural = "s" if len(ranges) != 1 else ""
    lines = [
        f"{len(ranges)} differing byte range{plural} "
        f"({names[0]} {len(ma)} bytes, {names[1]} {len(mb)} bytes):"
    ]
    width = max(len(names[0]), len(names[1]))
    for s, e in ranges[:max_ranges]:
        size = e - s
        where = ""
        for As, Ae, name in annotations:
            if As <= base + s < Ae:
                where = f"  {name}+{base + s - As:#x}"
                break
        lines.append(
            f"  [{base + s:#x}, {base + e:#x}) {size} byte{'s' if size != 1 else ''}{where}"
        )
        for label, m in ((names[0], ma), (names[1], mb)):
            chunk = bytes(m[s : min(e, s + show)])
            more = " ..." if e - s > show and len(chunk) == show else ""
            shown = _hex(chunk) + more if chunk else "(past the end)"
            lines.append(f"    {label:<{width}}: {shown}")
    if len(ranges) > max_ranges:
        last = ranges[-1]
        lines.append(
            f"  ... {len(ranges) - max_ranges} more, the last "
            f"[{base + last[0]:#x}, {base + last[1]:#x})"
        )
    return "\n".join(lines)


def assert_same_bytes(a: Bytes, b: Bytes, *, what: str = "model vs linux", **options: Any) -> None:
    """Raise AssertionError with :func:`render_byte_diff` when ``a`` and ``b`` differ."""
    text = render_byte_diff(a, b, **options)
    if text:
        raise AssertionError(f"{what}: {text}")
