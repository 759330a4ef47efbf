// The fleet overview: every machine with its online state, alarms, stock and today's sales,
// kept live through the WebSocket (machine.*, slot.* and alarm.* state changes).

import { h, mount, debounce } from "../../common/dom.js";
import { formatNumber, t } from "../../common/i18n.js";
import { api, getFresh, money, session } from "../context.js";
import { Page, definePage, loading, pageHead, stockBar } from "../ui.js";

const FILTERS = ["all", "online", "offline", "alarms", "low"];
const MAX_SINGLE_REFRESHES = 20;

function stockLevel(machine) {
  const stock = machine.stock || {};
  if (stock.empty_slots) return "empty";
  if (stock.low_slots) return "low";
  return "ok";
}

class FleetPage extends Page {
  async start() {
    this.machines = new Map(); // id → machine json
    this.cards = new Map(); // id → {card, fields}
    this.byEntity = new Map(); // machine.<x> → id
    this.filter = sessionStorage.getItem("vendhub.fleet.filter") || "all";
    this.search = "";
    this.pending = new Set();
    this.flush = debounce(() => this.refreshPending(), 120);
    this.own(() => this.flush.cancel());
    this.reloadSoon = debounce(() => this.load().catch(() => {}), 400);
    this.own(() => this.reloadSoon.cancel());

    this.tiles = h("section", { class: "tiles wide", "aria-label": t("fleet.summary") });
    this.grid = h("section", { class: "machine-grid", "data-testid": "machine-grid", "aria-label": t("fleet.machines_label") }, loading());
    const searchBox = h("input", {
      type: "search",
      placeholder: t("fleet.search"),
      "aria-label": t("fleet.search"),
      value: this.search,
    });
    searchBox.addEventListener("input", () => {
      this.search = searchBox.value.trim().toLowerCase();
      this.applyFilter();
    });
    this.chips = h(
      "div",
      { class: "chips", role: "group", "aria-label": t("fleet.filter") },
      FILTERS.map((name) => {
        const chip = h("button", { type: "button", class: "chip", "data-filter": name, "aria-pressed": String(name === this.filter) }, t(`fleet.filters.${name}`));
        chip.addEventListener("click", () => {
          this.filter = name;
          sessionStorage.setItem("vendhub.fleet.filter", name);
          for (const other of this.chips.children) other.setAttribute("aria-pressed", String(other === chip));
          this.applyFilter();
        });
        return chip;
      }),
    );
    this.count = h("span", { class: "muted small-text", "data-testid": "machine-count" });
    mount(this, pageHead(t("fleet.title"), this.count), this.tiles, h("div", { class: "toolbar" }, searchBox, this.chips), this.grid);

    const socket = session.socket;
    this.own(socket.subscribeStates({ entity_id: ["machine.*", "slot.*", "alarm.*"] }, (change) => this.onChange(change)));
    const reconnected = () => this.reloadSoon();
    socket.addEventListener("reconnected", reconnected);
    this.own(() => socket.removeEventListener("reconnected", reconnected));
    await this.load();
    this.dataset.ready = "true";
    performance.mark("vh-fleet-ready");
    this.dispatchEvent(new CustomEvent("page-ready", { bubbles: true }));
  }

  async load() {
    const list = await getFresh("/api/machines");
    if (!this.dataset.ready) performance.mark("vh-fleet-data");
    const seen = new Set();
    for (const machine of list) {
      seen.add(machine.id);
      this.machines.set(machine.id, machine);
      this.byEntity.set(machine.entity_id, machine.id);
    }
    for (const id of [...this.machines.keys()]) if (!seen.has(id)) this.machines.delete(id);
    this.renderGrid();
  }

