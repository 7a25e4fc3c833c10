// Hoymiles DTU Bridge web UI: the overview page (DTUs, inverters, batteries, totals, live).
"use strict";

(() => {
  const { $, el, num, unit, clock, relative, badge, fact } = window.HB;

  const STATE_KIND = {
    connected: "ok", connecting: "warn", night: "warn", frozen: "warn",
    displaced: "warn", backoff: "warn", error: "error", disconnected: "error",
  };

  // --- overview ---------------------------------------------------------------------
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
    const portNames = inv.port_names || {};
    // The user's name (the inverters option) is text like any other: never parsed as HTML.
    const title = inv.name || `${inv.model || "Inverter"} ${inv.serial}`;
    return el("div", {
      class: `inverter${stale ? " stale-data" : ""}`, "data-serial": inv.serial,
    },
    el("div", { class: "card-head" },
      el("h4", { class: "inverter-title", text: title }),
      inv.name ? el("span", { class: "muted inverter-id", text: `${inv.model || "Inverter"} ${inv.serial}` }) : null,
      state),
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
        el("td", { class: "port-name", text: portNames[port] || `Port ${port}` }),
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
    // The DTU's name (the dtus option), else its model and serial once known, else host:port.
    const known = dtu.model && dtu.serial ? `${dtu.model} ${dtu.serial}` : "";
    const title = dtu.name || known || dtu.label || dtu.host;
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

  // An MS-A2 / HiBattery unit: SOC, power with its direction, mode, state, today's energy.
  function renderBattery(b) {
    const v = b.values || {};
    const power = typeof v.battery_power === "number" ? v.battery_power : null;
    const direction = power === null ? "" : power > 0.5 ? " (discharging)"
      : power < -0.5 ? " (charging)" : " (idle)";
    return el("div", { class: `card battery${b.available ? "" : " stale"}`, "data-battery": b.dev_id },
      el("div", { class: "card-head" },
        el("h3", { text: b.name || b.dev_id }),
        badge(b.available ? "available" : "unavailable", b.available ? "ok" : "error"),
        b.master === false ? badge("slave", "") : null),
      el("div", { class: `facts${b.available ? "" : " stale-data"}` },
        fact("State of charge", unit(v.soc, 1, "%"), "big"),
        fact("Power", unit(power, 1, "W") + direction, "big power"),
        fact("EMS mode", b.mode || v.ems_mode || "–"),
        fact("State", v.battery_state || "–"),
        fact("Setpoint held", b.setpoint === null || b.setpoint === undefined ? "–" : unit(b.setpoint, 1, "W")),
        fact("Battery temperature", unit(v.battery_temperature, 1, "°C")),
        fact("In today", unit(v.grid_on_ein, 0, "Wh")),
        fact("Out today", unit(v.grid_on_eout, 0, "Wh")),
        fact("Model", b.model || "–"),
        fact("Id", b.dev_id),
      ),
    );
  }

  // Setup mode: no DTU is configured yet, so point to the configuration page.
  function renderFirstDtu() {
    return el("div", { class: "card first-dtu", id: "first-dtu" },
      el("h3", { text: "Add your first DTU" }),
      el("p", { text: "The bridge runs, but it has no DTU to read yet. On the configuration "
        + "page, Find DTUs looks for them in your network and Test connection checks one "
        + "before you save; polling starts as soon as it is saved." }),
      el("a", { class: "button", href: "#config", id: "first-dtu-link",
        text: "Open the configuration" }));
  }

  // The Hoymiles cloud (cloud options): login state, last update, next poll, last error
  // and each station's values. Everything shown is text: never parsed as HTML.
  const LOGIN_KIND = { "logged in": "ok", "login refused": "error", "daily login limit": "warn" };

  function renderCloudStation(station) {
    const stale = !station.available;
    const state = [];
    if (stale) state.push(badge("stale", "stale"));
    if (station.fallback) state.push(badge("local device wins", ""));
    return el("div", { class: `inverter cloud-station${stale ? " stale-data" : ""}`,
      "data-sid": String(station.sid) },
    el("div", { class: "card-head" },
      el("h4", { class: "inverter-title", text: station.name }),
      el("span", { class: "muted inverter-id", text: `Station ${station.sid}` }),
      state),
    el("div", { class: "facts" },
      fact("Battery SOC", unit(station.soc, 0, "%"), "big"),
      fact("PV power", unit(station.pv_power, 0, "W")),
      fact("Battery power", unit(station.battery_power, 0, "W")),
      fact("Grid power", unit(station.grid_power, 0, "W")),
      fact("Load power", unit(station.load_power, 0, "W")),
      fact("Yield today", unit(station.energy_today, 0, "Wh")),
      // the settings as the bridge last wrote them (the cloud is not asked for them)
      station.grid_charge == null ? null
        : fact("Grid charge (set here)", station.grid_charge ? "on" : "off"),
      station.on_grid_power == null ? null
        : fact("On-grid input power (set here)", unit(station.on_grid_power, 0, "W")),
    ));
  }

  function renderCloud(cloud, now) {
    const at = (t) => (t ? `${clock(t)} (${relative(t, now)})` : "–");
    return el("div", { class: "card cloud", id: "cloud-card" },
      el("div", { class: "card-head" },
        el("h3", { text: "Hoymiles cloud" }),
        badge(cloud.login, LOGIN_KIND[cloud.login] || "warn")),
      cloud.last_error ? el("p", { class: "policy cloud-error", text: cloud.last_error }) : null,
      el("div", { class: "facts" },
        fact("Last update", at(cloud.last_update)),
        fact("Next poll", cloud.running ? at(cloud.next_poll) : "stopped"),
        fact("Stations", String((cloud.stations || []).length)),
      ),
      (cloud.stations || []).map(renderCloudStation),
    );
  }

  function renderOverview(status) {
    renderTotals(status);
    const dtus = status.dtus || [];
    let content;
    if (dtus.length) content = dtus.map((d) => renderDtu(d, status.time));
    else if (status.starting) content = [el("div", { class: "card muted", text: "The bridge is starting…" })];
    else content = [renderFirstDtu()];
    if (status.cloud) content.push(renderCloud(status.cloud, status.time));
    content.push(...(status.batteries || []).map(renderBattery));
    $("dtus").replaceChildren(...content);
  }

  window.HB.on("state", renderOverview);
  window.HB.page("overview", {});
})();
