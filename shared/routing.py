"""Choosing a venue: the larger net output after fees wins; ties go to the cheaper fee, then Raydium."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from shared.venues.base import Quote, VenueUnavailable


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
