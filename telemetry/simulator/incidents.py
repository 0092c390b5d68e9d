"""The six incident types the fleet simulator injects: when they happen and what they do.

Each type is a state machine: it walks through its phases in order
(error spike WARNING → ERROR → CRITICAL, latency slow → degraded → timeout, resource
exhaustion 70 → 80 → 90 → 99 %, ...) and each phase changes both the instance's metrics and
its logs: how many lines it writes, what share come from the incident, and at which levels.

The logs are the incident's signature, as an SRE would read it: its own templates (a memory
leak's GC and OOM lines, a full disk's "No space left on device", an outage's refused
connections and 503s, a saturated CPU's slow-request and starved-worker warnings, an attack's
failed logins or blocked payloads, a broken feed's schema errors), some opened by ``onset``
lines at the first minute (an error spike is a bad deployment: the rollout's version line,
then new exceptions). What stays fixed over one incident is drawn from its seed: the slots in
``INCIDENT_SLOTS`` (the failing service, endpoint, table, exception, the deployed version)
hold one value for all its lines, as one broken code path writes them, where normal lines
draw them per line.

The kinds themselves (phases, templates, metrics) are in telemetry.simulator.incident_kinds.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contracts.telemetry import FLEET_METRICS
from telemetry.simulator.incident_kinds import INCIDENT_KINDS, RESOURCE_VARIANTS, IncidentKind

# Seed 004 §4: how often each type is chosen when an incident starts.
INCIDENT_WEIGHTS: dict[str, float] = {
    "error_spike": 0.25,
    "latency_degradation": 0.20,
    "security_threat": 0.15,
    "resource_exhaustion": 0.15,
    "service_outage": 0.15,
    "data_anomaly": 0.10,
}

# Inclusive bounds in minutes; resource exhaustion needs time to climb, spikes are short.
DURATION_MINUTES: dict[str, tuple[int, int]] = {
    "error_spike": (5, 20),
    "latency_degradation": (10, 45),
    "security_threat": (5, 30),
    "resource_exhaustion": (12, 45),
    "service_outage": (5, 30),
    "data_anomaly": (5, 25),
}

# The last incident drawn may be cut to fit the budget, but never below this.
MIN_DURATION_MINUTES = 3
# The longest incident the schedule can produce.
_MAX_INCIDENT_MINUTES = max(high for _, high in DURATION_MINUTES.values())

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METRIC_INDEX = {name: i for i, name in enumerate(FLEET_METRICS)}


@dataclass(frozen=True)
class Incident:
    """One injected incident: minutes ``start`` .. ``end`` (inclusive) of one instance."""

    instance: int  # index into the fleet
    start: int  # minutes since the simulation start
    duration: int
    kind: IncidentKind
    seed: int  # drives what stays fixed over the incident (a stuck sensor value, an attacker)

    @property
    def end(self) -> int:
        return self.start + self.duration - 1

    def phase_at(self, offsets: IntArray) -> IntArray:
        """Index of the phase at each minute offset from the start (phases split it evenly)."""
        n_phases = len(self.kind.phases)
        return np.minimum(offsets * n_phases // self.duration, n_phases - 1)


def _variants_for(incident_type: str, source: str) -> list[IncidentKind]:
    kinds = [k for k in INCIDENT_KINDS if k.incident_type == incident_type]
    if incident_type == "resource_exhaustion":
        kinds = [k for k in kinds if k.variant in RESOURCE_VARIANTS[source]]
    return kinds


def schedule_incidents(
    rng: np.random.Generator, sources: Sequence[str], n_minutes: int, rate: float
) -> list[Incident]:
    """Place incidents so that about ``rate`` of all instance-minutes are inside one.

    Types are drawn with INCIDENT_WEIGHTS and durations from DURATION_MINUTES until the
    fleet's budget of anomalous minutes is spent. Some instances are more incident-prone
    than others; incidents on one instance never overlap or touch (one normal minute at
    least between two), so every incident stays a separate labelled interval.

    Args:
        rng: the random stream to draw from.
        sources: the source of each instance, in fleet order.
        n_minutes: length of the simulation in minutes.
        rate: target share of anomalous instance-minutes, in [0, 1).

    Returns:
        The incidents, ordered by instance and start.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"incident rate must be in [0, 1), got {rate}")
    if n_minutes < 1 or not sources:
        raise ValueError("need at least one instance and one minute to schedule incidents")
    n_instances = len(sources)
    budget = round(rate * n_instances * n_minutes)
    if budget == 0:
        return []
    types, durations = _draw_durations(rng, budget, n_minutes)
    proneness = rng.gamma(2.0, 1.0, n_instances)
    instances = rng.choice(n_instances, size=len(types), p=proneness / proneness.sum())
    instances = _move_what_does_not_fit(rng, instances, durations, proneness, n_minutes)
    seeds = rng.integers(0, 2**31, len(types))
    choices = rng.random(len(types))

    incidents = []
    for instance in np.unique(instances[instances >= 0]):
        mine = np.flatnonzero(instances == instance)
        slack = n_minutes - int(durations[mine].sum()) - (len(mine) - 1)
        cuts = np.sort(rng.integers(0, slack + 1, size=len(mine)))
        gaps = np.diff(cuts, prepend=0)
        ends_before = np.cumsum(durations[mine] + 1) - (durations[mine] + 1)
        starts = np.cumsum(gaps) + ends_before
        for j, start in zip(mine, starts, strict=True):
            incident_type = _TYPES[types[j]]
            kinds = _variants_for(incident_type, sources[instance])
            kind = kinds[int(choices[j] * len(kinds))]
            incidents.append(
                Incident(int(instance), int(start), int(durations[j]), kind, int(seeds[j]))
            )
    return incidents


