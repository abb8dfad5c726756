// Each followed order's lifecycle, live: one WebSocket per order (/ws/orders/{id}), which replays what the
// order already has and then streams the rest. When a socket drops before the terminal event, the feed
// reconnects with `?after=<last seq shown>`, so the server sends exactly the events the page has not seen
// (docs/contract.md, "WebSocket"). Events are applied strictly in seq order: one already shown is counted as a
// duplicate and dropped, and a gap makes the feed reconnect from the last one it has.

import { authenticateSocket, socketUrl } from "./api.js";
import { el, clear, shortId, clock } from "./dom.js";

const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;
const GAP_CLOSE = 4000; // ours (4000-4999 are the application's): "reconnect from what I have"
const STOP_CODES = { 4400: "refused", 4401: "needs a valid API key", 4404: "unknown order" };
const RECENT_KEY = "orderEngine.followed";
const KEEP_RECENT = 20;

class OrderFeed {
  constructor(orderId, terminal, handlers) {
    this.orderId = orderId;
    this.terminal = terminal;
    this.handlers = handlers; // {event(message), state(name, detail)}
    this.lastSeq = 0;
    this.duplicates = 0;
    this.connects = 0;
    this.finished = false;
    this.stopped = false;
    this.retryMs = RETRY_FIRST_MS;
    this.socket = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    if (!this.finished && !this.socket) this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const params = this.lastSeq ? { after: this.lastSeq } : {};
    const socket = new WebSocket(socketUrl(`/ws/orders/${encodeURIComponent(this.orderId)}`, params));
    socket.binaryType = "arraybuffer"; // the API sends each event as one binary frame of UTF-8 JSON
    this.socket = socket;
    this.connects += 1;
    this.handlers.state(this.connects > 1 ? "resuming" : "connecting");
    socket.onopen = () => {
      authenticateSocket(socket);
      this.retryMs = RETRY_FIRST_MS;
      this.handlers.state("live");
    };
    socket.onmessage = (frame) => this.receive(socket, frame.data);
    socket.onclose = (closed) => this.closed(socket, closed);
  }

  receive(socket, data) {
    let message;
    try {
      message = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      return;
    }
    if (message.type === "error") {
      this.lastError = message;
      return;
    }
    if (message.type !== "status" || !Number.isInteger(message.seq)) return;
    if (message.seq <= this.lastSeq) {
      this.duplicates += 1;
      return;
    }
    if (message.seq !== this.lastSeq + 1) {
      socket.close(GAP_CLOSE, "gap");
      return;
    }
    this.lastSeq = message.seq;
    if (this.terminal.has(message.status)) this.finished = true;
    this.handlers.event(message);
  }

