"""GET /: the playground, one plain HTML page (no build step, no CDN) that calls the /v1 routes."""
from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/")
async def playground():
    html = resources.files("genforge.server").joinpath("static/playground.html").read_text(encoding="utf-8")
    return HTMLResponse(html)
