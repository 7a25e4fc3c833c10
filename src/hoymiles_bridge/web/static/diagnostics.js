// Hoymiles DTU Bridge web UI: the diagnostics page.
"use strict";

(() => {
  const { el } = window.HB;
  window.HB.page("diagnostics", {
    init(root) {
      root.append(el("div", { class: "card muted", text: "Diagnostics: not built yet." }));
    },
  });
})();
