"""Model endpoints: OpenAI's list (`/v1`), LM Studio's rich list (`/api/v0`) and 0.4+ load/unload."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmstudio_client.standin import behaviour as b
from lmstudio_client.standin.http import error, json_body, standin_of


async def models_v1(request: Request) -> Response:
    listed = standin_of(request).listed()
    return JSONResponse(
        {
            "object": "list",
            "data": [{"id": m.id, "object": "model", "owned_by": "organization_owner"} for m in listed],
        }
    )


async def models_v0(request: Request) -> Response:
    standin = standin_of(request)
    return JSONResponse({"object": "list", "data": [standin.v0_entry(m) for m in standin.config.models]})


async def model_v0(request: Request) -> Response:
    standin = standin_of(request)
    model = standin.find(request.path_params["model_id"])
    if model is None:
        return error(b.model_not_found(request.path_params["model_id"], True))
    return JSONResponse(standin.v0_entry(model))


async def native_models(request: Request) -> Response:
    standin = standin_of(request)
    return JSONResponse(
        {
            "models": [
                {
                    "key": m.id,
                    "display_name": m.id.split("/")[-1],
                    "type": m.type,
                    "max_context_length": m.max_context_length,
                    "loaded_instances": (
                        [{"id": m.id, "config": {"context_length": standin.loaded_context(m)}}]
                        if m.state == "loaded"
                        else []
                    ),
                }
                for m in standin.config.models
            ]
        }
    )


async def native_load(request: Request) -> Response:
    body = await json_body(request)
    if isinstance(body, JSONResponse):
        return body
    model = standin_of(request).find(str(body.get("model", "")))
    if model is None:
        return error(b.model_not_found(str(body.get("model", "")), False))
    model.state = "loaded"
    return JSONResponse({"instance_id": model.id, "status": "loaded", "load_time_seconds": 0.01})


async def native_unload(request: Request) -> Response:
    body = await json_body(request)
    if isinstance(body, JSONResponse):
        return body
    model = standin_of(request).find(str(body.get("instance_id", "")))
    if model is None or model.state != "loaded":
        return error(b.bad_request(f"No loaded instance {body.get('instance_id')!r}"))
    model.state = "not-loaded"
    return JSONResponse({"instance_id": model.id})


ROUTES = [
    Route("/v1/models", models_v1, methods=["GET"]),
    Route("/api/v0/models", models_v0, methods=["GET"]),
    Route("/api/v0/models/{model_id:path}", model_v0, methods=["GET"]),
    Route("/api/v1/models", native_models, methods=["GET"]),
    Route("/api/v1/models/load", native_load, methods=["POST"]),
    Route("/api/v1/models/unload", native_unload, methods=["POST"]),
]
