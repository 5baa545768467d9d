// What every console page uses: the API key, calls to /api/v1, Server-Sent Events read over fetch
// (so that they carry the key, which EventSource cannot), elements and messages.

const KEY = "videogen.apiKey";
export const FINAL = new Set(["completed", "failed", "cancelled"]);

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

/** An element: h("a", {href: "/ui/"}, "Jobs"). Text is always text, never markup. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const key = apiKey.get();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

function explain(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => `${(item.loc || []).slice(1).join(".") || "request"}: ${item.msg}`).join("; ");
  }
  if (typeof detail === "string") return detail;
  return `the server answered ${status}`;
}

/** One call to the API: the parsed JSON answer, null for 204, or an ApiError naming what went wrong. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, explain(response.status, answer));
  return answer;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Draws now, then again every ms until signal (a failed redraw keeps the last drawing). */
export async function redrawEvery(ms, signal, draw) {
  await draw();
  while (!signal.aborted) {
    await sleep(ms, signal);
    if (!signal.aborted) await draw().catch(() => {});
  }
}

/** A captioned table in its scrolling wrapper; columns are [name, numeric?] pairs. */
export function table(id, caption, columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", { id }, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map(([name, numeric]) => h("th", { scope: "col", class: numeric ? "num" : null }, name)))),
    h("tbody", {}, rows)));
}

/** Table cells of values, numbers aligned right. */
export function cells(values) {
  return values.map((value) => (typeof value === "number" ? h("td", { class: "num" }, value) : h("td", {}, value)));
}

function parseEvent(block) {
  const event = { id: "", type: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = value;
    else if (field === "event") event.type = value;
    else if (field === "data") event.data.push(value);
  }
  return event;
}

/** Reads one event stream of the API until it ends: onEvent(event) for each event with data.
 *  Answers false for a 204 (nothing more will come), true when the stream ended. */
async function readStream(path, extra, onEvent, signal) {
  const response = await fetch(path, { headers: headers({ Accept: "text/event-stream", ...extra }), signal });
  if (response.status === 204) return false;
  if (!response.ok) throw new ApiError(response.status, explain(response.status, await response.json().catch(() => null)));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return true;
    buffer = (buffer + value).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.data.length) onEvent({ ...event, data: JSON.parse(event.data.join("\n")) });
    }
  }
}

/** Runs connect() again after a lost connection (2 s later) until it says it is done or signal
 *  aborts; a refusal the client caused (4xx but 429) is thrown. */
async function reconnecting(connect, signal) {
  while (!signal.aborted) {
    try {
      if (await connect()) return;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500 && error.status !== 429) throw error;
    }
    await sleep(2000, signal);
  }
}

/** Follows one job's events until its final state (or signal), reconnecting after a lost
 *  connection from the last event id; onJob(job, type) gets each state, the current one first. */
export async function follow(jobId, onJob, signal) {
  let lastId = "";
  let ended = false;
  await reconnecting(async () => {
    const more = await readStream(`/api/v1/jobs/${encodeURIComponent(jobId)}/events`, lastId ? { "Last-Event-ID": lastId } : {},
      (event) => {
        if (event.id) lastId = event.id;
        ended = FINAL.has(event.data.status);
        onJob(event.data, event.type);
      }, signal);
    return !more || ended;
  }, signal);
}

/** Follows several jobs on one connection (GET /api/v1/events) until each is final or missing;
 *  after a lost connection, asks again for those still running. onJob(job, type) as follow's. */
export async function followMany(jobIds, onJob, signal) {
  const running = new Set(jobIds);
  await reconnecting(async () => {
    if (!running.size) return true;
    const query = new URLSearchParams([...running].map((id) => ["jobId", id]));
    await readStream(`/api/v1/events?${query}`, {}, (event) => {
      if (event.type === "job.missing" || FINAL.has(event.data.status)) running.delete(event.data.id);
      if (event.type !== "job.missing") onJob(event.data, event.type);
    }, signal);
    return !running.size;
  }, signal);
}

/** Says text to screen readers (and keeps it for tests to read). */
export function announce(text) {
  document.getElementById("announce").textContent = text;
}

/** A message box in place of a page's content, for an error or an empty state. */
export function message(text, { error = false } = {}) {
  return h("p", { class: error ? "message error" : "message", role: error ? "alert" : null }, text);
}

/** What to show for a failed call: the key rules say what to do next. */
export function failure(error) {
  if (!(error instanceof ApiError)) return message(`Could not reach the API: ${error.message}`, { error: true });
  if (error.status === 401) return message(`This needs an API key: enter one above. (${error.message})`, { error: true });
  if (error.status === 403) return message(`This key may not do that: it needs the admin key. (${error.message})`, { error: true });
  return message(`${error.status}: ${error.message}`, { error: true });
}

export function when(stamp) {
  return stamp ? new Date(stamp).toLocaleString() : "—";
}

export function badge(state) {
  return h("span", { class: `badge ${state}` }, state);
}

/** Shows the console page of path (console.js draws it on popstate). */
export function navigate(path) {
  history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

