// Prices: every streamed pair's cached quotes (GET /api/quotes/{pair}), polled once a second, kept for the
// last few minutes, and the selected pair drawn as a chart.
// Polling rather than a socket: the contract streams quotes over no WebSocket, and the cache itself is
// refreshed every QUOTE_INTERVAL_MS (500 ms by default), so a faster poll would only redraw the same data.

import { request } from "./api.js";
import { drawChart } from "./chart.js";
import { el, clear } from "./dom.js";

const POLL_MS = 1000;
const KEEP_POINTS = 300; // five minutes at one point a second
const SERIES = [
  { key: "best", className: "best", title: "BEST" },
  { key: "raydium", className: "raydium", title: "Raydium" },
  { key: "meteora", className: "meteora", title: "Meteora" },
];

export class Quotes {
  constructor({ pairs, tabs, chart, legend, onReachable }) {
    this.pairs = pairs;
    this.tabs = tabs;
    this.chart = chart;
    this.legend = legend;
    this.onReachable = onReachable;
    this.history = new Map(pairs.map((pair) => [pair, []]));
    this.latest = new Map();
    this.selected = pairs[0] || null;
    this.tabButtons = new Map();
  }

  start() {
    clear(this.tabs);
    for (const pair of this.pairs) {
      const button = el("button", {
        type: "button",
        role: "tab",
        class: "pair-tab",
        "data-pair": pair,
        onclick: () => this.select(pair),
      }, el("span", { class: "pair-name", text: pair }), el("span", { class: "pair-price", text: "—" }));
      this.tabButtons.set(pair, button);
      this.tabs.append(button);
    }
    this.select(this.selected);
    this.poll();
  }

  select(pair) {
    this.selected = pair;
    for (const [name, button] of this.tabButtons) button.setAttribute("aria-selected", String(name === pair));
    this.chart.dataset.pair = pair || "";
    this.render();
  }

  async poll() {
    const results = await Promise.allSettled(this.pairs.map((pair) => request("GET", `/api/quotes/${pair}`)));
    let answered = false;
    results.forEach((result, i) => {
      if (result.status === "fulfilled") {
        answered = true;
        this.record(this.pairs[i], result.value);
      } else if (result.reason.status) {
        answered = true; // a 404 (no quotes yet) is still the API answering
      }
    });
    this.onReachable(answered);
    this.render();
    setTimeout(() => this.poll(), POLL_MS);
  }

  record(pair, view) {
    this.latest.set(pair, view);
    const best = view.best;
    if (!best) return;
    const points = this.history.get(pair);
    const t = Number(best.ts);
    if (points.length && points[points.length - 1].t >= t) return; // the cache has not moved since
    const venue = (name) => (view.venues[name] ? Number(view.venues[name].price) : undefined);
    points.push({ t, best: Number(best.price), raydium: venue("raydium"), meteora: venue("meteora") });
    if (points.length > KEEP_POINTS) points.splice(0, points.length - KEEP_POINTS);
  }

  render() {
    for (const [pair, button] of this.tabButtons) {
      const view = this.latest.get(pair);
      const price = button.querySelector(".pair-price");
      price.textContent = view && view.best ? `${view.best.price} · ${view.best.dex}` : "—";
    }
    if (!this.selected) return;
    drawChart(this.chart, this.history.get(this.selected), SERIES);
    this.renderLegend(this.latest.get(this.selected));
  }

  renderLegend(view) {
    clear(this.legend);
    if (!view) {
      this.legend.append(el("span", { class: "muted", text: "no quotes for this pair yet" }));
      return;
    }
    const [tokenIn, tokenOut] = (view.pair || this.selected).split("-");
    const quote = (s) => (s.key === "best" ? view.best : view.venues[s.key]);
    for (const s of SERIES) {
      const q = quote(s);
      if (!q) continue;
      const stale = q.stale === "1" ? " (stale)" : "";
      const extra = s.key === "best" ? ` via ${q.dex}` : ` fee ${q.fee}`;
      this.legend.append(
        el("span", { class: `legend-item ${s.className}`, "data-series": s.key },
          el("i", { class: "swatch" }),
          `${s.title}: ${q.price} ${tokenOut}/${tokenIn}${extra} · ${q.ageMs} ms old${stale}`),
      );
    }
  }
}
