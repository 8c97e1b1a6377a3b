// app.js — fills the statistics page from /stats.json every 2 seconds.
// The token (http.token) comes from the address (#token=...) or the form,
// and is kept for this tab in sessionStorage. No libraries: the charts are
// plain SVG. Elements carry ids and data-* attributes that tests read.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b"];
const RANGE_TEXT = { "1h": "last hour", "24h": "last 24 hours", "30d": "last 30 days" };
let range = "1h";
let polls = 0;
let timer = null;
const colors = {};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                   : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("kasi-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("kasi-token");
}

function colorOf(name) {
  if (!colors[name]) colors[name] = PALETTE[Object.keys(colors).length % PALETTE.length];
  return colors[name];
}

function fmtNum(n) { return Number(n).toLocaleString("en-US"); }

function fmtSecs(s) {
  if (!s) return "–";
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}

function fmtAge(secs) {
  secs = Math.max(0, Math.floor(secs));
  if (secs >= 86400) return Math.floor(secs / 86400) + "d " + Math.floor(secs % 86400 / 3600) + "h";
  if (secs >= 3600) return Math.floor(secs / 3600) + "h " + Math.floor(secs % 3600 / 60) + "m";
  if (secs >= 60) return Math.floor(secs / 60) + "m " + (secs % 60) + "s";
  return secs + "s";
}

function setText(id, text, value) {
  const e = $(id);
  e.textContent = text;
  e.dataset.value = value === undefined ? text : value;
}

function setState(state, text) {
  const e = $("state");
  e.dataset.state = state;
  e.textContent = text;
}

// ---------------------------------------------------------------- tiles

function renderTiles(d) {
  setText("host", d.host);
  setText("open-connections", fmtNum(d.open_connections), d.open_connections);
  const w = d.workers;
  setText("workers", w.configured ? w.running + " / " + w.configured : String(w.running),
    w.running);
  setText("generation", String(d.generation), d.generation);
  setText("last-reload", d.last_reload ? fmtAge(d.now - d.last_reload) + " ago" : "never",
    d.last_reload);
  setText("uptime", fmtAge(d.now - d.started), d.now - d.started);
  for (const k of ["accepted", "rejected", "deferred", "dropped"])
    setText("msgs-" + k, fmtNum(d.messages[k]), d.messages[k]);
  setText("rcpts-rejected", fmtNum(d.recipients.rejected), d.recipients.rejected);
  $("updated").textContent = new Date(d.now * 1000).toLocaleTimeString([], { hour12: false });
  $("updated").dataset.polls = String(polls);
}

// -------------------------------------------------------------- ranking

