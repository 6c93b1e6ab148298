"""Side by side: an experiment's results, one column per configuration.

:func:`compare` turns :class:`~nvdimm.explore.experiment.Results` into a
:class:`Comparison`: sections of rows (what the data looked like after recovery, bytes
lost, invariant violations, modeled cost, the workload's notes, every metric and trace
event), one cell per configuration, aggregated over seeds. It renders as a terminal
table, Markdown, JSON (with the full results, so it can be reloaded), and, with the
optional extra ``plot`` (matplotlib), a PNG or SVG of the sections where a picture says
more.

In the metrics, trace and notes sections, rows that are equal in every configuration
are left out (and counted) unless ``all_rows`` is set: the point is what changed.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from nvdimm.errors import InvalidArgument
from nvdimm.explore.cost import PRESETS, format_ns
from nvdimm.explore.experiment import Results, RunResult, config_label
from nvdimm.explore.optional import require


@attrs.frozen(slots=True)
class Row:
    label: str
    cells: tuple[str, ...]
    values: tuple[float | None, ...]  # numbers behind the cells, for plots and tests


@attrs.frozen(slots=True)
class Section:
    title: str
    rows: tuple[Row, ...]
    hidden: int = 0  # rows equal in every configuration, left out
    plot: bool = False
    note: str = ""
    ylabel: str = ""  # what a plot of this section counts


@attrs.frozen(slots=True)
class Comparison:
    experiment: str
    keys: tuple[str, ...]
    configs: tuple[dict[str, Any], ...]
    runs: tuple[int, ...]  # runs per configuration
    sections: tuple[Section, ...]
    results: Results
    headline: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(config_label(c) for c in self.configs)

    def section(self, title_prefix: str) -> Section:
        for s in self.sections:
            if s.title.startswith(title_prefix):
                return s
        raise InvalidArgument(f"no section {title_prefix!r}; sections: "
                              f"{', '.join(s.title for s in self.sections)}")

    def row(self, title_prefix: str, label: str) -> dict[str, float | None]:
        """One row's numbers by column label (``{"adr nothing": 0.0, ...}``)."""
        for r in self.section(title_prefix).rows:
            if r.label == label:
                return dict(zip(self.columns, r.values, strict=True))
        raise InvalidArgument(f"no row {label!r} in section {title_prefix!r}")

    # -- renderings ----------------------------------------------------------------------

    def table(self) -> str:
        """Aligned plain text for a terminal."""
        labels = (["  " + r.label for s in self.sections for r in s.rows]
                  + list(self.keys) + [""])
        lw = max(len(x) for x in labels) + 1
        widths = [max([len(str(c.get(k, ""))) for k in self.keys] + [4] +
                      [len(r.cells[i]) for s in self.sections for r in s.rows])
                  for i, c in enumerate(self.configs)]
        out = [f"{self.experiment}: {len(self.configs)} configurations, "
               f"{sum(self.runs)} runs (seeds {_seeds(self.results.seeds)})"]
        if self.results.description:
            out.append(_wrap(self.results.description))
        out.append("")

        def line(label: str, cells: Sequence[str]) -> str:
            body = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
            return f"{label:<{lw}}| {body}".rstrip()

        for k in self.keys:
            out.append(line(k, [str(c[k]) for c in self.configs]))
        if not self.keys:
            out.append(line("", ["base"]))
        out.append("-" * (lw + 2 + sum(widths) + 2 * (len(widths) - 1)))
        for s in self.sections:
            out.append(s.title)
            for r in s.rows:
                out.append(line("  " + r.label, r.cells))
            if s.hidden:
                out.append(f"  ({s.hidden} rows equal in every configuration not shown)")
            if s.note:
                out.append(textwrap.fill(s.note, 88, initial_indent="  ",
                                         subsequent_indent="  "))
        if self.headline:
            out += ["", _wrap(self.headline)]
        return "\n".join(out)

    def markdown(self) -> str:
        cols = self.columns
        out = [f"## Experiment `{self.experiment}`", ""]
        if self.results.description:
            out += [_wrap(self.results.description), ""]
        out += [f"{len(self.configs)} configurations ({', '.join(self.keys) or 'base'}), "
                f"{sum(self.runs)} runs, seeds {_seeds(self.results.seeds)}.", ""]
        for s in self.sections:
            out += [f"### {s.title}", ""]
            out.append("| | " + " | ".join(f"`{c}`" for c in cols) + " |")
            out.append("|---|" + "---:|" * len(cols))
            for r in s.rows:
                out.append(f"| {_md(r.label)} | " + " | ".join(_md(c) for c in r.cells) + " |")
            if s.hidden:
                out += ["", f"{s.hidden} rows equal in every configuration not shown."]
            if s.note:
                out += ["", _md(s.note)]
            out.append("")
        if self.headline:
            out += [_wrap(self.headline), ""]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "keys": list(self.keys),
            "configs": [dict(c) for c in self.configs],
            "columns": list(self.columns),
            "runs": list(self.runs),
            "headline": self.headline,
            "sections": [{"title": s.title, "hidden": s.hidden, "note": s.note,
                          "rows": [{"label": r.label, "cells": list(r.cells),
                                    "values": list(r.values)} for r in s.rows]}
                         for s in self.sections],
            "results": self.results.to_dict(),
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self, path: str | Path) -> Path:
        """Bar charts of the plottable sections, one panel each, saved to ``path``
        (format from its suffix: .png, .svg, .pdf). Needs the extra ``plot``."""
        mpl = require("matplotlib", "plot", "plotting a comparison")
        mpl.use("Agg")
        plt = require("matplotlib.pyplot", "plot", "plotting a comparison")
        panels = [s for s in self.sections if s.plot and s.rows]
        if not panels:
            raise InvalidArgument(f"experiment {self.experiment!r} has nothing to plot")
        cols = self.columns
        widest = max(len(s.rows) for s in panels) * len(cols)
        fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                                 figsize=(min(14.0, max(7.0, 0.35 * widest)), 3.4 * len(panels)))
        width = 0.8 / max(1, len(cols))
        for ax, s in zip(axes[:, 0], panels, strict=True):
            xs = range(len(s.rows))
            for i, col in enumerate(cols):
                ax.bar([x + i * width for x in xs],
                       [r.values[i] or 0 for r in s.rows], width, label=col)
            ax.set_xticks([x + width * (len(cols) - 1) / 2 for x in xs])
            ax.set_xticklabels([r.label for r in s.rows], rotation=20, ha="right",
                               fontsize=8)
            ax.set_title(s.title, fontsize=9)
            if s.ylabel:
                ax.set_ylabel(s.ylabel, fontsize=8)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"nvdimm explore {self.experiment}", fontsize=10)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
        plt.close(fig)
        return out


