"""Start message-service: `python run.py` (host, port and trusted proxies from settings)."""

from app.config import get_settings
from chat_common.serving import run_service

if __name__ == "__main__":
    run_service("app.main:app", get_settings())
