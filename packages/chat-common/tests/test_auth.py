"""JWT verification against a JWKS served over real HTTP: caching, rotation, outages, rejection rules."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from chat_common.app import create_service_app
from chat_common.auth import CurrentUser, JWKSKeySource, TokenVerifier, claims_problem
from chat_common.embedded import free_port
from chat_common.errors import ServiceUnavailableError, UnauthorizedError
from chat_common.settings import CommonSettings
from chat_common.testing import TokenMint, serve_app
from chat_common.tokens import b64url

ISSUER, AUDIENCE = "iss", "aud"


def uid(n: int) -> str:
    """A user id (user ids are UUIDs) that a test can name by number."""
    return str(uuid.UUID(int=n))


U1, U2 = uid(1), uid(2)


class JWKSServer:
    """user-service's JWKS endpoint on a real port; a test can make it fail or hang, and counts requests."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.mode = "up"  # "up", "error" (503) or "hang" (until the test ends)
        self.requests = 0
        self.release = threading.Event()
        self.app = FastAPI()

        @self.app.get("/jwks")
        async def jwks() -> Any:
            self.requests += 1
            if self.mode == "error":
                return JSONResponse({"detail": "down"}, status_code=503)
            if self.mode == "hang":
                await asyncio.to_thread(self.release.wait)
            return {"keys": self.keys}


@pytest.fixture(scope="module")
def mints() -> tuple[TokenMint, TokenMint]:
    return TokenMint(ISSUER, AUDIENCE, kid="k1"), TokenMint(ISSUER, AUDIENCE, kid="k2")


@pytest.fixture
def server(mints: tuple[TokenMint, TokenMint]) -> Iterator[tuple[JWKSServer, str]]:
    jwks = JWKSServer([mints[0].jwk])
    with serve_app(jwks.app) as url:
        try:
            yield jwks, f"{url}/jwks"
        finally:
            jwks.release.set()  # a hanging request ends, so the server can stop


def verifier_for(url: str, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(JWKSKeySource(url, **kwargs), issuer=ISSUER, audience=AUDIENCE)


def issued_claims(mint: TokenMint, **overrides: Any) -> dict[str, Any]:
    """The claims user-service issues (the mint uses its builder), with some replaced."""
    return {**mint.claims(sub=U1), **overrides}


async def test_keys_are_cached(server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]) -> None:
    jwks, url = server
    verifier = verifier_for(url)
    for _ in range(3):
        assert (await verifier.verify(mints[0].token(sub=U1))).subject == U1
    assert jwks.requests == 1