  sorted() {
    return [...this.machines.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  renderGrid() {
    const cards = [];
    const keep = new Map();
    for (const machine of this.sorted()) {
      const entry = this.cards.get(machine.id) || this.makeCard(machine);
      this.updateCard(entry, machine);
      keep.set(machine.id, entry);
      cards.push(entry.card);
    }
    this.cards = keep;
    if (cards.length) mount(this.grid, cards);
    else mount(this.grid, h("div", { class: "empty" }, t("fleet.no_machines")));
    this.applyFilter();
    this.renderTiles();
  }

  /** The card of one machine: a clone of a prototype built once (200 cards render fast). */
  makeCard(machine) {
    if (!this.prototype) {
      const fact = (name, label) => h("div", {}, h("span", { class: "label" }, label), h("span", { class: "value", "data-field": name }));
      this.prototype = h(
        "a",
        { class: "card machine-card" },
        h("div", { class: "title" }, h("span", { class: "dot" }), h("span", { class: "name", "data-field": "name" }), h("span", { class: "row", "data-field": "badges" })),
        h("div", { class: "location", "data-field": "location" }),
        h("div", { "data-field": "bar" }),
        h(
          "div",
          { class: "facts" },
          fact("stock", t("fleet.stock")),
          fact("refill", t("fleet.refill")),
          fact("sales", t("fleet.sales_today")),
          fact("revenue", t("fleet.revenue_today")),
        ),
      );
    }
    const card = this.prototype.cloneNode(true);
    card.href = `#/machines/${encodeURIComponent(machine.id)}`;
    card.dataset.machine = machine.id;
    const fields = { dot: card.querySelector(".dot") };
    for (const el of card.querySelectorAll("[data-field]")) fields[el.dataset.field] = el;
    return { card, fields };
  }

  updateCard({ card, fields }, machine) {
    const stock = machine.stock || { items: 0, capacity: 0, empty_slots: 0, low_slots: 0 };
    card.classList.toggle("offline", !machine.online);
    card.dataset.online = String(machine.online);
    card.dataset.alarms = String(machine.open_alarms || 0);
    card.dataset.stock = stockLevel(machine);
    fields.dot.className = `dot ${machine.online ? "ok" : "danger"}`;
    fields.dot.title = machine.online ? t("machine.online") : t("machine.offline");
    fields.name.textContent = machine.name;
    fields.location.textContent = machine.location || "\u00a0";
    const badges = [];
    if (!machine.online) badges.push(h("span", { class: "badge danger" }, t("machine.offline")));
    if (machine.mode && machine.mode !== "normal") badges.push(h("span", { class: "badge info", "data-field": "mode" }, t(`modes.${machine.mode}`)));
    if (machine.open_alarms) {
      badges.push(h("span", { class: "badge warn", "data-field": "alarms", title: t("fleet.open_alarms") }, `⚠ ${machine.open_alarms}`));
    }
    mount(fields.badges, badges);
    mount(fields.bar, stockBar(stock.items, stock.capacity, { level: stockLevel(machine) }));
    fields.stock.textContent = `${formatNumber(stock.items)} / ${formatNumber(stock.capacity)}`;
    fields.refill.textContent =
      stock.empty_slots || stock.low_slots
        ? t("fleet.refill_slots", { low: stock.low_slots, empty: stock.empty_slots })
        : t("fleet.refill_none");
    fields.sales.textContent = formatNumber(machine.sales_today ?? 0);
    fields.revenue.textContent = money(machine.revenue_today ?? 0, machine.currency);
  }

  matches(machine) {
    if (this.search) {
      const text = `${machine.name} ${machine.id} ${machine.location || ""}`.toLowerCase();
      if (!text.includes(this.search)) return false;
    }
    switch (this.filter) {
      case "online":
        return machine.online;
      case "offline":
        return !machine.online;
      case "alarms":
        return machine.open_alarms > 0;
      case "low":
        return stockLevel(machine) !== "ok";
      default:
        return true;
    }
  }

  applyFilter() {
    let shown = 0;
    for (const [id, { card }] of this.cards) {
      const visible = this.matches(this.machines.get(id));
      card.hidden = !visible;
      shown += visible;
    }
    this.count.textContent = t("fleet.showing", { shown, total: this.machines.size, count: this.machines.size });
  }

  renderTiles() {
    const machines = [...this.machines.values()];
    const online = machines.filter((m) => m.online).length;
    const alarms = machines.reduce((sum, m) => sum + (m.open_alarms || 0), 0);
    const sales = machines.reduce((sum, m) => sum + (m.sales_today || 0), 0);
    const revenue = machines.reduce((sum, m) => sum + (m.revenue_today || 0), 0);
    const low = machines.filter((m) => stockLevel(m) !== "ok").length;
    const items = machines.reduce((sum, m) => sum + ((m.stock && m.stock.items) || 0), 0);
    const capacity = machines.reduce((sum, m) => sum + ((m.stock && m.stock.capacity) || 0), 0);
    const tile = (name, label, value) =>
      h("div", { class: "tile", "data-tile": name }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
    mount(
      this.tiles,
      tile("online", t("fleet.tiles.online"), `${online} / ${machines.length}`),
      tile("alarms", t("fleet.tiles.alarms"), formatNumber(alarms)),
      tile("sales", t("fleet.tiles.sales"), formatNumber(sales)),
      tile("revenue", t("fleet.tiles.revenue"), money(revenue)),
      tile("low", t("fleet.tiles.low"), formatNumber(low)),
      tile("stock", t("fleet.tiles.stock"), capacity ? `${Math.round((100 * items) / capacity)} %` : "—"),
    );
  }

  machineOf(change) {
    const attributes = (change.new_state && change.new_state.attributes) || {};
    if (typeof attributes.machine_id === "string") return attributes.machine_id;
    const object = change.entity_id.split(".")[1] || "";
    let best = null;
    for (const id of this.machines.keys()) {
      if (object.startsWith(`${id}_`) && (!best || id.length > best.length)) best = id;
    }
    return best;
  }

  onChange(change) {
    const domain = change.entity_id.split(".")[0];
    if (domain === "machine") {
      const id = this.byEntity.get(change.entity_id);
      const machine = id && this.machines.get(id);
      if (!machine || !change.new_state) {
        this.reloadSoon();
        return;
      }
      const state = change.new_state;
      const attributes = state.attributes || {};
      machine.online = state.state === "online";
      machine.state = state.state;
      for (const key of ["mode", "sales_today", "revenue_today", "location", "currency"]) {
        if (key in attributes) machine[key] = attributes[key];
      }
      if (attributes.friendly_name) machine.name = attributes.friendly_name;
      const entry = this.cards.get(id);
      if (entry) this.updateCard(entry, machine);
      this.applyFilter();
      this.renderTiles();
      return;
    }
    const id = this.machineOf(change);
    if (id && this.machines.has(id)) {
      this.pending.add(id);
      this.flush();
    } else if (domain === "alarm") {
      this.reloadSoon();
    }
  }

  async refreshPending() {
    const ids = [...this.pending];
    this.pending.clear();
    if (!ids.length) return;
    if (ids.length > MAX_SINGLE_REFRESHES) {
      await this.load().catch(() => {});
      return;
    }
    const results = await Promise.allSettled(ids.map((id) => api.get(`/api/machines/${encodeURIComponent(id)}`)));
    for (const result of results) {
      if (result.status !== "fulfilled") continue;
      const machine = result.value;
      delete machine.slots;
      this.machines.set(machine.id, machine);
      const entry = this.cards.get(machine.id);
      if (entry) this.updateCard(entry, machine);
    }
    this.applyFilter();
    this.renderTiles();
  }
}

definePage("vh-page-fleet", FleetPage);
