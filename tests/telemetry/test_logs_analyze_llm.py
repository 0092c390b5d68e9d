"""``vigil logs analyze`` with the real local LLM: llama.cpp's server with Gemma 3 270M on
loopback (the explainer's fixture), one window, and its tokenizer counting the windows.

Gemma 270M rarely proposes a finding that passes the checks; what must hold whatever it says
is that its answer is read (``llm.used``), that the windows fit the budget in the server's own
tokens, and that every deterministic finding is still there with its severity."""

from pathlib import Path

import httpx
import pytest

from telemetry.logs.analysis.pipeline import analyze_inputs
from telemetry.logs.analysis.settings import LogAnalysisSettings
from telemetry.logs.analysis.tokens import ApproximateTokenizer
from tests.rag.conftest import llm_server
from tests.telemetry.logs.conftest import SLICE_LOGHUB
from vigil.processes import ServerProcess

__all__ = ["llm_server"]  # the fixture, imported so pytest finds it here
pytestmark = [pytest.mark.xdist_group("rag"), pytest.mark.slow, pytest.mark.timeout(900)]

SAMPLE = Path(__file__).parent / "data" / "analysis" / "orders-db.log"


def test_the_local_llm_answers_and_the_deterministic_findings_stay(
    llm_server: ServerProcess,
) -> None:
    settings = LogAnalysisSettings(
        window_tokens=512,
        llm_max_windows=1,
        llm_max_tokens=384,
        llm_timeout_s=600.0,  # two shared cores: no deadline that a busy machine would miss
    )
    alone = analyze_inputs([str(SAMPLE)], settings, use_llm=False).files[0]
    [analysis] = analyze_inputs([str(SAMPLE)], settings, llm_url=f"{llm_server.url}/v1").files
    llm = analysis.llm
    assert llm.used, (llm.error, llm.rejections)
    assert (llm.windows_sent, llm.windows_answered) == (1, 1)
    assert llm.error is None
    assert llm.provider == "openai_compatible"
    assert llm.model  # asked of the server (its /v1/models)
    assert analysis.window_settings.tokenizer == f"server {llm_server.url}/tokenize"
    assert [w.sent_to_llm for w in analysis.windows].count(True) == 1
    assert all(window.tokens <= 512 for window in analysis.windows)
    kept = {finding.id: finding for finding in analysis.findings}
    for finding in alone.findings:
        assert finding.id in kept
        assert kept[finding.id].severity == finding.severity
        # The same lines; window indices may differ, the server's tokens cutting other windows.
        assert [e.model_dump(exclude={"windows"}) for e in kept[finding.id].evidence] == [
            e.model_dump(exclude={"windows"}) for e in finding.evidence
        ]
    added = [finding for finding in analysis.findings if finding.origin == "llm"]
    assert len(added) == llm.findings_added
    assert analysis.analysis_type.used == "database"


def test_the_approximate_tokenizer_does_not_undercount_the_models_tokens(
    llm_server: ServerProcess,
) -> None:
    lines = (SLICE_LOGHUB / "HDFS" / "HDFS_2k.log").read_text().splitlines()[:40]
    lines += SAMPLE.read_text().splitlines()[:40]
    approximate = ApproximateTokenizer()
    real_total = approximate_total = 0
    with httpx.Client(timeout=60) as client:
        for line in lines:
            response = client.post(f"{llm_server.url}/tokenize", json={"content": line})
            real = len(response.json()["tokens"])
            estimate = approximate.count(line)
            assert estimate >= 0.95 * real, line
            real_total += real
            approximate_total += estimate
    assert real_total <= approximate_total <= 1.3 * real_total
