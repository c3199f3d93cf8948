// Lookout's UI: plain JavaScript, no build step, no libraries. Every page keeps its state
// in the URL (DESIGN §6: /ui/search?index=I&q=LUCENE|dsl=JSON&from=T&to=T), so Slack
// messages link straight to a search and the back button works.
"use strict";

const PAGE_SIZE = 50;
const REFRESH_MS = 10000;
const COLORS = ["#3b6fc4", "#d1495b", "#2e933c", "#e8871e", "#7b4fb8", "#1b998b", "#c05299", "#6c757d"];

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function svg(tag, attrs, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// ---------- the key ----------
// The UI carries its key in a header it sets itself, never in credentials the browser
// keeps and sends on its own (no Basic prompt), so a page of another site cannot act with
// it. The key lives in sessionStorage: this tab only, gone when it closes.

const KEY_STORAGE = "lookout.key", TENANT_STORAGE = "lookout.tenant";
const ROLES = ["ingest", "read", "edit", "admin"];
/** The caller as `/_lookout/whoami` answers: key, role, tenants, tenant, authentication. */
let session = null;

function credentials() {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  const tenant = sessionStorage.getItem(TENANT_STORAGE);
  if (tenant) headers["X-Scope-OrgID"] = tenant;
  return headers;
}

/** Whether the current key's role includes `role`. */
function can(role) {
  return session !== null && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

/** Fetches JSON; throws an Error carrying the server's reason. A 401 asks for a key. */
async function api(path, options = {}) {
  const init = { ...options, headers: { "Content-Type": "application/json", ...credentials(), ...(options.headers || {}) } };
  if (init.body && typeof init.body !== "string") init.body = JSON.stringify(init.body);
  const response = await fetch(path, init);
  const text = await response.text();
  let body;
  try { body = text ? JSON.parse(text) : {}; } catch { body = { raw: text }; }
  if (!response.ok || body.status === "error") {
    const reason = (body.error && (body.error.root_cause?.[0]?.reason || body.error.reason)) ||
      (typeof body.error === "string" ? body.error : null) || body.message || body.raw || `HTTP ${response.status}`;
    const error = new Error(reason);
    error.status = response.status;
    if (response.status === 401 && path !== "/_lookout/whoami") askForKey(sessionStorage.getItem(KEY_STORAGE) ? "The key is no longer valid." : null);
    throw error;
  }
  return body;
}

/** Replaces the page with the key form; `reason` says why it is back. */
function askForKey(reason) {
  session = null;
  refresh = null;
  drawSession();
  const main = document.getElementById("main");
  const input = h("input", { id: "key", name: "key", type: "password", class: "wide", autocomplete: "off",
    "aria-label": "API key", placeholder: "lk_…" });
  const problem = h("div", { class: "error", role: "alert" }, reason || "");
  const form = h("form", { id: "key-form", class: "bar", onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    sessionStorage.removeItem(TENANT_STORAGE);
    if (await start()) return;
    problem.textContent = "That key is not valid: check it, or ask an admin for one (`lookout keys create`).";
  } }, h("label", {}, "API key", input), h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(h("h2", {}, "Sign in"),
    h("p", {}, "This Lookout needs a key. It is kept in this tab only and sent as a header with each request."),
    form, problem);
  input.focus();
}

/** The key, role and tenant in the header, sign out, and for a caller of several
 * tenants (an operator key, or no keys at all on a server with tenants) a select of the
 * tenants `/_lookout/tenants` says it may use. A key of one tenant gets no switcher. */
function drawSession() {
  const place = document.getElementById("session");
  document.querySelector("nav a[data-page='audit']").hidden = !can("admin");
  if (!session) { place.replaceChildren(); return; }
  const tenants = session.tenants || [];
  const current = h("span", { id: "tenant" }, session.tenant);
  if (session.authentication) {
    place.replaceChildren(h("span", { id: "who" }, `${session.key} (${session.role})`), " · tenant ", current, " ",
      h("button", { type: "button", class: "plain", id: "sign-out", onclick: () => {
        sessionStorage.removeItem(KEY_STORAGE); sessionStorage.removeItem(TENANT_STORAGE); askForKey(null);
      } }, "Sign out"));
  } else {
    // one team without keys looks as it always did: no tenant at all
    place.replaceChildren();
  }
  if (!tenants.includes("*") && tenants.length < 2) return;
  const drawn = session;
  api("/_lookout/tenants").then((answer) => {
    const names = (answer.tenants || []).map((entry) => entry.name);
    if (names.length < 2 || session !== drawn) return;
    const choose = (value) => {
      sessionStorage.setItem(TENANT_STORAGE, value);
      start();
    };
    const select = h("select", { id: "tenant", "aria-label": "Tenant", onchange: (event) => choose(event.target.value) },
      names.map((name) => h("option", { value: name, selected: name === session.tenant }, name)));
    if (session.authentication) current.replaceWith(select); else place.replaceChildren("tenant ", select);
  }).catch(() => {});
}

/** Asks the server who the key is, then draws the page; false when the key is refused. */
async function start() {
  try {
    session = await api("/_lookout/whoami");
  } catch (error) {
    if (error.status === 401) { askForKey(sessionStorage.getItem(KEY_STORAGE) ? "The key is not valid." : null); return false; }
    if (error.status === 403 && sessionStorage.getItem(TENANT_STORAGE)) {
      sessionStorage.removeItem(TENANT_STORAGE);
      return start();
    }
    document.getElementById("main").replaceChildren(errorBox(error));
    return false;
  }
  drawSession();
  route();
  return true;
}

/** Milliseconds of `now`, `now-15m`, `now+1h`, RFC 3339 or epoch ms. */
function parseTime(text, now = Date.now()) {
  text = (text || "").trim();
  const relative = /^now(?:([+-])(\d+)([smhdw]))?$/.exec(text);
  if (relative) {
    if (!relative[1]) return now;
    const unit = { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8 }[relative[3]];
    return now + (relative[1] === "-" ? -1 : 1) * Number(relative[2]) * unit;
  }
  if (/^\d+$/.test(text)) return Number(text);
  const parsed = Date.parse(text);
  return Number.isNaN(parsed) ? null : parsed;
}

function formatTime(ms) {
  const date = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function since(iso) {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86400).toFixed(1)} d ago`;
}

function formatNumber(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  if (Math.abs(number) >= 1e6 || (Math.abs(number) < 1e-3 && number !== 0)) return number.toExponential(3);
  return String(Math.round(number * 1000) / 1000);
}

function labelsView(labels, skip = []) {
  return h("span", { class: "labels" },
    Object.entries(labels || {}).filter(([name]) => !skip.includes(name))
      .map(([name, value]) => h("code", {}, `${name}="${value}"`)));
}

function errorBox(error, input) {
  const box = h("div", { class: "error", role: "alert" }, error.message || String(error));
  const column = /at column (\d+)/.exec(error.message || "");
  if (column && input) {
    box.append("\n" + input + "\n" + " ".repeat(Number(column[1]) - 1) + "^");
  }
  return box;
}

function params() { return new URLSearchParams(location.search); }

function go(path, search) {
  const url = search ? `${path}?${search}` : path;
  history.pushState(null, "", url);
  route();
}

// ---------- pages ----------

const pages = { search: searchPage, alerts: alertsPage, rules: rulesPage, metrics: metricsPage, targets: targetsPage, audit: auditPage };
let refresh = null;

function route() {
  if (session === null) return;
  const name = location.pathname.replace(/^\/ui\/?/, "").split("/")[0] || "search";
  const page = pages[name] || searchPage;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  main.replaceChildren();
  refresh = null;
  page(main);
}

// Every non-hidden index, as Elasticsearch's `_search` without one: what the search page
// shows when the URL names no index.
const EVERY_INDEX = "*";

// Search: query bar, time range, histogram (drag to zoom), results, field sidebar.
function searchPage(main) {
  const p = params();
  const state = {
    index: p.get("index") || EVERY_INDEX,
    q: p.get("q") ?? (p.get("dsl") ? "" : "*"),
    dsl: p.get("dsl") || "",
    from: p.get("from") || "now-15m",
    to: p.get("to") || "now",
    page: Number(p.get("page") || 0),
    view: p.get("view") === "patterns" ? "patterns" : "logs",
  };
  const index = h("input", { id: "index", name: "index", value: state.index, size: 12, "aria-label": "Index",
    list: "index-names", placeholder: EVERY_INDEX, autocomplete: "off" });
  // the index box offers the indices this server has: every one, each by name, hidden last
  const indexNames = h("datalist", { id: "index-names" }, h("option", { value: EVERY_INDEX }, "every index"));
  api("/_cat/indices/*,.*?format=json").then((rows) => {
    const names = rows.map((row) => row.index).sort((a, b) => a.startsWith(".") - b.startsWith(".") || a.localeCompare(b));
    indexNames.append(...names.map((name) => h("option", { value: name })));
  }).catch(() => {});
  const query = h("input", { id: "q", name: "q", class: "wide", value: state.dsl ? state.dsl : state.q,
    "aria-label": state.dsl ? "Query DSL (JSON)" : "Lucene query", placeholder: "status:500 AND service:checkout" });
  const from = h("input", { id: "from", name: "from", value: state.from, size: 22, "aria-label": "From" });
  const to = h("input", { id: "to", name: "to", value: state.to, size: 22, "aria-label": "To" });
  const preset = h("select", { "aria-label": "Quick range", onchange: () => { from.value = preset.value; to.value = "now"; submit(); } },
    h("option", { value: "" }, "Quick range…"),
    ...["now-5m", "now-15m", "now-1h", "now-6h", "now-24h", "now-7d"].map((value) =>
      h("option", { value }, "last " + value.slice(4))));
  // absolute times: calendar pickers that write RFC 3339 into From and To
  const local = (ms) => { const date = new Date(ms - new Date(ms).getTimezoneOffset() * 6e4); return date.toISOString().slice(0, 19); };
  const pickFrom = h("input", { type: "datetime-local", step: 1, "aria-label": "From (absolute)",
    onchange: () => { from.value = new Date(pickFrom.value).toISOString(); } });
  const pickTo = h("input", { type: "datetime-local", step: 1, "aria-label": "To (absolute)",
    onchange: () => { to.value = new Date(pickTo.value).toISOString(); } });
  const absolute = h("span", { hidden: true }, pickFrom, " – ", pickTo);
  const toggleAbsolute = h("button", { type: "button", class: "plain", "aria-expanded": "false", onclick: () => {
    absolute.hidden = !absolute.hidden;
    toggleAbsolute.setAttribute("aria-expanded", String(!absolute.hidden));
    const now = Date.now();
    pickFrom.value = local(parseTime(from.value, now) ?? now - 9e5);
    pickTo.value = local(parseTime(to.value, now) ?? now);
  } }, "Absolute…");
  const form = h("form", { class: "bar", role: "search", onsubmit: (event) => { event.preventDefault(); submit(); } },
    h("label", {}, "Index", index), h("label", { style: "flex:1" }, state.dsl ? "Query DSL" : "Query (Lucene)", query),
    h("label", {}, "From", from), h("label", {}, "To", to), preset, toggleAbsolute, absolute, h("button", { type: "submit" }, "Search"));
  const error = h("div");
  const summary = h("p", { id: "summary", class: "empty", "aria-live": "polite" });
  const histogram = h("div", { id: "histogram" });
  // the lines themselves, or their patterns (patterns.js)
  const tab = (view, text) => h("button", { type: "button", role: "tab", class: "plain", id: `tab-${view}`,
    "aria-selected": String(state.view === view), onclick: () => { state.view = view; submit(); } }, text);
  const tabs = h("div", { role: "tablist", class: "tabs", "aria-label": "Results as" }, tab("logs", "Logs"), tab("patterns", "Patterns"));
  const fields = h("aside", { id: "fields", "aria-label": "Fields" });
  const results = h("div", { id: "results" });
  main.append(indexNames, form, error, summary, histogram, tabs, h("div", { class: "layout" }, fields, results));

  function submit(page = 0) {
    const search = new URLSearchParams();
    search.set("index", index.value.trim() || EVERY_INDEX);
    const text = query.value.trim();
    if (text.startsWith("{")) search.set("dsl", text); else search.set("q", text || "*");
    search.set("from", from.value.trim() || "now-15m");
    search.set("to", to.value.trim() || "now");
    if (page) search.set("page", page);
    if (state.view === "patterns") search.set("view", "patterns");
    go("/ui/search", search.toString());
  }

  async function run() {
    const now = Date.now();
    const start = parseTime(state.from, now), end = parseTime(state.to, now);
    if (start === null || end === null || end <= start) {
      error.replaceChildren(errorBox(new Error("the time range is not valid: use now-15m, an RFC 3339 time or epoch milliseconds, with `from` before `to`")));
      return;
    }
    let filter;
    if (state.dsl) {
      try { filter = JSON.parse(state.dsl); } catch (parseError) {
        error.replaceChildren(errorBox(new Error("the query DSL is not JSON: " + parseError.message)));
        return;
      }
    } else {
      filter = { query_string: { query: state.q || "*" } };
    }
    const interval = niceInterval((end - start) / 60);
    const body = {
      query: { bool: { filter: [filter, { range: { "@timestamp": { gte: start, lt: end, format: "epoch_millis" } } }] } },
      size: PAGE_SIZE, from: state.page * PAGE_SIZE, sort: [{ "@timestamp": "desc" }], track_total_hits: true,
      aggs: { over_time: { date_histogram: { field: "@timestamp", fixed_interval: interval.text, min_doc_count: 0,
        extended_bounds: { min: start, max: end - 1 } } } },
    };
    let answer;
    try {
      answer = await api(`/${encodeURIComponent(state.index)}/_search`, { method: "POST", body });
    } catch (searchError) {
      error.replaceChildren(errorBox(searchError, state.dsl ? null : state.q));
      summary.textContent = "";
      histogram.replaceChildren(); results.replaceChildren(); fields.replaceChildren();
      return;
    }
    error.replaceChildren();
    const total = answer.hits.total.value;
    const hits = answer.hits.hits;
    summary.textContent = `${total.toLocaleString()} matching log line${total === 1 ? "" : "s"} from ${formatTime(start)} to ${formatTime(end)}`;
    histogram.replaceChildren(histogramView(answer.aggregations?.over_time?.buckets || [], start, end, interval.ms,
      (zoomFrom, zoomTo) => { from.value = new Date(zoomFrom).toISOString(); to.value = new Date(zoomTo).toISOString(); submit(); }));
    if (state.view === "patterns") {
      fields.replaceChildren();
      results.replaceChildren(await patternsView(state, (clause) => {
        query.value = state.dsl || !state.q || state.q === "*" ? clause : `(${state.q}) AND ${clause}`;
        state.view = "logs";
        submit();
      }));
      return;
    }
    if (!hits.length) {
      fields.replaceChildren();
      results.replaceChildren(h("p", { class: "empty" }, "No logs in this range — widen it ",
        h("button", { class: "plain", onclick: () => { from.value = "now-24h"; to.value = "now"; submit(); } }, "to the last 24 hours"),
        state.index === EVERY_INDEX ? " or check the query." : [" or check the query and the index (",
          h("button", { class: "plain", onclick: () => { index.value = EVERY_INDEX; submit(); } }, "search every index"), ")."]));
      return;
    }
    fields.replaceChildren(...fieldsView(hits, (field, value) => {
      const clause = `${field}:"${String(value).replace(/"/g, '\\"')}"`;
      query.value = state.dsl || !state.q || state.q === "*" ? clause : `(${state.q}) AND ${clause}`;
      submit();
    }));
    results.replaceChildren(resultsView(hits), pager(total, state.page, submit));
  }
  refresh = run;
  run();
}

