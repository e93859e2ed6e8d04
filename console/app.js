// Clearing console: plain JS over the member API (/api/v1). The token comes from the URL fragment
// (#token=..., local development) or the form, and stays in sessionStorage (this tab only).
"use strict";

const API = "/api/v1";
const state = { token: null, me: null, timer: null, lastDone: null, inFlight: false };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function fmtNum(v, digits) {
  if (v == null || v === "") return "";
  const n = Number(v);
  if (!isFinite(n)) return String(v);
  return n.toLocaleString("en-US", { minimumFractionDigits: digits || 0, maximumFractionDigits: digits || 0 });
}

// columns: [header, value(row) -> string|Node, "num"?]
function fillTable(table, columns, rows, empty) {
  table.replaceChildren();
  const head = el("tr");
  for (const [h, , cls] of columns) head.append(el("th", { class: cls || "" }, h));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  if (!rows.length) body.append(el("tr", {}, el("td", { class: "muted", colSpan: columns.length }, empty || "none")));
  for (const r of rows) {
    const tr = el("tr");
    for (const [, value, cls] of columns) tr.append(el("td", { class: cls || "" }, value(r)));
    body.append(tr);
  }
  table.append(body);
}

function idLink(id) {
  if (!id) return "";
  const a = el("a", { class: "id", href: "#", title: "show its life" }, id);
  a.addEventListener("click", (e) => { e.preventDefault(); $("search-input").value = id; search(id); });
  return a;
}

function showMessage(text) {
  const m = $("message");
  m.hidden = !text;
  m.textContent = text || "";
}

