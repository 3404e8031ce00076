"""`purchase-capture stats fold`: bring the statistics' rollup up to date now.

The service folds in the background every few seconds; this is for after a bulk load made
straight into the database, or to watch a first fold of a large table, with a progress bar.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from app.core.db import create_engine
from app.core.settings import InvalidSettings, Settings, describe_invalid
from app.stats import rollup

EXIT_FAILED = 1
EXIT_USAGE = 2

stats_cli = typer.Typer(
    help="The dashboard's statistics (uses the service's APP_* settings).",
    no_args_is_help=True,
)


@stats_cli.command("fold")
def fold_command(
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    wait: Annotated[
        float,
        typer.Option(help="Seconds to keep retrying while inserts hold the purchase table."),
    ] = 30.0,
) -> None:
    """Fold every stored purchase into the statistics' rollup, batch by batch."""
    try:
        settings = Settings()
    except InvalidSettings as error:
        typer.echo(f"error: {describe_invalid(error)}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    console = Console(stderr=True) if not no_progress and sys.stderr.isatty() else None
    folded = asyncio.run(_fold(settings, console, wait))
    if folded is None:
        typer.echo("error: inserts kept the purchase table busy; nothing folded", err=True)
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"folded {folded:,} purchases", err=True)


async def _fold(settings: Settings, console: Console | None, wait: float) -> int | None:
    engine = create_engine(settings)
    try:
        after, largest = await rollup.unfolded(engine)
        columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=console is None) as progress:
            task = progress.add_task("fold", total=max(largest - after, 0))

            def advance(done: rollup.Folded) -> None:
                progress.update(task, completed=done.upto - after)

            deadline = asyncio.get_running_loop().time() + wait
            while (folded := await rollup.fold(engine, on_batch=advance)) is None:
                if asyncio.get_running_loop().time() > deadline:
                    return None
                await asyncio.sleep(0.2)
            return folded
    finally:
        await engine.dispose()
