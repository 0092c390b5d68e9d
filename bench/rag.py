"""Benchmark: retrieval over 10,000 indexed chunks, and ``/explain`` end to end with the local LLM.

Run: ``.venv/bin/python -m bench.rag [--quick]``.

1. **Index**: the shipped runbooks' chunks plus log-history chunks (``rag.log_history``: one per
   log template, instance and 5-minute window) of a fleet simulated with a fixed seed,
   ``CHUNKS`` in all, embedded by the real all-MiniLM-L6-v2 (each distinct text once) and
   written, the same vectors, to two collections through ``rag.knowledge_base``: Qdrant Edge
   (ours: the Qdrant engine in-process, payload indexes, optimised as ``vigil rag index``
   leaves it) and qdrant-client's local mode (before: a pure-Python stand-in that scans every
   point's payload for a filter).
2. **Retrieval**, per query (WARN/ERROR/CRITICAL lines of the evaluation set's anomalies, which
   come from another simulation, each with its anomaly's service): the query is embedded alone
   (batch 1), then its top 5 are searched over the same stored vectors:
   - the explainer's log search (``Explainer.retrieve``): ``kind=log``, the anomaly's service,
     ``ts`` within ``log_window_hours`` before the window's end, committed points only; on
     Qdrant Edge, on local mode, and exactly in NumPy (one matrix product and
     ``argpartition``, the filter as a mask);
   - Qdrant Edge and NumPy without a filter.
   Reported: p50 / p95 of embed + search per query, search alone, and recall@5 of each search
   against the exact top 5 of the same filter.
3. **/explain end to end**: the local llama.cpp server (Gemma 3 270M) and the API
   (``vigil rag serve``) over the Qdrant Edge collection; ``EXPLAINS`` requests from the
   evaluation set are posted over HTTP. Each is split with the service's own Prometheus
   histograms, read from ``/metrics`` before and after it: embedding
   (``embedding_generation_duration_ms``), search (``qdrant_search_latency_ms``), LLM
   (``llm_request_duration_seconds``); "prompt & rest" is the remainder of the client's wall
   time (type detection, prompt, JSON validation, HTTP).

Prints, before the last lines, ``rag_search_p95_vs_local_mode`` and
``rag_retrieval_p95_vs_local_mode`` (ours over local mode's p95, search alone and embed +
search, same run), ``rag_retrieval_p95_vs_numpy``, ``rag_search_p95_ms`` and, last,
``rag_retrieval_p95_ms: X`` (the explainer's log search, embed + search, p95, on Qdrant Edge).
"""

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from numpy.typing import NDArray
from prometheus_client.parser import text_string_to_metric_families
from qdrant_client import QdrantClient

from contracts.layout import raw_partition_path
from rag.chunking import Chunk
from rag.documents import list_runbooks, parse_runbook, runbook_chunks
from rag.embeddings import Embedder, load_embedder
from rag.evaluation import EVAL_SET_PATH, load_eval_set
from rag.indexing import encode_once
from rag.knowledge_base import KnowledgeBase, open_knowledge_base
from rag.llm_server import HEALTH_PATH, llama_server_command
from rag.log_history import LOG_WINDOW, incident_windows, log_chunks
from rag.retrieval_server import ServerStore
from rag.settings import RUNBOOKS_PATH, RagSettings
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import simulate_fleet, simulated_incidents
from vigil.processes import free_port, start_server, venv_tool, wait_for_ok

CHUNKS = 10_000
K = 5
TIE_TOLERANCE = 1e-5
FLEET = SimulationConfig(instances=25, duration=timedelta(days=1), seed=5)
QUERY_LEVELS = (" WARN ", " ERROR ", " CRITICAL ")


@dataclass(frozen=True)
class Knowledge:
    """The indexed chunks in collection order, their vectors, identities and filter fields."""

    vectors: NDArray[np.float32]
    keys: list[tuple[str, int]]  # (file_key, chunk) of each vector
    is_log: NDArray[np.bool_]
    services: NDArray[np.str_]
    ts: NDArray[np.float64]
    distinct_texts: int


