"""Template mining on Drain3, with generic masks, word slots and persistent state.

``LogTemplateMiner`` wraps a ``drain3.TemplateMiner``: its masker runs ``GenericMasking``
and its ``drain`` is ``WordAwareDrain``. On top of Drain3's clusters it keeps *word slots*:
a ``<*>`` of a cluster that has only ever held a few distinct plain words (``cupsd startup
succeeded`` / ``cupsd shutdown succeeded``, ``stored as bytes`` / ``as values``) names
different events, so each of those words gets its own template; a slot that sees more words,
or any number or masked value, is a variable. Template ids are integers handed out once per
(cluster, slot words) and saved with the state, so they are stable across runs and processes
that load the same state.

Mining a batch is two calls: ``learn`` every message, then ``identify`` each observation, so
every record gets the template the whole batch taught (as LogPAI's parsers do). A stream
calls ``add``, which does both at once.
"""

import base64
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from drain3 import TemplateMiner
from drain3.memory_buffer_persistence import MemoryBufferPersistence
from drain3.template_miner_config import TemplateMinerConfig

from telemetry.logs.drain import WordAwareDrain
from telemetry.logs.masking import KINDS, GenericMasking
from telemetry.logs.records import LogRecord

STATE_VERSION = 1
SEEN_CACHE_SIZE = 65_536
WILDCARD = "<*>"
# A slot value that may name an event: a plain word, maybe ``key=`` and punctuation around it.
SLOT_WORD = re.compile(r"^(?:[\w.-]+=)?\W*[A-Za-z][a-z]+\W*$")
PLACEHOLDER = re.compile("|".join(re.escape(f"<{kind}>") for kind in (*KINDS, "*")))


@dataclass(frozen=True)
class MinerSettings:
    """How messages are grouped; saved with the state, which only loads under the same ones.

    Attributes:
        similarity: Drain's threshold: the share of a template's tokens a message must share.
        depth: Drain's prefix-tree depth (tokens used to route a message, plus two).
        max_children: Drain's limit on children of a tree node.
        min_tokens_one_difference: Messages of at least this many tokens that differ from a
            template in one token always join it.
        max_slot_words: A ``<*>`` that has held at most this many distinct words splits its
            template by word.
    """

    similarity: float = 0.7
    depth: int = 4
    max_children: int = 100
    min_tokens_one_difference: int = 3
    max_slot_words: int = 3


@dataclass(frozen=True)
class Observation:
    """What ``learn`` saw of one message: its cluster, masked tokens and masked values."""

    cluster_id: int
    tokens: tuple[str, ...]
    masked_values: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    """A mined template: its stable id and its text (``<*>`` and ``<KIND>`` for variables)."""

    template_id: int
    text: str


@dataclass(frozen=True)
class MinedRecord:
    """A record with its template and the values of the template's variables, in order."""

    record: LogRecord
    template: Template
    parameters: tuple[str, ...]


@dataclass
class _ClusterSlots:
    """Per Drain cluster: the first message's tokens and, per ``<*>``, the words seen there
    (None once the slot is a variable)."""

    first_tokens: tuple[str, ...]
    slots: dict[int, set[str] | None] = field(default_factory=dict)
    categorical: tuple[int, ...] = ()


