// Hoymiles DTU Bridge web UI: the frame inspector page.
"use strict";

(() => {
  const { $, el, clock, post, frameDetail, frameSummary } = window.HB;
  const MAX_FRAMES = 2000;

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
    const { ok, body } = await window.HB.get(`api/frames?limit=${MAX_FRAMES}`);
    if (!ok || !body) return;
    for (const frame of body.frames || []) addFrame(frame, false);
    frames.sort((a, b) => a.id - b.id);
    renderFrames();
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
    out.replaceChildren(el("p", { class: "muted", text: "Decoding…" }));
    const { body } = await post("api/decode", { hex: $("decode-hex").value });
    if (!body || body.error) {
      out.replaceChildren(el("p", { class: "error-text decode-error", text: body ? body.error : "The bridge sent no answer." }));
      return;
    }
    const records = body.frames || [body];
    out.replaceChildren(...records.map((r) => el("div", { class: "decoded" },
      frameSummary(r), frameDetail(r))));
  }

  function knowDtus(status) {
    const select = $("filter-dtu");
    const known = new Set([...select.options].map((o) => o.value));
    for (const dtu of status.dtus || []) {
      if (!known.has(dtu.label)) select.append(el("option", { value: dtu.label, text: dtu.label }));
    }
  }

  function init() {
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
  }

  // The Hoymiles cloud's requests and answers (api/cloud, masked by the bridge), shown
  // when the bridge uses the cloud; read again at most every 5 s, not while one is open.
  let cloudRead = 0;
  async function loadCloud(status) {
    const box = $("cloud-requests");
    box.hidden = !status.cloud;
    const list = $("cloud-exchanges");
    if (!status.cloud || Date.now() - cloudRead < 5000 || list.querySelector("details[open]")) return;
    cloudRead = Date.now();
    const { ok, body } = await window.HB.get("api/cloud");
    if (!ok || !body || !body.enabled) return;
    const rows = (body.exchanges || []).slice(-50).reverse().map((x) => el("details",
      { class: "cloud-exchange" },
      el("summary", { text: `${clock(x.at)}  POST ${x.url}  → ${x.error || x.status}` }),
      el("pre", { text: JSON.stringify({ request: x.request, response: x.response }, null, 2) })));
    list.replaceChildren(...(rows.length ? rows : [el("p", { class: "muted", text: "No request yet." })]));
  }

  // The batteries' MQTT messages (api/battery-messages), shown when there is a battery;
  // read again at most every 5 s, not while one is open, and at once on a filter change.
  let batteryRead = 0;
  function batteryQuery() {
    const params = new URLSearchParams();
    const unit = $("battery-filter-unit").value;
    const direction = $("battery-filter-direction").value;
    if (unit) params.set("dev_id", unit);
    if (direction) params.set("direction", direction);
    return params.toString();
  }
  function knowBatteries(status) {
    const units = (status.batteries || []).map((b) => b.dev_id);
    $("battery-messages").hidden = units.length === 0;
    const select = $("battery-filter-unit");
    const have = new Set([...select.options].map((o) => o.value));
    for (const id of units) if (!have.has(id)) select.append(el("option", { value: id, text: id }));
  }
  async function loadBatteryMessages(status, force) {
    if (status) knowBatteries(status);
    const list = $("battery-list");
    if ($("battery-messages").hidden) return;
    if (!force && (Date.now() - batteryRead < 5000 || list.querySelector("details[open]"))) return;
    batteryRead = Date.now();
    const query = batteryQuery();
    $("battery-export").setAttribute("href",
      query ? `api/battery-messages.jsonl?${query}` : "api/battery-messages.jsonl");
    const { ok, body } = await window.HB.get(query ? `api/battery-messages?${query}` : "api/battery-messages");
    if (!ok || !body) return;
    const rows = (body.messages || []).slice(-200).reverse().map((m) => el("details",
      { class: "battery-message" + (m.error ? " bad" : "") },
      el("summary", { text: `${clock(m.time)}  ${m.dev_id}  ${m.direction === "in" ? "←" : "→"} ${m.kind}`
        + (m.error ? `  (${m.error})` : "") }),
      el("pre", { text: m.text }),
      m.decoded ? el("pre", { class: "decoded", text: JSON.stringify(m.decoded, null, 2) }) : null));
    list.replaceChildren(...(rows.length ? rows : [el("p", { class: "muted", text: "No message yet." })]));
  }
  $("battery-filters").addEventListener("submit", (e) => e.preventDefault());
  $("battery-filter-unit").addEventListener("change", () => loadBatteryMessages(null, true));
  $("battery-filter-direction").addEventListener("change", () => loadBatteryMessages(null, true));
  $("battery-refresh").addEventListener("click", () => loadBatteryMessages(null, true));

  // Frames are collected from the start, whichever page is shown.
  window.HB.on("start", init);
  window.HB.on("open", loadFrames);
  window.HB.on("frame", onFrame);
  window.HB.on("state", knowDtus);
  window.HB.on("state", loadCloud);
  window.HB.on("state", (status) => loadBatteryMessages(status, false));
  window.HB.page("inspector", {});
})();
