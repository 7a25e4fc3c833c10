// Hoymiles DTU Bridge web UI: the configuration page.
//
// GET api/config gives the stored options (secrets masked), the form's
// description and where the options live. The form checks what the user types
// against the bridge's own schema (POST api/config/validate, debounced) and
// shows each problem under its field; "Save" stores the options (POST
// api/config), and "Restart now" (after an explicit confirmation) applies them
// (POST api/restart). A banner says when saved options wait for a restart.
"use strict";

(() => {
  const { el, get, post } = window.HB;
  const VALIDATE_DELAY = 400;
  const RESTART_POLL = 1000;
  const RESTART_POLLS = 90;

  let root = null;
  let config = null;        // the last GET api/config body
  let fieldNodes = new Map(); // error path -> the field's wrapper
  let lists = new Map();      // list key (dtus) -> {field, rows: [{inputs, node}], list, empty}
  let validateTimer = null;
  let validateSeq = 0;
  let busy = false;
  let dirty = false;          // edited since the last load
  let restartPoll = null;

  const nodes = {};

  // --- values in and out -------------------------------------------------------------
  const idFor = (key) => `cfg-${key.replace(/[^A-Za-z0-9_-]/g, "-")}`;

  function valueAt(options, key) {
    let node = options;
    for (const part of key.split(".")) {
      if (node === null || typeof node !== "object") return undefined;
      node = node[part];
    }
    return node;
  }

  function setAt(options, key, value) {
    const parts = key.split(".");
    let node = options;
    for (const part of parts.slice(0, -1)) {
      if (!node[part] || typeof node[part] !== "object") node[part] = {};
      node = node[part];
    }
    node[parts[parts.length - 1]] = value;
  }

  function readInput(field, input) {
    if (field.kind === "bool") return input.checked;
    const text = input.value;
    if (field.kind === "secret") return text;
    if (text.trim() === "") return field.optional ? null : "";
    if (field.kind === "int" || field.kind === "port") {
      return /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
    }
    return text;
  }

  function readNames(inputs) {
    // Trailing empty names are left out; an empty one between names is sent (and refused).
    const names = inputs.map((input) => input.value);
    while (names.length && names[names.length - 1].trim() === "") names.pop();
    return names;
  }

  function readRow(field, row) {
    const item = {};
    for (const sub of field.fields) {
      item[sub.key] = sub.kind === "names"
        ? readNames(row.inputs[sub.key]) : readInput(sub, row.inputs[sub.key]);
    }
    return item;
  }

  function collect() {
    const options = {};
    for (const field of config.fields) {
      if (field.kind === "list") {
        const list = lists.get(field.key);
        options[field.key] = list ? list.rows.map((row) => readRow(field, row)) : [];
      } else {
        setAt(options, field.key, readInput(field, nodes.inputs.get(field.key)));
      }
    }
    return options;
  }

  // --- building the form -----------------------------------------------------------
  function input(field, value, id) {
    const common = { id, name: id, "aria-describedby": `${id}-help ${id}-error`,
      disabled: !config.can_save };
    let node;
    if (field.kind === "bool") {
      node = el("input", { ...common, type: "checkbox" });
      node.checked = Boolean(value);
    } else if (field.kind === "choice") {
      node = el("select", common,
        (field.choices || []).map((c) => el("option", { value: c, text: c })));
      node.value = value === null || value === undefined ? field.default : String(value);
    } else if (field.kind === "secret") {
      node = el("input", { ...common, type: "password", autocomplete: "new-password",
        placeholder: "not set" });
      node.value = value || "";
    } else if (field.kind === "int" || field.kind === "port") {
      const min = field.kind === "port" ? 1 : field.min;
      const max = field.kind === "port" ? 65535 : field.max;
      node = el("input", { ...common, type: "text", inputmode: "numeric", autocomplete: "off",
        "data-min": min, "data-max": max,
        placeholder: field.optional ? "automatic" : String(field.default ?? "") });
      node.value = value === null || value === undefined ? "" : String(value);
    } else {
      node = el("input", { ...common, type: "text", autocomplete: "off", spellcheck: "false",
        maxlength: field.kind === "text" && field.max ? field.max : undefined,
        placeholder: field.optional ? "empty" : "" });
      node.value = value === null || value === undefined ? "" : String(value);
    }
    node.addEventListener(field.kind === "bool" || field.kind === "choice" ? "change" : "input",
      scheduleValidate);
    return node;
  }

  function range(field) {
    if (field.kind === "port") return "1–65535";
    if (field.kind !== "int") return "";
    if (field.min !== undefined && field.max !== undefined) return `${field.min}–${field.max}`;
    if (field.min !== undefined) return `at least ${field.min}`;
    return "";
  }

  function fieldBox(field, value, key, id) {
    const control = input(field, value, id);
    const bits = [field.help, range(field)].filter(Boolean).join(" · ");
    const box = el("div", { class: `field field-${field.kind}`, "data-key": key },
      field.kind === "bool"
        ? el("label", { class: "check", for: id }, control, el("span", { text: field.label }))
        : [el("label", { for: id, text: field.label }), control],
      el("p", { class: "help", id: `${id}-help`, text: bits }),
      el("p", { class: "field-error", id: `${id}-error`, role: "alert" }));
    fieldNodes.set(key, box);
    return { box, control };
  }

  // A list option (dtus, inverters): one row of fields per item, "Add" and "Remove".
  const slugOf = (field) => (field.item || field.key).toLowerCase().replace(/[^a-z0-9]+/g, "-");

  function namesBox(sub, values, key, id) {
    // A list of names (PV ports): one small text field per name, up to sub.count.
    const inputs = [];
    const cells = [];
    for (let i = 0; i < (sub.count || 1); i += 1) {
      const one = { kind: "text", label: `Port ${i + 1}`, help: "", optional: true, max: sub.max };
      const { box, control } = fieldBox(one, (values || [])[i], `${key}[${i}]`, `${id}-${i}`);
      inputs.push(control);
      cells.push(box);
    }
    const box = el("div", { class: "field names-field", "data-key": key, "data-group": "" },
      el("span", { class: "names-label", text: sub.label }),
      el("div", { class: "names-grid" }, cells),
      el("p", { class: "help", text: sub.help || "" }),
      el("p", { class: "field-error", id: `${id}-error`, role: "alert" }));
    fieldNodes.set(key, box);
    return { box, inputs };
  }

  function listRow(field, item) {
    const list = lists.get(field.key);
    const index = list.rows.length;
    const slug = slugOf(field);
    const row = { inputs: {}, node: null };
    const cells = field.fields.map((sub) => {
      const key = `${field.key}[${index}].${sub.key}`;
      const id = idFor(`${field.key}-${index}-${sub.key}`);
      const value = item ? item[sub.key] : sub.default;
      if (sub.kind === "names") {
        const { box, inputs } = namesBox(sub, value, key, id);
        row.inputs[sub.key] = inputs;
        return box;
      }
      const { box, control } = fieldBox(sub, value, key, id);
      row.inputs[sub.key] = control;
      return box;
    });
    const remove = el("button", {
      type: "button", class: `button secondary remove-item remove-${slug}`,
      disabled: !config.can_save, "aria-label": `Remove ${field.item || "item"} ${index + 1}`,
      text: "Remove", onclick: () => { removeItem(field, row); },
    });
    row.node = el("div", { class: `list-row ${slug}-row`, "data-index": index }, cells, remove);
    list.rows.push(row);
    return row.node;
  }

  function renumber(field) {
    // Rebuild the rows so that every path (dtus[i].host) matches its position.
    const list = lists.get(field.key);
    const items = list.rows.map((row) => readRow(field, row));
    const prefix = `${field.key}[`;
    for (const key of [...fieldNodes.keys()]) if (key.startsWith(prefix)) fieldNodes.delete(key);
    list.rows = [];
    list.list.replaceChildren(...items.map((item) => listRow(field, item)));
    list.empty.hidden = items.length > 0;
  }

  function removeItem(field, row) {
    const list = lists.get(field.key);
    list.rows = list.rows.filter((r) => r !== row);
    renumber(field);
    scheduleValidate();
  }

  function addItem(field) {
    const list = lists.get(field.key);
    list.list.append(listRow(field, null));
    list.empty.hidden = true;
    const first = list.rows[list.rows.length - 1].node.querySelector("input");
    if (first) first.focus();
    scheduleValidate();
  }

  function listBox(field) {
    const slug = slugOf(field);
    const list = { field, rows: [], list: el("div", { class: `list-items ${slug}-list` }) };
    lists.set(field.key, list);
    const items = valueAt(config.options, field.key) || [];
    list.list.append(...items.map((item) => listRow(field, item)));
    list.empty = el("p", { class: "muted", hidden: items.length > 0,
      text: field.min ? `No ${field.item} yet: add one.` : `No ${field.item} yet.` });
    const box = el("div", { class: `field list-field ${field.key}-field`, "data-key": field.key,
      "data-group": "" },
    field.help ? el("p", { class: "help", text: field.help }) : null,
    list.list, list.empty,
    el("p", { class: "field-error", id: `${idFor(field.key)}-error`, role: "alert" }),
    el("button", { type: "button", id: `config-add-${slug}`, class: "button secondary add-item",
      disabled: !config.can_save, text: `Add ${field.item}`, onclick: () => addItem(field) }));
    fieldNodes.set(field.key, box);
    return box;
  }

  function renderForm() {
    fieldNodes = new Map();
    lists = new Map();
    nodes.inputs = new Map();
    const sections = config.sections.map((section) => {
      const fields = config.fields.filter((f) => f.section === section.key);
      const body = [];
      for (const field of fields) {
        if (field.kind === "list") {
          body.push(listBox(field));
        } else {
          const { box, control } = fieldBox(field, valueAt(config.options, field.key),
            field.key, idFor(field.key));
          nodes.inputs.set(field.key, control);
          body.push(box);
        }
      }
      return el("fieldset", { class: "card config-section", "data-section": section.key },
        el("legend", { text: section.label }),
        section.help ? el("p", { class: "muted section-help", text: section.help }) : null,
        el("div", { class: fields.some((f) => f.kind === "list") ? "" : "field-grid" }, body));
    });
    nodes.sections.replaceChildren(...sections);
    showErrors(config.errors || {});
  }

  // --- messages ---------------------------------------------------------------------
  function showErrors(fields) {
    const left = { ...fields };
    for (const [key, box] of fieldNodes) {
      const message = fields[key] || "";
      const slot = box.querySelector(":scope > .field-error");
      slot.textContent = message;
      box.classList.toggle("invalid", Boolean(message));
      const control = box.querySelector("input, select");
      if (control && !box.hasAttribute("data-group")) {
        control.setAttribute("aria-invalid", message ? "true" : "false");
      }
      delete left[key];
    }
    // Problems without a field of their own (e.g. a DTU row that is not there any more).
    const rest = Object.entries(left).map(([k, m]) => `${k}: ${m}`);
    nodes.otherErrors.textContent = rest.join(" · ");
    nodes.otherErrors.hidden = rest.length === 0;
  }

  function setStatus(text, kind) {
    nodes.status.textContent = text || "";
    nodes.status.className = `config-status ${kind || ""}`;
  }

  function renderHead() {
    const where = config.mode === "file" ? "Options file" : "Options live in";
    nodes.source.replaceChildren(
      el("span", { class: "label", text: `${where}: ` }),
      el(config.mode === "file" ? "code" : "span", { id: "config-source", text: config.source }));
    nodes.readonly.hidden = config.can_save;
    nodes.save.disabled = !config.can_save || busy;
    const pending = Boolean(config.restart_pending);
    nodes.banner.hidden = !pending && !config.process_restart_pending;
    nodes.bannerText.textContent = [
      pending ? "Saved options wait for a restart." : "",
      config.process_restart_pending
        ? "The web server's settings (web.*) change only when the process restarts." : "",
    ].filter(Boolean).join(" ");
    nodes.restart.hidden = !(pending && config.can_restart);
    if (nodes.restart.hidden) nodes.confirm.hidden = true;
  }

  // --- talking to the bridge -------------------------------------------------------------
  async function load() {
    const r = await get("api/config");
    if (!r.ok || !r.body) {
      setStatus(`Cannot read the options: ${(r.body && r.body.error) || "no answer"}`, "failed");
      return false;
    }
    config = r.body;
    dirty = false;
    renderHead();
    renderForm();
    return true;
  }

  function scheduleValidate() {
    dirty = true;
    clearTimeout(validateTimer);
    validateTimer = setTimeout(validate, VALIDATE_DELAY);
  }

  async function validate() {
    if (!config) return;
    const seq = ++validateSeq;
    const r = await post("api/config/validate", { options: collect() });
    if (seq !== validateSeq) return; // an answer to older input
    if (r.ok) showErrors({});
    else if (r.status === 422 && r.body) showErrors(r.body.fields || {});
  }

  async function save(event) {
    event.preventDefault();
    if (!config || busy) return;
    busy = true;
    clearTimeout(validateTimer);
    validateSeq += 1; // answers to earlier checks are stale now
    nodes.save.disabled = true;
    setStatus("Saving…", "");
    const r = await post("api/config", { options: collect() });
    busy = false;
    nodes.save.disabled = !config.can_save;
    if (r.ok) {
      await load();
      setStatus(r.body.message || "Saved.", "ok");
    } else if (r.status === 422 && r.body) {
      showErrors(r.body.fields || {});
      setStatus(`Not saved: ${r.body.error}`, "failed");
      const first = nodes.sections.querySelector(".invalid input, .invalid select");
      if (first) first.focus();
    } else {
      setStatus(`Not saved: ${(r.body && r.body.error) || "the bridge did not answer"}`, "failed");
    }
  }

  async function restart() {
    nodes.confirm.hidden = true;
    nodes.restart.disabled = true;
    setStatus("Restarting…", "");
    const r = await post("api/restart", {});
    nodes.restart.disabled = false;
    if (!r.ok && r.body && r.body.unanswered && config && config.mode === "addon") {
      // The Supervisor stops this add-on before it answers: a lost answer means it restarts.
      setStatus("The add-on is restarting…", "ok");
      nodes.restart.hidden = true;
      waitForRestart(0);
      return;
    }
    if (!r.ok) {
      setStatus(`Not restarted: ${(r.body && r.body.error) || "the bridge did not answer"}`, "failed");
      return;
    }
    setStatus(r.body.message || "Restarting…", "ok");
    nodes.restart.hidden = true;
    waitForRestart(0);
  }

  function waitForRestart(tries) {
    clearTimeout(restartPoll);
    if (tries >= RESTART_POLLS) return;
    restartPoll = setTimeout(async () => {
      const r = await get("api/config");
      if (r.ok && r.body && r.body.bridge_running && !r.body.restart_pending) {
        config = r.body;
        renderHead();
        setStatus("Restarted: the bridge runs with the saved options.", "ok");
        return;
      }
      waitForRestart(tries + 1);
    }, RESTART_POLL);
  }

  // --- the page ------------------------------------------------------------------------
  function build() {
    nodes.source = el("p", { class: "config-source" });
    nodes.readonly = el("p", { class: "muted", hidden: true,
      text: "Read-only: this bridge was started without an options file, so there is nowhere to save." });
    nodes.bannerText = el("span", { id: "config-banner-text" });
    nodes.restart = el("button", { type: "button", id: "config-restart", class: "button",
      text: "Restart now", hidden: true,
      onclick: () => { nodes.confirm.hidden = false; nodes.confirmYes.focus(); } });
    nodes.confirmYes = el("button", { type: "button", id: "config-restart-confirm",
      class: "button danger", text: "Yes, restart", onclick: restart });
    nodes.confirm = el("div", { class: "confirm", id: "config-confirm", hidden: true,
      role: "group", "aria-label": "Confirm the restart" },
    el("span", { text: "Restart the bridge now? Polling stops for a few seconds." }),
    nodes.confirmYes,
    el("button", { type: "button", class: "button secondary", text: "Cancel",
      onclick: () => { nodes.confirm.hidden = true; nodes.restart.focus(); } }));
    nodes.banner = el("div", { class: "config-banner", id: "config-banner", role: "status",
      hidden: true }, nodes.bannerText, nodes.restart, nodes.confirm);
    nodes.sections = el("div", { class: "config-sections" });
    nodes.otherErrors = el("p", { class: "field-error other-errors", hidden: true, role: "alert" });
    nodes.save = el("button", { type: "submit", id: "config-save", class: "button", text: "Save" });
    nodes.status = el("span", { id: "config-status", class: "config-status", role: "status",
      "aria-live": "polite" });
    nodes.form = el("form", { id: "config-form", novalidate: true, autocomplete: "off",
      onsubmit: save },
    nodes.sections,
    el("div", { class: "card config-actions" }, nodes.otherErrors, nodes.save, nodes.status));
    root.append(
      el("div", { class: "card config-head" },
        el("h3", { text: "Configuration" }), nodes.source, nodes.readonly, nodes.banner),
      nodes.form);
  }

  window.HB.page("config", {
    init(section) {
      root = section;
      build();
    },
    show() {
      if (!busy && !dirty) load();
    },
    hide() {
      clearTimeout(validateTimer);
    },
  });
})();
