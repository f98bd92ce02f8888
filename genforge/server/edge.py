"""The ASGI layer every request crosses before a route: metrics, body-size limit and API-key check.

Order (outermost first): CORS (answers preflights before auth), then `Edge`: count and time the
request, refuse bodies over the limit (413), check the key (401), replay the body to the app.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time

from .errors import error_body
from .metrics import Metrics

OPEN_PATHS = {"/health", "/", "/openapi.json"}  # no key needed (the playground asks for one)


async def send_error(send, status: int, message: str, code: str | None = None, headers=()):
    body = json.dumps(error_body(status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Edge:
    def __init__(self, app, settings, metrics: Metrics, paths: set[str]):
        self.app, self.settings, self.metrics = app, settings, metrics
        self.paths = paths  # the app's route paths: metric labels stay a bounded set

    def route_of(self, path: str) -> str:
        if path in self.paths:
            return path
        return "/v1/models/{model_id}" if path.startswith("/v1/models/") else "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route, method = self.route_of(scope["path"]), scope["method"]
        status = {"code": 500}

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        t0 = time.perf_counter()
        try:
            await self.handle(scope, receive, send_tracked)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
            self.metrics.requests.labels(route, method, str(status["code"])).inc()

    async def handle(self, scope, receive, send):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return await send_error(send, 413, f"request body of {length} bytes is over the {limit}-byte limit",
                                    "body_too_large", [(b"connection", b"close")])
        key = self.settings.api_key  # printable ASCII (settings.py), so a latin-1 header can match it
        if key and scope["method"] != "OPTIONS" and scope["path"] not in OPEN_PATHS:
            given = headers.get("authorization", "")
            token = given[7:].strip() if given.lower().startswith("bearer ") else headers.get("x-api-key", "")
            if not secrets.compare_digest(token.encode(), key.encode()):
                what = "missing API key" if not given and "x-api-key" not in headers else "incorrect API key"
                return await send_error(send, 401, f"{what}: send 'Authorization: Bearer KEY'", "invalid_api_key",
                                        [(b"www-authenticate", b"Bearer")])
        # read the whole body up front (bounded), then hand it to the app
        body, more = [], True
        size = 0
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.settings.read_timeout)
            except TimeoutError:
                return await send_error(send, 408, f"the request body did not arrive within "
                                        f"{self.settings.read_timeout:g} seconds", "request_timeout",
                                        [(b"connection", b"close")])
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await send_error(send, 413, f"request body is over the {limit}-byte limit", "body_too_large",
                                        [(b"connection", b"close")])
            body.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
