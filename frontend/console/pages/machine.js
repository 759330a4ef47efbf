// One machine: its facts, commands (mode, service, refill), the planogram with stock and
// prices (click a slot to change it), the temperature chart, its alarms and its events, live.

import { h, mount, debounce } from "../../common/dom.js";
import { formatDateTime, formatNumber, formatRelative, formatTime, label, minorUnits, t } from "../../common/i18n.js";
import { api, can, money, routeParts, session } from "../context.js";
import { chartWidth, lineChart } from "../charts.js";
import { Page, definePage, formDialog, loading, stockBar, toast, toastError } from "../ui.js";

const MODES = ["normal", "service", "out_of_order", "free_vend"];
const EVENT_TYPES = [
  "vend_completed",
  "vend_failed",
  "machine_online",
  "machine_offline",
  "stock_refilled",
  "cash_collected",
  "alarm_raised",
  "alarm_cleared",
];
const MAX_EVENTS = 60;

function rowOf(code) {
  const match = /^[A-Za-z]+/.exec(code);
  return match ? match[0].toUpperCase() : "#";
}

function slotFromState(slot, state) {
  const attributes = state.attributes || {};
  slot.available = state.state !== "unavailable";
  slot.stock = /^\d+$/.test(state.state) ? Number(state.state) : slot.available ? slot.stock : null;
  for (const [key, from] of [
    ["product", "product"],
    ["price", "price"],
    ["capacity", "capacity"],
    ["par", "par_level"],
    ["locked", "locked"],
    ["currency", "currency"],
  ]) {
    if (from in attributes) slot[key] = attributes[from];
  }
}

export function eventText(event) {
  const data = event.data || {};
  const values = {
    slot: data.slot ?? "",
    product: data.product ?? "",
    price: data.price !== undefined ? money(data.price, data.currency) : "",
    method: data.payment_method ? label("payment_methods", data.payment_method) : "",
    reason: data.reason ? label("failure_reasons", data.reason) : "",
    amount: data.amount !== undefined ? money(data.amount, data.currency) : "",
    message: data.message ?? data.code ?? "",
  };
  return t(`events.${event.event_type}`, values);
}

class MachinePage extends Page {
  async start() {
    this.id = routeParts()[1];
    mount(this, loading());
    this.machine = await api.get(`/api/machines/${encodeURIComponent(this.id)}`);
    this.entities = new Map();
    this.temperature = [];
    this.events = [];
    this.renderLayout();
    const socket = session.socket;
    this.own(socket.subscribeStates({ machine_id: this.id }, (change) => this.onState(change)));
    this.own(socket.subscribeEvents(EVENT_TYPES, { machine_id: this.id }, (event) => this.onEvent(event)));
    this.reloadAlarms = debounce(() => this.loadAlarms(), 300);
    this.own(() => this.reloadAlarms.cancel());
    const reconnected = () => this.refresh();
    socket.addEventListener("reconnected", reconnected);
    this.own(() => socket.removeEventListener("reconnected", reconnected));
    await Promise.all([this.loadEntities(), this.loadAlarms(), this.loadEvents()]);
    this.dataset.ready = "true";
  }

  async refresh() {
    this.machine = await api.get(`/api/machines/${encodeURIComponent(this.id)}`);
    this.renderFacts();
    this.renderPlanogram();
    await Promise.all([this.loadEntities(), this.loadAlarms()]);
  }

  renderLayout() {
    this.head = h("div", { class: "page-head" });
    this.facts = h("section", { class: "card stack", "aria-labelledby": "facts-title" });
    this.commands = h("section", { class: "card stack" });
    this.planogram = h("section", { class: "card stack", "data-testid": "planogram" });
    this.chart = h("section", { class: "card stack", hidden: true });
    this.alarmBox = h("section", { class: "card stack" });
    this.eventBox = h("section", { class: "card stack" });
    mount(
      this,
      this.head,
      h(
        "div",
        { class: "machine-layout" },
        h("div", { class: "stack" }, this.planogram, this.chart),
        h("div", { class: "stack" }, this.facts, this.commands, this.alarmBox, this.eventBox),
      ),
    );
    this.renderFacts();
    this.renderCommands();
    this.renderPlanogram();
  }

