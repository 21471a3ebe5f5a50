"""Export file names: any character name gives a safe RFC 6266 / RFC 5987 Content-Disposition."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from httpx import AsyncClient

from app.characters.tests.cardkit import export_card
from app.characters.tests.conftest import Caller, CharacterFactory

# name -> (ASCII fallback stem, UTF-8 file name stem)
NAMES = {
    "Серафина": ("character", "Серафина"),
    "森の守護者": ("character", "森の守護者"),
    "Seraphina 🌸": ("Seraphina", "Seraphina 🌸"),
    "Zoë Ünïcödé": ("Zoe_Unicode", "Zoë Ünïcödé"),
    'Evil"; filename="x.exe': ("Evil_filename_x.exe", 'Evil"; filename="x.exe'),
    "Line\r\nX-Injected: yes": ("Line_X-Injected_yes", "Line__X-Injected: yes"),
    "../../etc/passwd": ("etc_passwd", ".._.._etc_passwd"),
    # format and bidi controls are dropped, so no name can show its extension reversed ("exe.png")
    "Invoice\u202egnp.exe": ("Invoicegnp.exe", "Invoicegnp.exe"),
    "A\u2066B\u2069\u200eC\u061cD\u200bE\ufeffF\u2028G": ("ABCDEFG", "ABCDEF_G"),
    "a\u200db": ("ab", "ab"),
    # a zero width joiner stays only where it joins an emoji sequence
    "Family \U0001f468\u200d\U0001f469\u200d\U0001f467": (
        "Family",
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467",
    ),
    "\U0001f469\U0001f3fd\u200d\U0001f4bb \U0001f3f3\ufe0f\u200d\U0001f308": (
        "character",
        "\U0001f469\U0001f3fd\u200d\U0001f4bb \U0001f3f3\ufe0f\u200d\U0001f308",
    ),
    "\u202e\u200f": ("character", "character"),
}


@pytest.mark.parametrize("fmt", ["json", "png"])
@pytest.mark.parametrize("name", list(NAMES), ids=[f"name{i}" for i in range(len(NAMES))])
async def test_export_of_any_name_has_an_ascii_fallback_and_a_utf8_filename(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory, name: str, fmt: str
) -> None:
    character = await make_character(alice, name=name)
    response = await export_card(client, alice, character["id"], fmt)
    assert response.status_code == 200, response.text
    fallback, utf8_name = NAMES[name]
    header = response.headers["content-disposition"]
    assert header == (
        f"attachment; filename=\"{fallback}.{fmt}\"; filename*=UTF-8''{quote(f'{utf8_name}.{fmt}', safe='')}"
    )
    assert unquote(header.split("UTF-8''")[1]) == f"{utf8_name}.{fmt}"
    assert "x-injected" not in response.headers and "\r" not in header and "\n" not in header


async def test_cyrillic_json_export_header_is_exact(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice, name="Серафина")
    response = await export_card(client, alice, character["id"], "json")
    assert response.headers["content-disposition"] == (
        'attachment; filename="character.json"; '
        "filename*=UTF-8''%D0%A1%D0%B5%D1%80%D0%B0%D1%84%D0%B8%D0%BD%D0%B0.json"
    )
    assert response.json()["data"]["name"] == "Серафина"
