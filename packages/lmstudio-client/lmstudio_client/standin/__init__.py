"""An LM Studio stand-in that speaks LM Studio's HTTP protocol, for development and tests.

Run it with `python -m lmstudio_client.standin --port 1234`. Replies are deterministic (derived
from the prompt), model ids say `lmstudio-standin`, and failure modes are switched at
`/__standin/config` so tests can exercise every error LM Studio really sends.
"""

from lmstudio_client.standin.server import StandinConfig, StandinModel, create_app

__all__ = ["StandinConfig", "StandinModel", "create_app"]
