// Alarms: the active ones (acknowledge, clear) and the history of cleared ones, live.

import { h, mount, debounce } from "../../common/dom.js";
import { formatDateTime, formatRelative, label, t } from "../../common/i18n.js";
import { api, can, session } from "../context.js";
import { Page, definePage, loading, notice, pageHead, toast, toastError, errorText } from "../ui.js";

const SEVERITY_CLASS = { critical: "danger", warning: "warn", info: "info" };

class AlarmsPage extends Page {
  async start() {
    this.tab = sessionStorage.getItem("vendhub.alarms.tab") || "active";
    this.severity = "";
    this.list = h("div", { class: "list", "data-testid": "alarm-list" }, loading());
    this.tabs = h("div", { class: "tabs", role: "tablist" });
    const severity = h(
      "select",
      { "aria-label": t("alarms.severity"), style: { width: "auto" } },
      h("option", { value: "" }, t("alarms.all_severities")),
      ["critical", "warning", "info"].map((s) => h("option", { value: s }, t(`severity.${s}`))),
    );
    severity.addEventListener("change", () => {
      this.severity = severity.value;
      this.load();
    });
    mount(this, pageHead(t("alarms.title"), severity), this.tabs, this.list);
    this.renderTabs();
    this.reload = debounce(() => this.load(), 300);
    this.own(() => this.reload.cancel());
    this.own(session.socket.subscribeStates({ entity_id: "alarm.*" }, () => this.reload()));
    await this.load();
    this.dataset.ready = "true";
  }

  renderTabs() {
    mount(
      this.tabs,
      ["active", "history"].map((name) => {
        const tab = h("button", { type: "button", role: "tab", "data-tab": name, "aria-selected": String(name === this.tab) }, t(`alarms.tabs.${name}`));
        tab.addEventListener("click", () => {
          this.tab = name;
          sessionStorage.setItem("vendhub.alarms.tab", name);
          this.renderTabs();
          this.load();
        });
        return tab;
      }),
    );
  }

  async load() {
    let alarms;
    try {
      alarms = await api.get("/api/alarms", { active: this.tab === "active" ? "true" : "false", severity: this.severity || undefined, limit: 200 });
    } catch (error) {
      mount(this.list, notice(errorText(error), "error"));
      return;
    }
    if (!alarms.length) {
      mount(this.list, h("div", { class: "empty card" }, this.tab === "active" ? t("alarms.none_active") : t("alarms.none_history")));
      return;
    }
    mount(this.list, alarms.map((alarm) => this.item(alarm)));
  }

  item(alarm) {
    const actions = [];
    if (alarm.status !== "cleared" && can("operate_machines")) {
      if (alarm.status === "raised") {
        const ack = h("button", { type: "button", class: "small primary", "data-testid": "ack" }, t("alarms.acknowledge"));
        ack.addEventListener("click", () => this.act(ack, alarm, "acknowledge"));
        actions.push(ack);
      }
      const clear = h("button", { type: "button", class: "small", "data-testid": "clear" }, t("alarms.clear"));
      clear.addEventListener("click", () => this.act(clear, alarm, "clear"));
      actions.push(clear);
    }
    const when = [
      t("alarms.raised_at", { when: formatDateTime(alarm.raised_at), ago: formatRelative(alarm.raised_at) }),
      alarm.count > 1 ? t("alarms.count", { count: alarm.count }) : null,
      alarm.acknowledged_at ? t("alarms.acknowledged_at", { when: formatDateTime(alarm.acknowledged_at) }) : null,
      alarm.cleared_at ? t("alarms.cleared_at", { when: formatDateTime(alarm.cleared_at) }) : null,
    ].filter(Boolean);
    return h(
      "article",
      { class: "card list-item", "data-alarm": alarm.id, "data-status": alarm.status },
      h(
        "div",
        { class: "main" },
        h(
          "div",
          { class: "row" },
          h("span", { class: `badge ${SEVERITY_CLASS[alarm.severity] || ""}` }, label("severity", alarm.severity)),
          h("span", { class: "badge", "data-field": "status" }, label("alarm_status", alarm.status)),
          alarm.machine_id ? h("a", { href: `#/machines/${encodeURIComponent(alarm.machine_id)}` }, alarm.machine_id) : h("span", { class: "muted" }, t("alarms.hub")),
        ),
        h("div", { class: "alarm-message" }, alarm.message),
        h("div", { class: "muted small-text" }, when.join(" · ")),
      ),
      h("div", { class: "actions" }, actions),
    );
  }

  async act(button, alarm, action) {
    button.disabled = true;
    try {
      await api.post(`/api/alarms/${encodeURIComponent(alarm.id)}/${action}`);
      toast(t(action === "acknowledge" ? "alarms.acknowledged" : "alarms.cleared"));
      await this.load();
    } catch (error) {
      toastError(error);
      button.disabled = false;
    }
  }
}

definePage("vh-page-alarms", AlarmsPage);
