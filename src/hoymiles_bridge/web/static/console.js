// Hoymiles DTU Bridge web UI: the command console page.
//
// Reads: any read request of api/commands goes to the chosen DTU (api/read) and
// the reply is shown decoded, like a frame of the inspector. Controls: limits,
// on/off, restart, DTU reboot and performance mode go through api/command, the
// same validation and pacing as MQTT, and only after an explicit confirmation;
// so do a battery's EMS mode, power setpoint and the commands its firmware offers.
// The checks made here are for the form; the bridge's answer is authoritative.
"use strict";

(() => {
  const { el, get, post, badge, frameSummary, frameDetail } = window.HB;

  const OUTCOME_KIND = { ok: "ok", pending: "warn", failed: "error", refused: "error" };

  let root = null;
  let shown = false;
  let catalogue = null; // the body of api/commands
  let loading = null;
  let pending = null; // the command waiting for its confirmation
  const ui = {}; // the page's elements, built once in init

  const command = (key) => (catalogue ? catalogue.commands.find((c) => c.key === key) : null);
  const dtus = () => (catalogue ? catalogue.dtus : []);
  const chosenDtu = () => dtus().find((d) => d.label === ui.dtu.value) || null;
  function chosenInverter() {
    const dtu = chosenDtu();
    return dtu ? dtu.inverters.find((i) => i.serial === ui.inverter.value) || null : null;
  }
  const batteries = () => (catalogue && catalogue.batteries) || [];
  const chosenBattery = () => batteries().find((b) => b.dev_id === ui.battery.value) || null;
  const offered = (owner, key) => (owner ? owner.commands.find((c) => c.key === key) || null : null);
  const formatNumber = (n) => (Number.isInteger(n) ? String(n) : String(Number(n.toFixed(3))));

  // --- building the page ------------------------------------------------------------
  function select(id, label) {
    const node = el("select", { id });
    return [node, el("label", {}, label, node)];
  }

  function build() {
    const [dtu, dtuLabel] = select("console-dtu", "DTU");
    const [request, requestLabel] = select("console-request", "Read request");
    const [inverter, inverterLabel] = select("console-inverter", "Inverter");
    const [limitKind, limitKindLabel] = select("console-limit-kind", "Limit");
    const [battery, batteryLabel] = select("console-battery", "Battery");
    Object.assign(ui, { dtu, request, inverter, limitKind, battery });
    ui.batteryControls = el("div", { class: "console-battery-controls" });
    ui.batteryCard = el("div", { class: "card console-battery", hidden: true },
      el("h3", { text: "Battery" }),
      el("p", { class: "muted console-intro", text: "Power setpoint: + discharges, − charges. "
        + "The bridge switches the EMS mode to mqtt_ctrl and keeps the setpoint alive." }),
      el("div", { class: "console-row" }, batteryLabel),
      ui.batteryControls);
    ui.dtuState = el("span", { class: "console-dtu-state" });
    ui.requestInfo = el("p", { class: "muted console-request-info" });
    ui.readResult = el("div", { id: "console-read-result", class: "console-result", "aria-live": "polite" });
    ui.limitValue = el("input", {
      id: "console-limit-value", type: "number", inputmode: "decimal", required: true,
      "aria-describedby": "console-limit-hint",
    });
    ui.limitUnit = el("span", { class: "console-unit" });
    ui.limitHint = el("p", { id: "console-limit-hint", class: "muted console-hint" });
    ui.limitError = el("p", { class: "error-text console-form-error", hidden: true });
    ui.inverterButtons = el("div", { class: "console-buttons" });
    ui.dtuButtons = el("div", { class: "console-buttons" });
    ui.outcome = el("div", { id: "console-outcome", class: "console-outcome", "aria-live": "polite" });
    ui.send = el("button", { id: "console-send", type: "submit", class: "button", text: "Send" });
    ui.setLimit = el("button", { id: "console-set-limit", type: "submit", class: "button", text: "Set limit…" });
    ui.noInverter = el("p", { class: "muted console-no-inverter", hidden: true,
      text: "This DTU has reported no inverter yet." });
    ui.limitForm = el("form", { id: "console-limit-form", class: "console-row", autocomplete: "off",
      novalidate: true, onsubmit: askLimit },
    limitKindLabel,
    el("label", {}, "Value", el("span", { class: "console-value" }, ui.limitValue, ui.limitUnit)),
    ui.setLimit);

    ui.dialogText = el("p", { class: "console-confirm-text" });
    ui.dialogBody = el("pre", { class: "console-confirm-body" });
    ui.dialogNote = el("p", { class: "muted console-confirm-note" });
    ui.confirm = el("button", { type: "button", class: "button console-confirm-yes", text: "Confirm",
      onclick: () => ui.dialog.close("confirm") });
    ui.cancel = el("button", { type: "button", class: "button secondary console-confirm-no", text: "Cancel",
      onclick: () => ui.dialog.close("cancel") });
    ui.dialog = el("dialog", { id: "console-confirm", class: "console-dialog", "aria-labelledby": "console-confirm-title",
      onclose: onDialogClose },
    el("h3", { id: "console-confirm-title", text: "Send this command?" }),
    ui.dialogText, ui.dialogBody, ui.dialogNote,
    el("div", { class: "console-confirm-actions" }, ui.cancel, ui.confirm));

    root.replaceChildren(
      el("div", { class: "card console-target" },
        el("div", { class: "console-row" }, dtuLabel, ui.dtuState),
        el("p", { class: "muted console-load-error", hidden: true })),
      el("div", { class: "console-grid" },
        el("div", { class: "card console-read" },
          el("h3", { text: "Read from the DTU" }),
          el("form", { id: "console-read-form", class: "console-row", autocomplete: "off", onsubmit: read },
            requestLabel, ui.send),
          ui.requestInfo,
          ui.readResult),
        el("div", { class: "card console-control" },
          el("h3", { text: "Control" }),
          el("p", { class: "muted console-intro", text: "Every command asks for confirmation first, then goes "
            + "through the same checks and limit pacing as an MQTT command." }),
          el("div", { class: "console-row" }, inverterLabel),
          ui.noInverter,
          ui.limitForm, ui.limitHint, ui.limitError,
          ui.inverterButtons,
          el("h4", { text: "DTU" }),
          ui.dtuButtons,
          ui.outcome)),
      ui.batteryCard,
      ui.dialog,
    );
    ui.loadError = root.querySelector(".console-load-error");
    dtu.addEventListener("change", () => { renderDtu(); ui.readResult.replaceChildren(); });
    request.addEventListener("change", describeRequest);
    inverter.addEventListener("change", renderInverter);
    limitKind.addEventListener("change", renderLimit);
    battery.addEventListener("change", renderBattery);
    ui.limitValue.addEventListener("input", () => { ui.limitError.hidden = true; });
  }

  // "Garage (116112345678, HM-1500)", or "116112345678 (HM-1500)" without a name.
  const inverterText = (i) => (i.name
    ? `${i.name} (${i.serial}${i.model ? `, ${i.model}` : ""})`
    : `${i.serial}${i.model ? ` (${i.model})` : ""}`);

  function fill(node, options, keep) {
    const before = keep ? node.value : null;
    node.replaceChildren(...options.map(([value, text]) => el("option", { value, text })));
    if (before !== null && options.some(([value]) => value === before)) node.value = before;
    node.disabled = options.length === 0;
  }

  function render() {
    if (!catalogue) return;
    // A named DTU's label is its name: show its serial beside it once known.
    fill(ui.dtu, dtus().map((d) => [d.label, d.name && d.serial ? `${d.name} (${d.serial})` : d.label]), true);
    fill(ui.request, catalogue.reads.map((r) => [r.name, `${r.name} – ${r.title}`]), true);
    if (!ui.request.dataset.chosen) {
      // RealDataNew is what the bridge polls: the most useful first read.
      const first = catalogue.reads.find((r) => r.name === "RealDataNewToDtu");
      if (first) ui.request.value = first.name;
      ui.request.dataset.chosen = "1";
    }
    describeRequest();
    renderDtu();
    renderBatteries();
  }

  // --- batteries ------------------------------------------------------------------
  function renderBatteries() {
    const list = batteries();
    ui.batteryCard.hidden = list.length === 0;
    fill(ui.battery, list.map((b) => [b.dev_id, b.name === b.dev_id ? b.dev_id : `${b.name} (${b.dev_id})`]), true);
    renderBattery();
  }

  function renderBattery() {
    const battery = chosenBattery();
    ui.batteryControls.replaceChildren(...(battery ? battery.commands : []).map(batteryControl));
  }

  function batteryControl(entry) {
    const button = (text, onclick) => el("button", {
      type: onclick ? "button" : "submit", class: `button${entry.danger ? " console-danger" : ""}`,
      text, onclick,
    });
    if (entry.kind === "choice") {
      const input = el("select", { "data-command": entry.command },
        ...entry.choices.map((c) => el("option", { value: c, text: c })));
      return el("form", { class: "console-row", autocomplete: "off",
        onsubmit: (event) => { event.preventDefault(); askBattery(entry, input.value); } },
      el("label", {}, entry.label, input), button(`Set ${entry.label}…`));
    }
    if (entry.kind === "number") {
      const input = el("input", { type: "number", inputmode: "decimal", "data-command": entry.command,
        min: entry.min, max: entry.max, step: entry.step, required: true });
      const error = el("p", { class: "error-text console-form-error", hidden: true });
      input.addEventListener("input", () => { error.hidden = true; });
      const submit = (event) => {
        event.preventDefault();
        const text = input.value.trim();
        const value = Number(text);
        if (text === "" || !Number.isFinite(value) || value < entry.min || value > entry.max) {
          error.textContent = `Enter a number from ${formatNumber(entry.min)} to ${formatNumber(entry.max)} ${entry.unit || ""}.`;
          error.hidden = false;
          input.focus();
          return;
        }
        askBattery(entry, value);
      };
      return el("form", { class: "console-row", autocomplete: "off", novalidate: true, onsubmit: submit },
        el("label", {}, entry.label, el("span", { class: "console-value" }, input,
          el("span", { class: "console-unit", text: entry.unit || "" }))),
        button(`Set ${entry.label}…`), error);
    }
    if (entry.kind === "switch") {
      return el("div", { class: "console-buttons", "data-command": entry.command },
        button(`${entry.label}: on…`, () => askBattery(entry, 1)),
        button(`${entry.label}: off…`, () => askBattery(entry, 0)));
    }
    return el("div", { class: "console-buttons", "data-command": entry.command },
      button(`${entry.label}…`, () => askBattery(entry, entry.payload)));
  }

  function askBattery(entry, value) {
    const battery = chosenBattery();
    if (!battery) return;
    pending = { command: entry.command, serial: battery.dev_id, value };
    ui.dialogText.textContent = `Set “${entry.label}” to ${describe(entry, value)} on battery ${battery.name}.`;
    ui.dialogBody.textContent = `POST api/command\n${JSON.stringify(pending, null, 2)}`;
    let note = entry.confirm || "";
    if (entry.command === "setpoint") {
      note = "The bridge switches the EMS mode to mqtt_ctrl and re-sends the setpoint until "
        + "another mode is chosen; stopping the bridge sends 0 W.";
    }
    ui.dialogNote.textContent = note;
    ui.dialogNote.hidden = !note;
    ui.dialog.returnValue = "";
    ui.dialog.showModal();
    ui.cancel.focus();
  }

  function describeRequest() {
    const entry = catalogue && catalogue.reads.find((r) => r.name === ui.request.value);
    ui.requestInfo.textContent = entry
      ? `${entry.description} Tag ${entry.tag}, answered by ${entry.reply || "?"} (${entry.reply_tag || "?"}).`
      : "";
  }

  function renderDtu() {
    const dtu = chosenDtu();
    ui.send.disabled = !dtu;
    ui.dtuState.replaceChildren(...(dtu ? [badge(dtu.state, dtu.available ? "ok" : "warn"),
      dtu.serial ? ` serial ${dtu.serial}` : ""] : [el("span", { class: "muted", text: "No DTU is known yet." })]));
    const inverters = dtu ? dtu.inverters : [];
    fill(ui.inverter, inverters.map((i) => [i.serial, inverterText(i)]), true);
    ui.dtuButtons.replaceChildren(...(dtu ? dtu.commands : []).map((offer) => pressButton(offer, "dtu")));
    renderInverter();
  }

  function renderInverter() {
    const inverter = chosenInverter();
    ui.noInverter.hidden = Boolean(inverter) || !chosenDtu();
    ui.limitForm.hidden = !inverter;
    ui.limitHint.hidden = !inverter;
    ui.limitError.hidden = true;
    const limits = inverter ? inverter.commands.filter((o) => "min" in o) : [];
    fill(ui.limitKind, limits.map((o) => {
      const entry = command(o.key);
      return [o.key, entry ? entry.label : o.key];
    }), true);
    const presses = inverter ? inverter.commands.filter((o) => !("min" in o)) : [];
    ui.inverterButtons.replaceChildren(...presses.map((offer) => pressButton(offer, "inverter")));
    renderLimit();
  }

  function renderLimit() {
    const inverter = chosenInverter();
    const offer = offered(inverter, ui.limitKind.value);
    const entry = offer ? command(offer.key) : null;
    if (!offer || !entry) {
      ui.setLimit.disabled = true;
      ui.limitHint.textContent = "";
      ui.limitUnit.textContent = "";
      return;
    }
    ui.setLimit.disabled = false;
    ui.limitValue.min = offer.min;
    ui.limitValue.max = offer.max;
    ui.limitValue.step = offer.step;
    ui.limitUnit.textContent = entry.unit || "";
    const applied = inverter.limit_applied === null || inverter.limit_applied === undefined
      ? "" : ` Applied now: ${formatNumber(inverter.limit_applied)} %.`;
    const kind = entry.persistent
      ? "Persistent: the inverter keeps it after a restart."
      : "Non-persistent: lost when the inverter restarts.";
    ui.limitHint.textContent = `${formatNumber(offer.min)} to ${formatNumber(offer.max)} ${entry.unit || ""}. ${kind}${applied}`;
  }

  function pressButton(offer, target) {
    const entry = command(offer.key);
    if (!entry) return null;
    return el("button", {
      type: "button", class: `button secondary console-press${entry.danger ? " console-danger" : ""}`,
      "data-command": offer.key, text: `${entry.label}…`,
      onclick: () => ask(entry, target, entry.payload),
    });
  }

  // --- loading --------------------------------------------------------------------
  async function load() {
    if (loading) return loading;
    loading = (async () => {
      const { ok, body } = await get("api/commands");
      loading = null;
      if (!ok || !body) {
        ui.loadError.hidden = false;
        ui.loadError.textContent = (body && body.error) || "The console could not load what it can send.";
        return;
      }
      ui.loadError.hidden = true;
      catalogue = body;
      render();
    })();
    return loading;
  }

  // The catalogue lists the devices the bridge knew when it was loaded: fetch it
  // again when the live state names a DTU or an inverter it does not know yet.
  function onState(status) {
    if (!shown || !catalogue || loading) return;
    const known = new Set(dtus().flatMap((d) => [`d:${d.label}:${d.serial}`, ...d.inverters.map((i) => `i:${i.serial}`)]));
    batteries().forEach((b) => known.add(`b:${b.dev_id}:${b.commands.length}`));
    const now = (status.dtus || []).flatMap((d) => [`d:${d.label}:${d.serial}`,
      ...(d.inverters || []).map((i) => `i:${i.serial}`)]);
    // a new battery, or one whose role or advertised commands became known
    (status.batteries || []).forEach((b) => now.push(`b:${b.dev_id}:${(b.commands || []).length}`));
    if (now.some((key) => !known.has(key))) load();
  }

  // --- reads ----------------------------------------------------------------------
  async function read(event) {
    event.preventDefault();
    const dtu = chosenDtu();
    const name = ui.request.value;
    if (!dtu || !name) return;
    ui.send.disabled = true;
    ui.readResult.replaceChildren(el("p", { class: "muted", text: `Sending ${name} to ${dtu.label}…` }));
    const { ok, body } = await post("api/read", { request: name, dtu: dtu.label });
    ui.send.disabled = false;
    if (!ok || !body || body.error) {
      ui.readResult.replaceChildren(el("p", { class: "error-text console-error",
        text: sentence((body && body.error) || "The bridge sent no answer.") }));
      return;
    }
    ui.readResult.replaceChildren(el("div", { class: "decoded console-reply" },
      frameSummary(body), frameDetail(body)));
  }

  // --- commands -------------------------------------------------------------------
  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "";
    const first = t.charAt(0).toUpperCase() + t.slice(1);
    return /[.!?]$/.test(first) ? first : `${first}.`;
  }

  function askLimit(event) {
    event.preventDefault();
    const inverter = chosenInverter();
    const offer = offered(inverter, ui.limitKind.value);
    const entry = offer ? command(offer.key) : null;
    if (!offer || !entry) return;
    const text = ui.limitValue.value.trim();
    const value = Number(text);
    let problem = null;
    if (text === "" || !Number.isFinite(value)) problem = "Enter the limit as a number.";
    else if (value < offer.min || value > offer.max) {
      problem = `The limit must be between ${formatNumber(offer.min)} and ${formatNumber(offer.max)} ${entry.unit || ""}.`;
    }
    if (problem) {
      ui.limitError.textContent = problem;
      ui.limitError.hidden = false;
      ui.limitValue.focus();
      return;
    }
    ask(entry, "inverter", value);
  }

  function describe(entry, value) {
    if (entry.kind === "number") return `${formatNumber(value)} ${entry.unit || ""}`.trim();
    if (entry.kind === "switch") return value ? "on" : "off";
    return String(value);
  }

  function ask(entry, target, value) {
    const dtu = chosenDtu();
    if (!dtu) return;
    const body = { command: entry.command, dtu: dtu.label, value };
    let device;
    if (target === "inverter") {
      const inverter = chosenInverter();
      if (!inverter) return;
      body.serial = inverter.serial;
      device = `inverter ${inverterText(inverter)} on DTU ${dtu.label}`;
    } else {
      device = `DTU ${dtu.label}${dtu.serial ? ` (serial ${dtu.serial})` : ""}`;
    }
    pending = body;
    ui.dialogText.textContent = entry.kind === "number"
      ? `Set “${entry.label}” to ${describe(entry, value)} on ${device}.`
      : `${entry.label}: send “${entry.command}” = ${value} to ${device}.`;
    ui.dialogBody.textContent = `POST api/command\n${JSON.stringify(body, null, 2)}`;
    // what the command registry says to confirm (danger flag and text)
    let note = entry.confirm || "";
    if (entry.kind === "number" && catalogue.limit_interval) {
      note = `Limits are written at most every ${catalogue.limit_interval} s; a faster change waits (pending).`;
    }
    ui.dialogNote.textContent = note;
    ui.dialogNote.hidden = !note;
    ui.dialog.returnValue = "";
    ui.dialog.showModal();
    ui.cancel.focus();
  }

  async function onDialogClose() {
    const body = pending;
    pending = null;
    if (ui.dialog.returnValue !== "confirm" || !body) {
      showOutcome(null, "Cancelled: nothing was sent.", "cancelled");
      return;
    }
    const what = `${body.command} ${typeof body.value === "number" ? formatNumber(body.value) : body.value}`;
    showOutcome("sending", `Sending ${what}…`, "sending");
    const response = await post("api/command", body);
    const answer = response.body || {};
    const status = answer.status || (response.ok ? "ok" : "failed");
    let text = answer.message || answer.error || "";
    if (!text) text = status === "ok" ? "The DTU took the command." : "The bridge gave no reason.";
    showOutcome(status, `${what} for ${body.serial || `DTU ${body.dtu}`}: ${sentence(text)}`, status);
    if (status === "ok" || status === "pending") load(); // the applied limit moved
  }

  function showOutcome(status, text, kind) {
    ui.outcome.dataset.status = kind;
    ui.outcome.replaceChildren(
      status && status !== "sending" ? badge(status, OUTCOME_KIND[status] || "") : null,
      el("span", { class: `console-outcome-text${status === "failed" || status === "refused" ? " error-text" : ""}`, text: ` ${text}` }),
    );
  }

  window.HB.on("state", onState);
  window.HB.page("console", {
    init(section) {
      root = section;
      build();
    },
    show() {
      shown = true;
      load();
    },
    hide() {
      shown = false;
    },
  });
})();
