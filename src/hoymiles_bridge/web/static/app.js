// Hoymiles DTU Bridge web UI: overview and frame inspector.
// Plain JS, no libraries. Every URL is relative to the page, so the UI works
// under Home Assistant's ingress prefix. The pages use only the JSON API.
"use strict";

(() => {
  const MAX_FRAMES = 2000;
  const CSRF = { "X-Requested-With": "hoymiles-bridge" };
  const $ = (id) => document.getElementById(id);

  // --- tiny DOM builder (textContent only: nothing from the bridge is parsed as HTML) ---
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
    if (value === undefined || value === null || Number.isNaN(Number(value))) return "–";
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
  function relative(ts, now) {
    if (ts === undefined || ts === null || now === undefined) return "";
    const s = Math.round(ts - now);
    if (Math.abs(s) < 1) return "now";
    return s < 0 ? `${-s} s ago` : `in ${s} s`;
  }
  const badge = (text, kind) => el("span", { class: `badge ${kind || ""}`, text });
  const fact = (label, value, extra) => el("div", { class: `fact ${extra || ""}` },
    el("span", { class: "label", text: label }), el("span", { class: "value", text: value }));

  const STATE_KIND = {
    connected: "ok", connecting: "warn", night: "warn", frozen: "warn",
    displaced: "warn", backoff: "warn", error: "error", disconnected: "error",
  };

  // --- overview ---------------------------------------------------------------------
  let lastStatus = null;

  function renderTotals(status) {
    const t = status.totals || {};
    const mqtt = status.mqtt || {};
    $("totals").replaceChildren(
      el("div", { class: "card-head" }, el("h3", { text: "Totals" }),
        badge(mqtt.connected ? "MQTT connected" : "MQTT disconnected",
          mqtt.connected ? "ok" : "error")),
      el("div", { class: `facts${t.valid === false ? " stale-data" : ""}` },
        fact("AC power", unit(t.ac_power, 1, "W"), "big"),
        fact("Yield today", unit(t.ac_yieldday, 0, "Wh")),
        fact("Yield total", unit(t.ac_yieldtotal, 3, "kWh")),
        fact("DC power", unit(t.dc_power, 1, "W")),
      ),
    );
  }

  function renderInverter(inv, now) {
    const v = inv.values || {};
    const stale = Boolean(inv.stale);
    const state = [];
    if (inv.reachable === true) state.push(badge("reachable", "ok"));
    else if (inv.reachable === false) state.push(badge("unreachable", "error"));
    if (inv.producing === true) state.push(badge("producing", "ok"));
    else if (inv.producing === false) state.push(badge("not producing", "warn"));
    if (stale) state.push(badge("stale", "stale"));
    const alarms = Array.isArray(inv.alarms) ? inv.alarms.length : 0;
    const limit = inv.limit_applied === null || inv.limit_applied === undefined
      ? "–" : `${num(inv.limit_applied, 1)} %`;
    const requested = inv.limit_requested === null || inv.limit_requested === undefined
      ? "" : ` (requested ${num(inv.limit_requested, 1)} %)`;
    const ports = Object.entries(inv.ports || {}).sort((a, b) => Number(a[0]) - Number(b[0]));
    return el("div", {
      class: `inverter${stale ? " stale-data" : ""}`, "data-serial": inv.serial,
    },
    el("div", { class: "card-head" },
      el("h4", { text: `${inv.model || "Inverter"} ${inv.serial}` }), state),
    el("div", { class: "facts" },
      fact("AC power", unit(v.power, 1, "W"), "big power"),
      fact("AC voltage", unit(v.voltage, 1, "V")),
      fact("AC current", unit(v.current, 2, "A")),
      fact("Frequency", unit(v.frequency, 2, "Hz")),
      fact("Temperature", unit(v.temperature, 1, "°C")),
      fact("Yield today", unit(v.yieldday, 0, "Wh")),
      fact("Limit applied", limit + requested),
      fact("Alarms", String(alarms)),
      fact("Last update", inv.last_update ? `${clock(inv.last_update)} (${relative(inv.last_update, now)})` : "–"),
    ),
    ports.length ? el("div", { class: "ports" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Port", "Power", "Voltage", "Current", "Yield day"]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, ports.map(([port, p]) => el("tr", {},
        el("td", { text: port }),
        el("td", { text: unit(p.power, 1, "W") }),
        el("td", { text: unit(p.voltage, 1, "V") }),
        el("td", { text: unit(p.current, 2, "A") }),
        el("td", { text: unit(p.yieldday, 0, "Wh") }),
      ))),
    )) : null,
    );
  }

  function renderDtu(dtu, now) {
    const stale = Boolean(dtu.stale);
    const title = dtu.name || dtu.label || dtu.host;
    const state = dtu.state || "unknown";
    return el("div", { class: `card dtu${stale ? " stale" : ""}`, "data-dtu": dtu.label },
      el("div", { class: "card-head" },
        el("h3", { text: title }),
        badge(state, STATE_KIND[state] || ""),
        dtu.encrypted ? badge("encrypted", "") : null,
        stale ? badge("stale", "stale") : null),
      dtu.state_reason ? el("p", { class: "policy", text: dtu.state_reason }) : null,
      el("div", { class: `facts${stale ? " stale-data" : ""}` },
        fact("Serial", dtu.serial || "–"),
        fact("Model", dtu.model || "–"),
        fact("Firmware", dtu.firmware || "–"),
        fact("Encrypted", dtu.encrypted ? "yes" : "no"),
        fact("RSSI", dtu.rssi === null || dtu.rssi === undefined ? "–" : `${dtu.rssi} %`),
        el("div", { class: "fact last-poll" },
          el("span", { class: "label", text: "Last poll" }),
          el("span", { class: "value", "data-ts": dtu.last_poll ?? "",
            text: dtu.last_poll ? `${clock(dtu.last_poll)} (${relative(dtu.last_poll, now)})` : "–" })),
        fact("Round trip", unit(dtu.rtt_ms, 0, "ms")),
        fact("Next poll", dtu.next_poll ? `${clock(dtu.next_poll)} (${relative(dtu.next_poll, now)})` : "–"),
        fact("Interval", unit(dtu.interval, 0, "s")),
        fact("Address", dtu.host ? `${dtu.host}:${dtu.port}` : "–"),
      ),
      dtu.policy ? el("p", { class: "policy", text: dtu.policy }) : null,
      (dtu.inverters || []).map((inv) => renderInverter(inv, now)),
    );
  }

  function renderOverview(status) {
    lastStatus = status;
    renderTotals(status);
    const dtus = status.dtus || [];
    $("dtus").replaceChildren(...(dtus.length
      ? dtus.map((d) => renderDtu(d, status.time))
      : [el("div", { class: "card muted", text: status.starting ? "The bridge is starting…" : "No DTU configured." })]));
    const select = $("filter-dtu");
    const known = new Set([...select.options].map((o) => o.value));
    for (const dtu of dtus) {
      if (!known.has(dtu.label)) select.append(el("option", { value: dtu.label, text: dtu.label }));
    }
  }

  // --- frame inspector ----------------------------------------------------------------
  const frames = [];
  const frameIds = new Set();
  const pending = [];
  let paused = false;
  const expanded = new Set();

  function filters() {
    return {
      dtu: $("filter-dtu").value,
      direction: $("filter-direction").value,
      message: $("filter-message").value.trim(),
    };
  }

  function matches(frame, f) {
    if (f.dtu && frame.dtu !== f.dtu) return false;
    if (f.direction && frame.direction !== f.direction) return false;
    if (f.message) {
      const wanted = f.message.toLowerCase();
      if (!(frame.message || "").toLowerCase().includes(wanted)
        && !(frame.tag || "").toLowerCase().includes(wanted)) return false;
    }
    return true;
  }

  function updateExport() {
    const f = filters();
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(f)) if (value) params.set(key, value);
    const query = params.toString();
    $("export").setAttribute("href", query ? `api/frames.jsonl?${query}` : "api/frames.jsonl");
  }

  function headerSpans(hex) {
    // Standard header: magic 2, tag 2, seq 2, crc 2, length 2; gateway tags add 14 bytes.
    const bytes = hex.match(/../g) || [];
    const tag = bytes.length >= 4 ? parseInt(bytes[2], 16) : -1;
    const extended = [0xdb, 0xda, 0xc3, 0xc2].includes(tag);
    const parts = [["hx-magic", 2, "magic"], ["hx-tag", 2, "tag"], ["hx-seq", 2, "sequence"],
      ["hx-crc", 2, "CRC"], ["hx-len", 2, "length"]];
    if (extended) parts.push(["hx-ext", 14, "extended header"]);
    const out = [];
    let at = 0;
    for (const [cls, size, name] of parts) {
      if (at >= bytes.length) break;
      out.push(el("span", { class: cls, title: name, text: bytes.slice(at, at + size).join(" ") }), " ");
      at += size;
    }
    const rest = bytes.slice(at);
    for (let i = 0; i < rest.length; i += 16) {
      out.push(`${i === 0 ? "\n" : ""}${rest.slice(i, i + 16).join(" ")}\n`);
    }
    return out;
  }

  function tree(value, name, depth) {
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

  function frameDetail(frame) {
    return el("div", { class: "frame-detail" },
      el("div", { class: "legend" }, ["magic", "tag", "seq", "crc", "len"].map((n) =>
        el("span", { class: `hx-${n}`, text: n }))),
      el("pre", { class: "hex" }, headerSpans(frame.hex || "")),
      frame.redacted ? el("p", { class: "muted", text: "Secrets masked: this is the redacted frame, not the wire bytes." }) : null,
      frame.error ? el("p", { class: "error-text", text: frame.error }) : null,
      frame.payload ? el("ul", { class: "tree" }, tree(frame.payload, frame.message || "payload", 0))
        : el("p", { class: "muted", text: "No decoded payload." }),
    );
  }

  function frameRow(frame) {
    const incoming = frame.direction === "from_dtu";
    const row = el("tr", {
      class: `frame${frame.crc_ok === false || frame.error ? " bad" : ""}`,
      "data-id": frame.id, "data-direction": frame.direction,
      onclick: () => toggle(frame, row),
    },
    el("td", { text: clock(frame.time, true) }),
    el("td", { text: frame.dtu }),
    el("td", { class: incoming ? "dir-in" : "dir-out", title: frame.direction, text: incoming ? "←" : "→" }),
    el("td", { text: `${frame.tag || "????"} ${frame.message || ""}` }),
    el("td", { text: frame.sequence ?? "–" }),
    el("td", { text: frame.length ?? "–" }),
    el("td", { text: frame.crc_ok === null || frame.crc_ok === undefined ? "–" : (frame.crc_ok ? "ok" : "bad") }),
    el("td", { text: frame.encrypted ? "yes" : "no" }),
    );
    return row;
  }

  function toggle(frame, row) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("detail-row")) {
      next.remove();
      expanded.delete(frame.id);
      return;
    }
    expanded.add(frame.id);
    row.after(el("tr", { class: "detail-row" }, el("td", { class: "detail", colspan: 8 }, frameDetail(frame))));
  }

  function renderFrames() {
    const f = filters();
    const body = $("frames");
    const rows = [];
    for (const frame of frames) {
      if (!matches(frame, f)) continue;
      const row = frameRow(frame);
      rows.push(row);
      if (expanded.has(frame.id)) {
        rows.push(el("tr", { class: "detail-row" }, el("td", { class: "detail", colspan: 8 }, frameDetail(frame))));
      }
    }
    body.replaceChildren(...rows);
    updateCount();
  }

  function updateCount() {
    const shown = $("frames").querySelectorAll("tr.frame").length;
    const extra = paused ? ` · paused, ${pending.length} waiting` : "";
    $("frame-count").textContent = `${shown} of ${frames.length} frames${extra}`;
  }

  function addFrame(frame, render) {
    if (frameIds.has(frame.id)) return;
    frameIds.add(frame.id);
    frames.push(frame);
    let trimmed = false;
    while (frames.length > MAX_FRAMES) {
      const old = frames.shift();
      frameIds.delete(old.id);
      expanded.delete(old.id);
      trimmed = true;
    }
    if (!render) return;
    const body = $("frames");
    if (trimmed) {
      const first = body.querySelector("tr.frame");
      if (first && !frameIds.has(Number(first.dataset.id))) {
        const next = first.nextElementSibling;
        if (next && next.classList.contains("detail-row")) next.remove();
        first.remove();
      }
    }
    if (matches(frame, filters())) body.append(frameRow(frame));
    updateCount();
  }

  function onFrame(frame) {
    if (paused) {
      pending.push(frame);
      if (pending.length > MAX_FRAMES) pending.shift();
      updateCount();
      return;
    }
    addFrame(frame, true);
  }

  async function loadFrames() {
    try {
      const response = await fetch(`api/frames?limit=${MAX_FRAMES}`, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      for (const frame of body.frames || []) addFrame(frame, false);
      frames.sort((a, b) => a.id - b.id);
      renderFrames();
    } catch (err) {
      console.warn("loading frames failed", err);
    }
  }

  function setPaused(value) {
    paused = value;
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      for (const frame of pending.splice(0)) addFrame(frame, false);
      renderFrames();
    }
    updateCount();
  }

  async function decode(event) {
    event.preventDefault();
    const out = $("decode-result");
    const hex = $("decode-hex").value;
    out.replaceChildren(el("p", { class: "muted", text: "Decoding…" }));
    let body;
    try {
      const response = await fetch("api/decode", {
        method: "POST",
        headers: { ...CSRF, "Content-Type": "application/json" },
        body: JSON.stringify({ hex }),
      });
      body = await response.json();
    } catch (err) {
      out.replaceChildren(el("p", { class: "error-text", text: `The bridge did not answer: ${err}` }));
      return;
    }
    if (body.error) {
      out.replaceChildren(el("p", { class: "error-text decode-error", text: body.error }));
      return;
    }
    const records = body.frames || [body];
    out.replaceChildren(...records.map((r) => el("div", { class: "decoded" },
      el("p", {}, el("strong", { class: "decoded-message", text: r.message || "?" }),
        ` · tag ${r.tag ?? "–"} · seq ${r.sequence ?? "–"} · ${r.length ?? "–"} bytes · CRC ${r.crc_ok === false ? "bad" : "ok"}`),
      frameDetail({ ...r, hex: r.hex || "" }))));
  }

  // --- live connection -----------------------------------------------------------------
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
      loadFrames();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "state") renderOverview(message.data);
      else if (message.type === "frame") onFrame(message.data);
    });
    socket.addEventListener("close", () => {
      pill.textContent = "reconnecting…";
      pill.className = "pill";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    });
  }

  // --- routing ------------------------------------------------------------------------
  function route() {
    const view = location.hash === "#inspector" ? "inspector" : "overview";
    for (const section of document.querySelectorAll(".view")) {
      section.hidden = section.id !== `view-${view}`;
    }
    for (const link of document.querySelectorAll(".tabs a")) {
      link.classList.toggle("active", link.dataset.view === view);
    }
  }

  function start() {
    route();
    window.addEventListener("hashchange", route);
    if (document.body.dataset.api !== "1") {
      $("totals").replaceChildren(el("p", { class: "muted", text: "This server has no bridge API." }));
      $("link-state").textContent = "offline";
      return;
    }
    for (const id of ["filter-dtu", "filter-direction", "filter-message"]) {
      $(id).addEventListener("input", () => { updateExport(); renderFrames(); });
    }
    $("frame-filters").addEventListener("submit", (e) => e.preventDefault());
    $("pause").addEventListener("click", () => setPaused(!paused));
    $("clear").addEventListener("click", () => {
      frames.length = 0; frameIds.clear(); pending.length = 0; expanded.clear(); renderFrames();
    });
    $("decode-form").addEventListener("submit", decode);
    updateExport();
    fetch("api/status").then((r) => (r.ok ? r.json() : null)).then((s) => {
      if (s && !lastStatus) renderOverview(s);
    }).catch(() => {});
    connect();
  }

  start();
})();
