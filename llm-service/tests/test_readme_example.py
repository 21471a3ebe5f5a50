"""The README's OpenAI example runs as written against the fleet (its URLs pointed at this test's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_openai_example_runs_as_written(
    llm_url: str, user_service_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert match, "the README has no Python example"
    example = match[1]
    assert "http://127.0.0.1:8022" in example and "http://127.0.0.1:8024" in example
    code = example.replace("http://127.0.0.1:8022", llm_url)
    code = code.replace("http://127.0.0.1:8024", user_service_url)

    exec(compile(code, str(README), "exec"), {})  # the README's own code

    listed, reply = capsys.readouterr().out.splitlines()
    assert "lmstudio-standin/echo-7b" in listed
    assert reply == "You said: Hi"
