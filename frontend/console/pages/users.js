// Users (owners and admins manage them) and the signed-in user's own sessions and
// long-lived tokens (a new token's secret is shown once).

import { h, mount } from "../../common/dom.js";
import { formatDateTime, label, t } from "../../common/i18n.js";
import { api, can, session } from "../context.js";
import { Page, confirmDialog, definePage, errorText, formDialog, loading, notice, pageHead, toast, toastError } from "../ui.js";

const ROLES = ["owner", "admin", "operator", "technician", "viewer"];

function epoch(seconds) {
  return seconds ? formatDateTime(new Date(seconds * 1000), { dateStyle: "short", timeStyle: "short" }) : "—";
}

class UsersPage extends Page {
  async start() {
    this.users = h("section", { class: "card stack", "data-testid": "users" });
    this.tokens = h("section", { class: "card stack", "data-testid": "tokens" }, loading());
    mount(this, pageHead(t("users.title")), h("div", { class: "stack" }, can("manage_users") ? this.users : null, this.tokens));
    await Promise.all([can("manage_users") ? this.loadUsers() : null, this.loadTokens()]);
    this.dataset.ready = "true";
  }

  async loadUsers() {
    const users = await api.get("/api/users");
    const add = h("button", { type: "button", class: "primary small", "data-testid": "add-user" }, t("users.add"));
    add.addEventListener("click", () => this.addUser());
    mount(
      this.users,
      h("div", { class: "spread" }, h("h2", {}, t("users.users")), add),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "stack-table" },
          h("thead", {}, h("tr", {}, h("th", {}, t("users.username")), h("th", {}, t("users.name")), h("th", {}, t("users.role")), h("th", {}, t("users.status")), h("th", {}, t("users.last_login")), h("th", {}))),
          h("tbody", {}, users.map((user) => this.userRow(user))),
        ),
      ),
    );
  }

  userRow(user) {
    const me = user.id === session.me.user_id;
    const role = h(
      "select",
      { "aria-label": t("users.role"), disabled: me, style: { width: "auto" } },
      ROLES.map((r) => h("option", { value: r, selected: r === user.role }, t(`roles.${r}`))),
    );
    role.addEventListener("change", () => this.change(user, { role: role.value }));
    const active = h("button", { type: "button", class: "small", disabled: me }, user.active ? t("users.deactivate") : t("users.activate"));
    active.addEventListener("click", () => this.change(user, { active: !user.active }));
    const remove = h("button", { type: "button", class: "small danger", disabled: me }, t("common.delete"));
    remove.addEventListener("click", async () => {
      if (!(await confirmDialog(t("users.delete_title"), t("users.delete_confirm", { name: user.username }), t("common.delete"), true))) return;
      try {
        await api.delete(`/api/users/${encodeURIComponent(user.id)}`);
        toast(t("users.deleted", { name: user.username }));
        await this.loadUsers();
      } catch (error) {
        toastError(error);
      }
    });
    return h(
      "tr",
      { "data-user": user.username },
      h("td", { class: "mono", "data-label": t("users.username") }, user.username),
      h("td", { "data-label": t("users.name") }, user.name || "—"),
      h("td", { "data-label": t("users.role") }, role, user.machine_ids && user.machine_ids.length ? h("div", { class: "muted small-text" }, user.machine_ids.join(", ")) : null),
      h("td", { "data-label": t("users.status") }, h("span", { class: `badge ${user.active ? "ok" : ""}` }, user.active ? t("users.active") : t("users.inactive"))),
      h("td", { "data-label": t("users.last_login") }, epoch(user.last_login)),
      h("td", { class: "row" }, active, remove),
    );
  }

  async change(user, changes) {
    try {
      await api.patch(`/api/users/${encodeURIComponent(user.id)}`, changes);
      toast(t("users.saved", { name: user.username }));
    } catch (error) {
      toastError(error);
    }
    await this.loadUsers();
  }

  async addUser() {
    const values = await formDialog({
      title: t("users.add"),
      submit: t("users.create"),
      fields: [
        { name: "username", label: t("users.username"), required: true, autocomplete: "off" },
        { name: "name", label: t("users.name") },
        { name: "password", label: t("users.password"), type: "password", required: true, minlength: 10, autocomplete: "new-password" },
        { name: "role", label: t("users.role"), type: "select", value: "operator", options: ROLES.map((r) => [r, t(`roles.${r}`)]) },
        { name: "machines", label: t("users.machines_hint") },
      ],
    });
    if (!values) return;
    const body = { username: values.username.trim().toLowerCase(), password: values.password, role: values.role };
    if (values.name.trim()) body.name = values.name.trim();
    const machines = values.machines.split(",").map((m) => m.trim()).filter(Boolean);
    if (machines.length) body.machine_ids = machines;
    try {
      await api.post("/api/users", body);
      toast(t("users.created", { name: body.username }));
      await this.loadUsers();
    } catch (error) {
      toastError(error);
    }
  }

  async loadTokens() {
    let tokens;
    try {
      tokens = await api.get("/api/auth/tokens");
    } catch (error) {
      mount(this.tokens, notice(errorText(error), "error"));
      return;
    }
    const create = h("button", { type: "button", class: "small", "data-testid": "create-token" }, t("tokens.create"));
    create.addEventListener("click", () => this.createToken());
    mount(
      this.tokens,
      h("div", { class: "spread" }, h("h2", {}, t("tokens.title")), create),
      h("p", { class: "muted small-text" }, t("tokens.explain")),
      (this.secret = h("div", {})),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "stack-table" },
          h("thead", {}, h("tr", {}, h("th", {}, t("tokens.name")), h("th", {}, t("tokens.kind")), h("th", {}, t("tokens.created")), h("th", {}, t("tokens.last_used")), h("th", {}, t("tokens.expires")), h("th", {}))),
          h(
            "tbody",
            {},
            tokens.map((token) => {
              const revoke = h("button", { type: "button", class: "small danger", disabled: token.current }, t("tokens.revoke"));
              revoke.addEventListener("click", async () => {
                if (!(await confirmDialog(t("tokens.revoke_title"), t("tokens.revoke_confirm", { name: token.name || token.id }), t("tokens.revoke"), true))) return;
                try {
                  await api.delete(`/api/auth/tokens/${encodeURIComponent(token.id)}`);
                  await this.loadTokens();
                } catch (error) {
                  toastError(error);
                }
              });
              return h(
                "tr",
                { "data-token": token.id },
                h("td", { "data-label": t("tokens.name") }, token.name || t("tokens.session"), " ", token.current ? h("span", { class: "badge ok" }, t("tokens.this_session")) : null),
                h("td", { "data-label": t("tokens.kind") }, label("tokens.kinds", token.kind)),
                h("td", { "data-label": t("tokens.created") }, epoch(token.created)),
                h("td", { "data-label": t("tokens.last_used") }, token.last_used ? `${epoch(token.last_used)}${token.last_used_address ? ` (${token.last_used_address})` : ""}` : "—"),
                h("td", { "data-label": t("tokens.expires") }, token.expires ? epoch(token.expires) : t("tokens.never")),
                h("td", {}, revoke),
              );
            }),
          ),
        ),
      ),
    );
  }

  async createToken() {
    const values = await formDialog({
      title: t("tokens.create"),
      submit: t("tokens.create_submit"),
      fields: [
        { name: "name", label: t("tokens.name"), required: true },
        { name: "days", label: t("tokens.days"), type: "number", value: 365, min: 1, max: 3650, step: 1, required: true },
      ],
    });
    if (!values) return;
    try {
      const made = await api.post("/api/auth/tokens", { name: values.name.trim(), days: Number(values.days) });
      await this.loadTokens();
      mount(this.secret, notice(t("tokens.copy_now")), h("div", { class: "secret", "data-testid": "token-secret" }, made.access_token));
    } catch (error) {
      toastError(error);
    }
  }
}

definePage("vh-page-users", UsersPage);