async def test_unknown_kid_triggers_a_refetch_so_keys_can_rotate(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    jwks, url = server
    verifier = verifier_for(url, min_refetch_seconds=0)
    await verifier.verify(mints[0].token(sub=U1))
    jwks.keys = [mints[0].jwk, mints[1].jwk]
    principal = await verifier.verify(mints[1].token(sub=U2))
    assert principal.subject == U2 and jwks.requests == 2


async def test_unknown_kid_refetches_are_throttled(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    jwks, url = server
    verifier = verifier_for(url, min_refetch_seconds=60)
    await verifier.verify(mints[0].token(sub=U1))
    for _ in range(5):
        with pytest.raises(UnauthorizedError) as caught:
            await verifier.verify(mints[1].token(sub=U1))
        assert caught.value.code == "invalid_token"
    assert jwks.requests == 1


async def test_service_token_scopes_are_read(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    principal = await verifier_for(server[1]).verify(mints[0].service("x", ["credits:write"]))
    assert principal.is_service and principal.scopes == {"credits:write"} and not principal.is_admin
    assert principal.subject == "service:x"


# --- required claims ---------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "sub", "type", "jti"])
async def test_token_missing_a_required_claim_is_401(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint], claim: str
) -> None:
    claims = issued_claims(mints[0])
    del claims[claim]
    with pytest.raises(UnauthorizedError) as caught:
        await verifier_for(server[1]).verify(mints[0].sign(claims))
    assert caught.value.status_code == 401 and caught.value.code == "invalid_token"


@pytest.mark.parametrize(
    "override",
    [
        {"aud": "another-app"},
        {"aud": ["another-app"]},
        {"aud": 7},
        {"iss": "someone-else"},
        {"iss": None},
        {"exp": None},
        {"exp": "soon"},
        {"iat": True},
        {"iat": None},
        {"iat": "now"},
        {"iat": 4_000_000_000},
        {"sub": ""},
        {"sub": 12},
        {"sub": "u1"},  # an access token's subject is a user id: a UUID
        {"sub": "\x00"},
        {"sub": U1 + "\x00"},
        {"sub": "8C0F9E1A-5B7D-4E2F-9A3C-1D2E3F4A5B6C"},  # not the form user-service writes
        {"sub": "{" + U1 + "}"},
        {"sub": "service:message-service"},  # a service's subject in an access token
        {"type": "service"},  # a service token's subject is service:<client>, not a user id
        {"type": "service", "sub": "service:"},
        {"exp": float("inf")},
        {"exp": float("-inf")},
        {"exp": float("nan")},
        {"iat": float("inf")},
        {"iat": float("-inf")},
        {"iat": float("nan")},
        {"nbf": float("inf")},
        {"jti": ""},
        {"type": "refresh"},
        {"scopes": "credits:write"},
        {"role": ["admin"]},
    ],
    ids=repr,
)
async def test_token_with_an_invalid_claim_is_401(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint], override: dict[str, Any]
) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        await verifier_for(server[1]).verify(mints[0].sign(issued_claims(mints[0], **override)))
    assert caught.value.status_code == 401 and caught.value.code == "invalid_token"


def test_claim_times_too_large_for_a_float_are_numbers_not_errors(mints: tuple[TokenMint, TokenMint]) -> None:
    claims = issued_claims(mints[0], iat=-(10**400))
    assert claims_problem(claims, now=0) is None
    assert claims_problem({**claims, "iat": 10**400}, now=0) == "claim 'iat' is in the future"


def hand_signed(mint: TokenMint, header: bytes, payload: bytes) -> str:
    """A JWS of raw header and payload bytes, RS256-signed with the mint's key: for JSON that no
    encoder would write (json.dumps itself cannot nest that deep)."""
    key = serialization.load_pem_private_key(mint.private_key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signing_input = f"{b64url(header)}.{b64url(payload)}".encode()
    return f"{signing_input.decode()}.{b64url(key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))}"


def deeply_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [2_000, 50_000])
async def test_a_deeply_nested_signed_payload_is_401(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint], depth: int
) -> None:
    claims = json.dumps(issued_claims(mints[0])).encode()
    payload = claims[:-1] + b', "x": ' + deeply_nested(depth) + b"}"
    header = json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode()
    with pytest.raises(UnauthorizedError) as caught:
        await verifier_for(server[1]).verify(hand_signed(mints[0], header, payload))
    assert caught.value.status_code == 401 and caught.value.code == "invalid_token"


@pytest.mark.parametrize("depth", [2_000, 50_000])
async def test_a_deeply_nested_header_is_401(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint], depth: int
) -> None:
    """The header is parsed before any signature check: anyone can send this one."""
    header = b'{"alg": "RS256", "kid": "k1", "x": ' + deeply_nested(depth) + b"}"
    token = f"{b64url(header)}.{b64url(json.dumps(issued_claims(mints[0])).encode())}.c2ln"
    with pytest.raises(UnauthorizedError) as caught:
        await verifier_for(server[1]).verify(token)
    assert caught.value.status_code == 401 and caught.value.code == "invalid_token"


