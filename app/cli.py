"""The `purchase-capture` console script: the root of the commands each package's cli module
defines, each module imported only when one of its commands runs (or for --help).

So a command loads what it uses and no more: `export` starts without FastAPI, Redis or the
key service, in about one second where importing them all took two (a third of an export of a
million rows, see bench/results/import-2026-11-29-3.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # Typer vendors Click; its group's methods take and give that Click's classes
    from typer._click import Command, Context

# A command's name -> "module:Typer app". The app's command of that name if it has one (import,
# export), else the app is the group of that name (keys, stats).
COMMANDS = {
    "import": "app.imports.cli:imports_cli",
    "export": "app.imports.cli:imports_cli",
    "keys": "app.keys.cli:keys_cli",
    "stats": "app.stats.cli:stats_cli",
}


class LazyCommands(TyperGroup):
    """Click's documented lazy group ("Lazily Loading Subcommands"), on Typer's group."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        group = typer.main.get_group(getattr(importlib.import_module(module), attribute))
        if cmd_name in group.commands:
            return group.commands[cmd_name]
        group.name = cmd_name
        return group


cli = typer.Typer(
    cls=LazyCommands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cli.callback()
def root() -> None:
    """The purchase capture service's command line: bulk import and export, API keys,
    statistics."""


def main() -> None:
    cli()