function cell(tr, field, text, value, cls) {
  const td = el("td", { "data-field": field, "data-value": String(value) }, text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function rankingRow(p, maxShare) {
  const costly = p.p99 > 0.1 || p.errors + p.timeouts > 0;
  const tr = el("tr", { "data-plugin": p.name });
  tr.className = (p.window_rejections === 0 ? "idle" : "") + (costly ? " costly" : "");
  cell(tr, "name", p.name, p.name, "name");
  cell(tr, "rejections", fmtNum(p.window_rejections), p.window_rejections, "num");
  const share = cell(tr, "share", "", p.share.toFixed(6), "sharecell");
  const bar = el("span", { class: "bar" });
  bar.style.width = Math.round(100 * p.share / (maxShare || 1)) + "px";
  bar.style.background = colorOf(p.name);
  share.appendChild(bar);
  share.appendChild(document.createTextNode((100 * p.share).toFixed(1) + "%"));
  cell(tr, "calls", fmtNum(p.calls), p.calls, "num");
  cell(tr, "p50", fmtSecs(p.p50), p.p50, "num");
  cell(tr, "p99", fmtSecs(p.p99), p.p99, "num" + (p.p99 > 0.1 ? " costly" : ""));
  cell(tr, "errors", fmtNum(p.errors), p.errors, "num" + (p.errors ? " costly" : ""));
  cell(tr, "timeouts", fmtNum(p.timeouts), p.timeouts, "num" + (p.timeouts ? " costly" : ""));
  return tr;
}

function renderRanking(d) {
  const body = $("ranking").tBodies[0];
  const maxShare = Math.max(0, ...d.plugins.map(p => p.share));
  body.replaceChildren(...d.plugins.map(p => rankingRow(p, maxShare)));
  $("ranking-range").textContent = "(" + RANGE_TEXT[d.range] + ")";
  $("ranking").dataset.range = d.range;
}

// ---------------------------------------------------------------- charts

function chartFrame(svg, maxY) {
  const w = Math.max(300, svg.clientWidth || 800), h = 220;
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.replaceChildren();
  const box = { x: 44, y: 8, w: w - 52, h: h - 30 };
  for (const f of [0, 0.5, 1]) {
    const y = box.y + box.h * (1 - f);
    svg.appendChild(el("svg:line", { x1: box.x, x2: box.x + box.w, y1: y, y2: y, class: "grid" }));
    svg.appendChild(el("svg:text", { x: box.x - 4, y: y + 4, "text-anchor": "end" },
      f ? String(Math.round(maxY * f * 10) / 10) : "0"));
  }
  return box;
}

function timeLabels(svg, box, series, step) {
  const n = series.t.length;
  const fmt = t => {
    const dt = new Date(t * 1000);
    return step >= 3600 ? dt.toLocaleDateString(undefined, { month: "short", day: "numeric" })
                        : dt.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit",
                                                      hour12: false });
  };
  const at = [[0, "start"], [Math.floor(n / 2), "middle"], [n - 1, "end"]];
  for (const [i, anchor] of at)
    svg.appendChild(el("svg:text", { x: box.x + box.w * (i + { start: 0, middle: 0.5, end: 1 }[anchor]) / n,
      y: box.y + box.h + 16, "text-anchor": anchor }, fmt(series.t[i])));
}

function renderRejections(d) {
  const svg = $("chart-rejections"), s = d.series, n = s.t.length;
  const names = d.plugins.filter(p => p.window_rejections > 0).map(p => p.name).reverse();
  const totals = s.t.map((_, i) => names.reduce((a, nm) => a + s.deny[nm][i], 0));
  const maxY = Math.max(1, ...totals);
  const box = chartFrame(svg, maxY), bw = box.w / n;
  for (let i = 0; i < n; i++) {
    let y = box.y + box.h;
    for (const nm of names) {
      const v = s.deny[nm][i];
      if (!v) continue;
      const hgt = box.h * v / maxY;
      y -= hgt;
      const r = el("svg:rect", { x: box.x + i * bw + 0.5, y: y, width: Math.max(1, bw - 1),
        height: hgt, fill: colorOf(nm), "data-plugin": nm, "data-value": v });
      r.appendChild(el("svg:title", {}, nm + ": " + v));
      svg.appendChild(r);
    }
  }
  timeLabels(svg, box, s, d.step);
  svg.dataset.total = String(totals.reduce((a, b) => a + b, 0));
  $("legend-rejections").replaceChildren(...names.slice().reverse().map(nm => {
    const sp = el("span", { "data-plugin": nm });
    const sw = el("i", { class: "sw" });
    sw.style.background = colorOf(nm);
    sp.append(sw, nm);
    return sp;
  }));
}

function renderOutcomes(d) {
  const svg = $("chart-outcomes"), s = d.series, n = s.t.length, perMin = d.step / 60;
  const keys = { accepted: "var(--ok)", rejected: "var(--bad)", deferred: "var(--warn)",
    dropped: "var(--drop)" };
  let maxY = 1;
  for (const k in keys) maxY = Math.max(maxY, ...s[k].map(v => v / perMin));
  const box = chartFrame(svg, maxY);
  for (const [k, color] of Object.entries(keys)) {
    const pts = s[k].map((v, i) => (box.x + box.w * (i + 0.5) / n).toFixed(1) + "," +
      (box.y + box.h * (1 - v / perMin / maxY)).toFixed(1));
    const line = el("svg:polyline", { points: pts.join(" "), fill: "none",
      "stroke-width": 2, "data-outcome": k, "data-total": s[k].reduce((a, b) => a + b, 0) });
    line.style.stroke = color;
    svg.appendChild(line);
  }
  timeLabels(svg, box, s, d.step);
}

