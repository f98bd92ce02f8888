"""GET /health (503 while loading, 200 when every model is ready) and GET /metrics (Prometheus text)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import error_response

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health(request: Request):
    state = request.app.state.genforge
    if state.loading:
        return error_response(503, "models are still loading", code="loading", headers={"Retry-After": "1"})
    if state.load_error:
        return error_response(503, f"loading failed: {state.load_error}", code="load_failed")
    return {"status": "ok", "models": list(state.models)}


@router.get("/metrics")
async def metrics(request: Request):
    registry = request.app.state.genforge.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