  renderFacts() {
    const m = this.machine;
    mount(
      this.head,
      h(
        "div",
        {},
        h("a", { href: "#/fleet", class: "small-text" }, `← ${t("nav.fleet")}`),
        h(
          "h1",
          { class: "row" },
          h("span", { class: `dot ${m.online ? "ok" : "danger"}` }),
          h("span", { "data-field": "name" }, m.name),
          h("span", { class: `badge ${m.online ? "ok" : "danger"}`, "data-field": "online" }, m.online ? t("machine.online") : t("machine.offline")),
          h("span", { class: `badge ${m.mode === "normal" ? "" : "info"}`, "data-field": "mode" }, t(`modes.${m.mode || "normal"}`)),
        ),
      ),
    );
    const door = this.entityState("binary_sensor", "_door");
    const temp = this.entityState("sensor", "_temperature");
    const cash = this.entityState("sensor", "_cash_box");
    const fact = (label, value, name) => [h("dt", {}, label), h("dd", { "data-field": name }, value ?? "—")];
    mount(
      this.facts,
      h("h2", { id: "facts-title" }, t("machine.details")),
      h(
        "dl",
        { class: "facts-list" },
        fact(t("machine.location"), m.location, "location"),
        fact(t("machine.model"), m.model, "model"),
        fact(t("machine.firmware"), m.firmware, "firmware"),
        fact(t("machine.link"), m.link, "link"),
        fact(t("fleet.sales_today"), formatNumber(m.sales_today ?? 0), "sales"),
        fact(t("fleet.revenue_today"), money(m.revenue_today ?? 0, m.currency), "revenue"),
        fact(t("fleet.stock"), `${formatNumber(m.stock.items)} / ${formatNumber(m.stock.capacity)}`, "stock"),
        temp ? fact(t("machine.temperature"), `${temp.state} °C`, "temperature") : null,
        door ? fact(t("machine.door"), door.state === "on" ? t("machine.door_open") : door.state === "off" ? t("machine.door_closed") : t("common.unknown"), "door") : null,
        cash && /^\d+$/.test(cash.state) ? fact(t("machine.cash_box"), money(Number(cash.state), m.currency), "cash") : null,
        fact(t("machine.last_change"), formatRelative(m.last_changed), "changed"),
      ),
    );
  }

  entityState(domain, suffix) {
    for (const [entityId, state] of this.entities) {
      if (entityId.startsWith(`${domain}.`) && entityId.endsWith(suffix)) return state;
    }
    return null;
  }

  renderCommands() {
    if (!can("operate_machines")) {
      mount(this.commands);
      this.commands.hidden = true;
      return;
    }
    const select = h(
      "select",
      { id: "mode-select", "data-testid": "mode-select", "aria-label": t("machine.mode") },
      MODES.map((mode) => h("option", { value: mode, selected: mode === this.machine.mode }, t(`modes.${mode}`))),
    );
    const setMode = h("button", { type: "button", "data-testid": "set-mode" }, t("machine.set_mode"));
    setMode.addEventListener("click", () => this.run(setMode, () => this.setMode(select.value)));
    const service = h("button", { type: "button", "data-testid": "open-service" }, t("machine.open_service"));
    service.addEventListener("click", () => this.run(service, () => this.openForService()));
    const endService = h("button", { type: "button", "data-testid": "end-service" }, t("machine.end_service"));
    endService.addEventListener("click", () => this.run(endService, () => this.endService()));
    const refill = h("button", { type: "button", "data-testid": "refill-all" }, t("machine.refill_all"));
    refill.addEventListener("click", () => this.run(refill, () => this.refill()));
    mount(
      this.commands,
      h("h2", {}, t("machine.commands")),
      h("div", { class: "form-row" }, h("div", { class: "field" }, h("label", { for: "mode-select" }, t("machine.mode")), select), setMode),
      h("div", { class: "row" }, service, endService, refill),
    );
  }