  closed(socket, closed) {
    if (this.socket !== socket) return; // an older socket, already replaced
    this.socket = null;
    if (this.finished) return this.handlers.state("done");
    if (this.stopped) return this.handlers.state("paused");
    if (STOP_CODES[closed.code]) {
      const why = (this.lastError && this.lastError.message) || STOP_CODES[closed.code];
      return this.handlers.state("stopped", why);
    }
    // Anything else (the API restarting, a network drop, a close without the terminal event) is temporary.
    const delay = closed.code === GAP_CLOSE ? 0 : this.retryMs * (0.5 + Math.random() / 2);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.handlers.state("reconnecting", `reconnecting in ${Math.round(delay)} ms`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
  }
}

// Every venue the order's route uses is marked chosen: the one venue, or both when the order was split.
function quoteSummary(quotes, chosen) {
  if (!quotes || typeof quotes !== "object") return null;
  return Object.entries(quotes).map(([venue, q]) =>
    el("span", { class: `quote${chosen.includes(venue) ? " chosen" : ""}`, "data-venue": venue },
      `${venue} ${q.price} (out ${q.amountOut}, fee ${q.fee})`));
}

function detail(name, value, className) {
  if (value === undefined || value === null || value === "") return null;
  return el("span", { class: `detail ${className || ""}` }, el("b", { text: `${name} ` }), el("span", { class: "value", text: String(value) }));
}

// The objects of a list field (routePlan, legs); [] for an event from before it existed (absent or null).
function objects(value) {
  return Array.isArray(value) ? value.filter((item) => item && typeof item === "object") : [];
}

// One node per leg, so each venue's share can be read (and tested) on its own.
function legList(legs, separator, label) {
  const nodes = legs.flatMap((leg, i) => [
    i ? separator : null,
    el("span", { class: "leg", "data-venue": leg.dex, text: label(leg) }),
  ]);
  return el("span", { class: "value" }, nodes);
}

function routePlan(plan) {
  if (!plan.length) return null;
  return el("span", { class: "detail route", "data-legs": plan.length },
    el("b", { text: plan.length > 1 ? "split " : "route " }),
    legList(plan, " / ", (leg) => `${leg.dex} ${leg.percent}%`));
}

function withUnit(amount, unit) {
  return amount === undefined || amount === null ? null : `${amount}${unit ? ` ${unit}` : ""}`;
}

// A confirmed order's legs, shown only when it was split: a single leg says nothing `amount out` does not.
function legsDetail(legs, tokenOut) {
  if (legs.length < 2) return null;
  return el("span", { class: "detail legs", "data-legs": legs.length },
    el("b", { text: "legs " }),
    legList(legs, ", ", (leg) => `${leg.dex} ${leg.inAmount} → ${withUnit(leg.outAmount, tokenOut)}`));
}

function eventRow(m, meta) {
  const error = m.error ? `${m.error}${m.errorMessage ? `: ${m.errorMessage}` : ""}` : null;
  const plan = objects(m.routePlan);
  const legs = objects(m.legs);
  const chosen = plan.length ? plan.map((leg) => leg.dex) : [m.dex];
  return el("li", { class: `event status-${m.status}`, "data-seq": m.seq, "data-status": m.status },
    el("span", { class: "seq", text: `#${m.seq}` }),
    el("span", { class: "badge", text: m.status }),
    el("time", { datetime: m.timestamp, text: clock(m.timestamp) }),
    detail("attempt", m.attempt && m.attempt > 1 ? m.attempt : null, "attempt"),
    m.requoted === true ? el("span", { class: "detail requoted muted", text: "re-quoted" }) : null,
    // The route or the legs name the venues; `dex` alone would name only a split's largest leg.
    plan.length || legs.length > 1 ? null : detail("venue", m.dex, "dex"),
    routePlan(plan),
    detail("impact", withUnit(m.priceImpactPct, "%"), "price-impact"),
    detail("min out", withUnit(m.otherAmountThreshold, meta.tokenOut), "min-out"),
    quoteSummary(m.quotes, chosen),
    detail("limit", m.limitPrice, "limit"),
    detail("take profit", m.takeProfitPrice, "take-profit-price"),
    detail("stop", m.stopPrice, "stop-price"),
    detail("trail", withUnit(m.trailBps, "bps"), "trail-bps"),
    detail("activation", m.activationPrice, "activation-price"),
    // A conditional order's `triggered` names its condition in `trigger` (text); a sniper's `trigger` is its object.
    detail("condition", typeof m.trigger === "string" ? m.trigger : null, "condition"),
    detail("trigger price", m.triggerPrice, "trigger-price"),
    detail("high-water mark", m.highWaterMark, "high-water-mark"),
    detail("txHash", m.txHash, "tx-hash"),
    detail("slot", m.slot, "slot"),
    detail("executed price", m.executedPrice, "executed-price"),
    detail("amount out", m.amountOut, "amount-out"),
    legsDetail(legs, meta.tokenOut),
    detail("error", error, "error"));
}

class OrderCard {
  constructor(orderId, meta) {
    this.orderId = orderId;
    this.meta = meta;
    this.attempts = 0;
    this.status = null; // what its events say; until the first arrives, the badge shows what history said
    this.list = el("ol", { class: "events" });
    this.state = el("span", { class: "feed-state muted" });
    this.summary = el("div", { class: "summary" });
    this.badge = el("span", { class: "badge big", text: meta.status || "…" });
    const pair = meta.tokenIn ? `${meta.amount} ${meta.tokenIn} → ${meta.tokenOut}` : "";
    this.node = el("article", { class: "order-card", "data-order-id": orderId, "data-duplicates": 0 },
      el("header", {},
        this.badge,
        el("span", { class: "order-type", text: meta.type || "" }),
        el("span", { class: "pair", text: pair }),
        el("code", { class: "order-id", title: orderId, text: shortId(orderId) }),
        this.state),
      this.summary,
      this.list);
  }