@dataclass(frozen=True)
class Query:
    """A log line of an anomaly, its service and the window the explainer searches."""

    text: str
    service: str | None
    since: datetime
    until: datetime


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


def build_index(
    collections: list[KnowledgeBase], embedder: Embedder, files: dict[str, list[Chunk]]
) -> Knowledge:
    """Embed every file once and write the same vectors to each collection."""
    for kb in collections:
        kb.ensure_collection()
    vectors, keys, distinct = [], [], 0
    for file_key, chunks in files.items():
        embedded = encode_once(embedder, chunks)
        distinct += len({chunk.text for chunk in chunks})
        for kb in collections:
            kb.replace_file(file_key, "bench", chunks, embedded)
        vectors.append(embedded)
        keys += [(file_key, i) for i in range(len(chunks))]
    for kb in collections:
        kb.optimize()  # as ``vigil rag index`` does after writing
    payloads = [chunk.payload for chunks in files.values() for chunk in chunks]
    return Knowledge(
        np.concatenate(vectors),
        keys,
        np.array([p["kind"] == "log" for p in payloads]),
        np.array([str(p.get("service")) for p in payloads]),
        np.array([float(p.get("ts", np.nan)) for p in payloads]),
        distinct,
    )


def queries(limit: int, knowledge: Knowledge, settings: RagSettings) -> list[Query]:
    """Distinct WARN/ERROR/CRITICAL lines of the evaluation set, without their timestamps,
    each searched as the explainer would for an anomaly of its service in the last indexed
    window of the simulated fleet."""
    until = datetime.fromtimestamp(float(np.nanmax(knowledge.ts)) + LOG_WINDOW.total_seconds(), UTC)
    since = until - timedelta(hours=settings.log_window_hours)
    lines: dict[str, str | None] = {}
    for case in load_eval_set(EVAL_SET_PATH).cases:
        for line in case.request.log_lines:
            if any(level in line for level in QUERY_LEVELS):
                lines.setdefault(line.split(" ", 1)[1], case.request.service)
    return [Query(text, service, since, until) for text, service in list(lines.items())[:limit]]


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


OURS = "Qdrant Edge, explainer filter (ours)"
BEFORE = "Qdrant local mode, explainer filter (before)"
EXACT = "NumPy exact, explainer filter"


def measure_retrieval(
    kb: KnowledgeBase,
    local: KnowledgeBase,
    embedder: Embedder,
    knowledge: Knowledge,
    asked: list[Query],
) -> dict[str, dict[str, float]]:
    """embed + search p50/p95, search p50/p95 and recall@K of each method (module docstring)."""
    index = {key: i for i, key in enumerate(knowledge.keys)}

    def positions(payloads: list[dict[str, object]]) -> set[int]:
        return {index[(str(p["file_key"]), int(str(p["chunk"])))] for p in payloads}

    def explainer_search(target: KnowledgeBase) -> Search:
        def search(vector: NDArray[np.float32], query: Query) -> set[int]:
            hits = target.search(
                vector, ["log"], K, service=query.service, since=query.since, until=query.until
            )
            return positions([hit.payload for hit in hits])

        return search

    def explainer_mask(query: Query) -> NDArray[np.bool_]:
        mask = knowledge.is_log & (knowledge.ts >= query.since.timestamp())
        mask &= knowledge.ts <= query.until.timestamp()
        return mask & (knowledge.services == query.service) if query.service else mask

    def edge_plain(vector: NDArray[np.float32], _: Query) -> set[int]:
        return positions([hit.payload for hit in kb.client.query(vector, None, K)])

    def numpy_filtered(vector: NDArray[np.float32], query: Query) -> set[int]:
        return set(exact_top(knowledge.vectors, vector, explainer_mask(query)).tolist())

    def numpy_plain(vector: NDArray[np.float32], _: Query) -> set[int]:
        return set(exact_top(knowledge.vectors, vector, None).tolist())

    def no_mask(_: Query) -> None:
        return None

    methods: dict[str, tuple[Search, Mask]] = {
        OURS: (explainer_search(kb), explainer_mask),
        BEFORE: (explainer_search(local), explainer_mask),
        EXACT: (numpy_filtered, explainer_mask),
        "Qdrant Edge, no filter": (edge_plain, no_mask),
        "NumPy exact, no filter": (numpy_plain, no_mask),
    }
    embed_ms: list[float] = []
    search_ms: dict[str, list[float]] = {name: [] for name in methods}
    recall: dict[str, list[float]] = {name: [] for name in methods}
    for query in asked:
        started = time.perf_counter()
        vector = embedder.encode([query.text])[0]
        embed_ms.append((time.perf_counter() - started) * 1000)
        similarity = knowledge.vectors @ vector
        for name, (find, mask) in methods.items():
            started = time.perf_counter()
            found = find(vector, query)
            search_ms[name].append((time.perf_counter() - started) * 1000)
            # A template repeated in another window is another chunk with the same vector: any
            # of the tied chunks is a right answer, so a hit is a chunk as similar as the
            # exact K-th.
            kth = similarity[exact_top(knowledge.vectors, vector, mask(query))].min()
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


