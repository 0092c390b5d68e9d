"""``vigil rag evaluate``: HitRate on hand-made cases, the committed evaluation set, the small
set end to end against the real LLM server, and the interpretation HitRate on the SMD / ASD
slices. The command runs as a user runs it (a subprocess of the console script)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts.explanation import ExplainRequest
from contracts.labels import INCIDENT_TYPES
from rag.evaluation import judge_reply, load_eval_set
from rag.interpretation import hit_rate, random_hit_rate
from rag.settings import RUNBOOKS_PATH
from tests.rag.eval_set_build import OUTPUT_PATH, build_eval_set
from vigil.processes import ServerProcess

# A busy 2-core machine runs the LLM many times slower than a quiet one: no limit here is one
# it could trip (the whole suite's budget is the bound that matters).
PATIENCE_S = 1800
pytestmark = [pytest.mark.xdist_group("rag"), pytest.mark.timeout(PATIENCE_S + 60)]

VIGIL = str(Path(sys.executable).parent / "vigil")
SLICES = Path(__file__).resolve().parents[1] / "data"
# hit@5 measured on the committed set: 23 of 24 (0.958); the margin absorbs a changed runbook.
MEASURED_HIT_AT_5 = 23 / 24
MARGIN = 0.15


def evaluate(*args: str) -> dict[str, Any]:
    patient_llm = {
        "VIGIL_RAG_LLM_TIMEOUT_S": str(PATIENCE_S),
        "VIGIL_RAG_LLM_DEADLINE_S": str(PATIENCE_S),
    }
    result = subprocess.run(
        [VIGIL, "rag", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **patient_llm},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)  # stdout holds the JSON alone
    return document


@pytest.mark.parametrize(
    ("truth", "named", "percent", "expected"),
    [
        (["a", "b"], ["a", "c", "b"], 100, 0.5),  # k = 2: a hit, c missed
        (["a", "b"], ["a", "c", "b"], 150, 1.0),  # k = 3 reaches b
        (["a", "b", "c"], ["c", "x", "y", "b", "a"], 150, 2 / 3),  # k = floor(4.5) = 4
        (["a", "b", "c"], ["c", "b", "a"], 100, 1.0),
        (["a"], ["b", "a"], 150, 0.0),  # k = floor(1.5) = 1
        (["a"], [], 100, 0.0),  # nothing named, nothing hit
        (["a", "a", "b"], ["b", "a"], 100, 1.0),  # the truth is a set
    ],
)
def test_hit_rate_on_hand_made_cases(
    truth: list[str], named: list[str], percent: int, expected: float
) -> None:
    assert hit_rate(truth, named, percent) == pytest.approx(expected)


def test_hit_rate_refuses_what_it_cannot_score() -> None:
    with pytest.raises(ValueError, match="ground-truth"):
        hit_rate([], ["a"], 100)
    with pytest.raises(ValueError, match="positive"):
        hit_rate(["a"], ["a"], 0)
    assert random_hit_rate(2, 38, 150) == pytest.approx(3 / 38)
    assert random_hit_rate(15, 19, 150) == 1.0  # k = 22 > 19 metrics


def test_eval_set_loads_and_every_expected_runbook_exists() -> None:
    eval_set = load_eval_set(OUTPUT_PATH)
    assert {case.incident_type for case in eval_set.cases} == set(INCIDENT_TYPES)
    assert len({case.id for case in eval_set.cases}) == len(eval_set.cases)
    for case in eval_set.cases:
        assert (RUNBOOKS_PATH / case.expected_runbook).is_file(), case.expected_runbook
        assert case.request.top_features, case.id  # each anomaly carries its evidence
        assert case.request.log_lines, case.id


def test_eval_set_is_what_its_builder_writes() -> None:
    """The committed file is generated: rebuilding it from the simulator changes nothing."""
    assert json.loads(OUTPUT_PATH.read_text()) == build_eval_set()


def test_judge_reply_separates_json_fields_and_grounding() -> None:
    request = ExplainRequest.model_validate(
        {
            "instance_id": "i-0aaaaaaaaaaaaaaaa",
            "window_start": "2026-03-02T10:00:00Z",
            "window_end": "2026-03-02T10:05:00Z",
            "score": 0.9,
            "model": "xgboost_anomaly",
            "top_features": [{"name": "memory_utilization_max_5", "value": 99.0}],
        }
    )
    terms = ["memory", "memory_utilization_max_5", "MemoryUtilization"]

    def judge(root_cause: str) -> Any:
        reply = json.dumps(
            {"root_cause": root_cause, "impact": "slow", "actions": ["restart"], "prevention": []}
        )
        known = ["i-0bbbbbbbbbbbbbbbb", "machine-1-2"]
        return judge_reply(f"```json\n{reply}\n```", request, terms, known)

    grounded = judge("Memory utilization on i-0aaaaaaaaaaaaaaaa reached 99 %.")
    assert (grounded.valid_json, grounded.fields_present, grounded.grounded) == (True, True, True)
    assert not grounded.usable  # impact "slow" and action "restart": too thin to show
    foreign = judge("Memory leak copied from i-0bbbbbbbbbbbbbbbb and i-0123456789abcdef0.")
    assert foreign.foreign_instances == ["i-0123456789abcdef0", "i-0bbbbbbbbbbbbbbbb"]
    assert not foreign.grounded
    assert not judge("Something happened.").names_subject
    named_by_words = judge("MEMORY_UTILIZATION_MAX_5 is high; machine-1-22 is fine.")
    assert named_by_words.names_subject
    assert named_by_words.foreign_instances == []  # machine-1-22 is not machine-1-2
    assert (
        judge_reply(
            json.dumps({"root_cause": "also slow", "impact": "x", "actions": ["y"]}),
            request,
            ["so"],
        ).names_subject
        is False
    )  # whole words only
    missing = judge_reply('{"root_cause": "x"}', request, terms)
    assert (missing.valid_json, missing.fields_present) == (True, False)
    broken = judge_reply('{"root_cause": "x", ', request, terms)
    assert (broken.valid_json, broken.fields_present) == (False, False)


@pytest.mark.slow
@pytest.mark.e2e
def test_one_case_per_incident_type_end_to_end_against_the_real_llm(
    llm_server: ServerProcess, tmp_path: Path
) -> None:
    # One case of each incident type keeps the real LLM in the suite without a limit a busy
    # machine trips (the whole 24-case set took 191 s alone and timed out under load); the
    # whole set is `vigil rag evaluate`'s, measured in docs/evaluation.md.
    whole = json.loads(OUTPUT_PATH.read_text())
    firsts = {case["incident_type"]: case for case in reversed(whole["cases"])}
    subset = tmp_path / "eval_set.json"
    subset.write_text(json.dumps({**whole, "cases": list(firsts.values())}))
    document = evaluate("--set", str(subset), "--llm-url", f"{llm_server.url}/v1")
    cases = len(load_eval_set(subset).cases)
    assert document["cases"] == cases == len(document["per_case"]) == len(INCIDENT_TYPES)
    assert document["llm"]["used"] is True
    assert document["retrieval"]["k"] == 5
    assert document["retrieval"]["hit_at_k"] >= MEASURED_HIT_AT_5 - 0.2  # 5 of 6 at least
    assert 0.5 <= document["analysis_type"]["accuracy"] <= 1.0
    answers = document["answers"]
    for rate in (
        "valid_json_rate",
        "fields_present_rate",
        "usable_rate",
        "names_subject_rate",
        "foreign_instance_rate",
        "groundedness_rate",
    ):
        assert 0.0 <= answers[rate] <= 1.0, rate
    # Grammar-constrained decoding: most replies parse even from a 270M base model.
    assert answers["valid_json_rate"] >= 0.5
    assert answers["groundedness_rate"] <= answers["fields_present_rate"]
    assert answers["usable_rate"] <= answers["fields_present_rate"]
    assert set(document["by_incident_type"]) == set(INCIDENT_TYPES)
    for row in document["per_case"]:
        assert row["hit"] == (row["expected_runbook"] in row["retrieved_runbooks"])
        assert len(row["retrieved_runbooks"]) == 5
        assert row["answer"] is not None
        assert row["answer"]["seconds"] > 0


@pytest.mark.slow
def test_smd_slice_gives_hit_rates_per_incident(tmp_path: Path) -> None:
    document = evaluate(
        "--dataset", "smd", "--path", str(SLICES / "smd"), "--work-dir", str(tmp_path)
    )
    assert document["llm"]["used"] is False
    entity = document["entities"]["machine-1-2"]
    assert entity["explained"] == "model"
    # the slice's test rows hold two incidents; the first lies in the review pool
    assert entity["incidents"] == len(entity["per_incident"]) == 1
    row = entity["per_incident"][0]
    assert row["true_metrics"] == ["so"]  # interpretation_label: 886-891:17
    for source in ("model", "deviation", "random"):
        for key in ("hit_rate@100%", "hit_rate@150%"):
            assert 0.0 <= row[source][key] <= 1.0
            assert document["overall"][source][key] == pytest.approx(entity[source][key])
    assert row["random"]["hit_rate@100%"] == pytest.approx(1 / 38)
    assert row["named_metrics"] == row["named_metrics"][:1]  # k = floor(1.5 x 1) = 1
    assert row["top_features"]


@pytest.mark.slow
def test_asd_slice_predicts_a_published_kind(tmp_path: Path) -> None:
    document = evaluate(
        "--dataset", "asd", "--path", str(SLICES / "asd"), "--work-dir", str(tmp_path)
    )
    entity = document["entities"]["omi-1"]
    assert entity["incidents"] == 1  # 174-185, temporal; 58-72 lies in the review pool
    row = entity["per_incident"][0]
    assert row["true_type"] == "temporal"
    assert row["kind"] in ("metric", "temporal", "metric-temporal")
    assert entity["kind_accuracy"] == float(row["kind"] == "temporal")
    assert entity["kind_majority_baseline"] == 1.0