_TYPES = tuple(INCIDENT_WEIGHTS)


def _draw_durations(
    rng: np.random.Generator, budget: int, n_minutes: int
) -> tuple[IntArray, IntArray]:
    """Incident types and durations whose minutes add up to ``budget``."""
    weights = np.array([INCIDENT_WEIGHTS[t] for t in _TYPES])
    low = np.array([DURATION_MINUTES[t][0] for t in _TYPES])
    high = np.array([DURATION_MINUTES[t][1] for t in _TYPES])
    types: list[IntArray] = []
    durations: list[IntArray] = []
    drawn = 0
    while drawn < budget:
        size = (budget - drawn) // int(low.min()) + 1
        batch = rng.choice(len(_TYPES), size=size, p=weights)
        types.append(batch)
        durations.append(np.minimum(rng.integers(low[batch], high[batch] + 1), n_minutes))
        drawn += int(durations[-1].sum())
    all_types, all_durations = np.concatenate(types), np.concatenate(durations)
    count = int(np.searchsorted(np.cumsum(all_durations), budget)) + 1
    all_types, all_durations = all_types[:count], all_durations[:count]
    # The last one is cut to land on the budget, but stays a few minutes long.
    overshoot = int(all_durations.sum()) - budget
    all_durations[-1] = max(all_durations[-1] - overshoot, min(MIN_DURATION_MINUTES, n_minutes))
    return all_types, all_durations


def _move_what_does_not_fit(
    rng: np.random.Generator,
    instances: IntArray,
    durations: IntArray,
    proneness: FloatArray,
    n_minutes: int,
) -> IntArray:
    """Reassign incidents that overflow their instance's timeline; -1 where none has room.

    Each incident needs its minutes plus one separating minute (except the last on the
    instance). Only at high rates does anything overflow, so the loop below is short.
    """
    instances = instances.copy()
    order = np.argsort(instances, kind="stable")
    sorted_instances = instances[order]
    need = durations[order] + 1
    running = np.cumsum(need)
    group_start = np.flatnonzero(np.diff(sorted_instances, prepend=-1))
    sizes = np.diff(np.append(group_start, len(order)))
    before_group = np.repeat(running[group_start] - need[group_start], sizes)
    overflow = order[running - before_group - 1 > n_minutes]
    if len(overflow) == 0:
        return instances
    instances[overflow] = -1
    used = np.bincount(
        instances[instances >= 0], weights=durations[instances >= 0] + 1, minlength=len(proneness)
    )
    for j in overflow:
        free = n_minutes + 1 - used
        fits = proneness * (free >= durations[j] + 1)
        if fits.sum() == 0:
            continue
        instance = int(rng.choice(len(proneness), p=fits / fits.sum()))
        instances[j] = instance
        used[instance] += durations[j] + 1
    return instances


