"""Splitting knowledge into the chunks that are embedded: runbook sections and log lines."""

import re
from dataclasses import dataclass, field
from typing import Any

RUNBOOK_CHUNK_CHARS = 1_000
RUNBOOK_CHUNK_OVERLAP = 200
LOG_CHUNK_CHARS = 512

_WHITESPACE = re.compile(r"\s+")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Chunk:
    """Text to embed and the payload stored beside its vector."""

    text: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """A Markdown section: its heading (``Title > Heading``) and body text."""

    heading: str
    body: str


def chunk_text(
    text: str, size: int = RUNBOOK_CHUNK_CHARS, overlap: int = RUNBOOK_CHUNK_OVERLAP
) -> list[str]:
    """Windows of at most ``size`` chars, each starting ``overlap`` chars before the last ended.

    A window ends at the last line break or space in its final quarter when there is one, and
    the overlap starts at a word, so words and list items are not cut in half.
    """
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size): got size={size}, overlap={overlap}")
    text = text.strip()
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            floor = start + size * 3 // 4
            cut = max(text.rfind("\n", floor, end), text.rfind(" ", floor, end))
            if cut > start:
                end = cut
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= len(text):
            break
        next_start = end - overlap
        boundary = _WHITESPACE.search(text, next_start, end)
        if boundary and overlap:  # begin the overlap on a word, not inside one
            next_start = boundary.end()
        start = max(next_start, start + 1)
    return chunks


def markdown_sections(text: str) -> list[Section]:
    """Sections split at headings; each heading is prefixed by the document's ``#`` title."""
    title = ""
    sections: list[Section] = []
    heading = ""
    lines: list[str] = []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        if "\n".join(lines).strip():
            sections.append(Section(heading or title, "\n".join(lines).strip()))
        lines = []
        level, name = len(match.group(1)), match.group(2)
        if level == 1 and not title:
            title, heading = name, name
        else:
            heading = f"{title} > {name}" if title else name
    if "\n".join(lines).strip():
        sections.append(Section(heading or title, "\n".join(lines).strip()))
    return sections


def list_items(text: str) -> list[str]:
    """The bullet and numbered items of a Markdown body, without their markers."""
    items = []
    for line in text.splitlines():
        match = re.match(r"^\s*(?:[-*+]|\d+[.)])\s+(.*\S)", line)
        if match:
            items.append(match.group(1))
    return items
