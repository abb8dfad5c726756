"""Choosing where an order goes: the best single venue (the larger net output after fees wins; ties go to the
cheaper fee, then Raydium), and the best route, which splits the order across venues when that pays more."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from shared.domain.tokens import TOKENS
from shared.route_quote import price_impact_pct, route_plan
from shared.route_split import Leg, Route, best_route
from shared.venues.base import Curve, Dex, Quote, SwapLeg, VenueUnavailable


class NoQuotes(VenueUnavailable):
    """Every venue failed to quote: nothing to route to (a transient condition worth retrying)."""


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    best: Quote
    quotes: tuple[Quote, ...]

    @property
    def runner_up(self) -> Quote | None:
        others = [q for q in self.quotes if q is not self.best]
        return others[0] if others else None

    def quotes_message(self) -> dict[str, dict[str, str | int | float]]:
        return {q.dex.value: q.as_dict() for q in self.quotes}


def _rank(quote: Quote) -> tuple[Decimal, Decimal, bool]:
    return (quote.amount_out, -quote.fee, quote.dex.value == "raydium")


def choose_best(quotes: Iterable[Quote]) -> RoutingDecision:
    available = tuple(quotes)
    if not available:
        raise NoQuotes("no venue returned a quote")
    return RoutingDecision(best=max(available, key=_rank), quotes=available)


@dataclass(frozen=True, slots=True)
class RoutedOrder:
    """Where an order's amount goes: the best split of it over the venues that quoted (shared/route_split.py),
    priced on the pools those quotes came with."""

    decision: RoutingDecision
    route: Route[Dex]
    #: The pool each venue quoted on, best venue first.
    curves: dict[Dex, Curve]

    @property
    def ranked_legs(self) -> tuple[Leg[Dex], ...]:
        """The route's legs, largest first: the first one's venue is the order's `dex`."""
        return tuple(sorted(self.route.legs, key=lambda leg: leg.amount_in, reverse=True))

    @property
    def legs(self) -> tuple[SwapLeg, ...]:
        return tuple(SwapLeg(leg.venue, leg.amount_in) for leg in self.ranked_legs)

    @property
    def dex(self) -> Dex:
        return self.legs[0].dex

    @property
    def shape(self) -> str:
        return "split" if len(self.route.legs) > 1 else "single"

    @property
    def quoted_out(self) -> Decimal:
        return self.route.amount_out

    @property
    def quoted_at(self) -> float:
        """When the oldest quote the route uses was priced (UTC epoch s): the route holds from then on."""
        used = {leg.venue for leg in self.route.legs}
        return min(quote.ts for quote in self.decision.quotes if quote.dex in used)

    def price_impact_pct(self) -> Decimal:
        best_rate = max(curve.best_rate for curve in self.curves.values())
        return price_impact_pct(self.route, self.route.amount_in, best_rate)

    def plan(self) -> list[dict[str, object]]:
        return route_plan(self.route, self.curves)


def choose_route(quotes: Iterable[Quote], token_in: str, token_out: str, amount: Decimal) -> RoutedOrder:
    """The best route for `amount` over the quoted venues' pools (every venue's quote carries its pool)."""
    decision = choose_best(quotes)
    ranked = sorted(decision.quotes, key=_rank, reverse=True)  # ties between routes go to the better venue
    curves = {quote.dex: quote.pool for quote in ranked if quote.pool is not None}
    if len(curves) < len(ranked):
        raise ValueError("a venue quoted without its pool: there is nothing to route on")
    route = best_route(curves, amount, in_unit=TOKENS[token_in].unit, out_unit=TOKENS[token_out].unit)
    return RoutedOrder(decision, route, curves)
