// Sales analytics: revenue and vends per hour or day, by machine, product and payment
// method, best and worst sellers; charts drawn as SVG.
//
// Compiled statistics (/api/statistics/sales) cover whole hours once the recorder has
// compiled them; the hours since are counted here from the ledger's transactions, so the
// charts include the last minutes too. Totals come from the ledger and are exact.

import { h, mount } from "../../common/dom.js";
import { formatDate, formatDateTime, formatNumber, label, minorUnits, t } from "../../common/i18n.js";
import { api, money, session } from "../context.js";
import { barChart, chartWidth, hbarChart } from "../charts.js";
import { Page, definePage, errorText, loading, notice, pageHead } from "../ui.js";

const HOUR = 3600 * 1000;
const RANGES = { today: 0, "7d": 7, "30d": 30 };
const MAX_TRANSACTION_PAGES = 5;

function zoneParts(date, timeZone) {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    hourCycle: "h23",
  }).formatToParts(date);
  const get = (type) => parts.find((p) => p.type === type).value;
  return { day: `${get("year")}-${get("month")}-${get("day")}`, hour: Number(get("hour")) };
}

/** Local midnight of the hub's time zone, ``days`` days ago, as a Date. */
function startOfDay(daysAgo, timeZone) {
  const now = new Date();
  let guess = new Date(now.getTime() - daysAgo * 24 * HOUR);
  const { hour } = zoneParts(guess, timeZone);
  guess = new Date(guess.getTime() - hour * HOUR);
  guess.setMinutes(0, 0, 0);
  // Whole-hour zones land on midnight; others are off by their minutes, which is fine here.
  return guess;
}

class AnalyticsPage extends Page {
  async start() {
    this.range = sessionStorage.getItem("vendhub.analytics.range") || "today";
    this.period = sessionStorage.getItem("vendhub.analytics.period") || (this.range === "today" ? "hour" : "day");
    this.machineId = "";
    this.body = h("div", { class: "stack" }, loading());
    const range = h(
      "select",
      { "aria-label": t("analytics.range"), "data-testid": "range", style: { width: "auto" } },
      Object.keys(RANGES).map((name) => h("option", { value: name, selected: name === this.range }, t(`analytics.ranges.${name}`))),
    );
    const period = h(
      "select",
      { "aria-label": t("analytics.period"), style: { width: "auto" } },
      ["hour", "day"].map((name) => h("option", { value: name, selected: name === this.period }, t(`analytics.periods.${name}`))),
    );
    this.machineSelect = h("select", { "aria-label": t("analytics.machine"), style: { width: "auto" } }, h("option", { value: "" }, t("analytics.all_machines")));
    range.addEventListener("change", () => {
      this.range = range.value;
      sessionStorage.setItem("vendhub.analytics.range", this.range);
      this.load();
    });
    period.addEventListener("change", () => {
      this.period = period.value;
      sessionStorage.setItem("vendhub.analytics.period", this.period);
      this.load();
    });
    this.machineSelect.addEventListener("change", () => {
      this.machineId = this.machineSelect.value;
      this.load();
    });
    mount(this, pageHead(t("analytics.title"), range, period, this.machineSelect), this.body);
    const [machines] = await Promise.all([api.get("/api/machines"), this.load()]);
    this.machineNames = new Map(machines.map((m) => [m.id, m.name]));
    for (const machine of machines) this.machineSelect.appendChild(h("option", { value: machine.id }, machine.name));
    if (this.lastData) this.render(this.lastData);
    this.dataset.ready = "true";
  }

  async load() {
    const timeZone = (session.config && session.config.time_zone) || undefined;
    const start = startOfDay(RANGES[this.range], timeZone);
    const end = new Date(Date.now() + 60 * 1000);
    const filter = this.machineId ? { machine_id: this.machineId } : {};
    try {
      const [sales, products, payments] = await Promise.all([
        api.get("/api/statistics/sales", { period: this.period, start: start.toISOString(), end: end.toISOString(), ...filter }),
        api.get("/api/products", filter),
        this.pages("/api/payments", { since: start.toISOString(), ...filter }),
      ]);
      const tail = await this.tail(sales, start, filter);
      this.lastData = { sales, products, payments, tail, start, end, timeZone };
      this.render(this.lastData);
    } catch (error) {
      mount(this.body, notice(error.status === 503 ? t("analytics.no_recorder") : errorText(error), "error"));
    }
  }

