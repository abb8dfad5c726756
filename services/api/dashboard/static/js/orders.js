// Open resting orders and the history table, both read from GET /api/orders (PostgreSQL).
//
// The contract has no "open orders" route; a resting order (limit, sniper, stop, trailing stop, OCO) is one
// whose status is `waiting`, so the open list is the history filtered on it. db-sync writes history a few
// hundred ms behind the events, so what the live feeds already know wins: an order the page saw go to
// `waiting` is listed at once, and one it saw leave `waiting` (cancelled, triggered, expired) is dropped even
// while PostgreSQL still says waiting.
//
// A trailing stop's level moves with the price, and only GET /api/orders/{id} knows it (from Redis): the
// listed trailing stops are polled, a few per round and in turn, so many of them cost the API a bounded trickle
// of reads (nothing while the tab is hidden). Their cells are written in place, never by rebuilding the table.

import { request } from "./api.js";
import { el, clear, shortId, dateTime } from "./dom.js";

const OPEN_POLL_MS = 3000;
const TRAIL_POLL_MS = 2000;
// At most this many trailing stops are read per round; with more listed, each waits its turn.
const TRAIL_READS_PER_ROUND = 10;

function describeWait(order) {
  const price = `${order.tokenOut}/${order.tokenIn}`;
  switch (order.type) {
    case "limit":
      return `BEST ≥ ${order.limitPrice} ${price}`;
    case "stop":
      return `BEST ≤ ${order.stopPrice} ${price}`;
    case "oco":
      return `BEST ≥ ${order.takeProfitPrice} or ≤ ${order.stopPrice} ${price}`;
    case "trailing_stop": {
      const trail = `BEST ≤ high − ${order.trailBps} bps`;
      return order.activationPrice ? `${trail}, armed once BEST ≥ ${order.activationPrice} ${price}` : trail;
    }
    default:
      break;
  }
  const trigger = order.trigger || {};
  if (trigger.kind === "liquidity") return `pool liquidity ≥ ${trigger.minLiquidity} ${order.tokenOut}`;
  if (trigger.kind === "listing") return `a ${order.tokenIn}-${order.tokenOut} pool`;
  return "";
}

// A trailing stop's live cell: its stop level and high-water mark once armed (GET /api/orders/{id}).
function trailCell(order, trail) {
  if (order.type !== "trailing_stop") return [];
  if (!trail) return [el("span", { class: "muted", text: "…" })];
  if (!trail.armed) return [el("span", { class: "not-armed muted", text: "not armed yet" })];
  if (!trail.stopLevel) return [el("span", { class: "muted", text: "armed" })]; // its high not readable this moment
  return [
    el("span", { class: "detail stop-level" }, el("b", { text: "level " }), el("span", { class: "value", text: trail.stopLevel ?? "" })),
    " ",
    el("span", { class: "detail high-water-mark" }, el("b", { text: "high " }), el("span", { class: "value", text: trail.highWaterMark ?? "" })),
  ];
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
    this.trails = new Map(); // orderId → {armed, highWaterMark, stopLevel}: a listed trailing stop, as last read
    this.trailTurn = 0; // where the next round of trailing-stop reads starts, when not all fit in one
    this.trailRound = null; // the round under way, if any: rounds never overlap
    refreshButton.addEventListener("click", () => this.refresh());
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), OPEN_POLL_MS);
    setInterval(() => this.pollTrails(), TRAIL_POLL_MS);
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
    this.listed = rows;
    for (const orderId of this.trails.keys()) {
      if (!rows.some((order) => order.orderId === orderId)) this.trails.delete(orderId);
    }
    clear(this.body);
    if (!rows.length) {
      this.body.append(el("tr", { class: "empty" }, el("td", { colspan: 9, class: "muted", text: "no resting orders" })));
      return;
    }
    for (const order of rows) {
      const note = this.cancelling.get(order.orderId);
      const trail = this.trails.get(order.orderId);
      const button = el("button", {
        type: "button",
        class: "cancel small",
        disabled: note === "cancelling…",
        onclick: () => this.cancel(order),
        text: "Cancel",
      });
      this.body.append(
        el("tr", { "data-order-id": order.orderId, "data-type": order.type, "data-armed": trail && String(trail.armed) },
          ...leadingCells(order, this.timeline),
          el("td", { class: "waits-for", text: describeWait(order) }),
          el("td", { class: "trail" }, trailCell(order, trail)),
          el("td", { text: order.expiresAt ? dateTime(order.expiresAt) : "never" }),
          el("td", {}, button, note ? el("span", { class: "row-note", text: ` ${note}` }) : null)),
      );
    }
    // A trailing stop just listed is read at once rather than at the next round.
    if (rows.some((order) => order.type === "trailing_stop" && !this.trails.has(order.orderId))) this.pollTrails();
  }

  // One round of reads of the listed trailing stops: the next TRAIL_READS_PER_ROUND in turn, one at a time.
  async pollTrails() {
    if (this.trailRound || document.hidden) return;
    const trailing = (this.listed || []).filter((order) => order.type === "trailing_stop");
    if (!trailing.length) return;
    const start = this.trailTurn % trailing.length;
    const batch = [...trailing.slice(start), ...trailing.slice(0, start)].slice(0, TRAIL_READS_PER_ROUND);
    this.trailTurn = start + batch.length;
    this.trailRound = (async () => {
      for (const order of batch) await this.readTrail(order);
    })();
    try {
      await this.trailRound;
    } finally {
      this.trailRound = null;
    }
  }

  async readTrail(order) {
    let view;
    try {
      view = await request("GET", `/api/orders/${encodeURIComponent(order.orderId)}`);
    } catch {
      return; // shown as it was; the next round tries again (and the open list drops an order that is gone)
    }
    if (view.status !== "waiting") {
      this.observe(order.orderId, view.status, order); // it moved on before its feed or history said so
      return;
    }
    const trail = { armed: view.armed === true, highWaterMark: view.highWaterMark, stopLevel: view.stopLevel };
    this.trails.set(order.orderId, trail);
    const row = this.body.querySelector(`tr[data-order-id="${CSS.escape(order.orderId)}"]`);
    const cell = row && row.querySelector("td.trail");
    if (cell) {
      clear(cell).append(...trailCell(order, trail));
      row.dataset.armed = String(trail.armed);
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
