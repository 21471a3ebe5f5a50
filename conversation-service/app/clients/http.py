"""The real directories: character-service with the caller's token, user-service with a service token."""

from __future__ import annotations

from typing import Any

from app.clients.directories import CharacterGoneError
from app.config import Settings
from app.models import CharacterSnapshot, PersonaSnapshot
from chat_common.errors import AppError, NotFoundError
from chat_common.http import ServiceClient
from chat_common.service_token import ServiceTokenProvider

SCOPES = ["characters:counters", "personas:read"]


class FleetClients:
    """One HTTP client per downstream service and the service token they share."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.downstream_timeout_seconds
        self.users = ServiceClient("user-service", settings.user_service_url, read_timeout=timeout)
        self.characters = ServiceClient(
            "character-service", settings.character_service_url, read_timeout=timeout
        )
        self.tokens = ServiceTokenProvider(
            self.users,
            client_id=settings.conversation_service_client_id,
            client_secret=settings.conversation_service_client_secret.get_secret_value(),
            scopes=SCOPES,
        )

    async def aclose(self) -> None:
        await self.users.aclose()
        await self.characters.aclose()


def _missing(exc: AppError) -> bool:
    """Downstream says the thing is not there (or its id cannot name anything)."""
    return exc.status_code == 404 or (exc.status_code == 422 and exc.code == "validation_error")


class HttpCharacterDirectory:
    def __init__(self, clients: FleetClients) -> None:
        self.clients = clients

    async def snapshot(self, character_id: str, *, token: str) -> CharacterSnapshot:
        try:
            response = await self.clients.characters.get(f"/api/v1/characters/{character_id}", token=token)
        except AppError as exc:
            if _missing(exc):
                raise NotFoundError("Character not found", code="character_not_found") from exc
            raise
        body: dict[str, Any] = response.json()
        return CharacterSnapshot(
            name=body["name"],
            avatar_url=body.get("avatar_url"),
            greeting=body.get("greeting", ""),
            alternate_greetings=body.get("alternate_greetings", []),
            updated_at=body.get("updated_at"),
        )

    async def count_conversation(self, character_id: str, *, key: str) -> None:
        try:
            await self.clients.characters.post(
                f"/api/v1/internal/characters/{character_id}/counters",
                json={"conversations": 1, "idempotency_key": key},
                token=await self.clients.tokens.token(),
                idempotent=True,  # the key makes a repeat count once
            )
        except AppError as exc:
            if exc.status_code == 404:
                raise CharacterGoneError(character_id) from exc
            raise


class HttpPersonaDirectory:
    def __init__(self, clients: FleetClients) -> None:
        self.clients = clients

    async def _get(self, path: str) -> dict[str, Any]:
        response = await self.clients.users.get(path, token=await self.clients.tokens.token())
        body: dict[str, Any] = response.json()
        return body

    async def persona(self, user_id: str, persona_id: str) -> PersonaSnapshot:
        try:
            body = await self._get(f"/api/v1/internal/users/{user_id}/personas/{persona_id}")
        except AppError as exc:
            if _missing(exc):
                raise NotFoundError("Persona not found", code="persona_not_found") from exc
            raise
        return PersonaSnapshot(id=str(body["id"]), name=body["name"], description=body.get("description", ""))

    async def default_persona(self, user_id: str) -> PersonaSnapshot:
        try:
            body = await self._get(f"/api/v1/internal/users/{user_id}/personas/default")
        except AppError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            if (
                exc.status_code == 404
                and exc.code == "persona_not_found"
                and details.get("user_display_name")
            ):
                return PersonaSnapshot(name=str(details["user_display_name"]))
            if exc.status_code == 404:
                raise NotFoundError("Your account was not found", code="user_not_found") from exc
            raise
        return PersonaSnapshot(id=str(body["id"]), name=body["name"], description=body.get("description", ""))