async def test_a_hand_signed_token_is_accepted(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    """The deep-token tests fail for their nesting, not for how they are signed."""
    header = json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode()
    payload = json.dumps({**issued_claims(mints[0]), "x": [[[1]]]}).encode()
    principal = await verifier_for(server[1]).verify(hand_signed(mints[0], header, payload))
    assert principal.subject == U1 and principal.claims["x"] == [[[1]]]


async def test_audience_list_naming_us_is_accepted(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    token = mints[0].sign(issued_claims(mints[0], aud=["another-app", AUDIENCE]))
    assert (await verifier_for(server[1]).verify(token)).subject == U1


async def test_rejection_message_is_fixed_and_the_reason_is_logged(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint], capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_service_app(CommonSettings(service_name="demo"), title="demo", description="demo")
    app.state.token_verifier = verifier_for(server[1])

    @app.get("/me")
    async def me(user: CurrentUser) -> str:
        return user.user_id

    token = mints[0].sign(issued_claims(mints[0], aud="another-app"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    body = response.json()["error"]
    assert body["message"] == "Invalid token"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {
        "logger": "chat_common.auth",
        "message": "token rejected: JWTClaimsError: Invalid audience",
        "request_id": body["request_id"],
    }.items() <= next(line for line in logged if line["logger"] == "chat_common.auth").items()


async def test_auth_unavailable_is_a_503_in_the_error_shape_naming_user_service(
    mints: tuple[TokenMint, TokenMint],
) -> None:
    app = create_service_app(CommonSettings(service_name="demo"), title="demo", description="demo")
    app.state.token_verifier = verifier_for(f"http://127.0.0.1:{free_port()}/jwks", backoff_seconds=30)

    @app.get("/me")
    async def me(user: CurrentUser) -> str:
        return user.user_id

    headers = {"Authorization": f"Bearer {mints[0].token(sub=U1)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        response = await client.get("/me", headers=headers)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.json()["error"]["code"] == "auth_unavailable"
    assert response.json()["error"]["details"] == {"service": "user-service"}
    assert response.json()["error"]["message"] == (
        "Cannot verify tokens: the signing keys of user-service (its JWKS) are unavailable"
    )


# --- JWKS outages ------------------------------------------------------------------------------


class Clock:
    """The key source's clock, moved by the test: backoff without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1500):  # generous: the machine is shared
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_unreachable_jwks_with_no_keys_is_503_naming_user_service(
    mints: tuple[TokenMint, TokenMint],
) -> None:
    verifier = verifier_for(f"http://127.0.0.1:{free_port()}/jwks")
    with pytest.raises(ServiceUnavailableError) as caught:
        await verifier.verify(mints[0].token(sub=U1))
    assert caught.value.code == "auth_unavailable" and "user-service" in caught.value.message


async def test_failing_jwks_is_not_asked_again_by_every_request(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    """No keys yet and user-service answers 503: one fetch, then every request is 503 at once."""
    jwks, url = server
    jwks.mode = "error"
    verifier = verifier_for(url, min_refetch_seconds=0, backoff_seconds=600)
    for _ in range(5):
        with pytest.raises(ServiceUnavailableError) as caught:
            await verifier.verify(mints[0].token(sub=U1))
        assert caught.value.code == "auth_unavailable"
    assert jwks.requests == 1


async def test_failed_fetches_back_off_exponentially_up_to_a_cap(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    jwks, url = server
    jwks.mode = "error"
    clock = Clock()
    source = JWKSKeySource(url, min_refetch_seconds=0, backoff_seconds=1, max_backoff_seconds=4, clock=clock)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    seen = []
    for at in (0, 0.9, 1, 2.9, 3, 6.9, 7, 10.9, 11, 14.9):  # tries at 0, +1, +2, +4, +4 (capped)
        clock.now = 1000 + at
        with pytest.raises(ServiceUnavailableError) as caught:
            await verifier.verify(mints[0].token(sub=U1))
        seen.append((jwks.requests, caught.value.headers))
    assert [requests for requests, _ in seen] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert seen[0][1] == {"Retry-After": "1"} and seen[-1][1] == {"Retry-After": "1"}
    assert seen[8][1] == {"Retry-After": "4"}
    jwks.mode = "up"
    clock.now = 1000 + 15
    assert (await verifier.verify(mints[0].token(sub=U1))).subject == U1
    assert jwks.requests == 6
    jwks.mode = "error"  # a success resets the backoff: the next failure waits 1 s again
    clock.now += 300
    with pytest.raises(ServiceUnavailableError):
        await verifier.verify(mints[1].token(sub=U2))
    clock.now += 1
    with pytest.raises(ServiceUnavailableError):
        await verifier.verify(mints[1].token(sub=U2))
    assert jwks.requests == 8


async def test_stale_cache_keeps_serving_while_a_refresh_hangs(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    """The cache expired and user-service hangs: known keys are served at once, one refresh is tried."""
    jwks, url = server
    clock = Clock()
    verifier = verifier_for(url, cache_seconds=60, timeout_seconds=120, clock=clock)
    await verifier.verify(mints[0].token(sub=uid(0)))
    jwks.mode = "hang"
    clock.now += 61
    for i in range(1, 6):
        assert (await verifier.verify(mints[0].token(sub=uid(i)))).subject == uid(i)
    await until(lambda: jwks.requests == 2)  # the background refresh, still hanging
    for i in range(6, 11):
        assert (await verifier.verify(mints[0].token(sub=uid(i)))).subject == uid(i)
    assert jwks.requests == 2 and not jwks.release.is_set()


async def test_stale_cache_keeps_serving_when_the_refresh_fails(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    jwks, url = server
    clock = Clock()
    source = JWKSKeySource(url, cache_seconds=60, backoff_seconds=30, clock=clock)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    await verifier.verify(mints[0].token(sub=uid(0)))
    jwks.mode = "error"
    clock.now += 61
    assert (await verifier.verify(mints[0].token(sub=U1))).subject == U1
    await until(lambda: jwks.requests == 2)  # the background refresh
    for i in range(2, 7):
        assert (await verifier.verify(mints[0].token(sub=uid(i)))).subject == uid(i)
    with pytest.raises(ServiceUnavailableError):  # a new kid: the key set cannot be known now
        await verifier.verify(mints[1].token(sub=U2))
    assert jwks.requests == 2


async def test_hanging_jwks_makes_no_request_wait_again(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    """user-service hangs: the first unknown kid waits for one fetch (its timeout); later ones are
    answered at once, and known kids never wait."""
    jwks, url = server
    verifier = verifier_for(url, min_refetch_seconds=0, timeout_seconds=1, backoff_seconds=600)
    await verifier.verify(mints[0].token(sub=U1))
    jwks.mode = "hang"
    for _ in range(3):
        with pytest.raises(ServiceUnavailableError) as caught:
            await verifier.verify(mints[1].token(sub=U2))
        assert caught.value.code == "auth_unavailable"
    assert jwks.requests == 2
    assert (await verifier.verify(mints[0].token(sub=uid(3)))).subject == uid(3)
    assert jwks.requests == 2


async def test_concurrent_unknown_kids_share_one_fetch(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    jwks, url = server
    verifier = verifier_for(url, min_refetch_seconds=0)
    await verifier.verify(mints[0].token(sub=U1))
    jwks.keys = [mints[0].jwk, mints[1].jwk]
    principals = await asyncio.gather(*(verifier.verify(mints[1].token(sub=uid(100 + i))) for i in range(20)))
    assert [p.subject for p in principals] == [uid(100 + i) for i in range(20)]
    assert jwks.requests == 2


async def test_invalid_jwks_document_counts_as_a_failed_fetch(
    server: tuple[JWKSServer, str], mints: tuple[TokenMint, TokenMint]
) -> None:
    jwks, url = server
    jwks.keys = "not a list"  # type: ignore[assignment]
    with pytest.raises(ServiceUnavailableError) as caught:
        await verifier_for(url).verify(mints[0].token(sub=U1))
    assert caught.value.code == "auth_unavailable"


async def test_misconfigured_jwks_url_is_503_not_500(mints: tuple[TokenMint, TokenMint]) -> None:
    verifier = verifier_for("http://\x00/jwks", backoff_seconds=600)  # httpx.InvalidURL
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError) as caught:
            await verifier.verify(mints[0].token(sub=U1))
        assert caught.value.code == "auth_unavailable"
