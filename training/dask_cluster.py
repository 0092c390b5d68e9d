"""The Dask client of the ``dask`` engine: the cluster's scheduler, or a LocalCluster."""

from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster

from training.config import DaskConfig


@contextmanager
def dask_client(config: DaskConfig) -> Iterator[Client]:
    """A client to the scheduler named in Dask's config, or to a LocalCluster started for the run.

    The scheduler is Dask's own ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``, set
    by the Helm chart), the one the feature job reads too.
    """
    if address := dask.config.get("scheduler-address", None):
        with Client(address) as client:
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
