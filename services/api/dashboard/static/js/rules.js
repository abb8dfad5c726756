// The API's order validation (shared/domain/orders.py `OrderRequest`), check for check and code for code, so
// the form refuses what the API would refuse before anything is sent. The limits come from the API itself
// (the JSON block rules.py renders into the page); tests/support/validation_cases.py is the table both
// implementations are held to.
//
// As pydantic does: every field is checked first and all field errors are reported (one error: its code;
// several: "validation_error"); only when every field is valid do the cross-field rules run, in the
// model validator's order, stopping at the first.

import * as dec from "./decimal.js";

// The fields every type shares; each type's own fields (limitPrice, stopPrice, …) come from the rules
// (`typedFields`, from shared/domain/orders.py TYPE_FIELDS).
const COMMON_FIELDS = ["type", "tokenIn", "tokenOut", "amount", "slippageBps", "slippage", "expiresAt", "userId", "clientOrderId"];
// shared/domain/orders.py ID_FORBIDDEN: controls, line separators, invisible and direction-changing characters.
const PRINTABLE_ID = /^[^\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\u{e0000}-\u{e007f}]*$/u;
// pydantic's str_strip_whitespace trims what Rust calls whitespace (Unicode White_Space): unlike
// String.prototype.trim, U+0085 but not U+FEFF.
const EDGE_SPACE = /^\p{White_Space}+|\p{White_Space}+$/gu;
const TRIGGER_FIELDS = ["kind", "minLiquidity"];

export function readRules(doc = document) {
  return JSON.parse(doc.getElementById("dashboard-rules").textContent);
}

class Failure {
  constructor(field, code, message) {
    this.field = field;
    this.code = code;
    this.message = message;
  }
}

function toDecimal(value, name, rules, field = name) {
  if (typeof value === "boolean" || !["string", "number"].includes(typeof value)) {
    throw new Failure(field, "invalid_decimal", `${name} must be a decimal string or number`);
  }
  const d = dec.parseDecimal(value);
  if (!d) throw new Failure(field, "invalid_decimal", `${name} must be a decimal string or number`);
  if (d.special) throw new Failure(field, "invalid_decimal", `${name} must be finite`);
  if (dec.coefficientDigits(d) > rules.maxDecimalDigits) {
    throw new Failure(field, "invalid_decimal", `${name} may be spelled with at most ${rules.maxDecimalDigits} digits`);
  }
  const bound = rules.maxDecimalExponent;
  if (!dec.isZero(d) && Math.abs(dec.adjusted(d)) > bound) {
    throw new Failure(field, "invalid_decimal", `${name} must be between 1e-${bound} and 1e${bound}`);
  }
  return d;
}

// Token names are ASCII before anything else: "ſol" upper-cases to SOL, "\u3000SOL" trims to it.
const ASCII = /^[\x00-\x7f]*$/;

function checkString(body, name, rules, required, asciiOnly = false) {
  const value = body[name];
  if (value === undefined) {
    if (required) throw new Failure(name, "missing", `${name} is required`);
    return undefined;
  }
  if (value === null && !required) return undefined;
  if (typeof value !== "string") throw new Failure(name, "string_type", "Input should be a valid string");
  if (asciiOnly && !ASCII.test(value)) {
    throw new Failure(name, "unknown_token", `${name}: token symbols and mint addresses are ASCII`);
  }
  const text = value.replace(EDGE_SPACE, ""); // str_strip_whitespace
  const { min, max } = rules.lengths[name];
  if (text.length < min) throw new Failure(name, "string_too_short", `at least ${min} character(s)`);
  if (text.length > max) throw new Failure(name, "string_too_long", `at most ${max} characters`);
  return text;
}

function checkId(body, name, rules) {
  const text = checkString(body, name, rules, false);
  if (text !== undefined && !PRINTABLE_ID.test(text)) {
    throw new Failure(name, "string_pattern_mismatch", `${name} may not contain control, invisible or direction-changing characters`);
  }
  return text;
}

// pydantic's datetime: an RFC 3339 / ISO 8601 string (a date alone is midnight, without a zone), or a Unix
// time as a number or a numeric string (seconds; above 2e10, milliseconds). Calendar fields are checked
// here: Date.parse would roll 2999-02-31 over into March.
const DATETIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|z|[+-]\d{2}:?\d{2})?)?$/;
const UNIX_TIME = /^[+-]?\d+(?:\.\d+)?$/;

function unixMs(seconds) {
  return Math.abs(seconds) > 2e10 ? seconds : seconds * 1000;
}

