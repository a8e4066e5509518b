// The PocWhisp dashboard: reads GET /api/v1/performance/stream (server-sent events, read
// with fetch so that the bearer token can go in a header) and draws the last few minutes.
"use strict";

const TOKEN_KEY = "pocwhisp-admin-token";
const POINTS = 180;
const MiB = 1024 * 1024;

// Each chart: its series (a label, a colour, how to read it from a tick) and the threshold
// whose levels it draws.
const CHARTS = {
  requests: { series: [["requests/s", "--s1", (v) => v.throughput_rps]] },
  latency: {
    series: [
      ["p50", "--s3", (v) => v.request_latency_p50_ms],
      ["p95", "--s1", (v) => v.request_latency_p95_ms],
      ["p99", "--s2", (v) => v.request_latency_p99_ms],
    ],
    threshold: "request_latency_p95_ms",
  },
  errors: { series: [["errors", "--critical", (v) => pct(v.error_rate)]], threshold: "error_rate", scale: 100 },
  cpu: { series: [["cpu", "--s1", (v) => v.cpu_usage_percent]], threshold: "cpu_usage_percent", floorMax: 100 },
  memory: {
    series: [
      ["resident", "--s1", (v) => div(v.resident_bytes, MiB)],
      ["heap in use", "--s2", (v) => div(v.heap_inuse_bytes, MiB)],
    ],
  },
  cache: { series: [["hit rate", "--s3", (v) => pct(v.cache_hit_rate)]], threshold: "cache_hit_rate", scale: 100, floorMax: 100 },
  jobs: {
    series: [
      ["jobs queued", "--s4", (v) => v.jobs_queued],
      ["jobs running", "--s1", (v) => v.jobs_running],
      ["db connections", "--s2", (v) => v.db_connections],
      ["in flight", "--s3", (v) => v.load_shed_in_flight],
    ],
  },
};

const ticks = [];
let thresholds = [];
let controller = null;

function pct(x) { return x == null ? null : x * 100; }
function div(x, by) { return x == null ? null : x / by; }
function $(id) { return document.getElementById(id); }
function token() { return sessionStorage.getItem(TOKEN_KEY); }
function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function authorized(path, options = {}) {
  return fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token()}` } });
}

function showLogin(message) {
  if (controller) controller.abort();
  $("board").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  setStatus("unknown", "signed out");
}

function setStatus(status, text) {
  const badge = $("status");
  badge.dataset.status = status;
  badge.textContent = text;
}

async function start() {
  if (!token()) return showLogin();
  // A quick check first, so that a wrong token is said plainly.
  const check = await authorized("/api/v1/performance/health");
  if (check.status === 401 || check.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showLogin(check.status === 401 ? "That token is not valid." : "That token has no admin role.");
  }
  $("login").hidden = true;
  $("board").hidden = false;
  follow();
}

// Reads the stream until it ends, then reconnects after a pause.
async function follow() {
  controller = new AbortController();
  try {
    const response = await authorized("/api/v1/performance/stream?interval=1s", { signal: controller.signal });
    if (!response.ok) throw new Error(`the stream answered ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
        if (data) onTick(JSON.parse(data));
      }
    }
  } catch (error) {
    if (error.name === "AbortError") return;
    setStatus("down", "disconnected");
  }
  setTimeout(follow, 2000);
}

function onTick(tick) {
  thresholds = tick.thresholds || [];
  ticks.push(tick);
  if (ticks.length > POINTS) ticks.shift();
  setStatus(tick.health, `health: ${tick.health}`);
  $("updated").textContent = `updated ${new Date(tick.at).toLocaleTimeString()}`;
  renderAlerts(tick);
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) draw(canvas, CHARTS[canvas.dataset.chart]);
}

function renderAlerts(tick) {
  const list = $("alerts");
  list.replaceChildren();
  if (!tick.alerts.length) {
    const none = document.createElement("li");
    none.className = "muted";
    none.textContent = "none firing";
    list.append(none);
  }
  for (const alert of tick.alerts) {
    const item = document.createElement("li");
    item.dataset.severity = alert.severity;
    item.dataset.alert = alert.name;
    item.textContent = `${alert.severity}: ${alert.name}${alert.metric ? ` (${alert.metric})` : ""}`;
    list.append(item);
  }
  const components = $("components");
  components.replaceChildren();
  for (const [name, component] of Object.entries(tick.components || {})) {
    const span = document.createElement("span");
    span.dataset.status = component.status;
    span.textContent = `${name}: ${component.detail}`;
    components.append(span);
  }
}

