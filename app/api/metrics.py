"""Prometheus metrics of one app instance (its own registry, so test apps do not collide).

Label values come from bounded sets only: route templates (never raw paths), known HTTP methods,
status codes and models that answered; nothing a client types becomes a new series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .jobs import JobStore

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dino_http_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("dino_http_request_duration_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.names = Counter("dino_names_generated_total", "Names generated", ["model"], registry=self.registry)
        self.jobs = Gauge("dino_jobs", "Training jobs by status", ["status"], registry=self.registry)
        self.active = Gauge("dino_model_active_version", "1 for the active version of each model",
                            ["model", "version"], registry=self.registry)
        self.refused = Counter("dino_sampling_refused_total", "Sampling requests refused (429, server busy)",
                               registry=self.registry)
        self.stopped = Counter("dino_sampling_stopped_total", "Sampling stopped early (budget spent or client gone)",
                               ["reason"], registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request; `route` must be a route template or "unmatched"."""
        self.requests.labels(route, method if method in METHODS else "OTHER", str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self, jobs: JobStore, active: dict[str, str]) -> bytes:
        """Refresh the gauges that are read from elsewhere, then render the text format."""
        for status, count in jobs.counts().items():
            self.jobs.labels(status).set(count)
        self.active.clear()
        for model, version in active.items():
            self.active.labels(model, version).set(1)
        return generate_latest(self.registry)