// The calendar Python's datetime holds, in UTC: a zoned time outside it (9999-12-31T23:59:59-23:59) is refused.
const CALENDAR_MIN_MS = -62135596800000; // 0001-01-01T00:00:00Z
const CALENDAR_MAX_MS = 253402300799999; // 9999-12-31T23:59:59.999Z
// Date.UTC reads years 0-99 as 1900-1999; 400 Gregorian years later the calendar repeats exactly.
const FOUR_CENTURIES_MS = 146097 * 86_400_000;

function checkExpiresAt(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number" && Number.isFinite(value)) return { ms: unixMs(value), zoned: true };
  if (typeof value === "string" && UNIX_TIME.test(value)) return { ms: unixMs(Number(value)), zoned: true };
  const match = typeof value === "string" ? DATETIME.exec(value) : null;
  const ms = match ? calendarMs(match) : NaN;
  if (Number.isNaN(ms)) {
    throw new Failure("expiresAt", "datetime_from_date_parsing", "expiresAt must be an RFC 3339 timestamp");
  }
  const zoned = Boolean(match[8]);
  if (zoned && (ms < CALENDAR_MIN_MS || ms > CALENDAR_MAX_MS)) {
    throw new Failure("expiresAt", "invalid_expires_at", "expiresAt is outside the calendar once converted to UTC");
  }
  return { ms, zoned };
}

function calendarMs(m) {
  const [year, month, day, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map((part) => Number(part || 0));
  const monthDays = [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (month < 1 || month > 12 || day < 1 || day > monthDays[month - 1] || hour > 23 || minute > 59 || second > 59) {
    return NaN;
  }
  const millis = Number(((m[7] || "") + "000").slice(0, 3));
  let offsetMinutes = 0; // a time without a zone is refused later (invalid_expires_at); read it as UTC meanwhile
  const zone = m[8] ? m[8].toUpperCase() : "Z";
  if (zone !== "Z") {
    const digits = zone.replace(":", "");
    offsetMinutes = (digits[0] === "-" ? -1 : 1) * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
  }
  const utc = Date.UTC(year + 400, month - 1, day, hour, minute, second, millis) - FOUR_CENTURIES_MS;
  return utc - offsetMinutes * 60_000;
}

function checkTrigger(value, rules) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new Failure("trigger", "model_type", "trigger must be an object");
  }
  const failures = [];
  for (const name of Object.keys(value)) {
    if (!TRIGGER_FIELDS.includes(name)) {
      failures.push(new Failure(`trigger.${name}`, "extra_forbidden", "Extra inputs are not permitted"));
    }
  }
  if (value.kind === undefined) failures.push(new Failure("trigger.kind", "missing", "trigger.kind is required"));
  else if (!rules.triggerKinds.includes(value.kind)) {
    failures.push(new Failure("trigger.kind", "literal_error", `kind must be one of ${rules.triggerKinds.join(", ")}`));
  }
  let min;
  if (value.minLiquidity !== undefined && value.minLiquidity !== null) {
    try {
      min = toDecimal(value.minLiquidity, "minLiquidity", rules, "trigger.minLiquidity");
    } catch (failure) {
      failures.push(failure);
    }
  }
  if (failures.length) return { failures };
  if (value.kind === "liquidity") {
    if (min === undefined) {
      return fail("trigger", "missing_min_liquidity", "a liquidity trigger needs minLiquidity (in tokenOut)");
    }
    if (dec.sign(min) <= 0) return fail("trigger", "invalid_min_liquidity", "minLiquidity must be greater than 0");
    if (dec.significantDigits(min) > rules.maxPriceDigits) {
      return fail("trigger", "invalid_min_liquidity", `minLiquidity may have at most ${rules.maxPriceDigits} digits`);
    }
  } else if (min !== undefined) {
    return fail("trigger", "forbidden_field", "minLiquidity is only allowed for a liquidity trigger");
  }
  return { kind: value.kind, minLiquidity: min };
}

// A strict integer (pydantic's StrictInt: no string, no boolean, no fraction) within the API's bounds.
function checkInteger(body, name, rules) {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new Failure(name, "int_type", `${name} must be a whole number`);
  }
  const { min, max } = rules.integerBounds[name];
  if (value < min) throw new Failure(name, "greater_than_equal", `${name} must be at least ${min}`);
  if (value > max) throw new Failure(name, "less_than_equal", `${name} must be at most ${max}`);
  return value;
}

// The fields a type takes (required or optional), by JSON name.
export function typeTakes(type, rules) {
  const own = rules.typeFields[type] || { required: [], optional: [] };
  return new Set([...own.required, ...own.optional]);
}

