// Settings: theme and language (kept on this device), the user's name and password, the
// hub's configuration, and installing the console as an app.

import { h, mount } from "../../common/dom.js";
import { LANGUAGES, language, setLanguage, t } from "../../common/i18n.js";
import { THEMES, setTheme, themeChoice } from "../../common/theme.js";
import { api, session } from "../context.js";
import { Page, definePage, errorText, notice, pageHead, toast, toastError } from "../ui.js";


class SettingsPage extends Page {
  async start() {
    const themes = h(
      "div",
      { class: "chips", role: "radiogroup", "aria-label": t("settings.theme") },
      THEMES.map((name) => {
        const button = h("button", { type: "button", class: "chip", role: "radio", "data-theme-choice": name, "aria-pressed": String(name === themeChoice()), "aria-checked": String(name === themeChoice()) }, t(`settings.themes.${name}`));
        button.addEventListener("click", () => {
          setTheme(name);
          for (const other of themes.children) {
            other.setAttribute("aria-pressed", String(other === button));
            other.setAttribute("aria-checked", String(other === button));
          }
        });
        return button;
      }),
    );
    const languages = h(
      "div",
      { class: "chips", role: "radiogroup", "aria-label": t("settings.language") },
      Object.entries(LANGUAGES).map(([code, name]) => {
        const button = h("button", { type: "button", class: "chip", role: "radio", "data-lang": code, "aria-pressed": String(code === language()), "aria-checked": String(code === language()) }, name);
        button.addEventListener("click", () => setLanguage(code, { remember: true }));
        return button;
      }),
    );
    const install = h("button", { type: "button", hidden: !session.installPrompt }, t("settings.install"));
    install.addEventListener("click", async () => {
      if (!session.installPrompt) return;
      session.installPrompt.prompt();
      session.installPrompt = null;
      install.hidden = true;
    });
    const me = session.me;
    const name = h("input", { id: "my-name", autocomplete: "name" });
    const password = h("input", { id: "my-password", type: "password", autocomplete: "new-password", minlength: 10 });
    const save = h("button", { type: "submit", class: "primary" }, t("common.save"));
    const account = h(
      "form",
      { class: "card stack" },
      h("h2", {}, t("settings.account")),
      h("p", { class: "muted" }, t("nav.signed_in_as", { name: me.name, role: t(`roles.${me.role}`) })),
      h("div", { class: "field" }, h("label", { for: "my-name" }, t("users.name")), name),
      h("div", { class: "field" }, h("label", { for: "my-password" }, t("settings.new_password")), password),
      save,
    );
    if (me.user_id) {
      api.get(`/api/users/${encodeURIComponent(me.user_id)}`).then((user) => (name.value = user.name || ""), () => {});
    }
    account.addEventListener("submit", async (event) => {
      event.preventDefault();
      const changes = {};
      if (name.value.trim()) changes.name = name.value.trim();
      if (password.value) changes.password = password.value;
      if (!Object.keys(changes).length) return;
      save.disabled = true;
      try {
        await api.patch(`/api/users/${encodeURIComponent(me.user_id)}`, changes);
        password.value = "";
        toast(t("settings.saved"));
      } catch (error) {
        toastError(error);
      } finally {
        save.disabled = false;
      }
    });
    const hub = h("section", { class: "card stack" }, h("h2", {}, t("settings.hub")));
    mount(
      this,
      pageHead(t("settings.title")),
      h(
        "div",
        { class: "chart-grid" },
        h(
          "section",
          { class: "card stack" },
          h("h2", {}, t("settings.appearance")),
          h("div", {}, h("label", {}, t("settings.theme")), themes),
          h("div", {}, h("label", {}, t("settings.language")), languages),
          h("div", {}, h("p", { class: "muted small-text" }, t("settings.install_hint")), install),
        ),
        me.user_id ? account : null,
        hub,
      ),
    );
    try {
      const config = await api.get("/api/config");
      const row = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
      hub.appendChild(
        h(
          "dl",
          { class: "facts-list", "data-testid": "hub-config" },
          row(t("settings.hub_name"), config.name),
          row(t("settings.version"), config.version),
          row(t("settings.currency"), config.currency),
          row(t("settings.time_zone"), config.time_zone),
          row(t("settings.languages"), config.languages.join(", ")),
          row(t("settings.units"), t(`settings.unit_systems.${config.units}`)),
          row(t("settings.integrations"), config.integrations.join(", ")),
        ),
      );
      hub.appendChild(h("p", { class: "muted small-text" }, t("settings.config_note")));
    } catch (error) {
      hub.appendChild(notice(errorText(error), "error"));
    }
    this.dataset.ready = "true";
  }
}

definePage("vh-page-settings", SettingsPage);
