"""``GET /metrics``: the service's counters in Prometheus' text format (prometheus_client), held by one
registry per app, so two apps in one process (tests) never share a count."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# an error's kind -> its HTTP status
ERROR_KINDS = {"bad_request": 400, "bad_image": 400, "too_large": 413, "overloaded": 503, "not_ready": 503,
               "internal": 500}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch: int, queue_depth, in_flight):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("minwa_serve_requests", "classify requests answered, by HTTP status", ["code"],
                                registry=r)
        self.errors = Counter("minwa_serve_errors", "classify requests refused, by kind", ["kind"], registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)  # every kind shows, at 0, from the start
        self.latency = Histogram("minwa_serve_request_seconds", "classify latency of answered requests, "
                                 "body received to answer", buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("minwa_serve_batch_seconds", "seconds per forward pass (one batch)",
                                   buckets=LATENCY_BUCKETS, registry=r)
        sizes = sorted({1, *(2 ** i for i in range(max_batch.bit_length())), max_batch})
        self.batch_size = Histogram("minwa_serve_batch_size", "images per forward pass", buckets=sizes, registry=r)
        Gauge("minwa_serve_queue_depth", "images decoded and waiting for a batch", registry=r).set_function(queue_depth)
        Gauge("minwa_serve_in_flight", "classify requests admitted and not yet answered",
              registry=r).set_function(in_flight)
        self.ready = Gauge("minwa_serve_ready", "1 once the models are loaded and warmed up", registry=r)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()
        self.requests.labels(str(ERROR_KINDS[kind])).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