def apply_incident(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    """Change one instance's metrics over the incident's minutes, in place.

    Args:
        incident: the incident.
        values: the instance's metrics at those minutes, shape (minutes, len(FLEET_METRICS)),
            before rounding and clipping to METRIC_RANGES.
        offsets: minutes since the incident's start for each row of ``values``.
        rng: the random stream for minute-to-minute variation.
    """
    _EFFECTS[incident.kind.incident_type](incident, values, offsets, rng)


_CPU, _MEM, _DISK, _SWAP = (
    METRIC_INDEX[m]
    for m in ("CPUUtilization", "MemoryUtilization", "DiskUsedPercent", "SwapUsedPercent")
)
_NET_IN, _NET_OUT, _DISK_WRITE, _LOAD = (
    METRIC_INDEX[m] for m in ("NetworkIn", "NetworkOut", "DiskWriteOps", "LoadAverage")
)
_TCP, _REQUESTS, _LATENCY, _5XX, _4XX = (
    METRIC_INDEX[m]
    for m in (
        "TCPConnections",
        "RequestCount",
        "Latency",
        "HTTPCode_5XX_Count",
        "HTTPCode_4XX_Count",
    )
)
_DB_CONNECTIONS, _THREADS = METRIC_INDEX["DatabaseConnections"], METRIC_INDEX["ThreadCount"]


def _jitter(rng: np.random.Generator, n: int, spread: float) -> FloatArray:
    return rng.uniform(1.0 - spread, 1.0 + spread, n)


def _error_spike(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    phase = incident.phase_at(offsets)
    error_share = np.array([0.04, 0.12, 0.30])[phase] * _jitter(rng, len(offsets), 0.3)
    failures = rng.poisson(values[:, _REQUESTS] * error_share)
    values[:, _5XX] = np.maximum(values[:, _5XX], failures)
    values[:, _LATENCY] *= np.array([1.1, 1.25, 1.5])[phase]


def _latency_degradation(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    # Geometric ramp to ~5x: ~1.7x at the end of "slow", ~2.9x at the end of "degraded".
    multiplier = 5.0 ** ((offsets + 1) / incident.duration) * _jitter(rng, len(offsets), 0.1)
    values[:, _LATENCY] *= multiplier
    values[:, _TCP] *= 1 + 0.25 * (multiplier - 1)
    values[:, _THREADS] *= 1 + 0.15 * (multiplier - 1)
    values[:, _LOAD] *= 1 + 0.1 * (multiplier - 1)


def _security_threat(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    attacking = incident.phase_at(offsets) == 1
    n = len(offsets)
    extra_traffic = np.where(attacking, 1.6, 1.1) * _jitter(rng, n, 0.1)
    values[:, _REQUESTS] *= extra_traffic
    values[:, _NET_IN] *= extra_traffic
    rejected_share = np.where(attacking, 0.30, 0.06) * _jitter(rng, n, 0.3)
    values[:, _4XX] += rng.poisson(values[:, _REQUESTS] * rejected_share)
    values[:, _CPU] += np.where(attacking, 8.0, 2.0) * _jitter(rng, n, 0.5)


def _resource_exhaustion(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    # Climbs 70 → 80 → 90 → 99 % over the incident, through the phases' thresholds; the last
    # minute is always at 99 % or more.
    climb = offsets / max(incident.duration - 1, 1)
    target = np.minimum(70.0 + 29.0 * climb + rng.uniform(0.0, 0.9, len(offsets)), 100.0)
    variant = incident.kind.variant
    if variant == "memory":
        before = values[:, _MEM].copy()
        values[:, _MEM] = np.maximum(before, target)
        values[:, _SWAP] = np.maximum(values[:, _SWAP], (values[:, _MEM] - 70.0) * 1.5)
    elif variant == "cpu":
        before = np.maximum(values[:, _CPU], 1.0)
        values[:, _CPU] = np.maximum(values[:, _CPU], target)
        values[:, _LOAD] *= values[:, _CPU] / before
    else:
        values[:, _DISK] = np.maximum(values[:, _DISK], target)
        values[:, _DISK_WRITE] *= 1.0 + 1.5 * climb


def _service_outage(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    down = incident.phase_at(offsets) == 1
    n = len(offsets)
    reaching = np.where(down, 0.08, 0.45) * _jitter(rng, n, 0.3)
    values[:, _REQUESTS] *= reaching
    failed_share = np.minimum(np.where(down, 0.9, 0.5) * _jitter(rng, n, 0.1), 1.0)
    failures = rng.binomial(np.rint(values[:, _REQUESTS]).astype(np.int64), failed_share)
    values[:, _5XX] = np.maximum(values[:, _5XX], failures)
    values[:, _TCP] *= reaching
    values[:, _NET_OUT] *= reaching
    values[:, _DB_CONNECTIONS] *= np.where(down, 0.05, 0.5)
    values[:, _LATENCY] *= np.where(down, 4.0, 2.0)
    values[:, _CPU] *= np.where(down, 0.35, 0.7)


def _data_anomaly(
    incident: Incident, values: FloatArray, offsets: IntArray, rng: np.random.Generator
) -> None:
    # A broken collector: some minutes report zero traffic, others a wildly inflated count,
    # and the disk counter sticks at a sentinel for the whole incident.
    n = len(offsets)
    dropped = rng.random(n) < 0.5
    values[:, _NET_IN] = np.where(dropped, 0.0, values[:, _NET_IN] * rng.uniform(6.0, 12.0, n))
    values[:, _NET_OUT] = np.where(dropped, 0.0, values[:, _NET_OUT])
    values[:, _DISK_WRITE] = (0.0, 65535.0)[incident.seed % 2]


_Effect = Callable[[Incident, FloatArray, IntArray, np.random.Generator], None]
_EFFECTS: dict[str, _Effect] = {
    "error_spike": _error_spike,
    "latency_degradation": _latency_degradation,
    "security_threat": _security_threat,
    "resource_exhaustion": _resource_exhaustion,
    "service_outage": _service_outage,
    "data_anomaly": _data_anomaly,
}


@dataclass(frozen=True)
class HourIncidents:
    """Which incident (if any) each instance-minute of an hour is in, and at what offset."""

    incidents: list[Incident]
    index: IntArray  # (instances, minutes), -1 outside incidents
    offset: IntArray  # (instances, minutes), minutes since the incident's start


def incidents_in_hour(
    incidents: list[Incident], starts: list[int], first: int, stop: int, instances: int
) -> HourIncidents:
    """The incidents overlapping simulation minutes ``first`` .. ``stop - 1``, per instance-minute.

    ``starts`` holds the start of each of ``incidents``, which are ordered by start.
    """
    low = int(np.searchsorted(starts, first - _MAX_INCIDENT_MINUTES, side="left"))
    high = int(np.searchsorted(starts, stop, side="left"))
    overlapping = [i for i in incidents[low:high] if i.end >= first]
    index = np.full((instances, stop - first), -1, dtype=np.int64)
    offset = np.zeros((instances, stop - first), dtype=np.int64)
    for position, incident in enumerate(overlapping):
        lo, hi = max(incident.start, first), min(incident.end + 1, stop)
        index[incident.instance, lo - first : hi - first] = position
        offset[incident.instance, lo - first : hi - first] = np.arange(lo, hi) - incident.start
    return HourIncidents(overlapping, index, offset)
