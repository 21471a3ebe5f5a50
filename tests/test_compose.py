"""docker-compose.yml, checked statically (no Docker engine here): every devstack service is in it."""

from __future__ import annotations

from pathlib import Path

import yaml

from devstack.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent


def test_every_service_is_composed_with_its_port_and_dockerfile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for spec in SERVICES:
        service = compose["services"][spec.name]
        assert f"{spec.port}:{spec.port}" in service["ports"]
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        assert dockerfile.exists(), dockerfile
        assert (ROOT / spec.name / "requirements.txt").exists()
        for backend in set(spec.needs) & set(compose["services"]):
            assert backend in service["depends_on"], (spec.name, backend)


def test_backends_use_the_design_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "5431:5432" in compose["services"]["postgres"]["ports"]
    assert "27017:27017" in compose["services"]["mongodb"]["ports"]
