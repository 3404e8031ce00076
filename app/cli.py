"""The `purchase-capture` console script: parses arguments and calls services."""

from __future__ import annotations

import typer

from app.keys.cli import keys_cli

cli = typer.Typer(
    help="The purchase capture service's command line, with the service's APP_* settings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli.add_typer(keys_cli, name="keys")


def main() -> None:
    cli()
