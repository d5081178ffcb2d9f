// The Clipper dashboard: polls GET /admin/cluster_view, keeps a short history per app and model for the
// charts, and renders the overview (#/), an app (#/app/<name>) or a model version (#/model/<name>/<version>).
import { drawChart } from "./chart.js";

const POLL_MS = 1500;
const HISTORY_S = 180;
const LOG_POLL_MS = 5000;
const TOKEN_KEY = "clipper-admin-token";
const COLORS = ["#2f6fde", "#e07b24", "#1f9d55", "#9b51e0", "#d64545", "#0f9fb5", "#8a6d3b"];
const SLO = "#d64545";
const BOUND = "#d98a1c";

const history = new Map(); // "app:<name>" | "model:<name>:<version>" -> [{t, ...numbers}]
let view = null;
let layoutKey = "";
let logTimer = null;

// --- the API ------------------------------------------------------------------------------------

class NeedsToken extends Error {}

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (reply.status === 401) {
    askForToken(token ? "That token was refused." : "");
    throw new NeedsToken("the admin token is needed");
  }
  const text = await reply.text();
  if (!reply.ok) throw new Error(errorText(reply.status, text));
  const type = reply.headers.get("content-type") || "";
  return type.includes("application/json") ? JSON.parse(text) : text;
}

