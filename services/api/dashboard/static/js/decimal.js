// Exact decimals, as Python's Decimal reads them (shared/domain/orders.py `_to_decimal`): the form compares
// amounts and prices without ever rounding them through a float.

// shared/domain/untrusted.py `parse_decimal`: ASCII spaces around, then this grammar in ASCII digits (no "1_0",
// no other scripts' digits: without the u flag \d is [0-9]).
const GRAMMAR = /^([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;
const SPECIAL = /^[+-]?(inf|infinity|s?nan\d*)$/i;
const ASCII_SPACE_AROUND = /^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g;

// {negative, digits, exponent}: value = ±digits × 10^exponent, digits without leading zeros ("" is zero);
// {special: true} for Infinity/NaN; null when it is not a number at all.
export function parseDecimal(text) {
  const cleaned = String(text).replace(ASCII_SPACE_AROUND, "");
  if (SPECIAL.test(cleaned)) return { special: true };
  const match = GRAMMAR.exec(cleaned);
  if (!match) return null;
  const [, sign, whole = "", fractionA, fractionB, exponentText = "0"] = match;
  const fraction = fractionA ?? fractionB ?? "";
  const digits = (whole + fraction).replace(/^0+/, "");
  const exponent = Number(exponentText) - fraction.length;
  return { negative: sign === "-", digits, exponent };
}

export function isZero(d) {
  return d.digits === "";
}

// len(Decimal.as_tuple().digits): the digits as spelled, leading zeros dropped (zero itself is one digit).
export function coefficientDigits(d) {
  return Math.max(1, d.digits.length);
}

// Decimal.adjusted(): the exponent of the most significant digit.
export function adjusted(d) {
  return d.exponent + d.digits.length - 1;
}

// Decimal.normalize() (trailing zeros dropped): its significant digits and its exponent.
function normalized(d) {
  const stripped = d.digits.replace(/0+$/, "");
  return { digits: stripped, exponent: d.exponent + (d.digits.length - stripped.length) };
}

export function significantDigits(d) {
  return isZero(d) ? 1 : normalized(d).digits.length;
}

// tokens.decimal_places: digits after the point once trailing zeros are gone.
export function decimalPlaces(d) {
  return isZero(d) ? 0 : Math.max(0, -normalized(d).exponent);
}

export function sign(d) {
  if (isZero(d)) return 0;
  return d.negative ? -1 : 1;
}

// -1, 0, 1 as a < b, a == b, a > b. Callers bound the exponents first (adjusted within ±30), so the
// scaled integers stay small.
export function compare(a, b) {
  const sa = sign(a);
  const sb = sign(b);
  if (sa !== sb) return sa < sb ? -1 : 1;
  if (sa === 0) return 0;
  const common = Math.min(a.exponent, b.exponent);
  const scaled = (d) => BigInt(d.digits) * 10n ** BigInt(d.exponent - common);
  const ma = scaled(a);
  const mb = scaled(b);
  const magnitude = ma === mb ? 0 : ma < mb ? -1 : 1;
  return sa > 0 ? magnitude : -magnitude;
}

export function fromString(text) {
  const d = parseDecimal(text);
  if (!d || d.special) throw new Error(`not a decimal: ${text}`);
  return d;
}

// d × 10^k is a whole number (slippage must be whole basis points).
export function isIntegralAfterShift(d, k) {
  return isZero(d) || normalized(d).exponent + k >= 0;
}

// The integer d × 10^k, for a d known to be integral after the shift and small (basis points).
export function shiftedInteger(d, k) {
  if (isZero(d)) return 0;
  const n = normalized(d);
  const value = Number(BigInt(n.digits) * 10n ** BigInt(n.exponent + k));
  return d.negative ? -value : value;
}
