// Automations: the list (enable or disable, run now), and each one's traces shown step by
// step: what triggered it, every condition with why it held or not, every action's result.

import { h, mount, debounce } from "../../common/dom.js";
import { formatDateTime, formatNumber, formatRelative, label, t } from "../../common/i18n.js";
import { api, can, go, routeParts, session } from "../context.js";
import { Page, definePage, loading, notice, pageHead, toast, toastError } from "../ui.js";

const OUTCOME_CLASS = { ran: "ok", condition_failed: "", error: "danger", stopped: "warn", aborted: "warn" };

function stepName(path) {
  const parts = String(path).split("/");
  const out = [];
  for (let i = 0; i < parts.length; i += 2) {
    const kind = parts[i];
    const index = Number(parts[i + 1]);
    const name = label("automations.step_kinds", kind);
    out.push(Number.isFinite(index) ? `${name} ${index + 1}` : name);
  }
  return out.join(" › ");
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

class AutomationsPage extends Page {
  async start() {
    this.automationId = routeParts()[1] || null;
    if (this.automationId) return this.startDetail();
    this.list = h("div", { class: "list", "data-testid": "automation-list" }, loading());
    mount(this, pageHead(t("automations.title")), h("p", { class: "muted" }, t("automations.explain")), this.list);
    this.reload = debounce(() => this.load(), 400);
    this.own(() => this.reload.cancel());
    this.own(session.socket.subscribeStates({ entity_id: "automation.*" }, () => this.reload()));
    await this.load();
    this.dataset.ready = "true";
  }

  async load() {
    const automations = await api.get("/api/automations");
    if (!automations.length) {
      mount(this.list, h("div", { class: "empty card" }, t("automations.none")));
      return;
    }
    mount(this.list, automations.map((automation) => this.item(automation)));
  }

  item(automation) {
    const manage = can("manage_automations");
    const toggle = h("input", {
      type: "checkbox",
      role: "switch",
      checked: automation.enabled,
      disabled: !manage,
      "aria-label": t("automations.enabled"),
      "data-testid": "toggle",
    });
    toggle.addEventListener("change", async () => {
      toggle.disabled = true;
      try {
        const action = toggle.checked ? "enable" : "disable";
        await api.post(`/api/automations/${encodeURIComponent(automation.id)}/${action}`);
        toast(t(toggle.checked ? "automations.enabled_now" : "automations.disabled_now", { name: automation.name }));
      } catch (error) {
        toggle.checked = !toggle.checked;
        toastError(error);
      } finally {
        toggle.disabled = false;
      }
    });
    const run = h("button", { type: "button", class: "small", disabled: !manage, "data-testid": "run" }, t("automations.run"));
    run.addEventListener("click", async () => {
      run.disabled = true;
      try {
        const trace = await api.post(`/api/automations/${encodeURIComponent(automation.id)}/trigger`, {});
        toast(t("automations.ran", { name: automation.name, outcome: label("automations.outcomes", trace.outcome) }));
        go(`/automations/${encodeURIComponent(automation.id)}`);
      } catch (error) {
        toastError(error);
      } finally {
        run.disabled = false;
      }
    });
    return h(
      "article",
      { class: "card list-item", "data-automation": automation.id },
      h(
        "div",
        { class: "main" },
        h("div", { class: "row" }, h("strong", {}, automation.name), automation.running ? h("span", { class: "badge info" }, t("automations.running")) : null),
        h(
          "div",
          { class: "muted small-text" },
          [
            label("automations.modes", automation.mode || "single"),
            automation.last_triggered ? t("automations.last_triggered", { when: formatRelative(automation.last_triggered) }) : t("automations.never"),
          ].join(" · "),
        ),
      ),
      h(
        "div",
        { class: "actions" },
        h("label", { class: "row", style: { margin: 0 } }, toggle, h("span", {}, t("automations.enabled"))),
        run,
        // A trace shows states of any machine: it needs manage_hub, as the API does.
        can("manage_hub")
          ? h("a", { class: "button small", href: `#/automations/${encodeURIComponent(automation.id)}` }, t("automations.traces"))
          : null,
      ),
    );
  }

  // ---- one automation's traces ----

  async startDetail() {
    if (!can("manage_hub")) {
      // A trace holds states of any machine: the API gives traces to admins only.
      mount(
        this,
        h("a", { href: "#/automations", class: "small-text" }, `← ${t("automations.title")}`),
        notice(t("automations.traces_admin_only")),
      );
      this.dataset.ready = "true";
      return;
    }
    mount(this, loading());
    const [automation, traces] = await Promise.all([
      api.get(`/api/automations/${encodeURIComponent(this.automationId)}`),
      api.get(`/api/automations/${encodeURIComponent(this.automationId)}/traces`),
    ]);
    this.traces = traces;
    this.traceList = h("div", { class: "list", "data-testid": "trace-list" });
    this.traceView = h("section", { class: "card stack", "data-testid": "trace" });
    mount(
      this,
      h("a", { href: "#/automations", class: "small-text" }, `← ${t("automations.title")}`),
      pageHead(automation.name),
      h("div", { class: "machine-layout" }, h("div", { class: "stack" }, h("h2", {}, t("automations.traces")), this.traceList), this.traceView),
    );
    this.renderTraces(traces[0] ? traces[0].run_id : null);
    this.dataset.ready = "true";
  }

  renderTraces(selected) {
    if (!this.traces.length) {
      mount(this.traceList, h("div", { class: "empty card" }, t("automations.no_traces")));
      mount(this.traceView, h("div", { class: "muted" }, t("automations.no_traces")));
      return;
    }
    mount(
      this.traceList,
      this.traces.map((trace) => {
        const item = h(
          "button",
          { type: "button", class: "card list-item", "data-run": trace.run_id, "aria-pressed": String(trace.run_id === selected), style: { width: "100%" } },
          h(
            "span",
            { class: "main" },
            h("span", { class: `badge ${OUTCOME_CLASS[trace.outcome] || ""}` }, label("automations.outcomes", trace.outcome)),
            " ",
            formatDateTime(trace.started, { dateStyle: "short", timeStyle: "medium" }),
          ),
          h("span", { class: "muted small-text" }, trace.duration_ms !== null ? `${formatNumber(trace.duration_ms, { maximumFractionDigits: 1 })} ms` : ""),
        );
        item.addEventListener("click", () => this.renderTraces(trace.run_id));
        return item;
      }),
    );
    this.renderTrace(this.traces.find((trace) => trace.run_id === selected) || this.traces[0]);
  }

  renderTrace(trace) {
    const trigger = trace.trigger || {};
    const steps = (trace.steps || []).map((step) => {
      const result = step.result || {};
      const details = [];
      if (typeof result.result === "boolean") {
        details.push(h("div", {}, h("span", { class: `badge ${result.result ? "ok" : "warn"}` }, result.result ? t("automations.held") : t("automations.did_not_hold")), " ", result.why || ""));
      } else if (result.service) {
        details.push(h("div", {}, t("automations.called", { service: result.service })), json(result.data || {}));
      } else if (Object.keys(result).length) {
        details.push(json(result));
      }
      if (step.changed_variables && Object.keys(step.changed_variables).length) {
        details.push(h("details", {}, h("summary", { class: "small-text" }, t("automations.variables")), json(step.changed_variables)));
      }
      if (step.error) details.push(notice(step.error, "error"));
      const ms = step.started && step.finished ? new Date(step.finished) - new Date(step.started) : null;
      return h(
        "li",
        { class: step.error ? "error" : "", "data-path": step.path },
        h("div", { class: "spread" }, h("strong", {}, stepName(step.path)), h("span", { class: "muted small-text" }, ms !== null ? `${ms} ms` : "")),
        details,
      );
    });
    mount(
      this.traceView,
      h("h2", {}, t("automations.run_of", { when: formatDateTime(trace.started, { dateStyle: "medium", timeStyle: "medium" }) })),
      h(
        "dl",
        { class: "facts-list" },
        h("dt", {}, t("automations.outcome")),
        h("dd", {}, h("span", { class: `badge ${OUTCOME_CLASS[trace.outcome] || ""}` }, label("automations.outcomes", trace.outcome))),
        h("dt", {}, t("automations.trigger")),
        h("dd", {}, trigger.description || trigger.platform || "—"),
        h("dt", {}, t("automations.duration")),
        h("dd", {}, trace.duration_ms !== null ? `${formatNumber(trace.duration_ms, { maximumFractionDigits: 2 })} ms` : "—"),
      ),
      trace.error ? notice(trace.error, "error") : null,
      h("h3", {}, t("automations.steps")),
      steps.length ? h("ol", { class: "steps" }, steps) : h("div", { class: "muted" }, t("automations.no_steps")),
    );
  }
}

definePage("vh-page-automations", AutomationsPage);
