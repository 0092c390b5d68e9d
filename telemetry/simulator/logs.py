"""The fleet's log lines: how many each instance writes, at which levels, and what they say.

Logs follow seed 004 §3: per-source templates (telemetry.simulator.log_templates), INFO 70 % /
DEBUG 15 % / WARN 10 % / ERROR 4 % / CRITICAL 1 %, and a JSON metadata object. An incident
raises its instance's log rate and writes a share of its lines from its own templates, at its
phase's levels, opened by its onset lines.
"""

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from contracts.telemetry import LOG_LEVELS, RAW_SCHEMA, SOURCES
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.fleet import Fleet
from telemetry.simulator.incident_kinds import INCIDENT_KINDS, INCIDENT_SLOTS
from telemetry.simulator.incidents import METRIC_INDEX, FloatArray, HourIncidents, IntArray
from telemetry.simulator.log_templates import (
    CHOICES,
    INTEGERS,
    METRIC_SLOTS,
    SEEDED_SLOTS,
    incident_template_group,
    template_catalogue,
)

NORMAL_LEVEL_PROBS = (0.15, 0.70, 0.10, 0.04, 0.01)  # over LOG_LEVELS: DEBUG INFO WARN ERROR CRIT


def _strings(values: npt.ArrayLike) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _pick(vocabulary: Sequence[str], rng: np.random.Generator, size: int) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(rng.integers(0, len(vocabulary), size))


def _constant(text: str, size: int) -> pa.Array:
    return pa.array([text], pa.string()).take(np.zeros(size, dtype=np.int64))


@dataclass(frozen=True)
class _LogRows:
    """What each log row of an hour carries besides its text."""

    instance: IntArray
    minute: IntArray
    latency_ms: IntArray
    request_id: pa.Array
    user: IntArray
    client_ip: pa.Array
    attacker_ip: pa.Array
    incident_seed: IntArray  # the seed of the incident that wrote the row, -1 for normal rows


def _row_slot(
    slot: str, rows: _LogRows, idx: IntArray, status: IntArray, values: FloatArray
) -> pa.Array:
    """A slot whose value the log row carries or derives from its instance's metrics."""
    if slot == "rid":
        return rows.request_id.take(idx)
    if slot == "user":
        return pc.binary_join_element_wise("user_", _strings(rows.user[idx]), "")
    if slot == "ip":
        return rows.client_ip.take(idx)
    if slot == "attacker_ip":
        return rows.attacker_ip.take(idx)
    if slot == "ms":
        return _strings(rows.latency_ms[idx])
    if slot == "status":
        return _strings(status[idx])
    if slot == "err_pct":
        at = (rows.instance[idx], rows.minute[idx])
        requests = values[(*at, METRIC_INDEX["RequestCount"])]
        failures = values[(*at, METRIC_INDEX["HTTPCode_5XX_Count"])]
        return _strings(np.rint(100.0 * failures / np.maximum(requests, 1.0)).astype(np.int64))
    # "target": a backend of the load balancer, derived from the instance so it repeats.
    octet = rows.instance[idx] % 200 + 10
    return pc.binary_join_element_wise("10.0.1.", _strings(octet), ":8080", "")


def _seeded(seeds: IntArray, slot: str) -> IntArray:
    """A number per row that only depends on its incident's seed and the slot (a hash)."""
    salt = np.uint64(zlib.crc32(slot.encode()))
    mixed = (seeds.astype(np.uint64) + salt) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(33)).astype(np.int64)


