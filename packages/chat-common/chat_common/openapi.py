"""What every service's OpenAPI document says beyond its routes: the error envelope on every error
response, 401 on secured operations, 403 on those for services (their security requirement names a
scope), 415 and 422 where there is input, and where to get a token."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from chat_common.errors import ErrorResponse

ERROR_SCHEMA = ErrorResponse.__name__
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
# FastAPI documents its own 422 body; ours is the envelope, so those schemas would only mislead.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# On every route (the app factory passes them to FastAPI, which merges each route's own over them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "Client error in the shared error shape"},
    "5XX": {
        "model": ErrorResponse,
        "description": "Server error, or a dependency failing (502/503/504 name the database or service)",
    },
}
_UNAUTHORIZED = {
    "description": "Missing, malformed or expired bearer token (`WWW-Authenticate` says which)",
}
_SCOPE_REQUIRED = {
    "description": "Not a service token, or a service token without the scope the security requirement names",
}
_SERVICE_SCOPE = "Granted to an internal service's client (SERVICE_CLIENTS at user-service)"
_UNSUPPORTED_MEDIA_TYPE = {"description": "The body was sent with a Content-Type this endpoint does not take"}
_VALIDATION = {"description": "The request does not validate (`details` lists each problem and where)"}


def event_stream(
    description: str,
    *,
    events: list[str] | None = None,
    data: dict[str, Any] | None = None,
    done: str | None = None,
    example: str | None = None,
) -> dict[str, Any]:
    """The `text/event-stream` media type object of a streamed response. Its `schema` is one event, as
    Open API 3.1 reads the schema of an event stream (3.2 names it `itemSchema`) and as a client parses
    it: `event` (one of `events`), `id`, `retry` and the `data` text, whose JSON is `data` when given
    (or the text `done`, which is not JSON, as OpenAI's `[DONE]`)."""
    data_text: dict[str, Any] = {"type": "string", "description": "The event's data"}
    if data is not None:
        json_text = {"contentMediaType": "application/json", "contentSchema": data}
        data_text |= {"anyOf": [{"const": done}, json_text]} if done is not None else json_text
    name: dict[str, Any] = {"type": "string", "description": "The event's name (`message` when it has none)"}
    if events:
        name["enum"] = [*events, *([] if "message" in events else ["message"])]
    media_type: dict[str, Any] = {
        "schema": {
            "type": "object",
            "description": description,
            "properties": {
                "event": name,
                "id": {"type": "string", "description": "The event's id, for `Last-Event-ID`"},
                "retry": {"type": "integer", "description": "Reconnection time in milliseconds"},
                "data": data_text,
            },
            "required": ["data"],
        }
    }
    if example is not None:
        media_type["example"] = example
    return media_type


def install_openapi(app: FastAPI, *, token_url: str) -> None:
    """Complete the app's OpenAPI document once, when it is first built."""
    build = app.openapi
    completed: list[dict[str, Any]] = []  # the document last completed (FastAPI rebuilds it when
    # routes are added after it was first served)

    def openapi() -> dict[str, Any]:
        document = build()
        if not completed or completed[0] is not document:
            complete(document, token_url=token_url)
            completed[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], *, token_url: str) -> None:
    """Point every error response of every operation at the error envelope and set the token URL; the
    scopes operations for services require are defined by the client-credentials flow beside it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    scopes: set[str] = set()
    for path_item in document.get("paths", {}).values():
        for method in _HTTP_METHODS:
            operation = path_item.get(method)
            if operation is not None:
                _complete_operation(operation)
                scopes.update(_required_scopes(operation))
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    for scheme in document["components"].get("securitySchemes", {}).values():
        password_flow = scheme.get("flows", {}).get("password")
        if password_flow is not None:
            password_flow["tokenUrl"] = token_url
            if scopes:
                scheme["flows"]["clientCredentials"] = {
                    "tokenUrl": token_url.removesuffix("/token") + "/service-token",
                    "scopes": {scope: _SERVICE_SCOPE for scope in sorted(scopes)},
                }


def _required_scopes(operation: dict[str, Any]) -> set[str]:
    return {
        scope
        for requirement in operation.get("security", ())
        for names in requirement.values()
        for scope in names
    }


def _complete_operation(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if operation.get("security"):
        responses.setdefault("401", dict(_UNAUTHORIZED))
    if _required_scopes(operation):
        responses.setdefault("403", dict(_SCOPE_REQUIRED))
    if "requestBody" in operation:
        responses.setdefault("415", dict(_UNSUPPORTED_MEDIA_TYPE))
    if _documents_fastapi_validation_error(responses.get("422")):
        responses["422"] = dict(_VALIDATION)
    if "requestBody" in operation or operation.get("parameters"):
        responses.setdefault("422", dict(_VALIDATION))
    for status, response in responses.items():
        if status[:1] in ("4", "5") and "content" not in response:
            response["content"] = {"application/json": {"schema": dict(ERROR_REF)}}


def _documents_fastapi_validation_error(response: dict[str, Any] | None) -> bool:
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def operations_without_error_envelope(document: dict[str, Any]) -> list[str]:
    """The operations (`METHOD /path`) none of whose 4xx/5xx responses is the error envelope: the
    services' tests check that there are none."""
    missing = []
    for path, path_item in document.get("paths", {}).items():
        for method in _HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            schemas = [
                response.get("content", {}).get("application/json", {}).get("schema")
                for status, response in operation.get("responses", {}).items()
                if status[:1] in ("4", "5")
            ]
            if ERROR_REF not in schemas:
                missing.append(f"{method.upper()} {path}")
    return missing


def convention_problems(document: dict[str, Any], token_url: str) -> list[str]:
    """What keeps a service's OpenAPI document from the fleet's conventions: Swagger's Authorize sent
    elsewhere than `token_url`, and operations without the error envelope. The services' tests check
    that there are none."""
    flow = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    problems = [] if flow["tokenUrl"] == token_url else [f"tokenUrl {flow['tokenUrl']!r}, not {token_url!r}"]
    return problems + operations_without_error_envelope(document)
