"""Field types of the JSON APIs that accept only what their published schema says.

Pydantic's lax mode reads a JSON number (or a numeric string) as Unix time for a datetime; the
APIs' OpenAPI schemas promise an RFC 3339 date-time string, so anything else is refused with a
422 rather than guessed at (seconds or milliseconds?). A date-time is normalised to UTC here,
so one whose offset carries it past year 1 or 9999 is refused too, not a 500 deep inside.
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator


def _iso_8601(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 date-time") from None
        return value
    raise ValueError(f"must be an ISO 8601 date-time string, not {type(value).__name__}")


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]
