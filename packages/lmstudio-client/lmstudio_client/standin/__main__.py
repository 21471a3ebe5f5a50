"""`python -m lmstudio_client.standin --port 1234`: serve the LM Studio stand-in."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from lmstudio_client.standin.server import StandinConfig, create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lmstudio_client.standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--tokens-per-second", type=float, default=0.0, help="0 streams as fast as possible")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--legacy-errors", action="store_true", help="answer like older LM Studio builds")
    parser.add_argument(
        "--no-jit",
        dest="jit_loading",
        action="store_false",
        help="JIT loading off: a model that is not loaded is not loaded on demand (LM Studio's default: on)",
    )
    parser.add_argument("--api-key", default=None, help="require this bearer token (LM Studio 0.4+)")
    parser.add_argument(
        "--request-log-size", type=int, default=100, help="requests kept for GET /__standin/requests"
    )
    args = parser.parse_args(argv)
    if args.request_log_size < 0:
        parser.error("--request-log-size must not be negative")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = StandinConfig(
        tokens_per_second=args.tokens_per_second,
        first_token_delay=args.first_token_delay,
        context_length=args.context_length,
        legacy_errors=args.legacy_errors,
        jit_loading=args.jit_loading,
        api_key=args.api_key,
        request_log_size=args.request_log_size,
    )
    logging.getLogger("lmstudio_client.standin").warning(
        "LM Studio STAND-IN (not a real LM Studio) on http://%s:%d: deterministic echo replies, "
        "model ids 'lmstudio-standin/*'",
        args.host,
        args.port,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
