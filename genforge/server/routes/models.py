"""GET /v1/models and /v1/models/{id}: the loaded runs (id = run name, owned_by = genforge).

Each entry also says its `family` and what the playground needs (context length, image size,
classes, labels), as the family answers it (`genforge.families.model_info`).
"""
from __future__ import annotations

from fastapi import APIRouter, Request

from ... import families
from ..errors import APIError

router = APIRouter(tags=["models"])


def describe(served) -> dict:
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "genforge",
            "family": served.family, **families.model_info(served.pipeline)}


@router.get("/v1/models")
async def list_models(request: Request):
    state = request.app.state.genforge
    state.check_ready()
    return {"object": "list", "data": [describe(s) for s in state.models.values()]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request):
    state = request.app.state.genforge
    state.check_ready()
    if model_id not in state.models:
        raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
    return describe(state.models[model_id])
