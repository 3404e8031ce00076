"""The multiprocess metrics directory `python -m app` prepares before uvicorn starts workers
(the behaviour across real workers is tested in tests/hardening/test_metrics_workers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.__main__ import worker_count
from app.core.multiprocess import ENV, prepared_directory


@pytest.fixture(autouse=True)
def no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)


def test_one_process_needs_no_directory() -> None:
    with prepared_directory(1) as directory:
        assert directory is None
        assert ENV not in os.environ


def test_several_workers_get_a_fresh_directory_removed_at_the_end() -> None:
    with prepared_directory(2) as directory:
        assert directory is not None
        assert os.environ[ENV] == str(directory)
        assert list(directory.iterdir()) == []

    assert not directory.exists()
    assert ENV not in os.environ


def test_a_given_directory_is_emptied_of_an_earlier_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(ENV, str(tmp_path))

    with prepared_directory(1) as directory:
        assert directory == tmp_path
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    assert tmp_path.exists()  # the operator's directory stays


def test_a_given_directory_that_is_missing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "metrics"))

    with prepared_directory(2) as directory:
        assert directory is not None
        assert directory.is_dir()


@pytest.mark.parametrize(
    ("options", "environment", "expected"),
    [
        ([], {}, 1),
        (["--workers", "3"], {}, 3),
        (["--workers=4"], {"WEB_CONCURRENCY": "2"}, 4),
        ([], {"WEB_CONCURRENCY": "2"}, 2),
        (["--reload", "--workers", "2"], {}, 1),
    ],
)
def test_the_worker_count_is_read_as_uvicorn_reads_it(
    options: list[str],
    environment: dict[str, str],
    expected: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert worker_count(options) == expected
