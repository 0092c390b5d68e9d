"""Benchmark: retrieval over 10,000 indexed chunks, and ``/explain`` end to end with the local LLM.

Run: ``.venv/bin/python bench/rag.py [--quick]``.

1. **Index**: the shipped runbooks' chunks plus log-history chunks (``rag.log_history``) of a
   fleet simulated with a fixed seed, ``CHUNKS`` in all, embedded by the real all-MiniLM-L6-v2
   and written to a Qdrant local-mode collection on disk (``rag.knowledge_base``).
2. **Retrieval**, per query (WARN/ERROR/CRITICAL lines of the evaluation set's anomalies, which
   come from another simulation): the query is embedded alone (batch 1), then its top 5 are
   searched three ways over the same stored vectors:
   - Qdrant, the explainer's call: ``KnowledgeBase.search`` of log lines (a ``kind`` filter);
   - Qdrant without a filter (``query_points``);
   - the baseline: exact cosine search in NumPy (one matrix product and ``argpartition``, the
     filter as a mask).
   Reported: p50 / p95 of embed + search per query, search alone, and recall@5 of each Qdrant
   search against the exact top 5 of the same filter.
3. **/explain end to end**: the local llama.cpp server (Gemma 3 270M) and the API
   (``vigil rag serve``) over the same collection; ``EXPLAINS`` requests from the evaluation
   set are posted over HTTP. Each is split with the service's own Prometheus histograms, read
   from ``/metrics`` before and after it: embedding (``embedding_generation_duration_ms``),
   search (``qdrant_search_latency_ms``), LLM (``llm_request_duration_seconds``); "prompt &
   rest" is the remainder of the client's wall time (type detection, prompt, JSON validation,
   HTTP).

Prints, before the last line, ``rag_retrieval_p95_vs_numpy`` (Qdrant's embed + search p95 over
the exact NumPy search's) and, last, ``rag_retrieval_p95_ms: X`` (the explainer's retrieval
call, embed + search, p95).
"""

import sys
from pathlib import Path

# This file is named like the package it measures: put the repository root in the place of
# its folder on the import path (which also makes the evaluation set's loader importable).
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import timedelta  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from contracts.layout import raw_partition_path  # noqa: E402
from rag.chunking import Chunk  # noqa: E402
from rag.documents import list_runbooks, parse_runbook, runbook_chunks  # noqa: E402
from rag.embeddings import Embedder, load_embedder  # noqa: E402
from rag.evaluation import EVAL_SET_PATH, load_eval_set  # noqa: E402
from rag.knowledge_base import KnowledgeBase, open_knowledge_base  # noqa: E402
from rag.llm_server import HEALTH_PATH, llama_server_command  # noqa: E402
from rag.log_history import incident_windows, log_chunks  # noqa: E402
from rag.settings import RUNBOOKS_PATH, RagSettings  # noqa: E402
from training.simulator import SimulationConfig, simulate_fleet, simulated_incidents  # noqa: E402
from vigil.processes import free_port, start_server, venv_tool, wait_for_ok  # noqa: E402

CHUNKS = 10_000
K = 5
TIE_TOLERANCE = 1e-5
FLEET = SimulationConfig(instances=25, duration=timedelta(days=1), seed=5)
QUERY_LEVELS = (" WARN ", " ERROR ", " CRITICAL ")


@dataclass(frozen=True)
class Knowledge:
    """The indexed chunks in collection order, their vectors and identities."""

    vectors: NDArray[np.float32]
    keys: list[tuple[str, int]]  # (file_key, chunk) of each vector
    is_log: NDArray[np.bool_]


def knowledge_chunks() -> dict[str, list[Chunk]]:
    """``CHUNKS`` chunks by file key: every runbook chunk, then simulated log history."""
    files: dict[str, list[Chunk]] = {}
    for path in list_runbooks(RUNBOOKS_PATH):
        document = path.relative_to(RUNBOOKS_PATH).as_posix()
        files[f"runbook:{document}"] = runbook_chunks(parse_runbook(document, path.read_bytes()))
    windows = incident_windows(simulated_incidents(FLEET))
    total = sum(len(chunks) for chunks in files.values())
    for hour, table in simulate_fleet(FLEET):
        key = raw_partition_path(hour)
        chunks = log_chunks(table, key, windows)[: CHUNKS - total]
        files[f"raw:{key}"] = chunks
        total += len(chunks)
        if total == CHUNKS:
            return files
    raise SystemExit(f"the simulated fleet gives only {total} chunks; simulate more")


def build_index(kb: KnowledgeBase, embedder: Embedder, files: dict[str, list[Chunk]]) -> Knowledge:
    kb.ensure_collection()
    vectors, keys, is_log = [], [], []
    for file_key, chunks in files.items():
        embedded = embedder.encode([chunk.text for chunk in chunks])
        kb.replace_file(file_key, "bench", chunks, embedded)
        vectors.append(embedded)
        keys += [(file_key, i) for i in range(len(chunks))]
        is_log += [chunk.payload["kind"] == "log" for chunk in chunks]
    return Knowledge(np.concatenate(vectors), keys, np.array(is_log))


