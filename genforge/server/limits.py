"""Connection limits for uvicorn: `uvicorn_config(app, settings)` is how genforge serves an app.

uvicorn bounds idle keep-alive connections but not a client that never finishes its request
headers; `TimedHttp` closes such a connection after `settings.read_timeout` seconds (the request
body has the same limit, in edge.py). The number of open connections is bounded by
`settings.max_connections` (more get 503). Tests: pytest tests/server/test_hardening.py
"""
from __future__ import annotations

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import Settings


class TimedHttp(HttpToolsProtocol):
    """httptools HTTP/1.1 with a deadline from a connection's (or request's) first byte to its last header."""

    header_timeout = 30.0
    _header_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self):
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self):
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def _arm(self):
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self):
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app, settings: Settings, **overrides) -> uvicorn.Config:
    http = type("TimedHttp", (TimedHttp,), {"header_timeout": settings.read_timeout})
    kw = dict(host=settings.host, port=settings.port, log_level=settings.log_level, http=http,
              timeout_keep_alive=5, timeout_graceful_shutdown=5, limit_concurrency=settings.max_connections)
    return uvicorn.Config(app, **{**kw, **overrides})
