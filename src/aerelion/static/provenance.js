// The live provenance log. The access token stays in sessionStorage; it is sent only in
// an Authorization header, traded for one-time stream tickets, never put in a URL.
"use strict";

const MAX_ROWS = 1000;
const state = { token: sessionStorage.getItem("aerelion.token"), newest: 0, stream: null,
  retry: null };
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, { ...options,
    headers: { ...(options.headers || {}), Authorization: "Bearer " + state.token } });
  const body = await response.json();
  if (!response.ok) {
    const error = new Error(body.message || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function filters() {
  const query = new URLSearchParams();
  const level = $("filter-level").value;
  const fn = $("filter-function").value.trim();
  const agent = $("filter-agent").value;
  if (level) query.set("level", level);
  if (fn) query.set("function", fn);
  if (agent) query.set("agent", agent);
  return query;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function render(entry) {
  const row = document.createElement("tr");
  row.dataset.level = entry.level;
  row.dataset.seq = entry.seq;
  const message = entry.message || "";
  if (message.includes("OPERATIONAL_MODE_TRANSITION") && message.includes("WAR_ROOM")) {
    row.classList.add("war-room");
  }
  cell(row, String(entry.created_at).replace("T", " ").slice(0, 19));
  cell(row, entry.level.toUpperCase(), "level");
  const agent = cell(row, entry.agent_id ? "[" + entry.agent_id + "]" : "", "badge");
  if (entry.agent_id && (entry.level === "warn" || entry.level === "error"
      || message.includes("DRIFT"))) agent.classList.add("alert");
  cell(row, entry.function_name);
  cell(row, message).title = message;
  const status = cell(row, entry.status_code == null ? "" : String(entry.status_code), "status");
  if (entry.status_code >= 400) status.classList.add("failed");
  cell(row, entry.duration_ms == null ? "" : String(entry.duration_ms));
  return row;
}

function prepend(entries) {  // entries oldest first
  const body = $("rows");
  for (const entry of entries) {
    body.insertBefore(render(entry), body.firstChild);
    state.newest = Math.max(state.newest, entry.seq);
  }
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
}

function showSummary(summary) {
  if (!summary) return;
  const mode = $("mode");
  mode.dataset.mode = summary.operational_mode || "";
  mode.textContent = "MODE: " + (summary.operational_mode || "—");
  const list = $("agents");
  list.replaceChildren();
  const select = $("filter-agent");
  const chosen = select.value;
  select.replaceChildren(new Option("all", ""));
  for (const agent of summary.agents || []) {
    const item = document.createElement("li");
    item.dataset.state = agent.state;
    item.dataset.agent = agent.agent_id;
    item.textContent = agent.agent_id + " " + agent.codename + " · " + agent.state;
    list.appendChild(item);
    select.appendChild(new Option(agent.agent_id, agent.agent_id));
  }
  select.value = chosen;
  const s = summary.stats || {};
  $("stat-events").textContent = (s.events || 0) + " EVENTS";
  $("stat-errors").textContent = (s.errors || 0) + " ERR";
  $("stat-warnings").textContent = (s.warnings || 0) + " WARN";
  $("stat-duration").textContent = "AVG " + (s.avg_duration_ms || 0) + " ms";
  $("stat-rate").textContent = "ERR " + (s.error_rate || 0) + " %";
}

function live(on) {
  const badge = $("live");
  badge.dataset.state = on ? "on" : "off";
  badge.textContent = on ? "LIVE_SYNC" : "RECONNECTING";
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
  clearTimeout(state.retry);
}

async function openStream() {
  closeStream();
  try {
    const { ticket } = await api("/nexus/logs/ticket", { method: "POST" });
    const query = filters();
    query.set("ticket", ticket);
    query.set("after", String(state.newest));
    const stream = new EventSource("/nexus/logs/stream?" + query.toString());
    state.stream = stream;
    stream.onopen = () => live(true);
    stream.addEventListener("rows", (event) => prepend(JSON.parse(event.data)));
    stream.addEventListener("summary", (event) => showSummary(JSON.parse(event.data)));
    stream.onerror = () => {  // a ticket is good once: reconnect with a new one
      live(false);
      closeStream();
      state.retry = setTimeout(openStream, 1000);
    };
  } catch (error) {
    live(false);
    if (error.status === 401 || error.status === 403) return signOut(error.message);
    state.retry = setTimeout(openStream, 2000);
  }
}

async function load() {
  closeStream();
  $("rows").replaceChildren();
  state.newest = 0;
  const [summary, page] = await Promise.all([
    api("/nexus/logs/summary"), api("/nexus/logs/rows?" + filters().toString())]);
  showSummary(summary);
  prepend(page.rows.slice().reverse());
  await openStream();
}

async function signIn() {
  state.token = $("token").value.trim();
  $("signin-error").textContent = "";
  try {
    await api("/nexus/logs/summary");
  } catch (error) {
    return signOut(error.message);
  }
  sessionStorage.setItem("aerelion.token", state.token);
  $("signin").hidden = true;
  $("feed").hidden = false;
  await load();
}

function signOut(message) {
  closeStream();
  sessionStorage.removeItem("aerelion.token");
  state.token = null;
  $("feed").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-button").addEventListener("click", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  for (const id of ["filter-level", "filter-agent", "filter-function"]) {
    $(id).addEventListener("change", load);
  }
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  if (state.token) {
    $("token").value = state.token;
    signIn();
  }
});
