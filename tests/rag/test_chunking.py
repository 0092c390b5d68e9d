"""Chunking and runbook parsing: sizes, overlap, sections, front matter, PDF."""

import itertools

import pytest

from contracts.labels import INCIDENT_TYPES
from rag.chunking import (
    LOG_CHUNK_CHARS,
    RUNBOOK_CHUNK_CHARS,
    RUNBOOK_CHUNK_OVERLAP,
    chunk_text,
    list_items,
    markdown_sections,
)
from rag.documents import list_runbooks, parse_runbook, runbook_chunks
from rag.settings import RUNBOOKS_PATH

pytestmark = pytest.mark.xdist_group("rag")


def test_chunks_respect_size_and_overlap() -> None:
    words = " ".join(f"word{i}" for i in range(1_000))
    chunks = chunk_text(words)
    assert len(chunks) > 5
    assert all(len(c) <= RUNBOOK_CHUNK_CHARS for c in chunks)
    # each chunk starts inside the previous one: about 200 chars are repeated
    for previous, current in itertools.pairwise(chunks):
        head = current[:40]
        assert head in previous
        assert len(previous) - previous.index(head) <= RUNBOOK_CHUNK_OVERLAP + 40
    # nothing is lost: every word appears in some chunk
    assert {w for c in chunks for w in c.split()} == set(words.split())


def test_chunks_do_not_split_words() -> None:
    words = " ".join(["observability"] * 300)
    assert all(set(c.split()) == {"observability"} for c in chunk_text(words))


def test_bad_overlap_is_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("text", size=100, overlap=100)


def test_markdown_sections_carry_the_title() -> None:
    text = "# Disk full\nintro\n\n## Diagnosis\n1. run du\n\n## Remediation\n- delete logs\n"
    sections = markdown_sections(text)
    assert [s.heading for s in sections] == [
        "Disk full",
        "Disk full > Diagnosis",
        "Disk full > Remediation",
    ]
    assert list_items(sections[2].body) == ["delete logs"]
    assert list_items(sections[1].body) == ["run du"]


def test_every_shipped_runbook_has_types_diagnosis_and_remediation() -> None:
    files = list_runbooks(RUNBOOKS_PATH)
    runbooks = [parse_runbook(p.name, p.read_bytes()) for p in files]
    incident_types = {r.incident_type for r in runbooks} - {None}
    analysis_types = {r.analysis_type for r in runbooks}
    assert incident_types == set(INCIDENT_TYPES)
    assert {"general", "database", "memory", "network", "security", "performance", "critical"} <= (
        analysis_types
    )
    for runbook in runbooks:
        headings = " ".join(s.heading for s in runbook.sections)
        assert "Diagnosis" in headings, runbook.document
        remediation = [s for s in runbook.sections if s.heading.endswith("Remediation")]
        assert remediation, runbook.document
        assert len(list_items(remediation[0].body)) >= 3, runbook.document
        for chunk in runbook_chunks(runbook):
            assert len(chunk.text) <= RUNBOOK_CHUNK_CHARS + len(chunk.payload["section"]) + 1
            assert chunk.payload["document"] == runbook.document


def test_front_matter_without_colon_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"broken\.md"):
        parse_runbook("broken.md", b"---\nincident_type error_spike\n---\n# X\n")


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica (hand-written objects, valid xref)."""
    text = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({s}) '" for s in lines) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text.encode()),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_pdf_runbooks_are_parsed_per_page() -> None:
    data = _pdf(["Kafka consumer lag runbook", "Restart the stuck consumer group"])
    runbook = parse_runbook("vendor/kafka.pdf", data)
    chunks = runbook_chunks(runbook)
    assert len(chunks) == 1
    assert "Restart the stuck consumer group" in chunks[0].text
    assert chunks[0].payload["section"] == "kafka > page 1"
    assert chunks[0].payload["kind"] == "runbook"


def test_log_chunk_limit_is_512() -> None:
    assert LOG_CHUNK_CHARS == 512
