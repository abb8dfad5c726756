"""The dramatiq internals of shared/execution/dramatiq_internals.py are still where we left them.

An upgrade of dramatiq past the pinned range that moves any of them fails here, each failure naming the
internal and the range it was tested with; see the module's docstring for why each one is used.
"""

from __future__ import annotations

import inspect
import tomllib
import uuid
from pathlib import Path
from queue import PriorityQueue

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.middleware import Retries
from dramatiq.worker import ConsumerThread
from packaging.specifiers import SpecifierSet

from shared import redis_keys
from shared.execution import dramatiq_internals as internals
from shared.execution.broker import EngineBroker, LingeringConsumer
from shared.execution.messages import EXECUTE_ORDER, execute_order_message
from tests.support.internals import Problems

ROOT = Path(__file__).resolve().parents[2]


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _offline_broker(cls=RedisBroker, **kwargs) -> RedisBroker:
    # Nothing connects until a command is sent; the port is never dialled.
    return cls(url="redis://127.0.0.1:1/0", namespace=redis_keys.dramatiq_namespace(0), **kwargs)


def test_dramatiq_internals_are_where_we_left_them():
    problems = Problems()

    # The pin, and the installed version inside it.
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    problems.check(
        "pyproject.toml pin",
        f"dramatiq[redis]{internals.TESTED_RANGE}" in deps,
        f"expected dramatiq[redis]{internals.TESTED_RANGE} among {deps}",
    )
    problems.check(
        "installed dramatiq",
        dramatiq.__version__ in SpecifierSet(internals.TESTED_RANGE),
        f"{dramatiq.__version__} is outside the tested range",
    )

    # _RedisConsumer, subclassed by LingeringConsumer.
    def redis_consumer():
        cls = internals.RedisConsumer
        assert issubclass(cls, dramatiq.Consumer), "no longer a dramatiq.Consumer"
        params = _params(cls.__init__)
        assert params == ["self", "broker", "queue_name", "prefetch", "timeout"], f"__init__{params}"
        assert "__next__" in vars(cls), "__next__ is no longer its own"
        consumer = cls(_offline_broker(), "q", 1, 100)
        assert isinstance(consumer.message_cache, list), "message_cache is not a list"
        assert isinstance(consumer.queued_message_ids, set), "queued_message_ids is not a set"
        assert "queued_message_ids.discard" in inspect.getsource(cls.ack), "ack() no longer discards the id"
        assert type(_offline_broker().consume("q")) is cls, "RedisBroker.consume does not build it"
        engine = _offline_broker(EngineBroker)
        assert type(engine.consume("q")) is LingeringConsumer, "RedisBroker.consume ignores consumer_class"

    problems.attempt("dramatiq.brokers.redis._RedisConsumer", redis_consumer)

    # _should_do_maintenance, _max_unpack_size and the dispatch script's arguments, rebuilt by dispatch_args.
    def dispatch():
        assert _params(RedisBroker._should_do_maintenance) == ["self", "command"], "_should_do_maintenance"
        assert _params(RedisBroker._max_unpack_size) == ["self"], "_max_unpack_size"

        class Probe(RedisBroker):  # its own cache of the Lua stack size, not RedisBroker's
            pass

        broker = _offline_broker(Probe, maintenance_chance=0)
        broker.scripts["maxstack"] = lambda: 8000
        calls = []
        broker.scripts["dispatch"] = lambda *, args, keys: calls.append((keys, args))
        broker.do_ack("q", "redis-id")
        ours = [*internals.dispatch_args(broker, "ack", "q"), "redis-id"]
        (keys, theirs), *_ = calls
        assert keys == [broker.namespace], f"dispatch keys {keys}"
        del theirs[1], ours[1]  # the timestamps
        assert theirs == ours, f"RedisBroker dispatches {theirs}, dispatch_args builds {ours}"

    problems.attempt("RedisBroker._dispatch / _should_do_maintenance / _max_unpack_size", dispatch)

    # Worker._add_worker, overridden by ThreadFactoryWorker.
    def add_worker():
        assert _params(dramatiq.Worker._add_worker) == ["self"], "signature"
        assert "self._add_worker()" in inspect.getsource(dramatiq.Worker.start), "Worker.start no longer calls it"

    problems.attempt("dramatiq.Worker._add_worker", add_worker)

    # ConsumerThread.delay_queue, its replacement on a connection error, and close(); kept_delays swaps __class__.
    def consumer_thread():
        thread = ConsumerThread(
            broker=StubBroker(), queue_name="q", prefetch=1, work_queue=PriorityQueue(), worker_timeout=100
        )
        assert isinstance(thread.__dict__.get("delay_queue"), PriorityQueue), "delay_queue is not an attribute"
        assert "consumer" in thread.__dict__, "no consumer attribute"
        run = inspect.getsource(ConsumerThread.run)
        assert 'emit_after("consumer_thread_boot", self)' in run, "run() no longer emits consumer_thread_boot"
        assert "except BrokerConnectionError" in run and "self.delay_queue = PriorityQueue()" in run, (
            "run() no longer replaces delay_queue on a connection error (the loss kept_delays works around)"
        )
        assert "self.delay_queue" in inspect.getsource(ConsumerThread.close), "close() no longer requeues it"
        sub = type("Sub", (ConsumerThread,), {})
        internals.swap_class(thread, sub)
        assert type(thread) is sub, "__class__ swap refused"

    problems.attempt("dramatiq.worker.ConsumerThread (delay_queue, close, __class__ swap)", consumer_thread)

    # Retries.after_process_message, wrapped by DurableRetries (dramatiq PR 545).
    def retries():
        params = _params(Retries.after_process_message)
        assert params == ["self", "broker", "message", "result", "exception"], f"signature {params}"
        assert "broker.enqueue(" in inspect.getsource(Retries.after_process_message), "no longer enqueues"

    problems.attempt("dramatiq.middleware.Retries.after_process_message (PR 545)", retries)

    # The message bytes we build by hand decode with dramatiq's own decoder.
    def message_format():
        order_id = uuid.uuid4()
        queued = execute_order_message(order_id)
        message = dramatiq.Message.decode(queued.data)
        assert message.queue_name == redis_keys.EXECUTION_QUEUE, f"queue {message.queue_name}"
        assert message.actor_name == EXECUTE_ORDER, f"actor {message.actor_name}"
        assert list(message.args) == [str(order_id)], f"args {message.args}"
        assert message.options[internals.REDIS_MESSAGE_ID] == queued.redis_message_id, "redis_message_id option"

    problems.attempt("dramatiq.Message encoding (hand-built in messages.py)", message_format)

    # The key names the Lua scripts and dead-letter code write equal dramatiq's own naming.
    def key_names():
        q = redis_keys.EXECUTION_QUEUE
        assert redis_keys.dramatiq_delayed(0, q) == f"{redis_keys.dramatiq_namespace(0)}:{dq_name(q)}", "delay queue"
        assert redis_keys.dramatiq_dead_letters(0, q) == f"{redis_keys.dramatiq_namespace(0)}:{xq_name(q)}", (
            "dead letters"
        )

    problems.attempt("dramatiq's Redis key names (dq_name, xq_name)", key_names)

    problems.raise_if_any()