Search = Callable[[NDArray[np.float32], Query], set[int]]
Mask = Callable[[Query], NDArray[np.bool_] | None]


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
        local_client = QdrantClient(path=str(scratch_path / "local-mode"))
        local = KnowledgeBase(ServerStore(local_client, settings.collection), settings.collection)
        files = knowledge_chunks()
        started = time.perf_counter()
        knowledge = build_index([kb, local], embedder, files)
        indexed_s = time.perf_counter() - started
        logs = int(knowledge.is_log.sum())
        print(
            f"indexed {len(knowledge.keys):,} chunks ({logs:,} log templates per instance-window, "
            f"the rest runbooks; {knowledge.distinct_texts:,} distinct texts embedded) into "
            f"Qdrant Edge and local mode in {indexed_s:.1f} s; collections hold "
            f"{kb.count():,} / {local.count():,}"
        )
        asked = queries(query_count, knowledge, settings)
        retrieval = measure_retrieval(kb, local, embedder, knowledge, asked)
        kb.client.close()  # one process per shard: the API opens it next
        local.client.close()
        print(
            f"\nretrieval, top {K} of {len(knowledge.keys):,} chunks, {len(asked)} queries (ms); "
            f"explainer filter: kind=log, the anomaly's service, the last "
            f"{settings.log_window_hours:g} h, committed"
        )
        header = ("embed+search p50", "p95", "search p50", "p95", "recall@5")
        print(
            f"{'':46} {header[0]:>16} {header[1]:>8} {header[2]:>11} {header[3]:>8} {header[4]:>9}"
        )
        for name, r in retrieval.items():
            print(
                f"{name:46} {r['p50']:16.2f} {r['p95']:8.2f} {r['search_p50']:11.2f} "
                f"{r['search_p95']:8.2f} {r['recall']:9.3f}"
            )
        ours, before, exact = retrieval[OURS], retrieval[BEFORE], retrieval[EXACT]
        if ours["recall"] < 0.99:
            print(f"WARNING: Qdrant Edge recall@5 {ours['recall']:.3f} is below 0.99")

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
    print(f"rag_search_p95_vs_local_mode: {ours['search_p95'] / before['search_p95']:.4f}")
    print(f"rag_retrieval_p95_vs_local_mode: {ours['p95'] / before['p95']:.4f}")
    print(f"rag_retrieval_p95_vs_numpy: {ours['p95'] / exact['p95']:.2f}")
    print(f"rag_search_p95_ms: {ours['search_p95']:.2f}")
    print(f"rag_retrieval_p95_ms: {ours['p95']:.2f}")


if __name__ == "__main__":
    main()
