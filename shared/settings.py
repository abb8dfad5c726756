"""Every knob of the engine, read once from the environment at a service's edge.

Services build one `Settings()` in their entry point and pass it (or the parts they need) down;
nothing in `shared/` reads the environment by itself.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PAIRS = "SOL-USDC,USDC-SOL,SOL-USDT,USDT-SOL,JUP-USDC,USDC-JUP,BONK-SOL,SOL-BONK"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # --- servers -----------------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis used for queues, streams and state")
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/postgres", description="PostgreSQL for history (db-sync writes it)"
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # --- simulation (part of the public contract) ----------------------------------------------------
    sim_latency_scale: Decimal = Field(Decimal(1), ge=0, description="multiplies every simulated latency")
    sim_failure_rate: Decimal = Field(Decimal("0.02"), ge=0, le=1, description="chance one venue call fails")
    sim_seed: str | None = Field(None, description="seed for prices, latencies, failures; unset = random")
    sim_daily_volatility: Decimal = Field(Decimal("0.05"), ge=0, description="std-dev of a day's price move")
    sim_launch_first_s: float = Field(30.0, ge=0, description="first simulated token launch, after the epoch")
    sim_launch_interval_s: float = Field(90.0, gt=0, description="time between simulated token launches")
    sim_liquidity_step_s: float = Field(10.0, gt=0, description="a launched pool's liquidity doubles this often")

    # --- orders --------------------------------------------------------------------------------------
    max_attempts: int = Field(3, ge=1, le=10, description="execution attempts before an order fails")
    retry_min_backoff_ms: int = Field(500, ge=1, description="first retry delay; doubles, with jitter")
    retry_max_backoff_ms: int = Field(10_000, ge=1)
    idempotency_ttl_s: int = Field(86_400, ge=60, description="how long an Idempotency-Key is remembered")
    order_retention_s: int = Field(86_400, ge=60, description="how long terminal orders stay in Redis")
    max_queue_depth: int = Field(50_000, ge=0, description="execution backlog that makes the API answer 503")

    # --- access control ------------------------------------------------------------------------------
    auth_enabled: bool = Field(False, description="require an API key on every order and admin route")
    api_keys: str = Field(
        "", description="comma-separated name:role:sha256hex keys (role user or admin); more with `order-engine keys`"
    )

    # --- services ------------------------------------------------------------------------------------
    quote_pairs: str = Field(DEFAULT_PAIRS, description="comma-separated tokenIn-tokenOut pairs to stream")
    quote_interval_ms: int = Field(500, ge=10)
    quote_reference_usd: Decimal = Field(Decimal(100), gt=0, description="USD size the streamed quotes price")
    worker_max_in_flight: int = Field(1000, ge=1, description="orders one execution worker holds at once")
    worker_heartbeat_timeout_ms: int = Field(60_000, ge=1000, description="after this a silent worker is dead")
    worker_maintenance_chance: int = Field(1000, ge=0, le=1_000_000, description="per-million dramatiq sweep")
    order_lease_ms: int = Field(15_000, ge=1000, description="how long a worker's claim on an order lasts")
    dbsync_batch_size: int = Field(500, ge=1)
    dbsync_block_ms: int = Field(200, ge=1)

    # --- logging -------------------------------------------------------------------------------------
    log_json: bool = False
    log_level: str = "INFO"

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_hashes(cls, value: str) -> str:
        from shared.auth.api_keys import parse_configured  # the format's one definition lives there

        parse_configured(value)
        return value

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
