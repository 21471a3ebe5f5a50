"""`make lock`: pin the whole environment with hashes, for Python 3.11 on Linux.

`requirements.lock` (what `make install` installs) pins every third-party package that
requirements-dev.txt, the services' requirements.txt and the local packages' pyproject.toml need,
plus setuptools to build the local packages. Each service's `requirements.lock` (what its Dockerfile
installs) holds the same pins, only those the service needs. Every lock's header records a digest of
its inputs, so a test tells offline that an input changed without `make lock`.
Usage: `python -m tools.lock` (write the locks), `python -m tools.lock --check` (exit 1 when stale).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK = "requirements.lock"
DIGEST_LINE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)
UV_OPTIONS = ["--generate-hashes", "--python-version", "3.11", "--python-platform", "linux"]


def local_packages(root: Path = ROOT) -> list[Path]:
    return sorted(path.parent for path in root.glob("packages/*/pyproject.toml"))


def service_dirs(root: Path = ROOT) -> list[Path]:
    return sorted(path.parent for path in root.glob("*-service/requirements.txt"))


def requirement_lines(path: Path) -> list[str]:
    """A requirements file's requirements, without comments and blank lines."""
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def package_metadata(package: Path) -> dict[str, Any]:
    """What of a local package's pyproject.toml decides what gets installed."""
    pyproject = tomllib.loads((package / "pyproject.toml").read_text())
    project = pyproject["project"]
    return {
        "name": project["name"],
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-requires": pyproject.get("build-system", {}).get("requires", []),
    }


def inputs_digest(root: Path = ROOT) -> str:
    """sha256 of every lock input: requirement files (comments aside) and the packages' metadata."""
    inputs: dict[str, object] = {"requirements-dev.txt": requirement_lines(root / "requirements-dev.txt")}
    for service in service_dirs(root):
        inputs[f"{service.name}/requirements.txt"] = requirement_lines(service / "requirements.txt")
    for package in local_packages(root):
        inputs[f"packages/{package.name}"] = package_metadata(package)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    match = DIGEST_LINE.search(lock.read_text()) if lock.exists() else None
    return match.group(1) if match else None


def lock_paths(root: Path = ROOT) -> list[Path]:
    return [root / LOCK] + [service / LOCK for service in service_dirs(root)]


def rooted(path: Path, root: Path = ROOT) -> list[str]:
    """A requirements file's lines with local paths (`-e ../packages/x[db]`) made relative to `root`."""
    lines = []
    for line in requirement_lines(path):
        editable = re.match(r"^-e\s+(\.{1,2}/\S+)$", line)
        if editable:
            target = (path.parent / editable.group(1)).resolve()
            line = f"-e {target.relative_to(root.resolve())}"
        lines.append(line)
    return lines


def build_requirements(lines: list[str], root: Path = ROOT) -> list[str]:
    """The build backends of the local packages these lines install (they are built without isolation)."""
    needed: list[str] = []
    for package in local_packages(root):
        if any(re.match(rf"^-e\s+packages/{package.name}\b", line) for line in lines):
            needed += package_metadata(package)["build-requires"]
    return sorted(set(needed))


def compile_lock(lines: list[str], output: Path, digest: str, constraint: Path | None = None) -> None:
    """Resolve `lines` with uv into `output` (the local packages themselves left out: pip installs
    them from the tree), under a header that records `digest`."""
    command = [sys.executable, "-m", "uv", "pip", "compile", "-", "--quiet", "--no-header", *UV_OPTIONS]
    command += [f"--no-emit-package={package.name}" for package in local_packages()]
    if constraint is not None:
        command += ["--constraint", str(constraint.relative_to(ROOT))]
    text = "\n".join(lines + build_requirements(lines)) + "\n"
    result = subprocess.run(command, input=text, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"uv pip compile failed for {output}:\n{result.stderr}")
    scope = "the whole environment" if constraint is None else f"{output.parent.name} (pins of ../{LOCK})"
    header = (
        f"# {scope}: exact versions with hashes, Python 3.11 on Linux. Do not edit: run `make lock`.\n"
        f"# inputs-sha256: {digest}\n"
    )
    output.write_text(header + result.stdout)


def write_locks() -> None:
    digest = inputs_digest()
    everything = rooted(ROOT / "requirements-dev.txt")
    for service in service_dirs():
        everything += rooted(service / "requirements.txt")
    compile_lock(everything, ROOT / LOCK, digest)
    for service in service_dirs():
        compile_lock(rooted(service / "requirements.txt"), service / LOCK, digest, constraint=ROOT / LOCK)


def stale_locks(root: Path = ROOT) -> list[Path]:
    digest = inputs_digest(root)
    return [lock for lock in lock_paths(root) if recorded_digest(lock) != digest]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lock", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a lock is older than its inputs")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_locks()
        for lock in stale:
            print(f"{lock.relative_to(ROOT)} is out of date with the requirements: run `make lock`")
        return 1 if stale else 0
    write_locks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
