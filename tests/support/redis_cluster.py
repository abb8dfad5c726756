"""A Redis Cluster on loopback for one test module, for sharding the engine over a cluster: by default three
primaries with one replica each, every node a `redis-server --cluster-enabled` process from the system, with its
own directory, `nodes.conf` and log in a temporary directory, an optional password, and a cluster-node-timeout
of 1 s so that a killed primary's replica is promoted within a few seconds. Every process is stopped when the
block ends, whatever happened.

The cluster is formed from Python (CLUSTER MEET, ADDSLOTSRANGE, REPLICATE) rather than `redis-cli --cluster
create`: that way the fixture decides which node is whose replica and which slots each primary gets, and it
waits for exactly what it needs (every node agreeing, every replica linked) instead of `redis-cli`'s own idea of
"done". Nodes keep the default `cluster-require-full-coverage yes`, as a production cluster does: while a dead
primary is not yet replaced the *whole* cluster answers CLUSTERDOWN, which is what the engine's clients must
ride out."""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.support.sentinel import Node, wait_until

#: Redis 7 or later: the nodes are configured (`shutdown-timeout`) and formed (CLUSTER ADDSLOTSRANGE) with what
#: 7.0 added. Debian's, as the issue asks; not the `redis-server` first on PATH, which under `uv run` is the
#: embedded Redis 6.2 of `make run`.
CLUSTER_SERVER = "/usr/bin/redis-server"


def cluster_server_usable() -> bool:
    if not Path(CLUSTER_SERVER).exists():
        return False
    version = subprocess.run([CLUSTER_SERVER, "--version"], capture_output=True, text=True, check=False).stdout
    major = version.partition(" v=")[2].partition(".")[0]
    return major.isdigit() and int(major) >= 7


HOST = "127.0.0.1"
#: A node's cluster bus listens on its port + 10000, which must be a port too.
BUS_OFFSET = 10000
#: Nodes take ports from [PORT_LOW, PORT_HIGH), so that their bus ports sit below the kernel's ephemeral range
#: (32768 and up on Linux): a killed node must get its port back on restart, and an ephemeral port may have been
#: handed meanwhile to some outgoing connection (the other nodes keep dialling the dead one's bus port).
PORT_LOW = 12000
PORT_HIGH = 32768 - BUS_OFFSET
#: How silent a node may be before its peers suspect it: small, so a failover takes two to three seconds
#: (suspicion, then FAIL agreed by a majority of primaries, then the replica's 0.5-1 s election delay).
NODE_TIMEOUT_MS = 1000
#: How long a node gets to exit on SIGTERM before it is killed.
STOP_TIMEOUT_S = 5.0
#: How many times a node whose port was taken between our check and its bind is moved to another port.
START_ATTEMPTS = 5


class NodeExited(AssertionError):
    """A node's process ended while the fixture waited for it (not a "not yet": `wait_until` stops at once)."""


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_port(taken: set[int]) -> int:
    """A port for a node that is free now with its bus port, and collides with no other node's either."""
    for _ in range(1000):
        port = random.randrange(PORT_LOW, PORT_HIGH)
        clashes = {port, port + BUS_OFFSET} & {p + offset for p in taken for offset in (0, BUS_OFFSET)}
        if not clashes and _bindable(port) and _bindable(port + BUS_OFFSET):
            return port
    raise AssertionError(f"no free port pair in [{PORT_LOW}, {PORT_HIGH}) and its bus ports")


