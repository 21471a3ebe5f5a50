"""What every service's API does the same way, from the app factory: trailing slashes, 405's Allow,
the body's Content-Type, Location, the bearer challenge, and the OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, Response, UploadFile
from pydantic import BaseModel

from chat_common.app import create_service_app
from chat_common.auth import (
    CurrentPrincipal,
    CurrentUser,
    Principal,
    StaticKeySource,
    TokenVerifier,
    require_scopes,
)
from chat_common.locations import set_location
from chat_common.settings import CommonSettings
from chat_common.testing import TokenMint

MINT = TokenMint(kid="conventions")
CreditWriter = Annotated[Principal, Depends(require_scopes("credits:write"))]


class Item(BaseModel):
    name: str


def make_app(**settings: Any) -> FastAPI:
    app = create_service_app(
        CommonSettings(service_name="demo", json_logs=False, **settings), title="demo", description="demo"
    )
    app.state.token_verifier = TokenVerifier(
        StaticKeySource(lambda: {"keys": [MINT.jwk]}), issuer=MINT.issuer, audience=MINT.audience
    )

    @app.post("/items", status_code=201)
    async def create_item(item: Item, request: Request, response: Response) -> Item:
        set_location(request, response, "read_item", item_id=item.name)
        return item

    @app.get("/items/{item_id}")
    async def read_item(item_id: str, _: CurrentPrincipal) -> Item:
        return Item(name=item_id)

    @app.put("/items/{item_id}")
    async def replace_item(item_id: str, item: Item) -> Item:
        return item

    @app.delete("/items/{item_id}", status_code=204)
    async def delete_item(item_id: str) -> None:
        return None

    @app.post("/login")
    async def login(username: Annotated[str, Form()], password: Annotated[str, Form()]) -> dict[str, str]:
        return {"username": username}

    @app.post("/upload")
    async def upload(file: Annotated[UploadFile, File()]) -> dict[str, int]:
        return {"size": len(await file.read())}

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"id": user.user_id}

    @app.get("/internal")
    async def internal(_: CreditWriter) -> dict[str, bool]:
        return {"ok": True}

    # as the services build theirs: routers included under /api/v1, one path split over two of them
    api, readers, writers = APIRouter(prefix="/api/v1"), APIRouter(), APIRouter()

    @readers.get("/notes/{note_id}")
    async def read_note(note_id: str) -> str:
        return note_id

    @writers.patch("/notes/{note_id}")
    async def patch_note(note_id: str) -> str:
        return note_id

    api.include_router(readers)
    api.include_router(writers)
    app.include_router(api)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- trailing slashes and 405 -----------------------------------------------------------------------


async def test_a_trailing_slash_answers_the_route_without_a_redirect(client: httpx.AsyncClient) -> None:
    created = await client.post("/items/", json={"name": "lamp"})
    assert created.status_code == 201 and created.json() == {"name": "lamp"}
    read = await client.get("/items/lamp/", headers=bearer(MINT.user()))
    assert read.status_code == 200 and read.json() == {"name": "lamp"}
    assert (await client.get("/health/")).json()["status"] == "ok"


async def test_an_unknown_path_with_a_slash_is_a_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/nothing-here/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_405_allow_lists_every_method_the_path_answers(client: httpx.AsyncClient) -> None:
    response = await client.post("/items/lamp")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, PUT, DELETE"
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed" and "GET, PUT, DELETE" in error["message"]


async def test_405_allow_lists_the_methods_of_every_included_router(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/notes/7")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, PATCH"
    assert (await client.patch("/api/v1/notes/7/")).json() == "7"


# --- the body's Content-Type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "application/x-www-form-urlencoded"}, {"Content-Type": "text/plain"}],
    ids=["no content type", "form", "text"],
)
async def test_json_sent_as_something_else_is_415_naming_application_json(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/items", content=b'{"name": "lamp"}', headers=headers)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    assert error["details"]["expected"] == "application/json"


async def test_json_sent_to_a_form_endpoint_is_415_naming_the_form_type(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", json={"username": "ada", "password": "secret-1"})
    assert response.status_code == 415
    error = response.json()["error"]
    assert "application/x-www-form-urlencoded" in error["message"]
    assert error["details"] == {
        "expected": "application/x-www-form-urlencoded",
        "received": "application/json",
    }
    assert (await client.post("/login", data={"username": "ada", "password": "x"})).status_code == 200


async def test_json_sent_to_an_upload_endpoint_is_415_naming_multipart(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", json={"file": "not a file"})
    assert response.status_code == 415
    assert response.json()["error"]["details"]["expected"] == "multipart/form-data"
    without_file = await client.post("/upload", data={"other": "field"})
    assert without_file.status_code == 422
    assert without_file.json()["error"]["details"][0]["loc"] == ["body", "file"]
    uploaded = await client.post("/upload", files={"file": ("card.json", b"{}", "application/json")})
    assert uploaded.json() == {"size": 2}


async def test_a_wrong_field_in_a_json_body_stays_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": 7})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "name"]


# --- Location --------------------------------------------------------------------------------------


async def test_a_created_resource_is_located_where_it_can_be_read(client: httpx.AsyncClient) -> None:
    created = await client.post("/items", json={"name": "desk lamp"})
    assert created.headers["Location"] == "/items/desk%20lamp"
    read = await client.get(created.headers["Location"], headers=bearer(MINT.user()))
    assert read.json() == {"name": "desk lamp"}


# --- the bearer challenge (RFC 6750 3) -------------------------------------------------------------


async def test_no_token_gets_the_bare_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("token", "description"),
    [
        ("not-a-jwt", "Malformed token"),
        (
            MINT.token(sub="00000000-0000-0000-0000-000000000001", iat=int(time.time()) - 100, exp=1),
            "Token has expired",
        ),
        (TokenMint(kid="conventions").user(), "Invalid token"),  # same kid, another key: a forged token
    ],
    ids=["malformed", "expired", "forged"],
)
async def test_a_refused_token_gets_error_invalid_token(
    client: httpx.AsyncClient, token: str, description: str
) -> None:
    response = await client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description}"'
    )


async def test_a_token_without_the_scope_gets_error_insufficient_scope(client: httpx.AsyncClient) -> None:
    response = await client.get("/internal", headers=bearer(MINT.service("llm-service", ["llm:generate"])))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="credits:write"'


# --- the OpenAPI document --------------------------------------------------------------------------


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_response_is_the_error_envelope() -> None:
    document = make_app().openapi()
    envelope = document["components"]["schemas"]["ErrorResponse"]
    assert envelope["required"] == ["error"]
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "details", "request_id"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for name, operation in operations(document):
        errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
        assert errors, name
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (name, status)


def test_secured_operations_document_401_and_input_documents_415_and_422() -> None:
    paths = make_app().openapi()["paths"]
    assert "401" in paths["/me"]["get"]["responses"]
    assert "401" not in paths["/login"]["post"]["responses"]
    assert "415" in paths["/login"]["post"]["responses"] and "415" in paths["/items"]["post"]["responses"]
    assert "415" not in paths["/me"]["get"]["responses"]
    assert (
        "422" in paths["/items/{item_id}"]["get"]["responses"]
        and "422" in paths["/login"]["post"]["responses"]
    )
    assert "422" not in paths["/me"]["get"]["responses"]


def test_an_operation_for_services_names_its_scope_and_documents_403() -> None:
    """The access matrix tells operations for services by the scopes their security requirement names
    (and expects their 403 for a user's token documented)."""
    paths = make_app().openapi()["paths"]
    assert paths["/internal"]["get"]["security"] == [{"OAuth2PasswordBearer": ["credits:write"]}]
    assert "403" in paths["/internal"]["get"]["responses"]
    assert paths["/me"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]
    assert "403" not in paths["/me"]["get"]["responses"]


def test_the_scopes_of_operations_for_services_are_defined_by_a_client_credentials_flow() -> None:
    flows = make_app().openapi()["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "http://localhost:8024/api/v1/auth/service-token"
    assert list(flows["clientCredentials"]["scopes"]) == ["credits:write"]
    assert flows["password"]["scopes"] == {}


def test_swagger_gets_its_token_at_user_service_public_url() -> None:
    schemes = make_app(user_service_public_url="https://users.example/").openapi()["components"][
        "securitySchemes"
    ]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == (
        "https://users.example/api/v1/auth/token"
    )
    default = make_app().openapi()["components"]["securitySchemes"]
    assert default["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == (
        "http://localhost:8024/api/v1/auth/token"
    )
