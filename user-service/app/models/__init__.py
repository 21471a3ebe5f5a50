"""SQLAlchemy models of user-service, all in the `users` schema."""

from app.models.base import Base
from app.models.credit import CreditReservation, CreditTransaction
from app.models.persona import Persona
from app.models.token import RefreshToken
from app.models.user import User

__all__ = ["Base", "CreditReservation", "CreditTransaction", "Persona", "RefreshToken", "User"]
