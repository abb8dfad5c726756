"""The uvicorn internals services/api/connections.py subclasses are still where we left them.

An upgrade of uvicorn past the pinned range that moves any of them fails here, naming what moved and the range
it was tested with; the module's docstring says why each one is used.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import signal
import tomllib
from pathlib import Path

import pytest
import uvicorn
from packaging.specifiers import SpecifierSet
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from services.api import connections
from services.api import server as server_api

ROOT = Path(__file__).resolve().parents[2]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _fail(problems: list[str]) -> None:
    if problems:
        pytest.fail(
            f"uvicorn {uvicorn.__version__} moved internals services/api/connections.py relies on (tested with "
            f"uvicorn{connections.UVICORN_TESTED_RANGE}):\n  - " + "\n  - ".join(problems),
            pytrace=False,
        )


def test_the_pin_is_the_tested_range_and_the_installed_uvicorn_is_in_it() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(dep for dep in dependencies if dep.startswith("uvicorn"))
    assert re.sub(r"^uvicorn(\[[^]]*\])?", "", pin) == connections.UVICORN_TESTED_RANGE
    assert uvicorn.__version__ in SpecifierSet(connections.UVICORN_TESTED_RANGE)


def test_every_overridden_hook_is_still_uvicorns_with_the_same_parameters() -> None:
    guarded = connections.GuardedHttpProtocol
    problems = []
    for hook in connections.OVERRIDDEN_HOOKS:
        theirs = getattr(HttpToolsProtocol, hook, None)
        if theirs is None:
            problems.append(f"HttpToolsProtocol.{hook}: gone")
            continue
        ours = guarded.__dict__.get(hook)
        if ours is None:
            problems.append(f"GuardedHttpProtocol.{hook}: not overridden, but listed in OVERRIDDEN_HOOKS")
        elif list(inspect.signature(ours).parameters) != list(inspect.signature(theirs).parameters):
            problems.append(f"HttpToolsProtocol.{hook}: parameters are now {inspect.signature(theirs)}")
    hooks_we_override = {
        name for name, value in guarded.__dict__.items() if callable(value) and hasattr(HttpToolsProtocol, name)
    }
    unlisted = hooks_we_override - set(connections.OVERRIDDEN_HOOKS)
    if unlisted:
        problems.append(f"GuardedHttpProtocol overrides {sorted(unlisted)}, missing from OVERRIDDEN_HOOKS")
    _fail(problems)


def test_the_attributes_read_are_set_where_they_were() -> None:
    loop = asyncio.new_event_loop()
    try:
        protocol = HttpToolsProtocol(
            config=Config(app=lambda scope, receive, send: None), server_state=ServerState(), app_state={}, _loop=loop
        )
        transport = FakeTransport()
        protocol.connection_made(transport)
        problems = []
        if getattr(protocol, "transport", None) is not transport:
            problems.append("transport: not the connection's transport after connection_made")
        if getattr(protocol, "client", None) != ("127.0.0.1", 50000):
            problems.append("client: not the peer's (host, port) after connection_made")
        if getattr(protocol, "loop", None) is not loop:
            problems.append("loop: not the protocol's event loop")
        if not hasattr(protocol, "parser"):
            problems.append("parser: gone")
        if getattr(protocol, "cycle", "missing") is not None:
            problems.append("cycle: no longer None before a request's headers are in")
        protocol.data_received(b"GET /ws/orders/x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        if getattr(protocol, "url", None) != b"/ws/orders/x?y=1":
            problems.append("url: not the raw request target once the headers are in")
        scope = getattr(protocol, "scope", None)
        if not isinstance(scope, dict) or scope.get("headers") != [(b"host", b"a")]:
            problems.append("scope['headers']: not the (name, value) byte pairs received")
        cycle = getattr(protocol, "cycle", None)
        if cycle is None or not hasattr(cycle, "response_complete"):
            problems.append("cycle.response_complete: no cycle with it once the headers are in")
        protocol.connection_lost(None)
        _fail(problems)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_the_server_loop_services_api_server_replaces_is_still_uvicorns() -> None:
    """`EngineServer` overrides `main_loop` and `handle_exit` and relies on `on_tick(counter)` refreshing the
    Date header on multiples of TICKS_PER_HEADER_REFRESH and answering whether to exit."""
    problems = []
    for name, parameters in (
        ("main_loop", ["self"]),
        ("on_tick", ["self", "counter"]),
        ("handle_exit", ["self", "sig", "frame"]),
    ):
        theirs = getattr(uvicorn.Server, name, None)
        if theirs is None:
            problems.append(f"Server.{name}: gone")
        elif list(inspect.signature(theirs).parameters) != parameters:
            problems.append(f"Server.{name}: parameters are now {inspect.signature(theirs)}")
    config = Config(app=lambda scope, receive, send: None)
    config.load()
    server = uvicorn.Server(config)
    if asyncio.run(server.on_tick(server_api.TICKS_PER_HEADER_REFRESH)) is not False:
        problems.append("Server.on_tick: no longer False while the server should run")
    if not any(name == b"date" for name, _ in server.server_state.default_headers):
        problems.append("Server.on_tick: no Date header after a tick on a multiple of TICKS_PER_HEADER_REFRESH")
    _fail(problems)


def test_the_engine_server_stops_at_a_signal_without_waiting_for_its_tick() -> None:
    config = Config(app=lambda scope, receive, send: None)
    config.load()
    server = server_api.EngineServer(config)

    async def stop_soon() -> float:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(server.main_loop())
        await asyncio.sleep(0.05)
        started = loop.time()
        server.handle_exit(signal.SIGTERM, None)
        await asyncio.wait_for(task, server_api.TICK_S * 5)
        return loop.time() - started

    assert asyncio.run(stop_soon()) < server_api.TICK_S / 2
