// Hoymiles DTU Bridge web UI: the configuration page's setup helpers.
//
// "Test connection" on every DTU row asks the address for its app info
// (POST api/setup/test) and shows what answered, before anything is saved.
// "Find DTUs" scans a private range (POST api/setup/scan), shows its progress
// (GET api/setup/scan, polled) and can be cancelled (POST api/setup/scan/cancel);
// "Use" puts a found DTU into the form. This file only adds to the page that
// config.js builds: it finds the DTU rows by their markup and fills their inputs
// as a user would. Everything from a DTU or the user is shown as text, never HTML.
"use strict";

(() => {
  const { $, el, get, post } = window.HB;
  const SCAN_POLL = 250;

  let root = null;
  let card = null;
  const nodes = {};
  let scanTimer = null;
  let suggested = false;

  // --- what a DTU said -----------------------------------------------------------------
  function dtuSummary(info) {
    const inverters = info.inverters || [];
    return el("div", { class: "setup-dtu" },
      el("p", {},
        el("strong", { class: "setup-model", text: info.model || "DTU" }), " ",
        el("span", { class: "setup-serial", text: info.serial || "" }),
        ` · firmware ${info.firmware || "–"} · ${info.encrypted ? "encrypted" : "not encrypted"}`,
        info.source === "bridge" ? " · polled by this bridge" : ""),
      inverters.length
        ? el("ul", { class: "setup-inverters" }, inverters.map((inv) => el("li", {
          text: `${inv.model || "Inverter"} ${inv.serial}${inv.firmware ? ` (firmware ${inv.firmware})` : ""}`,
        })))
        : el("p", { class: "muted", text: "No inverter registered on this DTU." }));
  }

  // --- Test connection on each DTU row ----------------------------------------------------
  function rowInput(row, key) {
    return row.querySelector(`[data-key$=".${key}"] input`);
  }

  async function testRow(row, button, out) {
    const host = rowInput(row, "host").value.trim();
    const portText = rowInput(row, "port").value.trim();
    if (!host) {
      out.replaceChildren(el("p", { class: "failed", text: "Enter the DTU's host first." }));
      return;
    }
    button.disabled = true;
    out.replaceChildren(el("p", { class: "muted", text: `Asking ${host}…` }));
    const r = await post("api/setup/test", { host, port: portText || null });
    button.disabled = false;
    if (r.ok && r.body && r.body.ok) {
      out.replaceChildren(el("p", { class: "ok", text: "Connected:" }), dtuSummary(r.body));
    } else {
      const message = (r.body && r.body.error) || "The bridge did not answer.";
      out.replaceChildren(el("p", { class: "failed", text: message }));
    }
  }

  function decorateRows() {
    for (const row of document.querySelectorAll("#view-config .dtu-row")) {
      if (row.querySelector(":scope > .setup-test")) continue;
      const out = el("div", { class: "setup-result", role: "status", "aria-live": "polite" });
      const button = el("button", { type: "button", class: "button secondary setup-test",
        text: "Test connection" });
      button.addEventListener("click", () => { testRow(row, button, out); });
      row.append(button, out);
    }
  }

  // --- Find DTUs -------------------------------------------------------------------------
  function useFound(found) {
    let rows = [...document.querySelectorAll("#view-config .dtu-row")];
    const taken = rows.find((row) => rowInput(row, "host").value.trim() === found.host);
    let row = taken || rows.find((r) => !rowInput(r, "host").value.trim());
    if (!row) {
      const add = $("config-add-dtu");
      if (!add || add.disabled) return;
      add.click();
      rows = [...document.querySelectorAll("#view-config .dtu-row")];
      row = rows[rows.length - 1];
    }
    for (const [key, value] of [["host", found.host], ["port", String(found.port)]]) {
      const input = rowInput(row, key);
      input.value = value;
      input.dispatchEvent(new Event("input", { bubbles: true }));
    }
    decorateRows();
    rowInput(row, "host").focus();
  }

  function renderScan(scan) {
    const running = scan.state === "running";
    nodes.find.disabled = running;
    nodes.cancel.hidden = !running;
    nodes.progress.hidden = scan.state === "idle";
    nodes.progress.max = scan.total || 1;
    nodes.progress.value = scan.done || 0;
    const found = scan.found || [];
    const counts = `${scan.done || 0} of ${scan.total || 0} addresses`;
    const texts = {
      running: `Scanning ${scan.network}: ${counts}…`,
      done: `Scanned ${scan.network}: ${found.length === 1 ? "1 DTU found"
        : `${found.length || "no"} DTUs found`}.`,
      cancelled: `Cancelled after ${counts}.`,
      failed: `The scan stopped after ${counts}: see the add-on's log.`,
      idle: "",
    };
    nodes.state.textContent = texts[scan.state] || "";
    nodes.found.replaceChildren(...found.map((d) => el("li", { class: "setup-found-dtu",
      "data-host": d.host },
    el("span", { class: "setup-address", text: `${d.host}:${d.port}` }),
    dtuSummary(d),
    el("button", { type: "button", class: "button secondary setup-use", text: "Use",
      "aria-label": `Use the DTU at ${d.host}`, onclick: () => useFound(d) }))));
  }

  async function pollScan() {
    clearTimeout(scanTimer);
    const r = await get("api/setup/scan");
    if (!r.ok || !r.body) {
      nodes.state.textContent = (r.body && r.body.error) || "The bridge did not answer.";
      nodes.find.disabled = false;
      return;
    }
    renderScan(r.body);
    if (r.body.state === "running") scanTimer = setTimeout(pollScan, SCAN_POLL);
  }

  async function startScan(event) {
    event.preventDefault();
    nodes.error.textContent = "";
    const r = await post("api/setup/scan", {
      network: nodes.network.value.trim(), port: nodes.port.value.trim() || null,
    });
    if (!r.ok) {
      nodes.error.textContent = (r.body && r.body.error) || "The bridge did not answer.";
      return;
    }
    renderScan(r.body);
    scanTimer = setTimeout(pollScan, SCAN_POLL);
  }

  async function cancelScan() {
    clearTimeout(scanTimer);
    const r = await post("api/setup/scan/cancel", {});
    if (r.ok && r.body) renderScan(r.body);
  }

  async function suggest() {
    if (suggested) return;
    suggested = true;
    const r = await get("api/setup/network");
    if (!r.ok || !r.body) return;
    if (r.body.suggested && !nodes.network.value) nodes.network.value = r.body.suggested;
    nodes.hint.textContent = r.body.source === "supervisor"
      ? "Suggested from Home Assistant's network settings."
      : (r.body.source === "interfaces" ? "Suggested from this machine's address." : "");
  }

  function build() {
    nodes.network = el("input", { id: "setup-network", type: "text", autocomplete: "off",
      spellcheck: "false", placeholder: "192.168.1.0/24", "aria-describedby": "setup-hint" });
    nodes.port = el("input", { id: "setup-port", type: "text", inputmode: "numeric",
      autocomplete: "off", value: "10081" });
    nodes.find = el("button", { type: "submit", id: "setup-find", class: "button",
      text: "Find DTUs" });
    nodes.cancel = el("button", { type: "button", id: "setup-cancel", class: "button secondary",
      text: "Cancel", hidden: true, onclick: cancelScan });
    nodes.progress = el("progress", { id: "setup-progress", max: "1", value: "0", hidden: true,
      "aria-label": "Scan progress" });
    nodes.state = el("span", { id: "setup-state", role: "status", "aria-live": "polite" });
    nodes.error = el("p", { id: "setup-error", class: "field-error", role: "alert" });
    nodes.hint = el("span", { id: "setup-hint-source" });
    nodes.found = el("ul", { id: "setup-found", class: "setup-found" });
    card = el("div", { class: "card setup-card", id: "setup-card" },
      el("h3", { text: "Find DTUs" }),
      el("p", { class: "muted", id: "setup-hint" },
        "Looks for DTUs in a private range of at most a /24 (254 addresses), 32 at a time. ",
        nodes.hint),
      el("form", { id: "setup-scan-form", class: "setup-scan", onsubmit: startScan },
        el("label", { for: "setup-network", text: "Range" }), nodes.network,
        el("label", { for: "setup-port", text: "Port" }), nodes.port,
        nodes.find, nodes.cancel),
      nodes.error,
      el("div", { class: "setup-progress-line" }, nodes.progress, nodes.state),
      nodes.found);
  }

  function attach() {
    const form = $("config-form");
    if (!form || card.isConnected) return;
    form.before(card);
  }

  document.addEventListener("DOMContentLoaded", () => {
    root = $("view-config");
    if (!root || document.body.dataset.api !== "1") return;
    build();
    new MutationObserver(() => { attach(); decorateRows(); })
      .observe(root, { childList: true, subtree: true });
    attach();
    decorateRows();
    window.addEventListener("hashchange", () => {
      if (location.hash === "#config") suggest();
    });
    if (location.hash === "#config") suggest();
  });
})();
