"""Settings come from APP_* variables; production refuses to run without a real token."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.__main__ import check_settings
from app.core.settings import PROJECT_ROOT, Settings, describe_invalid


def test_default_database_is_a_sqlite_file_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_DATABASE_URL", raising=False)

    url = Settings().database_url

    assert url == f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'purchases.db'}"


def test_settings_are_read_from_app_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_LOG_FORMAT", "json")
    monkeypatch.setenv("APP_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("APP_DATABASE_URL", "postgresql+asyncpg://u@db/x")

    settings = Settings()

    assert (settings.log_format, settings.log_level) == ("json", "WARNING")
    assert settings.database_url == "postgresql+asyncpg://u@db/x"


def test_idempotency_keys_are_kept_24_hours_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("APP_IDEMPOTENCY_KEY_TTL_HOURS", raising=False)
    assert Settings().idempotency_key_ttl == timedelta(hours=24)

    monkeypatch.setenv("APP_IDEMPOTENCY_KEY_TTL_HOURS", "1.5")
    assert Settings().idempotency_key_ttl == timedelta(minutes=90)


def test_production_without_a_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("APP_ENVIRONMENT", "prod")

    with pytest.raises(ValidationError, match="APP_ADMIN_TOKEN"):
        Settings()


def test_production_with_a_short_token_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="APP_ADMIN_TOKEN"):
        Settings(environment="prod", admin_token="short")


def test_production_with_a_real_token_starts() -> None:
    settings = Settings(environment="prod", admin_token="a" * 32)

    assert settings.admin_token is not None


def test_token_is_hidden_in_the_settings_repr() -> None:
    settings = Settings(admin_token="super-secret-token-value")

    assert "super-secret-token-value" not in repr(settings)


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({"log_format": "xml"})


def test_production_logs_json_unless_told_otherwise() -> None:
    assert Settings(environment="prod", admin_token="a" * 32).log_format == "json"


def test_development_logs_console_lines() -> None:
    assert Settings(environment="dev").log_format == "console"


def start_in_production_without_a_token(
    tmp_path: Path, *command: str
) -> subprocess.CompletedProcess[str]:
    """Runs `python <command>` as production would, but with no APP_ADMIN_TOKEN."""
    env = {
        **os.environ,
        "APP_ENVIRONMENT": "prod",
        "APP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
    }
    env.pop("APP_ADMIN_TOKEN", None)
    return subprocess.run(  # noqa: S603 - this interpreter, our own arguments
        [sys.executable, *command],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_server_in_production_without_a_token_exits_with_an_error(tmp_path: Path) -> None:
    result = start_in_production_without_a_token(
        tmp_path, "-m", "uvicorn", "app.main:app", "--port", "0"
    )

    assert result.returncode != 0
    assert "APP_ADMIN_TOKEN" in result.stderr + result.stdout


def test_server_with_several_workers_exits_3_on_bad_settings(tmp_path: Path) -> None:
    """uvicorn's --workers supervisor would exit 0 after its workers failed to start."""
    result = start_in_production_without_a_token(
        tmp_path, "-m", "app", "--workers", "2", "--port", "0"
    )

    assert result.returncode == 3, result.stderr
    assert "APP_ADMIN_TOKEN" in result.stderr


def test_bad_settings_are_named_by_variable_without_their_values() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(
            environment="prod",
            admin_token="hunter2-short",
            database_url="postgresql+asyncpg://app:s3cret-pw@db/purchases",
        )

    said = describe_invalid(refused.value)

    assert "APP_ADMIN_TOKEN" in said
    assert "hunter2" not in said
    assert "s3cret-pw" not in said


def test_a_field_error_names_its_app_variable() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"db_pool_size": 0})

    assert describe_invalid(refused.value).startswith("bad settings: APP_DB_POOL_SIZE: ")


def test_a_variable_that_cannot_be_parsed_exits_3_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_CORS_ORIGINS", "not json [")

    with pytest.raises(SystemExit) as exited:
        check_settings()

    assert exited.value.code == 3
    assert "cors_origins" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    ["postgresql://app:s3cret-pw@db/purchases", "sqlite:///var/x.db", "not a url s3cret-pw"],
)
def test_a_database_url_without_a_supported_async_driver_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url=url)

    said = describe_invalid(refused.value)
    assert said.startswith("bad settings: APP_DATABASE_URL: ")
    assert "postgresql+asyncpg://" in said
    assert "s3cret-pw" not in said


def test_a_command_timeout_not_longer_than_the_statement_timeout_is_refused() -> None:
    """The server must end a slow statement itself (a clean error) before the client gives up."""
    with pytest.raises(ValidationError, match="APP_DB_COMMAND_TIMEOUT must be longer"):
        Settings(db_statement_timeout=4, db_command_timeout=4)


def test_the_database_is_reached_directly_unless_told_otherwise() -> None:
    assert Settings(database_url="postgresql+asyncpg://u@db/x").database_pooler == "none"


def test_the_pgbouncer_pooler_is_refused_on_sqlite() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url="sqlite+aiosqlite:///x.db", database_pooler="pgbouncer")

    assert "APP_DATABASE_POOLER=pgbouncer needs a postgresql+asyncpg:// URL" in describe_invalid(
        refused.value
    )


def test_an_unknown_pooler_is_refused() -> None:
    with pytest.raises(ValidationError, match="database_pooler"):
        Settings(database_url="postgresql+asyncpg://u@db/x", database_pooler="pgpool")


def test_the_pgbouncer_pooler_sets_the_timeouts_per_transaction() -> None:
    settings = Settings(database_url="postgresql+asyncpg://u@db/x", database_pooler="pgbouncer")

    assert settings.db_timeout_scope == "transaction"


def test_the_pgbouncer_pooler_refuses_timeouts_as_startup_parameters() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(
            database_url="postgresql+asyncpg://u@db/x",
            database_pooler="pgbouncer",
            db_timeout_scope="connection",
        )

    assert "APP_DB_TIMEOUT_SCOPE=transaction" in describe_invalid(refused.value)
