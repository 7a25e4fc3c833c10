// Hoymiles DTU Bridge web UI: the event log page.
"use strict";

(() => {
  const { el } = window.HB;
  window.HB.page("events", {
    init(root) {
      root.append(el("div", { class: "card muted", text: "Event log: not built yet." }));
    },
  });
})();
