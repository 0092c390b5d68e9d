"""The format of every header that ends in a level word: log4j, logback, Python, Go, BGL...

``<time, pid, host...> LEVEL [thread] logger: message``, with as many header fields as a
system writes, found without knowing the system.
"""

import re
from dataclasses import dataclass, field

from telemetry.logs.records import LogRecord, normalise_level
from telemetry.logs.timestamps import TimestampFinder

# Level words as headers write them: upper case, capitalised, or any case inside brackets,
# maybe followed by ``:`` or ``,``.
_LEVEL_WORDS = (
    *("TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "SEVERE", "FATAL"),
    *("CRITICAL", "CRIT", "ALERT", "EMERG", "FAILURE"),
)
LEVEL_TOKENS = frozenset(
    f"{spelled}{end}"
    for word in (*_LEVEL_WORDS, "INFORMATION", "VERBOSE")
    for spelled in (
        word,
        word.title(),
        *(f"[{case}]" for case in (word, word.title(), word.lower())),
    )
    for end in ("", ":", ",")
)
MAX_HEADER_TOKENS = 9
_DIGIT = re.compile(r"\d")
# One bracketed block, allowing one level of nested brackets (``[QuorumPeer[myid=1]/0:2181]``).
_BRACKETED = r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]"


@dataclass(frozen=True)
class LeveledFormat:
    """Any header that ends in a level word: ``<time, pid, host...> LEVEL [thread] logger: msg``.

    The level is looked for among the first ``MAX_HEADER_TOKENS`` tokens; the header before it
    must be empty or hold a digit (a time, a pid), so that a level word inside a sentence does
    not split it. After the level, a bracketed thread and a ``logger:`` (or ``logger -``, or
    ``logger [context]``) are taken off the message; with no logger there, the word just
    before the level is the component when it is a name (``RAS KERNEL INFO``).
    """

    timestamps: TimestampFinder
    name: str = "leveled"
    tail: re.Pattern[str] = re.compile(
        rf"^(?:(?P<thread>{_BRACKETED})\s+)?"
        r"(?:(?P<component>[A-Za-z_$][\w$.\-/#]*(?:\[[^\]\s]*\])?)"
        rf"(?::\s+|:$|\s+-\s+|\s+(?P<context>{_BRACKETED})\s+))?(?:-\s+)?(?P<message>.*)$",
        re.S,
    )
    name_token: re.Pattern[str] = re.compile(r"^[A-Za-z_][\w$.\-]*$")
    # Where the level was on the last line parsed (a one-item list: the format is frozen).
    level_index: list[int] = field(default_factory=lambda: [0])

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line``, or None when no level word closes a header."""
        # A log puts its level at the same token on every line: try where it was last time
        # with one split, then look for it among the first tokens. Splitting and a set lookup
        # per token is several times faster than a regex that tries every level word.
        hint = self.level_index[0]
        tokens = line.split(None, hint + 1)
        if (
            len(tokens) <= hint
            or tokens[hint] not in LEVEL_TOKENS
            or not LEVEL_TOKENS.isdisjoint(tokens[:hint])
        ):
            tokens = line.split(None, MAX_HEADER_TOKENS)
            for hint in range(min(len(tokens), MAX_HEADER_TOKENS)):
                if tokens[hint] in LEVEL_TOKENS:
                    break
            else:
                return None
            self.level_index[0] = hint
            tokens = line.split(None, hint + 1)
        level = tokens[hint]
        header = tokens[:hint]
        prefix = " ".join(header)
        if prefix and _DIGIT.search(prefix) is None:
            return None
        tail = self.tail.match(tokens[hint + 1] if len(tokens) > hint + 1 else "")
        if tail is None:  # the pattern ends in ``.*``: it always matches
            return None
        component = tail["component"]
        if component is None:
            words = [word for word in header if word != "-"]
            if words and self.name_token.match(words[-1]) and not words[-1].isdigit():
                component = words[-1]
        metadata = {"level": level, "header": prefix} if prefix else {"level": level}
        if tail["thread"]:
            metadata["thread"] = tail["thread"][1:-1]
        if tail["context"]:
            metadata["context"] = tail["context"][1:-1]
        return LogRecord(
            number,
            tail["message"],
            self.timestamps.find(prefix) if prefix else None,
            normalise_level(level),
            component,
            metadata,
            self.name,
        )
