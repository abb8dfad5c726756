"""The API's Prometheus metrics, in a registry of its own so tests can build many apps."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from shared.execution.backlog import ExecutionBacklog
from shared.observability.orders import OrderOutcomes
from shared.redis_memory import MemoryReading


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
        self.redis_memory = Gauge(
            "engine_redis_memory_bytes",
            "Redis INFO memory as the API last read it (used, maxmemory; 0 = no limit)",
            ["kind"],
            registry=self.registry,
        )
        self.refused = Counter(
            "engine_requests_refused_total",
            "Requests and WebSockets refused by a per-client limit",
            ["reason"],
            registry=self.registry,
        )
        # Leaked tasks (a WebSocket handler that never ended, say) show here as a count that only grows.
        self.asyncio_tasks = Gauge(
            "engine_api_asyncio_tasks", "Tasks alive in the API's event loop", registry=self.registry
        )
        self.asyncio_tasks.set_function(_task_count)
        # Cancels end orders here (engine_orders_terminal_total{status="cancelled"}); the workers count the rest.
        self.outcomes = OrderOutcomes(self.registry)
        ProcessCollector(registry=self.registry)

    def observe_backlog(self, backlog: ExecutionBacklog) -> None:
        self.queue_depth.labels("ready").set(backlog.ready)
        self.queue_depth.labels("delayed").set(backlog.delayed)
        self.dead_letters.set(backlog.dead_letters)

    def observe_redis_memory(self, reading: MemoryReading | None) -> None:
        if reading is not None:
            self.redis_memory.labels("used").set(reading.used)
            self.redis_memory.labels("maxmemory").set(reading.maxmemory)


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped from outside the event loop
        return 0
