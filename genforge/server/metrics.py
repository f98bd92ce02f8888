"""Prometheus metrics of one app (its own registry, so several apps can live in one process).

Scraped at GET /metrics: requests by route and status, in-flight requests, latency and
time-to-first-token histograms, client disconnects, and per GPT model the queue depth, active
sequences and tokens generated (read from the engines at scrape time).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class EngineCollector:
    """Reads queue depth, active sequences and tokens generated from each engine at scrape time."""

    def __init__(self, engines: dict):
        self.engines = engines  # model name -> Engine (filled in once models are loaded)

    def collect(self):
        queue = GaugeMetricFamily("genforge_queue_depth", "Sequences waiting for a decode slot", labels=["model"])
        active = GaugeMetricFamily("genforge_active_sequences", "Sequences being decoded", labels=["model"])
        tokens = CounterMetricFamily("genforge_tokens_generated", "Tokens generated", labels=["model"])
        for name, engine in list(self.engines.items()):
            queue.add_metric([name], engine.queue_depth)
            active.add_metric([name], len(engine.active))
            tokens.add_metric([name], engine.tokens_generated)
        return [queue, active, tokens]


class Metrics:
    def __init__(self, engines: dict):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("genforge_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.in_flight = Gauge("genforge_requests_in_flight", "HTTP requests being served", registry=r)
        self.latency = Histogram("genforge_request_latency_seconds", "Request latency (to the last byte)",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("genforge_time_to_first_token_seconds", "Time to the first generated token",
                              ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.disconnects = Counter("genforge_client_disconnects", "Clients that left before the end; their "
                                   "generation was stopped", ["route"], registry=r)
        self.prompt_tokens = Counter("genforge_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        r.register(EngineCollector(engines))
