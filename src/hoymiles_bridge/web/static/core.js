// Hoymiles DTU Bridge web UI: the shared core every page script builds on.
//
// Plain JS, no libraries, no build step. Every URL is relative to the page, so
// the UI works under Home Assistant's ingress prefix. The pages use only the
// JSON API (api/...). Each page is a classic script loaded after this one that
// calls HB.page(name, {init, show, hide}); this file starts the router and the
// live websocket once the document is parsed. Listeners: HB.on("start"|"open"|
// "state"|"frame"|"event", fn); "start" fires once, only when the bridge's API
// is there, and "open" every time the websocket (re)connects.
"use strict";

window.HB = (() => {
  const CSRF = { "X-Requested-With": "hoymiles-bridge" };
  const $ = (id) => document.getElementById(id);

  // --- DOM builder (textContent only: nothing from the bridge is parsed as HTML) ---
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // --- formatting -----------------------------------------------------------------
  function num(value, digits) {
    if (value === undefined || value === null || value === "" || Number.isNaN(Number(value))) return "–";
    return Number(value).toLocaleString("en-US", {
      minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
  }
  const unit = (value, digits, suffix) => (value === undefined || value === null)
    ? "–" : `${num(value, digits)} ${suffix}`;
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  function clock(ts, millis) {
    if (ts === undefined || ts === null) return "–";
    const d = new Date(ts * 1000);
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return millis ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }
  function date(ts) {
    if (ts === undefined || ts === null) return "–";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }
  function relative(ts, now) {
    if (ts === undefined || ts === null || now === undefined) return "";
    const s = Math.round(ts - now);
    if (Math.abs(s) < 1) return "now";
    return s < 0 ? `${-s} s ago` : `in ${s} s`;
  }
  function duration(seconds) {
    if (seconds === undefined || seconds === null) return "–";
    let s = Math.max(0, Math.round(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s} s`;
    return `${s} s`;
  }
  function bytes(n) {
    if (n === undefined || n === null) return "–";
    if (n >= 1048576) return `${num(n / 1048576, 1)} MB`;
    if (n >= 1024) return `${num(n / 1024, 1)} KB`;
    return `${n} B`;
  }
  const badge = (text, kind) => el("span", { class: `badge ${kind || ""}`, text });
  const fact = (label, value, extra) => el("div", { class: `fact ${extra || ""}` },
    el("span", { class: "label", text: label }), el("span", { class: "value", text: value }));

  // --- frames: the hex dump with its header marked, and the decoded payload as a tree ---
  // Shared by the frame inspector and the command console.
  function headerSpans(hex) {
    // Standard header: magic 2, tag 2, seq 2, crc 2, length 2; gateway tags add 14 bytes.
    const octets = hex.match(/../g) || [];
    const tag = octets.length >= 4 ? parseInt(octets[2], 16) : -1;
    const extended = [0xdb, 0xda, 0xc3, 0xc2].includes(tag);
    const parts = [["hx-magic", 2, "magic"], ["hx-tag", 2, "tag"], ["hx-seq", 2, "sequence"],
      ["hx-crc", 2, "CRC"], ["hx-len", 2, "length"]];
    if (extended) parts.push(["hx-ext", 14, "extended header"]);
    const out = [];
    let at = 0;
    for (const [cls, size, name] of parts) {
      if (at >= octets.length) break;
      out.push(el("span", { class: cls, title: name, text: octets.slice(at, at + size).join(" ") }), " ");
      at += size;
    }
    const rest = octets.slice(at);
    for (let i = 0; i < rest.length; i += 16) {
      out.push(`${i === 0 ? "\n" : ""}${rest.slice(i, i + 16).join(" ")}\n`);
    }
    return out;
  }

  function tree(value, name, depth = 0) {
    const label = name === undefined ? null : el("span", { class: "key", text: `${name}: ` });
    if (value !== null && typeof value === "object") {
      const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
      const kind = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
      return el("li", {}, el("details", { open: depth < 2 },
        el("summary", {}, label, kind),
        el("ul", {}, entries.map(([k, v]) => tree(v, k, depth + 1)))));
    }
    const text = typeof value === "string" ? JSON.stringify(value) : String(value);
    return el("li", {}, label, el("span", { class: typeof value === "string" ? "str" : "", text }));
  }

  // One line about a decoded frame: message name, tag, sequence, length, CRC.
  function frameSummary(frame) {
    const crc = frame.crc_ok === false ? "bad" : (frame.crc_ok === true ? "ok" : "–");
    return el("p", { class: "frame-summary" },
      el("strong", { class: "decoded-message", text: frame.message || "?" }),
      ` · tag ${frame.tag ?? "–"} · seq ${frame.sequence ?? "–"} · ${frame.length ?? "–"} bytes · CRC ${crc}`,
      frame.encrypted ? " · encrypted" : "");
  }

  // The hex dump (header marked) and the payload tree of a frame record.
  function frameDetail(frame) {
    return el("div", { class: "frame-detail" },
      frame.hex ? el("div", { class: "legend" }, ["magic", "tag", "seq", "crc", "len"].map((n) =>
        el("span", { class: `hx-${n}`, text: n }))) : null,
      frame.hex ? el("pre", { class: "hex" }, headerSpans(frame.hex)) : null,
      // The bridge keeps only the start of a run of bytes longer than any frame.
      frame.truncated ? el("p", { class: "muted truncated-note",
        text: `Only the first ${num(frame.hex.length / 2, 0)} of ${num(frame.length, 0)} bytes are kept.` }) : null,
      frame.redacted ? el("p", { class: "muted", text: "Secrets masked: this is the redacted frame, not the wire bytes." }) : null,
      frame.error ? el("p", { class: "error-text", text: frame.error }) : null,
      frame.payload ? el("ul", { class: "tree" }, tree(frame.payload, frame.message || "payload", 0))
        : el("p", { class: "muted", text: "No decoded payload." }),
    );
  }

  // --- the JSON API -------------------------------------------------------------------
  // get/post resolve to {ok, status, body}; body.error holds the bridge's sentence on failure,
  // and body.unanswered is true when the answer did not come from the bridge's API at all.
  async function call(path, init) {
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, status: 0, body: { error: `The bridge did not answer (${err.message || err}).`, unanswered: true } };
    }
    let body = null;
    const text = await response.text();
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (!response.ok && !(body && body.error)) {
      // Not the bridge's own JSON error (a proxy's 502, say): the bridge did not answer.
      body = { ...(body || {}), error: `The bridge answered HTTP ${response.status}.`, unanswered: true };
    }
    return { ok: response.ok, status: response.status, body };
  }
  const get = (path) => call(path, { headers: { Accept: "application/json" } });
  const post = (path, data) => call(path, {
    method: "POST",
    headers: { ...CSRF, "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(data === undefined ? {} : data),
  });

  // --- live messages ----------------------------------------------------------------
  const listeners = { start: [], state: [], frame: [], event: [], open: [] };
  function on(type, fn) { (listeners[type] = listeners[type] || []).push(fn); }
  function emit(type, data) {
    for (const fn of listeners[type] || []) {
      try { fn(data); } catch (err) { console.warn(`${type} listener failed`, err); }
    }
  }
  let lastStatus = null;
  on("state", (status) => { lastStatus = status; });

  let retry = 500;
  function connect() {
    const url = new URL("api/ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    const socket = new WebSocket(url.href);
    const pill = $("link-state");
    socket.addEventListener("open", () => {
      retry = 500;
      pill.textContent = "live";
      pill.className = "pill live";
      emit("open");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message && listeners[message.type]) emit(message.type, message.data);
    });
    socket.addEventListener("close", () => {
      pill.textContent = "reconnecting…";
      pill.className = "pill";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    });
  }

  // --- pages and routing -------------------------------------------------------------
  const pages = new Map();
  let current = null;
  function page(name, spec) { pages.set(name, { ...spec, started: false }); }

  function route() {
    const wanted = location.hash.replace(/^#/, "").split("?")[0];
    const name = pages.has(wanted) ? wanted : "overview";
    for (const section of document.querySelectorAll(".view")) {
      section.hidden = section.id !== `view-${name}`;
    }
    for (const link of document.querySelectorAll(".tabs a")) {
      const active = link.dataset.view === name;
      link.classList.toggle("active", active);
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (current && current !== name) {
      const old = pages.get(current);
      if (old && old.hide) old.hide();
    }
    const spec = pages.get(name);
    if (spec) {
      if (!spec.started) {
        spec.started = true;
        if (spec.init) spec.init($(`view-${name}`));
      }
      if (spec.show) spec.show();
    }
    current = name;
  }

  function start() {
    const api = document.body.dataset.api === "1";
    window.addEventListener("hashchange", route);
    if (!api) {
      $("link-state").textContent = "offline";
      for (const section of document.querySelectorAll(".view")) {
        section.replaceChildren(el("div", { class: "card muted", text: "This server has no bridge API." }));
      }
      return;
    }
    emit("start");
    route();
    get("api/status").then((r) => {
      if (r.ok && r.body && !lastStatus) emit("state", r.body);
    });
    connect();
  }

  document.addEventListener("DOMContentLoaded", start);

  return {
    $, el, num, unit, pad, clock, date, relative, duration, bytes, badge, fact,
    headerSpans, tree, frameSummary, frameDetail,
    get, post, on, page,
    get status() { return lastStatus; },
    get current() { return current; },
  };
})();
