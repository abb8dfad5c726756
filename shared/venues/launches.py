"""Simulated token launches: when each new token's pool appears, on which venue, and how it grows. Pure.

The schedule is a function of the deployment's seed and epoch, like prices, so every process agrees on
which pools exist at any moment without sharing state: token with launch slot k gets a pool against SOL
at `epoch + first + k * interval` on a venue drawn from the seed; its liquidity starts small and doubles
every step until it reaches its final depth. Each of those moments is a venue event (`pool_created`,
then `liquidity_changed`) that the quote stream publishes and sniper orders react to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from shared.domain.tokens import TOKENS
from shared.venues.base import Dex
from shared.venues.price_walk import reference_price, seeded_uniform
from shared.venues.raydium import pair_depth_usd

LAUNCH_QUOTE = "SOL"
INITIAL_LIQUIDITY_USD = Decimal(20_000)
FINAL_LIQUIDITY_USD = Decimal(2_000_000)
GROWTH_PER_STEP = Decimal(2)


class LaunchParams(Protocol):
    # Read-only properties, not plain attributes: a frozen config (`simulated.SimConfig`) must satisfy it.
    @property
    def seed(self) -> str: ...
    @property
    def epoch(self) -> float: ...
    @property
    def daily_vol(self) -> Decimal: ...
    @property
    def launch_first_s(self) -> float: ...
    @property
    def launch_interval_s(self) -> float: ...
    @property
    def liquidity_step_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Launch:
    token: str
    quote: str
    dex: Dex
    at: float
    step_s: float

    @property
    def steps(self) -> int:
        """Liquidity changes after creation until the pool is fully grown."""
        return math.ceil(math.log(FINAL_LIQUIDITY_USD / INITIAL_LIQUIDITY_USD) / math.log(GROWTH_PER_STEP))

    def step_at(self, t: float) -> int | None:
        if t < self.at:
            return None
        return min(int((t - self.at) // self.step_s), self.steps)

    def liquidity_usd(self, t: float) -> Decimal | None:
        """USD per side of the pool at t; None before it exists."""
        step = self.step_at(t)
        if step is None:
            return None
        return min(INITIAL_LIQUIDITY_USD * GROWTH_PER_STEP**step, FINAL_LIQUIDITY_USD)

    def moments(self) -> list[tuple[int, float]]:
        return [(step, self.at + step * self.step_s) for step in range(self.steps + 1)]


def schedule(sim: LaunchParams) -> list[Launch]:
    launches = []
    for token in TOKENS.values():
        if token.launch_slot is None:
            continue
        draw = seeded_uniform(sim.seed, "launch-venue", token.symbol)
        launches.append(
            Launch(
                token=token.symbol,
                quote=LAUNCH_QUOTE,
                dex=Dex.RAYDIUM if draw < 0.5 else Dex.METEORA,
                at=sim.epoch + sim.launch_first_s + token.launch_slot * sim.launch_interval_s,
                step_s=sim.liquidity_step_s,
            )
        )
    return sorted(launches, key=lambda launch: launch.at)


def launch_of(token_a: str, token_b: str, sim: LaunchParams) -> Launch | None:
    pair = {token_a, token_b}
    return next((launch for launch in schedule(sim) if {launch.token, launch.quote} == pair), None)


def depth_usd(dex: Dex, token_a: str, token_b: str, t: float, sim: LaunchParams) -> Decimal | None:
    """USD per side of `dex`'s pool for the pair at t, or None when that venue has no such pool."""
    if TOKENS[token_a].listed_at_genesis and TOKENS[token_b].listed_at_genesis:
        return pair_depth_usd(token_a, token_b)
    launch = launch_of(token_a, token_b, sim)
    if launch is None or launch.dex is not Dex(dex):
        return None
    return launch.liquidity_usd(t)


def is_listed(token_a: str, token_b: str, t: float, sim: LaunchParams) -> bool:
    """Whether any venue has a pool for the pair at t."""
    return any(depth_usd(dex, token_a, token_b, t, sim) is not None for dex in Dex)


@dataclass(frozen=True, slots=True)
class VenueEvent:
    kind: str  # "pool_created" | "liquidity_changed"
    dex: Dex
    token: str
    quote: str
    at: float
    step: int
    liquidity_usd: Decimal
    #: The pool's reserve of each of its two tokens: "liquidity in tokenOut" for a sniper order.
    reserves: dict[str, Decimal]

    @property
    def event_id(self) -> str:
        return f"{self.token}-{self.quote}:{self.dex.value}:{self.step}"

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.event_id,
            "kind": self.kind,
            "dex": self.dex.value,
            "tokens": f"{self.token},{self.quote}",
            "at": repr(self.at),
            "liquidityUsd": str(self.liquidity_usd),
            **{f"reserve:{symbol}": str(amount) for symbol, amount in self.reserves.items()},
        }


def _reserves(launch: Launch, liquidity_usd: Decimal, t: float, sim: LaunchParams) -> dict[str, Decimal]:
    reserves = {}
    for symbol in (launch.token, launch.quote):
        price = reference_price(sim.seed, symbol, t, sim.epoch, sim.daily_vol)
        reserves[symbol] = (liquidity_usd / price).quantize(TOKENS[symbol].unit, rounding=ROUND_DOWN)
    return reserves


def events_between(sim: LaunchParams, after: float, until: float) -> list[VenueEvent]:
    """Every venue event with after < at <= until, in time order."""
    events = []
    for launch in schedule(sim):
        for step, at in launch.moments():
            if after < at <= until:
                liquidity = launch.liquidity_usd(at)
                assert liquidity is not None  # every moment is at or after the pool's creation
                events.append(
                    VenueEvent(
                        kind="pool_created" if step == 0 else "liquidity_changed",
                        dex=launch.dex,
                        token=launch.token,
                        quote=launch.quote,
                        at=at,
                        step=step,
                        liquidity_usd=liquidity,
                        reserves=_reserves(launch, liquidity, at, sim),
                    )
                )
    return sorted(events, key=lambda event: event.at)


def next_moment_after(sim: LaunchParams, t: float) -> float | None:
    """The schedule's first event strictly after t (a pool created, a liquidity step); None after the last."""
    return min((at for launch in schedule(sim) for _step, at in launch.moments() if at > t), default=None)


def reserve_of(token_out: str, token_in: str, t: float, sim: LaunchParams) -> Decimal | None:
    """The largest reserve of token_out any venue's pool for the pair holds at t (None: no pool)."""
    depths = [d for dex in Dex if (d := depth_usd(dex, token_in, token_out, t, sim)) is not None]
    if not depths:
        return None
    price = reference_price(sim.seed, token_out, t, sim.epoch, sim.daily_vol)
    return max(depths) / price
