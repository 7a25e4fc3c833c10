// Hoymiles DTU Bridge web UI: the charts page.
"use strict";

(() => {
  const { el } = window.HB;
  window.HB.page("charts", {
    init(root) {
      root.append(el("div", { class: "card muted", text: "Charts: not built yet." }));
    },
  });
})();
