"""The root README stays true: its configuration table is every service's Settings (names, services,
defaults), its curl walkthrough is `make demo`'s, and the commands it gives for one service point at
what exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack.demo import CURL, DEFAULT_URLS, curl_lines
from devstack.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SHORT = {spec.name.removesuffix("-service"): spec.name for spec in SERVICES}

# Run in a service's directory (each has its own `app` package): every Settings field, upper-cased,
# with its default when it is a plain value (a computed default or one holding models is not compared).
DUMP_SETTINGS = """
import json
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined
from app.config import Settings

def plain(value):
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        raise TypeError(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

fields = {}
for name, field in Settings.model_fields.items():
    entry = {"checkable": False}
    if field.default_factory is None and field.default is not PydanticUndefined:
        try:
            entry = {"checkable": True, "default": plain(field.default)}
        except TypeError:  # a nested settings model: the README describes it in words
            entry = {"checkable": False}
    fields[name.upper()] = entry
print(json.dumps(fields))
"""


def settings_of(service: str) -> dict[str, dict[str, Any]]:
    dumped = subprocess.run(
        [sys.executable, "-c", DUMP_SETTINGS],
        cwd=ROOT / service,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    fields: dict[str, dict[str, Any]] = json.loads(dumped.stdout)
    return fields


def shown(default: Any) -> str:
    """A default as the README's table writes it."""
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    return f"`{default}`" if isinstance(default, str) else f"`{json.dumps(default)}`"


def documented_settings() -> dict[tuple[str, str], str]:
    """(setting, service) -> default cell, from the table under "## Configuration"."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert len(cells) == 4 and cells[3], f"a row needs setting, service, default, meaning: {line}"
        name = cells[0].strip("`")
        services = list(SHORT.values()) if cells[1] == "all" else [SHORT[s] for s in cells[1].split(", ")]
        for service in services:
            assert (name, service) not in rows, f"{name} is documented twice for {service}"
            rows[name, service] = cells[2]
    return rows


def test_the_configuration_table_is_every_setting_of_every_service_with_its_default() -> None:
    documented = documented_settings()
    actual = {(name, spec.name): field for spec in SERVICES for name, field in settings_of(spec.name).items()}

    missing = sorted(set(actual) - set(documented))
    extra = sorted(set(documented) - set(actual))
    assert missing == [], f"settings missing from the README's table: {missing}"
    assert extra == [], f"README rows that no service's Settings has: {extra}"
    wrong = {
        key: (documented[key], shown(field["default"]))
        for key, field in actual.items()
        if field["checkable"] and documented[key] != shown(field["default"])
    }
    assert wrong == {}, f"(README default, the Settings default): {wrong}"


def test_the_curl_walkthrough_is_the_one_make_demo_prints() -> None:
    walkthrough = README.split("\n## Curl walkthrough\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for step in CURL for line in curl_lines(step, DEFAULT_URLS)]

    assert [line for line in lines if line not in walkthrough.splitlines()] == []
    assert (ROOT / "examples/cards/captain-mira.json").exists()


def test_the_layout_and_the_one_service_commands_point_at_what_exists() -> None:
    layout = README.split("\n## Repository layout\n", 1)[1].split("\n## ", 1)[0]
    folders = [spec.name for spec in SERVICES]
    folders += ["packages/chat-common", "packages/lmstudio-client", "devstack", "examples/cards", "tests"]
    folders += ["bench", "docs"]
    for folder in folders:
        assert re.search(rf"^{re.escape(folder)}/", layout, flags=re.MULTILINE), folder
        assert (ROOT / folder).is_dir(), folder
    for spec in SERVICES:
        assert (ROOT / spec.name / "run.py").exists() and (ROOT / spec.name / "app/main.py").exists()
        assert f"({spec.name}/README.md)" in README

    alone = README.split("\n## One service alone\n", 1)[1].split("\n## ", 1)[0]
    for command in (
        "source .aienv/bin/activate",
        "python run.py",
        "uvicorn app.main:app --reload --host 0.0.0.0 --port 8024",
        "python -m pytest",
        "pytest --cov=app --cov-report=html",
        "pytest\n  app/characters/tests/",
        "make test",
        "make lint",
        "make format",
        "make clean",
        "cd conversation-service && docker-compose up -d",
    ):
        assert command in alone, command
    assert (ROOT / "character-service/app/characters/tests").is_dir()
    makefile = (ROOT / "llm-service/Makefile").read_text()
    for target in ("test", "lint", "format", "clean"):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
    assert (ROOT / "conversation-service/docker-compose.yml").exists()
    assert "pytest-cov" in (ROOT / "requirements-dev.txt").read_text()
