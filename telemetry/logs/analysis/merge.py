"""The LLM's answers checked against their windows and folded into the findings.

A proposed finding is kept only when it cites lines of its window (the others it cites are
dropped), has a title and a cause with words in them, and at least one action, none of them a
copy of the log (a small model likes to answer with the lines it was given). Its cited
lines name templates: when a deterministic finding already covers one of them, the LLM
*confirms* it (origin ``deterministic+llm``; its cause replaces a generic one, and up to two
new actions are added), otherwise it is a new finding (``L1``, ``L2``…), merged with the LLM
findings of other windows that cite the same templates. The severity of a deterministic
finding stays its own: the LLM ranks, through ``llm_rank`` (its best rank for the finding in
any window), which orders findings of the same severity.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.log_analysis import Evidence, EvidenceLine, Finding
from telemetry.logs.analysis.llm import Answer, AnswerFinding
from telemetry.logs.analysis.remedies import GENERIC_CAUSE
from telemetry.logs.analysis.template_stats import SEVERITY_RANK

MAX_ADDED_ACTIONS = 2
MAX_EXAMPLES = 3
COPY_CHARS = 30
_WORD = re.compile(r"[A-Za-z]{3,}")
_ENTRY_HEADER = re.compile(r"\bL\d+(?:-\d+ x\d+)?\b")


@dataclass(frozen=True)
class WindowContext:
    """What the LLM saw of one window, to check its answer against.

    Attributes:
        index: The window's index.
        first_line: Its first line.
        last_line: The first line of its last record.
        text: The window's text.
        lines: Each record's first line in the window: its template id and one-line text.
        shown: The line numbers the window's text shows (its entries' first and last lines).
        known: Ids of the findings listed in the prompt.
    """

    index: int
    first_line: int
    last_line: int
    text: str
    lines: dict[int, tuple[int, str]]
    shown: tuple[int, ...]
    known: tuple[str, ...]

    def copies_log(self, text: str) -> bool:
        """Whether ``text`` copies the log instead of saying something about it: it holds an
        entry header (``L123``) or a stretch of a log line."""
        if _ENTRY_HEADER.search(text):
            return True
        stripped = text.strip()
        if len(stripped) >= COPY_CHARS and stripped[:COPY_CHARS] in self.text:
            return True
        return any(
            len(line) >= COPY_CHARS and line[:COPY_CHARS] in text for _, line in self.lines.values()
        )


@dataclass(frozen=True)
class Accepted:
    """A proposed finding that passed the checks, with the lines it cites in the window."""

    finding: AnswerFinding
    lines: tuple[int, ...]


def check_answer(answer: Answer, context: WindowContext) -> tuple[list[Accepted], list[str]]:
    """The proposed findings that pass the checks, and why the others did not.

    Args:
        answer: The LLM's answer for the window.
        context: The window it answered.

    Returns:
        The accepted findings and one reason per rejected one.
    """
    accepted, rejected = [], []
    for proposed in answer.findings:
        lines = tuple(dict.fromkeys(line for line in proposed.lines if line in context.lines))
        actions = [
            action
            for action in proposed.actions
            if _WORD.search(action) and not context.copies_log(action)
        ]
        problem = None
        if len(_WORD.findall(proposed.title)) < 1 or len(proposed.title.strip()) < 5:
            problem = f"title {proposed.title[:40]!r} names nothing"
        elif context.copies_log(proposed.title):
            problem = f"title {proposed.title[:40]!r} copies the log"
        elif not lines:
            problem = f"cites no line of window {context.index} ({proposed.lines[:5]})"
        elif len(_WORD.findall(proposed.likely_cause)) < 2 or context.copies_log(
            proposed.likely_cause
        ):
            problem = "no likely cause"
        elif not actions:
            problem = "no action that is not a copy of the log"
        if problem is not None:
            rejected.append(f"window {context.index}: {problem}")
            continue
        cleaned = proposed.model_copy(
            update={
                "title": proposed.title.strip()[:160],
                "likely_cause": proposed.likely_cause.strip()[:600],
                "actions": [action.strip()[:300] for action in actions],
            }
        )
        accepted.append(Accepted(cleaned, lines))
    return accepted, rejected


@dataclass
class FindingMerger:
    """Folds accepted LLM findings into a file's findings (see the module docstring).

    Attributes:
        findings: The deterministic findings.
        templates: Evidence of every template the LLM windows hold, by template id.
    """

    findings: list[Finding]
    templates: dict[int, Evidence]
    confirmed: set[str] = field(default_factory=set)
    _added: list[Finding] = field(default_factory=list)
    _added_keys: list[frozenset[int]] = field(default_factory=list)
    _ranks: dict[str, int] = field(default_factory=dict)

    def add(
        self, context: WindowContext, accepted: Sequence[Accepted], ranking: Sequence[str]
    ) -> None:
        """Fold one window's accepted findings and ranking in."""
        known = set(context.known)
        for rank, finding_id in enumerate(dict.fromkeys(ranking), 1):
            if finding_id in known:
                self._ranks[finding_id] = min(rank, self._ranks.get(finding_id, rank))
        for item in accepted:
            cited: dict[int, list[int]] = {}
            for line in item.lines:
                cited.setdefault(context.lines[line][0], []).append(line)
            if not self._confirm(item.finding, set(cited)):
                self._add(item.finding, cited, context)

    def result(self) -> list[Finding]:
        """Every finding, most severe first; the LLM's rank, then volume, order the rest."""
        merged = [
            finding.model_copy(update={"llm_rank": self._ranks.get(finding.id)})
            for finding in [*self.findings, *self._added]
        ]
        merged.sort(
            key=lambda f: (
                SEVERITY_RANK[f.severity],
                f.llm_rank if f.llm_rank is not None else 1_000_000,
                -sum(item.count for item in f.evidence),
            )
        )
        return merged

    @property
    def added(self) -> int:
        """New findings from the LLM."""
        return len(self._added)

    def _confirm(self, proposed: AnswerFinding, template_ids: set[int]) -> bool:
        for position, finding in enumerate(self.findings):
            if finding.kind == "llm":
                continue
            if not template_ids & {e.template_id for e in finding.evidence if e.template_id}:
                continue
            actions = list(finding.actions)
            if finding.id not in self.confirmed:  # new actions from the first confirmation
                known = {action.lower() for action in actions}
                actions += [a for a in proposed.actions if a.lower() not in known][
                    :MAX_ADDED_ACTIONS
                ]
            cause = finding.likely_cause
            if cause == GENERIC_CAUSE:
                cause = proposed.likely_cause
            self.findings[position] = finding.model_copy(
                update={
                    "origin": "deterministic+llm",
                    "likely_cause": cause,
                    "actions": actions,
                    "confidence": max(finding.confidence, proposed.confidence),
                }
            )
            self.confirmed.add(finding.id)
            return True
        return False

    def _add(
        self, proposed: AnswerFinding, cited: dict[int, list[int]], context: WindowContext
    ) -> None:
        key = frozenset(cited)
        for position, existing_key in enumerate(self._added_keys):
            if existing_key == key:
                existing = self._added[position]
                stronger = min(existing.severity, proposed.severity, key=SEVERITY_RANK.__getitem__)
                self._added[position] = existing.model_copy(
                    update={
                        "severity": stronger,
                        "confidence": max(existing.confidence, proposed.confidence),
                        "evidence": [
                            self._merge_examples(evidence, cited, context)
                            for evidence in existing.evidence
                        ],
                    }
                )
                return
        evidence = [
            self._merge_examples(
                self.templates[template_id].model_copy(update={"examples": []}), cited, context
            )
            for template_id in cited
        ]
        self._added.append(
            Finding(
                id=f"L{len(self._added) + 1}",
                title=proposed.title,
                severity=proposed.severity,
                kind="llm",
                origin="llm",
                evidence=evidence,
                likely_cause=proposed.likely_cause,
                actions=proposed.actions,
                confidence=proposed.confidence,
            )
        )
        self._added_keys.append(key)

    @staticmethod
    def _merge_examples(
        evidence: Evidence, cited: dict[int, list[int]], context: WindowContext
    ) -> Evidence:
        examples = list(evidence.examples)
        have = {example.line for example in examples}
        for line in cited.get(evidence.template_id or -1, []):
            if line not in have and len(examples) < MAX_EXAMPLES:
                examples.append(EvidenceLine(line=line, text=context.lines[line][1]))
                have.add(line)
        return evidence.model_copy(update={"examples": examples})
