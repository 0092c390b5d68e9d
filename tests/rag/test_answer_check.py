"""An LLM answer the service would not show: too thin to act on, or citing another machine."""

from typing import Any

import pytest

from contracts.explanation import ExplainRequest
from rag.answer_check import UnusableAnswerError, usable_answer
from rag.llm import LLMAnswer

REQUEST = ExplainRequest.model_validate(
    {
        "instance_id": "i-0aaaaaaaaaaaaaaaa",
        "window_start": "2026-03-02T10:00:00Z",
        "window_end": "2026-03-02T10:05:00Z",
        "score": 0.95,
        "model": "xgboost_anomaly",
        "top_features": [{"name": "database_connections_max_15", "value": 500.0}],
        "log_lines": ["ERROR replica i-0cccccccccccccccc lagging 40 s behind the primary"],
    }
)
GOOD: dict[str, Any] = {
    "root_cause": "The connection pool of the database is exhausted by a client leak.",
    "impact": "Checkout requests fail with timeouts.",
    "actions": ["Restart the leaking client pods", "1", "Raise max_connections for now"],
    "prevention": ["Put a pooler in front of the database", "ok"],
}


def _answer(**changes: Any) -> LLMAnswer:
    return LLMAnswer.model_validate({**GOOD, **changes})


def test_a_substantial_answer_is_kept_without_its_empty_steps() -> None:
    kept = usable_answer(_answer(), REQUEST)
    assert kept.root_cause == GOOD["root_cause"]
    assert kept.actions == ["Restart the leaking client pods", "Raise max_connections for now"]
    assert kept.prevention == ["Put a pooler in front of the database"]


def test_instances_from_the_request_and_its_logs_may_be_named() -> None:
    cited = "Replica i-0cccccccccccccccc lags, so i-0aaaaaaaaaaaaaaaa times out on reads."
    assert usable_answer(_answer(root_cause=cited), REQUEST).root_cause == cited


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"root_cause": "1"}, "root_cause has fewer than 4 words"),
        ({"root_cause": "service: ec2"}, "root_cause has fewer than 4 words"),
        ({"impact": "1"}, "impact has fewer than 3 words"),
        ({"actions": ["1", "prevention", "restart it"]}, "no action of at least 3 words"),
        (
            {"impact": "Requests to i-0123456789abcdef0 fail."},
            "cites instances not in the request: i-0123456789abcdef0",
        ),
    ],
)
def test_thin_or_invented_answers_are_refused_with_the_reason(
    changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(UnusableAnswerError, match=reason):
        usable_answer(_answer(**changes), REQUEST)


def test_every_broken_rule_is_named() -> None:
    with pytest.raises(UnusableAnswerError) as raised:
        usable_answer(_answer(root_cause="1", impact="1", actions=["1"]), REQUEST)
    assert str(raised.value).count(";") == 2
