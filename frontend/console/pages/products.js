// Products (gathered from the slot plans) and the planogram editor: every slot of a machine
// with its product, price and capacity, changed together in one config version.

import { h, mount } from "../../common/dom.js";
import { formatNumber, label, minorUnits, t } from "../../common/i18n.js";
import { api, can, go, money, routeParts } from "../context.js";
import { Page, definePage, errorText, loading, notice, pageHead, toast, toastError } from "../ui.js";

const SLOT_CODE = /^[A-Za-z0-9_-]{1,16}$/;

function priceText(product) {
  return product.price_min === product.price_max
    ? money(product.price_min, product.currency)
    : `${money(product.price_min, product.currency)} – ${money(product.price_max, product.currency)}`;
}

class ProductsPage extends Page {
  async start() {
    this.machineId = routeParts()[1] || "";
    this.products = h("section", { class: "card stack" }, loading());
    this.editor = h("section", { class: "card stack", "data-testid": "planogram-editor" });
    mount(this, pageHead(t("products.title")), h("div", { class: "stack" }, this.editor, this.products));
    const [machines] = await Promise.all([api.get("/api/machines"), this.loadProducts()]);
    this.machines = machines;
    if (!this.machineId && machines.length) this.machineId = machines[0].id;
    await this.loadPlanogram();
    this.dataset.ready = "true";
  }

  async loadProducts() {
    const products = await api.get("/api/products");
    mount(
      this.products,
      h("h2", {}, t("products.catalog")),
      h("p", { class: "muted small-text" }, t("products.catalog_note")),
      products.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { "data-testid": "products" },
              h(
                "thead",
                {},
                h("tr", {}, h("th", {}, t("products.product")), h("th", { class: "num" }, t("products.price")), h("th", { class: "num" }, t("products.machines")), h("th", { class: "num" }, t("products.slots")), h("th", { class: "num" }, t("products.stock"))),
              ),
              h(
                "tbody",
                {},
                products.map((p) =>
                  h("tr", {}, h("td", {}, p.product), h("td", { class: "num" }, priceText(p)), h("td", { class: "num" }, formatNumber(p.machines.length)), h("td", { class: "num" }, formatNumber(p.slots)), h("td", { class: "num" }, formatNumber(p.stock))),
                ),
              ),
            ),
          )
        : h("div", { class: "empty" }, t("products.none")),
    );
  }

  async loadPlanogram() {
    const select = h(
      "select",
      { id: "planogram-machine", "data-testid": "planogram-machine", style: { width: "auto" } },
      this.machines.map((m) => h("option", { value: m.id, selected: m.id === this.machineId }, m.name)),
    );
    select.addEventListener("change", () => go(`/products/${encodeURIComponent(select.value)}`));
    const head = h("div", { class: "spread" }, h("h2", {}, t("products.planogram")), h("div", { class: "row" }, h("label", { for: "planogram-machine", class: "sr-only" }, t("products.machine")), select));
    if (!this.machineId) {
      mount(this.editor, head, h("div", { class: "empty" }, t("fleet.no_machines")));
      return;
    }
    let plan;
    try {
      plan = await api.get(`/api/planograms/${encodeURIComponent(this.machineId)}`);
    } catch (error) {
      mount(this.editor, head, notice(errorText(error), "error"));
      return;
    }
    const editable = can("manage_catalog");
    const currency = plan.currency || "EUR";
    const unit = minorUnits(currency);
    const rows = [];
    const body = h("tbody", {});
    const addRow = (slot, isNew = false) => {
      const code = h("input", { class: "code-input", value: slot.code, disabled: !isNew, "aria-label": t("products.code") });
      const product = h("input", { value: slot.product || "", disabled: !editable, "aria-label": t("products.product") });
      const price = h("input", { type: "number", class: "price-input", min: 0, step: 1 / unit, value: slot.price !== null ? (slot.price / unit).toFixed(Math.round(Math.log10(unit))) : "", disabled: !editable, inputmode: "decimal", "aria-label": t("products.price") });
      const capacity = h("input", { class: "capacity-input", type: "number", min: 1, step: 1, value: slot.capacity ?? "", disabled: !editable, "aria-label": t("products.capacity") });
      rows.push({ slot, isNew, code, product, price, capacity });
      body.appendChild(
        h(
          "tr",
          { "data-slot": slot.code || "" },
          h("td", { "data-label": t("products.code") }, code),
          h("td", { "data-label": t("products.product"), class: "wide" }, product),
          h("td", { "data-label": t("products.price_in", { currency }) }, price),
          h("td", { "data-label": t("products.capacity") }, capacity),
          h("td", { class: "num", "data-label": t("products.stock") }, slot.stock ?? "—"),
        ),
      );
    };
    for (const slot of plan.slots) addRow(slot);
    const message = h("div", { "aria-live": "polite" });
    const save = h("button", { type: "button", class: "primary", disabled: !editable, "data-testid": "save-planogram" }, t("products.save"));
    const add = h("button", { type: "button", disabled: !editable }, t("products.add_slot"));
    add.addEventListener("click", () => addRow({ code: "", product: "", price: null, capacity: null, stock: null }, true));
    save.addEventListener("click", async () => {
      const changes = {};
      mount(message);
      for (const row of rows) {
        const code = row.code.value.trim();
        const entry = {};
        const product = row.product.value.trim();
        const price = row.price.value === "" ? null : Math.round(Number(row.price.value) * unit);
        const capacity = row.capacity.value === "" ? null : Number(row.capacity.value);
        if (row.isNew) {
          if (!code && !product) continue;
          if (!SLOT_CODE.test(code) || !product || price === null || !capacity) {
            mount(message, notice(t("products.new_slot_incomplete"), "error"));
            return;
          }
          Object.assign(entry, { product, price, capacity });
        } else {
          if (product && product !== row.slot.product) entry.product = product;
          if (price !== null && price !== row.slot.price) entry.price = price;
          if (capacity && capacity !== row.slot.capacity) entry.capacity = capacity;
        }
        if (Object.keys(entry).length) changes[code] = entry;
      }
      if (!Object.keys(changes).length) {
        mount(message, notice(t("products.nothing_changed")));
        return;
      }
      save.disabled = true;
      try {
        const result = await api.put(`/api/planograms/${encodeURIComponent(this.machineId)}`, { slots: changes });
        toast(t("products.saved", { count: Object.keys(changes).length, delivery: label("delivery", result.delivery) }));
        await Promise.all([this.loadPlanogram(), this.loadProducts()]);
      } catch (error) {
        toastError(error);
        save.disabled = false;
      }
    });
    mount(
      this.editor,
      head,
      editable ? null : notice(t("products.read_only")),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "stack-table" },
          h(
            "thead",
            {},
            h("tr", {}, h("th", {}, t("products.code")), h("th", {}, t("products.product")), h("th", {}, t("products.price_in", { currency })), h("th", {}, t("products.capacity")), h("th", { class: "num" }, t("products.stock"))),
          ),
          body,
        ),
      ),
      message,
      h("div", { class: "row" }, save, add),
    );
  }
}

definePage("vh-page-products", ProductsPage);
