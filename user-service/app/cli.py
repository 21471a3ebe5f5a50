"""Operator commands: `python -m app.cli create-admin --email ... --password ...`.

The one way to make an existing account admin on purpose (start-up's FIRST_ADMIN_EMAIL never does).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pydantic import ValidationError

from app.config import SERVICE_DIR, get_settings
from app.schemas.user import UserCreate
from app.services import users as user_service
from app.services.passwords import PasswordHasher
from chat_common.database import create_engine, create_sessionmaker, run_migrations
from chat_common.errors import ConflictError


async def create_admin(email: str, password: str, username: str, display_name: str) -> str:
    settings = get_settings()
    await run_migrations(SERVICE_DIR, settings)
    engine = create_engine(settings)
    try:
        data = UserCreate(email=email, username=username, display_name=display_name, password=password)
        async with create_sessionmaker(engine)() as session:
            user, outcome = await user_service.create_or_promote_admin(
                session,
                PasswordHasher(settings.bcrypt_rounds),
                data=data,
                initial_credits=settings.initial_credits,
            )
        if outcome == "created":
            return f"created admin {user.email} ({user.id})"
        if outcome == "promoted":
            return f"promoted existing account {user.email} to admin ({user.id}); its password is unchanged"
        return f"{user.email} is already an admin ({user.id})"
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("create-admin", help="create an admin, or promote an existing email")
    admin.add_argument("--email", required=True)
    admin.add_argument("--username", default="admin")
    admin.add_argument("--display-name", default="Administrator")
    admin.add_argument("--password", help="read from the terminal when omitted")
    args = parser.parse_args(argv)
    password = args.password or getpass.getpass("Password: ")
    try:
        print(asyncio.run(create_admin(args.email, password, args.username, args.display_name)))
    except ValidationError as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 2
    except ConflictError as exc:  # the username is taken (or the email was registered a moment ago)
        hint = "; choose another with --username" if exc.code == "username_taken" else ""
        print(f"cannot create the admin: {exc.message}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
