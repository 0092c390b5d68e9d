"""Drain3's ``Drain`` with a comparison of message and template that tells events apart better.

Three changes, all in ``get_seq_distance`` (how similar a template and a message are); the
prefix tree, the clusters and their state are Drain3's own:

- a ``<*>`` in the template counts as a match (Drain3 counts it only when matching without
  learning), so a template that has learned its variables keeps matching its messages at a
  high similarity threshold instead of spawning copies of itself;
- two different upper-case words (``NEW`` / ``RUNNING``) never match: such words are states
  and enumeration values, which name different events;
- a message that differs from a template of at least ``min_tokens_one_difference`` tokens in
  a single token always matches, whatever the threshold: one variable word in a short
  message (``session closed for user alice``) must not make a new template.
"""

import re
from collections.abc import Sequence

from drain3.drain import Drain

# An upper-case word of three or more letters, with any punctuation around it (``"GET``).
ENUM_WORD = re.compile(r"^[\W_]*[A-Z][A-Z_]{2,}[\W_]*$")


class WordAwareDrain(Drain):  # type: ignore[misc]
    """Drain3's Drain, comparing template and message as the module docstring says."""

    def __init__(
        self,
        *,
        depth: int,
        similarity: float,
        max_children: int,
        min_tokens_one_difference: int,
        param_str: str,
    ) -> None:
        super().__init__(
            depth=depth, sim_th=similarity, max_children=max_children, param_str=param_str
        )
        self.min_tokens_one_difference = min_tokens_one_difference

    def get_seq_distance(
        self, seq1: Sequence[str], seq2: Sequence[str], include_params: bool
    ) -> tuple[float, int]:
        """Similarity of template ``seq1`` and message ``seq2`` (same length), and the number
        of ``<*>`` in the template.

        Args:
            seq1: The template's tokens.
            seq2: The message's tokens.
            include_params: Ignored: a ``<*>`` always counts as a match (see the module).

        Returns:
            ``(similarity in [0, 1], or -1 when two upper-case words differ; wildcard count)``.
        """
        length = len(seq1)
        if length == 0:
            return 1.0, 0
        wildcard = self.param_str
        same = 0
        wildcards = 0
        for template_token, token in zip(seq1, seq2, strict=True):
            if template_token == token:
                same += 1
            elif template_token == wildcard:
                wildcards += 1
            elif ENUM_WORD.match(template_token) and ENUM_WORD.match(token):
                return -1.0, wildcards
        similarity = (same + wildcards) / length
        if length >= self.min_tokens_one_difference and same + wildcards == length - 1:
            similarity = max(similarity, self.sim_th)
        return similarity, wildcards
