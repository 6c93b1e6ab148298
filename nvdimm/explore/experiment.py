"""Experiments: one workload, many machines that differ in a seam or a config field.

An :class:`Experiment` is a workload, a base :class:`~nvdimm.machine.MachineConfig`,
a variation (``vary={"persistence": ["adr", "eadr", "flush-hint"]}``) and seeds. Each
configuration (the Cartesian product of the varied values, in the order given) is run
once per seed on a freshly booted machine::

    from nvdimm.explore import Check, Experiment, Outcome
    from nvdimm.platform.crash import KeepNothing

    def workload(m, blocks=4):           # a booted machine, labels initialised
        m.bus.create_namespace(mode="raw", size=16 << 20)
        disk = m.block_device("pmem0")
        data = bytes([m.config.seed + 1]) * 4096
        disk.write(0, data)              # no FUA: in flight
        m.crash(KeepNothing()); m.boot()
        return Outcome([Check("block0", data, m.block_device("pmem0").read(0, 4096))])

    results = Experiment("demo", workload, vary={"persistence": ["adr", "eadr"]},
                         seeds=range(3)).run()
    print(results.compare().table())

A workload is a function of the machine (plus keyword parameters, which ``vary`` may
also vary) returning an :class:`Outcome`: :class:`Check` s of what it expected against
what it found, the crash reports it got, and notes (numbers it wants reported). A vary
key is a :class:`MachineConfig` field when it names one (``persistence``, the seam, is
one) and a workload parameter otherwise; everything is validated before any run.

Each run yields a :class:`RunResult`, plain data: the checks classified (intact, torn,
lost, corrupt), invariant violations (:mod:`nvdimm.explore.invariants`), the metrics
diff of the workload, modeled cost per preset (:mod:`nvdimm.explore.cost`) and a trace
summary (event counts by name). :class:`Results` collects them, saves to and loads
from JSON, and compares (:mod:`nvdimm.explore.compare`). The same experiment and seeds
give equal results however the runs are scheduled (:mod:`nvdimm.explore.sweep`).
"""

from __future__ import annotations

import inspect
import itertools
import json
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from nvdimm.errors import InvalidArgument, NvdimmError
from nvdimm.explore.cost import CostEstimate, estimate, preset
from nvdimm.explore.invariants import WORD, check_invariants, invariants
from nvdimm.machine import Machine, MachineConfig, seam_fields
from nvdimm.platform.crash import CrashReport
from nvdimm.seams import VariantInfo, all_seams, seam
from nvdimm.trace import Event
from nvdimm.units import parse_size

if TYPE_CHECKING:
    from nvdimm.explore.compare import Comparison
    from nvdimm.explore.sweep import ProgressFn

FORMAT = "nvdimm-explore/1"
STATUSES = ("intact", "torn", "lost", "corrupt")

Workload = Callable[..., Any]


# -- what a workload returns -----------------------------------------------------------


