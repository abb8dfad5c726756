"""Every knob of the engine, read once from the environment at a service's edge.

Services build one `Settings()` in their entry point and pass it (or the parts they need) down;
nothing in `shared/` reads the environment by itself.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.orders import DEFAULT_RESTING_MAX_LIFETIME_S

DEFAULT_PAIRS = "SOL-USDC,USDC-SOL,SOL-USDT,USDT-SOL,JUP-USDC,USDC-JUP,BONK-SOL,SOL-BONK"

#: The contract promises a 4xx for order bodies over 16 KiB; no route needs more.
DEFAULT_MAX_BODY_BYTES = 16 * 1024
#: Requests per second per client: one local load script offers ~300 orders/s, so this never throttles the
#: project's own benchmarks, while a runaway client cannot take a whole API process for itself.
DEFAULT_RATE_LIMIT_PER_S = 1000
#: The rate limit's sliding window; a client that was idle may spend a whole window's allowance at once.
DEFAULT_RATE_LIMIT_WINDOW_S = 2
#: Open WebSockets per client (per API process): far more than one client follows at once (a socket ends
#: with its order), far fewer than the file descriptors one process has.
DEFAULT_WS_MAX_PER_CLIENT = 256
#: Clients only send pings and the odd control message; anything this big is garbage (closed with 1009).
DEFAULT_WS_MAX_MESSAGE_BYTES = 64 * 1024
#: The names a browser reaches a local API by. Any other name is what a DNS-rebinding page would use.
DEFAULT_ALLOWED_HOSTS = "localhost,127.0.0.1,[::1]"
#: The default (a week) is DEFAULT_RESTING_MAX_LIFETIME_S, beside the rule; at most ten years, so that now plus
#: the lifetime is always a date the calendar (and PostgreSQL) can hold.
MAX_RESTING_MAX_LIFETIME_S = 10 * 366 * 24 * 3600
#: A /ws?userId= reader this many events behind is not reading: it is closed (4008) rather than letting
#: its outbox grow in the API's memory. Far more than a burst of one owner's orders produces.
DEFAULT_WS_USER_OUTBOX_MAX = 10_000
#: Connections one address may hold open to one API process before they carry a WebSocket: a client needs a
#: handful (httpx pools 100, the project's benchmarks at most 256), while idle connections nobody limits take
#: the process's file descriptors (20,000 idle ones from one client: every other client refused).
DEFAULT_HTTP_MAX_CONNECTIONS_PER_CLIENT = 512
#: How long a connection may take to send a whole request, headers and body (from connecting, or from the
#: first byte of the next request on a kept-alive one): uvicorn sets no such limit, so a connection that sends
#: nothing, a header a byte a minute (slowloris), or a Content-Length and never the body, is held for ever.
DEFAULT_HTTP_REQUEST_TIMEOUT_S = 10.0
#: Largest request line + headers: httptools sets no limit, so one connection could push hundreds of megabytes
#: of headers into the API's memory in seconds. Browsers send a few KB; proxies commonly allow 8-64 KB.
DEFAULT_HTTP_MAX_HEADER_BYTES = 64 * 1024


#: Redis's own example name for a monitored master (sentinel.conf); a deployment names its own.
DEFAULT_REDIS_SENTINEL_MASTER = "mymaster"


def redacted(url: str) -> str:
    """A URL setting as it may be shown (a log line, an error): without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (an IPv6 host in brackets) as (host, port) pairs; ValueError names a bad one."""
    addresses = []
    for raw in value.split(","):
        if not (item := raw.strip()):
            continue
        host, sep, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a sentinel is host:port, not {item!r}")
        addresses.append((host, int(port)))
    return addresses


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # --- servers -----------------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis used for queues, streams and state")
    # A Sentinel-managed Redis: with REDIS_SENTINELS set, every client asks the sentinels where the master of
    # REDIS_SENTINEL_MASTER is (and asks again whenever it moves), and REDIS_URL gives only the master's
    # credentials, database and scheme (its host and port are not used). See shared/redis_client.py.
    redis_sentinels: str = Field(
        "", description="comma-separated host:port of Redis Sentinels; unset = REDIS_URL's server, no failover"
    )
    redis_sentinel_master: str = Field(
        DEFAULT_REDIS_SENTINEL_MASTER, min_length=1, description="the master name the sentinels monitor"
    )
    redis_sentinel_password: str | None = Field(
        None, description="the sentinels' own password (their requirepass), if they have one"
    )
    # A Redis Cluster (docs/sharding.md): REDIS_URL names any one node; every client reads the slot map from it
    # and sends each command to the primary of its keys' slot (shared/redis_cluster.py). Not with sentinels:
    # a cluster fails over by itself.
    redis_cluster: bool = Field(False, description="REDIS_URL is a node of a Redis Cluster; follow its slot map")
    # Writes that survive a failover (shared/redis_replicas.py): each is acknowledged by replicas (WAIT)
    # before its caller goes on. With sentinels, by every replica they count healthy, and at least this many;
    # on a cluster, by every replica its primary reports online, and at least this many.
    redis_min_replica_acks: int = Field(
        0, ge=0, le=16, description="replicas that must acknowledge each write before it counts as done"
    )
    # Order partitions (shared/domain/partitions.py): new orders are spread over this many, each under its own hash tag,
    # so that on a Redis Cluster they spread over its shards. Raise it freely; lower it only with the partitions
    # above the new count drained.
    partitions: int = Field(
        1, ge=1, le=256, description="order partitions: how many event streams and queues new orders spread over"
    )
    redis_replica_ack_timeout_ms: int = Field(
        1000, ge=10, le=60_000, description="how long a write waits for its replica acknowledgements"
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/postgres", description="PostgreSQL for history (db-sync writes it)"
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_redis_connections: int = Field(64, ge=2, description="Redis connections one API process may open")
    embedded_redis_maxmemory: str = Field(
        "1gb",
        pattern=r"(?i)^[0-9]+(b|k|kb|m|mb|g|gb)?$",
        description="`make run`'s embedded Redis: its maxmemory (noeviction: never drops an order); 0 = none",
    )

    # --- simulation (part of the public contract) ----------------------------------------------------
    sim_latency_scale: Decimal = Field(Decimal(1), ge=0, description="multiplies every simulated latency")
    sim_failure_rate: Decimal = Field(Decimal("0.02"), ge=0, le=1, description="chance one venue call fails")
    sim_seed: str | None = Field(None, description="seed for prices, latencies, failures; unset = random")
    sim_daily_volatility: Decimal = Field(Decimal("0.05"), ge=0, description="std-dev of a day's price move")
    sim_launch_first_s: float = Field(30.0, ge=0, description="first simulated token launch, after the epoch")
    sim_launch_interval_s: float = Field(90.0, gt=0, description="time between simulated token launches")
    sim_liquidity_step_s: float = Field(10.0, gt=0, description="a launched pool's liquidity doubles this often")
    sim_drop_rate: Decimal = Field(
        Decimal("0.01"), ge=0, le=1, description="chance a sent transaction never lands (it expires and is re-sent)"
    )
    sim_blockhash_valid_slots: int = Field(
        150, ge=1, description="slots (400 ms) a transaction's blockhash stays valid; a dropped one waits this out"
    )
    sim_arbitrage_half_life_s: float = Field(
        15.0, ge=0, description="arbitrage halves a swap's push on a pool's price this often; 0 = pools never move"
    )

    # --- orders --------------------------------------------------------------------------------------
    max_attempts: int = Field(3, ge=1, le=10, description="execution attempts before an order fails")
    retry_min_backoff_ms: int = Field(500, ge=1, description="first retry delay; doubles, with jitter")
    retry_max_backoff_ms: int = Field(10_000, ge=1)
    idempotency_ttl_s: int = Field(86_400, ge=60, description="how long an Idempotency-Key is remembered")
    order_retention_s: int = Field(86_400, ge=60, description="how long terminal orders stay in Redis")
    max_queue_depth: int = Field(50_000, ge=0, description="execution backlog that makes the API answer 503")
    resting_max_lifetime_s: int = Field(
        DEFAULT_RESTING_MAX_LIFETIME_S,
        ge=60,
        le=MAX_RESTING_MAX_LIFETIME_S,
        description="longest a limit/sniper order may rest; also the expiry of one sent without expiresAt",
    )
    max_resting_per_owner: int = Field(
        1000,
        ge=0,
        description="resting limit, sniper and conditional orders one client may have at once (→ 409); 0 = off",
    )
    redis_memory_high_fraction: float = Field(
        0.9, ge=0, le=1, description="Redis used_memory / maxmemory above which submissions get 503; 0 = off"
    )

    # --- access control ------------------------------------------------------------------------------
    auth_enabled: bool = Field(
        False, description="require an API key on every order route; admin routes answer 403 unless it is on"
    )
    api_keys: str = Field(
        "", description="comma-separated name:role:sha256hex keys (role user or admin); more with `order-engine keys`"
    )
    allowed_hosts: str = Field(
        DEFAULT_ALLOWED_HOSTS,
        description="Host names browsers may reach the API by (DNS rebinding); API_HOST is added; * = any",
    )
    allowed_origins: str = Field(
        "", description="origins other than the API's own whose pages may change state or open WebSockets; * = any"
    )

    # --- limits on what one client may ask of the API (services/api/guards) ---------------------------
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1, description="largest request body, any route; → 413")
    rate_limit_per_s: int = Field(
        DEFAULT_RATE_LIMIT_PER_S, ge=0, description="requests/s per client over all API replicas (Redis); 0 = off"
    )
    rate_limit_window_s: int = Field(
        DEFAULT_RATE_LIMIT_WINDOW_S, ge=1, description="sliding window of the rate limit; burst = rate × window"
    )
    ws_max_per_client: int = Field(
        DEFAULT_WS_MAX_PER_CLIENT, ge=0, description="open WebSockets per client per API process; 0 = off"
    )
    ws_max_message_bytes: int = Field(
        DEFAULT_WS_MAX_MESSAGE_BYTES, ge=1, description="largest WebSocket message a client may send; → 1009"
    )
    ws_user_outbox_max: int = Field(
        DEFAULT_WS_USER_OUTBOX_MAX, ge=1, description="events a /ws?userId= reader may fall behind by; → 4008"
    )
    http_max_connections_per_client: int = Field(
        DEFAULT_HTTP_MAX_CONNECTIONS_PER_CLIENT,
        ge=0,
        description="open connections (not yet WebSockets) per address per API process; 0 = off",
    )
    http_max_header_bytes: int = Field(
        DEFAULT_HTTP_MAX_HEADER_BYTES, ge=1024, description="largest request line + headers; → 431"
    )
    http_request_timeout_s: float = Field(
        DEFAULT_HTTP_REQUEST_TIMEOUT_S,
        gt=0,
        description="time a connection has to send a whole request (headers, body); → 408",
    )
    forwarded_allow_ips: str = Field(
        "", description="proxies (IPs/CIDRs, comma-separated) trusted to name the client in X-Forwarded-For"
    )

    # --- services ------------------------------------------------------------------------------------
    quote_pairs: str = Field(DEFAULT_PAIRS, description="comma-separated tokenIn-tokenOut pairs to stream")
    quote_interval_ms: int = Field(500, ge=10)
    quote_reference_usd: Decimal = Field(Decimal(100), gt=0, description="USD size the streamed quotes price")
    worker_max_in_flight: int = Field(1000, ge=1, description="orders one execution worker holds at once")
    worker_fetch_linger_ms: int = Field(
        10, ge=0, le=1000, description="after fetching orders, the worker waits this long before fetching again"
    )
    worker_heartbeat_timeout_ms: int = Field(60_000, ge=1000, description="after this a silent worker is dead")
    worker_maintenance_chance: int = Field(1000, ge=0, le=1_000_000, description="per-million dramatiq sweep")
    order_lease_ms: int = Field(15_000, ge=1000, description="how long a worker's claim on an order lasts")
    worker_drain_s: float = Field(
        10.0, ge=0, le=300, description="on SIGTERM, how long orders in flight may finish before being handed back"
    )
    dbsync_batch_size: int = Field(500, ge=1)
    dbsync_block_ms: int = Field(1000, ge=1)
    dbsync_linger_ms: int = Field(
        100, ge=0, description="after a batch that was not full, gather this long before the next; 0 = none"
    )
    database_statement_timeout_ms: int = Field(
        5000, ge=0, description="PostgreSQL statement_timeout of the API's reads; 0 = none"
    )
    dbsync_statement_timeout_ms: int = Field(
        60_000, ge=0, description="PostgreSQL statement_timeout of db-sync's batch writes; 0 = none"
    )

    # --- probes: /metrics and /health of the services other than the API (shared/observability) -------
    metrics_host: str = Field("127.0.0.1", description="where a service's /metrics and /health listen")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="their port; unset = the service's own default (9101-9105); 0 = none"
    )
    health_stale_after_s: float = Field(
        10.0, gt=0, description="/health answers 503 once a service's loop has not reported for this long"
    )

    # --- logging -------------------------------------------------------------------------------------
    log_json: bool = False
    log_level: str = "INFO"
    log_flush_ms: int = Field(
        50, ge=0, description="info lines are written in batches this often (warnings at once); 0 = every line"
    )

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_hashes(cls, value: str) -> str:
        from shared.auth.api_keys import parse_configured  # the format's one definition lives there

        parse_configured(value)
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str) -> str:
        parse_sentinels(value)  # a typo fails at start-up, not at the first failover
        return value

    @model_validator(mode="after")
    def _cluster_or_sentinels(self) -> Settings:
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError("REDIS_CLUSTER and REDIS_SENTINELS exclude each other: a cluster fails over by itself")
        return self

    @property
    def redis_sentinel_addresses(self) -> list[tuple[str, int]]:
        """The sentinels as (host, port) pairs; empty when Redis is not Sentinel-managed."""
        return parse_sentinels(self.redis_sentinels)

    @cached_property
    def pairs(self) -> list[tuple[str, str]]:
        result = []
        for raw in self.quote_pairs.split(","):
            token_in, _, token_out = raw.strip().partition("-")
            if token_in and token_out:
                result.append((token_in.upper(), token_out.upper()))
        return result

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named, whatever spelling the user gave."""
        url = self.database_url
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url
