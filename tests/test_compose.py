"""docker-compose files and Dockerfiles, checked statically against the code (no Docker engine here):
every devstack service is composed with its port, healthcheck on /ready and healthy dependencies,
wired as devstack wires it; the backends are the documented images and ports; every setting a service
needs in a container is set (nothing left pointing at the container itself); conversation-service's
own file runs it in mock mode; each Dockerfile copies what exists, installs its lock before its code,
runs unprivileged with a HEALTHCHECK."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.services import SERVICES, ServiceSpec

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
            if variable.lower() in BROWSER_FACING:
                continue
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


# --- Dockerfiles -------------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions in order, continuation lines joined: [(INSTRUCTION, arguments)]."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out (the .dockerignore forms used here: `name`, `**/name`)."""
    parts = Path(path).parts
    for pattern in dockerignore_patterns():
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif fnmatch.fnmatch(path, pattern) or parts[0] == pattern:
            return True
    return False


@pytest.mark.parametrize("spec", SERVICES, ids=[spec.name for spec in SERVICES])
def test_each_dockerfile_installs_the_locked_dependencies_first_and_runs_unprivileged_with_a_healthcheck(
    spec: ServiceSpec,
) -> None:
    steps = instructions(ROOT / spec.name / "Dockerfile")
    kinds = [kind for kind, _ in steps]

    assert steps[0] == ("FROM", "python:3.11-slim")
    for kind, arguments in steps:
        if kind == "COPY":
            source = arguments.split()[0]
            assert (ROOT / source).exists() and not ignored(source), (spec.name, source)
    lock = f"{spec.name}/requirements.lock"
    install = kinds.index("RUN", kinds.index("COPY"))
    assert steps[kinds.index("COPY")] == ("COPY", f"{lock} /srv/{lock}")
    assert steps[install] == ("RUN", f"pip install --require-hashes -r /srv/{lock}")
    code = steps.index(("COPY", f"{spec.name} /srv/{spec.name}"))
    assert install < code, "the dependency layer comes before the code"
    user = steps[kinds.index("USER")][1]
    assert user not in {"root", "0"} and kinds.index("USER") > code
    assert ("EXPOSE", str(spec.port)) in steps
    assert f"HOST=0.0.0.0 PORT={spec.port}" in [arguments for kind, arguments in steps if kind == "ENV"]
    [healthcheck] = [arguments for kind, arguments in steps if kind == "HEALTHCHECK"]
    assert f'"http://127.0.0.1:{spec.port}/ready"' in healthcheck
    assert steps[-1] == ("CMD", '["python", "run.py"]')


def test_the_build_context_leaves_out_environments_data_caches_and_history() -> None:
    for path in [".git", ".aienv", ".devstack", "user-service/.data", "app/__pycache__", ".ruff_cache"]:
        assert ignored(path), path
    for path in [
        "packages/chat-common",
        "user-service/requirements.lock",
        "requirements.lock",
        "llm-service",
    ]:
        assert not ignored(path), path


# --- compose files against the code ------------------------------------------------------------


def test_backends_are_the_documented_images_ports_and_database_each_with_a_healthcheck() -> None:
    services = load(ROOT / "docker-compose.yml")["services"]
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16" and postgres["ports"] == ["5431:5432"]
    environment = {key: interpolated(value) for key, value in postgres["environment"].items()}
    assert (environment["POSTGRES_PASSWORD"], environment["POSTGRES_DB"]) == ("secret", "chatbot")
    assert (services["mongodb"]["image"], services["mongodb"]["ports"]) == ("mongo:7", ["27017:27017"])
    assert (services["redis"]["image"], services["redis"]["ports"]) == ("redis:7", ["6379:6379"])
    for name in ("postgres", "mongodb", "redis"):
        assert services[name]["healthcheck"]["test"], name


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "conversation-service/docker-compose.yml"])
def test_every_dependency_waits_for_a_healthy_service(compose_file: str) -> None:
    compose = load(ROOT / compose_file)
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert services[dependency]["healthcheck"]["test"], dependency
        build = service.get("build")
        if build:
            assert (ROOT / compose_file).parent.joinpath(build["context"], build["dockerfile"]).exists(), name
    for secret in compose.get("secrets", {}).values():
        assert (ROOT / interpolated(secret["file"])).exists(), secret


