"""Scoring named metrics against published interpretation labels (SMD, ASD).

HitRate@P% (OmniAnomaly, KDD'19; InterFusion, KDD'21): for an incident whose ground truth is
the metric set GT, the share of GT found among the first ⌊P% × |GT|⌋ metrics an explanation
names; averaged over incidents. An explanation that names fewer metrics simply has fewer
chances to hit.
"""

from collections.abc import Sequence

HIT_RATE_PERCENTS = (100, 150)


def hit_rate(truth: Sequence[str], named: Sequence[str], percent: int) -> float:
    """Share of ``truth`` among the first ``⌊percent/100 × |truth|⌋`` names of ``named``.

    Raises:
        ValueError: on an empty truth or a percent that is not positive.
    """
    expected = set(truth)
    if not expected:
        raise ValueError("an incident needs at least one ground-truth metric")
    if percent <= 0:
        raise ValueError(f"percent must be positive, got {percent}")
    k = percent * len(expected) // 100
    return len(expected & set(named[:k])) / len(expected)


def random_hit_rate(truth_count: int, metric_count: int, percent: int) -> float:
    """Expected HitRate@P% of a uniformly random ranking of ``metric_count`` metrics."""
    if not 0 < truth_count <= metric_count:
        raise ValueError(f"need 0 < truth ({truth_count}) <= metrics ({metric_count})")
    k = percent * truth_count // 100
    return min(k, metric_count) / metric_count


def hit_rates(truth: Sequence[str], named: Sequence[str]) -> dict[str, float]:
    """``{"hit_rate@100%": ..., "hit_rate@150%": ...}`` for one incident."""
    return {f"hit_rate@{p}%": hit_rate(truth, named, p) for p in HIT_RATE_PERCENTS}


def mean_rates(rows: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """The mean of each key over incidents (None when there are none)."""
    keys = [f"hit_rate@{p}%" for p in HIT_RATE_PERCENTS]
    if not rows:
        return dict.fromkeys(keys)
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}