// shared/domain/orders.py `_check_type_fields`, in its order: another type's field, then a missing one, then a
// price out of range, then an OCO's two prices.
function typeFieldChecks(v, rules) {
  const takes = typeTakes(v.type, rules);
  for (const { name, owners } of rules.typedFields) {
    if (v[name] !== undefined && !takes.has(name)) {
      return new Failure(name, "forbidden_field", `${name} is only allowed for ${owners.join(" and ")} orders`);
    }
  }
  for (const name of rules.typeFields[v.type].required) {
    if (v[name] === undefined) {
      const { missingCode } = rules.typedFields.find((field) => field.name === name);
      return new Failure(name, missingCode, `${name} is required for ${v.type} orders`);
    }
  }
  for (const { name, invalidCode } of rules.typedFields) {
    const price = v[name];
    if (!invalidCode || price === undefined) continue;
    if (dec.sign(price) <= 0) return new Failure(name, invalidCode, `${name} must be greater than 0`);
    if (dec.significantDigits(price) > rules.maxPriceDigits) {
      return new Failure(name, invalidCode, `${name} may have at most ${rules.maxPriceDigits} significant digits`);
    }
  }
  if (v.type === "oco" && dec.compare(v.takeProfitPrice, v.stopPrice) <= 0) {
    return new Failure("takeProfitPrice", "invalid_oco_prices", "takeProfitPrice must be above stopPrice");
  }
  return null;
}

function fail(field, code, message) {
  return { failures: [new Failure(field, code, message)] };
}

export function resolveToken(name, rules) {
  const text = name.trim();
  const upper = text.toUpperCase();
  const symbol = rules.aliases[upper] || upper;
  const bySymbol = rules.tokens.find((t) => t.symbol === symbol);
  if (bySymbol) return bySymbol;
  return rules.tokens.find((t) => t.mint === text) || null;
}

function fieldChecks(body, rules) {
  const failures = [];
  const values = {};
  const attempt = (fn) => {
    try {
      fn();
    } catch (failure) {
      if (!(failure instanceof Failure)) throw failure;
      failures.push(failure);
    }
  };
  const known = [...COMMON_FIELDS, ...rules.typedFields.map((field) => field.name)];
  for (const name of Object.keys(body)) {
    if (!known.includes(name)) failures.push(new Failure(name, "extra_forbidden", "Extra inputs are not permitted"));
  }
  attempt(() => {
    const type = body.type === undefined ? "market" : body.type;
    if (!rules.orderTypes.includes(type)) {
      throw new Failure("type", "enum", `type must be one of ${rules.orderTypes.join(", ")}`);
    }
    values.type = type;
  });
  attempt(() => (values.tokenIn = checkString(body, "tokenIn", rules, true, true)));
  attempt(() => (values.tokenOut = checkString(body, "tokenOut", rules, true, true)));
  attempt(() => {
    if (body.amount === undefined) throw new Failure("amount", "missing", "amount is required");
    const amount = toDecimal(body.amount, "amount", rules);
    if (dec.sign(amount) <= 0) throw new Failure("amount", "invalid_amount", "amount must be greater than 0");
    values.amount = amount;
  });
  attempt(() => (values.slippageBps = checkInteger(body, "slippageBps", rules)));
  attempt(() => {
    if (body.slippage !== undefined && body.slippage !== null) values.slippage = toDecimal(body.slippage, "slippage", rules);
  });
  for (const { name, kind } of rules.typedFields) {
    attempt(() => {
      if (kind === "trigger") {
        const trigger = checkTrigger(body[name], rules);
        if (trigger && trigger.failures) failures.push(...trigger.failures);
        else values[name] = trigger;
      } else if (kind === "integer") {
        values[name] = checkInteger(body, name, rules);
      } else if (body[name] !== undefined && body[name] !== null) {
        values[name] = toDecimal(body[name], name, rules);
      }
    });
  }
  attempt(() => (values.expiresAt = checkExpiresAt(body.expiresAt)));
  attempt(() => (values.userId = checkId(body, "userId", rules)));
  attempt(() => (values.clientOrderId = checkId(body, "clientOrderId", rules)));
  return { failures, values };
}

