"""Runtime configuration, read from `APP_*` environment variables."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from app.core.rates import Rate, parse_rate

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIN_TOKEN_LENGTH = 16
# The databases the repositories speak, with the async driver each needs.
DATABASE_DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class Settings(BaseSettings):
    """Everything an operator can set; the defaults suit a developer's laptop."""

    model_config = SettingsConfigDict(env_prefix="APP_", extra="ignore")

    environment: Environment = Environment.DEV
    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'purchases.db'}"
    admin_token: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = Field(
        default="console", description="Defaults to json when APP_ENVIRONMENT=prod."
    )
    static_dir: Path = PROJECT_ROOT / "static"
    # Under 32 concurrent captures per process, a pool of 10 left most requests waiting for a
    # connection, an extra turn of the event loop each: p99 latency doubled against 16.
    db_pool_size: int = Field(default=16, ge=1, le=100)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    # Bounds on every wait for PostgreSQL, in seconds (README, "Limits"). The lock and statement
    # timeouts are the server's, so it ends the statement cleanly (nothing half-done); the command
    # timeout is asyncpg's, on the client: it also covers a server that stopped answering, and
    # must be the longer one so the server's comes first. All three stay under the pool timeout:
    # requests parked on a lock then free their connections before others give up waiting.
    db_lock_timeout: float = Field(default=2.0, gt=0)
    db_statement_timeout: float = Field(default=3.0, gt=0)
    db_command_timeout: float = Field(default=4.0, gt=0)
    db_timeout_scope: Literal["connection", "transaction"] = Field(
        default="connection",
        description="How the server-side timeouts reach PostgreSQL: per connection (startup "
        "parameters, free) or per transaction (SET LOCAL; behind a transaction pooler). "
        "Defaults to transaction when APP_DATABASE_POOLER=pgbouncer.",
    )
    database_pooler: Literal["none", "pgbouncer"] = Field(
        default="none",
        description="pgbouncer: PostgreSQL is reached through PgBouncer in transaction pooling.",
    )
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # How long a retry with the same Idempotency-Key replays the first answer (Stripe: 24 h),
    # and how often each process deletes the keys older than that.
    idempotency_key_ttl_hours: float = Field(default=24.0, gt=0)
    idempotency_purge_interval_s: float = Field(default=300.0, gt=0)
    stats_fold_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="How often each process folds new purchases into the statistics' rollup "
        "(app.stats.rollup); 0 turns the background fold off (`purchase-capture stats fold` "
        "still folds).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    # How long a process trusts what it read of an API key: a revocation reaches every process
    # within this time. Bounded by the 5 s the API promises.
    key_cache_seconds: float = Field(default=2.0, ge=0, le=5)
    # Per client address on the capture endpoints; "off" turns the limit off. The default is
    # far above what a person or a shop's integration sends, and stops a script flooding.
    rate_limit_captures: str = "100/s burst 1000"
    # "memory" (each process its own buckets) or a redis:// URL (one limit across replicas).
    rate_limit_store: str = "memory"
    # Peers whose X-Forwarded-For is believed: addresses or networks, comma-separated.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("rate_limit_captures")
    @classmethod
    def _valid_rate(cls, text: str) -> str:
        parse_rate(text)
        return text

    @field_validator("rate_limit_store")
    @classmethod
    def _valid_store(cls, store: str) -> str:
        if store != "memory" and not store.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be 'memory' or a redis:// URL")
        return store

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        """`10.0.0.1, 192.168.0.0/16`: each an address or a network (or `*`, trust anyone)."""
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        proxies = [str(item).strip() for item in items if str(item).strip()]
        for proxy in proxies:
            if proxy != "*":
                ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad one
        return proxies

    @property
    def capture_rate(self) -> Rate | None:
        return parse_rate(self.rate_limit_captures)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str) -> str:
        """Refuse at startup what would fail at the first request (or, with several workers,
        in each worker's startup). The message never quotes the URL: it may hold a password."""
        try:
            driver = make_url(url).drivername
        except ArgumentError:
            driver = ""
        if driver not in DATABASE_DRIVERS:
            raise ValueError(f"must be a {' or '.join(f'{d}://' for d in DATABASE_DRIVERS)} URL")
        return url

    @model_validator(mode="after")
    def _client_timeout_after_the_server_ones(self) -> Self:
        if self.db_command_timeout <= self.db_statement_timeout:
            raise ValueError(
                "APP_DB_COMMAND_TIMEOUT must be longer than APP_DB_STATEMENT_TIMEOUT, so that "
                "the server ends a slow statement before the client gives up on it"
            )
        return self

    @model_validator(mode="after")
    def _pooler_needs_postgres_and_transaction_timeouts(self) -> Self:
        """Behind PgBouncer the timeouts cannot be startup parameters (it refuses them): the
        one setting brings per-transaction timeouts with it, and refuses to be told otherwise."""
        if self.database_pooler == "none":
            return self
        if self.is_sqlite:
            raise ValueError("APP_DATABASE_POOLER=pgbouncer needs a postgresql+asyncpg:// URL")
        if "db_timeout_scope" not in self.model_fields_set:
            self.db_timeout_scope = "transaction"
        elif self.db_timeout_scope != "transaction":
            raise ValueError(
                "APP_DATABASE_POOLER=pgbouncer needs APP_DB_TIMEOUT_SCOPE=transaction (PgBouncer "
                "refuses the timeouts as startup parameters)"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_a_real_token(self) -> Self:
        if self.environment is Environment.PROD and "log_format" not in self.model_fields_set:
            self.log_format = "json"  # machines read production logs
        if self.environment is Environment.PROD:
            token = self.admin_token.get_secret_value() if self.admin_token else ""
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"APP_ADMIN_TOKEN must be set to a secret of at least {MIN_TOKEN_LENGTH} "
                    "characters when APP_ENVIRONMENT=prod"
                )
        return self

    @property
    def idempotency_key_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_key_ttl_hours)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# What building Settings raises for a bad environment: a value that fails validation, or one
# pydantic-settings cannot even parse (APP_CORS_ORIGINS that is not JSON).
InvalidSettings = (ValidationError, SettingsError)


def describe_invalid(error: ValidationError | SettingsError) -> str:
    """What is wrong with the environment's settings, by variable, never with the values.

    Pydantic's own message quotes the input, which for settings is every APP_* variable given:
    the admin token and the database URL's password would end up in the logs.
    """
    if isinstance(error, SettingsError):
        return f"bad settings: {error}"  # names the field and the source, not the value
    reasons = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        field = "_".join(str(part) for part in item["loc"])
        reason = item["msg"].removeprefix("Value error, ")  # pydantic's prefix for our checks
        reasons.append(f"APP_{field.upper()}: {reason}" if field else reason)
    return "bad settings: " + "; ".join(reasons)


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, built once, on first use (never at import)."""
    return Settings()
