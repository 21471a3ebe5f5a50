"""LM Studio faults during live chat traffic: clients see an error naming the dependency, and
afterwards the books hold."""

from __future__ import annotations

from typing import Any

from tests.faults.conftest import Fleet
from tests.faults.traffic import DEPENDENCY_STATUSES, Report, fault, run_scenario

LONG = "Tell me everything about the winds and the clouds and the stars above the clouds tonight"


def assert_failed_naming(report: Report, service: str, codes: set[str]) -> None:
    """Every send during the fault completed or failed naming `service` with one of `codes` (502/503/504,
    or a streamed reply's SSE `error` event); at least one failed so; the books hold."""
    failed = [o for o in report.during if not o.ok]
    assert failed, f"nothing failed during {report.name}: {report.seen()}"
    assert report.violations == [], [str(v) for v in report.violations]
    for outcome in failed:
        # a stream refused before it starts is a plain error; one that started ends with an `error` event
        expected_status = (200, *DEPENDENCY_STATUSES) if outcome.kind == "stream" else DEPENDENCY_STATUSES
        assert outcome.status in expected_status, f"{report.name}: {outcome.describe()}"
        assert (outcome.service, outcome.code) in {(service, c) for c in codes}, (
            f"{report.name}: {outcome.describe()}"
        )


def standin_set(fleet: Fleet, **settings: Any) -> Any:
    return fault(lambda: fleet.standin.configure(**settings), fleet.standin.reset)


async def test_lmstudio_down(fleet: Fleet) -> None:
    report = await run_scenario(fleet, "LM Studio down", fault(fleet.lmstudio.kill, fleet.lmstudio.start))
    assert_failed_naming(report, "lmstudio", {"llm_unavailable"})


async def test_lmstudio_slow_past_the_first_token_timeout(fleet: Fleet) -> None:
    report = await run_scenario(
        fleet, "LM Studio slow past the first-token timeout", standin_set(fleet, first_token_delay=4)
    )
    assert_failed_naming(report, "lmstudio", {"llm_timeout"})


async def test_lmstudio_silent_past_the_idle_timeout(fleet: Fleet) -> None:
    report = await run_scenario(
        fleet, "LM Studio silent past the idle timeout", standin_set(fleet, failure="stall", stall_after=2)
    )
    assert_failed_naming(report, "lmstudio", {"llm_timeout"})


async def test_lmstudio_slow_past_the_total_timeout(fleet: Fleet) -> None:
    report = await run_scenario(
        fleet,
        "LM Studio slow past the total timeout",
        standin_set(fleet, tokens_per_second=3),
        content=lambda turn: f"{turn}: {LONG}",
    )
    assert_failed_naming(report, "lmstudio", {"llm_timeout"})


async def test_lmstudio_dropping_mid_stream(fleet: Fleet) -> None:
    report = await run_scenario(
        fleet, "LM Studio dropping mid-stream", standin_set(fleet, failure="disconnect", disconnect_after=2)
    )
    assert_failed_naming(report, "lmstudio", {"llm_error"})


async def test_lmstudio_answering_garbage(fleet: Fleet) -> None:
    report = await run_scenario(
        fleet, "LM Studio answering garbage", standin_set(fleet, failure="garbage", garbage_after=2)
    )
    assert_failed_naming(report, "lmstudio", {"llm_error"})


async def test_llm_service_hung(fleet: Fleet) -> None:
    """llm-service frozen (SIGSTOP): message-service's own wait for its next chunk runs out."""
    service = fleet.services["llm-service"]
    report = await run_scenario(fleet, "llm-service hung", fault(service.freeze, service.thaw))
    assert_failed_naming(report, "llm-service", {"llm_timeout"})
