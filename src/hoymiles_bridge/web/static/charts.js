// Hoymiles DTU Bridge web UI: the charts page.
//
// Three cards, drawn with our own chart.js (window.HBChart):
// * power per inverter, per battery (+ discharging) and in total from the bridge's
//   in-memory history, and the batteries' SOC in a card of its own
//   (api/history), today or the last 24 h, kept live while the page is shown:
//   every state push asks for the points newer than the ones we have
//   (api/history?since=), at most once every few seconds;
// * each DTU's own power curve for today (api/history/dtu, cached by the bridge);
// * the daily yields the bridge saw (per local day, per inverter).
"use strict";

(() => {
  const { el, get, num, date, duration } = window.HB;
  const { TimeChart, BarChart } = window.HBChart;

  const REFRESH_MS = 3000; // at most one api/history request per this while shown
  const OVERLAP_S = 120; // ask a little further back: DTUs report out of order
  const DAY_S = 86400;

  let built = false;
  let shown = false;
  const state = {
    series: new Map(), // key ("total" or serial) -> [[t, W], ...]
    names: {},
    dtus: [],
    daily: [],
    pointsMax: 0,
    persistent: false,
    loaded: false,
    range: "today",
  };
  const ui = {};
  const dtuCards = new Map(); // label -> {card, chart, meta, empty, loading}

  // Serials in a stable order, "total" first: the colours stay put between updates.
  // A battery's SOC ("soc:<dev_id>") is in % and has a chart of its own.
  const isSoc = (key) => key.startsWith("soc:");
  function keys() {
    const serials = [...state.series.keys()].filter((k) => k !== "total" && !isSoc(k)).sort();
    return state.series.has("total") ? ["total", ...serials] : serials;
  }
  const socKeys = () => [...state.series.keys()].filter(isSoc).sort();
  const colorOf = (key) => (key === "total" ? 0 : 1 + [...state.series.keys()]
    .filter((k) => k !== "total").sort().indexOf(key));
  const nameOf = (key) => (key === "total" ? "Total" : state.names[key] || key);

  // A pause longer than this breaks the line (night, an unreachable DTU).
  function gap() {
    const intervals = ((window.HB.status || {}).dtus || []).map((d) => d.interval || 0);
    return Math.max(600, 5 * Math.max(0, ...intervals));
  }

  function localMidnight(t) {
    const d = new Date(t * 1000);
    return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 1000;
  }

  // --- power from the bridge's history ------------------------------------------------

  function latest() {
    let newest = -Infinity;
    for (const points of state.series.values()) {
      if (points.length) newest = Math.max(newest, points[points.length - 1][0]);
    }
    return newest;
  }

  // Add what api/history answered: only points newer than each series' last one.
  function merge(body) {
    state.names = { ...state.names, ...(body.names || {}) };
    state.dtus = body.dtus || state.dtus;
    state.daily = body.daily || state.daily;
    state.pointsMax = body.points_max || state.pointsMax;
    state.persistent = Boolean(body.persistent);
    for (const [key, points] of Object.entries(body.series || {})) {
      let mine = state.series.get(key);
      if (!mine) {
        mine = [];
        state.series.set(key, mine);
      }
      const last = mine.length ? mine[mine.length - 1][0] : -Infinity;
      for (const point of points) if (point[0] > last) mine.push(point);
      if (state.pointsMax && mine.length > state.pointsMax) mine.splice(0, mine.length - state.pointsMax);
    }
  }

  function drawPower() {
    const list = keys().map((key) => ({
      key, label: nameOf(key), data: state.series.get(key), color: colorOf(key),
      width: key === "total" ? 2.5 : 1.5,
    }));
    const newest = latest();
    const any = Number.isFinite(newest);
    ui.powerEmpty.hidden = any;
    ui.powerEmpty.textContent = state.loaded
      ? "No power readings yet: the chart fills with every poll after the bridge started."
      : "Loading…";
    ui.power.root.hidden = !any;
    ui.power.options.gap = gap();
    const from = state.range === "today" ? localMidnight(newest) : newest - DAY_S;
    ui.power.setRange(any ? from : undefined, undefined);
    ui.power.setSeries(list);
    const socs = socKeys().map((key) => ({
      key, label: nameOf(key), data: state.series.get(key), color: colorOf(key), width: 1.5,
    }));
    ui.socCard.hidden = socs.length === 0;
    if (socs.length) {
      ui.soc.options.gap = gap();
      ui.soc.setRange(any ? from : undefined, undefined);
      ui.soc.setSeries(socs);
    }
    const buffered = state.series.get("total") || [];
    ui.powerNote.textContent = any
      ? `${num(buffered.length, 0)} points kept in memory (at most ${num(state.pointsMax, 0)}, about a day); `
        + `last at ${new Date(newest * 1000).toLocaleTimeString("en-GB")}.`
      : "";
  }

  // --- daily yields -------------------------------------------------------------------

  function drawDaily() {
    const days = state.daily || [];
    ui.dailyEmpty.hidden = days.length > 0;
    ui.daily.root.hidden = days.length === 0;
    const serials = [...new Set(days.flatMap((d) => Object.keys(d.inverters || {})))].sort();
    ui.daily.setData(days.map((d) => d.date.slice(5)), serials.map((serial) => ({
      key: serial, label: nameOf(serial), color: colorOf(serial) > 0 ? colorOf(serial) : 1 + serials.indexOf(serial),
      values: days.map((d) => (d.inverters || {})[serial] ?? null),
    })));
    const today = days[days.length - 1];
    ui.dailyNote.textContent = today
      ? `${today.date}: ${num(today.total, 0)} Wh so far · ${days.length} day(s) shown (at most 31); `
        + (state.persistent ? "the bridge keeps them across restarts."
          : "kept in memory since the bridge started.")
      : "";
  }

  // --- the DTU's own history ----------------------------------------------------------

  const every = (s) => (s % 60 ? duration(s) : `${s / 60} min`);

  function dtuCard(dtu) {
    let entry = dtuCards.get(dtu.label);
    if (entry) return entry;
    const holder = el("div", { class: "chart-holder" });
    const empty = el("p", { class: "muted chart-empty", text: "Not asked yet." });
    const meta = el("p", { class: "muted chart-note" });
    const button = el("button", {
      type: "button", class: "button secondary", text: "Ask the DTU",
      onclick: () => loadDtu(dtu.label, true),
    });
    const card = el("div", { class: "card chart-card dtu-history", "data-dtu": dtu.label },
      el("div", { class: "card-head" },
        el("h3", { text: `DTU history: ${dtu.name || dtu.label}` }), button),
      el("p", { class: "muted chart-note",
        text: "The DTU's own record of today's power, every few minutes. "
          + "The bridge reuses an answer for 3 minutes." }),
      empty, holder, meta);
    const chart = new TimeChart(holder, { unit: "W", height: 220, label: `${dtu.label} history power`, gap: 1800 });
    chart.root.hidden = true;
    entry = { card, chart, meta, empty, button, loading: false, loaded: false };
    dtuCards.set(dtu.label, entry);
    ui.dtuList.append(card);
    return entry;
  }

  async function loadDtu(label, manual) {
    const entry = dtuCards.get(label);
    if (!entry || entry.loading || (entry.loaded && !manual)) return;
    entry.loading = true;
    entry.button.disabled = true;
    entry.empty.hidden = false;
    entry.empty.textContent = "Asking the DTU…";
    const r = await get(`api/history/dtu?dtu=${encodeURIComponent(label)}`);
    entry.loading = false;
    entry.button.disabled = false;
    if (!r.ok) {
      entry.empty.textContent = r.body && r.body.error ? r.body.error : "The DTU's history is not available.";
      entry.empty.classList.add("error-text");
      return;
    }
    entry.loaded = true;
    entry.empty.classList.remove("error-text");
    const body = r.body;
    const points = body.points || [];
    entry.empty.hidden = points.length > 0;
    entry.empty.textContent = "The DTU has no power history for today yet.";
    entry.chart.root.hidden = points.length === 0;
    entry.chart.setSeries([{ key: "dtu", label: `${body.name || label} (DTU)`, data: points, color: 0, width: 2 }]);
    const age = body.cached ? `, answer from ${duration(body.age_s)} ago` : "";
    entry.meta.textContent = points.length
      ? `${points.length} samples every ${every(body.step_seconds)} from ${date(body.start)} `
        + `${new Date(body.start * 1000).toLocaleTimeString("en-GB")}; `
        + `today ${num(body.energy_daily, 0)} Wh${age}.`
      : "";
  }

  function syncDtus() {
    const labels = new Set(state.dtus.map((d) => d.label));
    for (const dtu of state.dtus) dtuCard(dtu);
    for (const [label, entry] of dtuCards) {
      if (!labels.has(label)) {
        entry.chart.destroy();
        entry.card.remove();
        dtuCards.delete(label);
      }
    }
    ui.dtuEmpty.hidden = state.dtus.length > 0;
    if (shown) for (const label of dtuCards.keys()) loadDtu(label, false);
  }

  // --- fetching -------------------------------------------------------------------------

  let inFlight = false;
  let lastFetch = 0;
  let timer = 0;

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    lastFetch = Date.now();
    const newest = latest();
    const since = state.loaded && Number.isFinite(newest) ? `?since=${newest - OVERLAP_S}` : "";
    const r = await get(`api/history${since}`);
    inFlight = false;
    if (!r.ok || !r.body) {
      ui.powerEmpty.hidden = false;
      ui.powerEmpty.textContent = (r.body && r.body.error) || "The bridge's history is not available.";
      return;
    }
    merge(r.body);
    state.loaded = true;
    drawPower();
    drawDaily();
    syncDtus();
  }

  // Called on every state push: refresh now, or once the pause is over.
  function soon() {
    if (!shown || timer) return;
    const wait = Math.max(0, lastFetch + REFRESH_MS - Date.now());
    timer = setTimeout(() => {
      timer = 0;
      if (shown) refresh();
    }, wait);
  }

  // --- the page -------------------------------------------------------------------------

  function rangeButton(value, text) {
    return el("button", {
      type: "button", class: "seg", "data-range": value, "aria-pressed": String(state.range === value), text,
      onclick: () => {
        state.range = value;
        for (const b of ui.rangeButtons.querySelectorAll("button")) {
          b.setAttribute("aria-pressed", String(b.dataset.range === value));
        }
        drawPower();
      },
    });
  }

  function build(root) {
    ui.rangeButtons = el("div", { class: "segmented", role: "group", "aria-label": "Time range" },
      rangeButton("today", "Today"), rangeButton("24h", "Last 24 h"));
    const powerHolder = el("div", { class: "chart-holder" });
    ui.powerEmpty = el("p", { class: "muted chart-empty", text: "Loading…" });
    ui.powerNote = el("p", { class: "muted chart-note" });
    const powerCard = el("div", { id: "chart-power", class: "card chart-card" },
      el("div", { class: "card-head" }, el("h3", { text: "Power" }), ui.rangeButtons),
      ui.powerEmpty, powerHolder, ui.powerNote);

    ui.dtuList = el("div", { class: "dtu-histories" });
    ui.dtuEmpty = el("div", { class: "card muted", text: "No DTU configured." });
    ui.dtuEmpty.hidden = true;

    const dailyHolder = el("div", { class: "chart-holder" });
    ui.dailyEmpty = el("p", { class: "muted chart-empty",
      text: "No daily yields yet: the bridge records them from its first poll." });
    ui.dailyNote = el("p", { class: "muted chart-note" });
    const dailyCard = el("div", { id: "chart-daily", class: "card chart-card" },
      el("div", { class: "card-head" }, el("h3", { text: "Daily yield" })),
      ui.dailyEmpty, dailyHolder, ui.dailyNote);

    const socHolder = el("div", { class: "chart-holder" });
    ui.socCard = el("div", { id: "chart-soc", class: "card chart-card" },
      el("div", { class: "card-head" }, el("h3", { text: "Battery state of charge" })), socHolder);
    ui.socCard.hidden = true;

    root.append(el("h2", { class: "visually-hidden", text: "Charts" }), powerCard, ui.socCard,
      ui.dtuList, ui.dtuEmpty, dailyCard);
    ui.power = new TimeChart(powerHolder, { unit: "W", height: 280, label: "power per inverter and total" });
    ui.power.root.hidden = true;
    ui.soc = new TimeChart(socHolder, { unit: "%", height: 160, label: "battery state of charge" });
    ui.daily = new BarChart(dailyHolder, { unit: "Wh", height: 220, digits: 0, label: "daily yield per inverter" });
    ui.daily.root.hidden = true;
    built = true;
  }

  window.HB.on("state", soon);

  window.HB.page("charts", {
    init(root) { build(root); },
    show() {
      shown = true;
      if (!built) return;
      clearTimeout(timer);
      timer = 0;
      refresh();
      for (const label of dtuCards.keys()) loadDtu(label, false);
    },
    hide() {
      shown = false;
      clearTimeout(timer);
      timer = 0;
    },
  });
})();
