// Sign-in and onboarding (the owner's account on a new hub). Both start a console session:
// an HttpOnly cookie the page never sees, and the CSRF cookie beside it.

import { h, mount, define } from "../../common/dom.js";
import { LANGUAGES, language, setLanguage, t } from "../../common/i18n.js";
import { api } from "../context.js";
import { errorText, notice } from "../ui.js";

function field(id, label, props) {
  return h("div", { class: "field" }, h("label", { for: id }, label), h("input", { id, name: id, ...props }));
}

function languageButtons() {
  return h(
    "div",
    { class: "auth-lang" },
    Object.entries(LANGUAGES).map(([code, name]) => {
      const button = h("button", { type: "button", class: "small", "data-lang": code, "aria-pressed": String(code === language()) }, name);
      button.addEventListener("click", () => setLanguage(code, { remember: true }));
      return button;
    }),
  );
}

function logo(title, subtitle) {
  return h(
    "div",
    { class: "logo" },
    h("img", { src: new URL("../icons/icon.svg", import.meta.url).pathname, alt: "" }),
    h("div", {}, h("h1", {}, title), h("div", { class: "muted small-text" }, subtitle)),
  );
}

class VhLogin extends HTMLElement {
  connectedCallback() {
    const message = h("div", { "aria-live": "polite" });
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "sign-in" }, t("auth.sign_in"));
    const form = h(
      "form",
      { class: "card auth-card", novalidate: false },
      logo(t("auth.sign_in_title"), t("auth.sign_in_subtitle")),
      field("username", t("auth.username"), { autocomplete: "username", required: true, autocapitalize: "none" }),
      field("password", t("auth.password"), { type: "password", autocomplete: "current-password", required: true }),
      message,
      submit,
      languageButtons(),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      mount(message);
      try {
        await api.login(form.username.value.trim(), form.password.value);
        this.dispatchEvent(new CustomEvent("signed-in", { bubbles: true }));
      } catch (error) {
        const text = error.code === "invalid_credentials" ? t("auth.invalid_credentials") : errorText(error);
        mount(message, notice(text, "error"));
        submit.disabled = false;
      }
    });
    mount(this, form);
    form.username.focus();
  }
}

class VhOnboarding extends HTMLElement {
  connectedCallback() {
    const message = h("div", { "aria-live": "polite" });
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "create-owner" }, t("onboarding.create"));
    const form = h(
      "form",
      { class: "card auth-card" },
      logo(t("onboarding.title"), t("onboarding.subtitle")),
      h("p", { class: "muted" }, t("onboarding.explain")),
      field("name", t("onboarding.name"), { autocomplete: "name" }),
      field("username", t("auth.username"), { autocomplete: "username", required: true, autocapitalize: "none", pattern: "[a-z0-9][a-z0-9_.@\\-]{1,63}" }),
      field("password", t("auth.password"), { type: "password", autocomplete: "new-password", required: true, minlength: 10 }),
      field("confirm", t("onboarding.confirm"), { type: "password", autocomplete: "new-password", required: true }),
      h("p", { class: "muted small-text" }, t("onboarding.password_hint")),
      message,
      submit,
      languageButtons(),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      mount(message);
      if (form.password.value !== form.confirm.value) {
        mount(message, notice(t("onboarding.mismatch"), "error"));
        return;
      }
      submit.disabled = true;
      try {
        await api.onboard(form.username.value.trim(), form.password.value, form.name.value.trim());
        this.dispatchEvent(new CustomEvent("signed-in", { bubbles: true }));
      } catch (error) {
        mount(message, notice(errorText(error), "error"));
        submit.disabled = false;
      }
    });
    mount(this, form);
    form.querySelector("#name").focus();
  }
}

define("vh-login", VhLogin);
define("vh-onboarding", VhOnboarding);
