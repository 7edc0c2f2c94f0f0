"""/metrics: the server's Prometheus metrics, with the standard client library.

Requests by route and status, time to first token and request latency histograms, the
engine's queue depth and running batch, prompt and generated tokens, cancellations, requests
that failed alone, and the safety layer's verdicts. One registry per app (not the process
default), so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

from typing import Any

from discmed.engine.protocol import Engine

# Latency buckets from 10 ms to 2 minutes: the tiny model answers in tens of milliseconds, a
# 13B model on a busy GPU in tens of seconds.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 120)


class Metrics:
    def __init__(self, engine: Engine):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("discmed_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram(
            "discmed_request_latency_seconds", "Time from request to the end of its response", ["route"],
            buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "discmed_time_to_first_token_seconds", "Time from arrival at the engine to the first token",
            buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.safety = Counter("discmed_safety_verdicts", "Triage verdicts on the patient's message", ["verdict"], registry=r)
        Gauge("discmed_queue_depth", "Requests waiting for the engine", registry=r).set_function(
            lambda: engine.stats().queued
        )
        Gauge("discmed_running_batch", "Requests in the engine's running batch", registry=r).set_function(
            lambda: engine.stats().running
        )
        r.register(_EngineCounters(engine))

    def observe_jobs(self, jobs: list[Any]) -> None:
        """Time to first token of finished engine requests (those that produced one)."""
        for job in jobs:
            req = job.req
            first = getattr(req, "first_token_at", None)
            if first is not None:
                self.ttft.observe(first - req.arrived)

    def verdict(self, triage: Any) -> None:
        if triage is not None:
            self.safety.labels("urgent" if triage.urgent else "routine").inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _EngineCounters:
    """The engine's own running totals, read at scrape time."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        st = self.engine.stats()
        for name, doc, attr in (
            ("discmed_prompt_tokens", "Prompt tokens prefilled", "prompt_tokens"),
            ("discmed_generation_tokens", "Tokens generated", "generated_tokens"),
            ("discmed_shared_prefix_tokens", "Prompt tokens not run again: a prefix shared by prompts admitted together",
             "shared_prefix_tokens"),
            ("discmed_prefix_cache_tokens", "Prompt tokens not run again: an earlier request's KV cache (the prefix cache)",
             "prefix_cache_tokens"),
            ("discmed_cancelled_requests", "Requests cancelled because the client went away", "cancelled"),
            ("discmed_failed_requests", "Requests that failed alone inside a batch", "failed"),
        ):
            yield CounterMetricFamily(name, doc, value=float(getattr(st, attr)))