@dataclass(frozen=True)
class Seen:
    """One line of CLUSTER NODES: how one node sees another (or itself)."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def failing(self) -> bool:
        return bool({"fail", "fail?"} & self.flags)


def _parse_nodes(text: str) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        node_id, address, flags, master, _ping, _pong, _epoch, _link, *slots = line.split()
        port = int(address.split("@")[0].rsplit(":", 1)[1] or 0)
        ranges = []
        for item in slots:
            if item.startswith("["):  # a slot being imported or migrated: nobody moves slots here
                continue
            start, _, end = item.partition("-")
            ranges.append((int(start), int(end or start)))
        seen[node_id] = Seen(
            node_id, port, frozenset(flags.split(",")), None if master == "-" else master, tuple(ranges)
        )
    return seen


def _parse_info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def alive(node: Node) -> bool:
    return node.process is not None and node.process.poll() is None


@dataclass
class RedisClusterNodes:
    """The cluster's nodes under `root`: `primaries_count` primaries (the first nodes), then their replicas in
    turn (node4 replicates node1, node5 node2, ...). Roles move with failovers: ask `primaries()`,
    `replicas_of()` and `primary_for_key()` rather than counting on the order."""

    root: Path
    primaries_count: int = 3
    replicas_per_primary: int = 1
    password: str | None = None
    #: The slot range of each primary, in order; None: equal ranges (`partition_slot_ranges` spreads partitions).
    slot_ranges: list[tuple[int, int]] | None = None
    nodes: list[Node] = field(default_factory=list, init=False)
    #: Each node's cluster id (CLUSTER MYID) by name: kept in its nodes.conf, so the same across restarts.
    ids: dict[str, str] = field(default_factory=dict, init=False)
    #: The slots a primary served when `kill` took it down, for `wait_for_promotion`.
    _slots_at_kill: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict, init=False, repr=False)
    _clients: dict[str, redis.Redis] = field(default_factory=dict, init=False, repr=False)

    # --- what the engine is told ---------------------------------------------------------------------------
    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every running node: what a cluster client is seeded with."""
        return [(HOST, node.port) for node in self.nodes if alive(node)]

    @property
    def url(self) -> str:
        """A `redis://` URL of one running node (the first): a cluster client finds the others from it."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        host, port = self.startup_nodes[0]
        return f"redis://{auth}{host}:{port}"

    # --- life ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        count = self.primaries_count * (1 + self.replicas_per_primary)
        for index in range(count):
            name = f"node{index + 1}"
            directory = self.root / name
            directory.mkdir(parents=True)
            self.nodes.append(
                Node(name, 0, directory / "redis.conf", directory / "redis.log", [], server=CLUSTER_SERVER)
            )
        self._start_on_free_ports()
        self._form()

    def _write_conf(self, node: Node) -> None:
        directory = node.conf.parent
        lines = [
            f"port {node.port}",
            f"bind {HOST}",
            f'dir "{directory}"',
            "daemonize no",
            'save ""',
            "appendonly no",
            "cluster-enabled yes",
            f'cluster-config-file "{directory / "nodes.conf"}"',
            f"cluster-node-timeout {NODE_TIMEOUT_MS}",
            # A replica promotes itself however long it has been cut off from its primary: with a 1 s node
            # timeout the default (10 node timeouts) could leave a shard that lost both to no one.
            "cluster-replica-validity-factor 0",
            # Tests name whose replica a node is: a replica must not wander to a primary that has none.
            "cluster-allow-replica-migration no",
            # Redis waits 5 s by default for more replicas to share a full sync: here it is time lost.
            "repl-diskless-sync-delay 0",
            # A primary told to stop waits this long for its replicas to catch up (default 10 s).
            "shutdown-timeout 1",
        ]
        if self.password:
            lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
        node.conf.write_text("\n".join(lines) + "\n")

    def _start_on_free_ports(self) -> None:
        waiting = list(self.nodes)
        for _attempt in range(START_ATTEMPTS):
            for node in waiting:
                node.log.unlink(missing_ok=True)
                node.port = _pick_port({other.port for other in self.nodes if other is not node and other.port})
                self._write_conf(node)
                node.start()
            retry = []
            for node in waiting:
                try:
                    wait_until(f"{node.name} to answer", lambda node=node: self._answers(node))
                except NodeExited:
                    if "Address already in use" not in node.log.read_text(errors="replace"):
                        raise
                    retry.append(node)  # lost its port to someone between our check and its bind
            if not retry:
                return
            waiting = retry
        raise AssertionError(f"could not start {[n.name for n in waiting]} on free ports:\n{self.logs()}")

    def _form(self) -> None:
        for epoch, node in enumerate(self.nodes, start=1):
            self.ids[node.name] = self.ask(node, "CLUSTER", "MYID")
            # Distinct config epochs from the start, as `redis-cli --cluster create` sets them: otherwise the
            # nodes settle their collisions one by one after the slots are assigned.
            self.ask(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ask(first, "CLUSTER", "MEET", HOST, node.port)
        wait_until("every node to know every other", self._all_met)

        primaries = self.nodes[: self.primaries_count]
        for index, node in enumerate(primaries):
            start = index * REDIS_CLUSTER_HASH_SLOTS // self.primaries_count
            end = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // self.primaries_count - 1
            if self.slot_ranges is not None:
                start, end = self.slot_ranges[index]
            self.ask(node, "CLUSTER", "ADDSLOTSRANGE", start, end)
        replicas = self.nodes[self.primaries_count :]
        for index, node in enumerate(replicas):
            primary = primaries[index % self.primaries_count]
            self.ask(node, "CLUSTER", "REPLICATE", self.ids[primary.name])
        self.wait_until_healthy()

    def _all_met(self) -> bool:
        for node in self.nodes:
            view = self._view(node)
            if set(view) != set(self.ids.values()):
                return False
            if any({"handshake", "noaddr"} & seen.flags for seen in view.values()):
                return False
        return True

    def stop(self) -> None:
        """SIGTERM to every running node at once, then SIGKILL to any still running after STOP_TIMEOUT_S."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        running = [node for node in self.nodes if alive(node)]
        for node in running:
            with contextlib.suppress(Exception):
                assert node.process is not None
                node.process.send_signal(signal.SIGCONT)  # a paused node would never see the SIGTERM
                node.process.send_signal(signal.SIGTERM)
        for node in running:
            with contextlib.suppress(Exception):
                assert node.process is not None
                try:
                    node.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    node.kill()
                node.process = None
        for node in self.nodes:  # whatever else is left (a node whose wait above raised)
            with contextlib.suppress(Exception):
                node.kill()

    # --- talking to one node -------------------------------------------------------------------------------
    def client(self, node: Node) -> redis.Redis:
        """A plain (not cluster-aware) client of one node, answers decoded, kept for the cluster's life."""
        if node.name not in self._clients:
            self._clients[node.name] = node.client(self.password, decode_responses=True, socket_connect_timeout=1)
        return self._clients[node.name]

    def ask(self, node: Node, *command: object) -> Any:
        reply = self.client(node).execute_command(*command)
        return reply.decode() if isinstance(reply, bytes) else reply

    def _answers(self, node: Node) -> bool:
        if not alive(node):
            raise NodeExited(f"{node.name} (port {node.port}) exited:\n{node.log.read_text(errors='replace')}")
        return bool(self.client(node).ping())

    def _view(self, node: Node) -> dict[str, Seen]:
        return _parse_nodes(self.ask(node, "CLUSTER", "NODES"))

    def cluster_info(self, node: Node) -> dict[str, str]:
        return _parse_info(self.ask(node, "CLUSTER", "INFO"))

    def node_by_id(self, node_id: str) -> Node:
        for node in self.nodes:
            if self.ids[node.name] == node_id:
                return node
        raise AssertionError(f"no node of this cluster has id {node_id}")

    # --- the topology --------------------------------------------------------------------------------------
    def live_nodes(self) -> list[Node]:
        return [node for node in self.nodes if alive(node)]

    def _current_view(self) -> dict[str, Seen]:
        """CLUSTER NODES of the first running node whose cluster state is ok (else of any running node): the
        same view a cluster client takes. During a failover views differ; `wait_until_healthy` makes them one."""
        fallback = None
        for node in self.live_nodes():
            try:
                view = self._view(node)
                if self.cluster_info(node).get("cluster_state") == "ok":
                    return view
                fallback = fallback or view
            except redis.RedisError:
                continue
        if fallback is None:
            raise AssertionError(f"no node of the cluster answers:\n{self.logs()}")
        return fallback

    def primaries(self) -> list[Node]:
        """The running nodes that serve slots, in `nodes` order."""
        view = self._current_view()
        serving = {seen.node_id for seen in view.values() if seen.slots and "master" in seen.flags}
        return [node for node in self.live_nodes() if self.ids[node.name] in serving]

    def replicas_of(self, primary: Node) -> list[Node]:
        """The running nodes that replicate `primary`, in `nodes` order."""
        view = self._current_view()
        primary_id = self.ids[primary.name]
        following = {seen.node_id for seen in view.values() if seen.master_id == primary_id}
        return [node for node in self.live_nodes() if self.ids[node.name] in following]

    def primary_for_key(self, key: str | bytes) -> Node:
        """The node serving `key`'s slot (hash tags count: `{a}x` and `{a}y` are served by the same one)."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for seen in self._current_view().values():
            if "master" in seen.flags and any(start <= slot <= end for start, end in seen.slots):
                return self.node_by_id(seen.node_id)
        raise AssertionError(f"no primary serves slot {slot} (key {key!r})")

    def _healthy(self) -> bool:
        """Every running node: cluster state ok with every slot covered by an owner nobody suspects, the same
        slot map, each slot's owner a running primary, each running replica linked to a running primary and
        known as its replica by everyone, and no running node suspected by anyone."""
        live = self.live_nodes()
        live_ids = {self.ids[node.name] for node in live}
        views: dict[str, dict[str, Seen]] = {}
        for node in live:
            info = self.cluster_info(node)
            if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != REDIS_CLUSTER_HASH_SLOTS:
                return False
            views[node.name] = self._view(node)
        owners = {_slot_owners(view) for view in views.values()}
        if len(owners) != 1:
            return False
        owner_ids = {owner for _start, _end, owner in next(iter(owners))}
        if not owner_ids <= live_ids:
            return False
        for node in live:
            replication = self.client(node).info("replication")
            node_id = self.ids[node.name]
            seen = [view.get(node_id) for view in views.values()]
            if any(s is None or s.failing for s in seen):
                return False
            if replication["role"] == "master":
                if any("master" not in s.flags for s in seen if s is not None):
                    return False
                continue
            if replication.get("master_link_status") != "up":
                return False
            primary = self._node_at(int(replication["master_port"]))
            if primary is None or not alive(primary) or self.ids[primary.name] not in owner_ids:
                return False
            if any(s.master_id != self.ids[primary.name] for s in seen if s is not None):
                return False
        return True

    def replicas_caught_up(self, primary: Node) -> bool:
        """`primary` has replicas and each has applied every write `primary` took so far (its offset, not the
        once-a-second acknowledgement the primary shows): whichever is promoted then loses nothing."""
        replicas = self.replicas_of(primary)
        offset = int(self.client(primary).info("replication")["master_repl_offset"])
        return bool(replicas) and all(
            int(self.client(replica).info("replication").get("slave_repl_offset", -1)) >= offset for replica in replicas
        )

    def _node_at(self, port: int) -> Node | None:
        return next((node for node in self.nodes if node.port == port), None)

    def wait_until_healthy(self, timeout: float = 30.0) -> None:
        try:
            wait_until("the cluster to be healthy", self._healthy, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    # --- faults --------------------------------------------------------------------------------------------
    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (one that ends the process: SIGKILL is a crash, SIGTERM a shutdown) and wait for the
        process to end. The slots it served are remembered for `wait_for_promotion`."""
        assert alive(node), f"{node.name} is not running"
        with contextlib.suppress(redis.RedisError, AssertionError):
            mine = self._current_view().get(self.ids[node.name])
            if mine is not None and mine.slots:
                self._slots_at_kill[node.name] = mine.slots
        assert node.process is not None
        node.process.send_signal(sig)
        node.process.wait(timeout=STOP_TIMEOUT_S * 2)
        node.process = None
        client = self._clients.pop(node.name, None)
        if client is not None:
            client.close()

    def restart(self, node: Node, *, wait: bool = True) -> None:
        """Start a stopped node again on its port with its nodes.conf: it rejoins the cluster by itself, as a
        replica of whoever took its slots if it was a primary that was failed over (and empty: no persistence).
        With `wait`, returns once the whole cluster is healthy again."""
        assert not alive(node), f"{node.name} is still running"
        with node.log.open("ab") as log:
            log.write(b"\n----- restart -----\n")
        node.start()
        wait_until(f"{node.name} to answer", lambda: self._answers(node))
        if wait:
            self.wait_until_healthy()

    def wait_for_promotion(self, old_primary: Node, timeout: float = 30.0) -> Node:
        """Wait until another running node serves every slot `old_primary` served (as every running node sees
        it) and says it is a primary, and the cluster state is ok on every running node; return that node."""
        slots = self._slots_at_kill.get(old_primary.name)
        if slots is None:
            mine = self._current_view().get(self.ids[old_primary.name])
            assert mine is not None and mine.slots, f"{old_primary.name} serves no slots"
            slots = mine.slots
        old_id = self.ids[old_primary.name]

        def promoted() -> Node | None:
            heirs = set()
            for node in self.live_nodes():
                if self.cluster_info(node).get("cluster_state") != "ok":
                    return None
                view = self._view(node)
                for start, end in slots:
                    owners = {s.node_id for s in view.values() if "master" in s.flags and _serves(s, start, end)}
                    if len(owners) != 1:
                        return None
                    heirs |= owners
            if len(heirs) != 1 or old_id in heirs:
                return None
            heir = self.node_by_id(heirs.pop())
            if not alive(heir) or self.client(heir).info("replication")["role"] != "master":
                return None
            return heir

        try:
            found = wait_until(f"a replica of {old_primary.name} to be promoted", promoted, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None
        assert isinstance(found, Node)
        return found

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"----- {node.name} (port {node.port})\n{node.log.read_text(errors='replace')[-tail:]}"
            for node in self.nodes
            if node.log.exists()
        )


def _slot_owners(view: dict[str, Seen]) -> tuple[tuple[int, int, str], ...]:
    owned = ((start, end, s.node_id) for s in view.values() if "master" in s.flags for start, end in s.slots)
    return tuple(sorted(owned))


def _serves(seen: Seen, start: int, end: int) -> bool:
    return any(first <= start and end <= last for first, last in seen.slots)


@contextlib.contextmanager
def redis_cluster(
    tmp_dir: Path,
    primaries: int = 3,
    replicas_per_primary: int = 1,
    password: str | None = None,
    slot_ranges: list[tuple[int, int]] | None = None,
) -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(tmp_dir, primaries, replicas_per_primary, password, slot_ranges)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
