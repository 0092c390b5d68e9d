"""Whether an LLM answer can be shown to an on-call engineer.

A reply can be valid JSON with every field and still say nothing ("root_cause": "1") or name a
machine the anomaly is not about. Such an answer is worse than the runbook's own steps, so the
explainer replaces it by its retrieval answer (flagged ``degraded`` with the reason). The rules
are deliberately loose: they catch empty and invented answers, not weak prose.
"""

import re

from contracts.explanation import ExplainRequest
from rag.llm import LLMAnswer

# EC2-style instance ids (i- and 8 or 17 hex digits), the kind an LLM may invent.
INSTANCE_ID = re.compile(r"\bi-[0-9a-f]{8,17}\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'_-]+")
MIN_ROOT_CAUSE_WORDS = 4
MIN_IMPACT_WORDS = 3
MIN_STEP_WORDS = 3


class UnusableAnswerError(ValueError):
    """The LLM's answer is too thin to act on, or cites an instance it was not given."""


def usable_answer(answer: LLMAnswer, request: ExplainRequest) -> LLMAnswer:
    """The answer with its empty steps dropped; raises when what is left cannot be shown.

    Raises:
        UnusableAnswerError: naming every rule the answer broke.
    """
    actions = [step for step in answer.actions if _word_count(step) >= MIN_STEP_WORDS]
    prevention = [step for step in answer.prevention if _word_count(step) >= MIN_STEP_WORDS]
    problems = []
    if _word_count(answer.root_cause) < MIN_ROOT_CAUSE_WORDS:
        problems.append(f"root_cause has fewer than {MIN_ROOT_CAUSE_WORDS} words")
    if _word_count(answer.impact) < MIN_IMPACT_WORDS:
        problems.append(f"impact has fewer than {MIN_IMPACT_WORDS} words")
    if not actions:
        problems.append(f"no action of at least {MIN_STEP_WORDS} words")
    text = " ".join([answer.root_cause, answer.impact, *answer.actions, *answer.prevention])
    foreign = foreign_instances(text, request)
    if foreign:
        problems.append(f"cites instances not in the request: {', '.join(foreign)}")
    if problems:
        raise UnusableAnswerError("; ".join(problems))
    return answer.model_copy(update={"actions": actions, "prevention": prevention})


def foreign_instances(text: str, request: ExplainRequest) -> list[str]:
    """Instance ids in ``text`` that are neither the anomaly's nor in its log lines."""
    given = " ".join([request.instance_id, *request.log_lines]).lower()
    cited = {match.lower() for match in INSTANCE_ID.findall(text)}
    return sorted(name for name in cited if name not in given)


def _word_count(text: str) -> int:
    return len(_WORD.findall(text))
