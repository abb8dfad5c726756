"""What a user may submit, and the accepted order it becomes.

`OrderRequest` mirrors the contract's request body field by field (camelCase, unknown fields rejected);
`accept()` turns a valid request into an immutable `Order` with an id and normalised tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.domain import idempotency, tokens, untrusted
from shared.domain.conditional import MAX_TRAIL_BPS
from shared.domain.events import iso_utc, utc_now
from shared.domain.order_types import OrderType as OrderType  # re-exported: one definition, two homes
from shared.domain.partitions import any_partition, new_order_id, scope_partition

MAX_SLIPPAGE_BPS = 5000
#: Resting prices are compared as IEEE doubles inside Redis; 15 significant digits survive that exactly.
MAX_PRICE_DIGITS = 15
DEFAULT_SLIPPAGE_BPS = 50
#: No amount, price or liquidity here is anywhere near 1e±30; bounding the exponent keeps the decimal
#: arithmetic, the bucket integers and the doubles Redis compares finite (1e999999999 overflowed them).
MAX_DECIMAL_EXPONENT = 30
#: Digits one decimal may spell, zeros included: every valid amount or price fits in far fewer, and a price of
#: "150." followed by 5000 zeros would otherwise be stored, streamed and logged as 5 KB of text.
MAX_DECIMAL_DIGITS = 40
#: What an id a client names (userId, clientOrderId) may not hold. It is stored, streamed, logged, shown by the
#: dashboard and printed by the CLI, so: no C0 or C1 control or DEL (PostgreSQL text cannot hold NUL, which
#: would poison db-sync; "\x1b[" and the one-byte CSI "\x9b" drive terminals), no line or paragraph separator
#: (a second line in a log viewer), and no invisible or direction-changing format character (bidi overrides
#: and isolates, zero-width characters, BOM, tags), any of which makes one id display as another.
#: Escapes that Python's re and pydantic's Rust regex both read; static/js/rules.js spells the same set.
ID_FORBIDDEN = (
    r"\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    r"\U000e0000-\U000e007f"
)
PRINTABLE_ID = rf"^[^{ID_FORBIDDEN}]*$"
#: How long a resting order may wait, and how long one without `expiresAt` does: a week covers any
#: strategy that still makes sense at the prices it was placed at, and bounds the books, the expiry index
#: and the Redis memory that forgotten orders would otherwise hold forever (settings: RESTING_MAX_LIFETIME_S).
DEFAULT_RESTING_MAX_LIFETIME_S = 7 * 24 * 3600
#: The key of `OrderRequest.model_validate(..., context=...)` that overrides the lifetime above.
LIFETIME_CONTEXT_KEY = "resting_max_lifetime_s"


def _fail(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def _to_decimal(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise _fail("invalid_decimal", f"{name} must be a decimal string or number")
    try:
        # Text in ASCII only (no "1_0", "١", "１"); a JSON number is already one (the API parses floats as Decimal).
        number = value if isinstance(value, Decimal) else untrusted.parse_decimal(str(value))
    except untrusted.NotADecimal as exc:
        if exc.special:
            raise _fail("invalid_decimal", f"{name} must be finite") from None
        raise _fail("invalid_decimal", f"{name} must be a decimal string or number (ASCII digits)") from None
    if not number.is_finite():
        raise _fail("invalid_decimal", f"{name} must be finite")
    if len(number.as_tuple().digits) > MAX_DECIMAL_DIGITS:
        raise _fail("invalid_decimal", f"{name} may be spelled with at most {MAX_DECIMAL_DIGITS} digits")
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
    def _decimal(cls, value: object) -> Decimal | None:
        return None if value is None else _to_decimal(value, "minLiquidity")

    @model_validator(mode="after")
    def _threshold_rules(self) -> SniperTrigger:
        if self.kind == "liquidity":
            if self.min_liquidity is None:
                raise _fail("missing_min_liquidity", "a liquidity trigger needs minLiquidity (in tokenOut)")
            if self.min_liquidity <= 0:
                raise _fail("invalid_min_liquidity", "minLiquidity must be greater than 0")
            if untrusted.significant_digits(self.min_liquidity) > MAX_PRICE_DIGITS:
                raise _fail("invalid_min_liquidity", f"minLiquidity may have at most {MAX_PRICE_DIGITS} digits")
        elif self.min_liquidity is not None:
            raise _fail("forbidden_field", "minLiquidity is only allowed for a liquidity trigger")
        return self

    def to_spec(self) -> dict[str, str]:
        spec: dict[str, str] = {"kind": self.kind}
        if self.min_liquidity is not None:
            spec["minLiquidity"] = str(self.min_liquidity)
        return spec


def _check_price(price: Decimal, alias: str, code: str) -> None:
    if price <= 0:
        raise _fail(code, f"{alias} must be greater than 0")
    if untrusted.significant_digits(price) > MAX_PRICE_DIGITS:
        raise _fail(code, f"{alias} may have at most {MAX_PRICE_DIGITS} significant digits")


@dataclass(frozen=True, slots=True)
class TypeFields:
    """The type-specific request fields (by attribute name) an order type requires and allows."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()