function niceInterval(ms) {
  const steps = [1e3, 5e3, 1e4, 3e4, 6e4, 3e5, 6e5, 1.8e6, 3.6e6, 1.08e7, 4.32e7, 8.64e7, 6.048e8];
  const chosen = steps.find((step) => step >= ms) || steps[steps.length - 1];
  return { ms: chosen, text: `${chosen / 1000}s` };
}

function histogramView(buckets, start, end, interval, zoom) {
  const width = 1000, height = 120, top = 8, bottom = 20;
  const max = Math.max(1, ...buckets.map((bucket) => bucket.doc_count));
  const x = (ms) => ((ms - start) / (end - start)) * width;
  const chart = svg("svg", { class: "histogram", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Matches over time, ${buckets.reduce((sum, bucket) => sum + bucket.doc_count, 0)} in all; drag to zoom` });
  for (const bucket of buckets) {
    const barHeight = (bucket.doc_count / max) * (height - top - bottom);
    if (!bucket.doc_count) continue;
    chart.append(svg("rect", { class: "bar", x: x(bucket.key), y: height - bottom - barHeight,
      width: Math.max(1, x(bucket.key + interval) - x(bucket.key) - 1), height: barHeight },
    svg("title", {}, `${formatTime(bucket.key)}: ${bucket.doc_count}`)));
  }
  chart.append(svg("line", { class: "axis", x1: 0, x2: width, y1: height - bottom, y2: height - bottom }));
  for (let i = 0; i <= 4; i++) {
    const ms = start + ((end - start) * i) / 4;
    chart.append(svg("text", { x: Math.min(width - 110, x(ms)), y: height - 5 }, formatTime(ms).slice(5, 19)));
  }
  chart.append(svg("text", { x: 4, y: 14 }, String(max)));
  // click-drag selects a range to zoom into
  const selection = svg("rect", { class: "selection", x: 0, y: 0, width: 0, height: height - bottom });
  chart.append(selection);
  let dragFrom = null;
  const toMs = (event) => {
    const box = chart.getBoundingClientRect();
    return start + ((event.clientX - box.left) / box.width) * (end - start);
  };
  chart.addEventListener("mousedown", (event) => { dragFrom = toMs(event); });
  chart.addEventListener("mousemove", (event) => {
    if (dragFrom === null) return;
    const now = toMs(event);
    selection.setAttribute("x", x(Math.min(dragFrom, now)));
    selection.setAttribute("width", Math.abs(x(now) - x(dragFrom)));
  });
  chart.addEventListener("mouseup", (event) => {
    if (dragFrom === null) return;
    const now = toMs(event), low = Math.min(dragFrom, now), high = Math.max(dragFrom, now);
    dragFrom = null;
    if (high - low > (end - start) / 200) zoom(Math.round(low), Math.round(high));
  });
  return chart;
}

function flatten(value, prefix = "", out = {}) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out[prefix] = Array.isArray(value) ? JSON.stringify(value) : value;
  }
  return out;
}

function fieldsView(hits, pick) {
  const counts = {};
  for (const hit of hits) {
    for (const [field, value] of Object.entries(flatten(hit._source))) {
      if (field === "@timestamp" || value === null || String(value).length > 80) continue;
      const values = (counts[field] ||= new Map());
      values.set(value, (values.get(value) || 0) + 1);
    }
  }
  // the fields most lines have first, then by name
  const present = (values) => [...values.values()].reduce((sum, count) => sum + count, 0);
  const fields = Object.entries(counts)
    .sort((a, b) => present(b[1]) - present(a[1]) || a[0].localeCompare(b[0]))
    .slice(0, 20);
  return [h("h2", {}, "Fields"), h("p", { class: "empty", style: "padding:0" }, `top values in these ${hits.length} lines`),
    ...fields.map(([field, values]) => h("div", {}, h("h3", {}, field), h("ul", {},
      [...values.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([value, count]) =>
        h("li", {}, h("button", { type: "button", title: `filter on ${field}:"${value}"`, onclick: () => pick(field, value) },
          String(value), h("span", {}, String(count))))))))];
}

function resultsView(hits) {
  const body = h("tbody");
  for (const hit of hits) {
    const source = hit._source || {};
    const message = source.message ?? source.msg ?? JSON.stringify(source);
    const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: 2 }, h("pre", {}, JSON.stringify(source, null, 2))));
    const toggle = () => { detail.hidden = !detail.hidden; row.setAttribute("aria-expanded", String(!detail.hidden)); };
    const row = h("tr", { class: "doc", tabindex: 0, "aria-expanded": "false", onclick: toggle,
      onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); toggle(); } } },
    h("td", { class: "time" }, source["@timestamp"] ? formatTime(Date.parse(source["@timestamp"])) : "—"),
    h("td", {}, h("span", { class: source.level === "error" || Number(source.status) >= 500 ? "firing" : "" }, String(message))));
    body.append(row, detail);
  }
  return h("table", { id: "hits" }, h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Message (Enter or click: the whole document)"))), body);
}

function pager(total, page, submit) {
  const pages = Math.ceil(Math.min(total, 10000) / PAGE_SIZE);
  return h("div", { class: "pager" },
    h("button", { class: "plain", disabled: page === 0, onclick: () => submit(page - 1) }, "← Newer"),
    `page ${page + 1} of ${Math.max(1, pages)}`,
    h("button", { class: "plain", disabled: page + 1 >= pages, onclick: () => submit(page + 1) }, "Older →"));
}

// One destination of an alert: notifier, the route it took, its group, and why it is held.
function routingView(decision) {
  const held = decision.inhibited_by ? `inhibited by ${decision.inhibited_by.alertname || JSON.stringify(decision.inhibited_by)}`
    : decision.muted_by ? `muted by ${decision.muted_by}${decision.muted_until ? ` until ${formatTime(Date.parse(decision.muted_until))}` : ""}`
    : decision.waiting_until ? `waiting in its group until ${formatTime(Date.parse(decision.waiting_until))}` : "";
  return h("div", { title: decision.group_key },
    `→ ${decision.notifier} `, h("small", {}, h("code", {}, decision.route)),
    held ? h("span", { class: "badge held" }, held) : null);
}

// Alerts: firing and pending, recent transitions, silences, routing decisions.
function alertsPage(main) {
  const active = h("section", { id: "active" }), history = h("section", { id: "history" }), silences = h("section", { id: "silences" });
  const routing = h("section", { id: "routing" });
  main.append(active, silences, routing, history);
  async function run() {
    try {
      const [alerts, events, silenced] = await Promise.all([
        api("/api/v1/alerts"), api("/_lookout/alerts/history?size=50"), api("/api/v2/silences")]);
      const list = alerts.data.alerts;
      active.replaceChildren(h("h2", {}, `Active alerts (${list.length})`), list.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["State", "Alert", "Labels", "Since", "Value", "Routing", ""].map((title) => h("th", {}, title)))),
        h("tbody", {}, list.map((alert) => h("tr", { class: "alert" },
          h("td", {}, h("span", { class: `badge ${alert.state}` }, alert.state)),
          h("td", {}, alert.labels.alertname, h("br"), h("small", {}, alert.annotations?.summary || "")),
          h("td", {}, labelsView(alert.labels, ["alertname"])),
          h("td", {}, since(alert.activeAt)), h("td", {}, formatNumber(alert.value)),
          h("td", { class: "routing" }, (alert.routing || []).map(routingView)),
          h("td", {}, can("edit") ? h("button", { class: "plain", onclick: () => silence(alert.labels) }, "Silence 1 h") : null))))) :
        h("p", { class: "empty" }, "Nothing is firing or pending."));
      const live = silenced.filter((entry) => entry.status?.state !== "expired");
      silences.replaceChildren(h("h2", {}, `Silences (${live.length})`), live.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Matchers", "Until", "Comment"].map((title) => h("th", {}, title)))),
        h("tbody", {}, live.map((entry) => h("tr", {},
          h("td", {}, entry.matchers.map((matcher) => h("code", {}, `${matcher.name}${matcher.isEqual === false ? "!" : ""}${matcher.isRegex ? "=~" : "="}"${matcher.value}" `))),
          h("td", {}, entry.endsAt), h("td", {}, entry.comment || ""))))) :
        h("p", { class: "empty" }, "No active silences."));
      const decisions = (events.events || []).filter((event) => event.type === "routing");
      routing.replaceChildren(h("h2", {}, "Routing decisions"), decisions.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Time", "Rule", "Notifier", "Route", "Decision", "Labels"].map((title) => h("th", {}, title)))),
        h("tbody", {}, decisions.map((event) => h("tr", {},
          h("td", { class: "time" }, formatTime(Date.parse(event["@timestamp"]))), h("td", {}, event.rule),
          h("td", {}, event.notifier), h("td", {}, h("code", {}, event.route), h("br"), h("small", {}, event.group_key)),
          h("td", {}, h("span", { class: `badge ${event.decision}` }, event.decision), ` ${event.reason || ""}`),
          h("td", {}, labelsView(event.labels)))))) :
        h("p", { class: "empty" }, "No alert was grouped, inhibited, muted or dropped recently."));
      const transitions = (events.events || []).filter((event) => event.type === "transition");
      history.replaceChildren(h("h2", {}, "Recent transitions"), transitions.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Time", "Rule", "Transition", "Labels", "Value"].map((title) => h("th", {}, title)))),
        h("tbody", {}, transitions.map((event) => h("tr", {},
          h("td", { class: "time" }, formatTime(Date.parse(event["@timestamp"]))), h("td", {}, event.rule),
          h("td", {}, `${event.from} → `, h("span", { class: event.to }, event.to), event.reason ? ` (${event.reason})` : ""),
          h("td", {}, labelsView(event.labels)), h("td", {}, formatNumber(event.value)))))) :
        h("p", { class: "empty" }, "No transitions yet."));
    } catch (error) {
      active.replaceChildren(errorBox(error));
    }
  }
  async function silence(labels) {
    const now = new Date();
    try {
      await api("/api/v2/silences", { method: "POST", body: {
        matchers: Object.entries(labels).map(([name, value]) => ({ name, value, isRegex: false, isEqual: true })),
        startsAt: now.toISOString(), endsAt: new Date(now.getTime() + 3.6e6).toISOString(),
        createdBy: "lookout-ui", comment: "silenced from the alerts page" } });
      run();
    } catch (error) { active.prepend(errorBox(error)); }
  }
  refresh = run;
  run();
}

// Rules: health, last evaluation, next run, errors, JSON, dry run.
function rulesPage(main) {
  const list = h("section", { id: "rules" });
  main.append(list);
  async function run() {
    try {
      const answer = await api("/_lookout/rules");
      const rules = answer.rules || [];
      list.replaceChildren(h("h2", {}, `Rules (${rules.length})`), rules.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Health", "Rule", "Last evaluation", "Took", "Next run", "Active", ""].map((title) => h("th", {}, title)))),
        h("tbody", {}, rules.map((rule) => {
          const output = h("div");
          return [h("tr", {},
            h("td", {}, h("span", { class: `badge ${rule.health}` }, rule.health)),
            h("td", {}, rule.name,
              rule.never_matched ? h("span", { class: "badge never-matched", title: "its query has matched nothing since it loaded" }, "never matched") : null,
              rule.load_error || rule.last_error ? h("div", { class: "error" }, rule.load_error || rule.last_error) : null,
              (rule.warnings || []).map((warning) => h("div", { class: "warning" }, warning)),
              h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(rule.rule, null, 2)))),
            h("td", {}, since(rule.last_evaluation)),
            h("td", {}, rule.evaluation_seconds != null ? `${(rule.evaluation_seconds * 1000).toFixed(1)} ms` : "—"),
            h("td", {}, rule.next_evaluation ? formatTime(Date.parse(rule.next_evaluation)) : "—"),
            h("td", {}, String(rule.active_alerts)),
            h("td", {}, can("edit") ? h("button", { class: "plain", onclick: () => dryRun(rule.name, output) }, "Dry run") : null)),
          h("tr", { class: "dry-run", hidden: true }, h("td", { colspan: 7 }, output))];
        }).flat())) : h("p", { class: "empty" }, "No rules yet: add JSON files to queries/ (see docs/rules.md)."));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }
  async function dryRun(name, output) {
    output.closest("tr").hidden = false;
    output.replaceChildren("Evaluating…");
    try {
      const result = await api(`/_lookout/rules/${encodeURIComponent(name)}/_dry_run`, { method: "POST" });
      output.replaceChildren(h("table", {},
        h("thead", {}, h("tr", {}, ["Group", "Value", "Condition", "State now", "Would become"].map((title) => h("th", {}, title)))),
        h("tbody", {}, (result.groups || []).map((group) => h("tr", {},
          h("td", {}, labelsView(group.labels)), h("td", {}, formatNumber(group.count)), h("td", {}, String(group.condition)),
          h("td", {}, group.state), h("td", {}, group.would_become))))),
      result.groups?.length ? null : h("p", { class: "empty" }, "No groups: the value is absent at this instant."),
      ...(result.messages || []).map((message) => h("details", { open: true }, h("summary", {}, `would send to ${message.notifier}: ${message.kind}`),
        h("pre", {}, message.payload?.text || JSON.stringify(message.payload, null, 2)))));
    } catch (error) {
      output.replaceChildren(errorBox(error));
    }
  }
  refresh = run;
  run();
}

// Metrics: PromQL with completion, a chart of a range query, a table of an instant query.
function metricsPage(main) {
  const p = params();
  const state = { expr: p.get("expr") || "", from: p.get("from") || "now-1h", to: p.get("to") || "now", view: p.get("view") || "graph",
    source: p.get("source") || "" };
  // "" is Lookout's own store; a name is a [datasources.NAME], queried through Lookout
  const prefix = state.source ? `/_lookout/datasources/${encodeURIComponent(state.source)}` : "";
  const names = h("datalist", { id: "metric-names" });
  const expr = h("input", { id: "expr", class: "wide", list: "metric-names", value: state.expr, "aria-label": "PromQL expression",
    placeholder: "rate(http_requests_total[5m]) or log_matches", autocomplete: "off" });
  // the example names a saved query this server has, not one it may not
  api("/api/v1/label/query/values").then((answer) => {
    const saved = (answer.data || [])[0];
    if (saved) expr.placeholder = `rate(http_requests_total[5m]) or log_matches{query="${saved}"}`;
  }).catch(() => {});
  const from = h("input", { id: "metrics-from", value: state.from, size: 18, "aria-label": "From" });
  const to = h("input", { id: "metrics-to", value: state.to, size: 18, "aria-label": "To" });
  const view = h("select", { id: "view", "aria-label": "View" }, h("option", { value: "graph" }, "Graph"), h("option", { value: "table" }, "Table"));
  view.value = state.view;
  const source = h("select", { id: "source", "aria-label": "Data source" }, h("option", { value: "" }, "Lookout"));
  const sourceLabel = h("label", { hidden: true }, "Source", source);
  api("/_lookout/datasources").then((answer) => {
    const names = (answer.datasources || []).map((entry) => entry.name);
    if (state.source && !names.includes(state.source)) names.push(state.source);
    source.append(...names.map((name) => h("option", { value: name }, name)));
    source.value = state.source;
    sourceLabel.hidden = names.length === 0;
  }).catch(() => {});
  const form = h("form", { class: "bar", onsubmit: (event) => { event.preventDefault(); submit(); } },
    sourceLabel, h("label", { style: "flex:1" }, "PromQL", expr), h("label", {}, "From", from), h("label", {}, "To", to), view,
    h("button", { type: "submit" }, "Run"),
    h("button", { type: "button", class: "plain", onclick: () => { expr.value = "sum by (query) (log_matches)"; submit(); } }, "Log counts"));
  const error = h("div"), output = h("div", { id: "output" });
  main.append(names, form, error, output);
  completions(expr, names, prefix);

  function submit() {
    const search = new URLSearchParams({ expr: expr.value.trim(), from: from.value.trim() || "now-1h", to: to.value.trim() || "now", view: view.value });
    if (source.value) search.set("source", source.value);
    go("/ui/metrics", search.toString());
  }
  async function run() {
    if (!state.expr) {
      output.replaceChildren(h("p", { class: "empty" }, "Type a PromQL expression (metric names complete as you type), or chart the log counts."));
      return;
    }
    const now = Date.now(), start = parseTime(state.from, now), end = parseTime(state.to, now);
    try {
      if (state.view === "table") {
        const answer = await api(`${prefix}/api/v1/query?${new URLSearchParams({ query: state.expr, time: end / 1000 })}`);
        output.replaceChildren(instantTable(answer.data));
      } else {
        const step = Math.max(1, Math.round((end - start) / 1000 / 250));
        const answer = await api(`${prefix}/api/v1/query_range?${new URLSearchParams({ query: state.expr, start: start / 1000, end: end / 1000, step })}`);
        output.replaceChildren(answer.data.result.length ? lineChart(answer.data.result, start, end) :
          h("p", { class: "empty" }, "No data in this range — widen it, or check the expression's labels."));
        // the log counts over the same range, beside the metrics (of any source)
        if (state.source || !state.expr.includes("log_matches")) {
          const logs = await api(`/api/v1/query_range?${new URLSearchParams({ query: "sum by (query) (log_matches)", start: start / 1000, end: end / 1000, step })}`);
          if (logs.data.result.length) {
            output.append(h("section", { id: "log-counts" }, h("h2", {}, "Log counts over the same range (log_matches per saved query)"),
              lineChart(logs.data.result, start, end)));
          }
        }
      }
      error.replaceChildren();
    } catch (queryError) {
      error.replaceChildren(errorBox(queryError));
      output.replaceChildren();
    }
  }
  refresh = run;
  run();
}

async function completions(input, list, prefix = "") {
  let names = [], labels = [];
  const values = new Map();
  try {
    [names, labels] = await Promise.all([api(`${prefix}/api/v1/label/__name__/values`).then((a) => a.data), api(`${prefix}/api/v1/labels`).then((a) => a.data)]);
  } catch { return; }
  const fill = async () => {
    const text = input.value;
    const inBraces = text.lastIndexOf("{") > text.lastIndexOf("}");
    // after `label="` (or =~, !=): that label's values
    const valueAt = inBraces ? /([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(text) : null;
    let pool, word;
    if (valueAt) {
      const label = valueAt[1];
      if (!values.has(label)) {
        try { values.set(label, (await api(`${prefix}/api/v1/label/${encodeURIComponent(label)}/values`)).data); } catch { values.set(label, []); }
      }
      pool = values.get(label).map((value) => value + '"');
      word = valueAt[3];
    } else {
      word = /[A-Za-z_:][A-Za-z0-9_:]*$/.exec(text)?.[0] || "";
      pool = inBraces ? labels : names;
    }
    const base = text.slice(0, text.length - word.length);
    list.replaceChildren(...pool.filter((name) => name.startsWith(word)).slice(0, 50).map((name) => h("option", { value: base + name })));
  };
  input.addEventListener("input", fill);
  fill();
}

function instantTable(data) {
  const rows = data.resultType === "vector" ? data.result : data.resultType === "scalar" ? [{ metric: {}, value: data.result }] : [];
  if (!rows.length) return h("p", { class: "empty" }, "The expression returns nothing at this time.");
  return h("table", { id: "instant" }, h("thead", {}, h("tr", {}, h("th", {}, "Series"), h("th", {}, "Value"))),
    h("tbody", {}, rows.map((row) => h("tr", {}, h("td", {}, labelsView(row.metric)), h("td", {}, row.value[1])))));
}

function seriesName(metric) {
  const { __name__: name, ...rest } = metric;
  const labels = Object.entries(rest).map(([key, value]) => `${key}="${value}"`).join(", ");
  return `${name || ""}{${labels}}`;
}

function lineChart(result, start, end) {
  const width = 1000, height = 320, left = 56, right = 8, top = 10, bottom = 24;
  const series = result.slice(0, 40).map((entry, number) => ({
    name: seriesName(entry.metric), color: COLORS[number % COLORS.length],
    points: entry.values.map(([time, value]) => [time * 1000, Number(value)]).filter(([, value]) => Number.isFinite(value)),
  }));
  const values = series.flatMap((entry) => entry.points.map(([, value]) => value));
  let low = Math.min(0, ...values), high = Math.max(...values);
  if (high === low) high = low + 1;
  const x = (ms) => left + ((ms - start) / (end - start)) * (width - left - right);
  const y = (value) => top + (1 - (value - low) / (high - low)) * (height - top - bottom);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Line chart of ${series.length} series` });
  for (let i = 0; i <= 4; i++) {
    const value = low + ((high - low) * i) / 4;
    chart.append(svg("line", { class: "axis", x1: left, x2: width - right, y1: y(value), y2: y(value) }),
      svg("text", { x: 2, y: y(value) + 4 }, formatNumber(value)));
    const ms = start + ((end - start) * i) / 4;
    chart.append(svg("text", { x: Math.min(width - 60, x(ms)), y: height - 6 }, formatTime(ms).slice(11, 19)));
  }
  for (const entry of series) {
    // a gap of more than two steps breaks the line
    let path = "", last = null;
    const gap = entry.points.length > 1 ? 2.5 * (entry.points[1][0] - entry.points[0][0]) : Infinity;
    for (const [time, value] of entry.points) {
      path += `${last === null || time - last > gap ? "M" : "L"}${x(time).toFixed(1)},${y(value).toFixed(1)}`;
      last = time;
    }
    chart.append(svg("path", { d: path, fill: "none", stroke: entry.color, "stroke-width": 1.5 }, svg("title", {}, entry.name)));
  }
  const tooltip = h("div", { class: "tooltip", role: "status" });
  const cursor = svg("line", { class: "axis", x1: 0, x2: 0, y1: top, y2: height - bottom, visibility: "hidden" });
  chart.append(cursor);
  chart.addEventListener("mousemove", (event) => {
    const box = chart.getBoundingClientRect();
    const ms = start + (((event.clientX - box.left) / box.width) * width - left) / (width - left - right) * (end - start);
    const lines = series.map((entry) => {
      let nearest = null;
      for (const point of entry.points) if (nearest === null || Math.abs(point[0] - ms) < Math.abs(nearest[0] - ms)) nearest = point;
      return nearest ? `${entry.name}: ${formatNumber(nearest[1])}` : null;
    }).filter(Boolean);
    cursor.setAttribute("x1", x(ms)); cursor.setAttribute("x2", x(ms)); cursor.setAttribute("visibility", "visible");
    tooltip.replaceChildren(h("strong", {}, formatTime(ms)), ...lines.slice(0, 10).map((line) => h("div", {}, line)));
    tooltip.style.display = "block";
    tooltip.style.left = `${event.clientX + 12}px`;
    tooltip.style.top = `${event.clientY + 12}px`;
  });
  chart.addEventListener("mouseleave", () => { tooltip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
  const legend = h("div", { class: "legend" }, series.map((entry) => h("span", { style: `--swatch:${entry.color}` }, entry.name)));
  return h("div", {}, chart, legend, tooltip, result.length > 40 ? h("p", { class: "empty" }, `showing 40 of ${result.length} series`) : null);
}

// Targets: scrape health.
function targetsPage(main) {
  const list = h("section", { id: "targets" });
  main.append(list);
  async function run() {
    try {
      const answer = await api("/api/v1/targets");
      const targets = answer.data.activeTargets || [];
      list.replaceChildren(h("h2", {}, `Scrape targets (${targets.length})`), targets.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Health", "Endpoint", "Labels", "Last scrape", "Took", "Error"].map((title) => h("th", {}, title)))),
        h("tbody", {}, targets.map((target) => h("tr", {},
          h("td", {}, h("span", { class: `badge ${target.health}` }, target.health)), h("td", {}, target.scrapeUrl),
          h("td", {}, labelsView(target.labels)), h("td", {}, since(target.lastScrape)),
          h("td", {}, `${(target.lastScrapeDuration * 1000).toFixed(1)} ms`), h("td", { class: "error" }, target.lastError || ""))))) :
        h("p", { class: "empty" }, "No scrape targets: add [[scrape_configs]] to the config (see docs/configuration.md)."));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }
  refresh = run;
  run();
}

// Audit: who changed what, from where (admin keys).
function auditPage(main) {
  const list = h("section", { id: "audit" });
  main.append(list);
  async function run() {
    try {
      const answer = await api("/_lookout/audit?size=200");
      const entries = answer.entries || [];
      list.replaceChildren(h("h2", {}, `Audit trail (${entries.length})`), entries.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Time", "Key", "Tenant", "Action", "Target", "Summary", "From"].map((title) => h("th", {}, title)))),
        h("tbody", {}, entries.map((entry) => h("tr", { class: "audit-entry" },
          h("td", { class: "time" }, formatTime(Date.parse(entry["@timestamp"]))), h("td", {}, entry.key), h("td", {}, entry.tenant || ""),
          h("td", {}, h("code", {}, entry.action)), h("td", {}, entry.target), h("td", {}, entry.summary || ""), h("td", {}, entry.address || ""))))) :
        h("p", { class: "empty" }, "No changes recorded yet: rule writes, silences, keys and index deletions appear here."));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }
  refresh = run;
  run();
}

// ---------- start ----------

window.addEventListener("popstate", route);
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-page]");
  if (link && !event.ctrlKey && !event.metaKey) { event.preventDefault(); go(link.getAttribute("href")); }
});
const auto = document.getElementById("autorefresh");
auto.checked = localStorage.getItem("lookout.autorefresh") === "1";
auto.addEventListener("change", () => localStorage.setItem("lookout.autorefresh", auto.checked ? "1" : "0"));
setInterval(() => { if (auto.checked && refresh && !document.hidden) refresh(); }, REFRESH_MS);
start();
