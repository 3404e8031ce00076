"""The console script: exit statuses, summaries, stdin, and the progress bar."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import cli
from app.imports.formats import Format
from app.imports.progress import ImportProgress
from app.imports.service import import_purchases
from tests.imports.helpers import GOOD, csv_lines, purchases

BAD = "nope,Tim,book,1,1.00,EUR"


def _file(tmp_path: Path, content: str, name: str = "sales.csv") -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def test_a_clean_import_exits_0_with_a_summary(run: CliRunner, tmp_path: Path) -> None:
    result = run.invoke(cli, ["import", str(_file(tmp_path, csv_lines(GOOD, GOOD)))])

    assert result.exit_code == 0, result.output
    assert result.stdout == "stored 2 purchases (1 customers created, 0 updated)\n"


def test_rejected_rows_exit_65_and_go_beside_the_file(run: CliRunner, tmp_path: Path) -> None:
    path = _file(tmp_path, csv_lines(GOOD, BAD))

    result = run.invoke(cli, ["import", str(path)])

    assert result.exit_code == 65
    rejects = tmp_path / "sales.rejects.csv"
    assert f"1 rows rejected, see {rejects}" in result.stdout
    assert "line 3: email: not a valid email address" in result.stderr
    assert rejects.read_text().splitlines()[1].startswith(BAD + ",3,email,")


def test_a_second_run_says_nothing_new_was_stored(run: CliRunner, tmp_path: Path) -> None:
    path = _file(tmp_path, csv_lines(GOOD, GOOD))
    run.invoke(cli, ["import", str(path)])

    result = run.invoke(cli, ["import", str(path)])

    assert result.exit_code == 0
    assert result.stdout.startswith("nothing new: the 2 good rows of this file were stored")


def test_a_malformed_file_exits_1_with_one_line(run: CliRunner, tmp_path: Path) -> None:
    path = _file(tmp_path, "email,name\n" + GOOD + "\n")

    result = run.invoke(cli, ["import", str(path)])

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path}: line 1: missing column 'item' in the header; nothing stored\n"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["import"],
        ["import", "no-such-file.csv"],
        ["import", "x.csv", "--format", "xml"],
        ["import", "x.csv", "--strict", "--dry-run"],
        ["export", "orders"],
        ["export", "purchases", "--since", "yesterday"],
    ],
)
def test_a_usage_error_exits_2(run: CliRunner, arguments: list[str]) -> None:
    assert run.invoke(cli, arguments).exit_code == 2


def test_stdin_is_read_with_the_format_given(run: CliRunner, tmp_path: Path) -> None:
    row = '{"email": "tim@example.com", "name": "Tim", "item": "book", "unit_price": "1.00"}\n'

    result = run.invoke(cli, ["import", "-", "--format", "jsonl"], input=row)

    assert result.exit_code == 0, result.output
    assert result.stdout == "stored 1 purchases (1 customers created, 0 updated)\n"


def test_every_command_has_help(run: CliRunner) -> None:
    for command in ([], ["import"], ["export"], ["keys"]):
        result = run.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.stdout


async def test_the_progress_bar_shows_rows_speed_bytes_and_completion(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = csv_lines(*[GOOD] * 10).encode()
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)

    with ImportProgress(console) as progress:
        await import_purchases(
            engine,
            source=io.BytesIO(content),
            fmt=Format.CSV,
            rejects_path=tmp_path / "rejects.csv",
            progress=progress.update,
            chunk_rows=3,
        )

    shown = console.export_text()
    assert "importing" in shown
    assert "10/10" in shown
    assert "rows/s" in shown
    assert f"{len(content)} bytes/{len(content)} bytes" in shown
    assert "━" in shown  # the bar itself
    assert len(await purchases(engine)) == 10


def test_the_progress_bar_is_off_when_stderr_is_not_a_terminal(
    run: CliRunner, tmp_path: Path
) -> None:
    result = run.invoke(cli, ["import", str(_file(tmp_path, csv_lines(GOOD)))])

    assert "importing" not in result.stderr
    assert "━" not in result.stderr


def test_a_database_without_the_schema_aborts_with_exit_1(tmp_path: Path) -> None:
    runner = CliRunner(env={"APP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"})

    result = runner.invoke(cli, ["import", str(_file(tmp_path, csv_lines(GOOD)))])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: database: no such table: import_chunk")
    assert "Traceback" not in result.output


def test_an_export_starts_without_the_web_service_s_modules() -> None:
    """The root command imports a package's commands only when one runs: an export (a few
    seconds for a million rows) spent two of them importing FastAPI and Redis."""
    probe = (
        "import sys\n"
        "from app.cli import main\n"
        "sys.argv = ['purchase-capture', 'export', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'fastapi', 'redis', 'app.keys.service'} & set(sys.modules)))\n"
    )

    shown = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout

    assert "Export purchases" in shown
    assert shown.splitlines()[-1] == "[]"
