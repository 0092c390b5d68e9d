"""``vigil logs`` as a user runs it: the console script in a subprocess."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.telemetry.logs.conftest import SHARED_LOGHUB, SLICE_LOGHUB, needs_shared_loghub

VIGIL = str(Path(sys.executable).parent / "vigil")
HDFS_LOG = SLICE_LOGHUB / "HDFS" / "HDFS_2k.log"


def vigil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIGIL, "logs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def succeed(*args: str) -> str:
    result = vigil(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_parse_writes_one_csv_row_per_record_in_input_order() -> None:
    rows = list(csv.DictReader(io.StringIO(succeed("parse", str(HDFS_LOG)))))
    assert len(rows) == 300
    assert [int(row["line"]) for row in rows] == list(range(1, 301))
    first = rows[0]
    assert first["template"] == "PacketResponder <NUM> for block <ID> terminating"
    assert (first["timestamp"], first["level"]) == ("2008-11-09T20:36:15+00:00", "INFO")
    assert first["component"] == "dfs.DataNode$PacketResponder"
    assert json.loads(first["parameters"]) == ["1", "blk_38865049064139660"]
    assert len({row["template_id"] for row in rows}) < 20


def test_parse_with_a_logpai_format_to_json(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    succeed(
        "parse",
        str(HDFS_LOG),
        "--log-format",
        "<Date> <Time> <Pid> <Level> <Component>: <Content>",
        "--format",
        "json",
        "--out",
        str(out),
    )
    rows = json.loads(out.read_text())
    assert len(rows) == 300
    assert rows[0]["format"] == "logpai"
    assert rows[0]["metadata"]["Pid"] == "148"


def test_template_ids_survive_a_new_process_through_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state" / "hdfs.json"
    first = list(
        csv.DictReader(io.StringIO(succeed("parse", str(HDFS_LOG), "--state", str(state))))
    )
    assert state.is_file()
    shuffled = tmp_path / "later.log"
    lines = HDFS_LOG.read_text().splitlines()
    shuffled.write_text("\n".join(reversed(lines)) + "\n")
    later = csv.DictReader(io.StringIO(succeed("parse", str(shuffled), "--state", str(state))))
    by_message = {row["message"]: row["template_id"] for row in first}
    assert all(by_message[row["message"]] == row["template_id"] for row in later)


def test_bad_input_is_one_clear_line_and_exit_status_1(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    result = vigil("parse", str(empty))
    assert result.returncode == 1
    assert "is empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_prints_each_system_and_the_means() -> None:
    output = succeed("evaluate", "--path", str(SLICE_LOGHUB))
    assert "HDFS" in output
    assert "Drain3" in output
    assert "mean" in output


@needs_shared_loghub
def test_evaluate_anomalies_prints_the_detector_and_both_baselines() -> None:
    output = succeed("evaluate-anomalies", "--path", str(SHARED_LOGHUB / "BGL" / "BGL_2k.log"))
    for method in ("detector", "keyword", "rare_template"):
        assert method in output


def test_detect_prints_one_line_per_alert(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(
        "".join(f"2024-01-01 00:{m:02d}:00,000 INFO [main] app: tick {m}\n" for m in range(30))
        + "2024-01-01 00:30:00,000 ERROR [main] app: disk /dev/sda1 failed\n"
    )
    lines = succeed("detect", str(log)).splitlines()
    assert lines[0].split("\t")[:3] == ["line", "window", "template_id"]
    assert lines[-1].split("\t")[0] == "31"
    assert "new_template" in lines[-1]
