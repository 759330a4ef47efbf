// The console's entry: picks the language and theme, finds out whether this browser is signed
// in (or the hub needs its owner), then shows the shell and the page of the #/route.

import { h, mount, define } from "../common/dom.js";
import { hasSession, ApiError } from "../common/api.js";
import {
  LANGUAGES,
  hasStoredLanguage,
  language,
  onLanguageChange,
  preferredLanguage,
  setLanguage,
  setTimeZone,
  t,
} from "../common/i18n.js";
import { applyTheme } from "../common/theme.js";
import { api, go, newSocket, prefetch, routeParts, session } from "./context.js";
import { errorText, notice } from "./ui.js";

const PAGES = {
  fleet: { tag: "vh-page-fleet", module: "./pages/fleet.js", label: "nav.fleet" },
  machines: { tag: "vh-page-machine", module: "./pages/machine.js", nav: false },
  alarms: { tag: "vh-page-alarms", module: "./pages/alarms.js", label: "nav.alarms" },
  analytics: { tag: "vh-page-analytics", module: "./pages/analytics.js", label: "nav.analytics" },
  automations: { tag: "vh-page-automations", module: "./pages/automations.js", label: "nav.automations" },
  products: { tag: "vh-page-products", module: "./pages/products.js", label: "nav.products" },
  stock: { tag: "vh-page-stock", module: "./pages/stock.js", label: "nav.stock" },
  users: { tag: "vh-page-users", module: "./pages/users.js", label: "nav.users" },
  settings: { tag: "vh-page-settings", module: "./pages/settings.js", label: "nav.settings" },
};
const DEFAULT_PAGE = "fleet";

function languageSelect() {
  const select = h(
    "select",
    { "aria-label": t("settings.language"), "data-testid": "language-select" },
    Object.entries(LANGUAGES).map(([code, name]) => h("option", { value: code, selected: code === language() }, name)),
  );
  select.addEventListener("change", () => setLanguage(select.value, { remember: true }));
  return select;
}

class VhApp extends HTMLElement {
  connectedCallback() {
    this.state = "booting";
    applyTheme();
    api.onUnauthorized(() => this.signedOut());
    onLanguageChange(() => this.render());
    window.addEventListener("hashchange", () => this.route());
    this.boot().catch((error) => mount(this, h("main", {}, notice(errorText(error), "error"))));
  }

