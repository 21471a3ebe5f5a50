"""`python -m chat_common.healthcheck URL`: exit 0 when URL answers 2xx, else 1 with the reason.

A container's HEALTHCHECK (each Dockerfile, docker-compose.yml): the images have no curl."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 5


def check(url: str) -> str | None:
    """None when `url` answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return None if 200 <= response.status < 300 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}: {exc.read(500).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m chat_common.healthcheck URL", file=sys.stderr)
        return 2
    problem = check(args[0])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