def _wrap(text: str, width: int = 88) -> str:
    """Re-flow prose (paragraphs separated by blank lines) to ``width`` columns."""
    paras = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(textwrap.fill(p, width) for p in paras if p)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def _seeds(seeds: Sequence[int]) -> str:
    s = list(seeds)
    if len(s) > 2 and s == list(range(s[0], s[0] + len(s))):
        return f"{s[0]}..{s[-1]}"
    return ",".join(map(str, s))


# -- numbers ----------------------------------------------------------------------------


def _mean(vals: Sequence[Any]) -> Any:
    """The mean, exact for equal values (crash-image counts overflow floats)."""
    if not vals:
        return None
    if all(v == vals[0] for v in vals):
        return vals[0]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return None
    if any(isinstance(v, int) and abs(v) > 10**300 for v in vals):
        return sum(int(v) for v in vals) // len(vals)
    return sum(vals) / len(vals)


def fmt_number(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and abs(v) >= 10**12:
        d = str(abs(v))
        return f"{'-' if v < 0 else ''}{d[0]}.{d[1:3]}e{len(d) - 1}"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}" if abs(v) >= 1e6 or abs(v) < 0.01 else f"{v:,.2f}".rstrip("0")
    return f"{int(v):,}"


def fmt_bytes(v: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g} B" if v else "0"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return float("inf")


# -- building the sections ----------------------------------------------------------------


Groups = list[tuple[dict[str, Any], list[RunResult]]]


def _row(label: str, groups: Groups, get: Callable[[RunResult], Any],
         fmt: Callable[[Any], str] = fmt_number) -> Row:
    means = [_mean([get(r) for r in runs]) for _, runs in groups]
    return Row(label, tuple(fmt(m) if m is not None else "-" for m in means),
               tuple(_num(m) for m in means))


def _lost_in(group: str) -> Callable[[RunResult], Any]:
    return lambda r: r.bytes_lost(group)


def _modeled(preset: str) -> Callable[[RunResult], Any]:
    return lambda r: r.cost[preset].modeled_ns if preset in r.cost else None


def _access(preset: str, attr: str) -> Callable[[RunResult], Any]:
    return lambda r: getattr(r.cost[preset].accesses, attr) if preset in r.cost else None


def _keyed(get: Callable[[RunResult], dict[str, Any]], key: str) -> Callable[[RunResult], Any]:
    return lambda r: get(r).get(key, 0)


