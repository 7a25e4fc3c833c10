// Hoymiles DTU Bridge web UI: a small, fast canvas chart (time series and bars).
//
// This is the project's own code, written for this bridge instead of vendoring a
// charting library: the project's rule is that every line is written here and
// nothing is copied from other projects. It does only what the charts page needs:
//
//   const line = new HBChart.TimeChart(container, { unit: "W", gap: 900 });
//   line.setSeries([{ key: "total", label: "Total", data: [[t, w], ...], width: 2.5 }]);
//   const bars = new HBChart.BarChart(container, { unit: "Wh" });
//   bars.setData(["2024-06-01", ...], [{ key: "116...", label: "HMS-800W", values: [...] }]);
//
// Times are Unix seconds, shown in the browser's local time. Colours come from CSS
// variables (--chart-1 … --chart-8, --chart-grid, --chart-text, --chart-cross), so
// light and dark schemes both work, and the chart redraws when the scheme changes.
// The canvases are sized for devicePixelRatio and follow their container
// (ResizeObserver). Long series are decimated to first/min/max/last per pixel
// column, so 20,000 points per series cost at most four vertices per column.
// Legend buttons toggle their series and carry data-key and data-points; the
// container element gets `.hbchart = chart` so tests can look inside.
"use strict";

window.HBChart = (() => {
  const PALETTE = 8;
  const FALLBACK = ["#03a9f4", "#ff9800", "#4caf50", "#e91e63", "#9c27b0", "#795548", "#009688", "#607d8b"];
  const FONT_SIZE = 11;
  const MIN = 60, HOUR = 3600, DAY = 86400;
  const TIME_STEPS = [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR,
    3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY];
  const pad = (n) => String(n).padStart(2, "0");

  function div(cls) {
    const node = document.createElement("div");
    node.className = cls;
    return node;
  }

  // --- numbers, ticks and labels ----------------------------------------------------

  // The "nice" step (1, 2, 2.5 or 5 × 10^n) that cuts `span` into about `count` parts.
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 2.5, 5]) {
      if (m * magnitude >= raw) return m * magnitude;
    }
    return 10 * magnitude;
  }

  // Decimals a step needs (2.5 → 1, 0.25 → 2, 200 → 0).
  function decimals(step) {
    const text = String(Number(step.toPrecision(6)));
    const dot = text.indexOf(".");
    return dot < 0 ? 0 : Math.min(4, text.length - dot - 1);
  }

  // Ticks from a round number at or below `min` to one at or above `max`.
  function valueTicks(min, max, count) {
    if (!(max > min)) max = min + 1;
    const step = niceStep(max - min, count);
    const lo = Math.floor(min / step) * step;
    const hi = Math.ceil(max / step) * step;
    const ticks = [];
    for (let i = 0; lo + i * step <= hi + step / 2; i++) ticks.push(lo + i * step);
    return { lo, hi, step, ticks, digits: decimals(step) };
  }

  const formatNumber = (value, digits) => Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });

  // Ticks on round local times: every 5 min, 1 h, 6 h, ... counted from local midnight.
  function timeTicks(lo, hi, count) {
    const span = Math.max(1, hi - lo);
    const step = TIME_STEPS.find((s) => span / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
    const ticks = [];
    const first = new Date(lo * 1000);
    const midnight = new Date(first.getFullYear(), first.getMonth(), first.getDate());
    if (step < DAY) {
      const base = midnight.getTime() / 1000;
      for (let t = base + Math.ceil((lo - base) / step) * step; t <= hi; t += step) ticks.push(t);
    } else {
      // whole days: walk the calendar so daylight-saving days stay on midnight
      const day = midnight;
      if (day.getTime() / 1000 < lo) day.setDate(day.getDate() + 1);
      for (; day.getTime() / 1000 <= hi; day.setDate(day.getDate() + step / DAY)) {
        ticks.push(day.getTime() / 1000);
      }
    }
    return { step, ticks };
  }

  // "HH:MM", or "MM-DD" on midnight and for day steps.
  function timeLabel(t, step) {
    const d = new Date(t * 1000);
    if (step >= DAY || (d.getHours() === 0 && d.getMinutes() === 0)) {
      return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    }
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fullTime(t, withDate) {
    const d = new Date(t * 1000);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
  }

  // First index whose time is >= t in [[t, v], ...] sorted by time.
  function lowerBound(data, t) {
    let lo = 0, hi = data.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (data[mid][0] < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // --- what both kinds of chart share --------------------------------------------------

  class Chart {
    constructor(container, options) {
      this.options = { height: 240, unit: "", ...options };
      this.hidden = new Set(this.options.hidden || []);
      this.series = [];
      this.layout = null;
      this.lastDraw = null;
      this.frame = 0;
      this.buttons = new Map();

      this.root = div("hbchart");
      this.legend = div("hbchart-legend");
      this.plot = div("hbchart-plot");
      this.plot.style.height = `${this.options.height}px`;
      this.canvas = document.createElement("canvas");
      this.overlay = document.createElement("canvas");
      this.overlay.className = "hbchart-overlay";
      this.canvas.setAttribute("role", "img");
      this.canvas.setAttribute("aria-label", this.options.label || "chart");
      this.tip = div("hbchart-tip");
      this.tip.hidden = true;
      this.plot.append(this.canvas, this.overlay, this.tip);
      this.root.append(this.legend, this.plot);
      container.append(this.root);
      container.hbchart = this;

      this.schedule = this.schedule.bind(this);
      this.resizer = new ResizeObserver(this.schedule);
      this.resizer.observe(this.plot);
      this.scheme = window.matchMedia("(prefers-color-scheme: dark)");
      this.scheme.addEventListener("change", this.schedule);
      this.overlay.addEventListener("pointermove", (e) => this.hover(e));
      this.overlay.addEventListener("pointerdown", (e) => this.hover(e));
      this.overlay.addEventListener("pointerleave", () => this.leave());
    }

    destroy() {
      this.resizer.disconnect();
      this.scheme.removeEventListener("change", this.schedule);
      if (this.frame) cancelAnimationFrame(this.frame);
      this.root.remove();
    }

    // Draw on the next animation frame (many updates in one frame draw once).
    schedule() {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.draw();
      });
    }

    // The colours, read from CSS each draw so a scheme change is picked up.
    colors() {
      const style = getComputedStyle(this.root);
      const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
      const series = [];
      for (let i = 0; i < PALETTE; i++) series.push(read(`--chart-${i + 1}`, FALLBACK[i]));
      return {
        series,
        grid: read("--chart-grid", "rgba(128, 128, 128, 0.25)"),
        text: read("--chart-text", "#888888"),
        cross: read("--chart-cross", "#888888"),
        font: `${FONT_SIZE}px ${style.fontFamily || "sans-serif"}`,
      };
    }

    colorOf(series, colors) {
      return colors.series[(series.color ?? 0) % PALETTE];
    }

    // Size both canvases to the plot box at the screen's pixel ratio.
    // Returns the base canvas' context (in CSS pixels) or null while invisible.
    fit() {
      const width = this.plot.clientWidth, height = this.plot.clientHeight;
      if (!width || !height) return null;
      const dpr = window.devicePixelRatio || 1;
      for (const canvas of [this.canvas, this.overlay]) {
        const w = Math.round(width * dpr), h = Math.round(height * dpr);
        if (canvas.width !== w || canvas.height !== h) {
          canvas.width = w;
          canvas.height = h;
        }
      }
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      this.clearOverlay();
      return { ctx, width, height, dpr };
    }

    // Start a redraw: sized canvases, the theme's colours, legend swatches, the font.
    begin() {
      const fitted = this.fit();
      if (!fitted) return null;
      const colors = this.colors();
      this.refreshSwatches(colors);
      fitted.ctx.font = colors.font;
      return { ...fitted, colors };
    }

    clearOverlay() {
      const ctx = this.overlay.getContext("2d");
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
      return ctx;
    }

    // The value axis: grid lines and labels on the left; returns the y mapping.
    valueAxis(ctx, colors, box, ticks) {
      const { left, top, right, bottom } = box;
      const y = (v) => bottom - ((v - ticks.lo) / (ticks.hi - ticks.lo)) * (bottom - top);
      ctx.strokeStyle = colors.grid;
      ctx.fillStyle = colors.text;
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.beginPath();
      for (const v of ticks.ticks) {
        const py = Math.round(y(v)) + 0.5;
        ctx.moveTo(left, py);
        ctx.lineTo(right, py);
        ctx.fillText(formatNumber(v, ticks.digits), left - 6, py);
      }
      ctx.stroke();
      if (this.options.unit) {
        ctx.textAlign = "left";
        ctx.textBaseline = "top";
        ctx.fillText(this.options.unit, 2, 0);
      }
      return y;
    }

    // The left margin the widest value label needs.
    labelWidth(ctx, ticks) {
      let widest = 0;
      for (const v of ticks.ticks) widest = Math.max(widest, ctx.measureText(formatNumber(v, ticks.digits)).width);
      return Math.ceil(widest) + 10;
    }

    // Legend buttons, updated in place: swatch, label, latest value; click toggles.
    updateLegend(items) {
      const colors = this.colors();
      const keep = new Set();
      items.forEach((item, index) => {
        keep.add(item.key);
        let button = this.buttons.get(item.key);
        if (!button) {
          button = document.createElement("button");
          button.type = "button";
          button.className = "hbchart-key";
          button.dataset.key = item.key;
          button.append(div("hbchart-swatch"), document.createElement("span"),
            document.createElement("span"));
          button.children[2].className = "hbchart-value";
          button.addEventListener("click", () => {
            if (this.hidden.has(item.key)) this.hidden.delete(item.key); else this.hidden.add(item.key);
            button.setAttribute("aria-pressed", String(!this.hidden.has(item.key)));
            this.draw();
          });
          this.buttons.set(item.key, button);
        }
        button.setAttribute("aria-pressed", String(!this.hidden.has(item.key)));
        button.dataset.points = String(item.points);
        if (item.last !== undefined) button.dataset.last = String(item.last);
        button.children[0].style.background = this.colorOf(item, colors);
        button.children[1].textContent = item.label;
        button.children[2].textContent = item.value === undefined ? "" : item.value;
        // keep the series' order; moving a button only when needed keeps its focus
        const here = this.legend.children[index] || null;
        if (here !== button) this.legend.insertBefore(button, here);
      });
      for (const [key, button] of this.buttons) {
        if (!keep.has(key)) {
          button.remove();
          this.buttons.delete(key);
        }
      }
    }

    refreshSwatches(colors) {
      for (const item of this.series) {
        const button = this.buttons.get(item.key);
        if (button) button.children[0].style.background = this.colorOf(item, colors);
      }
    }

    format(value) {
      if (value === null || value === undefined) return "–";
      const digits = this.options.digits ?? (Math.abs(value) < 10 ? 1 : 0);
      return `${formatNumber(value, digits)}${this.options.unit ? ` ${this.options.unit}` : ""}`;
    }

    // The tooltip: a title and one "swatch label value" row per series.
    showTip(x, y, title, rows) {
      const colors = this.colors();
      const tip = this.tip;
      tip.replaceChildren();
      const head = div("hbchart-tip-title");
      head.textContent = title;
      tip.append(head);
      for (const row of rows) {
        const line = div("hbchart-tip-row");
        const swatch = div("hbchart-swatch");
        swatch.style.background = row.color || this.colorOf(row, colors);
        const label = document.createElement("span");
        label.textContent = row.label;
        const value = document.createElement("span");
        value.className = "hbchart-value";
        value.textContent = row.value;
        line.append(swatch, label, value);
        tip.append(line);
      }
      tip.hidden = false;
      // keep it inside the plot: right of the cursor, or left when there is no room
      const width = this.plot.clientWidth;
      const left = x + 14 + tip.offsetWidth > width ? Math.max(0, x - 14 - tip.offsetWidth) : x + 14;
      tip.style.left = `${left}px`;
      tip.style.top = `${Math.max(0, Math.min(y - tip.offsetHeight / 2, this.plot.clientHeight - tip.offsetHeight))}px`;
    }

    leave() {
      this.tip.hidden = true;
      this.clearOverlay();
    }

    // The pointer's position in the plot's CSS pixels, or null outside the plot area.
    pointerAt(event) {
      if (!this.layout) return null;
      const rect = this.overlay.getBoundingClientRect();
      const x = event.clientX - rect.left, y = event.clientY - rect.top;
      const { left, right, top, bottom } = this.layout.box;
      if (x < left || x > right || y < top - 4 || y > bottom + 4) return null;
      return { x, y };
    }
  }

  // --- lines over time -------------------------------------------------------------

  class TimeChart extends Chart {
    // options: unit, height, gap (s: a longer pause between points breaks the line),
    // xMin/xMax (a fixed time range), digits (tooltip decimals), label (aria).
    constructor(container, options) {
      super(container, { gap: Infinity, ...options });
    }

    // series: [{key, label, data: [[t, v], ...] sorted by t, color (index), width}]
    setSeries(list) {
      this.series = list.map((s, i) => ({ color: i, width: 1.5, ...s }));
      this.updateLegend(this.series.map((s) => ({
        key: s.key, label: s.label, color: s.color, points: s.data.length,
        last: s.data.length ? s.data[s.data.length - 1][0] : "",
        value: s.data.length ? this.format(s.data[s.data.length - 1][1]) : "",
      })));
      this.schedule();
    }

    setRange(xMin, xMax) {
      this.options.xMin = xMin;
      this.options.xMax = xMax;
      this.schedule();
    }

    visible() {
      return this.series.filter((s) => !this.hidden.has(s.key) && s.data.length);
    }

    draw() {
      const frame = this.begin();
      if (!frame) return;
      const { ctx, width, height, colors } = frame;
      const shown = this.visible();

      // x range: fixed or the data's; y range: 0 .. the highest value shown
      let xLo = Infinity, xHi = -Infinity;
      for (const s of shown) {
        xLo = Math.min(xLo, s.data[0][0]);
        xHi = Math.max(xHi, s.data[s.data.length - 1][0]);
      }
      if (this.options.xMin !== undefined) xLo = this.options.xMin;
      if (this.options.xMax !== undefined) xHi = this.options.xMax;
      if (!Number.isFinite(xLo) || !Number.isFinite(xHi)) {
        const now = Date.now() / 1000;
        xLo = now - HOUR;
        xHi = now;
      }
      if (xHi <= xLo) xHi = xLo + MIN;
      let yMax = 0;
      for (const s of shown) {
        const end = Math.min(s.data.length, lowerBound(s.data, xHi) + 1);
        for (let i = Math.max(0, lowerBound(s.data, xLo) - 1); i < end; i++) {
          const v = s.data[i][1];
          if (v > yMax) yMax = v;
        }
      }

      const top = 16, bottom = height - 20;
      const yTicks = valueTicks(0, yMax, Math.max(2, Math.floor((bottom - top) / 40)));
      const left = this.labelWidth(ctx, yTicks), right = width - 10;
      const box = { left, right, top, bottom };
      const y = this.valueAxis(ctx, colors, box, yTicks);
      const scale = (right - left) / (xHi - xLo);
      const x = (t) => left + (t - xLo) * scale;

      // time axis
      const xTicks = timeTicks(xLo, xHi, Math.max(2, Math.floor((right - left) / 70)));
      ctx.strokeStyle = colors.grid;
      ctx.fillStyle = colors.text;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.beginPath();
      for (const t of xTicks.ticks) {
        const px = Math.round(x(t)) + 0.5;
        ctx.moveTo(px, top);
        ctx.lineTo(px, bottom + 4);
        // keep the label inside the canvas at both ends
        const label = timeLabel(t, xTicks.step);
        const half = ctx.measureText(label).width / 2;
        ctx.fillText(label, Math.min(Math.max(px, half + 1), width - half - 1), bottom + 6);
      }
      ctx.stroke();

      // the series, clipped to the plot area
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top - 2, right - left, bottom - top + 4);
      ctx.clip();
      ctx.lineJoin = "round";
      ctx.lineCap = "round";
      let vertices = 0;
      // last to first: the legend's first series (the total) ends up on top
      for (const s of [...shown].reverse()) {
        ctx.strokeStyle = this.colorOf(s, colors);
        ctx.lineWidth = s.width;
        vertices += this.drawLine(ctx, s.data, x, y, xLo, xHi);
      }
      ctx.restore();

      this.layout = { box, x, y, xLo, xHi, scale, shown, withDate: xHi - xLo > DAY };
      this.lastDraw = { width, height, series: shown.length, vertices, xTicks: xTicks.ticks.length };
    }

    // One series as a polyline: per pixel column only its first, lowest, highest
    // and last value are drawn. A pause longer than options.gap breaks the line;
    // a lone point between two breaks is drawn as a dot.
    drawLine(ctx, data, x, y, xLo, xHi) {
      const gap = this.options.gap;
      const end = Math.min(data.length, lowerBound(data, xHi) + 1);
      let i = Math.max(0, lowerBound(data, xLo) - 1);
      let column = NaN, first = 0, low = 0, high = 0, last = 0;
      let pen = false, prevT = -Infinity, vertices = 0, runColumns = 0;
      const dots = [];
      const flush = () => {
        if (Number.isNaN(column)) return;
        if (pen) ctx.lineTo(column, first); else ctx.moveTo(column, first);
        pen = true;
        if (low !== first || high !== first) {
          ctx.lineTo(column, low);
          ctx.lineTo(column, high);
        }
        ctx.lineTo(column, last);
        vertices += 4;
        runColumns += 1;
        if (runColumns === 1) dots.push([column, first]);
        else if (runColumns === 2) dots.pop();
        column = NaN;
      };
      const breakLine = () => {
        flush();
        pen = false;
        runColumns = 0;
      };
      ctx.beginPath();
      for (; i < end; i++) {
        const [t, v] = data[i];
        if (v === null || v === undefined || t - prevT > gap) {
          breakLine();
          if (v === null || v === undefined) continue;
        }
        const px = Math.round(x(t)), py = y(v);
        if (px !== column) {
          flush();
          column = px;
          first = low = high = last = py;
        } else {
          // screen y grows downwards: "low" is the smallest y (the highest value)
          if (py < low) low = py;
          if (py > high) high = py;
          last = py;
        }
        prevT = t;
      }
      flush();
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      for (const [dx, dy] of dots) {
        ctx.beginPath();
        ctx.arc(dx, dy, Math.max(2, ctx.lineWidth), 0, 2 * Math.PI);
        ctx.fill();
      }
      return vertices;
    }

    // The point of `data` nearest to time t, if it is within the gap (or 12 px).
    nearest(data, t) {
      const i = lowerBound(data, t);
      let best = null;
      for (const j of [i - 1, i]) {
        if (j >= 0 && j < data.length && (best === null || Math.abs(data[j][0] - t) < Math.abs(best[0] - t))) {
          best = data[j];
        }
      }
      const reach = Math.max(this.options.gap, 12 / this.layout.scale);
      return best && Math.abs(best[0] - t) <= reach ? best : null;
    }

    // Crosshair at the nearest sample, a dot per series and the tooltip.
    hover(event) {
      const at = this.pointerAt(event);
      if (!at) return this.leave();
      const { box, x, y, xLo, scale, shown, withDate } = this.layout;
      const t = xLo + (at.x - box.left) / scale;
      const hits = shown.map((s) => ({ s, point: this.nearest(s.data, t) })).filter((h) => h.point);
      if (!hits.length) return this.leave();
      // snap to the sample closest to the pointer
      let snap = hits[0].point[0];
      for (const h of hits) if (Math.abs(h.point[0] - t) < Math.abs(snap - t)) snap = h.point[0];
      const colors = this.colors();
      const ctx = this.clearOverlay();
      const px = Math.round(x(snap)) + 0.5;
      ctx.strokeStyle = colors.cross;
      ctx.lineWidth = 1;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(px, box.top);
      ctx.lineTo(px, box.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      for (const h of hits) {
        ctx.fillStyle = this.colorOf(h.s, colors);
        ctx.beginPath();
        ctx.arc(x(h.point[0]), y(h.point[1]), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
      this.showTip(px, at.y, fullTime(snap, withDate), hits.map((h) => ({
        label: h.s.label, color: this.colorOf(h.s, colors), value: this.format(h.point[1]),
      })));
      return undefined;
    }
  }

  // --- bars per category (stacked) --------------------------------------------------------

  class BarChart extends Chart {
    // labels: category names (e.g. dates); series: [{key, label, values: [v per label], color}]
    setData(labels, list) {
      this.labels = labels;
      this.series = list.map((s, i) => ({ color: i, ...s }));
      this.updateLegend(this.series.map((s) => ({
        key: s.key, label: s.label, color: s.color,
        points: s.values.filter((v) => v !== null && v !== undefined).length,
        value: s.values.length ? this.format(s.values[s.values.length - 1]) : "",
      })));
      this.schedule();
    }

    draw() {
      const frame = this.begin();
      if (!frame) return;
      const { ctx, width, height, colors } = frame;
      const labels = this.labels || [];
      const shown = this.series.filter((s) => !this.hidden.has(s.key));
      const totals = labels.map((_, i) => shown.reduce((sum, s) => sum + (s.values[i] || 0), 0));

      const top = 16, bottom = height - 20;
      const yTicks = valueTicks(0, Math.max(0, ...totals), Math.max(2, Math.floor((bottom - top) / 40)));
      const left = this.labelWidth(ctx, yTicks), right = width - 10;
      const box = { left, right, top, bottom };
      const y = this.valueAxis(ctx, colors, box, yTicks);
      const slot = (right - left) / Math.max(1, labels.length);
      const barWidth = Math.max(1, Math.min(48, slot * 0.7));

      // category labels: as many as fit without overlapping
      const widest = labels.reduce((w, l) => Math.max(w, ctx.measureText(l).width), 0) + 8;
      const every = Math.max(1, Math.ceil(widest / slot));
      ctx.fillStyle = colors.text;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      labels.forEach((label, i) => {
        if ((labels.length - 1 - i) % every === 0) ctx.fillText(label, left + slot * (i + 0.5), bottom + 6);
      });

      // stacked bars, first series at the bottom
      let bars = 0;
      labels.forEach((_, i) => {
        let base = 0;
        const bx = left + slot * (i + 0.5) - barWidth / 2;
        for (const s of shown) {
          const v = s.values[i] || 0;
          if (v <= 0) continue;
          ctx.fillStyle = this.colorOf(s, colors);
          ctx.fillRect(bx, y(base + v), barWidth, y(base) - y(base + v));
          base += v;
          bars += 1;
        }
      });
      this.layout = { box, y, slot, barWidth, totals, shown };
      this.lastDraw = { width, height, series: shown.length, bars, labels: labels.length };
    }

    hover(event) {
      const at = this.pointerAt(event);
      const labels = this.labels || [];
      if (!at || !labels.length) return this.leave();
      const { box, y, slot, barWidth, totals, shown } = this.layout;
      const i = Math.min(labels.length - 1, Math.max(0, Math.floor((at.x - box.left) / slot)));
      const colors = this.colors();
      const ctx = this.clearOverlay();
      ctx.fillStyle = colors.grid;
      ctx.fillRect(box.left + slot * i, box.top, slot, box.bottom - box.top);
      const rows = shown.map((s) => ({
        label: s.label, color: this.colorOf(s, colors), value: this.format(s.values[i]),
      }));
      if (shown.length > 1) rows.push({ label: "Total", color: "transparent", value: this.format(totals[i]) });
      this.showTip(box.left + slot * (i + 0.5) + barWidth / 2, Math.max(box.top, y(totals[i])), labels[i], rows);
      return undefined;
    }
  }

  return { TimeChart, BarChart, niceStep, valueTicks, timeTicks, timeLabel };
})();
