"""Typed settings: config/default.toml (or the file in REWARDS_CONFIG), then REWARDS_* env.

Built once by `get_settings()` at the edge (CLI, scheduler, app factory) and passed down.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_rate
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rewards.core import DetectorSettings, IngestLimits, RetryPolicy, SurgePolicy, YearWindow

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.toml"
# a Dask scheduler's address: tcp:// or tls://, a host and a port, nothing else
SCHEDULER = r"^(tcp|tls)://[A-Za-z0-9.\-\[\]:]{1,200}:[0-9]{1,5}$"

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class SettingsError(ValueError):
    """Settings could not be loaded; the message names each bad setting and its source."""


class Settings(BaseSettings):
    """The engine's settings. Relative paths are resolved against the repository root."""

    model_config = SettingsConfigDict(env_prefix="REWARDS_", extra="forbid", frozen=True)

    database_url: str = "sqlite:///var/rewards.db"
    season: str = "ignition-s2"
    seasons_dir: Path = Path("config/seasons")

    uptime_api_url: str = "http://127.0.0.1:8600"
    uptime_api_token: SecretStr = SecretStr("")
    uptime_api_timeout_s: Positive = 30.0

    page_size: Annotated[int, Field(gt=0, le=100_000)] = 10_000
    max_page_bytes: PositiveInt = 32 * 1024 * 1024
    max_attempts: PositiveInt = 6
    backoff_base_s: Annotated[float, Field(ge=0)] = 0.5
    backoff_max_s: Annotated[float, Field(ge=0)] = 30.0
    max_retry_after_s: Annotated[float, Field(ge=0)] = 300.0
    max_clock_skew_s: Annotated[int, Field(ge=0)] = 300
    # the years a time given to the engine may fall in (heartbeats, incident windows)
    timestamp_min_year: Annotated[int, Field(ge=1970, le=9999)] = 2000
    timestamp_max_year: Annotated[int, Field(ge=1970, le=9999)] = 2100
    # What one ingest run may spend (DESIGN 10); past any of these it fails with the reason
    ingest_deadline_s: Positive = 3600.0
    ingest_page_timeout_s: Positive = 120.0
    ingest_max_pages: PositiveInt = 50_000
    ingest_max_bytes: PositiveInt = 16 * 1024**3
    ingest_max_idle_pages: PositiveInt = 100
    ingest_max_idle_in_a_row: PositiveInt = 10
    heartbeat_retention_days: PositiveInt = 400  # in the archive
    # raw heartbeats observed this recently (when they arrive) are kept in the database too,
    # at about 150 B each, for settlement-window queries; by default none: they live in the
    # archive (DESIGN 8), and the database holds intervals
    heartbeat_db_window_s: Annotated[int, Field(ge=0)] = 0
    # the heartbeat archive (DESIGN 8): a directory or s3://bucket/prefix (credentials and
    # endpoint from the AWS environment variables); every raw heartbeat goes there
    archive_url: str = "var/archive"
    archive_vacuum_hours: PositiveInt = 168  # files older versions need are kept this long
    # snapshot runs compute by device shard (DESIGN 8): devices a shard (memory is about a
    # shard's: 0.9 GiB for 37,500 devices at a real fleet's density) and local worker
    # processes (0: one after the other in the run's own process); results are the same
    shard_devices: PositiveInt = 50_000
    compute_workers: Annotated[int, Field(ge=0)] = 0
    # or a Dask distributed scheduler that runs the shards instead (tcp://host:8786); its
    # workers need this package and the work folder: compute_work_dir (default: the system's
    # temporary folder) must then be a mount they share at the same path
    compute_scheduler: Annotated[str | None, Field(pattern=SCHEDULER)] = None
    compute_work_dir: Path | None = None

    outage_drop_share: Annotated[float, Field(gt=0, lt=1)] = 0.2
    outage_window_s: PositiveInt = 900
    outage_recover_share: Annotated[float, Field(gt=0, le=1)] = 0.8
    proposed_recovery_deadline_s: Annotated[int, Field(ge=0)] = 172_800

    heartbeats_every_s: PositiveInt = 60
    devices_every_s: PositiveInt = 60
    outages_every_s: PositiveInt = 300
    snapshots_every_s: PositiveInt = 600
    eligibility_view_every_s: PositiveInt = 300
    snapshot_settlement_s: Annotated[int, Field(ge=0)] = 7200
    leader_lease_s: Annotated[int, Field(ge=3)] = 30
    job_lock_s: Annotated[int, Field(ge=10)] = 600

    # API authentication: bearer JWTs from an OIDC provider's JWKS (issue 5)
    auth_issuer: str = ""
    auth_audience: str = "ignition-rewards"
    auth_jwks_url: str = ""
    auth_role_claim: str = "roles"
    auth_leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    auth_jwks_ttl_s: Positive = 300.0
    auth_jwks_min_refresh_s: Annotated[float, Field(ge=0)] = 30.0
    auth_max_token_lifetime_s: PositiveInt = 86_400
    auth_jwks_stale_s: Positive = 86_400.0
    auth_jwks_wait_s: Annotated[float, Field(ge=0, le=5)] = 0.5
    auth_jwks_backoff_max_s: Positive = 300.0
    rate_limit_per_ip: str = "1200/minute"
    rate_limit_per_subject: str = "600/minute"
    # proxies (addresses or CIDRs) whose Forwarded / X-Forwarded-For name the client
    trusted_proxies: list[str] = []
    # the one header those proxies write; the other is the client's and is ignored
    trusted_proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    api_threads: Annotated[int, Field(ge=1, le=200)] = 2
    surge_baseline_minutes: PositiveInt = 60
    surge_factor: Positive = 5.0
    surge_min_writes: PositiveInt = 30
    surge_block: bool = True
    alert_webhook_url: str = ""
    dev_issuer_enabled: bool = False
    dev_issuer_key_file: Path = Path("var/dev-issuer-key.pem")

    # Web pages (issue 6): sign-in by OIDC authorization code with PKCE, then a session
    # cookie. `public_url` is where browsers reach this service (https makes the cookie
    # Secure; a real provider needs its callback registered); unset, the pages work on
    # whatever address a browser uses. The provider is found from its discovery document.
    # With the development issuer enabled and no provider configured, the engine is its
    # own provider.
    public_url: Annotated[str, Field(pattern=r"^(https?://[^/?#\s]+/?)?$")] = ""
    oidc_discovery_url: str = ""
    oidc_client_id: str = "ignition-rewards-web"
    oidc_client_secret: str = ""
    oidc_scope: str = "openid"
    session_secret_file: Path = Path("var/session-secret")
    # the key each owner's commitment salt is derived from (DESIGN 9): made on first use,
    # mode 0600; losing it means owners can no longer be given their salts
    publication_key_file: Path = Path("var/publication-key")
    # each snapshot's inputs exactly as fingerprinted, for its audit bundle (DESIGN 9): a
    # folder per distinct fingerprint (about 10 B per interval in zstd Parquet)
    snapshot_inputs_dir: Path = Path("var/snapshot-inputs")
    session_max_age_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 8 * 3600

    @property
    def publication_key_path(self) -> Path:
        """`publication_key_file`, relative paths taken from the repository's root."""
        path = self.publication_key_file
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def snapshot_inputs_path(self) -> Path:
        """`snapshot_inputs_dir`, relative paths taken from the repository's root."""
        path = self.snapshot_inputs_dir
        return path if path.is_absolute() else REPO_ROOT / path

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError(
                "expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, got "
                f"{value.split('://', maxsplit=1)[0]!r}://…"
            )
        if value.startswith("postgresql:"):
            value = "postgresql+psycopg:" + value.removeprefix("postgresql:")
        return value

    @field_validator("rate_limit_per_ip", "rate_limit_per_subject")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse_rate(value)
        except ValueError:
            raise ValueError(f"expected a rate such as 600/minute, got {value!r}") from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for spec in value:
            try:
                ipaddress.ip_network(spec, strict=False)
            except ValueError:
                raise ValueError(f"expected IP addresses or CIDRs, got {spec!r}") from None
        return value

    @field_validator("uptime_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_issuer(self) -> Settings:
        problem = issuer_conflict(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def detector(self) -> DetectorSettings:
        """The outage detector's parameters."""
        return DetectorSettings(
            drop_share=self.outage_drop_share,
            window=timedelta(seconds=self.outage_window_s),
            recover_share=self.outage_recover_share,
            recovery_deadline=timedelta(seconds=self.proposed_recovery_deadline_s),
        )

    @property
    def job_lock(self) -> timedelta:
        """How long a job's lock (a season's snapshot run, a view rebuild, an ingest pull)
        holds without renewal before another process may take it over."""
        return timedelta(seconds=self.job_lock_s)

    @property
    def heartbeat_db_window(self) -> timedelta:
        """How recent a raw heartbeat must be for the database to keep it (DESIGN 8)."""
        return timedelta(seconds=self.heartbeat_db_window_s)

    @property
    def settlement(self) -> timedelta:
        """How long after an epoch ends it is settled and may be snapshotted (DESIGN 10)."""
        return timedelta(seconds=self.snapshot_settlement_s)

    @property
    def surges(self) -> SurgePolicy:
        """When a minute of metadata writes is a surge (DESIGN 1; rewards/core/surges.py)."""
        return SurgePolicy(
            baseline_minutes=self.surge_baseline_minutes,
            factor=self.surge_factor,
            min_writes=self.surge_min_writes,
        )

    @property
    def retry(self) -> RetryPolicy:
        """How the uptime client retries a page that failed transiently (DESIGN 6)."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            max_retry_after_s=self.max_retry_after_s,
        )

    @property
    def ingest_limits(self) -> IngestLimits:
        """What one ingest run may spend (DESIGN 10)."""
        return IngestLimits(
            deadline_s=self.ingest_deadline_s,
            max_pages=self.ingest_max_pages,
            max_bytes=self.ingest_max_bytes,
            max_idle_pages=self.ingest_max_idle_pages,
            max_idle_in_a_row=self.ingest_max_idle_in_a_row,
        )

    @field_validator("timestamp_max_year")
    @classmethod
    def _year_window(cls, value: int, info: ValidationInfo) -> int:
        first = info.data.get("timestamp_min_year")
        if first is not None and value < first:
            raise ValueError(f"must not be before timestamp_min_year ({first}), got {value}")
        return value

    @property
    def timestamp_years(self) -> YearWindow:
        """The UTC years a timestamp may fall in; others are refused as `bad_timestamp`."""
        return YearWindow(self.timestamp_min_year, self.timestamp_max_year)

    @property
    def season_file(self) -> Path:
        """The TOML file of the configured season."""
        base = self.seasons_dir if self.seasons_dir.is_absolute() else REPO_ROOT / self.seasons_dir
        return base / f"{self.season}.toml"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with a relative SQLite path anchored at the repository root."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            path = self.database_url.removeprefix(prefix)
            if path and path != ":memory:" and not Path(path).is_absolute():
                return prefix + str(REPO_ROOT / path)
        return self.database_url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = Path(os.environ.get("REWARDS_CONFIG", DEFAULT_CONFIG))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config))


REAL_ISSUER_SETTINGS = ("auth_issuer", "auth_jwks_url", "oidc_discovery_url")


def issuer_conflict(settings: Settings) -> str | None:
    """Why the settings enable the development issuer beside a real one (DESIGN 10: never
    together; the dev issuer would win silently, and anyone could sign in as admin), or
    None."""
    real = [name for name in REAL_ISSUER_SETTINGS if getattr(settings, name)]
    if not settings.dev_issuer_enabled or not real:
        return None
    return (
        f"dev_issuer_enabled is true and {', '.join(real)} "
        f"{'is' if len(real) == 1 else 'are'} set: the development issuer and a real "
        "issuer are never on together; unset dev_issuer_enabled (production) or "
        f"{' and '.join(real)} (development)"
    )


def get_settings(**overrides: object) -> Settings:
    """Load settings once at the edge; SettingsError names each bad setting and its source."""
    config = os.environ.get("REWARDS_CONFIG", str(DEFAULT_CONFIG))
    if not Path(config).is_file():
        raise SettingsError(f"config file {config} does not exist (set REWARDS_CONFIG)")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            if not key:  # a rule across settings: its message names them
                lines.append(f"  {error['msg'].removeprefix('Value error, ')}")
                continue
            lines.append(f"  {key} (REWARDS_{key.upper()} or {Path(config).name}): {error['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