class LogTemplateMiner:
    """Drain3 with generic masks, word slots and stable template ids (see the module)."""

    def __init__(self, settings: MinerSettings | None = None) -> None:
        self.settings = settings or MinerSettings()
        config = TemplateMinerConfig()
        config.masking_instructions = [GenericMasking()]
        config.drain_sim_th = self.settings.similarity
        config.drain_depth = self.settings.depth
        config.drain_max_children = self.settings.max_children
        self._miner = TemplateMiner(config=config)
        self._miner.drain = WordAwareDrain(
            depth=self.settings.depth,
            similarity=self.settings.similarity,
            max_children=self.settings.max_children,
            min_tokens_one_difference=self.settings.min_tokens_one_difference,
            param_str=WILDCARD,
        )
        self._masking: GenericMasking = config.masking_instructions[0]
        self._clusters: dict[int, _ClusterSlots] = {}
        self._ids: dict[tuple[int, tuple[str, ...]], int] = {}
        # The template last built for each id, with the cluster tokens it was built from.
        self._templates: dict[int, tuple[tuple[str, ...], Template]] = {}
        self._seen: dict[str, int] = {}

    @property
    def template_count(self) -> int:
        """Templates handed out an id so far."""
        return len(self._ids)

    def learn(self, message: str) -> Observation:
        """Mine one message: mask it, add it to Drain3, update the cluster's word slots.

        Args:
            message: The message (the record's first line; the header already removed).

        Returns:
            What ``identify`` needs to name the message's template.
        """
        tokens, values = self._masking.mask_tokens(message)
        masked = " ".join(tokens)
        drain = self._miner.drain
        cluster_id = self._seen.get(masked)
        if cluster_id is not None:
            # A masked message seen before: Drain would put it in the same cluster, whose
            # template already covers it (nothing to learn but the count).
            cluster = drain.id_to_cluster[cluster_id]
            cluster.size += 1
            return Observation(cluster_id, tokens, values)
        cluster, change = drain.add_log_message(masked)
        if len(self._seen) >= SEEN_CACHE_SIZE:
            self._seen.clear()
        self._seen[masked] = cluster.cluster_id
        slots = self._clusters.get(cluster.cluster_id)
        if slots is None:
            slots = self._clusters[cluster.cluster_id] = _ClusterSlots(tokens)
        if change != "none" or slots.slots:
            self._update_slots(slots, cluster.log_template_tokens, tokens)
        return Observation(cluster.cluster_id, tokens, values)

    def identify(self, observation: Observation) -> Template:
        """The template of a learned message under everything learned so far.

        Args:
            observation: What ``learn`` returned for the message.

        Returns:
            The template: a word slot shows the message's word, a variable ``<*>``.
        """
        slots = self._clusters[observation.cluster_id]
        words = (
            tuple(observation.tokens[position] for position in slots.categorical)
            if slots.categorical
            else ()
        )
        key = (observation.cluster_id, words)
        template_id = self._ids.get(key)
        if template_id is None:
            template_id = self._ids[key] = len(self._ids) + 1
        cluster_tokens = self._miner.drain.id_to_cluster[observation.cluster_id].log_template_tokens
        cached = self._templates.get(template_id)
        if cached is None or cached[0] is not cluster_tokens:
            tokens = list(cluster_tokens)
            for position, word in zip(slots.categorical, words, strict=True):
                tokens[position] = word
            cached = self._templates[template_id] = (
                cluster_tokens,
                Template(template_id, " ".join(tokens)),
            )
        return cached[1]

    def template(self, template_id: int) -> Template | None:
        """The template an id stands for, as the miner builds it now; None for an unknown id.

        Args:
            template_id: An id ``identify`` handed out (in this process or before a reload).
        """
        for (cluster_id, words), known in self._ids.items():
            cluster = self._miner.drain.id_to_cluster.get(cluster_id)
            if known != template_id or cluster is None:
                continue
            tokens = list(cluster.log_template_tokens)
            # An id handed out before the cluster's word slots changed keeps its own words.
            for position, word in zip(self._clusters[cluster_id].categorical, words, strict=False):
                tokens[position] = word
            return Template(template_id, " ".join(tokens))
        return None

    def add(self, message: str) -> Template:
        """``learn`` then ``identify``: the template of a message in a stream."""
        return self.identify(self.learn(message))

    def parameters(self, observation: Observation, template: Template) -> tuple[str, ...]:
        """The values of a message's variables, in message order.

        Args:
            observation: What ``learn`` returned for the message.
            template: What ``identify`` returned for it.

        Returns:
            The masked values and the words in variable ``<*>`` slots.
        """
        masked = iter(observation.masked_values)
        parameters: list[str] = []
        template_tokens = template.text.split()
        for token, template_token in zip(observation.tokens, template_tokens, strict=False):
            placeholders = len(PLACEHOLDER.findall(token))
            if placeholders:
                parameters.extend(next(masked, "") for _ in range(placeholders))
            elif template_token == WILDCARD:
                parameters.append(token)
        return tuple(parameters)

    def _update_slots(
        self, cluster: _ClusterSlots, template: tuple[str, ...], tokens: tuple[str, ...]
    ) -> None:
        limit = self.settings.max_slot_words
        changed = False
        for position, template_token in enumerate(template):
            if template_token != WILDCARD:
                continue
            if position not in cluster.slots:
                # The slot held the first message's token until now: start from it.
                first = cluster.first_tokens[position]
                cluster.slots[position] = {first} if SLOT_WORD.match(first) else None
                changed = True
            seen = cluster.slots[position]
            if seen is None or tokens[position] in seen:
                continue
            if SLOT_WORD.match(tokens[position]) and len(seen) < limit:
                seen.add(tokens[position])
            else:
                cluster.slots[position] = None
                changed = True
        if changed:
            cluster.categorical = tuple(
                position for position, seen in sorted(cluster.slots.items()) if seen is not None
            )

    def state(self) -> bytes:
        """Everything learned, as bytes: Drain3's own snapshot plus slots and template ids."""
        document = {
            "version": STATE_VERSION,
            "settings": asdict(self.settings),
            "drain3": base64.b64encode(self._drain3_state()).decode("ascii"),
            "clusters": {
                str(cluster_id): {
                    "first_tokens": list(slots.first_tokens),
                    "slots": {
                        str(p): None if seen is None else sorted(seen)
                        for p, seen in slots.slots.items()
                    },
                }
                for cluster_id, slots in self._clusters.items()
            },
            "ids": [
                [cluster_id, list(words), tid] for (cluster_id, words), tid in self._ids.items()
            ],
        }
        return json.dumps(document).encode("utf-8")

    @classmethod
    def from_state(cls, data: bytes) -> "LogTemplateMiner":
        """A miner that continues from ``state()``'s bytes.

        Args:
            data: Bytes ``state()`` returned.

        Returns:
            The miner, with the settings the state was mined with.

        Raises:
            ValueError: When the bytes are not a state of this version.
        """
        try:
            document = json.loads(data)
            if document.get("version") != STATE_VERSION:
                raise ValueError(f"version {document.get('version')!r}")
            miner = cls(MinerSettings(**document["settings"]))
            miner._load_drain3_state(base64.b64decode(document["drain3"]))
            for cluster_id, entry in document["clusters"].items():
                slots = {
                    int(p): None if seen is None else set(seen)
                    for p, seen in entry["slots"].items()
                }
                categorical = tuple(p for p, seen in sorted(slots.items()) if seen is not None)
                miner._clusters[int(cluster_id)] = _ClusterSlots(
                    tuple(entry["first_tokens"]), slots, categorical
                )
            miner._ids = {(cid, tuple(words)): tid for cid, words, tid in document["ids"]}
        except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as error:
            raise ValueError(
                f"not a template miner state (version {STATE_VERSION}): {error}"
            ) from error
        return miner

    def _drain3_state(self) -> bytes:
        """Drain3's snapshot of its clusters and tree, through its own persistence."""
        buffer = MemoryBufferPersistence()
        self._miner.persistence_handler = buffer
        try:
            self._miner.save_state("vigil")
        finally:
            # Drain3 saves on every change while it has a handler: keep it only for this call.
            self._miner.persistence_handler = None
        return bytes(buffer.state)

    def _load_drain3_state(self, state: bytes) -> None:
        buffer = MemoryBufferPersistence()
        buffer.state = state
        self._miner.persistence_handler = buffer
        try:
            self._miner.load_state()
        finally:
            self._miner.persistence_handler = None


def mine_records(records: Iterable[LogRecord], miner: LogTemplateMiner) -> list[MinedRecord]:
    """Mine a batch: every record gets the template the whole batch (and the state) taught.

    Args:
        records: Parsed records; their first message line is mined.
        miner: A new miner or one loaded from a saved state; it keeps what it learns.

    Returns:
        One mined record per record, in input order.
    """
    kept = list(records)
    observations = [miner.learn(record.first_line) for record in kept]
    mined = []
    for record, observation in zip(kept, observations, strict=True):
        template = miner.identify(observation)
        mined.append(MinedRecord(record, template, miner.parameters(observation, template)))
    return mined
