"""The synthetic samples of ``vigil logs analyze``'s tests, written from fixed seeds.

Run ``.venv/bin/python tests/telemetry/data/analysis/make_samples.py`` to rewrite them;
``tests/telemetry/logs/analysis/test_samples.py`` fails when the files drift from this script.

- ``orders-db.log``: a Java service's log (``DATE TIME LEVEL [thread] logger: msg``) in front
  of PostgreSQL: routine requests and duplicate-key errors, then an incident of deadlocks
  (with their stack traces), an exhausted connection pool, statement timeouts and slow
  queries.
- ``search-memory.log``: a search service whose heap fills: GC pauses with a rising heap,
  then full GCs, ``java.lang.OutOfMemoryError`` stack traces and GC-overhead errors.
"""

import random
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path


def clock(start: datetime) -> Callable[[random.Random, int, int], str]:
    """A clock that moves a random few seconds on each tick and prints log4j's time."""
    state = {"t": start}

    def tick(rng: random.Random, low: int = 1, high: int = 5) -> str:
        state["t"] += timedelta(seconds=rng.randint(low, high), milliseconds=rng.randint(0, 999))
        t = state["t"]
        return t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"

    return tick


def database() -> list[str]:
    """The lines of ``orders-db.log``."""
    rng = random.Random(17)
    tick = clock(datetime(2026, 3, 2, 9, 50))
    tables = ["orders", "order_items", "customers", "payments"]
    lines = []
    for i in range(150):
        incident = 80 <= i < 115
        r = rng.random()
        thread = f"http-nio-8080-exec-{rng.randint(1, 40)}"
        ts = tick(rng, 1, 3 if incident else 8)
        if not incident:
            if r < 0.5:
                lines.append(
                    f"{ts} INFO  [{thread}] c.s.orders.api.OrderController: GET "
                    f"/api/orders/{rng.randint(1000, 99999)} 200 {rng.randint(4, 60)}ms"
                )
            elif r < 0.65:
                lines.append(
                    f"{ts} INFO  [{thread}] c.s.orders.repo.OrderRepository: query select "
                    f"* from {rng.choice(tables)} where id=? took {rng.randint(1, 40)} ms"
                )
            elif r < 0.75:
                lines.append(
                    f"{ts} DEBUG [HikariPool-1 housekeeper] "
                    "com.zaxxer.hikari.pool.HikariPool: HikariPool-1 - Pool stats "
                    f"(total=20, active={rng.randint(1, 8)}, idle={rng.randint(8, 19)}, "
                    "waiting=0)"
                )
            elif r < 0.85:
                lines.append(
                    f"{ts} INFO  [{thread}] c.s.orders.service.PaymentService: payment "
                    f"{rng.randint(10**6, 10**7)} captured for order "
                    f"{rng.randint(1000, 99999)}"
                )
            elif r < 0.93:
                lines.append(
                    f"{ts} WARN  [{thread}] o.h.engine.jdbc.spi.SqlExceptionHelper: SQL "
                    "Error: 0, SQLState: 23505"
                )
                lines.append(
                    f"{ts} ERROR [{thread}] o.h.engine.jdbc.spi.SqlExceptionHelper: "
                    "ERROR: duplicate key value violates unique constraint "
                    '"payments_order_id_key"'
                )
            else:
                lines.append(
                    f"{ts} INFO  [scheduling-1] c.s.orders.jobs.ReconcileJob: reconciled "
                    f"{rng.randint(10, 400)} orders in {rng.randint(100, 900)} ms"
                )
        else:
            if r < 0.3:
                lines.append(
                    f"{ts} ERROR [{thread}] o.h.engine.jdbc.spi.SqlExceptionHelper: "
                    "ERROR: deadlock detected"
                )
                lines.append(
                    f"  Detail: Process {rng.randint(4000, 4999)} waits for ShareLock on "
                    f"transaction {rng.randint(10**5, 10**6)}; blocked by process "
                    f"{rng.randint(4000, 4999)}."
                )
                lines.append("org.postgresql.util.PSQLException: ERROR: deadlock detected")
                lines.append(
                    "\tat "
                    "org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2713)"
                )
                lines.append(
                    "\tat com.shop.orders.repo.OrderRepository.markPaid(OrderRepository.java:88)"
                )
                lines.append("\t... 42 more")
            elif r < 0.55:
                lines.append(
                    f"{ts} WARN  [{thread}] com.zaxxer.hikari.pool.HikariPool: "
                    "HikariPool-1 - Connection is not available, request timed out after "
                    f"30000ms (total=20, active=20, idle=0, waiting={rng.randint(5, 60)})"
                )
            elif r < 0.75:
                lines.append(
                    f"{ts} ERROR [{thread}] o.h.engine.jdbc.spi.SqlExceptionHelper: "
                    "ERROR: canceling statement due to statement timeout"
                )
            elif r < 0.9:
                lines.append(
                    f"{ts} WARN  [{thread}] c.s.orders.repo.OrderRepository: slow query "
                    "select sum(amount) from payments where created_at > ? took "
                    f"{rng.randint(5000, 30000)} ms"
                )
            else:
                lines.append(
                    f"{ts} INFO  [{thread}] c.s.orders.api.OrderController: GET "
                    f"/api/orders/{rng.randint(1000, 99999)} 503 {rng.randint(30000, 31000)}ms"
                )
    return lines


