"""A Sentinel-managed Redis on loopback for one test module: a primary, replicas and sentinels, every one a
`redis-server` process from the system (sentinel mode is `redis-server <conf> --sentinel`), on free ports in a
temporary directory, with a password on the data nodes and another on the sentinels, and timings short
enough that a failover takes seconds. Every process is killed when the block ends, whatever happened."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.processes import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
MASTER_NAME = "engine-test"
#: The data nodes' password (REDIS_URL's) and the sentinels' own (REDIS_SENTINEL_PASSWORD).
DATA_PASSWORD = "data-s3cret"
SENTINEL_PASSWORD = "sentinel-s3cret"
#: How long a silent master takes to be subjectively down: small, so a failover takes seconds.
DOWN_AFTER_MS = 1000
#: Also how long a failover may take, and (twice this) how long sentinels wait before failing the same
#: master over again: small, so the test's successive failovers are not held back.
FAILOVER_TIMEOUT_MS = 3000
#: The key `replicas_caught_up` writes so that WAIT covers every write before it, and how long WAIT waits.
CAUGHT_UP_PROBE = "test:replicas-caught-up"
WAIT_MS = 1000
#: Longest wait for anything the cluster does (start, sync, promote); each wait polls and ends early.
DEADLINE_S = 30.0
POLL_S = 0.02


def wait_until(what: str, check: object, deadline_s: float = DEADLINE_S) -> object:
    """Poll `check()` until it returns something truthy (returned), failing with `what` after the deadline.
    Errors count as "not yet": the servers come and go on purpose here."""
    assert callable(check)
    until = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < until:
        try:
            if result := check():
                return result
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what} (last error: {last!r})")


@dataclass
class Node:
    name: str
    port: int
    conf: Path
    log: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    server: str = REDIS_SERVER

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.server, str(self.conf), *self.args], stdout=log, stderr=log)

    def kill(self) -> None:
        """`kill -9`: no shutdown, no goodbye to the clients or the replicas."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets open and answers nothing (a replica that falls behind
        without looking dead yet: its master takes writes it does not get)."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`; does nothing to a node that is not running."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def client(self, password: str, **options: object) -> redis.Redis:
        options.setdefault("socket_timeout", 2)
        return redis.Redis(host="127.0.0.1", port=self.port, password=password, **options)


