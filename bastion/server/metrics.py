"""`/metrics` in the Prometheus text format (prometheus_client): requests and latencies per route
template, imports and the records they read, events the server wrote, the database pool, and the
event counter per tenant (events written) and each relay sink's and webhook's lag.

No label carries a key, a tenant name or a URL with values: route templates only. Set
BASTION_METRICS_TOKEN to require `Authorization: Bearer <token>` for the scrape. With
`--workers N` each worker counts its own requests unless PROMETHEUS_MULTIPROC_DIR is set
(prometheus_client's multiprocess mode)."""

from __future__ import annotations

import hmac
import os
import time

from fastapi import FastAPI, Request, Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily

from bastion.server.problems import problem

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("bastion_http_requests", "HTTP requests answered",
                   ("method", "route", "status"), registry=REGISTRY)
LATENCY = Histogram("bastion_http_request_duration_seconds", "Time to answer a request",
                    ("method", "route"), registry=REGISTRY,
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
IMPORTS = Counter("bastion_imports", "Import runs finished through the API", ("kind", "status"),
                  registry=REGISTRY)
IMPORTED_RECORDS = Counter("bastion_import_records", "Records read by imports through the API",
                           registry=REGISTRY)


def imported(kind: str, status: str, records: int) -> None:
    IMPORTS.labels(kind, status).inc()
    IMPORTED_RECORDS.inc(max(0, records))


class _StoreCollector:
    """Read at scrape time: the pool, and each tenant's event counter as far as the server's
    login may see them (under row-level security an application login sees none)."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        pool = self.store.engine.pool
        checked_out = GaugeMetricFamily("bastion_db_pool_checked_out", "Connections in use")
        size = GaugeMetricFamily("bastion_db_pool_size", "Connections the pool keeps")
        checked_out.add_metric([], getattr(pool, "checkedout", lambda: 0)())
        size.add_metric([], getattr(pool, "size", lambda: 0)())
        yield checked_out
        yield size
        seq = GaugeMetricFamily("bastion_tenant_event_seq", "Events written per tenant (its counter)",
                                labels=["tenant_id"])
        try:
            for tenant_id, value in self.store.event_counters().items():
                seq.add_metric([str(tenant_id)], value)
        except Exception:  # noqa: BLE001 - a scrape never fails for this
            pass
        yield seq
        lag = GaugeMetricFamily("bastion_relay_lag", "Events after a relay sink's or webhook "
                                "subscription's cursor", labels=["tenant_id", "sink"])
        try:
            for t in self.store.tenants():
                feed = self.store.tenant_by_id(t.id).feed
                last = feed.last_seq()
                for sink, cursor in feed.cursors().items():
                    lag.add_metric([str(t.id), sink], last - cursor)
                for sub in feed.list():
                    lag.add_metric([str(t.id), f"webhook:{sub.id}"], last - sub.cursor)
        except Exception:  # noqa: BLE001 - a scrape never fails for this
            pass
        yield lag


class Instrument:
    """ASGI middleware: counts and times every request by its route template."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or "unmatched"
            # An included router's route carries its own path, without the /v1 prefix.
            if scope["path"].startswith("/v1/") and not template.startswith("/v1"):
                template = "/v1" + template
            if template != "/metrics":
                REQUESTS.labels(scope["method"], template, str(status["code"])).inc()
                LATENCY.labels(scope["method"], template).observe(time.perf_counter() - started)


def install(app: FastAPI, store) -> None:
    per_app = CollectorRegistry()
    per_app.register(_StoreCollector(store))
    token = os.environ.get("BASTION_METRICS_TOKEN")

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    def metrics(request: Request):
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return problem(request, 401, "the metrics token is required (BASTION_METRICS_TOKEN)")
        body = generate_latest(REGISTRY) + generate_latest(per_app)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Instrument)
