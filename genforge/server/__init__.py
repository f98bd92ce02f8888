"""genforge's HTTP server: an OpenAI-compatible API and a playground over trained runs.

    genforge serve runs/shakespeare runs/mnist-gan --port 8000 [--api-key KEY]
    python -c "from genforge.server import serve; serve(['runs/shakespeare'])"

Layout: app.py (factory), settings.py, state.py (loaded models), edge.py (auth, size limit,
metrics middleware), schemas.py, generation.py (text requests over the batching engine in
genforge/engine.py), routes/ (one module per resource), static/playground.html.
Tests: pytest tests/server
"""
from __future__ import annotations

from .app import create_app
from .settings import Settings


def serve(sources, settings: Settings | None = None) -> None:
    """Run the server until Ctrl-C."""
    import uvicorn
    settings = settings or Settings()
    import torch
    torch.set_num_threads(settings.threads or 1)  # one-token decode steps are too small to split (BENCHMARKS.md)
    app = create_app(sources, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5)


__all__ = ["create_app", "Settings", "serve"]