@dataclass
class SentinelCluster:
    root: Path
    replicas: int = 2
    sentinels: int = 3
    data: list[Node] = field(default_factory=list)
    watchers: list[Node] = field(default_factory=list)
    #: When the last elected failover (after a master went down) ended, for `wait_out_the_failover_lockout`.
    last_election_at: float | None = None

    # --- what the engine is told -----------------------------------------------------------------------
    @property
    def sentinel_setting(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.watchers)

    def settings_env(self) -> dict[str, str]:
        return {
            "redis_url": f"redis://:{DATA_PASSWORD}@ignored.invalid:1/0",  # only the password and db count
            "redis_sentinels": self.sentinel_setting,
            "redis_sentinel_master": MASTER_NAME,
            "redis_sentinel_password": SENTINEL_PASSWORD,
        }

    # --- life ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        primary_port = free_port()
        for index in range(1 + self.replicas):
            port = primary_port if index == 0 else free_port()
            name = "primary" if index == 0 else f"replica{index}"
            directory = self.root / name
            directory.mkdir(parents=True)
            conf = directory / "redis.conf"
            lines = [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {directory}",
                'save ""',
                "appendonly no",
                f"requirepass {DATA_PASSWORD}",
                f"masterauth {DATA_PASSWORD}",
                # A replica that lost its master still answers reads (and refuses writes: READONLY).
                "replica-serve-stale-data yes",
                # Redis waits 5 s by default for more replicas to share a full sync: here it is time lost.
                "repl-diskless-sync-delay 0",
            ]
            if index:
                lines.append(f"replicaof 127.0.0.1 {primary_port}")
            conf.write_text("\n".join(lines) + "\n")
            self.data.append(Node(name, port, conf, directory / "redis.log", []))
        for index in range(self.sentinels):
            port = free_port()
            directory = self.root / f"sentinel{index + 1}"
            directory.mkdir(parents=True)
            conf = directory / "sentinel.conf"  # sentinels rewrite their file: it must be theirs, writable
            conf.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        f"dir {directory}",
                        f"requirepass {SENTINEL_PASSWORD}",
                        f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2",
                        f"sentinel auth-pass {MASTER_NAME} {DATA_PASSWORD}",
                        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                        f"sentinel parallel-syncs {MASTER_NAME} {self.replicas}",
                    ]
                )
                + "\n"
            )
            self.watchers.append(Node(f"sentinel{index + 1}", port, conf, directory / "sentinel.log", ["--sentinel"]))
        for node in self.data:
            node.start()
        for node in self.data:
            wait_until(f"{node.name} to answer", lambda node=node: node.client(DATA_PASSWORD).ping())
        wait_until("the replicas to sync", lambda: self.replicas_in_sync(self.data[0]))
        for node in self.watchers:
            node.start()
        wait_until("the sentinels to know each other and every replica", self._sentinels_agree)

    def stop(self) -> None:
        for node in [*self.watchers, *self.data]:
            with contextlib.suppress(Exception):
                node.kill()

    # --- what the sentinels say ----------------------------------------------------------------------------
    def sentinel_client(self, node: Node | None = None) -> redis.Redis:
        return (node or self.watchers[0]).client(SENTINEL_PASSWORD)

    def master_port(self) -> int:
        host, port = self.sentinel_client().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def node_at(self, port: int) -> Node:
        for node in self.data:
            if node.port == port:
                return node
        raise AssertionError(f"the sentinels name port {port}, none of this cluster's nodes")

    def a_replica(self) -> Node:
        """A running node that says it is a replica (a master demoted by a manual failover says so only once
        the sentinels got round to reconfiguring it)."""

        def replica() -> Node | None:
            for node in self.data:
                if node.process is not None and node.client(DATA_PASSWORD).role()[0] in (b"slave", "slave"):
                    return node
            return None

        found = wait_until("a node to be a replica", replica)
        assert isinstance(found, Node)
        return found

    def master(self) -> Node:
        return self.node_at(self.master_port())

    def _sentinels_agree(self) -> bool:
        master = self.data[0].port
        for node in self.watchers:
            state = self.sentinel_client(node).sentinel_master(MASTER_NAME)
            if int(state["port"]) != master or state["num-other-sentinels"] < self.sentinels - 1:
                return False
            if state["num-slaves"] < self.replicas:
                return False
        return True

    def replicas_in_sync(self, master: Node, at_least: int | None = None) -> bool:
        info = master.client(DATA_PASSWORD).info("replication")
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        needed = self.replicas if at_least is None else at_least
        return info["role"] == "master" and sum(r.get("state") == "online" for r in online) >= needed

    def replicas_caught_up(self, master: Node) -> bool:
        """Every replica holds every write the master took so far: whichever the sentinels promote then loses
        nothing. A probe write, then WAIT for all replicas: WAIT asks them to acknowledge at once, where the
        offsets INFO shows are their last once-a-second acknowledgements, always behind a master taking writes."""
        client = master.client(DATA_PASSWORD)
        if client.info("replication")["role"] != "master":
            return False
        client.set(CAUGHT_UP_PROBE, "1")
        return int(client.wait(self.replicas, WAIT_MS)) >= self.replicas

    def every_sentinel_names(self, port: int) -> bool:
        return all(
            int(self.sentinel_client(node).sentinel_get_master_addr_by_name(MASTER_NAME)[1]) == port
            for node in self.watchers
        )

    def promoted_other_than(self, old_port: int) -> int:
        """Wait until every sentinel names a master other than `old_port`, and it says it is one."""

        def promoted() -> int | None:
            port = self.master_port()
            if port == old_port or not self.every_sentinel_names(port):
                return None
            role = self.node_at(port).client(DATA_PASSWORD).role()
            return port if role[0] in (b"master", "master") else None

        return int(wait_until("a replica to be promoted", promoted))

    # --- faults --------------------------------------------------------------------------------------------
    def kill_master(self) -> Node:
        node = self.master()
        node.kill()
        return node

    def restart_as_replica(self, node: Node) -> None:
        """Start a killed node again as a replica of the current master (as an operator would), and wait
        until it is in sync and every sentinel counts it a healthy replica again."""
        master = self.master()
        node.args = ["--replicaof", "127.0.0.1", str(master.port)]
        node.start()
        wait_until(f"{node.name} to resync", lambda: self.replicas_in_sync(master))

        def healthy() -> bool:
            for watcher in self.watchers:
                replicas = self.sentinel_client(watcher).sentinel_slaves(MASTER_NAME)
                ours = [r for r in replicas if int(r["port"]) == node.port]
                if not ours or ours[0]["is_sdown"] or ours[0]["master-link-status"] != "ok":
                    return False
            return True

        wait_until(f"the sentinels to count {node.name} healthy", healthy)

    @contextlib.contextmanager
    def replicas_frozen(self) -> Iterator[list[Node]]:
        """Every running replica paused (SIGSTOP) for the block, then resumed: the master takes writes they
        do not get, as when replication lags or a master dies with writes in hand. Keep the block shorter than
        DOWN_AFTER_MS, or the sentinels count them down."""
        master = self.master()
        replicas = [node for node in self.data if node is not master and node.process is not None]
        for node in replicas:
            node.pause()
        try:
            yield replicas
        finally:
            for node in replicas:
                node.resume()

    def manual_failover(self) -> None:
        self.sentinel_client().sentinel_failover(MASTER_NAME)

    def elected(self) -> None:
        self.last_election_at = time.monotonic()

    def wait_out_the_failover_lockout(self) -> None:
        """A sentinel that started or voted for a failover of a master starts no other within twice the
        failover-timeout (it waits, then does): a master killed before then would measure that wait, not
        the failover. Waits only what is left of it. (`SENTINEL FAILOVER` is not held back.)"""
        if self.last_election_at is not None:
            left = self.last_election_at + 2 * FAILOVER_TIMEOUT_MS / 1000 - time.monotonic()
            if left > 0:
                time.sleep(left)


@contextlib.contextmanager
def sentinel_cluster(root: Path, *, replicas: int = 2, sentinels: int = 3) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(root, replicas=replicas, sentinels=sentinels)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
