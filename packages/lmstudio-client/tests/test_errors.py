"""Every error body LM Studio really sends becomes the right typed exception."""

from __future__ import annotations

import pytest

from lmstudio_client.errors import (
    BadRequest,
    ContextLengthExceeded,
    ModelCrashed,
    ModelNotFound,
    NoModelLoaded,
    NotLMStudio,
    UpstreamError,
    error_from_body,
)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": {"message": "No models loaded. Please load a model ..."}}, NoModelLoaded),
        (400, {"error": "No models loaded. Please load a model ..."}, NoModelLoaded),
        (
            400,
            {
                "error": {
                    "message": 'Invalid model identifier "x".',
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
            },
            ModelNotFound,
        ),
        (404, {"error": {"message": 'Model "x" not found. Please check.'}}, ModelNotFound),
        (
            400,
            {
                "error": "Trying to keep the first 5000 tokens when context the overflows. However, the "
                "model is loaded with context length of only 4096 tokens"
            },
            ContextLengthExceeded,
        ),
        (
            400,
            {"error": "The model has crashed without additional information. (Exit code: 1)"},
            ModelCrashed,
        ),
        (200, {"error": "Unexpected endpoint or method. (POST /x)"}, NotLMStudio),
        (400, {"error": "'response_format.type' must be 'json_schema' or 'text'"}, BadRequest),
        (500, {"error": "something exploded"}, UpstreamError),
        (502, "<html>bad gateway</html>", UpstreamError),
    ],
)
def test_error_bodies_are_classified(status: int, body: object, expected: type) -> None:
    error = error_from_body(status, body)
    assert type(error) is expected
    assert error.status == status and error.message