  async boot() {
    const languageReady = setLanguage(preferredLanguage());
    if (hasSession()) {
      const first = routeParts()[0] || DEFAULT_PAGE;
      if (first === DEFAULT_PAGE) prefetch("/api/machines"); // the first page's data, meanwhile
      const fleet = import("./pages/fleet.js");
      try {
        const [me, config] = await Promise.all([api.get("/api/auth/me"), api.get("/api/config"), languageReady]);
        await fleet;
        await this.signedIn(me, config, false);
        return;
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 401) throw error;
      }
    }
    const [onboarding] = await Promise.all([api.get("/api/onboarding"), languageReady]);
    this.showAuth(onboarding.onboarded ? "login" : "onboarding");
  }

  async showAuth(kind) {
    await import("./pages/auth.js");
    this.state = kind;
    this.render();
  }

  /** After sign-in (or with a session already): load who and where, connect, show the page. */
  async signedIn(me, config, fetch = true) {
    if (fetch) [me, config] = await Promise.all([api.get("/api/auth/me"), api.get("/api/config")]);
    session.me = me;
    session.config = config;
    setTimeZone(config.time_zone);
    if (!hasStoredLanguage() && config.languages && config.languages[0] && config.languages[0] !== language()) {
      if (config.languages[0] in LANGUAGES) await setLanguage(config.languages[0]);
    }
    const socket = newSocket();
    socket.addEventListener("status", () => this.renderConnection());
    // The hub closed the socket because the sign-in ended or changed (a new role, say): if
    // the session still holds, take the new identity and reconnect; else sign in again.
    socket.addEventListener("unauthorized", () => {
      api.get("/api/auth/me").then(
        (me) => {
          session.me = me;
          this.renderNav();
          socket.connect().catch(() => {});
        },
        () => this.signedOut(),
      );
    });
    this.watchAlarms(socket);
    socket.connect().catch(() => {});
    this.state = "app";
    const parts = routeParts();
    if (!parts.length || !(parts[0] in PAGES)) history.replaceState(null, "", `#/${DEFAULT_PAGE}`);
    this.render();
  }

  signedOut() {
    if (this.state === "login" || this.state === "onboarding") return;
    if (session.socket) session.socket.close();
    session.socket = null;
    session.me = null;
    this.showAuth("login");
  }

  async signOut() {
    try {
      await api.logout();
    } finally {
      this.signedOut();
    }
  }

  watchAlarms(socket) {
    const alarms = new Map();
    const update = () => {
      this.openAlarms = [...alarms.values()].filter((state) => state === "raised").length;
      this.renderAlarmBadge();
    };
    const load = () =>
      socket
        .getStates({ entity_id: "alarm.*" })
        .then((states) => {
          alarms.clear();
          for (const state of states) alarms.set(state.entity_id, state.state);
          update();
        })
        .catch(() => {});
    socket.subscribeStates({ entity_id: "alarm.*" }, (change) => {
      if (change.new_state) alarms.set(change.entity_id, change.new_state.state);
      else alarms.delete(change.entity_id);
      update();
    });
    socket.connect().then(load, () => {});
    socket.addEventListener("reconnected", load);
  }

  render() {
    if (this.state === "login" || this.state === "onboarding") {
      const tag = this.state === "login" ? "vh-login" : "vh-onboarding";
      const form = h(tag, {});
      form.addEventListener("signed-in", () => this.signedIn().catch((error) => mount(this, notice(errorText(error), "error"))));
      mount(this, h("div", { class: "auth-page" }, form));
      return;
    }
    if (this.state !== "app") return;
    this.nav = h("nav", { class: "nav", "aria-label": t("nav.label") });
    this.main = h("main", { id: "main" });
    this.conn = h("span", { class: "conn", "data-testid": "connection" });
    const brand = h(
      "a",
      { class: "brand", href: "#/fleet" },
      h("img", { src: new URL("./icons/icon.svg", import.meta.url).pathname, alt: "" }),
      h("span", {}, "VendHub"),
      h("span", { class: "hub-name" }, session.config.name),
    );
    const signOut = h("button", { class: "small", type: "button", "data-testid": "sign-out" }, t("auth.sign_out"));
    signOut.addEventListener("click", () => this.signOut());
    const topbar = h("header", { class: "topbar" }, brand, h("span", { class: "spacer" }), this.conn, languageSelect(), signOut);
    mount(this, h("div", { class: "shell" }, topbar, this.nav, this.main));
    this.renderNav();
    this.renderConnection();
    this.route();
  }

  renderNav() {
    const current = routeParts()[0] || DEFAULT_PAGE;
    const active = current === "machines" ? "fleet" : current;
    const links = [];
    for (const [name, page] of Object.entries(PAGES)) {
      if (page.nav === false) continue;
      const link = h("a", { href: `#/${name}`, "data-nav": name, "aria-current": name === active ? "page" : null }, t(page.label));
      if (name === "alarms") {
        this.alarmBadge = h("span", { class: "badge danger", "data-testid": "alarm-badge", hidden: !this.openAlarms }, String(this.openAlarms || 0));
        link.appendChild(this.alarmBadge);
      }
      links.push(link);
    }
    const user = h("div", { class: "nav-user" }, t("nav.signed_in_as", { name: session.me.name, role: t(`roles.${session.me.role}`) }));
    mount(this.nav, links, user);
  }

  renderAlarmBadge() {
    if (!this.alarmBadge) return;
    this.alarmBadge.textContent = String(this.openAlarms || 0);
    this.alarmBadge.hidden = !this.openAlarms;
  }

  renderConnection() {
    if (!this.conn || !session.socket) return;
    const status = session.socket.status;
    const dot = status === "connected" ? "ok" : status === "connecting" ? "warn" : "danger";
    this.conn.dataset.status = status;
    this.conn.title = t(`connection.${status}`);
    mount(this.conn, h("span", { class: `dot ${dot}`, "aria-hidden": "true" }), h("span", { class: "conn-text" }, t(`connection.${status}`)));
  }

  async route() {
    if (this.state !== "app") return;
    const parts = routeParts();
    const name = parts[0] in PAGES ? parts[0] : DEFAULT_PAGE;
    const page = PAGES[name];
    this.renderNav();
    const token = (this.routeToken = (this.routeToken || 0) + 1);
    await import(page.module);
    if (token !== this.routeToken) return;
    mount(this.main, h(page.tag, { "data-page": name }));
    document.title = `${t(page.label || "nav.fleet")} · VendHub`;
  }
}

define("vh-app", VhApp);

if ("serviceWorker" in navigator) {
  window.addEventListener("load", () => {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  });
}

export { go };
