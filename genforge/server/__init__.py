"""genforge's HTTP server: an OpenAI-compatible API and a playground over trained runs.

    genforge serve runs/shakespeare runs/mnist-gan --port 8000 [--api-key KEY]
    python -c "from genforge.server import serve; serve(['runs/shakespeare'])"

Layout: app.py (factory), settings.py, state.py (loaded models), edge.py (auth, size limit,
metrics middleware), schemas.py, generation.py (text requests over the batching engine in
genforge/engine.py; engine_process.py runs it in a child process, the default), routes/ (one module per
resource), static/playground.html.
Tests: pytest tests/server
"""
from __future__ import annotations

import sys

from .app import create_app
from .settings import Settings


class LoadFailed(ValueError):
    """A served run could not be loaded; the server stopped (the message says why)."""


def serve(sources, settings: Settings | None = None) -> None:
    """Run the server until Ctrl-C. When a model fails to load, the server stops and LoadFailed says why."""
    import uvicorn

    from ..runtime import pick_device
    from .limits import uvicorn_config
    settings = settings or Settings()
    pick_device(settings.device)  # an unknown or absent device fails before anything listens
    import torch
    torch.set_num_threads(settings.threads or 1)  # one-token decode steps are too small to split (BENCHMARKS.md)
    app = create_app(sources, settings)
    if not settings.api_key and settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"genforge serve: WARNING: no API key: anyone who can reach {settings.host}:{settings.port} may use "
              "these models (set --api-key or GENFORGE_API_KEY)", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn_config(app, settings))
    state = app.state.genforge
    state.on_failure = lambda: setattr(server, "should_exit", True)
    server.run()
    if state.load_detail:
        raise LoadFailed(f"genforge serve stopped: {state.load_detail}")


__all__ = ["create_app", "LoadFailed", "Settings", "serve"]