  async run(button, action) {
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      toastError(error);
    } finally {
      button.disabled = false;
    }
  }

  async setMode(mode) {
    const result = await api.put(`/api/machines/${encodeURIComponent(this.id)}/mode`, { mode });
    this.machine.mode = mode;
    this.renderFacts();
    toast(t("machine.mode_set", { mode: t(`modes.${mode}`), delivery: label("delivery", result.delivery) }));
  }

  async command(name, args = {}) {
    const result = await api.post(`/api/machines/${encodeURIComponent(this.id)}/commands/${name}`, args);
    if (!result.ok) throw new Error(result.error || t("machine.command_failed"));
    return result;
  }

  async openForService() {
    await api.put(`/api/machines/${encodeURIComponent(this.id)}/mode`, { mode: "service" });
    this.machine.mode = "service";
    await this.command("set_door", { open: true });
    this.renderFacts();
    this.renderCommands();
    toast(t("machine.service_opened"));
  }

  async endService() {
    await this.command("set_door", { open: false });
    await api.put(`/api/machines/${encodeURIComponent(this.id)}/mode`, { mode: "normal" });
    this.machine.mode = "normal";
    this.renderFacts();
    this.renderCommands();
    toast(t("machine.service_ended"));
  }

  async refill(slot = null) {
    const result = await api.post(`/api/machines/${encodeURIComponent(this.id)}/restock`, slot ? { slot } : {});
    if (!result.ok) throw new Error(result.error || t("machine.command_failed"));
    toast(slot ? t("machine.slot_refilled", { slot }) : t("machine.refilled"));
  }

  renderPlanogram() {
    const rows = new Map();
    for (const slot of this.machine.slots) {
      const row = rowOf(slot.code);
      if (!rows.has(row)) rows.set(row, []);
      rows.get(row).push(slot);
    }
    this.slotTiles = new Map();
    const grid = h("div", { class: "planogram" });
    for (const [row, slots] of rows) {
      grid.appendChild(
        h(
          "div",
          { class: "planogram-row", role: "group", "aria-label": t("machine.row", { row }) },
          slots.map((slot) => {
            const tile = h("button", { type: "button", class: "slot", "data-slot": slot.code });
            tile.addEventListener("click", () => this.editSlot(slot));
            this.slotTiles.set(slot.entity_id, { tile, slot });
            this.renderSlot(tile, slot);
            return tile;
          }),
        ),
      );
    }
    mount(
      this.planogram,
      h("div", { class: "spread" }, h("h2", {}, t("machine.planogram")), h("span", { class: "muted small-text" }, t("machine.planogram_hint"))),
      this.machine.slots.length ? grid : h("div", { class: "empty" }, t("machine.no_slots")),
    );
  }

  renderSlot(tile, slot) {
    const level = slot.stock === 0 ? "is-empty" : slot.par !== null && slot.stock !== null && slot.stock < slot.par ? "is-low" : "";
    tile.className = `slot ${level} ${slot.available ? "" : "is-unavailable"}`;
    tile.setAttribute("aria-label", t("machine.slot_label", { slot: slot.code, product: slot.product || "—" }));
    mount(
      tile,
      h("span", { class: "code" }, h("span", {}, slot.code), slot.locked ? h("span", { class: "badge warn" }, t("machine.locked")) : null),
      h("span", { class: "product", "data-field": "product" }, slot.product || "—"),
      h("span", { class: "price", "data-field": "price" }, money(slot.price, slot.currency || this.machine.currency)),
      stockBar(slot.stock, slot.capacity, { par: slot.par }),
      h(
        "span",
        { class: "stock-text" },
        h("span", { "data-field": "stock" }, slot.stock === null ? "?" : String(slot.stock)),
        ` / ${slot.capacity ?? "?"}`,
      ),
    );
  }

  async editSlot(slot) {
    const currency = slot.currency || this.machine.currency || "EUR";
    const unit = minorUnits(currency);
    const fields = [];
    if (can("manage_catalog")) {
      fields.push(
        { name: "price", label: t("machine.price_in", { currency }), type: "number", value: ((slot.price ?? 0) / unit).toFixed(Math.round(Math.log10(unit))), min: 0, step: 1 / unit, required: true, inputmode: "decimal" },
        { name: "product", label: t("machine.product"), value: slot.product || "", required: true },
        { name: "capacity", label: t("machine.capacity"), type: "number", value: slot.capacity ?? 1, min: 1, step: 1, required: true },
      );
    }
    const body = h(
      "div",
      { class: "stack" },
      h("p", { class: "muted" }, t("machine.slot_stock", { stock: slot.stock ?? "?", capacity: slot.capacity ?? "?", par: slot.par ?? "—" })),
    );
    if (can("operate_machines")) {
      const refill = h("button", { type: "button", "data-testid": "refill-slot" }, t("machine.refill_slot"));
      refill.addEventListener("click", () => this.run(refill, () => this.refill(slot.code)));
      body.appendChild(refill);
    }
    if (!fields.length && !can("operate_machines")) return;
    const values = await formDialog({ title: t("machine.slot_title", { slot: slot.code }), fields, body, submit: fields.length ? t("common.save") : t("common.close") });
    if (!values || !fields.length) return;
    const changes = {};
    const price = Math.round(Number(String(values.price).replace(",", ".")) * unit);
    if (Number.isFinite(price) && price !== slot.price) changes.price = price;
    if (values.product.trim() && values.product.trim() !== slot.product) changes.product = values.product.trim();
    const capacity = Number(values.capacity);
    if (Number.isInteger(capacity) && capacity !== slot.capacity) changes.capacity = capacity;
    if (!Object.keys(changes).length) return;
    try {
      const result = await api.put(`/api/machines/${encodeURIComponent(this.id)}/slots/${encodeURIComponent(slot.code)}`, changes);
      Object.assign(slot, result.slot);
      const entry = this.slotTiles.get(slot.entity_id);
      if (entry) this.renderSlot(entry.tile, slot);
      toast(t("machine.slot_saved", { slot: slot.code, delivery: label("delivery", result.delivery) }));
    } catch (error) {
      toastError(error);
    }
  }

  async loadEntities() {
    const states = await api.get("/api/states", { machine_id: this.id });
    this.entities.clear();
    for (const state of states) this.entities.set(state.entity_id, state);
    this.renderFacts();
    const temp = this.entityState("sensor", "_temperature");
    if (temp) await this.loadTemperature(temp);
  }

  async loadTemperature(state) {
    this.temperatureEntity = state.entity_id;
    this.targetTemperature = state.attributes && state.attributes.target_temperature;
    try {
      const history = await api.get("/api/history", {
        entity_ids: state.entity_id,
        include_attributes: "false",
        start: new Date(Date.now() - 6 * 3600 * 1000).toISOString(),
      });
      this.temperature = (history[state.entity_id] || [])
        .filter((row) => row.state !== null && !Number.isNaN(Number(row.state)))
        .map((row) => ({ t: row.last_changed, v: Number(row.state) }));
    } catch (error) {
      this.temperature = [];
      if (error.status !== 503) toastError(error);
    }
    if (!this.temperature.length && !Number.isNaN(Number(state.state))) {
      this.temperature.push({ t: state.last_changed, v: Number(state.state) });
    }
    this.renderChart();
  }

  renderChart() {
    if (!this.temperatureEntity) return;
    this.chart.hidden = false;
    const points = [...this.temperature, ...(this.temperature.length ? [{ t: Date.now(), v: this.temperature[this.temperature.length - 1].v }] : [])];
    mount(
      this.chart,
      h("div", { class: "spread" }, h("h2", {}, t("machine.temperature_chart")), h("span", { class: "legend" }, h("span", {}, h("i", { style: { background: "var(--chart-1)" } }), t("machine.temperature")), this.targetTemperature !== undefined ? h("span", {}, h("i", { style: { background: "var(--chart-3)" } }), t("machine.target")) : null)),
      lineChart({
        points,
        title: t("machine.temperature_chart"),
        target: this.targetTemperature ?? null,
        width: chartWidth(this.chart),
        formatY: (v) => `${v.toFixed(1)}°`,
        formatX: (d) => formatDateTime(d, { hour: "2-digit", minute: "2-digit" }),
      }),
    );
  }

  async loadAlarms() {
    let alarms = [];
    try {
      alarms = await api.get("/api/alarms", { machine_id: this.id, active: "true" });
    } catch (error) {
      if (error.status !== 503) throw error;
    }
    const items = alarms.map((alarm) => {
      const actions = [];
      if (can("operate_machines") && alarm.status === "raised") {
        const ack = h("button", { type: "button", class: "small", "data-testid": "ack" }, t("alarms.acknowledge"));
        ack.addEventListener("click", () =>
          this.run(ack, async () => {
            await api.post(`/api/alarms/${encodeURIComponent(alarm.id)}/acknowledge`);
            await this.loadAlarms();
          }),
        );
        actions.push(ack);
      }
      return h(
        "div",
        { class: "list-item", "data-alarm": alarm.id },
        h("div", { class: "main" }, h("span", { class: `badge ${alarm.severity === "critical" ? "danger" : alarm.severity === "warning" ? "warn" : "info"}` }, label("severity", alarm.severity)), " ", alarm.message, h("div", { class: "muted small-text" }, `${label("alarm_status", alarm.status)} · ${formatRelative(alarm.raised_at)}`)),
        h("div", { class: "actions" }, actions),
      );
    });
    mount(
      this.alarmBox,
      h("div", { class: "spread" }, h("h2", {}, t("alarms.title")), h("a", { href: "#/alarms", class: "small-text" }, t("machine.all_alarms"))),
      items.length ? h("div", { class: "list" }, items) : h("div", { class: "muted" }, t("alarms.none_active")),
    );
  }

  async loadEvents() {
    try {
      const page = await api.get("/api/transactions", { machine_id: this.id, limit: 20 });
      const past = page.items.map((row) => ({
        event_type: row.outcome === "completed" ? "vend_completed" : "vend_failed",
        time_fired: row.time,
        data: { slot: row.slot_code, product: row.product, price: row.price, currency: row.currency, payment_method: row.payment_method, reason: row.failure_reason },
      }));
      const seen = new Set(this.events.map((e) => e.time_fired));
      this.events = [...this.events, ...past.filter((e) => !seen.has(e.time_fired))].slice(0, MAX_EVENTS);
    } catch (error) {
      if (error.status !== 503) toastError(error);
    }
    this.renderEvents();
  }

  renderEvents() {
    mount(
      this.eventBox,
      h("h2", {}, t("machine.events")),
      this.events.length
        ? h(
            "ol",
            { class: "event-list", "data-testid": "events" },
            this.events.map((event) =>
              h("li", { "data-event": event.event_type }, h("time", { datetime: event.time_fired }, formatTime(event.time_fired)), h("span", {}, eventText(event))),
            ),
          )
        : h("div", { class: "muted" }, t("machine.no_events")),
    );
  }

  onEvent(event) {
    this.events.unshift(event);
    this.events.length = Math.min(this.events.length, MAX_EVENTS);
    this.renderEvents();
  }

  onState(change) {
    const { entity_id: entityId, new_state: state } = change;
    if (state) this.entities.set(entityId, state);
    else this.entities.delete(entityId);
    const domain = entityId.split(".")[0];
    if (domain === "slot" && state) {
      const entry = this.slotTiles.get(entityId);
      if (entry) {
        slotFromState(entry.slot, state);
        this.renderSlot(entry.tile, entry.slot);
        this.recount();
      }
      return;
    }
    if (domain === "machine" && state) {
      const attributes = state.attributes || {};
      this.machine.online = state.state === "online";
      for (const key of ["mode", "sales_today", "revenue_today", "firmware", "model", "location"]) {
        if (key in attributes) this.machine[key] = attributes[key];
      }
      this.machine.last_changed = state.last_changed;
      this.renderFacts();
      return;
    }
    if (domain === "alarm") {
      this.reloadAlarms();
      return;
    }
    if (entityId === this.temperatureEntity && state && !Number.isNaN(Number(state.state))) {
      this.temperature.push({ t: state.last_changed, v: Number(state.state) });
      if (this.temperature.length > 2000) this.temperature.shift();
      this.renderChart();
    }
    this.renderFacts();
  }

  recount() {
    let items = 0;
    let capacity = 0;
    for (const slot of this.machine.slots) {
      capacity += slot.capacity || 0;
      items += slot.stock || 0;
    }
    this.machine.stock = { ...this.machine.stock, items, capacity };
    this.renderFacts();
  }
}

definePage("vh-page-machine", MachinePage);