def _data_sections(groups: Groups) -> list[Section]:
    names: dict[str, bool] = {}
    for _, runs in groups:
        for r in runs:
            for c in r.checks:
                names[c.group] = names.get(c.group, False) or c.durable
    if not names:
        return []
    rows = []
    corrupt = any(c.status == "corrupt" for _, runs in groups for r in runs for c in r.checks)
    for g, durable in names.items():
        cells, values = [], []
        for _, runs in groups:
            tot = {"intact": 0, "torn": 0, "lost": 0, "corrupt": 0}
            for r in runs:
                for k, v in r.status_counts(g).items():
                    tot[k] += v
            cell = f"{tot['intact']}/{tot['torn']}/{tot['lost']}"
            if corrupt:
                cell += f"/{tot['corrupt']}"
            cells.append(cell)
            values.append(float(tot["torn"] + tot["lost"] + tot["corrupt"]))
        rows.append(Row(g + (" *" if durable else ""), tuple(cells), tuple(values)))
    what = "intact/torn/lost" + ("/corrupt" if corrupt else "")
    note = "marked *: promised durable (a violation if not intact)"
    data = Section(f"data after recovery: checks {what}, summed over seeds", tuple(rows),
                   plot=True, note=note if any(names.values()) else "",
                   ylabel="checks not intact")
    lost_rows = [_row(g, groups, _lost_in(g), fmt_bytes) for g in names]
    shown = [r for r in lost_rows if any(v for v in r.values)]
    total = _row("all checks", groups, lambda r: r.bytes_lost(), fmt_bytes)
    lost = Section("bytes lost (mean per run)", (*shown, total),
                   hidden=len(lost_rows) - len(shown), plot=True, ylabel="bytes")
    return [data, lost]


def _invariant_section(groups: Groups) -> Section | None:
    names: list[str] = []
    for _, runs in groups:
        for r in runs:
            names += [n for n in r.violations if n not in names]
    rows = []
    for n in names:
        cells, values = [], []
        for _, runs in groups:
            bad = sum(1 for r in runs if r.violations.get(n))
            cells.append(f"{bad}/{len(runs)}")
            values.append(float(bad))
        rows.append(Row(n, tuple(cells), tuple(values)))
    errors = [sum(1 for r in runs if r.error) for _, runs in groups]
    if any(errors):
        rows.append(Row("workload failed", tuple(f"{e}/{len(runs)}" for e, (_, runs)
                                                 in zip(errors, groups, strict=True)),
                        tuple(float(e) for e in errors)))
    if not rows:
        return None
    return Section("invariants: runs with violations", tuple(rows), plot=True,
                   ylabel="runs")


def _cost_section(groups: Groups) -> Section | None:
    presets: list[str] = []
    for _, runs in groups:
        for r in runs:
            presets += [p for p in r.cost if p not in presets]
    if not presets:
        return None
    rows = [_row(p, groups, _modeled(p), format_ns) for p in presets]
    first = presets[0]
    for label, attr in (("lines read", "lines_read"), ("lines written", "lines_written"),
                        ("read operations", "read_ops"), ("fences", "fences"),
                        ("flush-hint writes", "flush_hints")):
        rows.append(_row(f"  {label}", groups, _access(first, attr)))
    note = "; ".join(f"{p}: {PRESETS[p].label}" for p in presets if p in PRESETS)
    return Section("modeled cost per run (mean; a model output, not wall-clock time)",
                   tuple(rows), plot=False, note=note)


def _keyed_section(title: str, groups: Groups, get: Callable[[RunResult], dict[str, Any]],
                   all_rows: bool) -> Section | None:
    keys: list[str] = []
    for _, runs in groups:
        for r in runs:
            keys += [k for k in get(r) if k not in keys]
    if not keys:
        return None
    rows = [_row(k, groups, _keyed(get, k)) for k in keys]
    if all_rows or len(groups) < 2:
        return Section(title, tuple(rows))
    shown = tuple(r for r in rows if len(set(r.cells)) > 1)
    return Section(title, shown, hidden=len(rows) - len(shown))


def compare(results: Results, *, all_rows: bool = False) -> Comparison:
    """Side-by-side sections for every configuration of ``results``."""
    groups = results.groups()
    if not groups:
        raise InvalidArgument(f"experiment {results.experiment!r} has no runs to compare")
    sections: list[Section] = _data_sections(groups)
    for s in (_invariant_section(groups), _cost_section(groups),
              _keyed_section("workload notes (mean per run)", groups, lambda r: r.notes,
                             True),
              _keyed_section("metrics (mean per run)", groups, lambda r: r.metrics, all_rows),
              _keyed_section("trace events (mean per run)", groups, lambda r: r.trace,
                             all_rows)):
        if s is not None:
            sections.append(s)
    return Comparison(results.experiment, tuple(results.vary),
                      tuple(c for c, _ in groups), tuple(len(rs) for _, rs in groups),
                      tuple(sections), results, results.headline)
