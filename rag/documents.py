"""Runbooks on disk (Markdown with a small front matter, or PDF) turned into chunks."""

import io
import re
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

from rag.chunking import Chunk, Section, chunk_text, markdown_sections

RUNBOOK_SUFFIXES = (".md", ".pdf")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


@dataclass(frozen=True)
class Runbook:
    """One runbook file: what it is about and its sections."""

    document: str  # path relative to the runbook folder
    title: str
    incident_type: str | None
    analysis_type: str | None
    sections: list[Section]


def list_runbooks(folder: Path) -> list[Path]:
    """Runbook files under ``folder`` (recursively), sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"runbook folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in RUNBOOK_SUFFIXES)


def parse_runbook(document: str, data: bytes) -> Runbook:
    """Parse a runbook's bytes; ``document`` names it (its suffix picks the parser)."""
    if document.lower().endswith(".pdf"):
        return _parse_pdf(document, data)
    return _parse_markdown(document, data.decode("utf-8"))


def runbook_chunks(runbook: Runbook) -> list[Chunk]:
    """1,000-char chunks with 200 chars of overlap, never spanning two sections."""
    chunks = []
    for section in runbook.sections:
        for text in chunk_text(section.body):
            chunks.append(
                Chunk(
                    text=f"{section.heading}\n{text}",
                    payload={
                        "kind": "runbook",
                        "document": runbook.document,
                        "title": runbook.title,
                        "section": section.heading,
                        "incident_type": runbook.incident_type,
                        "analysis_type": runbook.analysis_type,
                    },
                )
            )
    return chunks


def _parse_markdown(document: str, text: str) -> Runbook:
    meta: dict[str, str] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        for line in match.group(1).splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"{document}: front matter line without ':': {line!r}")
            meta[key.strip()] = value.strip()
        text = text[match.end() :]
    sections = markdown_sections(text)
    title = sections[0].heading.split(" > ")[0] if sections else Path(document).stem
    return Runbook(document, title, meta.get("incident_type"), meta.get("analysis_type"), sections)


def _parse_pdf(document: str, data: bytes) -> Runbook:
    reader = PdfReader(io.BytesIO(data))
    title = (reader.metadata.title if reader.metadata else None) or Path(document).stem
    sections = [
        Section(f"{title} > page {number}", text.strip())
        for number, page in enumerate(reader.pages, start=1)
        if (text := page.extract_text() or "").strip()
    ]
    return Runbook(document, title, None, None, sections)
