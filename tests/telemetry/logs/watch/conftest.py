"""Log lines of a small service, as its log file would hold them."""

import random
from pathlib import Path


def normal_traffic(seed: int, requests: int = 20) -> str:
    """A window's worth of usual lines: the same templates, varying values."""
    rng = random.Random(seed)
    lines = []
    for i in range(requests):
        lines.append(
            f"2026-05-01 12:00:{i % 60:02d},123 INFO [worker-{i % 3}] api.http: GET "
            f"/orders/{rng.randint(1, 999)} served in {rng.randint(3, 90)} ms "
            f"user={rng.choice(['alice', 'bob', 'carol', 'dave'])}"
        )
        lines.append(
            f"2026-05-01 12:00:{i % 60:02d},456 INFO [pool] db.pool: connections "
            f"active={rng.randint(1, 9)} idle={rng.randint(1, 9)}"
        )
    return "\n".join(lines) + "\n"


def error_burst(seed: int, count: int = 25) -> str:
    """A burst of an error the service never logged before."""
    rng = random.Random(seed)
    return "".join(
        f"2026-05-01 12:01:{i % 60:02d},789 ERROR [db] db.client: connection to "
        f"10.0.3.{rng.randint(1, 200)}:5432 refused: too many clients already\n"
        for i in range(count)
    )


BURST_TEMPLATE = "connection to <IP> refused: too many clients already"


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(text)
