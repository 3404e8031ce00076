"""The progress bars of the console script (rich, on stderr); the services only call back."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from app.imports.service import Progress as ImportUpdate


class RowSpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")


class BytesReadColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        read, total = task.fields.get("bytes", 0), task.fields.get("bytes_total", 0)
        return Text(f"{decimal(read)}/{decimal(total)}", style="progress.download")


class _Bar:
    """A rich Progress when given a console, else nothing at all."""

    def __init__(self, console: Console | None, *columns: ProgressColumn | str) -> None:
        self.progress = Progress(*columns, console=console) if console else None
        self.task: TaskID | None = None

    def __enter__(self) -> Self:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.progress:
            self.progress.stop()


class ImportProgress(_Bar):
    def __init__(self, console: Console | None) -> None:
        super().__init__(
            console,
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            RowSpeedColumn(),
            BytesReadColumn(),
            TimeRemainingColumn(),
        )

    def update(self, update: ImportUpdate) -> None:
        if self.progress is None:
            return
        if self.task is None or update.rows == 0:  # strict mode reads the file twice
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("import", total=update.rows_total)
        self.progress.update(
            self.task,
            completed=update.rows,
            bytes=update.bytes,
            bytes_total=update.bytes_total,
        )


class ExportProgress(_Bar):
    def __init__(self, console: Console | None, kind: str) -> None:
        super().__init__(
            console, TextColumn(f"exporting {kind}"), MofNCompleteColumn(), RowSpeedColumn()
        )

    def update(self, rows: int) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task("export", total=None)
        self.progress.update(self.task, completed=rows)
