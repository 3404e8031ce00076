"""What every `purchase-capture` command shares: its exit statuses, how it reads the settings,
how it reports a failure, and the console its progress bar draws on."""

from __future__ import annotations

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError

from app.core.settings import InvalidSettings, Settings, describe_invalid

EXIT_FAILED = 1  # the run was aborted (a malformed file, the database, a refused request)
EXIT_USAGE = 2  # a usage error: Click's own, and bad APP_* settings


def fail(message: str, status: int = EXIT_FAILED) -> typer.Exit:
    """Print `error: <message>` on stderr; returns the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(status)


def load_settings() -> Settings:
    """The service's APP_* settings; bad ones are a usage error, named in one line."""
    try:
        return Settings()
    except InvalidSettings as error:
        raise fail(describe_invalid(error), EXIT_USAGE) from None


def progress_console(no_progress: bool) -> Console | None:
    """The console for a progress bar: none with --no-progress or when stderr is no terminal."""
    console = Console(stderr=True)
    return console if console.is_terminal and not no_progress else None


def first_line(error: DBAPIError) -> str:
    """The database's own message, without SQLAlchemy's statement and parameters."""
    return str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
