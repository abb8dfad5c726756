"""The tokens the engine trades, and how a user's spelling of one becomes the engine's.

Native SOL cannot sit in an AMM pool: it is wrapped into wSOL (an SPL token) for routing and unwrapped on
output. Both spellings therefore route as the same token, `SOL`, and an order from SOL to wSOL is a no-op
that validation rejects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

import base58

from shared.domain.untrusted import ASCII_SPACE, clip

WSOL_MINT = "So11111111111111111111111111111111111111112"


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    mint: str
    decimals: int
    #: Reference USD price the simulated market starts from.
    usd_price: Decimal
    #: Largest amount one order may swap, in this token.
    max_order_amount: Decimal
    #: Daily volatility relative to the market's default (stablecoins barely move).
    volatility_factor: Decimal = Decimal(1)
    #: None for tokens listed from the start; else its place in the simulated launch schedule.
    launch_slot: int | None = None

    @property
    def unit(self) -> Decimal:
        """The smallest amount of the token (10^-decimals): what amounts are rounded to."""
        return Decimal(1).scaleb(-self.decimals)

    @property
    def listed_at_genesis(self) -> bool:
        return self.launch_slot is None


def _launch_mint(symbol: str) -> str:
    """A valid, stable mint address for a simulated token launch."""
    return base58.b58encode(hashlib.sha256(f"order-engine:launch:{symbol}".encode()).digest()).decode()


TOKENS: dict[str, Token] = {
    t.symbol: t
    for t in (
        Token("SOL", WSOL_MINT, 9, Decimal("150"), Decimal("100000")),
        Token(
            "USDC",
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            6,
            Decimal("1"),
            Decimal("10000000"),
            Decimal("0.01"),
        ),
        Token(
            "USDT",
            "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",
            6,
            Decimal("1"),
            Decimal("10000000"),
            Decimal("0.01"),
        ),
        Token(
            "JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, Decimal("0.9"), Decimal("10000000"), Decimal("1.5")
        ),
        Token(
            "BONK",
            "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263",
            5,
            Decimal("0.00002"),
            Decimal("500000000000"),
            Decimal("2"),
        ),
        # Tokens the simulated venues launch later: known (so sniper orders can wait for them), no pool yet.
        Token("WIF", _launch_mint("WIF"), 6, Decimal("1.5"), Decimal("10000000"), Decimal("3"), launch_slot=0),
        Token("POPCAT", _launch_mint("POPCAT"), 9, Decimal("0.4"), Decimal("10000000"), Decimal("3"), launch_slot=1),
        Token("MEW", _launch_mint("MEW"), 5, Decimal("0.005"), Decimal("1000000000"), Decimal("3"), launch_slot=2),
        Token("PNUT", _launch_mint("PNUT"), 6, Decimal("0.2"), Decimal("10000000"), Decimal("3"), launch_slot=3),
    )
}
_BY_MINT = {t.mint: t for t in TOKENS.values()}
#: Other spellings of a symbol (the dashboard mirrors them, services/api/dashboard).
ALIASES = {"WSOL": "SOL"}


@dataclass(frozen=True, slots=True)
class TokenRef:
    """A token as the user named it: which token it is, and whether it is native SOL (needs wrapping)."""

    token: Token
    native_sol: bool

    @property
    def symbol(self) -> str:
        return self.token.symbol


class UnknownToken(ValueError):
    pass


def resolve(name: str) -> TokenRef:
    """Map a symbol (any ASCII case) or a base58 mint address to a known token."""
    text = name.strip(ASCII_SPACE)
    if not text.isascii():  # Unicode case folding makes "ſol" SOL and "ﬀ" FF: one spelling per symbol
        raise UnknownToken(f"unknown token {clip(name)!r}: symbols and mint addresses are ASCII")
    upper = text.upper()
    if upper == "SOL":
        return TokenRef(TOKENS["SOL"], native_sol=True)
    symbol = ALIASES.get(upper, upper)
    if symbol in TOKENS:
        return TokenRef(TOKENS[symbol], native_sol=False)
    if _is_mint_address(text) and text in _BY_MINT:
        return TokenRef(_BY_MINT[text], native_sol=False)
    if _is_mint_address(text):
        raise UnknownToken(f"no pool lists the mint {text}")
    raise UnknownToken(f"unknown token {clip(name)!r}; known: {', '.join(sorted(TOKENS))}")


def _is_mint_address(text: str) -> bool:
    try:
        return len(base58.b58decode(text)) == 32
    except ValueError:
        return False


def decimal_places(value: Decimal) -> int:
    """Digits after the point once trailing zeros are gone. Counted on the digits themselves: `normalize()`
    would first round to the context's 28 digits, so 1.0000000000000000000000000000001 would count as 0."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0") or "0")
    return max(0, -(exponent + trailing_zeros))
