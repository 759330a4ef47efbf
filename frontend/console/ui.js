// Small pieces of UI the console's pages share: page heads, notices, toasts, dialogs, stock
// bars, and a base class for pages (a web component that cleans up after itself).

import { h, mount, define } from "../common/dom.js";
import { t } from "../common/i18n.js";
import { ApiError } from "../common/api.js";

/** The readable, translated message of an error from the API or the WebSocket. */
export function errorText(error) {
  if (error instanceof ApiError) {
    const key = `errors.${error.code}`;
    const known = t(key);
    if (known !== key) return error.code === "network" ? known : `${known} (${error.message})`;
    return t("errors.generic", { message: error.message });
  }
  return t("errors.generic", { message: (error && error.message) || String(error) });
}

let toastBox = null;
export function toast(message, kind = "") {
  if (!toastBox) {
    toastBox = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(toastBox);
  }
  const item = h("div", { class: `toast ${kind}` }, message);
  toastBox.appendChild(item);
  setTimeout(() => item.remove(), kind === "error" ? 6000 : 3000);
}

export function toastError(error) {
  toast(errorText(error), "error");
}

export function notice(message, kind = "") {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
}

export function loading() {
  return h("div", { class: "empty", role: "status" }, t("common.loading"));
}

export function pageHead(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "row" }, actions));
}

/** A stock bar: green, amber below par, red when empty. */
export function stockBar(stock, capacity, { par = null, level = null } = {}) {
  const ratio = capacity ? Math.max(0, Math.min(1, (stock || 0) / capacity)) : 0;
  if (level === null) level = stock === 0 ? "empty" : par !== null && stock < par ? "low" : "";
  level = level && level !== "ok" ? `is-${level}` : "";
  return h(
    "div",
    {
      class: `bar ${level}`,
      role: "meter",
      "aria-valuemin": 0,
      "aria-valuemax": capacity || 0,
      "aria-valuenow": stock || 0,
      "aria-label": t("common.stock"),
    },
    h("span", { style: { width: `${Math.round(ratio * 100)}%` } }),
  );
}

/**
 * A modal form. ``fields``: [{name, label, type, value, options: [[value, label]], required,
 * min, max, step, autocomplete}]. Resolves to the values, or null when cancelled.
 */
export function formDialog({ title, fields, submit = t("common.save"), danger = false, body = null }) {
  return new Promise((resolve) => {
    const inputs = {};
    const form = h("form", { method: "dialog" });
    const content = h("div", { class: "dialog-body" }, h("h2", {}, title), body);
    for (const field of fields || []) {
      const id = `dlg-${field.name}`;
      let input;
      if (field.type === "select") {
        input = h(
          "select",
          { id, name: field.name },
          field.options.map(([value, label]) => h("option", { value, selected: String(value) === String(field.value) }, label)),
        );
      } else if (field.type === "checkbox") {
        input = h("input", { id, name: field.name, type: "checkbox", checked: Boolean(field.value) });
      } else {
        input = h("input", {
          id,
          name: field.name,
          type: field.type || "text",
          value: field.value ?? "",
          required: field.required,
          min: field.min,
          max: field.max,
          step: field.step,
          inputmode: field.inputmode,
          autocomplete: field.autocomplete || "off",
          minlength: field.minlength,
        });
      }
      inputs[field.name] = input;
      content.appendChild(h("div", { class: "field" }, h("label", { for: id }, field.label), input));
    }
    const dialog = h("dialog", {});
    const cancel = h("button", { type: "button", value: "cancel" }, t("common.cancel"));
    const ok = h("button", { type: "submit", class: danger ? "danger" : "primary", value: "ok" }, submit);
    mount(form, content, h("div", { class: "dialog-actions" }, cancel, ok));
    dialog.appendChild(form);
    document.body.appendChild(dialog);
    let result = null;
    cancel.addEventListener("click", () => dialog.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      result = {};
      for (const [name, input] of Object.entries(inputs)) {
        result[name] = input.type === "checkbox" ? input.checked : input.value;
      }
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    dialog.showModal();
    const first = Object.values(inputs)[0] || ok;
    first.focus();
  });
}

export async function confirmDialog(title, message, submit = t("common.confirm"), danger = false) {
  const result = await formDialog({ title, fields: [], submit, danger, body: h("p", {}, message) });
  return result !== null;
}

/**
 * A page: a web component that renders when connected and runs every ``own``ed cleanup
 * (unsubscribe, timers) when it leaves the document.
 */
export class Page extends HTMLElement {
  connectedCallback() {
    this.cleanups = [];
    this.classList.add("page");
    Promise.resolve(this.start()).catch((error) => {
      mount(this, notice(errorText(error), "error"));
    });
  }

  disconnectedCallback() {
    for (const fn of this.cleanups.splice(0)) {
      try {
        fn();
      } catch (error) {
        console.error(error);
      }
    }
  }

  own(fn) {
    this.cleanups.push(fn);
    return fn;
  }

  /** Render and load; override. */
  async start() {}
}

export function definePage(name, constructor) {
  define(name, constructor);
}
