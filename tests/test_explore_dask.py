"""Sweeps on a Dask distributed cluster (skipped when the extra is not installed)."""

from __future__ import annotations

import pytest

from nvdimm.explore.sweep import sweep
from tests.test_explore import small_experiment, user_variant

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as c:
        yield c


def test_sweep_on_a_dask_executor_equals_the_serial_run(cluster):
    exp = small_experiment()
    with distributed.Client(cluster) as client:
        assert sweep(exp, executor=client.get_executor()) == exp.run()


def test_sweep_given_a_scheduler_address_runs_there_with_a_user_variant(cluster):
    with user_variant() as name:
        exp = small_experiment(vary={"persistence": ["adr", name]})
        results = sweep(exp, scheduler=cluster.scheduler_address)
        assert results == exp.run()
    assert {r.label for r in results.runs} == {"adr", name}
