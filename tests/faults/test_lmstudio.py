"""LM Studio faults during live chat traffic: clients see an error naming the dependency, and
afterwards the books hold."""

from __future__ import annotations

from typing import Any

from tests.faults.conftest import Fleet
from tests.faults.traffic import DEPENDENCY_STATUSES, Report, fault, run_scenario

LONG = "Tell me everything about the winds and the clouds and the stars above the clouds tonight"


def assert_failed_naming(report: Report, service: str, codes: set[str]) -> None:
    """Every send during the fault completed or failed naming `service` with one of `codes` (a plain
    send: 502/503/504; a streamed one: an SSE `error` event); at least one failed so; the books hold."""
    failed = [o for o in report.during if not o.ok]
    assert failed, f"nothing failed during {report.name}: {report.seen()}"
    for outcome in failed:
        expected_status = (200,) if outcome.kind == "stream" else DEPENDENCY_STATUSES
        assert outcome.status in expected_status, f"{report.name}: {outcome.describe()}"
        assert (outcome.service, outcome.code) in {(service, c) for c in codes}, (
            f"{report.name}: {outcome.describe()}"
        )
    assert report.violations == [], [str(v) for v in report.violations]


def standin_set(fleet: Fleet, **settings: Any) -> Any:
    return fault(lambda: fleet.standin.configure(**settings), fleet.standin.reset)


async def test_lmstudio_down(fleet: Fleet) -> None:
    report = await run_scenario(fleet, "LM Studio down", fault(fleet.lmstudio.kill, fleet.lmstudio.start))
    assert_failed_naming(report, "lmstudio", {"llm_unavailable"})
