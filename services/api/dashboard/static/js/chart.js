// A live line chart in plain SVG: BEST and each venue's price over the last few minutes.
// Three polylines over a rolling window are ~100 lines of code here; a charting library would be more to
// vendor, license-track and keep up to date than it saves. Prices become floats only to place pixels; the
// legend prints the API's decimal strings as they came.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 260;
const PAD = { left: 64, right: 12, top: 12, bottom: 26 };
const Y_TICKS = 4;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function label(value, span) {
  // Enough digits to tell ticks apart, whatever the pair's scale (BONK-SOL ~1e-7, SOL-BONK ~1e7).
  const digits = span > 0 ? Math.max(0, Math.min(12, 2 - Math.floor(Math.log10(span / Y_TICKS)))) : 4;
  if (Math.abs(value) >= 1e6 || (Math.abs(value) < 1e-4 && value !== 0)) return value.toPrecision(6);
  return value.toFixed(digits);
}

function timeLabel(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

// points: [{t (epoch s), best, raydium, meteora}] (prices as numbers or undefined); series: [{key, className}].
export function drawChart(root, points, series) {
  root.replaceChildren();
  root.dataset.points = String(points.length);
  const values = points.flatMap((p) => series.map((s) => p[s.key]).filter((v) => Number.isFinite(v)));
  if (points.length < 2 || values.length === 0) {
    root.append(svg("text", { x: WIDTH / 2, y: HEIGHT / 2, class: "chart-empty", "text-anchor": "middle" }, "waiting for quotes…"));
    return;
  }
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (high === low) {
    const pad = Math.abs(high) * 1e-4 || 1e-9;
    low -= pad;
    high += pad;
  }
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0 || 1)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - low) / (high - low)) * (HEIGHT - PAD.top - PAD.bottom);

  for (let i = 0; i <= Y_TICKS; i++) {
    const value = low + ((high - low) * i) / Y_TICKS;
    root.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end", class: "axis" }, label(value, high - low)));
  }
  root.append(svg("text", { x: PAD.left, y: HEIGHT - 6, class: "axis" }, timeLabel(t0)));
  root.append(svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end", class: "axis" }, timeLabel(t1)));

  for (const s of series) {
    const coords = points
      .filter((p) => Number.isFinite(p[s.key]))
      .map((p) => `${x(p.t).toFixed(1)},${y(p[s.key]).toFixed(1)}`);
    if (coords.length) {
      root.append(svg("polyline", { points: coords.join(" "), class: `line ${s.className}`, "data-series": s.key }));
    }
  }
}