def test_llm_service_reaches_lm_studio_on_the_host_unless_told_otherwise() -> None:
    service = load(ROOT / "docker-compose.yml")["services"]["llm-service"]
    value = service["environment"]["LMSTUDIO_BASE_URL"]

    assert value.startswith("${LMSTUDIO_BASE_URL:-")  # overridable from the environment
    assert interpolated(value) == "http://host.docker.internal:1234"
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]


@pytest.mark.parametrize("name", ["user-service", "character-service"])
def test_sql_services_serve_only_after_migrating(name: str) -> None:
    """They start with run.py, whose app migrates (open_database runs Alembic) before it serves, so
    compose sees them healthy, and starts what depends on them, only once the schema is current."""
    service = load(ROOT / "docker-compose.yml")["services"][name]
    assert "command" not in service and "entrypoint" not in service
    assert "open_database(app, SERVICE_DIR, settings)" in (ROOT / name / "app" / "main.py").read_text()
    source = (ROOT / "packages/chat-common/chat_common/database.py").read_text()
    opening = source[source.index("async def open_database") :]
    assert opening.index("await run_migrations(") < opening.index("yield")
    assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}


SETTINGS_PROBE = """
import json
from app.config import Settings
prefix = Settings.model_config.get("env_prefix", "")
required = [(prefix + name).upper() for name, field in Settings.model_fields.items() if field.is_required()]
print(json.dumps({"required": required}))
settings = Settings(_env_file=None)
print(json.dumps({"values": {name: str(getattr(settings, name)) for name in Settings.model_fields}}))
"""


def container_settings(name: str, environment: dict[str, str]) -> dict[str, Any]:
    """The service's settings as its container builds them: the Dockerfile's ENV, then compose's
    environment (`${X:-default}` taken at its default), nothing else (no .env, no host variables)."""
    dockerfile_env: dict[str, str] = {}
    for kind, arguments in instructions(ROOT / name / "Dockerfile"):
        if kind == "ENV":
            dockerfile_env |= dict(pair.split("=", 1) for pair in arguments.split())
    env = {"PATH": os.environ["PATH"], **dockerfile_env}
    env |= {str(key): interpolated(value) for key, value in environment.items()}
    command = [sys.executable, "-c", SETTINGS_PROBE]
    result = subprocess.run(command, cwd=ROOT / name, env=env, capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    report: dict[str, Any] = {"required": lines[0]["required"] if lines else None, "error": result.stderr}
    report["values"] = lines[1]["values"] if len(lines) > 1 else None
    report["environment"] = env
    return report


# URLs a browser follows (Swagger's Authorize), not the service: the host's localhost is right there.
BROWSER_FACING = {"user_service_public_url"}


def local_addresses(values: dict[str, str]) -> list[str]:
    """URL settings that point at the container itself (127.0.0.1, localhost), user info or not."""
    return [
        name
        for name, value in values.items()
        if name.endswith("_url")
        and name not in BROWSER_FACING
        and re.search(r"//([^/@]*@)?(127\.0\.0\.1|localhost|\[::1\])(:|/|$)", value)
    ]


COMPOSED = [(spec.name, "docker-compose.yml") for spec in SERVICES] + [
    ("conversation-service", "conversation-service/docker-compose.yml")
]


@pytest.mark.parametrize(("name", "compose_file"), COMPOSED)
def test_compose_sets_every_setting_a_service_needs_in_a_container(name: str, compose_file: str) -> None:
    service = load(ROOT / compose_file)["services"][name]
    [spec] = [spec for spec in SERVICES if spec.name == name]

    report = container_settings(name, service.get("environment", {}))

    missing = [variable for variable in report["required"] or [] if variable not in report["environment"]]
    assert missing == [], f"{name}: required settings not set in {compose_file}: {missing}"
    assert report["values"] is not None, report["error"][-2000:]
    values = report["values"]
    assert (values["host"], values["port"]) == ("0.0.0.0", str(spec.port))
    local = local_addresses(values)
    if compose_file == "docker-compose.yml":
        assert local == [], f"{name} would call itself at {local}: set them in {compose_file}"
    else:  # conversation-service alone in mock mode: it calls no other service, only its database
        assert values["mock_services"] == "True"
        assert "mongodb_url" not in local
