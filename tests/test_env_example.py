"""`.env.example` lists every setting message-service reads, under its own heading or a shared one."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_compose import message_service_settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_names_every_message_service_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", text))
    fields = {name.upper() for name in message_service_settings().model_fields} - {"SERVICE_NAME", "DEBUG"}

    assert fields - named == set()
    assert "# --- message-service (port 8009) ---" in text
