"""Generic masks: the variable parts of a log message replaced by a typed placeholder.

The kinds are generic (no per-system patterns): URLs, e-mail addresses, UUIDs, IPv4/IPv6
addresses with optional ports, ``host:port``, file paths (POSIX and Windows), timestamps, dates
and times, hex values and hashes (with the numbers), identifiers with a numeric tail
(``blk_-1608999687919862906``, ``attempt_1445144423722_0020_m_000000_0``), numbers with a
unit, glued or not (``250ms``, ``1.16 KB``, ``<1 sec``), durations (``1h2m3s``), the coded or
quoted values of ``key=value`` pairs, and plain numbers.

Speed comes from three things. The masks only ever look at digits as "a digit", so a
message's *shape* (every digit written ``5``) decides what is masked: the spans found for a
shape are cached and reused for every message of that shape, which is most messages (logs
repeat their lines with other numbers). The masks that may span spaces (timestamps, numbers
with a unit, quoted values) run on the whole message; the others per token, and only on tokens
holding a digit or one of ``/ = \\ @``. And a text is matched only against the masks whose
needed characters it holds (a pattern like ``[\\w.]+@`` would otherwise scan the whole token
at every position before failing).
"""

import re

from drain3.masking import AbstractMaskingInstruction

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_SIZE_UNITS = r"(?:[KMGTP]?i?B(?:/s)?|[kKMGT]?bytes?|%|[kMG]?Hz|[kKMG]bps)"
_TIME_UNITS = r"(?:ms|msecs?|us|µs|ns|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?)"
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
# Masks that may span spaces, applied to the whole message: ``(kind, pattern, needs)``, where
# ``needs`` are characters the text must all hold for the pattern to match.
SPANNING_MASKS: tuple[tuple[str, str, str], ...] = (
    (
        "TIMESTAMP",
        rf"{_MONTH} {{1,2}}\d{{1,2}},? \d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?(?: \d{{4}})?\b",
        ":",
    ),
    # A number and its unit, glued or not (``1.16 KB``, ``<1 sec``, ``250ms``): one value.
    ("SIZE", rf"(?<![\w.]){_NUMBER} ?{_SIZE_UNITS}(?![\w])", ""),
    ("DURATION", rf"(?<![\w.])[<>~]?{_NUMBER} ?{_TIME_UNITS}(?![\w])", ""),
    ("KV", r"\b(?P<key>[A-Za-z_][\w.-]*)=(?P<value>\"[^\"]*\")", '="'),
    ("KV", r"\b(?P<key>[A-Za-z_][\w.-]*)=(?P<value>'[^']*')", "='"),
)
# Masks applied to one token, in order: the first alternative that matches at a position wins.
TOKEN_MASKS: tuple[tuple[str, str, str], ...] = (
    ("URL", r"\b[a-zA-Z][\w+.-]*://[^\s\"'<>\])]+", "://"),
    ("EMAIL", r"\b[\w.+-]+@[A-Za-z][\w-]*(?:\.[\w-]+)+\b", "@."),
    ("UUID", r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b", "-"),
    ("IP", r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.]*\w)", "."),
    ("TIME", r"(?<![\w:.])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?![\w:])", ":"),
    ("IP", r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}(?::|[0-9a-fA-F]{1,4})(?![\w:])", ":"),
    ("HOST_PORT", r"(?<![\w.-])(?:localhost|[A-Za-z][\w-]*(?:\.[\w-]+)+):\d{1,5}\b", ":"),
    ("PATH", r"(?<![\w.:/])(?:/[\w.@%+~,-]+){2,}/?", "/"),
    ("PATH", r"\b[A-Za-z]:\\(?:[^\\\s]+\\)*[^\\\s]*", ":\\"),
    ("DATE", r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b", ""),
    # Hex values share the numbers' placeholder: ``0245a2c8`` and ``00106570`` fill one slot.
    ("NUM", r"\b\d[xX][0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", ""),
    ("ID", r"\b[A-Za-z]+_-?\d{3,}(?:_\w+)*\b", "_"),
    ("DURATION", r"(?<![\w.])(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|ns)){2,}(?!\w)", ""),
    # A word value (``user=root``) is left to the miner: few distinct words there are often
    # what tells two events apart; a coded value holds a digit.
    (
        "KV",
        r"\b(?P<key>[A-Za-z_][\w.-]*)=(?P<value>(?=[^\s,;&\"'()\[\]]*\d)[^\s,;&\"'()\[\]]+)",
        "=",
    ),
    ("NUM", rf"(?<!\w)(?<!\d\.){_NUMBER}(?:[.,:]\d+)*(?![\w]|\.\w)", ""),
)
KINDS = tuple(dict.fromkeys(kind for kind, _, _ in SPANNING_MASKS + TOKEN_MASKS))
# Every character some mask needs: a text's set of these picks the masks worth trying.
_NEEDED = "".join(sorted(set("".join(needs for _, _, needs in SPANNING_MASKS + TOKEN_MASKS))))
CACHE_SIZE = 65_536
# Tokens without any of these characters cannot hold a masked value.
_CANDIDATE = re.compile(r"[\d/=\\@]")
_TOKEN = re.compile(r"\S+")
# (start, end, start of the masked value, placeholder): a KV span keeps its ``key=`` text.
_Span = tuple[int, int, int, str]
# Every digit reads ``5``: no mask tells one digit from another (``0x1f`` is matched as a
# digit before the ``x``). Bytes translate ten times faster than str; digits are single bytes
# in UTF-8, so the decoded shape keeps the message's character positions.
_SHAPE = bytes.maketrans(b"0123456789", b"5555555555")


def build_mask_pattern(masks: tuple[tuple[str, str, str], ...]) -> re.Pattern[str] | None:
    """One regex with a named group ``<KIND>_<n>`` per mask, in order.

    Args:
        masks: ``(kind, pattern, needs)``; a kind may appear more than once.

    Returns:
        The compiled alternation, or None when there is no mask.
    """
    if not masks:
        return None
    alternatives = [
        f"(?P<{kind}_{index}>{pattern})" for index, (kind, pattern, _) in enumerate(masks)
    ]
    # Every mask starts where no word character precedes: saying it once up front spares
    # trying each alternative inside words.
    return re.compile(f"(?<!\\w)(?:{'|'.join(alternatives)})")


class _PatternsByNeeds:
    """The alternation of the masks a text can match, by the needed characters it holds."""

    def __init__(self, masks: tuple[tuple[str, str, str], ...]) -> None:
        self._masks = masks
        self._patterns: dict[frozenset[str], re.Pattern[str] | None] = {}

    def for_text(self, text: str) -> re.Pattern[str] | None:
        present = frozenset(char for char in _NEEDED if char in text)
        if present not in self._patterns:
            usable = tuple(mask for mask in self._masks if set(mask[2]) <= present)
            self._patterns[present] = build_mask_pattern(usable)
        return self._patterns[present]


class GenericMasking(AbstractMaskingInstruction):  # type: ignore[misc]
    """The masks, usable as a Drain3 masking instruction and directly as ``mask_tokens``."""

    def __init__(self) -> None:
        super().__init__("*")
        self._spanning = _PatternsByNeeds(SPANNING_MASKS)
        self._token = _PatternsByNeeds(TOKEN_MASKS)
        self._plans: dict[bytes, tuple[_Span, ...]] = {}
        self._token_spans: dict[str, tuple[_Span, ...]] = {}

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        """Drain3's interface: ``content`` with its variables masked as ``<KIND>``.

        Args:
            content: The message.
            mask_prefix: Drain3's placeholder prefix; the masks always use ``<``.
            mask_suffix: Drain3's placeholder suffix; the masks always use ``>``.

        Returns:
            The masked message, tokens separated by single spaces.
        """
        return " ".join(self.mask_tokens(content)[0])

    def mask_tokens(self, message: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The message's tokens with their variables masked, and the values masked.

        Args:
            message: The message.

        Returns:
            ``(masked tokens, masked values in order)``; ``key=value`` keeps its key
            (``uid=<*>``).
        """
        shape = message.encode("utf-8", "surrogatepass").translate(_SHAPE)
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan(shape.decode("utf-8", "surrogatepass"))
            if len(self._plans) >= CACHE_SIZE:
                self._plans.clear()
            self._plans[shape] = plan
        if not plan:
            return tuple(message.split()), ()
        pieces: list[str] = []
        values: list[str] = []
        end = 0
        for start, stop, value_start, placeholder in plan:
            pieces.append(message[end:value_start] if value_start > start else message[end:start])
            pieces.append(placeholder)
            values.append(message[value_start:stop])
            end = stop
        pieces.append(message[end:])
        return tuple("".join(pieces).split()), tuple(values)

    def _plan(self, shape: str) -> tuple[_Span, ...]:
        """The spans to mask in messages of this shape, in order."""
        spans: list[_Span] = []
        pattern = self._spanning.for_text(shape)
        if pattern is not None:
            spans.extend(_span(match, 0) for match in pattern.finditer(shape))
        taken = iter(spans)
        blocked = next(taken, None)
        found: list[_Span] = []
        for token in _TOKEN.finditer(shape):
            while blocked is not None and blocked[1] <= token.start():
                blocked = next(taken, None)
            if blocked is not None and blocked[0] < token.end():
                continue  # part of a timestamp or quoted value already masked
            text = token.group()
            if _CANDIDATE.search(text):
                found.extend(
                    (start + token.start(), stop + token.start(), value + token.start(), kind)
                    for start, stop, value, kind in self._spans_in_token(text)
                )
        return tuple(sorted(spans + found))

    def _spans_in_token(self, token: str) -> tuple[_Span, ...]:
        cached = self._token_spans.get(token)
        if cached is None:
            pattern = self._token.for_text(token)
            cached = tuple(_span(m, 0) for m in pattern.finditer(token)) if pattern else ()
            if len(self._token_spans) >= CACHE_SIZE:
                self._token_spans.clear()
            self._token_spans[token] = cached
        return cached


def _span(match: re.Match[str], offset: int) -> _Span:
    kind = (match.lastgroup or "").rsplit("_", 1)[0]
    if kind == "KV":
        return (match.start() + offset, match.end() + offset, match.start("value") + offset, "<*>")
    return (match.start() + offset, match.end() + offset, match.start() + offset, f"<{kind}>")
