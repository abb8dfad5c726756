// Open resting orders and the history table, both read from GET /api/orders (PostgreSQL).
//
// The contract has no "open orders" route; a resting limit or sniper order is one whose status is
// `waiting`, so the open list is the history filtered on it. db-sync writes history a few hundred ms behind
// the events, so what the live feeds already know wins: an order the page saw go to `waiting` is listed at
// once, and one it saw leave `waiting` (cancelled, triggered, expired) is dropped even while PostgreSQL
// still says waiting.

import { request } from "./api.js";
import { el, clear, shortId, dateTime } from "./dom.js";

const OPEN_POLL_MS = 3000;

function describeWait(order) {
  if (order.type === "limit") return `BEST ≥ ${order.limitPrice} ${order.tokenOut}/${order.tokenIn}`;
  const trigger = order.trigger || {};
  if (trigger.kind === "liquidity") return `pool liquidity ≥ ${trigger.minLiquidity} ${order.tokenOut}`;
  if (trigger.kind === "listing") return `a ${order.tokenIn}-${order.tokenOut} pool`;
  return "";
}

// The columns both tables open with: when, which order (a button that follows it live), type, pair, amount.
function leadingCells(order, timeline) {
  return [
    el("td", { text: dateTime(order.createdAt) }),
    el("td", {}, el("button", {
      type: "button", class: "link", title: order.orderId, text: shortId(order.orderId),
      onclick: () => timeline.follow(order.orderId, order),
    })),
    el("td", { text: order.type }),
    el("td", { text: `${order.tokenIn}-${order.tokenOut}` }),
    el("td", { text: order.amount }),
  ];
}

function explain(error) {
  if (error.status === 401) return `${error.message} — enter an API key above`;
  if (error.status === 0) return "the API is not answering; retrying";
  return `${error.status} ${error.code}: ${error.message}`;
}

export class OpenOrders {
  constructor({ table, message, refreshButton, timeline }) {
    this.body = table.querySelector("tbody");
    this.message = message;
    this.timeline = timeline;
    this.persisted = []; // waiting orders as PostgreSQL last listed them
    this.live = new Map(); // orderId → {status, order}: what the feeds said since
    this.cancelling = new Map(); // orderId → text shown in its row while a DELETE is out or refused
    refreshButton.addEventListener("click", () => this.refresh());
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), OPEN_POLL_MS);
  }

  async refresh() {
    try {
      const page = await request("GET", "/api/orders", { query: { status: "waiting", limit: 500 } });
      this.persisted = page.orders;
      this.message.textContent = "";
    } catch (error) {
      this.message.textContent = explain(error);
    }
    this.render();
  }

  // A feed's event: `order` is what the page knows of it (its submission, or its history row).
  observe(orderId, status, order) {
    this.live.set(orderId, { status, order });
    this.render();
  }

  rows() {
    const rows = new Map();
    for (const order of this.persisted) {
      const seen = this.live.get(order.orderId);
      if (!seen || seen.status === "waiting") rows.set(order.orderId, order);
    }
    for (const [orderId, seen] of this.live) {
      if (seen.status === "waiting" && !rows.has(orderId) && seen.order && seen.order.type) {
        rows.set(orderId, { orderId, ...seen.order });
      }
    }
    return [...rows.values()].sort((a, b) => String(b.createdAt || "").localeCompare(String(a.createdAt || "")));
  }

  render() {
    const rows = this.rows();
    // Only when something changed: a table rebuilt under the pointer would swallow a click on Cancel.
    const signature = JSON.stringify([rows, [...this.cancelling]]);
    if (signature === this.signature) return;
    this.signature = signature;
    clear(this.body);
    if (!rows.length) {
      this.body.append(el("tr", { class: "empty" }, el("td", { colspan: 8, class: "muted", text: "no resting orders" })));
      return;
    }
    for (const order of rows) {
      const note = this.cancelling.get(order.orderId);
      const button = el("button", {
        type: "button",
        class: "cancel small",
        disabled: note === "cancelling…",
        onclick: () => this.cancel(order),
        text: "Cancel",
      });
      this.body.append(
        el("tr", { "data-order-id": order.orderId },
          ...leadingCells(order, this.timeline),
          el("td", { text: describeWait(order) }),
          el("td", { text: order.expiresAt ? dateTime(order.expiresAt) : "never" }),
          el("td", {}, button, note ? el("span", { class: "row-note", text: ` ${note}` }) : null)),
      );
    }
  }

  async cancel(order) {
    this.cancelling.set(order.orderId, "cancelling…");
    this.render();
    // Follow it, so the `cancelled` event (or whatever won the race) shows on its timeline.
    this.timeline.follow(order.orderId, order);
    try {
      await request("DELETE", `/api/orders/${encodeURIComponent(order.orderId)}`);
      this.cancelling.delete(order.orderId);
      this.live.set(order.orderId, { status: "cancelled", order });
    } catch (error) {
      this.cancelling.set(order.orderId, explain(error));
    }
    this.render();
  }
}

export class History {
  constructor({ form, table, message, more, timeline, rules }) {
    this.form = form;
    this.body = table.querySelector("tbody");
    this.message = message;
    this.more = more;
    this.timeline = timeline;
    this.cursor = null;
    for (const [name, values] of [["status", rules.statuses], ["type", rules.orderTypes]]) {
      const select = form.elements[name];
      for (const value of values) select.append(el("option", { value, text: value }));
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
    more.addEventListener("click", () => this.load(this.cursor));
  }

  filters() {
    const query = {};
    for (const name of ["status", "type", "userId", "tokenIn", "tokenOut", "limit"]) {
      const value = this.form.elements[name].value.trim();
      if (value) query[name] = value;
    }
    return query;
  }

  async load(cursor = null) {
    const query = { ...this.filters(), cursor };
    this.message.textContent = "loading…";
    let page;
    try {
      page = await request("GET", "/api/orders", { query });
    } catch (error) {
      this.message.textContent = explain(error);
      return;
    }
    if (!cursor) clear(this.body);
    for (const order of page.orders) this.body.append(this.row(order));
    this.cursor = page.nextCursor;
    this.more.hidden = !page.nextCursor;
    const shown = this.body.querySelectorAll("tr[data-order-id]").length;
    this.message.textContent = shown ? `${shown} order(s), newest first` : "no orders match";
  }

  row(order) {
    const error = order.error ? `${order.error}${order.errorMessage ? `: ${order.errorMessage}` : ""}` : "";
    return el("tr", { "data-order-id": order.orderId, "data-status": order.status },
      ...leadingCells(order, this.timeline),
      el("td", { class: "status", text: order.status }),
      el("td", { text: order.dex || "" }),
      el("td", { text: order.executedPrice || "" }),
      el("td", { text: order.amountOut || "" }),
      el("td", {}, order.txHash ? el("code", { title: order.txHash, text: shortId(order.txHash) }) : ""),
      el("td", { class: "error", text: error }));
  }
}
