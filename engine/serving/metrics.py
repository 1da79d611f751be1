"""The server's Prometheus metrics, per model: what `/metrics` serves.

Requests, their status codes and latencies are counted per served name (`minilm-0`); batch
sizes, batch compute time, queue depth and requests dropped because their client left are
counted per queue (one per loaded module: instances that share weights share a queue).
The standard `process_*` metrics (resident memory, CPU seconds, open fds, start time) come
along, so that memory per replica can be watched.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # `_created` series only add noise to a server's few metrics

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """One registry per server (never the process-global one: tests run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "doinfer_requests",
            "Inference requests answered, by served model name and HTTP status code.",
            ["model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "doinfer_request_duration_seconds",
            "Time from a request's arrival to its answer, queueing included.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "doinfer_batch_size",
            "Requests run together in one model call.",
            ["queue"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "doinfer_batch_duration_seconds",
            "Time of one model call: tokenize, run, decode.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "doinfer_queue_depth",
            "Requests waiting for the model.",
            ["queue"],
            registry=self.registry,
        )
        self.dropped_requests = Counter(
            "doinfer_dropped_requests",
            "Queued requests dropped before computing because their client went away.",
            ["queue"],
            registry=self.registry,
        )

    def answered(self, model: str, code: int, seconds: float) -> None:
        self.requests.labels(model, str(code)).inc()
        self.latency.labels(model).observe(seconds)

    def for_queue(self, queue: str) -> QueueMetrics:
        return QueueMetrics(self, queue)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class QueueMetrics:
    """A batcher's observer (engine.serving.batching.BatchObserver) for one queue."""

    def __init__(self, metrics: ServerMetrics, queue: str) -> None:
        self._size = metrics.batch_size.labels(queue)
        self._seconds = metrics.batch_seconds.labels(queue)
        self._dropped = metrics.dropped_requests.labels(queue)
        self._depth = metrics.queue_depth.labels(queue)

    def watch_depth(self, depth: Callable[[], float]) -> None:
        """Read the queue's depth at scrape time from `depth()`."""
        self._depth.set_function(depth)

    def batch(self, size: int, seconds: float) -> None:
        self._size.observe(size)
        self._seconds.observe(seconds)

    def dropped(self) -> None:
        self._dropped.inc()
