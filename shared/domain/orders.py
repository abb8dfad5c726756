"""What a user may submit, and the accepted order it becomes.

`OrderRequest` mirrors the contract's request body field by field (camelCase, unknown fields rejected);
`accept()` turns a valid request into an immutable `Order` with an id and normalised tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.domain import tokens
from shared.domain.events import iso_utc, utc_now

MAX_SLIPPAGE_BPS = 5000
#: Resting prices are compared as IEEE doubles inside Redis; 15 significant digits survive that exactly.
MAX_PRICE_DIGITS = 15
DEFAULT_SLIPPAGE_BPS = 50
#: No amount, price or liquidity here is anywhere near 1e±30; bounding the exponent keeps the decimal
#: arithmetic, the bucket integers and the doubles Redis compares finite (1e999999999 overflowed them).
MAX_DECIMAL_EXPONENT = 30
#: PostgreSQL text cannot hold NUL, and control characters have no business in an id: refusing them here
#: keeps a stored order from poisoning db-sync later.
PRINTABLE_ID = r"^[^\x00-\x1f\x7f]*$"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    SNIPER = "sniper"


def _fail(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def _to_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise _fail("invalid_decimal", f"{name} must be a decimal string or number")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise _fail("invalid_decimal", f"{name} must be a decimal string or number") from None
    if not number.is_finite():
        raise _fail("invalid_decimal", f"{name} must be finite")
    if number and abs(number.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise _fail("invalid_decimal", f"{name} must be between 1e-{MAX_DECIMAL_EXPONENT} and 1e{MAX_DECIMAL_EXPONENT}")
    return number


class SniperTrigger(BaseModel):
    """What fires a sniper order: a pool for the pair appearing, or a pool's liquidity reaching a level."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["listing", "liquidity"]
    min_liquidity: Decimal | None = Field(None, alias="minLiquidity")

    @field_validator("min_liquidity", mode="before")
    @classmethod
    def _decimal(cls, value: Any) -> Decimal | None:
        return None if value is None else _to_decimal(value, "minLiquidity")

    @model_validator(mode="after")
    def _threshold_rules(self) -> SniperTrigger:
        if self.kind == "liquidity":
            if self.min_liquidity is None:
                raise _fail("missing_min_liquidity", "a liquidity trigger needs minLiquidity (in tokenOut)")
            if self.min_liquidity <= 0:
                raise _fail("invalid_min_liquidity", "minLiquidity must be greater than 0")
            if len(self.min_liquidity.normalize().as_tuple().digits) > MAX_PRICE_DIGITS:
                raise _fail("invalid_min_liquidity", f"minLiquidity may have at most {MAX_PRICE_DIGITS} digits")
        elif self.min_liquidity is not None:
            raise _fail("forbidden_field", "minLiquidity is only allowed for a liquidity trigger")
        return self

    def to_spec(self) -> dict[str, str]:
        spec = {"kind": self.kind}
        if self.min_liquidity is not None:
            spec["minLiquidity"] = str(self.min_liquidity)
        return spec


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, str_strip_whitespace=True)

    type: OrderType = OrderType.MARKET
    token_in: str = Field(alias="tokenIn", min_length=1, max_length=64)
    token_out: str = Field(alias="tokenOut", min_length=1, max_length=64)
    amount: Decimal
    slippage_bps: StrictInt | None = Field(None, alias="slippageBps", ge=0, le=MAX_SLIPPAGE_BPS)
    slippage: Decimal | None = None
    limit_price: Decimal | None = Field(None, alias="limitPrice")
    trigger: SniperTrigger | None = None
    expires_at: datetime | None = Field(None, alias="expiresAt")
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=64, pattern=PRINTABLE_ID)
    client_order_id: str | None = Field(None, alias="clientOrderId", min_length=1, max_length=64, pattern=PRINTABLE_ID)

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_decimal(cls, value: Any) -> Decimal:
        amount = _to_decimal(value, "amount")
        if amount <= 0:
            raise _fail("invalid_amount", "amount must be greater than 0")
        return amount

    @field_validator("slippage", "limit_price", mode="before")
    @classmethod
    def _optional_decimal(cls, value: Any, info) -> Decimal | None:
        return None if value is None else _to_decimal(value, info.field_name)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> OrderRequest:
        token_in = self._resolve(self.token_in, "tokenIn")
        token_out = self._resolve(self.token_out, "tokenOut")
        if token_in.symbol == token_out.symbol:
            raise _fail("same_token", "tokenIn and tokenOut must differ (SOL and wSOL are the same token)")
        places = tokens.decimal_places(self.amount)
        if places > token_in.token.decimals:
            raise _fail(
                "invalid_amount", f"amount has {places} decimals; {token_in.symbol} allows {token_in.token.decimals}"
            )
        if self.amount > token_in.token.max_order_amount:
            raise _fail(
                "amount_too_large", f"amount exceeds the maximum of {token_in.token.max_order_amount} {token_in.symbol}"
            )
        self._check_slippage()
        self._check_type_fields()
        return self

    @staticmethod
    def _resolve(name: str, field_name: str) -> tokens.TokenRef:
        try:
            return tokens.resolve(name)
        except tokens.UnknownToken as exc:
            raise _fail("unknown_token", f"{field_name}: {exc}") from None

    def _check_slippage(self) -> None:
        if self.slippage is None:
            return
        if self.slippage < 0 or self.slippage > Decimal("0.5"):
            raise _fail("invalid_slippage", "slippage must be a fraction between 0 and 0.5")
        as_bps = self.slippage * 10_000
        if as_bps != as_bps.to_integral_value():
            raise _fail("invalid_slippage", "slippage must be a whole number of basis points (0.0001 steps)")
        if self.slippage_bps is not None and self.slippage_bps != int(as_bps):
            raise _fail("slippage_mismatch", "slippage and slippageBps disagree")

    def _check_type_fields(self) -> None:
        if self.type is OrderType.LIMIT:
            if self.limit_price is None:
                raise _fail("missing_limit_price", "limitPrice is required for limit orders")
            if self.limit_price <= 0:
                raise _fail("invalid_limit_price", "limitPrice must be greater than 0")
            if len(self.limit_price.normalize().as_tuple().digits) > MAX_PRICE_DIGITS:
                raise _fail("invalid_limit_price", f"limitPrice may have at most {MAX_PRICE_DIGITS} significant digits")
        elif self.limit_price is not None:
            raise _fail("forbidden_field", "limitPrice is only allowed for limit orders")
        if self.type is OrderType.SNIPER and self.trigger is None:
            raise _fail("missing_trigger", "trigger is required for sniper orders")
        if self.type is not OrderType.SNIPER and self.trigger is not None:
            raise _fail("forbidden_field", "trigger is only allowed for sniper orders")
        if self.expires_at is not None:
            if self.type is OrderType.MARKET:
                raise _fail("forbidden_field", "expiresAt is only allowed for resting (limit, sniper) orders")
            if self.expires_at.tzinfo is None:
                raise _fail("invalid_expires_at", "expiresAt needs a timezone (RFC 3339)")
            if self.expires_at <= utc_now():
                raise _fail("invalid_expires_at", "expiresAt is in the past")

    @property
    def effective_slippage_bps(self) -> int:
        if self.slippage_bps is not None:
            return self.slippage_bps
        if self.slippage is not None:
            return int(self.slippage * 10_000)
        return DEFAULT_SLIPPAGE_BPS


