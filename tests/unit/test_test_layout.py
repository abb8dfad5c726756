"""The tests' layout: every directory of tests has its marker (tests/conftest.py), so `-m unit`, `-m integration`
and `-m e2e` between them select every test, and a new directory cannot go unmarked."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.conftest import SUITE_MARKERS, TESTS_DIR, suite_of

ROOT = TESTS_DIR.parent
#: pytest's default `python_files`.
TEST_FILE_PATTERNS = ("test_*.py", "*_test.py")


def all_test_files() -> list[Path]:
    return sorted({path for pattern in TEST_FILE_PATTERNS for path in TESTS_DIR.rglob(pattern)})


def test_every_directory_of_tests_has_a_marker():
    found = {suite_of(path) for path in all_test_files()}
    assert None not in found, "test files directly in tests/: put them in a directory of SUITE_MARKERS"
    unmarked = sorted(found - SUITE_MARKERS.keys())
    assert not unmarked, f"add {unmarked} to SUITE_MARKERS in tests/conftest.py"


def test_every_marked_directory_holds_tests():
    found = {suite_of(path) for path in all_test_files()}
    stale = sorted(SUITE_MARKERS.keys() - found)
    assert not stale, f"SUITE_MARKERS in tests/conftest.py names directories with no tests: {stale}"


def test_the_markers_are_registered():
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    registered = {line.split(":")[0].strip() for line in pytest_options["markers"]}
    assert set(SUITE_MARKERS.values()) <= registered


def test_no_test_file_sets_its_directorys_marker_itself():
    by_hand = re.compile(r"pytest\.mark\.(" + "|".join(sorted(set(SUITE_MARKERS.values()))) + r")\b")
    offenders = [str(path.relative_to(ROOT)) for path in all_test_files() if by_hand.search(path.read_text())]
    assert not offenders, f"the directory sets the marker (tests/conftest.py): {offenders}"


def test_this_test_got_its_directorys_marker(request):
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None and request.node.get_closest_marker("e2e") is None
