// Hoymiles DTU Bridge web UI: the configuration page.
"use strict";

(() => {
  const { el } = window.HB;
  window.HB.page("config", {
    init(root) {
      root.append(el("div", { class: "card muted", text: "Configuration: not built yet." }));
    },
  });
})();
