"""Splitting an exact-in swap across venues for the most output: pure maths over the venues' curves.

Every venue's output is a concave function of its input (each next unit pays no more than the one before), so
the best split gives every venue it uses the same marginal rate λ, and no venue it leaves out a better one. The
router finds that λ by bisection: at rate λ each curve takes `input_above_rate(λ)`, and the λ at which those
appetites add up to the amount is the split. A venue needs only what the port's `Curve` asks; the router
knows nothing of constant products or bins, so a venue added later changes nothing here.

Splitting has a price outside this maths (an instruction per leg, a larger transaction), so `best_route` keeps
no leg under MIN_LEG_SHARE of the amount and splits only when the split, in whole token units, pays at least
MIN_SPLIT_GAIN more than the best single venue.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Generic, TypeVar

from shared.venues.base import Curve

Venue = TypeVar("Venue", bound=Hashable)

#: Bisection steps on λ, each halving its bracket: the bracket ends at 2⁻⁴⁸ of the best rate, far below what
#: moves an output by one unit of any token (the output lost to an allocation error is of its square).
RATE_STEPS = 48
#: How far down λ is looked for before concluding the curves cannot absorb the amount (bins run out).
LOWEST_RATE_SHARE = Decimal("1e-12")
#: The smallest leg worth its own instruction, as a share of the amount.
MIN_LEG_SHARE = Decimal("0.01")
#: What a split must pay over the best single venue, as a share of that venue's output (one basis point):
#: another leg costs compute and a larger transaction, which a gain of a few millionths does not repay.
MIN_SPLIT_GAIN = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Leg(Generic[Venue]):
    venue: Venue
    amount_in: Decimal
    amount_out: Decimal


@dataclass(frozen=True, slots=True)
class Route(Generic[Venue]):
    legs: tuple[Leg[Venue], ...]

    @property
    def amount_in(self) -> Decimal:
        return sum((leg.amount_in for leg in self.legs), Decimal(0))

    @property
    def amount_out(self) -> Decimal:
        return sum((leg.amount_out for leg in self.legs), Decimal(0))


def optimal_split(curves: Mapping[Venue, Curve], amount_in: Decimal) -> dict[Venue, Decimal]:
    """The input per venue that maximises the total output, before any rounding; it adds up to `amount_in`."""
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    if not curves:
        raise ValueError("no venue to route to")

    ranked = sorted(curves, key=lambda venue: curves[venue].best_rate, reverse=True)
    first, others = ranked[0], ranked[1:]
    if not others or curves[first].input_above_rate(curves[others[0]].best_rate) >= amount_in:
        # The best venue takes it all before its rate falls to any other's first unit: nothing to split.
        return {venue: amount_in if venue == first else Decimal(0) for venue in curves}

    def taken(rate: Decimal) -> dict[Venue, Decimal]:
        return {venue: curve.input_above_rate(rate) for venue, curve in curves.items()}

    # Bracket λ: at `high` nobody takes anything; halve `low` until the appetites cover the amount.
    high = max(curve.best_rate for curve in curves.values())
    low, lowest = high / 2, high * LOWEST_RATE_SHARE
    while sum(taken(low).values()) < amount_in and low > lowest:
        high, low = low, low / 2
    for _ in range(RATE_STEPS):
        middle = (low + high) / 2
        if sum(taken(middle).values()) >= amount_in:
            low = middle
        else:
            high = middle
    above, at_low = taken(high), taken(low)
    # Between the bracket's ends, each curve's extra appetite is flat bins at λ or a sliver of a smooth curve:
    # the rest of the amount goes in proportion to it (all of it pays within the bracket's width of λ).
    rest = amount_in - sum(above.values())
    slack = {venue: max(at_low[venue] - above[venue], Decimal(0)) for venue in curves}
    total_slack = sum(slack.values())
    if total_slack > 0:
        split = {venue: above[venue] + rest * slack[venue] / total_slack for venue in curves}
    else:  # the curves cannot absorb the amount at any rate: the excess buys nothing wherever it goes
        split = dict(above)
    return _exactly(split, amount_in)


def best_route(
    curves: Mapping[Venue, Curve],
    amount_in: Decimal,
    *,
    in_unit: Decimal,
    out_unit: Decimal,
) -> Route[Venue]:
    """The most output for `amount_in`, in whole units of each token (`in_unit`, `out_unit`: their smallest
    units): the best split across `curves`, or one venue when splitting does not pay MIN_SPLIT_GAIN more. Ties
    between venues go to the one listed first."""

    def out(venue: Venue, amount: Decimal) -> Decimal:
        return curves[venue].amount_out(amount).quantize(out_unit, rounding=ROUND_DOWN)

    single = max((Route((Leg(venue, amount_in, out(venue, amount_in)),)) for venue in curves), key=_route_rank)
    split = _split_in_legs_worth_sending(curves, amount_in)
    if len(split) > 1:
        legs = _in_units(split, amount_in, in_unit)
        route = Route(tuple(Leg(venue, amount, out(venue, amount)) for venue, amount in legs.items()))
        if route.amount_out > single.amount_out * (1 + MIN_SPLIT_GAIN):
            return route
    return single


def _route_rank(route: Route[Venue]) -> tuple[Decimal, int]:
    return route.amount_out, -len(route.legs)


def _split_in_legs_worth_sending(curves: Mapping[Venue, Curve], amount_in: Decimal) -> dict[Venue, Decimal]:
    """The optimal split among the venues whose legs come to at least MIN_LEG_SHARE of the amount."""
    used = dict(curves)
    while True:
        split = optimal_split(used, amount_in)
        worth = {venue for venue, amount in split.items() if amount >= amount_in * MIN_LEG_SHARE}
        if len(worth) == len(used) or not worth:
            return {venue: amount for venue, amount in split.items() if amount > 0}
        used = {venue: curve for venue, curve in used.items() if venue in worth}


def _in_units(split: Mapping[Venue, Decimal], amount_in: Decimal, unit: Decimal) -> dict[Venue, Decimal]:
    """Each leg rounded down to whole units; the units left over go to the largest leg, so the legs add up."""
    legs = _exactly({venue: amount.quantize(unit, rounding=ROUND_DOWN) for venue, amount in split.items()}, amount_in)
    return {venue: amount for venue, amount in legs.items() if amount > 0}


def _exactly(split: dict[Venue, Decimal], amount_in: Decimal) -> dict[Venue, Decimal]:
    """`split` with what it lacks of `amount_in` (rounding) settled on its largest leg."""
    split[max(split, key=split.__getitem__)] += amount_in - sum(split.values())
    return split
