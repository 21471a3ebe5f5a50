"""The one table `make run` prints once every service is ready: where each service is, what it uses."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from devstack.services import SERVICES

BACKEND_NAMES = {"postgres": "PostgreSQL", "redis": "Redis", "mongodb": "MongoDB"}
BACKEND_VARIABLES = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "mongodb": "MONGODB_URL"}
HEADER = ("service", "port", "docs", "backends in use", "LLM")


def address(url: str) -> str:
    """`:5431` on loopback, else `host:port`; never the URL's credentials."""
    parts = urlsplit(url)
    host = "" if parts.hostname in ("127.0.0.1", "localhost", "::1") else parts.hostname
    return f"{host}:{parts.port}" if parts.port else str(parts.hostname)


def describe_backend(name: str, url: str, *, embedded: bool) -> str:
    """`PostgreSQL :5431 (embedded)`, `MongoDB :27017 (nx-27017, embedded)`, `Redis db:6379 (REDIS_URL)`."""
    if not embedded:
        return f"{BACKEND_NAMES[name]} {address(url)} ({BACKEND_VARIABLES[name]})"
    kind = "nx-27017, embedded" if name == "mongodb" else "embedded"
    return f"{BACKEND_NAMES[name]} {address(url)} ({kind})"


def describe_lmstudio(url: str, *, started_standin: bool) -> str:
    """What answers as LM Studio: the stand-in this run started, one already running, or LM Studio."""
    where = address(url)
    if started_standin:
        return f"stand-in {where} (no LM Studio answered)"
    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=3.0)
        if response.status_code in (401, 403):  # its server asks for LMSTUDIO_API_KEY
            return f"LM Studio {url} (its models need LMSTUDIO_API_KEY)"
        ids = [str(model.get("id")) for model in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError):
        return f"LM Studio? {url} does not answer GET /v1/models"
    if ids and all(model.startswith("lmstudio-standin/") for model in ids):
        return f"stand-in {where} (already running)"
    return f"LM Studio {url} ({len(ids)} models)"


def render(rows: list[tuple[str, ...]]) -> str:
    """Rows under HEADER, columns padded to their widest cell."""
    table = [HEADER, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def fleet_table(urls: dict[str, str], backends: dict[str, str]) -> str:
    """One row per service: port, /docs URL, the backends it uses, and how it reaches an LLM."""
    rows: list[tuple[str, ...]] = []
    for spec in SERVICES:
        url = urls[spec.name]
        stores = [backends[need] for need in spec.needs if need != "lmstudio"]
        if "lmstudio" in spec.needs:
            llm = backends["lmstudio"]
        elif "LLM_SERVICE_URL" in spec.env(urls):
            llm = "through llm-service"
        else:
            llm = "-"
        rows.append((spec.name, str(urlsplit(url).port), f"{url}/docs", ", ".join(stores) or "none", llm))
    return render(rows)