TYPE_FIELDS: dict[OrderType, TypeFields] = {
    OrderType.MARKET: TypeFields(),
    OrderType.LIMIT: TypeFields(frozenset({"limit_price"})),
    OrderType.SNIPER: TypeFields(frozenset({"trigger"})),
    OrderType.STOP: TypeFields(frozenset({"stop_price"})),
    OrderType.TRAILING_STOP: TypeFields(frozenset({"trail_bps"}), frozenset({"activation_price"})),
    OrderType.OCO: TypeFields(frozenset({"take_profit_price", "stop_price"})),
}


#: The request fields (by attribute name) some types take and every other type refuses.
TYPED_FIELDS = frozenset(name for fields in TYPE_FIELDS.values() for name in fields.required | fields.optional)


def owners_of(name: str) -> list[OrderType]:
    """The types that take the typed field `name`."""
    return [t for t, fields in TYPE_FIELDS.items() if name in fields.required | fields.optional]


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
    stop_price: Decimal | None = Field(None, alias="stopPrice")
    take_profit_price: Decimal | None = Field(None, alias="takeProfitPrice")
    trail_bps: StrictInt | None = Field(None, alias="trailBps", ge=1, le=MAX_TRAIL_BPS)
    activation_price: Decimal | None = Field(None, alias="activationPrice")
    expires_at: datetime | None = Field(None, alias="expiresAt")
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=64, pattern=PRINTABLE_ID)
    client_order_id: str | None = Field(None, alias="clientOrderId", min_length=1, max_length=64, pattern=PRINTABLE_ID)

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_decimal(cls, value: object) -> Decimal:
        amount = _to_decimal(value, "amount")
        if amount <= 0:
            raise _fail("invalid_amount", "amount must be greater than 0")
        return amount

    @field_validator("slippage", "limit_price", "stop_price", "take_profit_price", "activation_price", mode="before")
    @classmethod
    def _optional_decimal(cls, value: object, info: ValidationInfo) -> Decimal | None:
        return None if value is None else _to_decimal(value, json_name(str(info.field_name)))

    @field_validator("token_in", "token_out", mode="before")
    @classmethod
    def _ascii_token(cls, value: object, info: ValidationInfo) -> object:
        # Before any stripping or case folding: "ſol" upper-cases to SOL, "\u3000SOL" strips to it.
        if isinstance(value, str) and not value.isascii():
            raise _fail("unknown_token", "token symbols and mint addresses are ASCII")
        return value

    @field_validator("expires_at")
    @classmethod
    def _expiry_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None or value.tzinfo is None:  # a naive time is refused with the other rules
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-23:59 is past the calendar's end in UTC
            raise _fail("invalid_expires_at", "expiresAt is outside the calendar once converted to UTC") from None

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> OrderRequest:
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
        self._check_expiry(resting_max_lifetime_s(info.context))
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
        # Counted on the digits: slippage × 10000 would round to 28 digits first and pass 0.01000…001.
        if tokens.decimal_places(self.slippage) > 4:
            raise _fail("invalid_slippage", "slippage must be a whole number of basis points (0.0001 steps)")
        if self.slippage_bps is not None and self.slippage_bps != int(self.slippage.scaleb(4)):
            raise _fail("slippage_mismatch", "slippage and slippageBps disagree")

    def _check_type_fields(self) -> None:
        """Each type's own fields are required (or optional) for it and forbidden for every other type."""
        own = TYPE_FIELDS[self.type]
        for name in TYPED_IN_CHECK_ORDER:
            if getattr(self, name) is not None and name not in own.required | own.optional:
                owners = " and ".join(t.value for t in owners_of(name))
                raise _fail("forbidden_field", f"{json_name(name)} is only allowed for {owners} orders")
        for name in sorted(own.required):
            if getattr(self, name) is None:
                code = "missing_trigger" if name == "trigger" else f"missing_{name}"
                raise _fail(code, f"{json_name(name)} is required for {self.type.value} orders")
        for name in TYPED_IN_CHECK_ORDER:
            if isinstance(price := getattr(self, name), Decimal):
                _check_price(price, json_name(name), f"invalid_{name}")
        if self.type is OrderType.OCO:
            assert self.take_profit_price is not None and self.stop_price is not None  # required above
            if self.take_profit_price <= self.stop_price:
                raise _fail("invalid_oco_prices", "takeProfitPrice must be above stopPrice")

    def _check_expiry(self, max_lifetime_s: float) -> None:
        if self.expires_at is None:
            return
        if self.type is OrderType.MARKET:
            raise _fail("forbidden_field", "expiresAt is only allowed for resting (limit, sniper, conditional) orders")
        if self.expires_at.tzinfo is None:
            raise _fail("invalid_expires_at", "expiresAt needs a timezone (RFC 3339)")
        wait_s = (self.expires_at - utc_now()).total_seconds()  # a difference never leaves the calendar
        if wait_s <= 0:
            raise _fail("invalid_expires_at", "expiresAt is in the past")
        if wait_s > max_lifetime_s:
            cap = describe_lifetime(max_lifetime_s)
            raise _fail("invalid_expires_at", f"expiresAt may be at most {cap} away (resting orders' maximum lifetime)")

    @property
    def effective_slippage_bps(self) -> int:
        if self.slippage_bps is not None:
            return self.slippage_bps
        if self.slippage is not None:
            return int(self.slippage * 10_000)
        return DEFAULT_SLIPPAGE_BPS


