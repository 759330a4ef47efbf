// Charts drawn as SVG, sized by their viewBox (they scale with their container) and coloured
// by the theme's CSS variables. Each has a <title> for screen readers.

import { s } from "../common/dom.js";

/** A chart width (in SVG units = CSS pixels) that fills ``container``'s column, so text
 * stays readable on a phone as on a desktop. ``columns``: chart columns from 1000 px wide. */
export function chartWidth(container, columns = 1) {
  const total = (container && container.clientWidth) || 640;
  const perColumn = window.innerWidth >= 1000 ? (total - 12 * (columns - 1)) / columns : total;
  return Math.max(280, Math.round(perColumn - 30));
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function ticks(min, max, count = 4) {
  const out = [];
  for (let i = 0; i <= count; i += 1) out.push(min + ((max - min) * i) / count);
  return out;
}

/**
 * A line over time. ``points``: [{t: Date|string|number, v: number}]; ``target``: a dashed
 * horizontal line; ``formatY``/``formatX``: axis labels.
 */
export function lineChart({ points, title = "", target = null, width = 640, height = 220, formatY = String, formatX = String }) {
  const pad = { left: 44, right: 12, top: 12, bottom: 26 };
  const data = points
    .map((p) => ({ t: new Date(p.t).getTime(), v: Number(p.v) }))
    .filter((p) => Number.isFinite(p.v) && Number.isFinite(p.t))
    .sort((a, b) => a.t - b.t);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title }, s("title", {}, title));
  if (!data.length) return svg;
  let lo = Math.min(...data.map((p) => p.v), target ?? Infinity);
  let hi = Math.max(...data.map((p) => p.v), target ?? -Infinity);
  if (hi - lo < 1) {
    lo -= 0.5;
    hi += 0.5;
  }
  const margin = (hi - lo) * 0.1;
  lo -= margin;
  hi += margin;
  const t0 = data[0].t;
  const t1 = Math.max(data[data.length - 1].t, t0 + 1);
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - (v - lo) / (hi - lo)) * (height - pad.top - pad.bottom);
  for (const value of ticks(lo, hi)) {
    svg.appendChild(s("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }));
    svg.appendChild(s("text", { x: pad.left - 6, y: y(value) + 4, "text-anchor": "end" }, formatY(value)));
  }
  for (const time of ticks(t0, t1, 4)) {
    svg.appendChild(s("text", { x: x(time), y: height - 8, "text-anchor": "middle" }, formatX(new Date(time))));
  }
  if (target !== null && target !== undefined) {
    svg.appendChild(s("line", { class: "target", x1: pad.left, x2: width - pad.right, y1: y(target), y2: y(target) }));
  }
  // A step line: a sensor holds its value until the next reading.
  let d = `M${x(data[0].t).toFixed(1)},${y(data[0].v).toFixed(1)}`;
  for (let i = 1; i < data.length; i += 1) {
    d += `H${x(data[i].t).toFixed(1)}V${y(data[i].v).toFixed(1)}`;
  }
  svg.appendChild(s("path", { class: "line", d }));
  return svg;
}

/** Vertical bars: ``items`` [{label, value, title}], one or two series (``value2``). */
export function barChart({ items, title = "", width = 640, height = 220, formatY = String, labelEvery = 1, series2 = false }) {
  const pad = { left: 52, right: 8, top: 12, bottom: 28 };
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title }, s("title", {}, title));
  if (!items.length) return svg;
  const max = niceMax(Math.max(...items.map((item) => Math.max(item.value, series2 ? item.value2 || 0 : 0))));
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const slot = innerW / items.length;
  const barW = Math.max(1, slot * (series2 ? 0.4 : 0.7));
  for (const value of ticks(0, max)) {
    const yy = pad.top + innerH * (1 - value / max);
    svg.appendChild(s("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: yy, y2: yy }));
    svg.appendChild(s("text", { x: pad.left - 6, y: yy + 4, "text-anchor": "end" }, formatY(value)));
  }
  items.forEach((item, index) => {
    const x0 = pad.left + slot * index + (slot - barW * (series2 ? 2 : 1)) / 2;
    const bar = (value, x, cls) => {
      const hgt = (innerH * value) / max;
      const rect = s("rect", { class: cls, x: x.toFixed(1), y: (pad.top + innerH - hgt).toFixed(1), width: barW.toFixed(1), height: hgt.toFixed(1), rx: 2 });
      rect.appendChild(s("title", {}, item.title || `${item.label}: ${value}`));
      svg.appendChild(rect);
    };
    bar(item.value, x0, "bar-1");
    if (series2) bar(item.value2 || 0, x0 + barW, "bar-2");
    if (index % labelEvery === 0) {
      svg.appendChild(s("text", { x: (pad.left + slot * index + slot / 2).toFixed(1), y: height - 8, "text-anchor": "middle" }, item.label));
    }
  });
  svg.appendChild(s("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: pad.top + innerH, y2: pad.top + innerH }));
  return svg;
}

/** Horizontal bars with their labels and values: ``items`` [{label, value, text}]. */
export function hbarChart({ items, title = "", width = 640, row = 26 }) {
  const labelW = Math.min(220, width * 0.38);
  const valueW = 110;
  const height = Math.max(row, items.length * row) + 4;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title }, s("title", {}, title));
  const max = Math.max(1, ...items.map((item) => item.value));
  items.forEach((item, index) => {
    const y = index * row + 2;
    const w = ((width - labelW - valueW - 8) * item.value) / max;
    const chars = Math.floor(labelW / 6.5);
    const label = item.label.length > chars ? `${item.label.slice(0, chars - 1)}…` : item.label;
    svg.appendChild(s("text", { x: 0, y: y + row / 2 + 4 }, label));
    const rect = s("rect", { class: "bar-1", x: labelW, y: y + 4, width: Math.max(1, w).toFixed(1), height: row - 8, rx: 3 });
    rect.appendChild(s("title", {}, `${item.label}: ${item.text ?? item.value}`));
    svg.appendChild(rect);
    svg.appendChild(s("text", { class: "value-label", x: labelW + Math.max(1, w) + 6, y: y + row / 2 + 4 }, item.text ?? String(item.value)));
  });
  return svg;
}