  apply(m, feed) {
    this.status = m.status;
    this.node.dataset.status = m.status;
    this.node.dataset.lastSeq = String(m.seq);
    this.badge.textContent = m.status;
    this.badge.className = `badge big status-${m.status}`;
    this.attempts = Math.max(this.attempts, m.attempt || 0);
    this.list.append(eventRow(m, this.meta));
    this.last = { ...(this.last || {}), ...Object.fromEntries(Object.entries(m).filter(([, v]) => v !== null)) };
    this.renderSummary(feed);
  }

  renderSummary(feed) {
    const l = this.last || {};
    const retries = this.attempts > 1 ? this.attempts - 1 : 0;
    const plan = objects(l.routePlan);
    const parts = [
      plan.length > 1 ? routePlan(plan) : detail("venue", l.dex, "dex"), // `dex` is only a split's largest leg
      detail("txHash", l.txHash, "tx-hash"),
      detail("executed price", l.executedPrice, "executed-price"),
      detail("amount out", l.amountOut, "amount-out"),
      detail("retries", retries || null, "retries"),
      detail("error", l.error ? `${l.error}${l.errorMessage ? `: ${l.errorMessage}` : ""}` : null, "error"),
      detail("reconnects", feed && feed.connects > 1 ? feed.connects - 1 : null, "reconnects"),
    ];
    clear(this.summary).append(...parts.filter(Boolean)); // append() would print a null as "null"
    this.node.dataset.duplicates = String(feed ? feed.duplicates : 0);
  }

  setState(name, message) {
    this.state.textContent = message ? `${name}: ${message}` : name;
    this.node.dataset.feed = name;
  }
}

export class Timeline {
  constructor({ root, terminal, onStatus }) {
    this.root = root;
    this.terminal = new Set(terminal);
    this.onStatus = onStatus; // (orderId, status, meta): open orders and history listen
    this.entries = new Map(); // orderId → {card, feed, meta}
  }

  // Follow an order (again): a card at the top, and its feed from the first event or from where it is.
  follow(orderId, meta = {}) {
    const known = this.entries.get(orderId);
    if (known) {
      this.root.prepend(known.card.node);
      known.feed.start();
      return known;
    }
    const card = new OrderCard(orderId, meta);
    const entry = { card, meta, feed: null };
    entry.feed = new OrderFeed(orderId, this.terminal, {
      event: (m) => {
        card.apply(m, entry.feed);
        this.onStatus(orderId, m.status, meta);
      },
      state: (name, message) => card.setState(name, message),
    });
    this.entries.set(orderId, entry);
    const empty = this.root.querySelector(".empty");
    if (empty) empty.remove();
    this.root.prepend(card.node);
    entry.feed.start();
    this.remember(orderId, meta);
    return entry;
  }

  // After the API key changed: feeds refused for want of one may now be let in.
  restartStopped() {
    for (const { feed } of this.entries.values()) if (!feed.finished && !feed.socket) feed.connect();
  }

  // The last orders followed, so a reload shows them again (their feeds replay from the first event).
  remember(orderId, meta) {
    try {
      const recent = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]").filter((r) => r.orderId !== orderId);
      recent.unshift({ orderId, meta });
      localStorage.setItem(RECENT_KEY, JSON.stringify(recent.slice(0, KEEP_RECENT)));
    } catch {
      // no storage: nothing is restored on reload
    }
  }

  restore() {
    let recent = [];
    try {
      recent = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    } catch {
      recent = [];
    }
    for (const { orderId, meta } of recent.reverse()) {
      if (typeof orderId === "string") this.follow(orderId, meta || {});
    }
  }
}