@attrs.frozen(slots=True)
class Check:
    """One range the workload wrote and read back: ``expected`` (what it wrote),
    ``found`` (what it read after recovery), ``before`` (what was there before the
    write; zeros when None). ``durable``: the workload was promised this data is
    durable (the ``data.expected`` invariant holds it to that). ``group`` gathers
    checks in comparisons (default: the name up to a ``[``)."""

    name: str
    expected: bytes = attrs.field(repr=False)
    found: bytes = attrs.field(repr=False)
    before: bytes | None = attrs.field(default=None, repr=False)
    durable: bool = False
    group: str = ""

    def __attrs_post_init__(self) -> None:
        n = len(self.expected)
        if len(self.found) != n or (self.before is not None and len(self.before) != n):
            raise InvalidArgument(f"check {self.name!r}: expected, found and before must have "
                                  "the same length")
        if not self.group:
            object.__setattr__(self, "group", self.name.split("[", 1)[0])

    @property
    def old(self) -> bytes:
        return self.before if self.before is not None else bytes(len(self.expected))

    def _words(self) -> Iterable[tuple[int, bytes, bytes, bytes]]:
        """(length, expected, found, old) per aligned word that does not hold its new value."""
        e, f, o = self.expected, self.found, self.old
        for i in range(0, len(e), 64):  # skip whole lines that match
            if f[i:i + 64] == e[i:i + 64]:
                continue
            for w in range(i, min(i + 64, len(e)), WORD):
                ew, fw = e[w:w + WORD], f[w:w + WORD]
                if ew != fw:
                    yield len(ew), ew, fw, o[w:w + WORD]

    def status(self) -> str:
        """``intact`` (new), ``lost`` (old), ``torn`` (each word old or new) or ``corrupt``."""
        if self.found == self.expected:
            return "intact"
        if self.found == self.old:
            return "lost"
        return "corrupt" if self.foreign_words() else "torn"

    def bytes_lost(self) -> int:
        """Bytes of words that do not hold what the workload wrote."""
        return sum(n for n, _, _, _ in self._words())

    def foreign_words(self) -> int:
        """Words that hold neither the old nor the new value."""
        return sum(1 for _, _, f, o in self._words() if f != o)


def _checks(v: Iterable[Check]) -> tuple[Check, ...]:
    return tuple(v)


def _reports(v: Iterable[CrashReport]) -> tuple[CrashReport, ...]:
    return tuple(v)


def _ints(v: Iterable[int]) -> tuple[int, ...]:
    return tuple(v)


def _strs(v: Iterable[str]) -> tuple[str, ...]:
    return tuple(v)


@attrs.frozen(slots=True)
class Outcome:
    """What a workload returns: its checks, the crash reports it got, and notes (JSON
    values it wants reported, numbers above all)."""

    checks: tuple[Check, ...] = attrs.field(default=(), converter=_checks)
    crashes: tuple[CrashReport, ...] = attrs.field(default=(), converter=_reports)
    notes: Mapping[str, Any] = attrs.field(factory=dict)


# -- what a run yields ------------------------------------------------------------------


@attrs.frozen(slots=True)
class CheckResult:
    name: str
    group: str
    status: str
    bytes_lost: int
    durable: bool

    @classmethod
    def of(cls, c: Check) -> CheckResult:
        return cls(c.name, c.group, c.status(), c.bytes_lost(), c.durable)


def _plain(obj: Any) -> Any:
    """JSON-shaped copy (tuples become lists), so a result equals its reloaded self."""
    return json.loads(json.dumps(obj))


