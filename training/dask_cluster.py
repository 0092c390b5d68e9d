"""The Dask client of the ``dask`` engine: the cluster's scheduler, or a LocalCluster."""

from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from training.config import DaskConfig


@contextmanager
def dask_client(config: DaskConfig) -> Iterator[Client]:
    """A client to the configured scheduler, or to a LocalCluster started for the run."""
    if config.scheduler_address:
        with Client(config.scheduler_address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=config.local_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
