"""All `/api/v1` routes of user-service."""

from fastapi import APIRouter

from app.api.v1 import admin, auth, credits, personas, users

api_router = APIRouter(prefix="/api/v1")
for router in (
    auth.router,
    users.router,
    personas.router,
    personas.internal_router,
    credits.router,
    admin.router,
):
    api_router.include_router(router)
