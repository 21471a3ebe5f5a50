"""Pydantic request and response models of user-service."""
