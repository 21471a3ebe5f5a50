"""The locks: `make install` (requirements.lock) and each Dockerfile (<service>/requirements.lock)
install exact versions with hashes; a test here fails when a requirements file or a local package's
dependencies changed without `make lock`, or when a lock no longer satisfies what they ask for."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.lock import (
    LOCK,
    ROOT,
    inputs_digest,
    local_packages,
    lock_paths,
    package_metadata,
    recorded_digest,
    rooted,
    service_dirs,
)

# The target every lock is compiled for (uv's --python-version 3.11, --python-platform linux)
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
Pins = dict[str, tuple[str, frozenset[str]]]


def pins(lock: Path) -> Pins:
    """A lock's entries: name -> (version, hashes)."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    entries: Pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)(.*)$", line)
        if match:
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", match.group(3)))
            entries[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return entries


def wanted(lines: list[str]) -> list[Requirement]:
    """What requirement lines ask for, the local packages' dependencies (with the extras named) and
    build backends included."""
    packages = {f"packages/{package.name}": package_metadata(package) for package in local_packages()}
    requirements: list[str] = []
    for line in lines:
        editable = re.match(r"^-e\s+(packages/[\w-]+)(?:\[([\w,-]+)\])?$", line)
        if editable is None:
            requirements.append(line)
            continue
        metadata = packages[editable.group(1)]
        requirements += metadata["dependencies"] + metadata["build-requires"]
        for extra in (editable.group(2) or "").split(","):
            requirements += metadata["optional-dependencies"].get(extra, []) if extra else []
    return [Requirement(line) for line in requirements]


def unmet(requirements: list[Requirement], locked: Pins) -> list[str]:
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET):
            continue
        pin = locked.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pin[0], prereleases=True):
            problems.append(f"{requirement} but the lock pins {pin[0]}")
    return problems


def every_input_line() -> list[str]:
    lines = rooted(ROOT / "requirements-dev.txt")
    for service in service_dirs():
        lines += rooted(service / "requirements.txt")
    return lines


def test_every_lock_was_made_from_the_current_requirements() -> None:
    digest = inputs_digest()
    stale = [str(lock.relative_to(ROOT)) for lock in lock_paths() if recorded_digest(lock) != digest]
    assert stale == [], f"{stale} older than the requirements files or packages: run `make lock`"


def test_the_whole_lock_pins_everything_every_input_asks_for_with_hashes() -> None:
    locked = pins(ROOT / LOCK)

    assert unmet(wanted(every_input_line()), locked) == []
    assert [name for name, (_, hashes) in locked.items() if not hashes] == []
    assert {"fastapi", "uvicorn", "pytest", "uv", "setuptools"} <= set(locked)
    # the local packages are installed from the tree, never from an index
    assert not {canonicalize_name(package_metadata(p)["name"]) for p in local_packages()} & set(locked)


@pytest.mark.parametrize("service", [service.name for service in service_dirs()])
def test_each_service_lock_has_the_whole_locks_pins_for_what_the_service_needs(service: str) -> None:
    whole, own = pins(ROOT / LOCK), pins(ROOT / service / LOCK)

    assert unmet(wanted(rooted(ROOT / service / "requirements.txt")), own) == []
    assert {name: pin for name, pin in own.items() if whole.get(name) != pin} == {}
    assert "pytest" not in own  # only what the service runs on goes into its image


INPUTS = ["requirements-dev.txt"] + [f"{s.name}/requirements.txt" for s in service_dirs()]


@pytest.fixture
def inputs_copy(tmp_path: Path) -> Path:
    """The lock's inputs in a directory of their own, to change without touching the repository."""
    for name in INPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    for package in local_packages():
        (tmp_path / "packages" / package.name).mkdir(parents=True)
        shutil.copy(package / "pyproject.toml", tmp_path / "packages" / package.name / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("name", INPUTS)
def test_a_changed_requirements_file_makes_the_locks_stale(inputs_copy: Path, name: str) -> None:
    before = inputs_digest(inputs_copy)
    path = inputs_copy / name
    path.write_text(path.read_text() + "# only a comment\n")
    assert inputs_digest(inputs_copy) == before

    path.write_text(path.read_text().replace(">=", ">", 1))

    assert inputs_digest(inputs_copy) != before


@pytest.mark.parametrize("package", [package.name for package in local_packages()])
@pytest.mark.parametrize("table", ["dependencies = [", "[project.optional-dependencies]\n"])
def test_a_changed_package_dependency_makes_the_locks_stale(
    inputs_copy: Path, package: str, table: str
) -> None:
    path = inputs_copy / "packages" / package / "pyproject.toml"
    before = inputs_digest(inputs_copy)
    text = path.read_text()
    assert table in text
    addition = '"example-dependency>=1", ' if table.endswith("[") else 'example = ["example-dependency"]\n'

    path.write_text(text.replace(table, table + addition, 1))

    assert inputs_digest(inputs_copy) != before
