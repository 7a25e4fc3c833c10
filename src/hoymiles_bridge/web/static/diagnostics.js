// Hoymiles DTU Bridge web UI: the diagnostics page.
//
// Renders api/diagnostics in cards and refreshes it every few seconds while the
// page is shown (and the browser tab visible). "Download diagnostics" saves the
// same JSON, secrets masked, for a bug report.
"use strict";

(() => {
  const { el, get, num, unit, duration, bytes, badge, fact, clock } = window.HB;
  const REFRESH_MS = 5000;

  let shown = false;
  let timer = null;
  let busy = false;
  const ui = {};

  const count = (value) => (value === undefined || value === null ? "–" : num(value, 0));
  const seconds = (value) => (value === undefined || value === null ? "–" : `${num(value, 2)} s`);
  const ms = (value) => unit(value, 1, "ms");

  function keyed(key, label, value, extra) {
    const node = fact(label, value, extra);
    node.dataset.key = key;
    return node;
  }

  function card(cls, title, ...content) {
    return el("div", { class: `card diag-card ${cls}` }, el("div", { class: "card-head" },
      el("h3", { text: title }), content.shift()), content);
  }

  function render(d) {
    const p = d.process || {};
    const lat = d.poll_latency || {};
    const mqtt = d.mqtt || {};
    const c = d.counters || {};
    const dtus = d.dtus || [];
    ui.cards.replaceChildren(
      card("diag-versions", "Bridge", null, el("div", { class: "facts" },
        keyed("version", "Version", d.version || "–"),
        keyed("uptime", "Uptime", duration(d.uptime_s)),
        keyed("python", "Python", d.python || "–"),
        keyed("platform", "Platform", d.platform || "–", "wide"))),
      card("diag-process", "Process", null, el("div", { class: "facts" },
        keyed("rss", "Memory (RSS)", bytes(p.rss_bytes)),
        keyed("max_rss", "Peak RSS", bytes(p.max_rss_bytes)),
        keyed("cpu_user", "CPU user", seconds(p.cpu_user_s)),
        keyed("cpu_system", "CPU system", seconds(p.cpu_system_s)),
        keyed("pid", "PID", p.pid === undefined ? "–" : String(p.pid)))),
      card("diag-latency", "Poll latency", el("span", { class: "muted", text: `${count(lat.count)} polls` }),
        el("div", { class: "facts" },
          keyed("p50", "p50", ms(lat.p50_ms)),
          keyed("p90", "p90", ms(lat.p90_ms)),
          keyed("p99", "p99", ms(lat.p99_ms)),
          keyed("max", "max", ms(lat.max_ms)))),
      card("diag-mqtt", "MQTT", badge(mqtt.connected ? "connected" : "disconnected", mqtt.connected ? "ok" : "error"),
        el("div", { class: "facts" },
          keyed("connects", "Connects", count(mqtt.connects)),
          keyed("disconnects", "Disconnects", count(mqtt.disconnects)),
          keyed("published", "Published", count(mqtt.published)),
          keyed("queued", "Queued", count(mqtt.queued)),
          keyed("dropped", "Dropped", count(mqtt.dropped))),
        mqtt.last_error ? el("p", { class: "error-text diag-last-error", text: `Last error: ${mqtt.last_error}` }) : null),
      card("diag-counters", "Counters", null, el("div", { class: "facts" },
        keyed("frames", "Frames", count(c.frames)),
        keyed("frame_errors", "Frame errors", count(c.frame_errors), c.frame_errors ? "attention" : ""),
        keyed("reconnects", "Reconnects", count(c.reconnects)),
        keyed("displacements", "Displacements", count(c.displacements)),
        keyed("stale_replies", "Stale replies", count(c.stale_replies)),
        keyed("commands_done", "Commands done", count(c.commands_done)),
        keyed("commands_failed", "Commands failed", count(c.commands_failed), c.commands_failed ? "attention" : ""),
        keyed("websocket_clients", "Live clients", count(c.websocket_clients)),
        keyed("websocket_dropped", "Live drops", count(c.websocket_dropped)))),
      card("diag-dtus", "DTUs", null, dtus.length ? el("div", { class: "diag-table" }, el("table", {},
        el("thead", {}, el("tr", {}, ["DTU", "Serial", "State", "Polls", "Failures"].map((h) => el("th", { text: h })))),
        el("tbody", {}, dtus.map((t) => el("tr", { "data-dtu": t.label },
          el("td", { text: t.label }),
          el("td", { text: t.serial || "–" }),
          el("td", { text: t.state || "–" }),
          el("td", { class: "num", text: count(t.polls) }),
          el("td", { class: "num", text: count(t.failures) }))))))
        : el("p", { class: "muted", text: "No DTU configured." })),
    );
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    const { ok, body } = await get("api/diagnostics");
    busy = false;
    if (!shown) return;
    if (!ok || !body) {
      ui.error.textContent = (body && body.error) || "The diagnostics could not be loaded.";
      ui.error.hidden = false;
    } else {
      ui.error.hidden = true;
      render(body);
      ui.updated.textContent = `Updated ${clock(Date.now() / 1000)}, every ${REFRESH_MS / 1000} s while shown.`;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = shown && !document.hidden ? setTimeout(refresh, REFRESH_MS) : null;
  }

  function stop() {
    clearTimeout(timer);
    timer = null;
  }

  document.addEventListener("visibilitychange", () => {
    if (!shown) return;
    if (document.hidden) stop();
    else refresh();
  });

  window.HB.page("diagnostics", {
    init(root) {
      ui.updated = el("span", { id: "diag-updated", class: "muted" });
      ui.error = el("p", { class: "error-text diag-error", hidden: true });
      ui.cards = el("div", { id: "diag-cards", class: "diag-cards" },
        el("div", { class: "card muted", text: "Loading the diagnostics…" }));
      root.replaceChildren(
        el("div", { class: "card diag-head" },
          el("div", { class: "diag-actions" },
            el("a", { id: "diag-download", class: "button", href: "api/diagnostics/download",
              download: "", text: "Download diagnostics" }),
            ui.updated),
          el("p", { class: "muted", text: "The download is this page's data as JSON, with every "
            + "password and key masked: attach it to a bug report." }),
          ui.error),
        ui.cards,
      );
    },
    show() {
      shown = true;
      refresh();
    },
    hide() {
      shown = false;
      stop();
    },
  });
})();
