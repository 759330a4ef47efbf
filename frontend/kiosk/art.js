// Product pictures without image files or outside hosts: an SVG tile per product, its colour
// picked from the product's name (the same product looks the same on every machine) and its
// initials in large letters. White on a dark tint keeps the contrast high.

import { s } from "../common/dom.js";

function hash(text) {
  let value = 2166136261;
  for (const char of String(text)) {
    value ^= char.codePointAt(0);
    value = Math.imul(value, 16777619);
  }
  return value >>> 0;
}

/** "Sparkling water" → "SW", "Cola" → "CO". */
export function initials(name) {
  const words = String(name || "?")
    .split(/[\s\-_/]+/)
    .filter(Boolean);
  if (words.length >= 2) return (words[0][0] + words[1][0]).toUpperCase();
  const word = words[0] || "?";
  return Array.from(word).slice(0, 2).join("").toUpperCase();
}

/** The hue (0-359) of ``name``. */
export function hue(name) {
  return hash(name) % 360;
}

/** An SVG picture of product ``name`` (decorative: the name is written beside it). */
export function productArt(name, { size = 160, soldOut = false } = {}) {
  const h = hue(name);
  const id = `g${hash(name).toString(36)}`;
  const clip = `c${hash(name).toString(36)}`;
  return s(
    "svg",
    {
      class: "art",
      viewBox: "0 0 160 160",
      width: size,
      height: size,
      "aria-hidden": "true",
      focusable: "false",
    },
    s(
      "defs",
      {},
      s(
        "linearGradient",
        { id, x1: "0", y1: "0", x2: "1", y2: "1" },
        s("stop", { offset: "0", "stop-color": `hsl(${h} 70% 38%)` }),
        s("stop", { offset: "1", "stop-color": `hsl(${(h + 40) % 360} 75% 24%)` }),
      ),
      s("clipPath", { id: clip }, s("rect", { x: 0, y: 0, width: 160, height: 160, rx: 28 })),
    ),
    s(
      "g",
      { "clip-path": `url(#${clip})` },
      s("rect", { x: 0, y: 0, width: 160, height: 160, fill: `url(#${id})` }),
      s("circle", { cx: 128, cy: 30, r: 40, fill: "rgb(255 255 255 / 0.10)" }),
      s("circle", { cx: 24, cy: 140, r: 52, fill: "rgb(0 0 0 / 0.16)" }),
    ),
    s(
      "text",
      {
        x: 80,
        y: 80,
        "text-anchor": "middle",
        "dominant-baseline": "central",
        "font-size": 64,
        "font-weight": 700,
        "font-family": "system-ui, sans-serif",
        fill: "#ffffff",
      },
      initials(name),
    ),
    soldOut ? s("rect", { x: 0, y: 0, width: 160, height: 160, rx: 28, fill: "rgb(0 0 0 / 0.55)" }) : null,
  );
}

/** The icon of a payment method (card, qr, cash), in the current text colour. */
export function methodIcon(method, size = 96) {
  const common = { viewBox: "0 0 64 64", width: size, height: size, "aria-hidden": "true", focusable: "false", class: "icon" };
  const line = { fill: "none", stroke: "currentColor", "stroke-width": 3.5, "stroke-linejoin": "round", "stroke-linecap": "round" };
  if (method === "card") {
    return s(
      "svg",
      common,
      s("rect", { ...line, x: 6, y: 14, width: 52, height: 36, rx: 6 }),
      s("rect", { x: 6, y: 22, width: 52, height: 7, fill: "currentColor" }),
      s("rect", { ...line, x: 13, y: 35, width: 11, height: 8, rx: 2 }),
    );
  }
  if (method === "qr") {
    const squares = [[8, 8], [40, 8], [8, 40]].map(([x, y]) => [
      s("rect", { ...line, x, y, width: 16, height: 16, rx: 2 }),
      s("rect", { x: x + 5.5, y: y + 5.5, width: 5, height: 5, fill: "currentColor" }),
    ]);
    const dots = [[40, 40], [50, 40], [45, 47], [40, 52], [52, 52], [30, 12], [30, 30], [12, 30], [22, 30]].map(([x, y]) =>
      s("rect", { x, y, width: 5, height: 5, fill: "currentColor" }),
    );
    return s("svg", common, squares, dots);
  }
  return s(
    "svg",
    common,
    s("rect", { ...line, x: 4, y: 12, width: 40, height: 24, rx: 4 }),
    s("circle", { ...line, cx: 24, cy: 24, r: 5 }),
    s("circle", { ...line, cx: 44, cy: 44, r: 14 }),
    s("circle", { ...line, cx: 44, cy: 44, r: 8 }),
  );
}
