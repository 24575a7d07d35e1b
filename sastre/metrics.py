"""Prometheus metrics, one registry per application (tests build many apps in one process)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dialog.outbox.tally import AttemptTally
from sastre.outbox_gauges import OutboxGauges

__all__ = ["Metrics", "metrics_middleware", "render"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "sastre_http_requests",
            "HTTP requests answered, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sastre_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        # The outbox's backlog, due and deferred apart (sastre.outbox_gauges).
        self.outbox = OutboxGauges(self.registry)
        self.outbox_sends = Gauge(
            "sastre_outbox_sends",
            "Delivery attempts recorded, by channel and outcome: calls to providers (sent, "
            "retry, failed), calls a crash cut short (interrupted), sends refused at the claim "
            "(revoked) and deliveries staff started again (retried)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        # What it shows, counted incrementally from the database (dialog.outbox.tally).
        self.attempts = AttemptTally()


def _route_name(request: web.Request) -> str:
    # The route template, not the path: one series per endpoint, not one per customer id.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metrics_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = _route_name(request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)

    return middleware


def render(metrics: Metrics) -> web.Response:
    response = web.Response(body=generate_latest(metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