def queries(limit: int) -> list[str]:
    """Distinct WARN/ERROR/CRITICAL lines of the evaluation set, without their timestamps."""
    lines: dict[str, None] = {}
    for case in load_eval_set(EVAL_SET_PATH).cases:
        for line in case.request.log_lines:
            if any(level in line for level in QUERY_LEVELS):
                lines[line.split(" ", 1)[1]] = None
    return list(lines)[:limit]


def exact_top(
    vectors: NDArray[np.float32], query: NDArray[np.float32], mask: NDArray[np.bool_] | None
) -> NDArray[np.int64]:
    """Positions of the K most similar vectors (unit vectors: cosine = dot product)."""
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top])]


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def measure_retrieval(
    kb: KnowledgeBase, embedder: Embedder, knowledge: Knowledge, texts: list[str]
) -> dict[str, dict[str, float]]:
    """embed + search p50/p95, search p50/p95 and recall@K of each method (module docstring)."""
    index = {key: i for i, key in enumerate(knowledge.keys)}

    def positions(payloads: list[dict[str, object]]) -> set[int]:
        return {index[(str(p["file_key"]), int(str(p["chunk"])))] for p in payloads}

    def qdrant_filtered(vector: NDArray[np.float32]) -> set[int]:
        return positions([hit.payload for hit in kb.search(vector, ["log"], K)])

    def qdrant_plain(vector: NDArray[np.float32]) -> set[int]:
        points = kb.client.query_points(kb.collection, query=vector.tolist(), limit=K).points
        return positions([dict(p.payload or {}) for p in points])

    def numpy_filtered(vector: NDArray[np.float32]) -> set[int]:
        return set(exact_top(knowledge.vectors, vector, knowledge.is_log).tolist())

    def numpy_plain(vector: NDArray[np.float32]) -> set[int]:
        return set(exact_top(knowledge.vectors, vector, None).tolist())

    search = Callable[[NDArray[np.float32]], set[int]]
    methods: dict[str, tuple[search, NDArray[np.bool_] | None]] = {
        "Qdrant, kind=log filter (explainer)": (qdrant_filtered, knowledge.is_log),
        "Qdrant, no filter": (qdrant_plain, None),
        "NumPy exact, kind=log mask": (numpy_filtered, knowledge.is_log),
        "NumPy exact, no filter": (numpy_plain, None),
    }
    embed_ms: list[float] = []
    search_ms: dict[str, list[float]] = {name: [] for name in methods}
    recall: dict[str, list[float]] = {name: [] for name in methods}
    for text in texts:
        started = time.perf_counter()
        vector = embedder.encode([text])[0]
        embed_ms.append((time.perf_counter() - started) * 1000)
        similarity = knowledge.vectors @ vector
        for name, (find, mask) in methods.items():
            started = time.perf_counter()
            found = find(vector)
            search_ms[name].append((time.perf_counter() - started) * 1000)
            # A log line repeated in another hour is another chunk with the same vector: any
            # of the tied chunks is a right answer, so a hit is a chunk as similar as the
            # exact K-th.
            kth = similarity[exact_top(knowledge.vectors, vector, mask)].min()
            recall[name].append(sum(similarity[i] >= kth - TIE_TOLERANCE for i in found) / K)
    results = {}
    for name in methods:
        total = [e + s for e, s in zip(embed_ms, search_ms[name], strict=True)]
        p50, p95 = percentiles(total)
        s50, s95 = percentiles(search_ms[name])
        results[name] = {
            "p50": p50,
            "p95": p95,
            "search_p50": s50,
            "search_p95": s95,
            "recall": float(np.mean(recall[name])),
        }
    return results


def histogram_sums(metrics_text: str) -> dict[str, float]:
    """``_sum`` of every histogram on a /metrics page, by metric name."""
    sums = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                sums[sample.name.removesuffix("_sum")] = sample.value
    return sums


@dataclass
class ExplainSplit:
    total_ms: float
    embedding_ms: float
    search_ms: float
    llm_ms: float
    degraded: bool

    @property
    def rest_ms(self) -> float:
        return self.total_ms - self.embedding_ms - self.search_ms - self.llm_ms