// The model validator's rules, in its order; the first that fails is the answer.
function crossChecks(v, rules, now) {
  const tokenIn = resolveToken(v.tokenIn, rules);
  if (!tokenIn) return new Failure("tokenIn", "unknown_token", `tokenIn: unknown token ${JSON.stringify(v.tokenIn)}`);
  const tokenOut = resolveToken(v.tokenOut, rules);
  if (!tokenOut) {
    return new Failure("tokenOut", "unknown_token", `tokenOut: unknown token ${JSON.stringify(v.tokenOut)}`);
  }
  if (tokenIn.symbol === tokenOut.symbol) {
    return new Failure("tokenOut", "same_token", "tokenIn and tokenOut must differ (SOL and wSOL are the same token)");
  }
  const places = dec.decimalPlaces(v.amount);
  if (places > tokenIn.decimals) {
    return new Failure("amount", "invalid_amount", `amount has ${places} decimals; ${tokenIn.symbol} allows ${tokenIn.decimals}`);
  }
  if (dec.compare(v.amount, dec.fromString(tokenIn.maxOrderAmount)) > 0) {
    return new Failure("amount", "amount_too_large", `amount exceeds the maximum of ${tokenIn.maxOrderAmount} ${tokenIn.symbol}`);
  }
  if (v.slippage !== undefined) {
    const maxFraction = dec.fromString(String(rules.maxSlippageBps / 10000));
    if (dec.sign(v.slippage) < 0 || dec.compare(v.slippage, maxFraction) > 0) {
      return new Failure("slippage", "invalid_slippage", `slippage must be a fraction between 0 and ${rules.maxSlippageBps / 10000}`);
    }
    if (!dec.isIntegralAfterShift(v.slippage, 4)) {
      return new Failure("slippage", "invalid_slippage", "slippage must be a whole number of basis points (0.0001 steps)");
    }
    if (v.slippageBps !== undefined && v.slippageBps !== dec.shiftedInteger(v.slippage, 4)) {
      return new Failure("slippage", "slippage_mismatch", "slippage and slippageBps disagree");
    }
  }
  const typeFailure = typeFieldChecks(v, rules);
  if (typeFailure) return typeFailure;
  if (v.expiresAt !== undefined) {
    if (v.type === "market") {
      return new Failure("expiresAt", "forbidden_field", "expiresAt is only allowed for resting (limit, sniper, conditional) orders");
    }
    if (!v.expiresAt.zoned) return new Failure("expiresAt", "invalid_expires_at", "expiresAt needs a timezone (RFC 3339)");
    if (v.expiresAt.ms <= now) return new Failure("expiresAt", "invalid_expires_at", "expiresAt is in the past");
    if (v.expiresAt.ms - now > rules.restingMaxLifetimeS * 1000) {
      const days = rules.restingMaxLifetimeS / 86400;
      return new Failure("expiresAt", "invalid_expires_at", `expiresAt may be at most ${days} days away (resting orders' maximum lifetime)`);
    }
  }
  return null;
}

// {ok: true} or {ok: false, code, errors: [{field, code, message}]}, as the API's 400 would say it.
export function validateOrder(body, rules, now = Date.now()) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return refused([new Failure(null, "invalid_body", "the body must be a JSON object")]);
  }
  const { failures, values } = fieldChecks(body, rules);
  if (failures.length) return refused(failures);
  const failure = crossChecks(values, rules, now);
  return failure ? refused([failure]) : { ok: true, code: null, errors: [] };
}

function refused(failures) {
  const errors = failures.map((f) => ({ field: f.field, code: f.code, message: f.message }));
  return { ok: false, code: errors.length === 1 ? errors[0].code : "validation_error", errors };
}

// The request body for what the form holds: an empty field left out (so a missing value reads "required"),
// numbers where the API wants numbers, and raw text where the user typed something that is not one (so
// validation names the field). A type's own field is sent whenever it holds something, whatever the type: the
// form keeps such a field shown (form.js), so what the user sees is what is sent, and the API's refusal of
// another type's field is shown rather than the value silently dropped. The sniper's trigger is a choice, never
// empty: it goes with sniper orders only.
export function orderBody(form, rules) {
  const text = (name) => (form[name] ?? "").trim();
  const integer = (value) => (/^-?\d+$/.test(value) ? Number(value) : value);
  const body = { type: form.type };
  for (const name of ["tokenIn", "tokenOut", "amount"]) if (text(name) !== "") body[name] = text(name);
  if (text("slippageBps") !== "") body.slippageBps = integer(text("slippageBps"));
  for (const { name, kind } of rules.typedFields) {
    if (kind === "trigger") {
      if (form.type !== "sniper") continue;
      body.trigger = { kind: form.triggerKind };
      if (form.triggerKind === "liquidity" && text("minLiquidity") !== "") body.trigger.minLiquidity = text("minLiquidity");
    } else if (text(name) !== "") {
      body[name] = kind === "integer" ? integer(text(name)) : text(name);
    }
  }
  if (text("expiresAt") !== "") {
    const local = new Date(text("expiresAt")); // datetime-local: the user's wall clock
    body.expiresAt = Number.isNaN(local.getTime()) ? text("expiresAt") : local.toISOString();
  }
  for (const name of ["userId", "clientOrderId"]) if (text(name) !== "") body[name] = text(name);
  return body;
}
