"""The CI check that every group of tests ran (tests/junit_counts.py), on small JUnit reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.junit_counts import Group, main, problems, read_cases

GROUPS = (
    Group("SQLite", 2, pattern=r"[\[-]sqlite[\]-]"),
    Group("PostgreSQL", 2, marker="postgres"),
    Group("browser", 1, pattern=r"^tests\.e2e\."),
)
BELOW = "(deselected by -m, -k or PYTEST_ADDOPTS, or a parametrisation dropped?)"


def report(tmp_path: Path, *cases: str, skipped: tuple[str, ...] = ()) -> Path:
    """A JUnit XML report as pytest writes it with tests/conftest.py's markers property, one
    test case per "classname::name markers..."."""
    lines = []
    for case in (*cases, *skipped):
        test_id, _, markers = case.partition(" ")
        classname, name = test_id.split("::")
        body = f'<properties><property name="markers" value="{markers}"/></properties>'
        if case in skipped:
            body += '<skipped message="no server">x</skipped>'
        lines.append(f'<testcase classname="{classname}" name="{name}">{body}</testcase>')
    path = tmp_path / "junit.xml"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        + "".join(lines)
        + "</testsuite></testsuites>"
    )
    return path


COMPLETE = (
    "tests.test_capture::test_capture_stores[sqlite] asyncio parametrize",
    "tests.test_capture::test_capture_stores[postgres] asyncio parametrize postgres",
    "tests.test_batch::test_batch_is_atomic[sqlite-1000] parametrize",
    "tests.test_autocommit::test_one_round_trip asyncio postgres",
    "tests.e2e.test_page::test_page_submits e2e",
)


def test_a_run_with_every_group_at_its_floor_is_complete(tmp_path: Path) -> None:
    assert problems(read_cases(report(tmp_path, *COMPLETE)), GROUPS) == []


def test_a_group_below_its_floor_is_reported(tmp_path: Path) -> None:
    """As after `-k 'not sqlite'` or a dropped parameter: one SQLite test short."""
    cases = read_cases(report(tmp_path, *COMPLETE[1:]))

    assert problems(cases, GROUPS) == [f"SQLite: 1 tests ran, at least 2 expected {BELOW}"]


def test_a_group_is_counted_by_its_marker(tmp_path: Path) -> None:
    """As after `-m 'not postgres'`: a PostgreSQL test is one with the marker, parametrised
    or not."""
    cases = read_cases(report(tmp_path, *COMPLETE[:3], COMPLETE[4]))

    assert problems(cases, GROUPS) == [f"PostgreSQL: 1 tests ran, at least 2 expected {BELOW}"]


def test_a_group_with_no_floor_must_still_run_one_test(tmp_path: Path) -> None:
    cases = read_cases(report(tmp_path, *COMPLETE[:4]))

    assert problems(cases, (Group("browser", 0, pattern=r"^tests\.e2e\."),)) == [
        f"browser: 0 tests ran, at least 0 expected {BELOW}"
    ]


def test_a_skipped_test_is_reported_and_not_counted(tmp_path: Path) -> None:
    skipped = "tests.test_db::test_reads_agree[sqlite] asyncio parametrize"
    cases = read_cases(report(tmp_path, *COMPLETE[1:], skipped=(skipped,)))

    assert problems(cases, GROUPS) == [
        "skipped: tests.test_db::test_reads_agree[sqlite]",
        f"SQLite: 1 tests ran, at least 2 expected {BELOW}",
    ]


def test_a_parameter_id_matches_only_as_a_whole_id(tmp_path: Path) -> None:
    """`[sqlite_url]` or `[nosqlite]` is not a SQLite test."""
    cases = read_cases(report(tmp_path, "tests.t::test_a[sqlite_url]", "tests.t::test_b[nosqlite]"))

    assert problems(cases, GROUPS[:1]) == [f"SQLite: 0 tests ran, at least 2 expected {BELOW}"]


def test_the_command_fails_on_a_report_with_no_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["junit_counts", str(report(tmp_path))]) == 1
    assert "every test: 0 tests ran" in capsys.readouterr().out
