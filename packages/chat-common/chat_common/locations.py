"""The `Location` of a resource a request created (RFC 9110 10.2.2): where to read it back."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request, Response


def set_location(request: Request, response: Response, route_name: str, **path_params: Any) -> None:
    """Point `Location` at the route named `route_name` (its function's name) with `path_params`: a
    path on this service, resolved by the client against the URL it called."""
    path = request.app.url_path_for(route_name, **{name: str(value) for name, value in path_params.items()})
    response.headers["Location"] = quote(request.scope.get("root_path", "") + path)
