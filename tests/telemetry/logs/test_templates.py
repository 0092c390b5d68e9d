"""Template mining: grouping, word slots, parameters, and ids that survive a saved state."""

from pathlib import Path

import boto3
import pytest

from contracts.settings import Settings
from contracts.store import ObjectStore
from telemetry.logs.records import LogRecord
from telemetry.logs.state import load_miner, persistent_miner, save_miner, state_location
from telemetry.logs.templates import LogTemplateMiner, MinerSettings, mine_records
from vigil.processes import ServerProcess

MESSAGES = [
    "Invalid user admin from 10.0.0.1",
    "Invalid user oracle from 10.0.0.2",
    "Invalid user test from 10.0.0.3",
    "Invalid user guest from 10.0.0.4",
    "cupsd startup succeeded",
    "cupsd shutdown succeeded",
    "cupsd startup succeeded",
    "task_1 Task Transitioned from NEW to SCHEDULED",
    "task_2 Task Transitioned from SCHEDULED to RUNNING",
    "Connection closed by 10.0.0.9 [preauth]",
]


def ids_of(miner: LogTemplateMiner, messages: list[str]) -> list[int]:
    records = [LogRecord(number, message) for number, message in enumerate(messages, 1)]
    return [item.template.template_id for item in mine_records(records, miner)]


def test_variables_group_and_few_distinct_words_split() -> None:
    ids = ids_of(LogTemplateMiner(), MESSAGES)
    # four user names: one template with a variable
    assert len(set(ids[0:4])) == 1
    # two words seen in one slot name two events; the same word, the same event
    assert ids[4] != ids[5]
    assert ids[4] == ids[6]
    # upper-case states are never merged
    assert ids[7] != ids[8]
    assert len(set(ids)) == 6


def test_templates_and_parameters() -> None:
    records = [LogRecord(n, m) for n, m in enumerate(MESSAGES, 1)]
    mined = mine_records(records, LogTemplateMiner())
    assert mined[0].template.text == "Invalid user <*> from <IP>"
    assert mined[1].parameters == ("oracle", "10.0.0.2")
    assert mined[5].template.text == "cupsd shutdown succeeded"


def test_template_ids_are_stable_after_reloading_the_state() -> None:
    first = LogTemplateMiner()
    before = ids_of(first, MESSAGES)
    reloaded = LogTemplateMiner.from_state(first.state())
    assert ids_of(reloaded, MESSAGES) == before
    # a new event after reloading gets a new id, and the old ones keep theirs
    after = ids_of(reloaded, [*MESSAGES, "disk quota exceeded on /var/lib/x"])
    assert after[:-1] == before
    assert after[-1] not in before


def test_a_reloaded_miner_names_the_template_of_every_id() -> None:
    first = LogTemplateMiner()
    mined = mine_records([LogRecord(n, m) for n, m in enumerate(MESSAGES, 1)], first)
    reloaded = LogTemplateMiner.from_state(first.state())
    for item in mined:
        assert reloaded.template(item.template.template_id) == item.template
    assert reloaded.template(999) is None


def test_state_round_trip_through_the_object_store(tmp_path: Path) -> None:
    store, key = state_location(str(tmp_path / "states" / "miner.json"), Settings())
    miner = load_miner(store, key)
    before = ids_of(miner, MESSAGES)
    save_miner(miner, store, key)
    assert (tmp_path / "states" / "miner.json").is_file()
    assert (
        ids_of(load_miner(ObjectStore.from_uri(str(tmp_path / "states")), key), MESSAGES) == before
    )


def test_a_saved_state_keeps_its_settings() -> None:
    miner = LogTemplateMiner(MinerSettings(similarity=0.5))
    assert LogTemplateMiner.from_state(miner.state()).settings.similarity == 0.5


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"version": 99}',
        b"{}",
        b'{"version": 1, "settings": {}, "drain3": "Z2FyYmFnZQ==", "clusters": {}, "ids": []}',
    ],
)
def test_a_state_that_is_not_one_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a template miner state"):
        LogTemplateMiner.from_state(data)


def test_a_folder_is_not_a_state_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names a folder"):
        state_location(f"{tmp_path}/", Settings())


def test_persistent_miner_saves_back_and_reloads(tmp_path: Path) -> None:
    path = str(tmp_path / "miner.json")
    with persistent_miner(path, Settings()) as miner:
        before = ids_of(miner, MESSAGES)
    with persistent_miner(path, Settings()) as miner:
        assert ids_of(miner, MESSAGES) == before
        assert miner.template_count == len(set(before))


@pytest.mark.slow
def test_state_in_s3_over_the_wire(aws_emulator: ServerProcess) -> None:
    boto3.client("s3", endpoint_url=aws_emulator.url).create_bucket(Bucket="vigil")
    settings = Settings(aws_endpoint_url=aws_emulator.url)
    with persistent_miner("s3://vigil/log-templates/miner.json", settings) as miner:
        before = ids_of(miner, MESSAGES)
    store = ObjectStore.from_uri("s3://vigil/log-templates", endpoint_url=aws_emulator.url)
    assert store.list_keys("", ".json") == ["miner.json"]
    with persistent_miner("s3://vigil/log-templates/miner.json", settings) as miner:
        assert ids_of(miner, MESSAGES) == before
