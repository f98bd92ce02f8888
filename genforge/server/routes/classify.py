"""POST /v1/classify (genforge's own route): texts in, a label with class probabilities per text out.

    {"model": "imdb", "input": ["great film", "dull"]}
    -> {"object": "list", "model": "imdb", "data": [{"index": 0, "label": "pos", "probs": {...}}, ...]}
"""
from __future__ import annotations

import anyio
from fastapi import APIRouter, Request

from ..errors import APIError
from ..schemas import ClassifyRequest
from ..state import CLASSIFY

router = APIRouter(tags=["classify"])
ROUTE = "/v1/classify"


@router.post("/v1/classify")
async def classify(body: ClassifyRequest, request: Request):
    state = request.app.state.genforge
    served = state.get(body.model, CLASSIFY, ROUTE)
    texts = [body.input] if isinstance(body.input, str) else body.input

    def run():
        try:
            return served.pipeline.classify(texts)
        except ValueError as e:
            raise APIError(400, f"input: {e}", param="input") from None

    async with served.lock:
        results = await anyio.to_thread.run_sync(run)
    data = [{"index": i, "label": r["label"], "probs": {k: float(v) for k, v in r["probs"].items()}}
            for i, r in enumerate(results)]
    return {"object": "list", "model": served.name, "data": data}