@attrs.frozen(slots=True)
class RunResult:
    """One configuration and seed: everything the run observed, as plain data."""

    experiment: str
    config: dict[str, Any]  # the varied values, in vary order
    seed: int
    machine: dict[str, Any]  # the full machine config
    params: dict[str, Any]  # the workload parameters in force
    checks: tuple[CheckResult, ...] = ()
    violations: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    metrics: dict[str, int | float] = attrs.field(factory=dict)
    cost: dict[str, CostEstimate] = attrs.field(factory=dict)
    trace: dict[str, int] = attrs.field(factory=dict)
    crashes: tuple[dict[str, Any], ...] = ()
    notes: dict[str, Any] = attrs.field(factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return config_label(self.config)

    def status_counts(self, group: str | None = None) -> dict[str, int]:
        """Checks by status (``group``: only that group's)."""
        counts = dict.fromkeys(STATUSES, 0)
        for c in self.checks:
            if group is None or c.group == group:
                counts[c.status] += 1
        return counts

    def bytes_lost(self, group: str | None = None) -> int:
        return sum(c.bytes_lost for c in self.checks if group is None or c.group == group)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in attrs.fields(RunResult)}
        d["checks"] = [attrs.asdict(c) for c in self.checks]
        d["violations"] = {k: list(v) for k, v in self.violations.items()}
        d["cost"] = {k: v.to_dict() for k, v in self.cost.items()}
        d["crashes"] = list(self.crashes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        kw = dict(d)
        kw["checks"] = tuple(CheckResult(**c) for c in kw.get("checks", ()))
        kw["violations"] = {k: tuple(v) for k, v in kw.get("violations", {}).items()}
        kw["cost"] = {k: CostEstimate.from_dict(v) for k, v in kw.get("cost", {}).items()}
        kw["crashes"] = tuple(kw.get("crashes", ()))
        return cls(**kw)


def config_label(config: Mapping[str, Any]) -> str:
    return " ".join(str(v) for v in config.values()) or "base"


@attrs.frozen(slots=True)
class Results:
    """All runs of an experiment, in configuration-then-seed order."""

    experiment: str
    vary: dict[str, tuple[Any, ...]]
    seeds: tuple[int, ...]
    runs: tuple[RunResult, ...]
    description: str = ""
    headline: str = ""

    def groups(self) -> list[tuple[dict[str, Any], list[RunResult]]]:
        """Runs grouped by configuration, configurations in the order they ran."""
        out: dict[str, tuple[dict[str, Any], list[RunResult]]] = {}
        for r in self.runs:
            key = json.dumps(r.config, sort_keys=False)
            out.setdefault(key, (r.config, []))[1].append(r)
        return list(out.values())

    def compare(self) -> Comparison:
        from nvdimm.explore.compare import compare

        return compare(self)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "experiment": self.experiment,
                "description": self.description, "headline": self.headline,
                "vary": {k: list(v) for k, v in self.vary.items()},
                "seeds": list(self.seeds), "runs": [r.to_dict() for r in self.runs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Results:
        if d.get("format") != FORMAT:
            raise InvalidArgument(f"not saved experiment results (format {d.get('format')!r}, "
                                  f"expected {FORMAT!r})")
        try:
            return cls(d["experiment"], {k: tuple(v) for k, v in d["vary"].items()},
                       tuple(d["seeds"]), tuple(RunResult.from_dict(r) for r in d["runs"]),
                       d.get("description", ""), d.get("headline", ""))
        except (KeyError, TypeError) as e:
            raise InvalidArgument(f"saved experiment results are malformed: {e}") from None

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Results:
        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except FileNotFoundError:
            raise InvalidArgument(f"no saved results at {p}") from None
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"{p} is not JSON: {e}") from None


# -- one run ----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Job:
    """Everything one run needs, picklable for another process or a Dask worker (the
    workload must be importable there: a module-level function)."""

    index: int
    experiment: str
    workload: Workload
    config: MachineConfig
    varied: dict[str, Any]
    params: dict[str, Any]
    seed: int
    presets: tuple[str, ...]
    invariants: tuple[str, ...] | None
    init_labels: bool
    variants: tuple[VariantInfo, ...] = ()


def _ensure_variants(infos: Iterable[VariantInfo]) -> None:
    """Register variants this process has not seen (a user's variant, defined in the
    process that built the job, arriving at a worker that never imported it)."""
    for info in infos:
        s = seam(info.seam)
        if info.name not in s.variants:
            s.variants[info.name] = info


def run_job(job: Job) -> RunResult:
    """Boot a fresh machine, run the workload, observe: the unit of work of a sweep."""
    _ensure_variants(job.variants)
    m = Machine.create(job.config)
    if job.init_labels and job.config.label_size:
        m.init_labels()
    events: Counter[str] = Counter()

    def count(ev: Event) -> None:
        events[ev.name] += 1

    m.trace.subscribe(count)
    before = m.metrics.snapshot()
    error = None
    outcome = Outcome()
    try:
        got = job.workload(m, **job.params)
        outcome = got if isinstance(got, Outcome) else Outcome(checks=tuple(got or ()))
    except NvdimmError as e:  # a variant that makes the workload fail is an answer too
        error = f"{type(e).__name__}: {e.message}"
    diff = m.metrics.diff(before)
    violations = {} if error else check_invariants(m, outcome, job.invariants)
    return RunResult(
        experiment=job.experiment,
        config=_plain(job.varied),
        seed=job.seed,
        machine=_plain(job.config.to_dict()),
        params=_plain(job.params),
        checks=tuple(CheckResult.of(c) for c in outcome.checks),
        violations=violations,
        metrics=dict(sorted(diff.items())),
        cost={p: estimate(diff, p) for p in job.presets},
        trace=dict(sorted(events.items())),
        crashes=tuple(_plain(_crash_dict(r)) for r in outcome.crashes),
        notes=_plain(dict(outcome.notes)),
        error=error,
    )


def _crash_dict(r: CrashReport) -> dict[str, Any]:
    d = attrs.asdict(r)
    d["lost"] = [hex(a) for a in r.lost]
    d["torn"] = [hex(a) for a in r.torn]
    return d


# -- the experiment ---------------------------------------------------------------------


def _freeze_vary(v: Mapping[str, Iterable[Any]]) -> dict[str, tuple[Any, ...]]:
    out = {}
    for k, vals in v.items():
        t = tuple(vals) if not isinstance(vals, (str, bytes)) else (vals,)
        if not t:
            raise InvalidArgument(f"vary {k!r} has no values")
        out[k] = t
    return out


def _config_fields() -> dict[str, attrs.Attribute[Any]]:
    return {f.name: f for f in attrs.fields(MachineConfig)}


def _seam_fields() -> set[str]:
    """MachineConfig fields that pick a seam variant."""
    return seam_fields()


def workload_params(workload: Workload) -> dict[str, Any] | None:
    """The workload's keyword parameters and their defaults (None: takes any)."""
    try:
        sig = inspect.signature(workload)
    except (TypeError, ValueError):
        return None
    ps = list(sig.parameters.values())[1:]  # the first is the machine
    if any(p.kind is p.VAR_KEYWORD for p in ps):
        return None
    return {p.name: (None if p.default is p.empty else p.default) for p in ps
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


@attrs.frozen(slots=True)
class Experiment:
    """A workload on machines that differ in the ``vary`` keys, once per seed."""

    name: str
    workload: Workload
    base: MachineConfig = attrs.field(factory=MachineConfig)
    vary: dict[str, tuple[Any, ...]] = attrs.field(factory=dict, converter=_freeze_vary)
    seeds: tuple[int, ...] = attrs.field(default=(0,), converter=_ints)
    params: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    presets: tuple[str, ...] = attrs.field(default=("dram", "optane"), converter=_strs)
    invariants: tuple[str, ...] | None = None
    init_labels: bool = True
    description: str = ""
    headline: str = ""

    def configurations(self) -> list[dict[str, Any]]:
        """Every combination of the varied values, the first key varying slowest."""
        keys = list(self.vary)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.vary[k] for k in keys))]

    def validate(self) -> None:
        """Refuse a bad experiment before anything runs."""
        if not self.seeds:
            raise InvalidArgument(f"experiment {self.name!r} has no seeds")
        fields = _config_fields()
        accepted = workload_params(self.workload)
        for k in list(self.vary) + list(self.params):
            if k == "seed":
                raise InvalidArgument("vary the seed with seeds=..., not as a config field")
            if k in fields:
                if k in self.params:
                    raise InvalidArgument(f"{k!r} is a machine config field: set it in base")
                continue
            if accepted is not None and k not in accepted:
                raise InvalidArgument(
                    f"{k!r} is neither a machine config field ({', '.join(fields)}) nor a "
                    f"parameter of workload {getattr(self.workload, '__name__', '?')} "
                    f"({', '.join(accepted) or 'none'})")
        for p in self.presets:
            preset(p)
        invariants(self.invariants)
        for k in _seam_fields():
            for v in self.vary.get(k, (getattr(self.base, k),)):
                seam(k).info(v)  # raises, naming the variants there are
        seam_names = {s.name for s in all_seams()}
        for k in seam_names & (set(self.vary) | set(self.params)) - set(fields):
            # a workload parameter named after a seam picks one of its variants
            for v in self.vary.get(k, (self.params.get(k),)):
                if v is not None:
                    seam(k).info(v)

    def jobs(self) -> list[Job]:
        self.validate()
        fields = _config_fields()
        seams = _seam_fields()
        out: list[Job] = []
        for varied in self.configurations():
            cfg_kw = {k: v for k, v in varied.items() if k in fields}
            params = {**self.params, **{k: v for k, v in varied.items() if k not in fields}}
            for seed in self.seeds:
                try:
                    cfg = attrs.evolve(self.base, **cfg_kw, seed=seed)
                except TypeError as e:
                    raise InvalidArgument(f"bad machine config {cfg_kw}: {e}") from None
                infos = tuple(seam(k).info(getattr(cfg, k)) for k in sorted(seams))
                out.append(Job(len(out), self.name, self.workload, cfg, varied, params, seed,
                               self.presets, self.invariants, self.init_labels, infos))
        return out

    def run(self, executor: Executor | None = None, *,
            progress: bool | ProgressFn | None = None) -> Results:
        """Run every configuration and seed: in this process by default, else on
        ``executor`` (see :func:`nvdimm.explore.sweep.sweep` for process pools and Dask)."""
        from nvdimm.explore.sweep import run_jobs

        runs = run_jobs(self.jobs(), executor=executor, progress=progress, name=self.name)
        return self.results(runs)

    def results(self, runs: Sequence[RunResult]) -> Results:
        return Results(self.name, dict(self.vary), tuple(self.seeds), tuple(runs),
                       self.description, self.headline)

    def with_overrides(self, *, vary: Mapping[str, Iterable[Any]] | None = None,
                       seeds: Iterable[int] | None = None) -> Experiment:
        """A copy with some vary keys replaced (others kept) and/or other seeds."""
        new_vary = dict(self.vary)
        if vary:
            new_vary.update(_freeze_vary(vary))
        return attrs.evolve(self, vary=new_vary,
                            seeds=_ints(seeds) if seeds is not None else self.seeds)


