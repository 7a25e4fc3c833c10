// Hoymiles DTU Bridge web UI: the power controller's card on the overview.
//
// Built once (the overview's other cards are rebuilt on every push; a chart must not
// be): the mode as a select that switches it (POST api/controller/mode), the state,
// the grid target and the meter, each actuator's current command, the last actions,
// and the last 15 minutes (grid, battery, PV, target) from api/controller, asked for
// every few seconds while the overview is shown. Everything shown is text.
"use strict";

(() => {
  const { $, el, get, post, fact, unit, badge } = window.HB;
  const MODES = ["off", "monitor", "zero_export", "feed_in_cap"];
  const REFRESH_MS = 3000;
  const STATE_KIND = {
    regulating: "ok", "meter missing": "error", "waiting for meter": "warn", "no meter": "warn", idle: "", off: "",
  };

  const ui = {};
  let timer = null;
  let busy = false;

  function build() {
    const select = el("select", { id: "controller-mode", "aria-label": "Controller mode" },
      MODES.map((m) => el("option", { value: m, text: m })));
    select.addEventListener("change", () => switchMode(select.value));
    ui.select = select;
    ui.state = el("span", { id: "controller-state" });
    ui.facts = el("div", { class: "facts", id: "controller-facts" });
    ui.actuators = el("ul", { class: "controller-actuators", id: "controller-actuators" });
    ui.last = el("ul", { class: "controller-last muted", id: "controller-last" });
    ui.message = el("p", { class: "policy", id: "controller-message" });
    ui.chartBox = el("div", { class: "controller-chart", id: "controller-chart" });
    ui.card = el("div", { class: "card controller", id: "controller-card" },
      el("div", { class: "card-head" },
        el("h3", { text: "Power controller" }),
        el("label", { class: "controller-mode-label" }, "Mode ", select),
        ui.state),
      ui.message, ui.facts, ui.actuators, ui.chartBox, ui.last);
    $("controller").replaceChildren(ui.card);
    ui.chart = new window.HBChart.TimeChart(ui.chartBox, { unit: "W", gap: 30 });
  }

  async function switchMode(mode) {
    ui.message.textContent = `Switching to ${mode}…`;
    const answer = await post("api/controller/mode", { mode });
    ui.message.textContent = answer.ok ? `Mode ${answer.body.mode}.` : answer.body.error;
    refresh();
  }

  function render(status) {
    if (!status || !status.mode) return; // the bridge is (re)starting
    if (!ui.card) build();
    if (document.activeElement !== ui.select) ui.select.value = status.mode;
    ui.card.dataset.mode = status.mode;
    ui.state.replaceChildren(badge(status.state, STATE_KIND[status.state] ?? "warn"));
    const age = status.meter_age == null ? "" : ` (${Math.round(status.meter_age)} s ago)`;
    ui.facts.replaceChildren(
      fact("Grid (meter)", status.grid == null ? "–" : `${unit(status.grid, 0, "W")}${age}`, "big"),
      fact("Target", unit(status.target, 0, "W")),
      fact("Batteries asked", unit(status.battery, 0, "W")),
      fact("Feed-in cap", status.max_feed_in == null ? "none" : unit(status.max_feed_in, 0, "W")),
      fact("Meter topic", status.meter_topic || "none"),
      fact("Actuations", String(status.actuations)),
    );
    const rows = [];
    for (const [id, watts] of Object.entries(status.setpoints || {})) {
      rows.push(el("li", { "data-device": id, text: `battery ${id}: setpoint ${unit(watts, 0, "W")}` }));
    }
    for (const [serial, watts] of Object.entries(status.limits || {})) {
      rows.push(el("li", { "data-device": serial, text: `inverter ${serial}: limit ${unit(watts, 0, "W")} (non-persistent)` }));
    }
    if (!rows.length) rows.push(el("li", { class: "muted", text: "No actuator is driven now." }));
    ui.actuators.replaceChildren(...rows);
    const last = status.last || [];
    const word = status.mode === "monitor" ? "Would do" : "Last";
    ui.last.replaceChildren(...last.slice(0, 6).map((text) => el("li", { text: `${word}: ${text}` })));
    if (status.history) chart(status.history);
  }

  function chart(history) {
    const series = (index) => history.filter((row) => row[index] != null).map((row) => [row[0], row[index]]);
    ui.chart.setSeries([
      { key: "grid", label: "Grid", data: series(1), width: 2 },
      { key: "battery", label: "Battery", data: series(2) },
      { key: "pv", label: "PV", data: series(3) },
      { key: "target", label: "Target", data: series(4) },
    ]);
    ui.chartBox.dataset.points = String(history.length);
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const answer = await get("api/controller");
      if (answer.ok) render(answer.body);
    } finally {
      busy = false;
    }
  }

  function shown(visible) {
    if (visible && !timer) {
      refresh();
      timer = setInterval(refresh, REFRESH_MS);
    } else if (!visible && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  window.HB.on("state", (status) => {
    if (status.controller) {
      render(status.controller);
      shown(window.HB.current === "overview" && !document.hidden);
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (ui.card) shown(window.HB.current === "overview" && !document.hidden);
  });
  window.addEventListener("hashchange", () => {
    if (ui.card) shown((location.hash || "#overview") === "#overview");
  });
})();
