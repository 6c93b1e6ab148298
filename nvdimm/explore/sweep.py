"""Sweeps: an experiment's grid of configurations x seeds on any executor.

Each run is independent (a fresh machine, a seed), so runs can go anywhere a
:class:`concurrent.futures.Executor` sends them:

* ``sweep(exp)``: processes on this machine (one per CPU);
* ``sweep(exp, jobs=1)``: in this process, one after the other;
* ``sweep(exp, scheduler="tcp://host:8786")``: a Dask distributed cluster, through
  ``dask.distributed.Client(address).get_executor()`` (optional extra
  ``distributed``: ``pip install 'nvdimm-model[distributed]'``);
* ``sweep(exp, executor=ex)``: any executor you already have.

Results come back in configuration-then-seed order whatever order runs finish in, so
a sweep's :class:`~nvdimm.explore.experiment.Results` equal a serial run's for the same
seeds. A workload must be importable where it runs (a module-level function); a user's
seam variant travels with each job and is registered on the worker if it is missing
there. Long sweeps report progress on stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import TextIO

from nvdimm.explore.experiment import Experiment, Job, Results, RunResult, run_job
from nvdimm.explore.optional import require

ProgressFn = Callable[[int, int], None]  # (runs done, runs in all)


class StderrProgress:
    """``explore persistence: 12/48 runs (25%), 3.1 s`` on a stream, at most once per
    ``every`` seconds, starting once the sweep has run ``after`` seconds."""

    def __init__(self, name: str, *, after: float = 2.0, every: float = 1.0,
                 stream: TextIO | None = None) -> None:
        self.name = name
        self.after = after
        self.every = every
        self.stream = stream
        self.start = time.monotonic()
        self.last = -1.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic() - self.start
        final = done == total
        if now < self.after and not (final and self.shown):
            return
        if not final and now - self.last < self.every:
            return
        self.last = now
        self.shown = True
        stream = self.stream or sys.stderr
        print(f"explore {self.name}: {done}/{total} runs ({100 * done // max(total, 1)}%), "
              f"{now:.1f} s", file=stream, flush=True)


def _reporter(progress: bool | ProgressFn | None, name: str) -> ProgressFn:
    if progress is None:
        return StderrProgress(name)
    if progress is True:
        return StderrProgress(name, after=0.0)
    if progress is False:
        return lambda _done, _total: None
    return progress


def run_jobs(jobs: Sequence[Job], *, executor: Executor | None = None,
             progress: bool | ProgressFn | None = None, name: str = "") -> list[RunResult]:
    """Run ``jobs`` (serially when ``executor`` is None); results in job order."""
    report = _reporter(progress, name)
    total = len(jobs)
    out: list[RunResult | None] = [None] * total
    if executor is None:
        for i, job in enumerate(jobs):
            out[i] = run_job(job)
            report(i + 1, total)
    else:
        futures: dict[Future[RunResult], int] = {
            executor.submit(run_job, job): i for i, job in enumerate(jobs)}
        try:
            for done, f in enumerate(as_completed(futures), 1):
                out[futures[f]] = f.result()
                report(done, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return [r for r in out if r is not None]


@contextlib.contextmanager
def dask_executor(address: str) -> Iterator[Executor]:
    """An executor on the Dask distributed scheduler at ``address``."""
    distributed = require("dask.distributed", "distributed", "running a sweep on Dask")
    client = distributed.Client(address)
    try:
        ex: Executor = client.get_executor()
        yield ex
    finally:
        client.close()


def sweep(experiment: Experiment, *, jobs: int | None = None, scheduler: str | None = None,
          executor: Executor | None = None,
          progress: bool | ProgressFn | None = None) -> Results:
    """Run an experiment's grid in parallel: on ``executor`` if given, else on the Dask
    cluster at ``scheduler``, else on ``jobs`` processes (default: one per CPU;
    ``jobs=1`` runs in this process)."""
    if executor is not None:
        return experiment.run(executor, progress=progress)
    if scheduler:
        with dask_executor(scheduler) as ex:
            return experiment.run(ex, progress=progress)
    todo = experiment.jobs()  # validates before any process starts
    workers = min(jobs or os.cpu_count() or 1, len(todo))
    if workers <= 1:
        return experiment.run(progress=progress)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        runs = run_jobs(todo, executor=pool, progress=progress, name=experiment.name)
    return experiment.results(runs)
