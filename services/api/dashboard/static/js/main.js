// The dashboard's wiring: reads the API's rules from the page, starts the price poll, the open-orders poll,
// the form and the timeline, and restores the orders followed before a reload.

import { apiKey, setApiKey } from "./api.js";
import { OrderForm } from "./form.js";
import { History, OpenOrders } from "./orders.js";
import { Quotes } from "./quotes.js";
import { readRules } from "./rules.js";
import { Timeline } from "./timeline.js";

const rules = readRules();
const $ = (id) => document.getElementById(id);

let openOrders = null;
let history = null;
let refreshTimer = null;

// History trails the events by db-sync's batching: refresh a moment after an order ends.
function refreshHistorySoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => history.load(), 1500);
}

const timeline = new Timeline({
  root: $("timeline"),
  terminal: rules.terminal,
  onStatus: (orderId, status, meta) => {
    openOrders.observe(orderId, status, meta);
    if (rules.terminal.includes(status)) refreshHistorySoon();
  },
});
openOrders = new OpenOrders({ table: $("open-table"), message: $("open-message"), refreshButton: $("open-refresh"), timeline });
history = new History({
  form: $("history-form"), table: $("history-table"), message: $("history-message"), more: $("history-more"), timeline, rules,
});

new OrderForm({
  form: $("order-form"),
  tokenList: $("token-list"),
  rules,
  onAccepted: (accepted, body) => {
    const meta = { ...body, type: accepted.type, createdAt: new Date().toISOString() };
    timeline.follow(accepted.orderId, meta);
  },
});

function showApiStatus(up) {
  const pill = $("api-status");
  pill.dataset.state = up ? "up" : "down";
  pill.textContent = up ? "API: up" : "API: not answering";
}

new Quotes({ pairs: rules.pairs, tabs: $("pair-tabs"), chart: $("price-chart"), legend: $("chart-legend"), onReachable: showApiStatus }).start();

const keyInput = $("api-key");
keyInput.value = apiKey();
$("key-note").textContent = rules.authEnabled ? "this API requires a key" : "this API does not require a key";
function keyChanged() {
  $("key-note").textContent = apiKey() ? "key saved in this browser" : "no key";
  timeline.restartStopped();
  openOrders.refresh();
  history.load();
}
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  keyChanged();
});
$("api-key-clear").addEventListener("click", () => {
  keyInput.value = "";
  setApiKey("");
  keyChanged();
});

timeline.restore();
openOrders.start();
history.load();
document.body.dataset.ready = "true";
