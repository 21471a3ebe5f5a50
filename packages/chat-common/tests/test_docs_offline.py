"""/docs and /redoc of every app the factory builds load everything from the service itself."""

from __future__ import annotations

from fastapi import FastAPI

from chat_common.app import create_service_app
from chat_common.settings import CommonSettings
from chat_common.testing.docs import crawl_docs, offline_problems


async def test_docs_and_redoc_load_every_asset_from_the_service_itself() -> None:
    app = create_service_app(CommonSettings(service_name="demo"), title="demo", description="demo")

    report = await crawl_docs(app)

    assert offline_problems(report) == []
    assert {url for url, outcome in report["fetched"].items() if outcome["status"] == 200} >= {
        "http://service.test/docs",
        "http://service.test/redoc",
        "http://service.test/openapi.json",
        "http://service.test/docs/oauth2-redirect",
    }


async def test_fastapis_default_docs_would_be_caught_loading_from_a_cdn() -> None:
    """What the factory replaced: FastAPI's own pages point at a CDN, and the check says so."""
    report = await crawl_docs(FastAPI())

    problems = offline_problems(report)

    assert any("swagger-ui-bundle.js from another host" in problem for problem in problems), problems
    assert any("redoc.standalone.js from another host" in problem for problem in problems), problems
