"""Requests built from a service's OpenAPI document: its operations, what each needs (a token, a
scope, path ids) and a valid request body made from the operation's documented request schema.

The access matrix (`test_access_matrix.py`) walks these, so a new operation is covered the day it is
documented; a body this module cannot build is an error, never a silently skipped operation.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
SAFE_METHODS = frozenset({"GET"})
# Values that make a body meaningful where the schema's minimal instance would be empty (`{}` changes
# nothing, so a refusal of it proves little): what a caller trying to change the resource would send.
MEANINGFUL_BODIES: dict[str, dict[str, Any]] = {
    "AdminUserUpdate": {"role": "admin"},
    "CharacterUpdate": {"name": "Taken over", "visibility": "public"},
    "ConversationUpdate": {"title": "Taken over", "archived": True},
    "PersonaUpdate": {"name": "Taken over"},
    "UserUpdate": {"display_name": "Taken over"},
    "Metadata": {"taken": "over"},
    "Patch": {"taken": "over"},
}
# What a multipart file field carries: a minimal Character Card V2 (the one file upload of the fleet).
CARD_FILE = (
    "card.json",
    json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Imported"}}).encode(),
    "application/json",
)


@dataclass(frozen=True)
class Operation:
    """One documented operation of one service."""

    service: str
    method: str
    path: str
    spec: dict[str, Any] = field(repr=False, compare=False)
    document: dict[str, Any] = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.service}: {self.method} {self.path}"

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)

    @property
    def secured(self) -> bool:
        """Whether the document requires a token (a requirement that is not the empty one)."""
        requirements = self.spec.get("security", self.document.get("security", []))
        return bool(requirements) and all(requirement for requirement in requirements)

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the security requirement names: an operation for services only."""
        return frozenset(
            scope
            for requirement in self.spec.get("security", ())
            for scopes in requirement.values()
            for scope in scopes
        )

    def documents(self, status: int) -> bool:
        return str(status) in self.spec.get("responses", {})

    @property
    def query_fields(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "query"]

    @property
    def body_fields(self) -> list[str]:
        """The top-level properties of the operation's JSON body."""
        content = self.spec.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            return []
        schema = self.resolve(content["application/json"]["schema"])
        variants = [self.resolve(v) for v in schema.get("anyOf", [schema]) if v.get("type") != "null"]
        return [name for variant in variants for name in variant.get("properties", {})]

    def url(self, base: str, values: dict[str, str], query: dict[str, str] | None = None) -> str:
        """The operation's URL: `values` in its path, a valid value for each required query parameter,
        and `query`."""
        path = self.path.format(**{name: values[name] for name in self.path_params})
        required = {
            parameter["name"]: self.instance(parameter["schema"])
            for parameter in self.spec.get("parameters", [])
            if parameter["in"] == "query" and parameter.get("required")
        }
        params = required | (query or {})
        return f"{base}{path}?{urlencode(params)}" if params else base + path

    def body(self, fields: dict[str, str] | None = None) -> dict[str, Any]:
        """httpx keyword arguments for a valid request body (none when the operation takes none), with
        `fields` set in a JSON body."""
        request_body = self.spec.get("requestBody")
        if request_body is None:
            return {}
        content = request_body["content"]
        if "application/json" in content:
            instance = self.instance(content["application/json"]["schema"])
            return {"json": instance | (fields or {}) if isinstance(instance, dict) else instance}
        if "multipart/form-data" in content:
            schema = self.resolve(content["multipart/form-data"]["schema"])
            files = {name: CARD_FILE for name in schema.get("required", [])}
            return {"files": files}
        if "application/x-www-form-urlencoded" in content:
            form = self.instance(content["application/x-www-form-urlencoded"]["schema"])
            return {"data": {name: str(value) for name, value in form.items()}}
        raise AssertionError(f"{self}: no valid body for content type(s) {sorted(content)}")

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def instance(self, schema: dict[str, Any]) -> Any:
        """A small valid instance of `schema`: its required properties, from examples, enums, formats
        and bounds; a named schema of `MEANINGFUL_BODIES` takes its entry."""
        schema = self.resolve(schema)
        if schema.get("title") in MEANINGFUL_BODIES:
            return dict(MEANINGFUL_BODIES[schema["title"]])
        if "examples" in schema:
            return schema["examples"][0]
        if "enum" in schema:
            return schema["enum"][0]
        variants = schema.get("anyOf") or schema.get("oneOf")
        if variants:
            return self.instance(next(v for v in variants if v.get("type") != "null"))
        return self._typed_instance(schema)

    def _typed_instance(self, schema: dict[str, Any]) -> Any:
        kind = schema.get("type", "object")
        if kind == "object":
            properties = schema.get("properties", {})
            return {name: self.instance(properties[name]) for name in schema.get("required", [])}
        if kind == "array":
            return [self.instance(schema["items"]) for _ in range(schema.get("minItems", 0))]
        if kind == "string":
            return _string(schema)
        if kind in ("integer", "number"):
            low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
            return max(int(low) + 1, 1)
        if kind == "boolean":
            return False
        raise AssertionError(f"{self}: cannot build an instance of {schema}")


def _string(schema: dict[str, Any]) -> str:
    formats = {
        "uuid": str(uuid.uuid4()),
        "email": f"{uuid.uuid4().hex[:8]}@example.com",
        "date-time": "2026-01-01T00:00:00Z",
    }
    if schema.get("format") in formats:
        return formats[schema["format"]]
    if "pattern" in schema and not re.fullmatch(schema["pattern"], "x" * max(schema.get("minLength", 1), 1)):
        raise AssertionError(
            f"no string for the pattern {schema['pattern']!r}: add a MEANINGFUL_BODIES entry"
        )
    return "x" * max(schema.get("minLength", 1), 1)


def operations(service: str, document: dict[str, Any]) -> list[Operation]:
    return [
        Operation(service, method.upper(), path, spec, document)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in HTTP_METHODS
    ]
