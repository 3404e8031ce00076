"""CI's proof that every group of tests ran: `python -m tests.junit_counts var/junit.xml`.

pytest exits 0 when tests are deselected (`-m`, `-k`, PYTEST_ADDOPTS) or a parametrisation is
dropped, so a green run does not show that the SQLite, PostgreSQL, PgBouncer, browser and
hardening tests ran. This reads the JUnit XML of `make test` and fails when a test was skipped,
or when a group ran fewer tests than its floor. The floors are the counts of a real run: a change
that removes tests on purpose lowers its floor here, in the same commit. A new group is one more
line.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Group:
    """The tests whose id `pattern` finds and that carry `marker` (either may be left out)."""

    name: str
    minimum: int
    pattern: str = ""  # searched in the test's id, "tests.test_capture::test_x[postgres]"
    marker: str = ""  # a pytest marker, recorded by tests/conftest.py


def param(value: str) -> str:
    """Matches one parameter id of a test, alone or among others: `[sqlite]`, `[sqlite-foo]`."""
    return rf"[\[-]{re.escape(value)}[\]-]"


# Floors: the counts of a full run (`make test`, 1399 tests, of this commit). The behaviour
# tests run once per database parameter; each database has its own group, so that a new one
# cannot hide a dropped one.
GROUPS = (
    Group("every test", 1399),
    Group("SQLite", 360, pattern=param("sqlite")),
    Group("PostgreSQL", 362, pattern=param("postgres")),
    Group("PostgreSQL, by marker", 817, marker="postgres"),
    Group("PgBouncer", 360, pattern=param("pgbouncer")),
    Group("browser (tests/e2e)", 40, pattern=r"^tests\.e2e\."),
    Group("hardening (tests/hardening)", 67, pattern=r"^tests\.hardening\."),
)


@dataclass(frozen=True)
class Case:
    id: str
    markers: frozenset[str]
    skipped: bool

    def belongs_to(self, group: Group) -> bool:
        return re.search(group.pattern, self.id) is not None and (
            not group.marker or group.marker in self.markers
        )


def read_cases(report: Path) -> list[Case]:
    """Every test case of a pytest JUnit XML report."""
    root = ET.parse(report).getroot()  # noqa: S314 - our own test run's report
    return [
        Case(
            id=f"{case.get('classname', '')}::{case.get('name', '')}",
            markers=frozenset(
                " ".join(
                    prop.get("value", "")
                    for prop in case.iter("property")
                    if prop.get("name") == "markers"
                ).split()
            ),
            skipped=case.find("skipped") is not None,
        )
        for case in root.iter("testcase")
    ]


def count(cases: list[Case], group: Group) -> int:
    """How many tests of the group ran (a skipped one did not)."""
    return sum(1 for case in cases if not case.skipped and case.belongs_to(group))


def problems(cases: list[Case], groups: tuple[Group, ...] = GROUPS) -> list[str]:
    """What keeps this run from counting as complete; empty when it does."""
    found = [f"skipped: {case.id}" for case in cases if case.skipped]
    for group in groups:
        ran = count(cases, group)
        if ran < max(group.minimum, 1):
            found.append(
                f"{group.name}: {ran} tests ran, at least {group.minimum} expected "
                "(deselected by -m, -k or PYTEST_ADDOPTS, or a parametrisation dropped?)"
            )
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.junit_counts JUNIT_XML", file=sys.stderr)
        return 2
    cases = read_cases(Path(argv[1]))
    for group in GROUPS:
        print(f"  {group.name:<30} {count(cases, group):>5} ran (at least {group.minimum})")
    found = problems(cases)
    if found:
        print("CI requires every group of tests to run in full:", *found, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