#: A conditional order's own fields, as clients spell them (`Order.conditions`; null in views of other types).
CONDITION_FIELDS = ("stopPrice", "takeProfitPrice", "trailBps", "activationPrice")
#: The typed fields in the model's order: the order they are checked in, so the first refusal names the first.
TYPED_IN_CHECK_ORDER = tuple(name for name in OrderRequest.model_fields if name in TYPED_FIELDS)


def json_name(field_name: str) -> str:
    """A request field's name as clients spell it (its alias; `trigger` has none)."""
    return OrderRequest.model_fields[field_name].alias or field_name


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
    trigger: dict[str, str] | None = None  # as SniperTrigger.to_spec() spells it
    expires_at: datetime | None = None
    stop_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    trail_bps: int | None = None
    activation_price: Decimal | None = None
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
            **self.conditions(),
        }

    def conditions(self) -> dict[str, object]:
        """A conditional order's own fields, as the request spelled them (none for other types)."""
        values = (_text(self.stop_price), _text(self.take_profit_price), self.trail_bps, _text(self.activation_price))
        return {name: value for name, value in zip(CONDITION_FIELDS, values, strict=True) if value is not None}

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
            stop_price=_decimal_or_none(spec.get("stopPrice")),
            take_profit_price=_decimal_or_none(spec.get("takeProfitPrice")),
            trail_bps=int(spec["trailBps"]) if spec.get("trailBps") is not None else None,
            activation_price=_decimal_or_none(spec.get("activationPrice")),
        )


def resting_max_lifetime_s(context: object) -> float:
    """The lifetime cap a validation context names (the API passes its setting), else the default."""
    if isinstance(context, dict) and context.get(LIFETIME_CONTEXT_KEY) is not None:
        return float(context[LIFETIME_CONTEXT_KEY])
    return DEFAULT_RESTING_MAX_LIFETIME_S


def describe_lifetime(seconds: float) -> str:
    """7 days, 36 hours, 90 minutes, 45 seconds: the largest whole unit, for messages and logs."""
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} seconds"


def idempotency_scope(owner: str | None, key: str | None) -> str | None:
    """The Idempotency-Key as remembered: its namespace, then the key (shared/domain/idempotency.py)."""
    return None if key is None else idempotency.scope(owner, key)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal_or_none(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def accept(
    request: OrderRequest,
    *,
    idempotency_key: str | None = None,
    owner: str | None = None,
    resting_max_lifetime_s: float = DEFAULT_RESTING_MAX_LIFETIME_S,
    partitions: int = 1,
) -> Order:
    """The order `request` becomes; a resting one without `expiresAt` expires after the maximum lifetime. Its
    id places it in one of `partitions` (shared/domain/partitions.py): the key's own, if it has an idempotency key."""
    scope = idempotency_scope(owner, idempotency_key)
    partition = any_partition(partitions) if scope is None else scope_partition(scope, partitions)
    token_in = tokens.resolve(request.token_in)
    token_out = tokens.resolve(request.token_out)
    created_at = utc_now()
    expires_at = request.expires_at
    if expires_at is None and request.type is not OrderType.MARKET:
        expires_at = created_at + timedelta(seconds=resting_max_lifetime_s)
    return Order(
        order_id=new_order_id(partition),
        created_at=created_at,
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
        expires_at=expires_at,
        owner=owner,
        stop_price=request.stop_price,
        take_profit_price=request.take_profit_price,
        trail_bps=request.trail_bps,
        activation_price=request.activation_price,
    )
