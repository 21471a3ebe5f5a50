"""A stand-in process shared by the client's tests, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lmstudio_client.testing import StandinProcess, run_standin


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinProcess]:
    with run_standin() as process:
        yield process


@pytest.fixture(autouse=True)
def fresh(standin: StandinProcess) -> None:
    standin.reset()
