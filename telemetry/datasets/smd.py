"""Server Machine Dataset (NetManAIOps/OmniAnomaly) in its published layout.

``ServerMachineDataset/{train,test,test_label,interpretation_label}/machine-G-N.txt`` (each
also read as ``.txt.gz``): 38 comma-separated metrics per row, one row per minute, no
timestamps; one 0/1 per test row; ``start-end:d1,d2,...`` per incident. Train rows are laid on
the synthetic timeline first and test rows right after (see tidy.SYNTHETIC_EPOCH). An empty
or NaN cell is a missing value, imported as a gap (see tidy.py).
"""

from pathlib import Path

import polars as pl

from telemetry.datasets.published_files import (
    find_file,
    read_number_matrix,
    read_text,
    require_dir,
    stems,
)
from telemetry.datasets.segments import build_incidents, parse_interpretation
from telemetry.datasets.tidy import (
    TEST_SPLIT,
    DatasetFrames,
    count_missing,
    split_series_frame,
)

SMD_DIR = "ServerMachineDataset"
SMD_STEP_SECONDS = 60
SMD_SOURCE = "ec2"
SMD_SUFFIX = ".txt"
# Column names in order, from the dataset authors.
SMD_METRICS = (
    "cpu_r",
    "load_1",
    "load_5",
    "load_15",
    "mem_shmem",
    "mem_u",
    "mem_u_e",
    "total_mem",
    "disk_q",
    "disk_r",
    "disk_rb",
    "disk_svc",
    "disk_u",
    "disk_w",
    "disk_wa",
    "disk_wb",
    "si",
    "so",
    "eth1_fi",
    "eth1_fo",
    "eth1_pi",
    "eth1_po",
    "tcp_tw",
    "tcp_use",
    "active_opens",
    "curr_estab",
    "in_errs",
    "in_segs",
    "listen_overflows",
    "out_rsts",
    "out_segs",
    "passive_opens",
    "retransegs",
    "tcp_timeouts",
    "udp_in_dg",
    "udp_out_dg",
    "udp_rcv_buf_errs",
    "udp_snd_buf_errs",
)


def smd_root(source_path: Path) -> Path:
    """The ``ServerMachineDataset`` folder: ``source_path`` itself or the one inside it."""
    nested = source_path / SMD_DIR
    return require_dir(nested if nested.is_dir() else source_path)


def list_smd_machines(source_path: Path) -> list[str]:
    """The machines with a train file, e.g. ``["machine-1-2", "machine-1-3"]``."""
    return stems(smd_root(source_path) / "train", SMD_SUFFIX)


def read_smd(source_path: Path, machines: list[str]) -> DatasetFrames:
    """Telemetry, labels and incidents of ``machines``.

    Args:
        source_path: the ``ServerMachineDataset`` folder or its parent.
        machines: machine names as listed by list_smd_machines.

    Raises:
        DatasetFormatError: a file is missing or malformed, or the labels do not match the
            test rows; the message names the file.
    """
    root = smd_root(source_path)
    metrics = list(SMD_METRICS)
    telemetry, incidents = [], []
    for machine in machines:
        name = f"{machine}{SMD_SUFFIX}"
        label_path = find_file(require_dir(root / "test_label"), name)
        interpretation_path = find_file(require_dir(root / "interpretation_label"), name)
        labels = read_number_matrix(label_path, 1)[:, 0]
        frame = split_series_frame(
            instance_id=machine,
            source=SMD_SOURCE,
            metrics=metrics,
            train=read_number_matrix(find_file(require_dir(root / "train"), name), len(metrics)),
            test=read_number_matrix(find_file(require_dir(root / "test"), name), len(metrics)),
            test_labels=labels,
            step_seconds=SMD_STEP_SECONDS,
        )
        telemetry.append(frame)
        incidents.append(
            build_incidents(
                instance_id=machine,
                labels=labels,
                test_timestamps=frame.filter(pl.col("split") == TEST_SPLIT)["timestamp"],
                metrics=metrics,
                published=parse_interpretation(
                    read_text(interpretation_path), interpretation_path, len(metrics)
                ),
                origin=str(interpretation_path),
            )
        )
    combined = pl.concat(telemetry)
    return DatasetFrames(
        name="smd",
        step_seconds=SMD_STEP_SECONDS,
        metrics=metrics,
        telemetry=combined,
        incidents=pl.concat(incidents),
        missing_values=count_missing(combined, metrics),
    )
