"""The A/B test settings, read from the Helm chart's values (``abTest``), the one source of
truth for the weights in the cluster (ingress-nginx canary) and locally (``serving.router.nginx``).

The names a client of the A/B endpoint sees (model, headers, assignment path) are in
``contracts.serving``.
"""

from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

DEFAULT_VALUES_PATH = Path(__file__).resolve().parents[2] / "helm" / "vigil" / "values.yaml"
VALUES_SECTION = "abTest"


class _HelmValues(BaseModel):
    """Helm spells keys in camelCase; Python reads them in snake_case."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class CookieValues(_HelmValues):
    name: str = Field("ab_variant", pattern=r"^[A-Za-z0-9_]+$")
    max_age_seconds: int = Field(86400, gt=0)


class RateLimitValues(_HelmValues):
    requests_per_second: int = Field(2000, gt=0)
    burst: int = Field(1000, ge=0)


_NGINX_SIZE = r"^[0-9]+[km]?$"


class RequestBodyValues(_HelmValues):
    max_size: str = Field("64m", pattern=_NGINX_SIZE)  # 413 beyond
    buffer_size: str = Field("8m", pattern=_NGINX_SIZE)  # larger bodies go through a file


class AbTestConfig(_HelmValues):
    """Percent of new clients per arm, the sticky cookie, the rate limit and body sizes."""

    champion_weight: int = Field(70, ge=0, le=100)
    challenger_weight: int = Field(30, ge=0, le=100)
    cookie: CookieValues = CookieValues()
    rate_limit: RateLimitValues = RateLimitValues()
    request_body: RequestBodyValues = RequestBodyValues()

    @model_validator(mode="after")
    def _weights_sum_to_100(self) -> Self:
        total = self.champion_weight + self.challenger_weight
        if total != 100:
            raise ValueError(
                f"championWeight + challengerWeight must be 100, got "
                f"{self.champion_weight} + {self.challenger_weight} = {total}"
            )
        return self


def load_ab_config(values_path: Path = DEFAULT_VALUES_PATH) -> AbTestConfig:
    """The ``abTest`` section of a Helm values file (other sections are the chart's business).

    Raises:
        ValueError: the file is not YAML, has no ``abTest`` mapping, or a key is invalid;
            the message names the file and the key.
    """
    try:
        values = yaml.safe_load(values_path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{values_path} is not valid YAML: {error}") from error
    section = values.get(VALUES_SECTION) if isinstance(values, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{values_path} has no {VALUES_SECTION!r} mapping")
    try:
        return AbTestConfig.model_validate(section)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join([VALUES_SECTION, *map(str, e['loc'])])}: {e['msg']}" for e in error.errors()
        )
        raise ValueError(f"{values_path}: {problems}") from error
