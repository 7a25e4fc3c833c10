// Hoymiles DTU Bridge web UI: the command console page.
"use strict";

(() => {
  const { el } = window.HB;
  window.HB.page("console", {
    init(root) {
      root.append(el("div", { class: "card muted", text: "Command console: not built yet." }));
    },
  });
})();