def memory() -> list[str]:
    """The lines of ``search-memory.log``."""
    rng = random.Random(23)
    tick = clock(datetime(2026, 3, 3, 14, 0))
    lines = []
    heap = 35
    for i in range(160):
        incident = i >= 100
        heap = min(99, heap + rng.randint(0, 2)) if i > 40 else heap
        r = rng.random()
        thread = f"search-worker-{rng.randint(1, 16)}"
        ts = tick(rng, 1, 3 if incident else 6)
        if not incident or r < 0.25:
            if r < 0.55:
                lines.append(
                    f"{ts} INFO  [{thread}] c.s.search.QueryHandler: query "
                    f"q={rng.choice(['shoes', 'red dress', 'laptop bag', 'usb c cable'])} "
                    f"hits={rng.randint(0, 5000)} in {rng.randint(5, 120)}ms"
                )
            elif r < 0.7:
                lines.append(
                    f"{ts} INFO  [index-refresh] c.s.search.IndexManager: refreshed "
                    f"segment {rng.randint(1, 999)} ({rng.randint(1, 200)} MB)"
                )
            elif r < 0.85:
                lines.append(
                    f"{ts} WARN  [gc-monitor] c.s.search.GcMonitor: GC pause "
                    f"{rng.randint(200, 900)}ms (G1 Young Generation), heap usage {heap}% "
                    "of 4096 MB"
                )
            else:
                lines.append(
                    f"{ts} INFO  [cache-loader] c.s.search.ResultCache: cache size "
                    f"{rng.randint(100, 900)} MB, {rng.randint(10**4, 10**6)} entries"
                )
        else:
            if r < 0.5:
                lines.append(
                    f"{ts} WARN  [gc-monitor] c.s.search.GcMonitor: Full GC took "
                    f"{rng.randint(2000, 9000)}ms, heap usage {heap}% of 4096 MB after "
                    "collection"
                )
            elif r < 0.8:
                lines.append(f"{ts} ERROR [{thread}] c.s.search.QueryHandler: request failed")
                lines.append("java.lang.OutOfMemoryError: Java heap space")
                lines.append("\tat java.util.Arrays.copyOf(Arrays.java:3537)")
                lines.append("\tat com.shop.search.ResultCache.put(ResultCache.java:71)")
                lines.append("\tat com.shop.search.QueryHandler.handle(QueryHandler.java:144)")
            else:
                lines.append(
                    f"{ts} ERROR [{thread}] c.s.search.QueryHandler: GC overhead limit "
                    f"exceeded while serving query {rng.randint(10**5, 10**6)}"
                )
    return lines


SAMPLES = {"orders-db.log": database, "search-memory.log": memory}


def write_samples(folder: Path) -> list[Path]:
    """Write every sample into ``folder``; their paths."""
    paths = []
    for name, lines in SAMPLES.items():
        path = folder / name
        path.write_text("\n".join(lines()) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    write_samples(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
