"""docker-compose files, checked statically (no Docker engine here): every devstack service is in the
fleet's compose file, wired as devstack wires it; conversation-service's own file runs it in mock mode;
message-service is given every URL its settings read; each Dockerfile copies what exists and what its
requirements install."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent
# Where the fleet's compose file puts each backend, as the services see it on the compose network.
COMPOSE_BACKENDS = {
    "postgres": "postgresql://postgres:secret@postgres:5432/chatbot",
    "redis": "redis://redis:6379/0",
    "mongodb": "mongodb://mongodb:27017",
    "lmstudio": "http://host.docker.internal:1234",
}


def load(path: Path) -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(path.read_text())
    return compose


def test_every_service_is_composed_with_its_port_and_dockerfile() -> None:
    compose = load(ROOT / "docker-compose.yml")
    for spec in SERVICES:
        service = compose["services"][spec.name]
        assert f"{spec.port}:{spec.port}" in service["ports"]
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        assert dockerfile.exists(), dockerfile
        assert f"EXPOSE {spec.port}" in dockerfile.read_text(), dockerfile
        assert (ROOT / spec.name / "requirements.txt").exists()
        for backend in set(spec.needs) & set(compose["services"]):
            assert backend in service["depends_on"], (spec.name, backend)


def test_every_service_is_healthy_only_when_ready() -> None:
    compose = load(ROOT / "docker-compose.yml")
    for spec in SERVICES:
        check = " ".join(compose["services"][spec.name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{spec.port}/ready" in check, (spec.name, check)


def test_services_reach_each_other_and_mongodb_by_compose_name_once_healthy() -> None:
    """What devstack points a service at (another service, MongoDB) compose points it at too, and the
    service waits for that dependency to be healthy."""
    compose = load(ROOT / "docker-compose.yml")
    urls = {spec.name: f"http://{spec.name}:{spec.port}" for spec in SERVICES} | COMPOSE_BACKENDS
    for spec in SERVICES:
        service = compose["services"][spec.name]
        for variable, value in spec.env(urls).items():
            for target in [s.name for s in SERVICES] + ["mongodb", "redis"]:
                if value.startswith(urls[target]):
                    assert service["environment"].get(variable) == value, (spec.name, variable)
                    assert service["depends_on"][target] == {"condition": "service_healthy"}, (
                        spec.name,
                        target,
                    )


def test_conversation_service_is_composed_in_real_mode_after_its_dependencies() -> None:
    service = load(ROOT / "docker-compose.yml")["services"]["conversation-service"]
    assert service["build"] == {"context": ".", "dockerfile": "conversation-service/Dockerfile"}
    assert str(service["environment"].get("MOCK_SERVICES", "false")).lower() == "false"
    assert set(service["depends_on"]) == {"mongodb", "user-service", "character-service"}


def message_service_settings() -> Any:
    """message-service's Settings class, loaded from its file (every service has its own `app`)."""
    path = ROOT / "message-service" / "app" / "config.py"
    spec = importlib.util.spec_from_file_location("message_service_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the annotations through it
    spec.loader.exec_module(module)
    return module.Settings


def test_message_service_is_composed_in_real_mode_after_every_dependency() -> None:
    service = load(ROOT / "docker-compose.yml")["services"]["message-service"]
    assert service["build"] == {"context": ".", "dockerfile": "message-service/Dockerfile"}
    assert set(service["depends_on"]) == {
        "mongodb",
        "redis",
        "user-service",
        "character-service",
        "conversation-service",
        "llm-service",
    }
    assert all(d == {"condition": "service_healthy"} for d in service["depends_on"].values())


def interpolated(value: object) -> str:
    """A compose value as the container sees it with nothing set on the host: `${X:-d}` is d."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def test_message_service_compose_sets_every_url_it_reads_and_starts_on_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every `*_URL` default points at 127.0.0.1, which inside a container is the container itself:
    compose must set each one, and the settings must accept what it sets."""
    settings_class = message_service_settings()
    compose = load(ROOT / "docker-compose.yml")["services"]["message-service"]
    environment = {str(k): interpolated(v) for k, v in compose["environment"].items()}
    for name in settings_class.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    urls = {name.upper() for name in settings_class.model_fields if name.endswith("_url")}
    assert urls <= set(environment), urls - set(environment)
    [spec] = [spec for spec in SERVICES if spec.name == "message-service"]
    assert (
        environment["REDIS_PREFIX"]
        == spec.env(COMPOSE_BACKENDS | {s.name: "" for s in SERVICES})["REDIS_PREFIX"]
    )

    settings = settings_class(_env_file=None)

    assert (settings.port, settings.environment) == (8009, "development")
    assert settings.database_name == "message_service_development"
    # in production only the secret (from .env) would be missing, no URL left at its development default
    production = settings.model_copy(update={"environment": "production"})
    assert not [problem for problem in production.unsafe_production_values() if "URL" in problem]


def dockerfile_sources(dockerfile: Path) -> list[str]:
    return re.findall(r"^COPY (\S+) ", dockerfile.read_text(), flags=re.MULTILINE)


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_each_dockerfile_copies_paths_that_exist_and_every_package_its_requirements_install(
    name: str,
) -> None:
    sources = dockerfile_sources(ROOT / name / "Dockerfile")
    assert sources, name
    for source in sources:
        assert (ROOT / source).exists(), (name, source)
    requirements = (ROOT / name / "requirements.txt").read_text()
    for package in re.findall(r"^-e \.\./(packages/[\w-]+)", requirements, flags=re.MULTILINE):
        assert package in sources, (name, package)