// ----------------------------------------------------------------- tables

function renderHooks(d) {
  const hooks = [];
  for (const p of d.plugins)
    for (const h of Object.keys(p.hooks)) if (!hooks.includes(h)) hooks.push(h);
  const head = el("tr");
  head.appendChild(el("th", {}, "plugin"));
  for (const h of hooks) head.appendChild(el("th", { class: "num" }, h));
  $("hooks").tHead.replaceChildren(head);
  $("hooks").tBodies[0].replaceChildren(...d.plugins.map(p => {
    const tr = el("tr", { "data-plugin": p.name });
    tr.appendChild(el("td", {}, p.name));
    for (const h of hooks) {
      const c = p.hooks[h] || { calls: 0 };
      const deny = (c.DENY || 0) + (c.DENYSOFT || 0) + (c.DENYDISCONNECT || 0) + (c.DISCONNECT || 0);
      const td = el("td", { class: "num" + (deny ? " deny" : ""), "data-hook": h,
        "data-calls": c.calls, "data-denials": deny },
        c.calls ? fmtNum(c.calls) + (deny ? " / " + fmtNum(deny) + " ✗" : "") : "·");
      td.title = Object.entries(c).map(([k, v]) => k + " " + v).join(", ");
      tr.appendChild(td);
    }
    return tr;
  }));
}

function renderLatency(d) {
  for (const [id, v] of [["dns", d.dns], ["down", d.downstream]]) {
    setText(id + "-p50", fmtSecs(v.p50), v.p50);
    setText(id + "-p99", fmtSecs(v.p99), v.p99);
    setText(id + "-count", fmtNum(v.count), v.count);
  }
}

function renderCustom(d) {
  const rows = d.custom.map(c => {
    const tr = el("tr", { "data-plugin": c.plugin, "data-name": c.name, "data-labels": c.labels });
    tr.appendChild(el("td", {}, c.plugin));
    tr.appendChild(el("td", {}, c.name + (c.labels ? "{" + c.labels + "}" : "")));
    const mean = c.count ? " (mean " + (c.sum / c.count).toFixed(2) + ")" : "";
    tr.appendChild(el("td", { class: "num", "data-field": "count", "data-value": c.count },
      fmtNum(c.count) + (c.kind === "summary" ? mean : "")));
    return tr;
  });
  if (!rows.length) rows.push(el("tr", {}, "none yet"));
  $("custom").tBodies[0].replaceChildren(...rows);
}

// ------------------------------------------------------------------ loop

function render(d) {
  renderTiles(d);
  renderRanking(d);
  renderRejections(d);
  renderOutcomes(d);
  renderHooks(d);
  renderLatency(d);
  renderCustom(d);
}

async function poll() {
  clearTimeout(timer);
  const t = token();
  try {
    const r = await fetch("stats.json?range=" + range,
      { headers: t ? { Authorization: "Bearer " + t } : {}, cache: "no-store" });
    if (r.status === 401) {
      $("token-form").hidden = false;
      setState("error", "token needed");
      return;
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    const d = await r.json();
    polls++;
    render(d);
    document.body.dataset.polls = String(polls);
    setState("live", "live");
  } catch (e) {
    setState("error", "no answer: " + e.message);
  }
  timer = setTimeout(poll, POLL_MS);
}

$("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem("kasi-token", $("token-input").value);
  $("token-form").hidden = true;
  poll();
});

for (const b of document.querySelectorAll("nav.ranges button")) {
  b.addEventListener("click", () => {
    range = b.dataset.range;
    for (const o of document.querySelectorAll("nav.ranges button"))
      o.classList.toggle("on", o === b);
    poll();
  });
}

poll();
