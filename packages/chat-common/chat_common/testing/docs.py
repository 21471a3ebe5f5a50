"""Fetch a service's `/docs` and `/redoc` as a browser would: the pages and everything they load."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

DOC_PAGES = ("/docs", "/redoc")
# Swagger UI's page names the OpenAPI document and the OAuth2 redirect page inside its script.
SCRIPT_URLS = re.compile(
    r"""(?:\burl|\boauth2RedirectUrl)\s*:\s*(?:window\.location\.origin\s*\+\s*)?['"]([^'"]+)['"]"""
)


class _Attributes(HTMLParser):
    """Collects the URLs a page's tags load: script src, link href, img src, ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href", "spec-url"} and value]


def page_references(html: str) -> list[str]:
    """Every URL a docs page makes the browser fetch, as written in the page."""
    parser = _Attributes()
    parser.feed(html)
    return parser.urls + SCRIPT_URLS.findall(html)


async def crawl_docs(app: Any, base_url: str = "http://service.test") -> dict[str, Any]:
    """Fetch each docs page from `app`, then each URL the page references (resolved against it).

    Returns {"pages": {page: html}, "fetched": {url: {"status", "content_type", "host", "page"}}}.
    A URL on another host is not fetched (status None): nothing answers there offline."""
    own_host = urlsplit(base_url).netloc
    pages: dict[str, str] = {}
    fetched: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:

        async def fetch(url: str, page: str) -> httpx.Response | None:
            host = urlsplit(url).netloc
            response = await client.get(url) if host == own_host else None
            fetched[url] = {
                "status": response.status_code if response is not None else None,
                "content_type": response.headers.get("content-type", "") if response is not None else "",
                "host": host,
                "page": page,
            }
            return response

        for page in DOC_PAGES:
            response = await fetch(f"{base_url}{page}", page)
            pages[page] = response.text if response is not None else ""
            for reference in page_references(pages[page]):
                url = urljoin(f"{base_url}{page}", reference)
                if url not in fetched:
                    await fetch(url, page)
    return {"pages": pages, "fetched": fetched}


CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
REQUIRED = (
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "redoc.standalone.js",
    "/openapi.json",
    "/docs/oauth2-redirect",
)


def offline_problems(report: dict[str, Any], host: str = "service.test") -> list[str]:
    """Why a crawl's docs would not work offline: empty when every page and asset (Swagger UI's script
    and style, ReDoc's script, the OpenAPI document, the OAuth2 redirect page) came from `host` with
    200 and the right content type, and no page mentions another host."""
    problems = []
    for url, outcome in report["fetched"].items():
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        expected = CONTENT_TYPES.get(name[name.rfind(".") :] if "." in name else "", "text/html")
        if outcome["host"] != host:
            problems.append(f"{outcome['page']} loads {url} from another host")
        elif outcome["status"] != 200 or expected not in outcome["content_type"]:
            answer = f"{outcome['status']} {outcome['content_type']!r}"
            problems.append(f"{url}: {answer}, expected 200 {expected}")
    loaded = list(report["fetched"])
    problems += [f"nothing loads {name}" for name in REQUIRED if not any(u.endswith(name) for u in loaded)]
    for page, html in report["pages"].items():
        if "http://" in html or "https://" in html:
            problems.append(f"{page} names an absolute URL")
    if '"validatorUrl": null' not in report["pages"].get("/docs", ""):
        problems.append("Swagger UI's validator badge would load from validator.swagger.io")
    return problems