  async pages(path, query) {
    const items = [];
    let before;
    for (let page = 0; page < MAX_TRANSACTION_PAGES; page += 1) {
      const answer = await api.get(path, { ...query, limit: 1000, before });
      items.push(...answer.items);
      if (!answer.next) return { items, complete: true };
      before = answer.next;
    }
    return { items, complete: false };
  }

  /** The transactions after the last compiled period, as rows like the statistics'. */
  async tail(sales, start, filter) {
    const step = this.period === "hour" ? HOUR : 24 * HOUR;
    let covered = start.getTime();
    for (const row of sales.statistics) covered = Math.max(covered, new Date(row.start).getTime() + step);
    const { items } = await this.pages("/api/transactions", { since: new Date(covered).toISOString(), ...filter });
    return items;
  }

  bucket(date, timeZone) {
    const parts = zoneParts(new Date(date), timeZone);
    return this.period === "hour" ? `${parts.day} ${String(parts.hour).padStart(2, "0")}` : parts.day;
  }

  render({ sales, products, payments, tail, start, end, timeZone }) {
    const currency = (sales.totals[0] && sales.totals[0].currency) || (session.config && session.config.currency) || "EUR";
    const rows = sales.statistics.map((row) => ({ ...row }));
    for (const tx of tail) {
      rows.push({
        start: tx.time,
        machine_id: tx.machine_id,
        product: tx.product,
        currency: tx.currency,
        vends: tx.outcome === "completed" ? 1 : 0,
        failed: tx.outcome === "completed" ? 0 : 1,
        revenue: tx.outcome === "completed" ? tx.price : 0,
      });
    }
    const own = rows.filter((row) => row.currency === currency);
    // per period
    const buckets = new Map();
    const step = this.period === "hour" ? HOUR : 24 * HOUR;
    for (let time = start.getTime(); time < end.getTime(); time += step) {
      buckets.set(this.bucket(time, timeZone), { time, vends: 0, revenue: 0 });
    }
    const byMachine = new Map();
    const byProduct = new Map();
    const byHour = Array.from({ length: 24 }, () => 0);
    for (const row of own) {
      const key = this.bucket(row.start, timeZone);
      const bucket = buckets.get(key);
      if (bucket) {
        bucket.vends += row.vends;
        bucket.revenue += row.revenue;
      }
      const m = byMachine.get(row.machine_id) || { vends: 0, revenue: 0 };
      m.vends += row.vends;
      m.revenue += row.revenue;
      byMachine.set(row.machine_id, m);
      const name = row.product || t("analytics.unknown_product");
      const p = byProduct.get(name) || { vends: 0, revenue: 0 };
      p.vends += row.vends;
      p.revenue += row.revenue;
      byProduct.set(name, p);
      if (this.period === "hour") byHour[zoneParts(new Date(row.start), timeZone).hour] += row.vends;
    }
    for (const product of products) {
      if (!byProduct.has(product.product)) byProduct.set(product.product, { vends: 0, revenue: 0 });
    }
    const methods = new Map();
    for (const payment of payments.items) {
      if (payment.currency !== currency || !["captured", "authorized"].includes(payment.status)) continue;
      const m = methods.get(payment.method) || { count: 0, amount: 0 };
      m.count += 1;
      m.amount += payment.amount;
      methods.set(payment.method, m);
    }
    const total = sales.totals.find((row) => row.currency === currency) || { vends: 0, failed: 0, revenue: 0 };
    const tile = (name, label, value) => h("div", { class: "tile", "data-tile": name }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
    const series = [...buckets.values()];
    const labelEvery = Math.max(1, Math.ceil(series.length / 8));
    const formatBucket = (time) =>
      this.period === "hour" ? formatDateTime(time, { hour: "2-digit", minute: "2-digit" }) : formatDate(time);
    const card = (title, content, name) => h("section", { class: "card stack", "data-chart": name }, h("h2", {}, title), content);
    const ranked = [...byProduct.entries()].sort((a, b) => b[1].vends - a[1].vends || b[1].revenue - a[1].revenue);
    const best = ranked.filter(([, p]) => p.vends > 0).slice(0, 5);
    const worst = [...ranked].reverse().slice(0, 5);
    const sellerTable = (list, testid) =>
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { "data-testid": testid },
          h("thead", {}, h("tr", {}, h("th", {}, t("analytics.product")), h("th", { class: "num" }, t("analytics.vends")), h("th", { class: "num" }, t("analytics.revenue")))),
          h(
            "tbody",
            {},
            list.length
              ? list.map(([name, p]) => h("tr", {}, h("td", {}, name), h("td", { class: "num" }, formatNumber(p.vends)), h("td", { class: "num" }, money(p.revenue, currency))))
              : h("tr", {}, h("td", { colspan: 3, class: "muted" }, t("analytics.no_sales"))),
          ),
        ),
      );
    const names = this.machineNames || new Map();
    const width = chartWidth(this.body, 2);
    mount(
      this.body,
      h(
        "div",
        { class: "tiles" },
        tile("revenue", t("analytics.revenue"), money(total.revenue, currency)),
        tile("vends", t("analytics.vends"), formatNumber(total.vends)),
        tile("failed", t("analytics.failed"), formatNumber(total.failed)),
        tile("average", t("analytics.average"), total.vends ? money(Math.round(total.revenue / total.vends), currency) : "—"),
      ),
      h(
        "div",
        { class: "chart-grid" },
        card(
          t(`analytics.revenue_per.${this.period}`),
          barChart({
            items: series.map((b) => ({ label: formatBucket(b.time), value: b.revenue / minorUnits(currency), title: `${formatBucket(b.time)}: ${money(b.revenue, currency)}` })),
            title: t(`analytics.revenue_per.${this.period}`),
            labelEvery: Math.max(labelEvery, Math.ceil((series.length * 70) / width)),
            width,
            formatY: (v) => formatNumber(v, { maximumFractionDigits: 0 }),
          }),
          "revenue",
        ),
        card(
          t(`analytics.vends_per.${this.period}`),
          barChart({
            items: series.map((b) => ({ label: formatBucket(b.time), value: b.vends, title: `${formatBucket(b.time)}: ${b.vends}` })),
            title: t(`analytics.vends_per.${this.period}`),
            labelEvery: Math.max(labelEvery, Math.ceil((series.length * 70) / width)),
            width,
            formatY: (v) => formatNumber(v, { maximumFractionDigits: 0 }),
          }),
          "vends",
        ),
        this.period === "hour" && this.range !== "today"
          ? card(
              t("analytics.by_hour_of_day"),
              barChart({ items: byHour.map((v, hour) => ({ label: String(hour), value: v })), title: t("analytics.by_hour_of_day"), labelEvery: width < 500 ? 6 : 3, width, formatY: (v) => formatNumber(v, { maximumFractionDigits: 0 }) }),
              "hour-of-day",
            )
          : null,
        card(
          t("analytics.by_machine"),
          hbarChart({
            items: [...byMachine.entries()].sort((a, b) => b[1].revenue - a[1].revenue).slice(0, 15).map(([id, m]) => ({ label: names.get(id) || id, value: m.revenue, text: `${money(m.revenue, currency)} · ${m.vends}` })),
            title: t("analytics.by_machine"),
            width,
          }),
          "machines",
        ),
        card(
          t("analytics.by_product"),
          hbarChart({
            items: ranked.filter(([, p]) => p.revenue > 0).sort((a, b) => b[1].revenue - a[1].revenue).slice(0, 15).map(([name, p]) => ({ label: name, value: p.revenue, text: `${money(p.revenue, currency)} · ${p.vends}` })),
            title: t("analytics.by_product"),
            width,
          }),
          "products",
        ),
        card(
          t("analytics.by_method"),
          h(
            "div",
            {},
            hbarChart({
              items: [...methods.entries()].sort((a, b) => b[1].amount - a[1].amount).map(([method, m]) => ({ label: label("payment_methods", method), value: m.amount, text: `${money(m.amount, currency)} · ${m.count}` })),
              title: t("analytics.by_method"),
              width,
            }),
            payments.complete ? null : h("p", { class: "muted small-text" }, t("analytics.methods_partial", { count: payments.items.length })),
          ),
          "methods",
        ),
        card(t("analytics.best_sellers"), sellerTable(best, "best-sellers"), "best"),
        card(t("analytics.worst_sellers"), sellerTable(worst, "worst-sellers"), "worst"),
      ),
      h("p", { class: "muted small-text" }, t("analytics.note")),
    );
  }
}

definePage("vh-page-analytics", AnalyticsPage);
