"""How a service is served: uvicorn with the fleet's settings, the same in run.py and in tests."""

from __future__ import annotations

from typing import Any

import uvicorn

from chat_common.settings import CommonSettings


def uvicorn_options(settings: CommonSettings) -> dict[str, Any]:
    """uvicorn's options from a service's settings. Proxy headers are read only from the proxies
    FORWARDED_ALLOW_IPS names: uvicorn's own default trusts 127.0.0.1, where every local client
    could claim any address and so escape the per-IP limits."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # the service configures logging (chat_common.logging)
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or [],
    }


def run_service(app: str, settings: CommonSettings) -> None:
    """Serve `app` (an import string such as "app.main:app") until stopped: every run.py calls this."""
    uvicorn.run(app, **uvicorn_options(settings))
