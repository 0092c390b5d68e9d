"""Settings shared by every deployable, read from the environment (prefix ``VIGIL_``)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where data lives and how AWS is reached. Helm values map one-to-one onto these."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    store_uri: str = Field(
        default="data/store",
        description="Root of the object store: a local directory or s3://bucket/prefix.",
    )
    aws_region: str = Field(default="us-east-1", description="AWS region for S3 and CloudWatch.")
    aws_endpoint_url: str | None = Field(
        default=None,
        description="Override for every AWS API (an emulator on loopback in tests); None in AWS.",
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, built on first use (never at import)."""
    return Settings()