@dataclass(frozen=True, slots=True)
class Order:
    """An accepted order: immutable request data. Its changing state lives in its events."""

    order_id: UUID
    type: OrderType
    token_in: str
    token_out: str
    amount: Decimal
    slippage_bps: int
    native_sol_in: bool = False
    native_sol_out: bool = False
    user_id: str | None = None
    client_order_id: str | None = None
    idempotency_key: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    limit_price: Decimal | None = None
    trigger: dict[str, Any] | None = None
    expires_at: datetime | None = None
    owner: str | None = None  # the public id of the API key that placed it, when keys are enabled

    @property
    def pair(self) -> str:
        return f"{self.token_in}-{self.token_out}"

    @property
    def stream_user(self) -> str:
        """Who the order's events fan out to on `/ws?userId=`: a key sees only its own orders' users."""
        if self.owner is None:
            return self.user_id or ""
        return f"{self.owner}/{self.user_id}" if self.user_id else ""

    @property
    def idempotency_scope(self) -> str | None:
        """The Idempotency-Key as remembered: per key owner, so two keys never see each other's orders."""
        return idempotency_scope(self.owner, self.idempotency_key)

    def to_spec(self) -> dict[str, Any]:
        return {
            "orderId": str(self.order_id),
            "type": self.type.value,
            "tokenIn": self.token_in,
            "tokenOut": self.token_out,
            "amount": str(self.amount),
            "slippageBps": self.slippage_bps,
            "nativeSolIn": self.native_sol_in,
            "nativeSolOut": self.native_sol_out,
            "userId": self.user_id,
            "clientOrderId": self.client_order_id,
            "idempotencyKey": self.idempotency_key,
            "createdAt": iso_utc(self.created_at),
            "limitPrice": None if self.limit_price is None else str(self.limit_price),
            "trigger": self.trigger,
            "expiresAt": None if self.expires_at is None else iso_utc(self.expires_at),
            "owner": self.owner,
        }

    def spec_json(self) -> bytes:
        return orjson.dumps(self.to_spec())

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Order:
        return cls(
            order_id=UUID(spec["orderId"]),
            type=OrderType(spec["type"]),
            token_in=spec["tokenIn"],
            token_out=spec["tokenOut"],
            amount=Decimal(spec["amount"]),
            slippage_bps=int(spec["slippageBps"]),
            native_sol_in=bool(spec.get("nativeSolIn")),
            native_sol_out=bool(spec.get("nativeSolOut")),
            user_id=spec.get("userId"),
            client_order_id=spec.get("clientOrderId"),
            idempotency_key=spec.get("idempotencyKey"),
            created_at=_parse_time(spec["createdAt"]),
            limit_price=Decimal(spec["limitPrice"]) if spec.get("limitPrice") else None,
            trigger=spec.get("trigger"),
            expires_at=_parse_time(spec["expiresAt"]) if spec.get("expiresAt") else None,
            owner=spec.get("owner"),
        )


def idempotency_scope(owner: str | None, key: str | None) -> str | None:
    if key is None:
        return None
    return f"{owner}/{key}" if owner else key


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def accept(request: OrderRequest, *, idempotency_key: str | None = None, owner: str | None = None) -> Order:
    token_in = tokens.resolve(request.token_in)
    token_out = tokens.resolve(request.token_out)
    return Order(
        order_id=uuid4(),
        type=request.type,
        token_in=token_in.symbol,
        token_out=token_out.symbol,
        amount=request.amount,
        slippage_bps=request.effective_slippage_bps,
        native_sol_in=token_in.native_sol,
        native_sol_out=token_out.native_sol,
        user_id=request.user_id,
        client_order_id=request.client_order_id,
        idempotency_key=idempotency_key,
        limit_price=request.limit_price,
        trigger=request.trigger.to_spec() if request.trigger else None,
        expires_at=request.expires_at,
        owner=owner,
    )
