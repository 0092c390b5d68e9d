"""Generic masks: the variable parts of a log message replaced by a typed placeholder.

The kinds are generic (no per-system patterns): URLs, e-mail addresses, UUIDs, IPv4/IPv6
addresses with optional ports, ``host:port``, file paths (POSIX and Windows), timestamps, dates
and times, hex values and hashes (with the numbers), identifiers with a numeric tail
(``blk_-1608999687919862906``, ``attempt_1445144423722_0020_m_000000_0``), numbers glued to a
unit (``250ms``, ``1.5GB``), durations (``1h2m3s``), the coded or quoted values of
``key=value`` pairs, and plain numbers.

Masking is per token, which is what makes it fast: only tokens holding a digit or one of
``/ = \\ @`` can hold a variable, and their masked form is cached (logs repeat their tokens,
and whole messages: those are cached too).
The two masks that span spaces, ``Jun 17 07:07:00 2005`` timestamps and quoted ``key="a b"``
values, run first on the whole message, and only when it holds a ``:`` or a quote.
"""

import re

from drain3.masking import AbstractMaskingInstruction

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_UNITS = (
    r"(?:[KMGTP]i?B|[KMGTP]B/s|[kKMGT]?bytes?|[kKMG]?B/s|ms|us|µs|ns|s|secs?|seconds?|mins?"
    r"|minutes?|h|hrs?|hours?|days?|%|[kMG]?Hz|[kKMG]b(?:ps)?)"
)
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
# Masks that span spaces, applied to the whole message.
SPANNING_MASKS: tuple[tuple[str, str], ...] = (
    ("TIMESTAMP", rf"{_MONTH} {{1,2}}\d{{1,2}},? \d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?(?: \d{{4}})?\b"),
    ("KV", r"\b(?P<key>[A-Za-z_][\w.-]*)=(?P<value>\"[^\"]*\"|'[^']*')"),
)
# Masks applied to one token; order matters: the first alternative that matches wins.
TOKEN_MASKS: tuple[tuple[str, str], ...] = (
    ("URL", r"\b[a-zA-Z][\w+.-]*://[^\s\"'<>\])]+"),
    ("EMAIL", r"\b[\w.+-]+@[A-Za-z][\w-]*(?:\.[\w-]+)+\b"),
    ("UUID", r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"),
    ("IP", r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.]*\w)"),
    ("IP", r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}(?::|[0-9a-fA-F]{1,4})(?![\w:])"),
    ("HOST_PORT", r"(?<![\w.-])(?:localhost|[A-Za-z][\w-]*(?:\.[\w-]+)+):\d{1,5}\b"),
    ("PATH", r"(?<![\w.:/])(?:/[\w.@%+~,-]+){2,}/?|\b[A-Za-z]:\\(?:[^\\\s]+\\)*[^\\\s]*"),
    ("DATE", r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"),
    ("TIME", r"(?<![\w:.])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?![\w:])"),
    # Hex values share the numbers' placeholder: ``0245a2c8`` and ``00106570`` fill one slot.
    ("NUM", r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"),
    ("ID", r"\b[A-Za-z]+_-?\d{3,}(?:_\w+)*\b"),
    # The unit is masked with the number only when glued to it (``250ms``): a separate unit
    # word stays a token of its own, so the message keeps its token count.
    ("SIZE", rf"(?<![\w.]){_NUMBER}{_UNITS}(?![\w])"),
    ("DURATION", r"(?<![\w.])(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|ns)){2,}(?!\w)"),
    # A word value (``user=root``) is left to the miner: few distinct words there are often
    # what tells two events apart; a coded value holds a digit.
    (
        "KV",
        r"\b(?P<key>[A-Za-z_][\w.-]*)=(?P<value>(?=[^\s,;&\"'()\[\]]*\d)[^\s,;&\"'()\[\]]+)",
    ),
    ("NUM", rf"(?<!\w)(?<!\d\.){_NUMBER}(?:[.,:]\d+)*(?![\w]|\.\w)"),
)
KINDS = tuple(dict.fromkeys(kind for kind, _ in SPANNING_MASKS + TOKEN_MASKS))
CACHE_SIZE = 65_536
# Tokens without any of these characters cannot hold a masked value.
_CANDIDATE = re.compile(r"[\d/=\\@]")


def build_mask_pattern(masks: tuple[tuple[str, str], ...]) -> re.Pattern[str]:
    """One regex with a named group ``<KIND>_<n>`` per mask, in order.

    Args:
        masks: ``(kind, pattern)`` pairs; a kind may appear more than once.

    Returns:
        The compiled alternation.
    """
    alternatives = [f"(?P<{kind}_{index}>{pattern})" for index, (kind, pattern) in enumerate(masks)]
    return re.compile("|".join(alternatives))


class GenericMasking(AbstractMaskingInstruction):  # type: ignore[misc]
    """The masks, usable as a Drain3 masking instruction and directly as ``mask_tokens``."""

    def __init__(self) -> None:
        super().__init__("*")
        self._spanning = build_mask_pattern(SPANNING_MASKS)
        self._token = build_mask_pattern(TOKEN_MASKS)
        self._cache: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._messages: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

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
        cached = self._messages.get(message)
        if cached is None:
            cached = self._mask_message(message)
            if len(self._messages) >= CACHE_SIZE:
                self._messages.clear()
            self._messages[message] = cached
        return cached

    def _mask_message(self, message: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        spanning: list[str] = []
        if ":" in message or '="' in message or "='" in message:
            message = self._spanning.sub(lambda match: _placeholder(match, spanning), message)
        tokens = message.split()
        values: list[str] = []
        remaining = iter(spanning)
        for index, token in enumerate(tokens):
            if spanning and ("<TIMESTAMP>" in token or "=<*>" in token):
                values.extend(next(remaining, "") for _ in range(token.count("<")))
            if _CANDIDATE.search(token):
                tokens[index] = self._mask_token(token, values)
        return tuple(tokens), tuple(values)

    def _mask_token(self, token: str, values: list[str]) -> str:
        cached = self._cache.get(token)
        if cached is None:
            if token.isdigit():
                cached = ("<NUM>", (token,))
            else:
                found: list[str] = []
                masked = self._token.sub(lambda match: _placeholder(match, found), token)
                cached = (masked, tuple(found))
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = cached
        values.extend(cached[1])
        return cached[0]


def _placeholder(match: re.Match[str], values: list[str]) -> str:
    kind = (match.lastgroup or "").rsplit("_", 1)[0]
    if kind == "KV":
        values.append(match["value"])
        return f"{match['key']}=<*>"
    values.append(match.group())
    return f"<{kind}>"
