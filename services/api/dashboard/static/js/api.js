// The API as the contract describes it, with the user's API key on every request.
// HTTP sends it as `Authorization: Bearer`; a browser cannot set headers on a WebSocket, so a socket sends
// it as its first message, {"type":"auth","apiKey":"…"} (docs/contract.md): never in a URL, where proxies'
// logs and the browser's history would keep it.

const KEY_STORAGE = "orderEngine.apiKey";

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode, policy): the key lives only in the field
  }
}

export function setApiKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing to do: without storage the key is forgotten on reload, which is the safe side
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    const fallback = status ? `HTTP ${status}` : "the API did not answer";
    super((body && body.message) || fallback);
    this.status = status; // 0: no answer at all (network, API down)
    this.code = (body && body.error) || (status ? "http_error" : "network");
    this.details = (body && body.details) || [];
  }
}

export async function request(method, path, { query, body, headers = {} } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const sent = { Accept: "application/json", ...headers };
  const key = apiKey();
  if (key) sent.Authorization = `Bearer ${key}`;
  const init = { method, headers: sent, cache: "no-store" };
  if (body !== undefined) {
    sent["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // a proxy's HTML error page, an empty body: the status says enough
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export function socketUrl(path, params = {}) {
  const url = new URL(path, location.origin);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  return url.toString();
}

// Call from the socket's onopen: the API reads the key from the first message (with keys on, a socket that
// sends none within 5 s is closed with 4401; with keys off the message is ignored).
export function authenticateSocket(socket) {
  const key = apiKey();
  if (key) socket.send(JSON.stringify({ type: "auth", apiKey: key }));
}

// An Idempotency-Key: crypto.randomUUID exists only in secure contexts, getRandomValues everywhere.
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "dash-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
