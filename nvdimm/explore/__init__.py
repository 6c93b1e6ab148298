"""Design exploration: swap a seam, run a workload, see every subsystem's answer.

* :mod:`~nvdimm.explore.experiment`: :class:`Experiment` (a workload, a base machine
  config, what to vary, seeds), :class:`Check` / :class:`Outcome` (what a workload
  expected and found), :class:`RunResult` / :class:`Results` (plain data, JSON);
* :mod:`~nvdimm.explore.invariants`: named checks run after every workload;
* :mod:`~nvdimm.explore.cost`: media lines turned into modeled time (``dram``,
  ``optane`` presets);
* :mod:`~nvdimm.explore.compare`: one column per configuration, as a terminal table,
  Markdown, JSON or a plot;
* :mod:`~nvdimm.explore.sweep`: the grid on processes, threads or a Dask cluster;
* :mod:`~nvdimm.explore.builtin`: the built-in experiments (``nvdimm explore --list``).

Names are imported lazily, so ``nvdimm.explore.invariants`` can be imported by any
layer (to register a check) without loading the machine. The functions named like
their modules live there: ``from nvdimm.explore.sweep import sweep``,
``from nvdimm.explore.compare import compare``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Check": "experiment",
    "Experiment": "experiment",
    "Outcome": "experiment",
    "Results": "experiment",
    "RunResult": "experiment",
    "parse_vary": "experiment",
    "invariant": "invariants",
    "register_invariant": "invariants",
    "Comparison": "compare",
    "estimate": "cost",
    "PRESETS": "cost",
    "run_builtin": "builtin",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'nvdimm.explore' has no attribute {name!r}") from None
    attr = "run" if name == "run_builtin" else name
    return getattr(importlib.import_module(f"nvdimm.explore.{module}"), attr)
