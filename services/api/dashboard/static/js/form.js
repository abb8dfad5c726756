// The order form: fields shown for the chosen type, the API's validation before anything is sent
// (rules.js), then POST /api/orders/execute and the order followed on the timeline.
//
// Which fields a type takes comes from the rules (shared/domain/orders.py TYPE_FIELDS). A field of another type
// that still holds a value (typed before the type changed) stays shown, marked, and is sent: the form then
// refuses it as the API would, instead of dropping what the user typed without a word.

import { ApiError, newIdempotencyKey, request } from "./api.js";
import { orderBody, resolveToken, typeTakes, validateOrder } from "./rules.js";
import { el } from "./dom.js";

const FORM_FIELDS = ["type", "tokenIn", "tokenOut", "amount", "slippageBps", "triggerKind", "minLiquidity",
  "expiresAt", "userId", "clientOrderId"];

export class OrderForm {
  constructor({ form, tokenList, rules, onAccepted }) {
    this.form = form;
    this.rules = rules;
    this.onAccepted = onAccepted;
    this.message = form.querySelector("#form-message");
    this.button = form.querySelector("#submit-order");
    this.retry = null; // {body, key}: a send that got no answer, resent with the same Idempotency-Key
    for (const type of rules.orderTypes) form.elements.type.append(el("option", { value: type, text: type }));
    for (const kind of rules.triggerKinds) form.elements.triggerKind.append(el("option", { value: kind, text: kind }));
    for (const token of rules.tokens) tokenList.append(el("option", { value: token.symbol }));
    form.elements.slippageBps.placeholder = String(rules.defaultSlippageBps);
    form.addEventListener("change", () => this.showFields());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.showFields();
  }

  // Every type's plain fields (limitPrice, stopPrice, trailBps, …): sent whenever they hold something.
  plainTypeFields() {
    return this.rules.typedFields.filter((field) => field.kind !== "trigger").map((field) => field.name);
  }

  values() {
    const values = {};
    for (const name of [...FORM_FIELDS, ...this.plainTypeFields()]) values[name] = this.form.elements[name].value;
    return values;
  }

  showFields() {
    const values = this.values();
    const takes = typeTakes(values.type, this.rules);
    const taken = {
      ...Object.fromEntries(this.plainTypeFields().map((name) => [name, takes.has(name)])),
      trigger: takes.has("trigger"),
      minLiquidity: takes.has("trigger") && values.triggerKind === "liquidity",
      expiresAt: values.type !== "market", // every resting type may expire
    };
    const sentWhenFilled = new Set([...this.plainTypeFields(), "expiresAt"]);
    for (const label of this.form.querySelectorAll("[data-type-field]")) {
      const name = label.dataset.typeField;
      const held = sentWhenFilled.has(name) && values[name].trim() !== "";
      label.hidden = !taken[name] && !held;
      label.classList.toggle("foreign", !taken[name] && held);
      label.title = !taken[name] && held ? `not a field of ${values.type} orders: clear it, or the order is refused` : "";
    }
    for (const row of this.form.querySelectorAll(".type-fields")) {
      row.hidden = [...row.querySelectorAll("[data-type-field]")].every((label) => label.hidden);
    }
    this.form.dataset.type = values.type;
  }

  showErrors(errors) {
    for (const node of this.form.querySelectorAll(".field-error")) node.textContent = "";
    for (const error of errors) {
      const root = (error.field || "").split(".")[0];
      const slot = this.form.querySelector(`.field-error[data-for="${CSS.escape(root)}"]`);
      if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${error.message}` : error.message;
    }
  }

  say(text, kind) {
    this.message.textContent = text;
    this.message.dataset.kind = kind;
  }

  async submit() {
    const body = orderBody(this.values(), this.rules);
    const verdict = validateOrder(body, this.rules);
    this.showErrors(verdict.errors);
    if (!verdict.ok) {
      this.say(`Not sent: ${verdict.errors.map((e) => e.message).join("; ")}`, "invalid");
      return;
    }
    const pair = `${resolveToken(body.tokenIn, this.rules).symbol}-${resolveToken(body.tokenOut, this.rules).symbol}`;
    if (this.rules.priceTriggeredTypes.includes(body.type) && !this.rules.pairs.includes(pair)) {
      // The API's own check after validation (pair_not_streamed): the order waits on a price stream.
      this.showErrors([{ field: "tokenOut", message: `${body.type} orders need a pair the quote stream prices` }]);
      this.say(`Not sent: no price stream for ${pair}`, "invalid");
      return;
    }
    const signature = JSON.stringify(body);
    const key = this.retry && this.retry.body === signature ? this.retry.key : newIdempotencyKey();
    this.button.disabled = true;
    this.say("sending…", "busy");
    try {
      const accepted = await request("POST", "/api/orders/execute", { body, headers: { "Idempotency-Key": key } });
      this.retry = null;
      this.say(`accepted ${accepted.type} order ${accepted.orderId}`, "ok");
      this.onAccepted(accepted, body);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      // No answer or a 5xx: the order may have been accepted, so a resend of this body reuses the key.
      this.retry = error.status === 0 || error.status >= 500 ? { body: signature, key } : null;
      if (error.details.length) this.showErrors(error.details.map((d) => ({ field: d.field, message: d.message })));
      const retry = this.retry ? " (submitting again is safe: same Idempotency-Key)" : "";
      this.say(`Refused: ${error.status || "no answer"} ${error.code}: ${error.message}${retry}`, "error");
    } finally {
      this.button.disabled = false;
    }
  }
}
