"""The API's Prometheus metrics, in a registry of its own so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.execution.backlog import ExecutionBacklog


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.orders_accepted = Counter(
            "engine_orders_accepted_total", "Orders accepted with a 200", ["type"], registry=self.registry
        )
        self.orders_rejected = Counter(
            "engine_orders_rejected_total", "Order submissions refused", ["reason"], registry=self.registry
        )
        self.idempotent_replays = Counter(
            "engine_idempotent_replays_total", "Submissions answered from an Idempotency-Key", registry=self.registry
        )
        self.websockets = Gauge("engine_websocket_connections", "Open WebSockets", ["path"], registry=self.registry)
        self.events_delivered = Gauge(
            "engine_websocket_events_fanned_out", "Events handed to WebSocket subscribers", registry=self.registry
        )
        self.queue_depth = Gauge(
            "engine_execution_queue_depth",
            "Messages waiting in the execution queue (ready, delayed retries), read at scrape time",
            ["queue"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "engine_dead_letters", "Dead-lettered execution messages, read at scrape time", registry=self.registry
        )

    def observe_backlog(self, backlog: ExecutionBacklog) -> None:
        self.queue_depth.labels("ready").set(backlog.ready)
        self.queue_depth.labels("delayed").set(backlog.delayed)
        self.dead_letters.set(backlog.dead_letters)
