"""A pytest plugin (loaded by tests/conftest.py): in CI every test must run.

A skip in CI means a missing install step (chromium, vLLM, DeepSpeed, Ray, llm-blender, ../shared) hiding a
feature nobody tested, so under CI=true it fails instead, with the skip's reason. CI_MAY_SKIP lists the only
tests that may skip there, each for a reason CI cannot change. A developer's partial install still skips.
"""

from __future__ import annotations

import os

import pytest

CI_MAY_SKIP = {
    "tests/test_publish.py::test_publish_to_the_real_hub_opt_in": "opt-in: needs the real Hub and a write token",
    "tests/test_benchmarks_gpu_suite.py::test_gpu_suite_needs_a_gpu_without_smoke":
        "only meaningful without a GPU (CI has none, so it runs there)",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test outside CI_MAY_SKIP fails, with its skip reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci() and item.nodeid.split("[")[0] not in CI_MAY_SKIP and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run (see CI_MAY_SKIP in tests/conftest.py): " \
                          f"{_skip_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (`pytest.importorskip`)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci():
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped in CI, where every test must run: {_skip_reason(report)}"
