"""The app factory: `create_app(runs or pipelines, settings)` assembles the FastAPI app.

    app = create_app(["runs/shakespeare", "runs/mnist-gan"], Settings(api_key="secret"))
    app = create_app({"tiny": gpt_pipeline, "digits": gan_pipeline})   # already-loaded pipelines

Models load in the background when the app starts (lifespan), through genforge.inference.load;
GET /health answers 503 until they are ready. Nothing is loaded at import.
"""
from __future__ import annotations

import asyncio
import contextlib
import re

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse

from . import errors
from .edge import Edge
from .metrics import Metrics
from .routes import chat, classify, completions, image_classify, images, metrics, models, playground
from .settings import Settings
from .state import ServerState, name_sources


class CORS(CORSMiddleware):
    """Starlette's CORS, also allowing the x-stainless-* headers the official openai clients send.

    Those names are allowed by pattern and echoed per preflight; nothing is remembered between
    requests, and a preflight asking for more than MAX_REQUESTED names (or longer ones) is refused.
    """

    PATTERN = re.compile(r"x-stainless-[a-z0-9-]{1,64}")
    MAX_REQUESTED, MAX_VALUE = 64, 4096  # names per preflight, characters of the request header

    def preflight_response(self, request_headers):
        value = request_headers.get("access-control-request-headers")
        if value is None:
            return super().preflight_response(request_headers)
        names = [h.strip().lower() for h in value.split(",") if h.strip()]
        if len(value) > self.MAX_VALUE or len(names) > self.MAX_REQUESTED:
            return PlainTextResponse(f"Disallowed CORS headers: at most {self.MAX_REQUESTED} names "
                                     f"({self.MAX_VALUE} characters) per preflight", status_code=400)
        extra = sorted({h for h in names if h not in self.allow_headers and self.PATTERN.fullmatch(h)})
        rest = ", ".join(h for h in names if h not in extra)
        raw = [(k, v) for k, v in request_headers.raw if k != b"access-control-request-headers"]
        if rest:
            raw.append((b"access-control-request-headers", rest.encode("latin-1")))
        response = super().preflight_response(Headers(raw=raw))
        if extra and response.status_code == 200:
            allowed = response.headers.get("access-control-allow-headers", "")
            response.headers["access-control-allow-headers"] = ", ".join(filter(None, [allowed, *extra]))
        return response


def create_app(sources, settings: Settings | None = None, loader=None) -> FastAPI:
    """sources: run paths (RUN or NAME=RUN), pipelines, or {name: run or pipeline}."""
    settings = settings or Settings()
    named = name_sources(sources)
    if not named:
        raise ValueError("genforge serve needs at least one run to serve")
    state = ServerState(named, settings, **({"loader": loader} if loader else {}))
    state.metrics = Metrics(state.engines)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(state.load())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state.close()

    app = FastAPI(title="genforge", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="OpenAI-compatible text, image and classification API over genforge runs.")
    app.state.genforge = state
    errors.install(app)
    paths = {"/openapi.json"}
    for module in (models, completions, chat, images, classify, image_classify, metrics, playground):
        app.include_router(module.router)
        paths |= {r.path for r in module.router.routes}
    app.add_middleware(Edge, settings=settings, metrics=state.metrics, paths=paths)
    if settings.cors_origins:  # added last = outermost: preflights are answered before the key check
        app.add_middleware(CORS, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["authorization", "content-type", "x-api-key", "openai-organization",
                                          "openai-project", "openai-beta", "idempotency-key"],
                           allow_origin_regex=None, expose_headers=["retry-after", "x-request-id"], max_age=600)
    return app
