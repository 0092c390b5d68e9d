"""Timestamps as logs write them, turned into UTC datetimes.

One ordered list of patterns covers ISO 8601 and its log4j / Python variants, syslog and ctime
(``Jun 14 15:16:01``, ``Sun Dec 04 04:47:44 2005``), Apache access (``10/Oct/2000:13:55:36
-0700``), compact (``20171223-22:15:29:606``, ``081109 203615``), logcat (``03-17
16:13:38.811``), dotted (``2005-06-03-15.42.50.675872``) and epoch seconds or milliseconds.
A time without a zone is taken as UTC; one without a year gets ``default_year``.
"""

import re
from datetime import UTC, datetime, timedelta, timezone

MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_TIME = r"(?P<H>\d{1,2})[:.](?P<M>\d{2})[:.](?P<S>\d{2})(?:[.,:](?P<f>\d{1,9}))?"
_ZONE = r"(?:\s?(?P<tz>Z|[+-]\d{2}:?\d{2}|UTC|GMT)\b)?"
SECONDS_CACHE_SIZE = 4096
_MONTH_NAME = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"

# Most specific first: the first pattern that matches wins.
PATTERNS = [
    re.compile(
        r"(?<!\d)(?P<y>(?:19|20)\d{2})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})(?:[T ]|-)"
        + _TIME
        + _ZONE
    ),
    re.compile(
        r"(?<!\d)(?P<d>\d{1,2})/"
        + _MONTH_NAME
        + r"/(?P<y>\d{4}):"
        + _TIME
        + r"(?: (?P<tz>[+-]\d{4}))?"
    ),
    re.compile(
        r"\b"  # a weekday before the month is allowed, and ignored
        + _MONTH_NAME
        + r"\s{1,2}(?P<d>\d{1,2}),? (?:(?P<y0>\d{4}) )?"
        + _TIME
        + r"(?: (?P<y>\d{4})\b)?"
        + _ZONE
    ),
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<mo>\d{2})(?P<d>\d{2})[-T ]?" + _TIME + _ZONE),
    re.compile(r"(?<![\d/])(?P<y2>\d{2})/(?P<mo>\d{2})/(?P<d>\d{2}) " + _TIME),
    re.compile(r"(?<![\d/])(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})[ :]" + _TIME + _ZONE),
    re.compile(r"(?<![\d-])(?P<mo>\d{2})-(?P<d>\d{2}) " + _TIME),
    re.compile(
        r"^(?P<y2>\d{2})(?P<mo>\d{2})(?P<d>\d{2}) (?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?!\d)"
    ),
    re.compile(r"(?<![\d.])(?P<epoch>1\d{9}|1\d{12})(?:\.(?P<ef>\d{1,9}))?(?![\d.])"),
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})-(?P<mo>\d{2})-(?P<d>\d{2})(?!\d)"),
]


class TimestampFinder:
    """Finds timestamps with ``PATTERNS``, trying first the one that matched last time.

    A log writes every timestamp the same way, so after the first line one search suffices.
    Texts already seen are cached, and so is the time up to the second (many lines share it:
    only the fraction is added).
    """

    def __init__(self, default_year: int) -> None:
        """A finder.

        Args:
            default_year: The year of timestamps written without one (syslog, logcat).
        """
        self.default_year = default_year
        self._patterns = list(PATTERNS)
        self._seconds: dict[tuple[str | None, ...], datetime | None] = {}
        self._texts: dict[str, datetime | None] = {}

    def find(self, text: str) -> datetime | None:
        """The first timestamp written anywhere in ``text``, in UTC.

        Args:
            text: A header, a field or a whole line.

        Returns:
            The timestamp as an aware UTC datetime, or None when ``text`` holds none (or only
            an impossible one, such as month 13).
        """
        if text in self._texts:
            return self._texts[text]
        found = None
        for index, pattern in enumerate(self._patterns):
            match = pattern.search(text)
            if match is not None:
                if index:
                    self._patterns.insert(0, self._patterns.pop(index))
                found = self._build(match.groupdict())
                break
        if len(self._texts) >= SECONDS_CACHE_SIZE:
            self._texts.clear()
        self._texts[text] = found
        return found

    def _build(self, parts: dict[str, str | None]) -> datetime | None:
        fraction = parts.pop("f", None)
        key = tuple(parts.values())
        if key not in self._seconds:
            if len(self._seconds) >= SECONDS_CACHE_SIZE:
                self._seconds.clear()
            self._seconds[key] = _build(parts, self.default_year)
        stamp = self._seconds[key]
        if stamp is None or not fraction:
            return stamp
        return stamp.replace(microsecond=_microseconds(fraction))


def _build(parts: dict[str, str | None], default_year: int) -> datetime | None:
    try:
        if parts.get("epoch"):
            return _from_epoch(parts["epoch"] or "", parts.get("ef"))
        year = _year(parts, default_year)
        month = (
            MONTHS[(parts["mon"] or "")[:3].lower()] if parts.get("mon") else int(parts["mo"] or 0)
        )
        zone = _zone(parts.get("tz"))
        stamp = datetime(
            year,
            month,
            int(parts["d"] or 0),
            int(parts.get("H") or 0),
            int(parts.get("M") or 0),
            int(parts.get("S") or 0),
            tzinfo=zone,
        )
    except (ValueError, OverflowError, KeyError):
        return None
    return stamp if zone is UTC else stamp.astimezone(UTC)


def _year(parts: dict[str, str | None], default_year: int) -> int:
    if parts.get("y"):
        return int(parts["y"] or 0)
    if parts.get("y0"):
        return int(parts["y0"] or 0)
    if parts.get("y2"):
        return 2000 + int(parts["y2"] or 0)
    return default_year


def _microseconds(fraction: str | None) -> int:
    """``978`` (milliseconds) or ``675872`` (microseconds) or nanoseconds, as microseconds."""
    return int((fraction or "0")[:6].ljust(6, "0"))


def _zone(text: str | None) -> timezone:
    if text is None or text in ("Z", "UTC", "GMT"):
        return UTC
    digits = text.replace(":", "")
    offset = timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5]))
    return timezone(-offset if digits[0] == "-" else offset)


def _from_epoch(seconds_text: str, fraction: str | None) -> datetime:
    """Epoch seconds (10 digits, with the fraction in ``ef``) or milliseconds (13 digits)."""
    value = int(seconds_text)
    if len(seconds_text) == 13:
        return datetime.fromtimestamp(value / 1000, UTC)
    return datetime.fromtimestamp(value, UTC) + timedelta(microseconds=_microseconds(fraction))


def timestamp_from_number(value: float) -> datetime | None:
    """A JSON number as a timestamp: epoch seconds, milliseconds or nanoseconds by magnitude.

    Args:
        value: The number a JSON logger wrote in its time field.

    Returns:
        The UTC datetime, or None when the number is out of range.
    """
    for scale in (1.0, 1e3, 1e6, 1e9):
        if value / scale < 1e10:
            try:
                return datetime.fromtimestamp(value / scale, UTC)
            except (OverflowError, OSError, ValueError):
                return None
    return None
