// The order form: fields shown for the chosen type, the API's validation before anything is sent
// (rules.js), then POST /api/orders/execute and the order followed on the timeline.

import { ApiError, newIdempotencyKey, request } from "./api.js";
import { orderBody, resolveToken, validateOrder } from "./rules.js";
import { el } from "./dom.js";

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

  values() {
    const values = {};
    for (const name of ["type", "tokenIn", "tokenOut", "amount", "slippageBps", "limitPrice", "triggerKind",
      "minLiquidity", "expiresAt", "userId", "clientOrderId"]) values[name] = this.form.elements[name].value;
    return values;
  }

  showFields() {
    const { type, triggerKind } = this.values();
    this.form.dataset.type = type;
    this.form.dataset.trigger = triggerKind;
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
    const body = orderBody(this.values());
    const verdict = validateOrder(body, this.rules);
    this.showErrors(verdict.errors);
    if (!verdict.ok) {
      this.say(`Not sent: ${verdict.errors.map((e) => e.message).join("; ")}`, "invalid");
      return;
    }
    const pair = `${resolveToken(body.tokenIn, this.rules).symbol}-${resolveToken(body.tokenOut, this.rules).symbol}`;
    if (body.type === "limit" && !this.rules.pairs.includes(pair)) {
      // The API's own check after validation (pair_not_streamed): a limit order waits on a price stream.
      this.showErrors([{ field: "tokenOut", message: "limit orders need a pair the quote stream prices" }]);
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
