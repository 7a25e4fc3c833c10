// Hoymiles DTU Bridge web UI: the event log page.
//
// The bridge keeps the last events in its process (api/events), so the log
// survives a page reload; new ones arrive over the websocket. Newest first,
// filtered by kind, level and DTU.
"use strict";

(() => {
  const { el, get, clock, date, badge } = window.HB;
  const MAX_EVENTS = 1000;
  const LEVEL_KIND = { info: "", warning: "warn", error: "error" };
  const KIND_LABEL = {
    start: "bridge start", mqtt: "MQTT", state: "connection", dtu_info: "DTU info",
    alarm: "alarm", command: "command",
  };

  const events = []; // oldest first
  const ids = new Set();
  let loaded = false;
  const ui = {};

  // --- collecting (from the start, whichever page is shown) ----------------------------
  function add(event) {
    if (!event || ids.has(event.id)) return false;
    ids.add(event.id);
    events.push(event);
    while (events.length > MAX_EVENTS) ids.delete(events.shift().id);
    return true;
  }

  async function load() {
    const { ok, body } = await get("api/events");
    if (!ok || !body) {
      if (ui.status) ui.status.textContent = (body && body.error) || "The event log could not be loaded.";
      return;
    }
    for (const event of body.events || []) add(event);
    events.sort((a, b) => a.id - b.id);
    loaded = true;
    if (ui.list) render();
  }

  function onEvent(event) {
    if (!add(event) || !ui.list) return;
    knowFilters();
    if (matches(event, filters())) {
      ui.list.prepend(row(event));
      const empty = ui.list.querySelector(".events-empty");
      if (empty) empty.remove();
    }
    count();
  }

  // --- the page -----------------------------------------------------------------------
  function choice(id, label, first) {
    const node = el("select", { id }, el("option", { value: "", text: first }));
    node.addEventListener("change", render);
    return [node, el("label", {}, label, node)];
  }

  function build(root) {
    const [kind, kindLabel] = choice("events-kind", "Kind", "all");
    const [level, levelLabel] = choice("events-level", "Level", "all");
    const [dtu, dtuLabel] = choice("events-dtu", "DTU", "all");
    for (const name of ["info", "warning", "error"]) level.append(el("option", { value: name, text: name }));
    const search = el("input", { id: "events-search", type: "search", placeholder: "words in the text" });
    search.addEventListener("input", render);
    Object.assign(ui, {
      kind, level, dtu, search,
      status: el("span", { id: "events-count", class: "muted" }),
      list: el("ol", { id: "events", class: "events", reversed: true }),
    });
    root.replaceChildren(
      el("div", { class: "card" },
        el("form", { class: "filters", autocomplete: "off", onsubmit: (e) => e.preventDefault() },
          kindLabel, levelLabel, dtuLabel, el("label", {}, "Search", search), ui.status),
        el("p", { class: "muted events-note",
          text: "Kept by the bridge (the last 500 events) until it restarts; a reload keeps them." })),
      el("div", { class: "card events-card" }, ui.list),
    );
  }

  function knowFilters() {
    if (!ui.kind) return;
    const add = (node, values, label) => {
      const known = new Set([...node.options].map((o) => o.value));
      for (const value of values) {
        if (value && !known.has(value)) {
          node.append(el("option", { value, text: label ? label(value) : value }));
          known.add(value);
        }
      }
    };
    add(ui.kind, events.map((e) => e.kind), (k) => KIND_LABEL[k] || k);
    add(ui.dtu, events.map((e) => e.dtu));
    const status = window.HB.status;
    if (status) add(ui.dtu, (status.dtus || []).map((d) => d.label));
  }

  function filters() {
    return {
      kind: ui.kind.value, level: ui.level.value, dtu: ui.dtu.value,
      words: ui.search.value.trim().toLowerCase(),
    };
  }

  function matches(event, f) {
    if (f.kind && event.kind !== f.kind) return false;
    if (f.level && event.level !== f.level) return false;
    if (f.dtu && event.dtu !== f.dtu) return false;
    if (f.words && !`${event.text} ${event.serial || ""}`.toLowerCase().includes(f.words)) return false;
    return true;
  }

  function when(ts) {
    const today = date(Date.now() / 1000);
    const day = date(ts);
    return day === today ? clock(ts) : `${day} ${clock(ts)}`;
  }

  function row(event) {
    const level = event.level || "info";
    const data = event.data || {};
    return el("li", {
      class: `event level-${level}`, "data-id": event.id, "data-kind": event.kind, "data-level": level,
    },
    el("time", { class: "event-time", datetime: new Date(event.time * 1000).toISOString(), text: when(event.time) }),
    el("span", { class: "event-tags" },
      badge(level, LEVEL_KIND[level] || ""),
      el("span", { class: "event-kind", text: KIND_LABEL[event.kind] || event.kind }),
      event.dtu ? el("span", { class: "event-dtu", text: event.dtu }) : null,
      event.serial ? el("span", { class: "event-serial", text: event.serial }) : null,
      event.kind === "command" && data.status
        ? badge(data.status, { ok: "ok", pending: "warn" }[data.status] || "error") : null),
    el("span", { class: "event-text", text: event.text }),
    );
  }

  function render() {
    if (!ui.list) return;
    knowFilters();
    const f = filters();
    const rows = [];
    for (let i = events.length - 1; i >= 0; i -= 1) {
      if (matches(events[i], f)) rows.push(row(events[i]));
    }
    if (!rows.length) {
      rows.push(el("li", { class: "events-empty muted",
        text: loaded ? "No event matches the filters." : "Loading the event log…" }));
    }
    ui.list.replaceChildren(...rows);
    count();
  }

  function count() {
    if (!ui.status) return;
    const shownRows = ui.list.querySelectorAll("li.event").length;
    ui.status.textContent = `${shownRows} of ${events.length} events`;
  }

  window.HB.on("open", load); // (re)connected: catch up with what happened meanwhile
  window.HB.on("event", onEvent);
  window.HB.page("events", {
    init(root) {
      build(root);
      render();
    },
    show() {
      if (!loaded) load();
    },
  });
})();