def _seeded_slot(slot: str, seeds: IntArray) -> pa.Array:
    """A version (``v2.14.3``) or build hash (``4f1c0a9``) made up from each row's seed."""
    h = _seeded(seeds, slot)
    if slot == "version":
        number = pc.binary_join_element_wise(
            _strings(1 + h % 4), _strings(h // 4 % 30), _strings(h // 120 % 10), "."
        )
        return pc.binary_join_element_wise("v", number, "").cast(pa.string())
    return pa.array([f"{value % 16**7:07x}" for value in h.tolist()], pa.string())


def _fill(
    parts: tuple[tuple[str, str | None], ...],
    rows: _LogRows,
    idx: IntArray,
    status: IntArray,
    values: FloatArray,
    rng: np.random.Generator,
) -> pa.Array:
    pieces: list[Any] = []
    for text, slot in parts:
        if text:
            pieces.append(text)
        if slot is None:
            continue
        if slot in CHOICES:
            piece = _pick(CHOICES[slot], rng, len(idx))
            seeds = rows.incident_seed[idx]
            if slot in INCIDENT_SLOTS and (seeds >= 0).any():
                # One broken code path: the incident's lines name one service, endpoint, ...
                fixed = pa.array(CHOICES[slot], pa.string()).take(
                    _seeded(seeds, slot) % len(CHOICES[slot])
                )
                piece = pc.if_else(pa.array(seeds >= 0), fixed, piece)
            pieces.append(piece)
        elif slot in SEEDED_SLOTS:
            pieces.append(_seeded_slot(slot, rows.incident_seed[idx]))
        elif slot in INTEGERS:
            low, high = INTEGERS[slot]
            pieces.append(_strings(rng.integers(low, high + 1, len(idx))))
        elif slot in METRIC_SLOTS:
            column = METRIC_INDEX[METRIC_SLOTS[slot]]
            shown = np.rint(values[rows.instance[idx], rows.minute[idx], column]).astype(np.int64)
            pieces.append(_strings(shown))
        else:
            pieces.append(_row_slot(slot, rows, idx, status, values))
    if not any(isinstance(piece, pa.Array) for piece in pieces):
        return _constant("".join(pieces), len(idx))
    return pc.binary_join_element_wise(*pieces, "")


def _ips(rng: np.random.Generator, size: int) -> pa.Array:
    octets = [_strings(rng.integers(1, 255, size)) for _ in range(3)]
    return pc.binary_join_element_wise("10", *octets, ".")


@dataclass(frozen=True)
class _LogProfile:
    """How each instance-minute of an hour logs: volume, incident share, incident levels."""

    rate: FloatArray  # (instances, minutes) expected lines
    incident_share: FloatArray  # (instances, minutes)
    incident_levels: FloatArray  # (instances, minutes, levels) for the incident's own lines
    kind: IntArray  # (instances, minutes) index into INCIDENT_KINDS


def _log_profile(
    fleet: Fleet, config: SimulationConfig, load: FloatArray, incidents: HourIncidents
) -> _LogProfile:
    n, t = load.shape
    profile = _LogProfile(
        rate=config.logs_per_minute * load / fleet.log_norm[:, None],
        incident_share=np.zeros((n, t)),
        incident_levels=np.zeros((n, t, len(LOG_LEVELS))),
        kind=np.zeros((n, t), dtype=np.int64),
    )
    for position, incident in enumerate(incidents.incidents):
        mask = incidents.index == position
        phase = incident.phase_at(incidents.offset[mask])
        phases = incident.kind.phases
        profile.rate[mask] *= np.array([p.log_rate for p in phases])[phase]
        share = np.array([p.incident_share for p in phases])[phase] * config.incident_log_share
        profile.incident_share[mask] = np.minimum(share, 1.0)
        profile.incident_levels[mask] = np.array([p.level_probs for p in phases])[phase]
        profile.kind[mask] = INCIDENT_KINDS.index(incident.kind)
    return profile


def _render_messages(
    template: IntArray, rows: _LogRows, values: FloatArray, rng: np.random.Generator
) -> tuple[pa.Array, IntArray]:
    """Each row's message from its template, and its HTTP status (-1 where none)."""
    catalogue = template_catalogue()
    total = len(template)
    status = np.full(total, -1, dtype=np.int64)
    by_template = np.argsort(template, kind="stable")
    bounds = np.searchsorted(template[by_template], np.arange(len(catalogue.parts) + 1))
    messages: list[pa.Array] = []
    for j in np.flatnonzero(np.diff(bounds)):
        idx = by_template[bounds[j] : bounds[j + 1]]
        if catalogue.statuses[j]:
            status[idx] = rng.choice(catalogue.statuses[j], len(idx))
        messages.append(_fill(catalogue.parts[j], rows, idx, status, values, rng))
    if not messages:
        return pa.array([], pa.string()), status
    inverse = np.empty(total, dtype=np.int64)
    inverse[by_template] = np.arange(total)
    return pa.concat_arrays(messages).take(inverse), status


def _metadata(
    rows: _LogRows,
    status: IntArray,
    corrupt: npt.NDArray[np.bool_],
    attacked: npt.NDArray[np.bool_],
) -> pa.Array:
    """The JSON metadata of each row, formatted as json.dumps would."""
    user = pc.binary_join_element_wise('"user_', _strings(rows.user), '"', "")
    return pc.binary_join_element_wise(
        '{"request_id": "',
        rows.request_id,
        '", "user": ',
        pc.if_else(pa.array(corrupt), "null", user),
        ', "status": ',
        pc.if_else(pa.array(status < 0), "null", _strings(status)),
        ', "latency_ms": ',
        pc.if_else(pa.array(corrupt), "null", _strings(rows.latency_ms)),
        ', "client_ip": "',
        pc.if_else(pa.array(attacked), rows.attacker_ip, rows.client_ip),
        '"}',
        "",
    )


def log_columns(
    fleet: Fleet,
    config: SimulationConfig,
    hour: datetime,
    epoch_minutes: IntArray,
    load: FloatArray,
    values: FloatArray,
    incidents: HourIncidents,
    rng: np.random.Generator,
) -> dict[str, pa.Array]:
    """The hour's log rows (RAW_SCHEMA_WITH_TEMPLATES columns), per instance in time order."""
    t = load.shape[1]
    profile = _log_profile(fleet, config, load, incidents)
    cell = np.repeat(
        np.arange(profile.rate.size, dtype=np.int64), rng.poisson(profile.rate).ravel()
    )
    total = len(cell)
    offset_ms = rng.integers(0, 60_000, total)
    order = np.lexsort((offset_ms, cell))
    cell, offset_ms = cell[order], offset_ms[order]
    instance, minute = cell // t, cell % t

    in_incident = incidents.index[instance, minute] >= 0
    from_incident = in_incident & (rng.random(total) < profile.incident_share[instance, minute])
    probs = np.where(
        from_incident[:, None],
        profile.incident_levels[instance, minute],
        np.array(NORMAL_LEVEL_PROBS),
    )
    level = np.minimum((rng.random(total)[:, None] >= np.cumsum(probs, axis=1)).sum(axis=1), 4)
    source = fleet.sources[instance]
    group = np.where(
        from_incident,
        incident_template_group(profile.kind[instance, minute], level),
        source * len(LOG_LEVELS) + level,
    )
    catalogue = template_catalogue()
    pick = np.floor(rng.random(total) * catalogue.group_size[group]).astype(np.int64)
    template = catalogue.group_start[group] + pick
    row_incident = np.where(from_incident, incidents.index[instance, minute], -1)
    if config.incident_log_share > 0:
        onset = _onset_rows(incidents)
        if len(onset[0]):
            # The onset lines open their minute; appended, then everything back in time order.
            instance, minute, offset_ms, template, level, row_incident = (
                np.concatenate([old, new])
                for old, new in zip(
                    (instance, minute, offset_ms, template, level, row_incident),
                    onset,
                    strict=True,
                )
            )
            order = np.lexsort((offset_ms, minute, instance))
            instance, minute, offset_ms = instance[order], minute[order], offset_ms[order]
            template, level, row_incident = template[order], level[order], row_incident[order]
            total, source = len(instance), fleet.sources[instance]

    # Per-incident attributes get one extra entry at the end, read by normal rows (index -1).
    seeds = np.array([i.seed for i in incidents.incidents] + [-1], dtype=np.int64)
    types = np.array([i.kind.incident_type for i in incidents.incidents] + [""])[row_incident]
    latency = values[instance, minute, METRIC_INDEX["Latency"]] * rng.lognormal(0, 0.35, total)
    hex_ids = np.frombuffer(rng.bytes(8 * total).hex().encode(), dtype="S16")
    rows = _LogRows(
        instance=instance,
        minute=minute,
        latency_ms=np.maximum(np.rint(latency), 1).astype(np.int64),
        request_id=pc.binary_join_element_wise("req-", pa.array(hex_ids).cast(pa.string()), ""),
        user=rng.integers(1, 5000, total),
        client_ip=_ips(rng, total),
        attacker_ip=pc.binary_join_element_wise(
            "198.51.100.", _strings(np.maximum(seeds[row_incident], 0) % 250 + 2), ""
        ),
        incident_seed=seeds[row_incident],
    )
    message, status = _render_messages(template, rows, values, rng)
    # A corrupted feed nulls fields that should be set; an attacker's lines carry its address.
    metadata = _metadata(rows, status, types == "data_anomaly", types == "security_threat")
    timestamp_ms = epoch_minutes[minute] * 60_000 + offset_ms
    return {
        "timestamp": pa.array(timestamp_ms, RAW_SCHEMA.field("timestamp").type),
        "instance_id": pa.array(fleet.instance_ids, pa.string()).take(instance),
        "source": pa.array(SOURCES, pa.string()).take(source),
        "kind": _constant("log", total),
        "name": pa.nulls(total, pa.string()),
        "value": pa.nulls(total, pa.float64()),
        "level": pa.array(LOG_LEVELS, pa.string()).take(level),
        "message": message,
        "metadata": metadata,
        "event_id": pc.binary_join_element_wise(
            f"sim-{hour:%Y%m%d%H}-", pc.utf8_lpad(_strings(np.arange(total)), 7, "0"), ""
        ),
        "parse_error": pa.array(np.zeros(total, dtype=bool)),
        "template_id": pa.nulls(total, pa.int64()),  # mined in time order by simulate_fleet
        "component": pa.nulls(total, pa.string()),
    }


def _onset_rows(incidents: HourIncidents) -> tuple[IntArray, ...]:
    """The onset lines of the incidents starting in the hour: instance, minute, offset (ms),
    template, level and incident position per line, in that order."""
    onset = template_catalogue().onset
    lines: list[tuple[int, int, int, int, int, int]] = []
    for position, incident in enumerate(incidents.incidents):
        entries = onset[INCIDENT_KINDS.index(incident.kind)]
        mine = incidents.index[incident.instance] == position
        first = np.flatnonzero(mine & (incidents.offset[incident.instance] == 0))
        if not entries or not len(first):
            continue  # no onset lines, or it started in an earlier hour
        for order, (template, level) in enumerate(entries):
            lines.append((incident.instance, int(first[0]), order, template, level, position))
    if not lines:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(6))
    return tuple(np.array(column, dtype=np.int64) for column in zip(*lines, strict=True))
