"""tests/ci_skips.py: under CI=true a skip fails (a test's own skip, a skipif mark, a module's importorskip), except
the tests CI_MAY_SKIP names; without CI the same tests skip with their reason."""

from __future__ import annotations

import pytest

from ci_skips import CI_MAY_SKIP

PROBE = """
import pytest

def test_skips_itself():
    pytest.skip("probe: not installed")

@pytest.mark.skipif(True, reason="probe: marked")
def test_marked():
    pass

def test_runs():
    pass
"""


@pytest.mark.parametrize("ci, outcome", [("true", {"passed": 1, "failed": 1, "errors": 1}), ("", {"passed": 1, "skipped": 2})])
def test_skips_fail_only_in_ci(pytester, monkeypatch, ci, outcome):
    # In CI a skip in the test fails it; a skipif mark skips at setup, so it fails there (pytest counts an error).
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest("-p", "ci_skips", "-p", "no:cacheprovider")
    result.assert_outcomes(**outcome)
    if ci:
        result.stdout.fnmatch_lines(["*skipped in CI, where every test must run*probe: not installed*"])


def test_a_module_skipped_at_import_fails_in_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_probe='''
import pytest

pytest.importorskip("no_such_module_here")


def test_x():
    pass
''')
    result = pytester.runpytest("-p", "ci_skips", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skipped in CI, where every test must run*"])


def test_the_allowed_skips_exist():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for nodeid in CI_MAY_SKIP:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (root / path).read_text(), nodeid