def measure_explain(url: str, count: int) -> list[ExplainSplit]:
    """POST ``count`` evaluation-set anomalies to /explain and split each one's time."""
    bodies = [case.request.model_dump_json() for case in load_eval_set(EVAL_SET_PATH).cases]
    splits = []
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/explain", content=bodies[-1], headers=_JSON)  # warm-up: loads, caches
        for body in (bodies[i * len(bodies) // count] for i in range(count)):
            before = histogram_sums(client.get("/metrics").text)
            started = time.perf_counter()
            response = client.post("/explain", content=body, headers=_JSON)
            total = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            after = histogram_sums(client.get("/metrics").text)
            spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
            splits.append(
                ExplainSplit(
                    total_ms=total,
                    embedding_ms=spent.get("embedding_generation_duration_ms", 0.0),
                    search_ms=spent.get("qdrant_search_latency_ms", 0.0),
                    llm_ms=spent.get("llm_request_duration_seconds", 0.0) * 1000,
                    degraded=bool(response.json()["degraded"]),
                )
            )
    return splits


_JSON = {"Content-Type": "application/json"}


@contextlib.contextmanager
def explain_servers(qdrant_path: Path, log_path: Path) -> Iterator[str]:
    """The local LLM server and ``vigil rag serve`` on the collection; yields the API's URL."""
    llm_port, api_port = free_port(), free_port()
    llm = start_server(
        "llm",
        llama_server_command(llm_port),
        f"http://127.0.0.1:{llm_port}",
        HEALTH_PATH,
        log_path,
        120,
    )
    api = None
    try:
        wait_for_ok(llm.url + HEALTH_PATH)  # 503 while the model loads
        argv = [
            "env",
            f"VIGIL_RAG_QDRANT_PATH={qdrant_path}",
            f"VIGIL_RAG_LLM_BASE_URL={llm.url}/v1",
            venv_tool("vigil"),
            "rag",
            "serve",
            "--port",
            str(api_port),
        ]
        api_url = f"http://127.0.0.1:{api_port}"
        api = start_server("explainer", argv, api_url, "/healthz", log_path, 180)
        yield api.url
    finally:
        if api is not None:
            api.stop()
        llm.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 queries and 3 explanations")
    args = parser.parse_args()
    query_count, explain_count = (50, 3) if args.quick else (300, 10)
    embedder = load_embedder()
    embedder.encode(["warm-up"])
    with tempfile.TemporaryDirectory(prefix="vigil-bench-rag-") as scratch:
        scratch_path = Path(scratch)
        settings = RagSettings(qdrant_path=scratch_path / "qdrant")
        kb = open_knowledge_base(settings)
        files = knowledge_chunks()
        started = time.perf_counter()
        knowledge = build_index(kb, embedder, files)
        indexed_s = time.perf_counter() - started
        print(
            f"indexed {len(knowledge.keys):,} chunks ({int(knowledge.is_log.sum()):,} log lines, "
            f"the rest runbooks) in {indexed_s:.1f} s: {len(knowledge.keys) / indexed_s:,.0f} "
            f"chunks/s (embedding + Qdrant local-mode writes); collection holds {kb.count():,}"
        )
        texts = queries(query_count)
        retrieval = measure_retrieval(kb, embedder, knowledge, texts)
        kb.client.close()  # local mode: one process per collection folder; the API opens it next
        print(f"\nretrieval, top {K} of {len(knowledge.keys):,} chunks, {len(texts)} queries (ms)")
        header = ("embed+search p50", "p95", "search p50", "p95", "recall@5")
        print(
            f"{'':38} {header[0]:>16} {header[1]:>8} {header[2]:>11} {header[3]:>8} {header[4]:>9}"
        )
        for name, r in retrieval.items():
            print(
                f"{name:38} {r['p50']:16.2f} {r['p95']:8.2f} {r['search_p50']:11.2f} "
                f"{r['search_p95']:8.2f} {r['recall']:9.3f}"
            )
        ours = retrieval["Qdrant, kind=log filter (explainer)"]
        exact = retrieval["NumPy exact, kind=log mask"]
        if ours["recall"] < 0.99:
            print(f"WARNING: Qdrant recall@5 {ours['recall']:.3f} is below 0.99")

        with explain_servers(scratch_path / "qdrant", scratch_path) as url:
            splits = measure_explain(url, explain_count)
    print(f"\n/explain end to end, local Gemma 3 270M, {len(splits)} requests (ms)")
    print(f"{'':10} {'total':>9} {'embedding':>10} {'search':>9} {'prompt & rest':>14} {'LLM':>9}")
    parts = {
        "total": [s.total_ms for s in splits],
        "embedding": [s.embedding_ms for s in splits],
        "search": [s.search_ms for s in splits],
        "rest": [s.rest_ms for s in splits],
        "llm": [s.llm_ms for s in splits],
    }
    for label, pick in (("p50", 50), ("mean", None)):
        cells = [
            float(np.percentile(v, pick)) if pick is not None else float(np.mean(v))
            for v in parts.values()
        ]
        total, embedding, search, rest, llm = cells
        print(f"{label:10} {total:9.0f} {embedding:10.1f} {search:9.1f} {rest:14.1f} {llm:9.0f}")
    degraded = sum(s.degraded for s in splits)
    print(f"degraded answers (LLM fallback): {degraded} of {len(splits)}")
    print(f"rag_retrieval_recall_at_5: {ours['recall']:.3f}")
    print(f"rag_retrieval_p95_vs_numpy: {ours['p95'] / exact['p95']:.2f}")
    print(f"rag_retrieval_p95_ms: {ours['p95']:.2f}")


if __name__ == "__main__":
    main()
