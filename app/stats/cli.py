"""`purchase-capture stats fold`: bring the statistics' rollup up to date now.

The service folds in the background every few seconds; this is for after a bulk load made
straight into the database, or to watch a first fold of a large table, with a progress bar.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from app.core.cli import fail, load_settings, progress_console
from app.core.engine import create_engine
from app.core.settings import Settings
from app.stats import rollup

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
    settings = load_settings()
    folded = asyncio.run(_fold(settings, progress_console(no_progress), wait))
    if folded is None:
        raise fail(
            f"the rollup did not catch up within {wait:g} s (inserts kept the purchase table busy)"
        )
    typer.echo(f"folded {folded:,} purchases", err=True)


async def _fold(settings: Settings, console: Console | None, wait: float) -> int | None:
    """Purchases folded until the rollup reached the largest id there was at the start
    (a service's background fold may do part of it: it folds one batch at a time too);
    None if it did not within `wait` seconds."""
    engine = create_engine(settings)
    try:
        start, target = await rollup.unfolded(engine)
        columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=console is None) as progress:
            task = progress.add_task("fold", total=max(target - start, 0))

            def advance(done: rollup.Folded) -> None:
                progress.update(task, completed=done.upto - start)

            clock = asyncio.get_running_loop().time
            deadline = clock() + wait
            folded = 0
            while True:
                folded += await rollup.fold(engine, on_batch=advance) or 0
                reached, _ = await rollup.unfolded(engine)
                progress.update(task, completed=max(reached - start, 0))
                if reached >= target:
                    return folded
                if clock() > deadline:
                    return None
                await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