/** The API's own message: plain text as Clipper sends it, or a JSON body's detail/cause. */
function errorText(status, text) {
  try {
    const body = JSON.parse(text);
    const detail = body.detail ?? body.cause ?? body.error ?? text;
    return `${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  } catch {
    return `${status}: ${text}`;
  }
}

function askForToken(message) {
  const dialog = document.getElementById("login");
  document.getElementById("login-error").textContent = message;
  if (!dialog.open) dialog.showModal();
}

document.getElementById("login-form").addEventListener("submit", () => {
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("login-token").value.trim());
  document.getElementById("login-token").value = "";
  poll();
});

// --- small DOM helpers ----------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child != null) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const fmt = (v, digits = 1) => (v == null ? "–" : Number(v).toFixed(digits));
const pct = (v) => (v == null ? "–" : `${Math.round(v * 100)}%`);
const sum = (values) => values.reduce((a, b) => a + b, 0);
const modelKey = (m) => `${m.name}:${m.version}`;
const findApp = (name) => view.apps.find((a) => a.name === name);
const findModel = (name, version) => view.models.find((m) => m.name === name && m.version === version);
const numCell = (value, digits = 1, attrs = {}) => h("td", { class: "num", ...attrs }, fmt(value, digits));
const muted = (text) => h("p", { class: "muted" }, text);

function table(head, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, head.map(([label, num]) => h("th", { class: num ? "num" : null }, label)))),
    h("tbody", {}, rows));
}

// --- history and charts ---------------------------------------------------------------------------

function remember(key, point) {
  const points = history.get(key) ?? [];
  points.push(point);
  while (points.length && points[0].t < point.t - HISTORY_S) points.shift();
  history.set(key, points);
}

function record(v) {
  if (v.interval_s == null) return; // the first scrape: no rates yet, not zero rates
  const t = v.time_s;
  for (const app of v.apps) {
    remember(`app:${app.name}`, {
      t, rps: app.requests_per_s, p50: app.p50_ms, p99: app.p99_ms, hit: app.cache_hit_ratio,
      defaults: { ...app.defaults_per_s },
    });
  }
  for (const m of v.models) {
    remember(`model:${modelKey(m)}`, {
      t, pps: m.predictions_per_s, p50: m.p50_ms, p99: m.p99_ms, batch: m.mean_batch_size,
      queue: m.queue_length, errors: m.errors_per_s,
    });
  }
}

/** A chart slot: a title with a legend, and a canvas redrawn on every poll from the history. */
function chart(title, key, spec) {
  const canvas = h("canvas", { "data-chart": key });
  canvas.spec = spec;
  const legend = h("span", { class: "legend" });
  canvas.legend = legend;
  return h("div", { class: "chart" }, h("h4", {}, title, legend), canvas);
}

function drawCharts(nowS) {
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const points = history.get(canvas.dataset.chart) ?? [];
    const { series, limits = [], unit = "", fixedMax = null } = canvas.spec(points);
    const swatch = ({ color, label }) => h("span", {}, h("i", { style: `background:${color}` }), label);
    canvas.legend.replaceChildren(...series.map(swatch), ...limits.filter((l) => l.value != null).map(swatch));
    const spanS = Math.min(HISTORY_S - 60, Math.max(30, nowS - (points[0]?.t ?? nowS)));
    drawChart(canvas, { series, limits, unit, fixedMax, nowS, spanS });
  }
}

const line = (points, field, label, color) => ({ label, color, points: points.map((p) => [p.t, p[field]]) });

function appCharts(app) {
  const key = `app:${app.name}`;
  return [
    chart("Requests/s", key, (pts) => ({ series: [line(pts, "rps", "req/s", COLORS[0])] })),
    chart("Latency (ms)", key, (pts) => ({
      series: [line(pts, "p50", "p50", COLORS[0]), line(pts, "p99", "p99", COLORS[1])],
      limits: [{ label: `SLO ${fmt(app.slo_ms, 0)} ms`, value: app.slo_ms, color: SLO }],
    })),
    chart("Default answers/s", key, (pts) => {
      const reasons = [...new Set(pts.flatMap((p) => Object.keys(p.defaults)))].sort();
      const series = reasons.map((r, i) => ({
        label: r, color: COLORS[(i + 3) % COLORS.length], points: pts.map((p) => [p.t, p.defaults[r] ?? 0]),
      }));
      return { series: series.length ? series : [{ label: "none", color: COLORS[3], points: pts.map((p) => [p.t, 0]) }] };
    }),
    chart("Cache hit ratio", key, (pts) => ({ series: [line(pts, "hit", "hits", COLORS[2])], fixedMax: 1 })),
  ];
}

function modelCharts(m) {
  const key = `model:${modelKey(m)}`;
  return [
    chart("Predictions/s", key, (pts) => ({
      series: [line(pts, "pps", "queries/s", COLORS[0]), line(pts, "errors", "failed batches/s", COLORS[4])],
    })),
    chart("Batch latency (ms)", key, (pts) => ({
      series: [line(pts, "p50", "p50", COLORS[0]), line(pts, "p99", "p99", COLORS[1])],
      limits: sloLimits(m),
    })),
    chart("Mean batch size", key, (pts) => ({ series: [line(pts, "batch", "queries/batch", COLORS[5])] })),
    chart("Queue length", key, (pts) => ({
      series: [line(pts, "queue", "waiting", COLORS[3])],
      limits: [{ label: `bound ${m.queue_bound ?? ""}`, value: m.queue_bound, color: BOUND }],
    })),
  ];
}

/** A model's batches should fit the tightest SLO of the apps it serves. */
function sloLimits(m) {
  const slos = (view?.apps ?? []).filter((a) => a.models.includes(m.name)).map((a) => a.slo_ms);
  return slos.length ? [{ label: `SLO ${fmt(Math.min(...slos), 0)} ms`, value: Math.min(...slos), color: SLO }] : [];
}

// --- pages ----------------------------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "model" && parts.length >= 3) return { page: "model", name: parts[1], version: parts[2] };
  if (parts[0] === "app" && parts[1]) return { page: "app", name: parts[1] };
  return { page: "overview" };
}

const modelLink = (m) => h("a", { href: `#/model/${encodeURIComponent(m.name)}/${encodeURIComponent(m.version)}` }, modelKey(m));
const appLink = (name) => h("a", { href: `#/app/${encodeURIComponent(name)}` }, name);

function latencyCell(value, slo) {
  return h("td", { class: `num${slo != null && value != null && value > slo ? " over" : ""}` }, fmt(value));
}

function appRows(apps) {
  return apps.map((a) => h("tr", { "data-app": a.name },
    h("td", {}, appLink(a.name)),
    h("td", {}, a.input_type),
    h("td", {}, a.models.length ? a.models.map((name) => currentLink(name)) : h("span", { class: "muted" }, "none")),
    h("td", {}, a.policy ?? "–"),
    numCell(a.slo_ms, 0),
    numCell(a.requests_per_s, 1, { "data-field": "requests_per_s" }),
    latencyCell(a.p50_ms, a.slo_ms),
    latencyCell(a.p99_ms, a.slo_ms),
    numCell(sum(Object.values(a.defaults_per_s))),
    h("td", { class: "num" }, pct(a.cache_hit_ratio))));
}

function currentLink(name) {
  const m = view.models.find((x) => x.name === name && x.current);
  return m ? modelLink(m) : name;
}

function modelRows(models) {
  return models.map((m) => h("tr", { "data-model": modelKey(m) },
    h("td", {}, modelLink(m), " ", m.current ? h("span", { class: "badge ok" }, "current") : null),
    h("td", {}, m.input_type),
    h("td", {}, m.linked_apps.join(", ") || h("span", { class: "muted" }, "none")),
    h("td", { class: "num", "data-field": "replicas" }, m.replicas),
    numCell(m.predictions_per_s, 1, { "data-field": "predictions_per_s" }),
    numCell(m.mean_batch_size),
    numCell(m.p50_ms),
    numCell(m.p99_ms),
    h("td", { class: "num" }, m.queue_bound == null ? m.queue_length : `${m.queue_length} / ${m.queue_bound}`),
    h("td", { class: `num${m.errors_per_s > 0 ? " over" : ""}` }, fmt(m.errors_per_s, 2))));
}

const APP_HEAD = [["Application"], ["Input"], ["Model"], ["Policy"], ["SLO ms", 1], ["Req/s", 1], ["p50 ms", 1],
  ["p99 ms", 1], ["Defaults/s", 1], ["Cache hits", 1]];
const MODEL_HEAD = [["Model version"], ["Input"], ["Apps"], ["Replicas", 1], ["Queries/s", 1], ["Batch", 1],
  ["p50 ms", 1], ["p99 ms", 1], ["Queue", 1], ["Failed/s", 1]];

function frontendRows(frontends) {
  return frontends.map((f) => h("tr", { "data-frontend": f.id },
    h("td", {}, h("code", {}, f.id)),
    h("td", {}, f.http_address),
    h("td", {}, h("span", { class: `badge ${f.up ? "ok" : "bad"}`, title: f.error ?? "" }, f.up ? "up" : "down")),
    numCell(f.requests_per_s)));
}

/** Static structure of a page: rebuilt only when the route or the set of apps/models changes. */
function layout(r) {
  const main = document.getElementById("main");
  if (r.page === "model") return modelPage(main, r);
  if (r.page === "app") return appPage(main, r);
  const current = view.models.filter((m) => m.current);
  main.replaceChildren(
    h("div", { class: "tables" },
      h("section", {}, h("h2", {}, "Applications"), h("div", { class: "panel", id: "apps-table" })),
      h("section", {}, h("h2", {}, "Model versions"), h("div", { class: "panel", id: "models-table" })),
      h("section", {}, h("h2", {}, "Query frontends"), h("div", { class: "panel", id: "frontends-table" }))),
    h("h2", {}, "Applications, live"),
    view.apps.length ? h("div", { class: "grid2" }, view.apps.map((a) => h("div", { class: "panel" },
      h("div", { class: "card-head" }, h("h3", {}, appLink(a.name)),
        h("span", { class: "muted" }, `${a.input_type} · SLO ${fmt(a.slo_ms, 0)} ms · ${a.models.join(", ") || "no model"}`)),
      h("div", { class: "charts" }, appCharts(a)))))
      : muted("No applications yet."),
    h("h2", {}, "Current model versions, live"),
    current.length ? h("div", { class: "grid2" }, current.map((m) => h("div", { class: "panel" },
      h("div", { class: "card-head" }, h("h3", {}, modelLink(m)),
        h("span", { class: "muted", "data-field": "card-replicas" }, "")),
      h("div", { class: "charts" }, modelCharts(m)))))
      : muted("No models yet."));
}

function fillOverview() {
  fill("apps-table", () => view.apps.length ? table(APP_HEAD, appRows(view.apps)) : muted("None."));
  fill("models-table", () => view.models.length ? table(MODEL_HEAD, modelRows(view.models)) : muted("None."));
  fill("frontends-table", () => table([["Frontend"], ["HTTP address"], ["State"], ["Req/s", 1]], frontendRows(view.frontends)));
}

function fill(id, build) {
  const el = document.getElementById(id);
  if (el) el.replaceChildren(build());
}

function appPage(main, r) {
  const app = findApp(r.name);
  if (!app) return main.replaceChildren(h("p", { class: "error" }, `No application named ${r.name}.`));
  main.replaceChildren(
    h("h2", {}, `Application ${app.name}`),
    h("div", { class: "panel", id: "apps-table" }),
    h("h2", {}, "Live"),
    h("div", { class: "panel" }, h("div", { class: "charts" }, appCharts(app))),
    h("h2", {}, "Its models"),
    h("div", { class: "panel", id: "models-table" }));
}

function fillApp(r) {
  const app = findApp(r.name);
  if (!app) return;
  fill("apps-table", () => table(APP_HEAD, appRows([app])));
  fill("models-table", () => table(MODEL_HEAD, modelRows(view.models.filter((m) => app.models.includes(m.name)))));
}

function modelPage(main, r) {
  const m = findModel(r.name, r.version);
  if (!m) return main.replaceChildren(h("p", { class: "error" }, `No model version ${r.name}:${r.version}.`));
  const versions = view.models.filter((x) => x.name === m.name).map((x) => x.version);
  const status = h("div", { class: "status", id: "action-status" });
  const scaleInput = h("input", { type: "number", id: "scale-input", min: 0, value: m.replicas });
  const versionSelect = h("select", { id: "version-select" }, versions.map((v) => h("option", { value: v, selected: v === m.version }, v)));
  main.replaceChildren(
    h("h2", {}, `Model ${modelKey(m)}`),
    h("div", { class: "panel", id: "models-table" }),
    h("h2", {}, "Actions"),
    h("div", { class: "panel" },
      h("div", { class: "actions" },
        h("label", {}, "Replicas", h("span", {}, scaleInput, " ",
          h("button", { id: "scale-button", onclick: (e) => act(e.target, status, "set_num_replicas",
            { model_name: m.name, model_version: m.version, num_replicas: Number(scaleInput.value) }) }, "Scale"))),
        h("label", {}, "Current version", h("span", {}, versionSelect, " ",
          h("button", { id: "version-button", onclick: (e) => act(e.target, status, "set_model_version",
            { model_name: m.name, model_version: versionSelect.value }) }, "Make current")))),
      status),
    h("h2", {}, "Live"),
    h("div", { class: "panel" }, h("div", { class: "charts" }, modelCharts(m))),
    h("h2", {}, "Replicas"),
    h("div", { class: "panel", id: "replicas" }, muted("Loading…")),
    h("h2", {}, "Replicas as the frontends see them"),
    h("div", { class: "panel", id: "replica-metrics" }),
    h("h2", {}, "Recent log lines"),
    h("pre", { class: "logs", id: "logs" }, "Loading…"));
  refreshReplicas(m);
  clearInterval(logTimer);
  logTimer = setInterval(() => refreshReplicas(m), LOG_POLL_MS);
}

async function act(button, status, call, body) {
  button.disabled = true;
  status.className = "status";
  status.textContent = "Working…";
  try {
    const reply = await api(`/admin/${call}`, { method: "POST", body });
    status.className = "status ok";
    status.textContent = typeof reply === "string" ? reply : "Done.";
    await poll();
    const m = findModel(body.model_name, body.model_version);
    if (m) refreshReplicas(m);
  } catch (e) {
    status.className = "status error";
    status.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

async function refreshReplicas(m) {
  const query = `model_name=${encodeURIComponent(m.name)}&model_version=${encodeURIComponent(m.version)}`;
  const [replicas, logs] = await Promise.allSettled([
    api(`/admin/get_replicas?${query}`),
    api(`/admin/get_model_logs?${query}&lines=100`),
  ]);
  fill("replicas", () => replicas.status === "fulfilled"
    ? (replicas.value.length
      ? table([["Replica"], ["Kind"], ["State"], ["Started"], ["Uptime", 1]], replicas.value.map((r) => h("tr", { "data-replica": r.replica },
        h("td", {}, h("code", {}, r.replica)), h("td", {}, r.kind), h("td", {}, r.state),
        h("td", {}, r.started_at == null ? "–" : new Date(r.started_at * 1000).toLocaleTimeString()),
        h("td", { class: "num" }, r.uptime_s == null ? "–" : duration(r.uptime_s)))))
      : muted("No replicas running."))
    : h("p", { class: "error" }, replicas.reason.message));
  const pre = document.getElementById("logs");
  if (pre) {
    pre.textContent = logs.status === "fulfilled" ? (logs.value.lines.join("\n") || "(no log lines)") : logs.reason.message;
    pre.scrollTop = pre.scrollHeight;
  }
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function fillModel(r) {
  const m = findModel(r.name, r.version);
  if (!m) return;
  fill("models-table", () => table(MODEL_HEAD, modelRows([m])));
  fill("replica-metrics", () => m.replica_metrics.length
    ? table([["Frontend"], ["Replica id"], ["Queries/s", 1], ["Batches/s", 1], ["Batch", 1], ["p50 ms", 1], ["p99 ms", 1],
      ["Failed/s", 1], ["Last heard", 1]], m.replica_metrics.map((x) => h("tr", {},
      h("td", {}, h("code", {}, x.frontend)), h("td", {}, x.replica), numCell(x.predictions_per_s),
      numCell(x.batches_per_s), numCell(x.mean_batch_size), numCell(x.p50_ms), numCell(x.p99_ms),
      numCell(x.failed_batches_per_s, 2),
      h("td", { class: "num" }, x.last_heard_s == null ? "–" : `${fmt(x.last_heard_s)} s`))))
    : muted("No replica connected to a frontend."));
}

// --- the loop ---------------------------------------------------------------------------------------

function renderHeader(r) {
  const up = view.frontends.filter((f) => f.up).length;
  const currentReplicas = sum(view.models.filter((m) => m.current).map((m) => m.replicas));
  const chip = (label, value) => h("span", { class: "chip" }, label, " ", h("b", {}, value));
  document.getElementById("summary").replaceChildren(
    chip("apps", view.apps.length),
    chip("models", new Set(view.models.map((m) => m.name)).size),
    chip("versions", view.models.length),
    chip("links", sum(view.apps.map((a) => a.models.length))),
    chip("replicas", currentReplicas),
    chip("frontends", `${up}/${view.frontends.length}`),
    chip("req/s", fmt(sum(view.apps.map((a) => a.requests_per_s)))));
  const crumbs = [h("a", { href: "#/" }, "overview")];
  if (r.page === "app") crumbs.push(" / ", `app ${r.name}`);
  if (r.page === "model") crumbs.push(" / ", `model ${r.name}:${r.version}`);
  document.getElementById("crumbs").replaceChildren(...crumbs);
  document.getElementById("updated").textContent = `updated ${new Date(view.time_s * 1000).toLocaleTimeString()}`;
}

function render() {
  if (!view) return;
  const r = route();
  const key = JSON.stringify([r, view.apps.map((a) => [a.name, a.models, a.slo_ms]), view.models.map((m) => [modelKey(m), m.current])]);
  if (key !== layoutKey) {
    layoutKey = key;
    if (r.page !== "model") clearInterval(logTimer);
    layout(r);
  }
  renderHeader(r);
  if (r.page === "overview") fillOverview();
  if (r.page === "app") fillApp(r);
  if (r.page === "model") fillModel(r);
  drawCharts(view.time_s);
}

let polling = null;

/** One cluster view: remembered for the charts, then rendered. Concurrent calls share one request. */
function poll() {
  polling ??= (async () => {
    try {
      view = await api("/admin/cluster_view");
      record(view);
      document.body.dataset.polls = Number(document.body.dataset.polls || 0) + 1;
      document.getElementById("problem").hidden = true;
      render();
    } catch (e) {
      if (!(e instanceof NeedsToken)) {
        const problem = document.getElementById("problem");
        problem.textContent = `Cannot read the cluster view: ${e.message}`;
        problem.hidden = false;
      }
    } finally {
      polling = null;
    }
  })();
  return polling;
}

/** Ask for the token before the first call when the API needs one (a refused call is a console error). */
async function start() {
  const auth = await (await fetch("/dashboard/auth")).json();
  if (auth.required && !sessionStorage.getItem(TOKEN_KEY)) askForToken("");
  else poll();
  setInterval(() => document.getElementById("login").open || poll(), POLL_MS);
}

window.addEventListener("hashchange", () => { layoutKey = ""; render(); });
window.addEventListener("resize", () => view && drawCharts(view.time_s));
start();