function nice(max) {
  if (max <= 0) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

function format(value) {
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (Math.abs(value) >= 10 || value === 0) return value.toFixed(0);
  return value.toFixed(1);
}

// A line chart of the kept ticks: the series, the threshold's warning and critical levels
// as dashed lines, a y axis from zero.
function draw(canvas, chart) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 40, right = 8, top = 8, bottom = 22;
  const points = chart.series.map(([, , read]) => ticks.map((tick) => read(tick.values)));
  const level = thresholds.find((t) => t.metric === chart.threshold);
  const scale = chart.scale || 1;
  const levels = level ? [["warning", level.warning * scale], ["critical", level.critical * scale]] : [];
  let max = Math.max(chart.floorMax || 0, ...points.flat().filter((x) => x != null), ...levels.map(([, v]) => v));
  max = nice(max);
  const x = (i) => left + (width - left - right) * (ticks.length <= 1 ? 1 : i / (POINTS - 1));
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = cssVar("--muted");
  g.strokeStyle = cssVar("--line");
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(width - right, y(v)); g.stroke();
    g.fillText(format(v), 4, y(v) + 4);
  }
  for (const [name, value] of levels) {
    g.setLineDash([5, 4]);
    g.strokeStyle = cssVar(name === "critical" ? "--critical" : "--warning");
    g.beginPath(); g.moveTo(left, y(value)); g.lineTo(width - right, y(value)); g.stroke();
    g.setLineDash([]);
  }
  chart.series.forEach(([label, colour], index) => {
    g.strokeStyle = cssVar(colour);
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    points[index].forEach((value, i) => {
      if (value == null) { drawing = false; return; }
      const px = x(i + POINTS - ticks.length), py = y(Math.min(value, max));
      if (drawing) g.lineTo(px, py); else g.moveTo(px, py);
      drawing = true;
    });
    g.stroke();
    const last = points[index].filter((v) => v != null).pop();
    g.fillStyle = cssVar(colour);
    g.fillText(`${label} ${last == null ? "–" : format(last)}`, left + 6 + index * 110, height - 6);
  });
  canvas.dataset.points = String(ticks.length);
}

async function act(button, path, describe) {
  button.disabled = true;
  const result = $("result");
  try {
    const response = await authorized(path, { method: "POST" });
    const body = await response.json();
    result.textContent = response.ok ? describe(body) : `${response.status}: ${body.message || JSON.stringify(body)}`;
  } catch (error) {
    result.textContent = `failed: ${error.message}`;
  } finally {
    result.hidden = false;
    button.disabled = false;
  }
}

function describeOptimize(body) {
  return body.actions.map((action) => {
    const outcome = action.outcome ? action.outcome.summary : `failed: ${action.error}`;
    return `${action.kind} · ${action.name} (${action.took_ms.toFixed(1)} ms): ${outcome}`;
  }).join("\n") || "no actions";
}

function describeWarmup(body) {
  const tasks = body.tasks.map((task) => `  ${task.name}: ${task.warmed} warmed${task.error ? `, failed: ${task.error}` : ""}`);
  return [`warmed ${body.warmed} entries in ${body.took_ms.toFixed(1)} ms`, ...tasks].join("\n");
}

async function download(format) {
  const response = await authorized(`/api/v1/performance/report?period=1h&format=${format}`);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `pocwhisp-report.${format === "markdown" ? "md" : format}`;
  link.click();
  URL.revokeObjectURL(link.href);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
  $("optimize").addEventListener("click", (event) => act(event.target, "/api/v1/performance/optimize", describeOptimize));
  $("warmup").addEventListener("click", (event) => act(event.target, "/api/v1/cache/warmup", describeWarmup));
  for (const button of document.querySelectorAll("button[data-report]")) {
    button.addEventListener("click", () => download(button.dataset.report));
  }
  window.addEventListener("resize", () => {
    for (const canvas of document.querySelectorAll("canvas[data-chart]")) draw(canvas, CHARTS[canvas.dataset.chart]);
  });
  start();
});
