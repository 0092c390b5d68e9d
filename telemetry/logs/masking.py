"""Generic masks: the variable parts of a log message replaced by a typed placeholder.

One regex with one named alternative per kind of value, so a message is scanned once. The
kinds are generic (no per-system patterns): URLs, e-mail addresses, UUIDs, IPv4/IPv6 addresses
with optional ports, ``host:port``, file paths (POSIX and Windows), timestamps, dates and
times, hex values and hashes (with the numbers), identifiers with a numeric tail (``blk_-1608999687919862906``,
``attempt_1445144423722_0020_m_000000_0``), numbers with a unit (``1.5 MB``, ``250ms``,
``3 seconds``), durations, the values of ``key=value`` pairs, and plain numbers.
"""

import re
from collections.abc import Callable

from drain3.masking import AbstractMaskingInstruction

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_UNITS = (
    r"(?:[KMGTP]i?B|[KMGTP]B/s|[kKMGT]?bytes?|[kKMG]?B/s|ms|us|µs|ns|s|secs?|seconds?|mins?"
    r"|minutes?|h|hrs?|hours?|days?|%|[kMG]?Hz|[kKMG]b(?:ps)?)"
)
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
# Order matters: the first alternative that matches at a position wins.
MASKS: tuple[tuple[str, str], ...] = (
    ("URL", r"\b[a-zA-Z][\w+.-]*://[^\s\"'<>\])]+"),
    ("EMAIL", r"\b[\w.+-]+@[A-Za-z][\w-]*(?:\.[\w-]+)+\b"),
    ("UUID", r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"),
    (
        "TIMESTAMP",
        rf"\b(?:{_DAY},? )?{_MONTH} {{1,2}}\d{{1,2}},? \d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?(?: \d{{4}})?\b"
        r"|\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
    ),
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
    ("KV", r"\b(?P<key>[A-Za-z_][\w.-]*)=(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&\"'()\[\]]+)"),
    ("NUM", rf"(?<!\w)(?<!\d\.){_NUMBER}(?:[.,:]\d+)*(?![\w]|\.\w)"),
)


def build_mask_pattern(masks: tuple[tuple[str, str], ...] = MASKS) -> re.Pattern[str]:
    """One regex with a named group ``<KIND>_<n>`` per mask, in order.

    Args:
        masks: ``(kind, pattern)`` pairs; a kind may appear more than once.

    Returns:
        The compiled alternation.
    """
    alternatives = [f"(?P<{kind}_{index}>{pattern})" for index, (kind, pattern) in enumerate(masks)]
    return re.compile("|".join(alternatives))


class GenericMasking(AbstractMaskingInstruction):  # type: ignore[misc]
    """The masks as one Drain3 masking instruction (Drain3 applies it before mining).

    ``parameters`` collects what the last ``mask`` call replaced, in order, so the miner can
    give each record its parameter values without a second pass.
    """

    def __init__(self) -> None:
        super().__init__("*")
        self.pattern = build_mask_pattern()
        self.parameters: list[str] = []

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        """``content`` with every variable replaced by ``<KIND>`` (key=value keeps the key).

        Args:
            content: The message.
            mask_prefix: Drain3's placeholder prefix, ``<``.
            mask_suffix: Drain3's placeholder suffix, ``>``.

        Returns:
            The masked message.
        """
        self.parameters = []
        return self.pattern.sub(self._replacer(mask_prefix, mask_suffix), content)

    def _replacer(self, prefix: str, suffix: str) -> Callable[[re.Match[str]], str]:
        parameters = self.parameters

        def replace(match: re.Match[str]) -> str:
            kind = (match.lastgroup or "").rsplit("_", 1)[0]
            if kind == "KV":
                parameters.append(match["value"])
                return f"{match['key']}={prefix}*{suffix}"
            parameters.append(match.group())
            return f"{prefix}{kind}{suffix}"

        return replace