# -- parsing ``--vary KEY=V1,V2`` ------------------------------------------------------------


def parse_vary(items: Iterable[str], workload: Workload | None = None,
               base: MachineConfig | None = None) -> dict[str, tuple[Any, ...]]:
    """``["persistence=adr,eadr", "dimm_size=64M,1G"]`` -> typed values: a config
    field's by its type (sizes take K/M/G suffixes), a workload parameter's by the type
    of its default."""
    base = base or MachineConfig()
    fields = _config_fields()
    defaults = (workload_params(workload) if workload is not None else None) or {}
    out: dict[str, tuple[Any, ...]] = {}
    for item in items:
        raw, sep, text = item.partition("=")
        raw = raw.strip()
        key = raw.replace("-", "_")
        if key not in fields and key not in defaults:
            key = raw
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not sep or not key or not values:
            raise InvalidArgument(f"--vary wants KEY=V1,V2,... not {item!r}")
        like = getattr(base, key) if key in fields else defaults.get(key)
        out[key] = tuple(_convert(key, v, like) for v in values)
    return out


def _convert(key: str, text: str, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(like, int):
            return parse_size(text) if key.endswith("_size") else int(text, 0)
        if isinstance(like, float):
            return float(text)
    except (ValueError, InvalidArgument):
        raise InvalidArgument(f"--vary {key}: {text!r} is not a {type(like).__name__}") from None
    return text


# -- data a workload writes ---------------------------------------------------------------


def tagged_block(seed: int, tag: int, index: int) -> bytes:
    """A 4 KiB block whose every 8-byte word is non-zero and names itself (seed, pattern,
    block, word), so a torn block shows which words made it and none equals the zeros
    that were there before."""
    head = (1 << 63) | (seed & 0xFFFF) << 40 | (tag & 0xFF) << 32 | (index & 0xFFFF) << 16
    return struct.pack(f"<{4096 // 8}Q", *(head | w for w in range(4096 // 8)))
