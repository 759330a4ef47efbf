// Stock and refills: the slots below their par level (refill a slot or a whole machine to
// capacity), and the latest stock movements from the ledger.

import { h, mount, debounce } from "../../common/dom.js";
import { formatDateTime, formatNumber, label, t } from "../../common/i18n.js";
import { api, can, session } from "../context.js";
import { Page, definePage, errorText, loading, notice, pageHead, stockBar, toast, toastError } from "../ui.js";

class StockPage extends Page {
  async start() {
    this.refill = h("section", { class: "card stack", "data-testid": "refill-list" }, loading());
    this.movements = h("section", { class: "card stack" }, loading());
    mount(this, pageHead(t("stock.title")), h("div", { class: "stack" }, this.refill, this.movements));
    this.reload = debounce(() => this.loadRefill(), 1000);
    this.own(() => this.reload.cancel());
    this.own(session.socket.subscribeStates({ entity_id: "slot.*" }, () => this.reload()));
    await Promise.all([this.loadRefill(), this.loadMovements()]);
    this.dataset.ready = "true";
  }

  async loadRefill() {
    const [levels, machines] = await Promise.all([api.get("/api/stock", { below_par: "true" }), this.machineNames()]);
    const groups = new Map();
    for (const level of levels) {
      if (!groups.has(level.machine_id)) groups.set(level.machine_id, []);
      groups.get(level.machine_id).push(level);
    }
    const operate = can("operate_machines");
    const button = (label, machineId, slot) => {
      const b = h("button", { type: "button", class: "small", disabled: !operate, "data-testid": slot ? "refill-slot" : "refill-machine" }, label);
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          const result = await api.post(`/api/machines/${encodeURIComponent(machineId)}/restock`, slot ? { slot } : {});
          if (!result.ok) throw new Error(result.error || t("machine.command_failed"));
          toast(slot ? t("machine.slot_refilled", { slot }) : t("machine.refilled"));
          await Promise.all([this.loadRefill(), this.loadMovements()]);
        } catch (error) {
          toastError(error);
          b.disabled = false;
        }
      });
      return b;
    };
    const rows = [];
    for (const [machineId, slots] of groups) {
      rows.push(
        h(
          "tr",
          { class: "group" },
          h("th", { colspan: 4 }, h("a", { href: `#/machines/${encodeURIComponent(machineId)}` }, machines.get(machineId) || machineId)),
          h("th", { class: "num" }, button(t("stock.refill_machine"), machineId, null)),
        ),
      );
      for (const level of slots) {
        rows.push(
          h(
            "tr",
            { "data-slot": `${machineId}/${level.slot_code}` },
            h("td", { class: "mono", "data-label": t("stock.slot") }, level.slot_code || "—"),
            h("td", { "data-label": t("stock.product") }, level.product || "—"),
            h("td", { class: "wide", style: { "min-width": "120px" } }, stockBar(level.quantity, level.capacity, { par: level.par_level })),
            h("td", { class: "num", "data-label": t("stock.quantity") }, `${level.quantity ?? "?"} / ${level.capacity ?? "?"} (${t("stock.par", { par: level.par_level ?? "—" })})`),
            h("td", { class: "num" }, level.slot_code ? button(t("stock.refill"), machineId, level.slot_code) : null),
          ),
        );
      }
    }
    mount(
      this.refill,
      h("h2", {}, t("stock.to_refill")),
      rows.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "stack-table" },
              h("thead", {}, h("tr", {}, h("th", {}, t("stock.slot")), h("th", {}, t("stock.product")), h("th", {}, t("stock.level")), h("th", { class: "num" }, t("stock.quantity")), h("th", {}))),
              h("tbody", {}, rows),
            ),
          )
        : h("div", { class: "empty" }, t("stock.all_full")),
      h("p", { class: "muted small-text" }, t("stock.refill_note")),
    );
  }

  async machineNames() {
    if (!this.names) {
      const machines = await api.get("/api/machines");
      this.names = new Map(machines.map((m) => [m.id, m.name]));
    }
    return this.names;
  }

  async loadMovements() {
    let page;
    try {
      page = await api.get("/api/stock/movements", { limit: 50 });
    } catch (error) {
      mount(this.movements, h("h2", {}, t("stock.movements")), notice(error.status === 503 ? t("analytics.no_recorder") : errorText(error), "error"));
      return;
    }
    mount(
      this.movements,
      h("h2", {}, t("stock.movements")),
      page.items.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { "data-testid": "movements", class: "stack-table" },
              h(
                "thead",
                {},
                h("tr", {}, h("th", {}, t("stock.time")), h("th", {}, t("stock.machine")), h("th", {}, t("stock.slot")), h("th", {}, t("stock.product")), h("th", {}, t("stock.kind")), h("th", { class: "num" }, t("stock.change")), h("th", { class: "num" }, t("stock.after"))),
              ),
              h(
                "tbody",
                {},
                page.items.map((m) =>
                  h(
                    "tr",
                    {},
                    h("td", { "data-label": t("stock.time") }, formatDateTime(m.time, { dateStyle: "short", timeStyle: "medium" })),
                    h("td", { "data-label": t("stock.machine") }, (this.names && this.names.get(m.machine_id)) || m.machine_id),
                    h("td", { class: "mono", "data-label": t("stock.slot") }, m.slot_code),
                    h("td", { "data-label": t("stock.product") }, m.product || "—"),
                    h("td", { "data-label": t("stock.kind") }, label("stock.kinds", m.kind)),
                    h("td", { class: "num", "data-label": t("stock.change") }, m.quantity > 0 ? `+${formatNumber(m.quantity)}` : formatNumber(m.quantity)),
                    h("td", { class: "num", "data-label": t("stock.after") }, m.stock_after ?? "—"),
                  ),
                ),
              ),
            ),
          )
        : h("div", { class: "empty" }, t("stock.no_movements")),
    );
  }
}

definePage("vh-page-stock", StockPage);
