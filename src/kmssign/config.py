"""Settings: one frozen object used by every front end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TimestampPolicy = Literal["required", "optional", "off"]

DEFAULT_TIMESTAMP_URLS: tuple[str, ...] = (
    "http://timestamp.acs.microsoft.com",
    "http://timestamp.digicert.com",
    "http://timestamp.sectigo.com",
    "http://timestamp.globalsign.com/tsa/r6advanced1",
)
DEFAULT_JOBS = 16


@dataclass(frozen=True)
class Settings:
    key_id: str | None = None
    key_file: Path | None = None
    certificate: Path | None = None
    chain: tuple[Path, ...] = ()
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    digest: str = "sha256"
    timestamp_urls: tuple[str, ...] = DEFAULT_TIMESTAMP_URLS
    timestamp: TimestampPolicy = "required"
    description: str | None = None
    url: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_signed: bool = True
    jobs: int = DEFAULT_JOBS
    source: Path | None = field(default=None, compare=False)
    """The pyproject.toml the file-level settings came from, if any."""
