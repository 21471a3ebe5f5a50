"""docker-compose files, checked statically (no Docker engine here): every devstack service is in the
fleet's compose file, wired as devstack wires it; conversation-service's own file runs it in mock mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
            for target in [s.name for s in SERVICES] + ["mongodb"]:
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


def test_backends_use_the_design_ports() -> None:
    compose = load(ROOT / "docker-compose.yml")
    assert "5431:5432" in compose["services"]["postgres"]["ports"]
    assert "27017:27017" in compose["services"]["mongodb"]["ports"]
    assert compose["services"]["mongodb"]["image"] == "mongo:7"


def test_conversation_service_compose_runs_it_alone_in_mock_mode_on_mongodb() -> None:
    folder = ROOT / "conversation-service"
    services = load(folder / "docker-compose.yml")["services"]
    assert set(services) == {"mongodb", "conversation-service"}
    assert services["mongodb"]["image"] == "mongo:7"
    service = services["conversation-service"]
    assert "8003:8003" in service["ports"]
    build = service["build"]
    assert (folder / build["context"]).resolve() == ROOT
    assert (folder / build["context"] / build["dockerfile"]).resolve() == folder / "Dockerfile"
    environment = service["environment"]
    assert str(environment["MOCK_SERVICES"]).lower() == "true"
    assert environment["ENVIRONMENT"] == "development"
    assert environment["MONGODB_URL"] == "mongodb://mongodb:27017"
    assert service["depends_on"] == {"mongodb": {"condition": "service_healthy"}}
    assert "http://127.0.0.1:8003/ready" in " ".join(service["healthcheck"]["test"])
