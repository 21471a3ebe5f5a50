"""All `/api/v1` routes of user-service."""

from fastapi import APIRouter

from app.api.v1 import admin, auth, credits, users

api_router = APIRouter(prefix="/api/v1")
for module in (auth, users, credits, admin):
    api_router.include_router(module.router)