async function api(path) {
  const res = await fetch(API + path, { headers: { Authorization: "Bearer " + state.token }, cache: "no-store" });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const err = new Error((body && (body.message || JSON.stringify(body.detail))) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ------------------------------------------------------------------ token
function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (m) {
    sessionStorage.setItem("clearing-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search); // not left in the address bar
  }
  state.token = sessionStorage.getItem("clearing-token");
}

async function signIn() {
  state.me = null;
  if (!state.token) {
    $("whoami").textContent = "not signed in";
    showMessage("No token: paste one (clearing token --operator, or --member MBR01) or open /#token=...");
    return false;
  }
  try {
    state.me = await api("/me");
  } catch (e) {
    $("whoami").textContent = "not signed in";
    showMessage(e.status === 401 ? "Token refused (401): expired, tampered or from another state dir." : "API error: " + e.message);
    return false;
  }
  $("whoami").textContent = state.me.operator
    ? "operator" + (state.me.member_id ? " (" + state.me.member_id + ")" : "") : "member " + state.me.member_id;
  $("whoami").setAttribute("data-role", state.me.operator ? "operator" : "member");
  $("health-section").hidden = !state.me.operator;
  showMessage("");
  return true;
}

// ------------------------------------------------------------------ panels
function renderHealth(h) {
  $("health-source").textContent = "(" + h.source + (h.sampled_at ? ", " + h.sampled_at : "") + ")";
  // records/s per mapping between two distinct samples (the server caches a sample for 2 s: a poll
  // that gets the same sample keeps the previous rates)
  const now = h.sampled_at_ms || Date.now();
  const prev = state.lastDone;
  if (!prev || now > prev.at) {
    const done = {}, rates = {};
    for (const m of h.mappings || []) {
      done[m.mapping_id] = m.records_done;
      if (prev && prev.done[m.mapping_id] != null) {
        rates[m.mapping_id] = (m.records_done - prev.done[m.mapping_id]) * 1000 / (now - prev.at);
      }
    }
    state.lastDone = { at: now, done, rates };
  }
  const rate = (m) => {
    const r = state.lastDone.rates[m.mapping_id];
    return r == null ? "" : fmtNum(r, 1);
  };
  fillTable($("mappings"), [
    ["mapping", (m) => m.mapping_id],
    ["topics", (m) => (m.topics || []).join(", ")],
    ["lag", (m) => el("span", { class: m.lag > 0 ? "warn" : "ok" }, fmtNum(m.lag)), "num"],
    ["records done", (m) => fmtNum(m.records_done), "num"],
    ["records/s", rate, "num"],
    ["invocations", (m) => fmtNum(m.invocations), "num"],
    ["errors", (m) => el("span", { class: m.function_errors ? "bad" : "" }, fmtNum(m.function_errors)), "num"],
    ["retries", (m) => fmtNum(m.retries), "num"],
    ["on-failure", (m) => el("span", { class: m.onfailure_records ? "bad" : "" }, fmtNum(m.onfailure_records)), "num"],
    ["restarts", (m) => fmtNum(m.restarts), "num"],
  ], h.mappings || [], h.detail || "no mappings");
  const stateClass = (s) => (s === "running" || s === "external" ? "ok" : s === "degraded" ? "warn" : "bad");
  fillTable($("components"), [
    ["component", (c) => c.name],
    ["address", (c) => c.address],
    ["state", (c) => el("span", { class: stateClass(c.state) }, c.state)],
  ], h.components || [], "-");
  const fix = h.fix_session;
  $("fix-session").replaceChildren(fix
    ? el("span", { class: stateClass(fix.state) }, fix.state + (fix.detail ? " - " + fix.detail : ""))
    : el("span", { class: "muted" }, "no FIX proxy in this runtime"));
  const rejects = Object.entries(h.rejects_by_reason || {});
  fillTable($("rejects"), [["reason", (r) => r[0]], ["orders", (r) => fmtNum(r[1]), "num"]], rejects, "no rejects");
  $("onfailure").textContent = h.onfailure_records == null ? "-" : fmtNum(h.onfailure_records);
  if (h.error) showMessage(h.error);
}

function renderObligations(o) {
  offerMembers(o.members.map((m) => m.member_id));
  fillTable($("obligation-members"), [
    ["member", (m) => m.member_id],
    ["ccy", (m) => m.currency],
    ["pays", (m) => el("span", { class: Number(m.pay) ? "pay" : "" }, fmtNum(m.pay, 2)), "num"],
    ["receives", (m) => el("span", { class: Number(m.receive) ? "receive" : "" }, fmtNum(m.receive, 2)), "num"],
    ["fees", (m) => fmtNum(m.fees, 2), "num"],
    ["net (signed)", (m) => fmtNum(m.net_after_fees, 2), "num"],
  ], o.members, "no obligations yet");
  fillTable($("obligations"), [
    ["member", (r) => r.member_id], ["symbol", (r) => r.symbol], ["settles", (r) => r.settlement_date],
    ["securities", (r) => r.securities + " " + fmtNum(r.securities_quantity)],
    ["cash", (r) => el("span", { class: r.cash.toLowerCase() }, r.cash + " " + fmtNum(r.cash_amount, 2) + " " + r.currency)],
    ["fees", (r) => fmtNum(r.fees, 2), "num"],
    ["legs", (r) => fmtNum(r.leg_count), "num"],
  ], o.rows, "none");
}

// Operators pick a member for the orders panel: orders have no time index, so "every member" reads
// every member's orders on each poll (offered, not the default).
function offerMembers(ids) {
  const select = $("orders-member");
  if (!state.me || !state.me.operator) { select.hidden = true; return; }
  select.hidden = false;
  const have = new Set(Array.from(select.options).map((o) => o.value));
  for (const id of Array.from(new Set(ids)).sort()) {
    if (!have.has(id)) select.append(el("option", { value: id }, id));
  }
  if (select.value === "*" && !state.pickedMember && select.options.length > 1) select.value = select.options[1].value;
}

function renderMargin(m) {
  offerMembers(m.requirements.map((r) => r.member_id));
  fillTable($("margin"), [
    ["member", (r) => r.member_id],
    ["initial", (r) => fmtNum(r.initial_margin, 2), "num"],
    ["variation", (r) => fmtNum(r.variation_margin, 2), "num"],
    ["requirement", (r) => fmtNum(r.requirement, 2), "num"],
    ["collateral", (r) => fmtNum(r.collateral, 2), "num"],
    ["shortfall", (r) => el("span", { class: Number(r.shortfall) > 0 ? "bad" : "" }, fmtNum(r.shortfall, 2)), "num"],
    ["call", (r) => (r.is_call ? el("span", { class: "bad" }, "CALL") : "")],
    ["run", (r) => r.run_id],
  ], m.requirements, "no margin run yet (clearing margin)");
  fillTable($("margin-calls"), [
    ["member", (r) => r.member_id], ["run", (r) => r.run_id],
    ["shortfall", (r) => el("span", { class: "bad" }, fmtNum(r.shortfall, 2)), "num"],
    ["requirement", (r) => fmtNum(r.requirement, 2), "num"],
    ["collateral", (r) => fmtNum(r.collateral, 2), "num"],
  ], m.margin_calls, "no margin calls");
}

function renderTrades(page) {
  $("trades-count").textContent = "(latest " + page.count + (page.total == null ? "" : " of " + page.total) + ")";
  fillTable($("trades"), [
    ["executed at", (t) => t.executed_at],
    ["trade id", (t) => idLink(t.trade_id)],
    ["symbol", (t) => t.symbol],
    ["qty", (t) => fmtNum(t.quantity), "num"],
    ["price", (t) => t.price, "num"],
    ["buyer", (t) => t.buy && t.buy.member_id],
    ["buy order", (t) => idLink(t.buy && t.buy.order_id)],
    ["seller", (t) => t.sell && t.sell.member_id],
    ["sell order", (t) => idLink(t.sell && t.sell.order_id)],
    ["status", (t) => t.status],
    ["settles", (t) => t.settlement_date],
  ], page.items, "no trades yet");
}

function renderOrders(page) {
  $("orders-count").textContent = "(latest " + page.count + " of " + page.total + ")";
  fillTable($("orders"), [
    ["received", (o) => o.received_at],
    ["order id", (o) => idLink(o.order_id)],
    ["symbol", (o) => o.symbol], ["side", (o) => o.side], ["type", (o) => o.type],
    ["qty", (o) => fmtNum(o.quantity), "num"], ["price", (o) => o.price, "num"],
    ["status", (o) => o.status], ["filled", (o) => fmtNum(o.filled_qty), "num"],
    ["remaining", (o) => fmtNum(o.remaining_qty), "num"], ["reason", (o) => o.reason],
  ], page.items, "no orders");
}

async function refresh() {
  if (state.inFlight || !state.me) return;
  state.inFlight = true;
  try {
    const status = $("orders-status").value;
    const ordersFor = state.me.operator ? $("orders-member").value : null;
    const ordersQuery = "/orders?order=desc&limit=50" + (status ? "&status=" + encodeURIComponent(status) : "") +
      (ordersFor && ordersFor !== "*" ? "&member=" + encodeURIComponent(ordersFor) : "");
    const jobs = [
      api("/obligations").then(renderObligations),
      api("/margin").then(renderMargin),
      api("/trades?order=desc&limit=50").then(renderTrades),
    ];
    // an operator's orders wait for a member to be offered (margin / obligations) or "all" to be picked
    if (!state.me.operator || ordersFor !== "*" || state.pickedMember) jobs.push(api(ordersQuery).then(renderOrders));
    if (state.me.operator) jobs.push(api("/health").then(renderHealth));
    const results = await Promise.allSettled(jobs);
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length) {
      const e = failed[0].reason;
      showMessage(e.status === 401 ? "Token expired or refused (401): paste a new one." : "API error: " + e.message);
    }
    $("last-refresh").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.setAttribute("data-loaded", "true");
  } finally {
    state.inFlight = false;
  }
}

// ------------------------------------------------------------------ order search
function renderLife(life) {
  const o = life.order;
  const summary = el("p", {},
    el("strong", {}, o.order_id), " " + (o.side || "") + " " + fmtNum(o.quantity) + " " + (o.symbol || "") +
    " @ " + (o.price || "MKT") + ": ", el("strong", { "data-status": o.status }, o.status),
    " filled " + fmtNum(o.filled_qty) + ", remaining " + fmtNum(o.remaining_qty) + (o.reason ? " (" + o.reason + ")" : ""));
  const table = el("table");
  fillTable(table, [
    ["time", (s) => s.time], ["step", (s) => s.step], ["from (topic/partition/offset)", (s) => s.from],
    ["details", (s) => Object.entries(s).filter(([k]) => !["time", "step", "from"].includes(k))
      .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ")],
  ], life.steps, "no steps");
  const trades = el("p", {}, "trades: ");
  for (const t of life.trade_ids) trades.append(idLink(t), " ");
  const note = life.log_read ? "" : el("p", { class: "muted" }, "Kafka not read here: steps from the tables only.");
  $("search-result").replaceChildren(summary, table, life.trade_ids.length ? trades : "", note);
}

function renderTrade(t) {
  const table = el("table");
  fillTable(table, [
    ["leg", (l) => l.leg_id], ["member", (l) => l.member_id], ["side", (l) => l.side],
    ["qty", (l) => fmtNum(l.quantity), "num"], ["price", (l) => l.price, "num"],
    ["cash", (l) => fmtNum(l.cash_amount, 2), "num"], ["counterparty", (l) => l.counterparty],
    ["settles", (l) => l.settlement_date],
  ], t.legs || [], "not cleared yet");
  $("search-result").replaceChildren(
    el("p", {}, el("strong", {}, t.trade_id), " " + t.symbol + " " + fmtNum(t.quantity) + " @ " + t.price + " " + t.status +
      " - buy ", idLink(t.buy && t.buy.order_id), " / sell ", idLink(t.sell && t.sell.order_id)),
    table);
}

async function search(id) {
  id = (id || "").trim();
  if (!id) return;
  $("search-result").replaceChildren(el("p", { class: "muted" }, "searching " + id + " ..."));
  const enc = encodeURIComponent(id);
  try {
    renderLife(await api("/orders/" + enc));
  } catch (e) {
    if (e.status !== 404 && e.status !== 422) { $("search-result").replaceChildren(el("p", { class: "bad" }, e.message)); return; }
    try {
      // a cleared leg's id is its trade's id plus -B / -S
      const leg = /^(T-.+)-[BS]$/.exec(id);
      let trade;
      try {
        trade = await api("/trades/" + enc);
      } catch (e3) {
        if (!leg || e3.status !== 404) throw e3;
        trade = await api("/trades/" + encodeURIComponent(leg[1]));
      }
      renderTrade(trade);
    } catch (e2) {
      $("search-result").replaceChildren(el("p", { class: "bad", "data-notfound": "true" }, "nothing found for " + id +
        (e2.status === 404 || e2.status === 422 ? "" : " (" + e2.message + ")")));
    }
  }
}

// ------------------------------------------------------------------ wiring
function schedule() {
  if (state.timer) clearInterval(state.timer);
  const every = Number($("interval").value);
  if (every > 0) state.timer = setInterval(refresh, every);
}

async function start() {
  takeTokenFromFragment();
  if (await signIn()) await refresh();
  schedule();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = $("token-input").value.trim();
    if (t) sessionStorage.setItem("clearing-token", t);
    $("token-input").value = "";
    state.token = sessionStorage.getItem("clearing-token");
    state.lastDone = null;
    if (await signIn()) await refresh();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem("clearing-token");
    state.token = null;
    signIn();
  });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("search-input").value); });
  $("interval").addEventListener("change", schedule);
  $("orders-status").addEventListener("change", refresh);
  $("orders-member").addEventListener("change", () => { state.pickedMember = true; refresh(); });
  window.addEventListener("hashchange", start);
  start();
});
