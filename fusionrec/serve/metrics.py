"""``GET /metrics``: request counts, latencies, batch sizes and the backlog, for Prometheus.

Each app has its own registry, so several apps in one process (tests) keep
separate counts. Requests are labelled by route template
(``/items/{item_id:path}``), never by the raw path, which would make one
series per id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """The service's instruments, in a registry of their own.

    Examples
    --------
    >>> metrics = ServiceMetrics(items=lambda: 3, pending=lambda: 0)
    >>> metrics.batch_done("search", 4, 0.05)
    >>> b"fusionrec_catalogue_items 3.0" in metrics.render()
    True
    """

    def __init__(self, *, items: Callable[[], int], pending: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fusionrec_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fusionrec_request_seconds",
            "Time from request to the end of the answer, by route.",
            ["route"],
            registry=self.registry,
        )
        self.batch_photos = Histogram(
            "fusionrec_batch_size",
            "Jobs (photos or changes) per batch, by kind.",
            ["kind"],
            buckets=_BATCH_SIZES,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "fusionrec_batch_seconds",
            "Time a batch took in its worker thread, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "fusionrec_overloaded",
            "Requests refused with 503 because the backlog was full.",
            registry=self.registry,
        )
        Gauge(
            "fusionrec_pending_jobs", "Jobs waiting for a batch.", registry=self.registry
        ).set_function(pending)
        Gauge(
            "fusionrec_catalogue_items", "Items in the catalogue.", registry=self.registry
        ).set_function(items)

    def batch_done(self, kind: Hashable, size: int, seconds: float) -> None:
        """Record one batch."""
        name = kind[0] if isinstance(kind, tuple) else str(kind)
        self.batch_photos.labels(name).observe(size)
        self.batch_seconds.labels(name).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: count and time each HTTP request in ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
