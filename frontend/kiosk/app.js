// The customer kiosk of one machine, at /kiosk/<machine_id>: the machine's touchscreen.
//
// It signs in as its machine (the credentials `vendhub machine add` printed, entered once on
// the setup screen and kept in this browser's localStorage), so it reaches only its own
// machine. Screens: attract (idle) → product grid → product detail → payment method →
// payment (card / QR / cash) → dispensing → outcome → attract. The purchase's progress is
// polled every 500 ms (a machine identity may not use the WebSocket API). When the hub cannot
// be reached (a restart) it shows "connecting", retries, signs in again by itself and goes on.
//
// Payment is SIMULATED (the simulator's purchase flow): the demo buttons approve or decline a
// card or QR payment and insert coins; real payment comes with the vend engine.

import { Api, ApiError } from "../common/api.js";
import { h, mount, define } from "../common/dom.js";
import { LANGUAGES, formatMoney, language, setLanguage, t } from "../common/i18n.js";
import { methodIcon, productArt } from "./art.js";
import { encodeQr, qrPath } from "./qr.js";
import { play, setSoundEnabled, soundEnabled } from "./sound.js";

const CREDENTIALS_KEY = "vendhub.kiosk.credentials";
const MOTION_KEY = "vendhub.kiosk.motion";
const EXTRA_STRINGS = [new URL("./i18n/", import.meta.url).pathname + "{lang}.json"];
const POLL_MS = 500;
const RETRY_MS = 2000;
const REFRESH_MS = 15000;
const COINS = [10, 20, 50, 100, 200, 500];
const FINAL = new Set(["completed", "failed", "cancelled"]);
const PARAMS = new URLSearchParams(location.search);
/** Seconds without a touch before the kiosk goes back to its attract screen (?idle=). */
const IDLE_SECONDS = Number(PARAMS.get("idle")) || 60;
/** Seconds the outcome stays on screen (?outcome=). */
const OUTCOME_SECONDS = Number(PARAMS.get("outcome")) || 15;

function machineFromPath() {
  const match = location.pathname.match(/^\/kiosk\/([a-z0-9_]{1,64})\/?$/);
  return match ? match[1] : null;
}

function loadCredentials() {
  try {
    const value = JSON.parse(localStorage.getItem(CREDENTIALS_KEY) || "null");
    return value && value.machine_id && value.password ? value : null;
  } catch {
    return null;
  }
}

function motionPreferred() {
  const stored = localStorage.getItem(MOTION_KEY);
  if (stored) return stored === "on";
  return !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class VhKiosk extends HTMLElement {
  connectedCallback() {
    this.machineId = machineFromPath();
    this.token = null;
    this.kiosk = null;
    this.screen = "boot";
    this.selected = null;
    this.purchase = null;
    this.offline = false;
    this.notice = null;
    this.motion = motionPreferred();
    this.timers = {};
    this.api = new Api({ token: () => this.token });
    this.applyMotion();
    for (const type of ["pointerdown", "keydown"]) {
      this.addEventListener(type, () => this.touched(), { capture: true });
    }
    this.onKeyDown = (event) => this.onKey(event);
    document.addEventListener("keydown", this.onKeyDown);
    this.boot().catch((error) => this.fatal(error));
  }

  disconnectedCallback() {
    document.removeEventListener("keydown", this.onKeyDown);
    for (const name of Object.keys(this.timers)) this.clear(name);
  }

  // ---- start-up, sign-in, the hub going away ------------------------------------------

  async boot() {
    await setLanguage("en", { extra: EXTRA_STRINGS });
    const credentials = loadCredentials();
    if (!credentials || (this.machineId && credentials.machine_id !== this.machineId)) {
      this.show("setup");
      return;
    }
    this.machineId = credentials.machine_id;
    await this.reload();
    await this.resetLanguage();
    if (this.kiosk.purchase && !FINAL.has(this.kiosk.purchase.state)) {
      this.follow(this.kiosk.purchase); // a purchase was going on when the page (re)loaded
    } else {
      this.show("attract");
    }
  }

  async signIn(credentials = loadCredentials()) {
    if (!credentials) throw new ApiError(401, "invalid_credentials", "no credentials");
    const grant = await this.api.post("/api/auth/login", {
      grant_type: "machine",
      machine_id: credentials.machine_id,
      password: credentials.password,
    });
    this.token = grant.access_token;
  }

  /**
   * ``fn()`` (an API call) until it answers: while the hub cannot be reached it shows
   * "connecting" and retries; a 401 (token expired, hub restarted) signs in again first.
   */
  async call(fn) {
    for (;;) {
      try {
        if (!this.token) await this.signIn();
        const result = await fn();
        this.setOffline(false);
        return result;
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (error.status === 401) {
          if (error.code === "invalid_credentials") {
            this.setOffline(false);
            this.show("setup", { error: t("kiosk.setup.invalid") });
            throw error;
          }
          this.token = null; // sign in again on the next round
          continue;
        }
        if ([0, 429, 502, 503, 504].includes(error.status)) {
          this.setOffline(true);
          await sleep(RETRY_MS);
          continue;
        }
        throw error;
      }
    }
  }

  setOffline(offline) {
    if (this.offline === offline) return;
    this.offline = offline;
    this.dataset.offline = offline ? "true" : "false";
    const overlay = this.querySelector(".offline");
    if (overlay) overlay.hidden = !offline;
  }

  async reload() {
    this.kiosk = await this.call(() => this.api.get(`/api/kiosk/${this.machineId}`));
    this.dataset.machine = this.kiosk.machine_id;
    return this.kiosk;
  }

  async resetLanguage() {
    const wanted = this.kiosk ? this.kiosk.default_language : "en";
    if (language() !== wanted) await setLanguage(wanted in LANGUAGES ? wanted : "en", { extra: EXTRA_STRINGS });
  }

  fatal(error) {
    if (error instanceof ApiError && error.code === "invalid_credentials") return; // on the setup screen
    console.warn("kiosk:", error);
    this.notice = t("kiosk.errors.generic");
    this.show("attract");
  }

  // ---- timers -------------------------------------------------------------------------

  later(name, ms, fn) {
    clearTimeout(this.timers[name]);
    this.timers[name] = setTimeout(fn, ms);
  }

  clear(name) {
    clearTimeout(this.timers[name]);
    delete this.timers[name];
  }

  touched() {
    if (["grid", "detail", "method"].includes(this.screen)) {
      this.later("idle", IDLE_SECONDS * 1000, () => this.goAttract());
    }
  }

  onKey(event) {
    if (event.key === "Escape") {
      if (this.screen === "detail" || this.screen === "method") this.show("grid");
      else if (this.screen === "grid") this.goAttract();
      else if (this.screen === "payment") this.cancel();
      else if (this.screen === "outcome") this.goAttract();
    } else if (
      this.screen === "attract" &&
      (event.key === "Enter" || event.key === " ") &&
      !(event.target instanceof HTMLButtonElement)
    ) {
      event.preventDefault();
      this.start();
    }
  }

  // ---- moving between screens ---------------------------------------------------------

  show(screen, options = {}) {
    if (this.screen !== screen) this.clear("idle");
    this.screen = screen;
    this.options = options;
    this.dataset.screen = screen;
    if (screen !== "attract") this.clear("refresh");
    this.render();
    this.touched();
  }

  async goAttract() {
    this.clear("idle");
    this.clear("outcome");
    this.clear("tick");
    this.purchase = null;
    this.selected = null;
    this.notice = null;
    await this.resetLanguage();
    try {
      await this.reload();
    } catch (error) {
      if (error instanceof ApiError && error.code === "invalid_credentials") return;
    }
    this.show("attract");
    this.keepFresh();
  }

  /** On the attract screen: read the machine again now and then (stock, mode). */
  keepFresh() {
    this.later("refresh", REFRESH_MS, async () => {
      if (this.screen !== "attract") return;
      try {
        await this.reload();
        if (this.screen === "attract") this.render();
      } finally {
        if (this.screen === "attract") this.keepFresh();
      }
    });
  }

  async start() {
    play("tap");
    try {
      await this.reload();
    } catch {
      return;
    }
    this.show(this.kiosk.selling && this.kiosk.purchases ? "grid" : "unavailable");
    if (this.screen === "unavailable") this.later("idle", IDLE_SECONDS * 1000, () => this.goAttract());
  }

  choose(slot) {
    play("tap");
    this.selected = slot;
    this.show("detail");
  }

  async buy(method) {
    play("tap");
    const slot = this.selected;
    this.show("starting");
    try {
      const purchase = await this.call(() =>
        this.api.post(`/api/kiosk/${this.machineId}/purchases`, { slot: slot.code, method }),
      );
      this.follow(purchase);
    } catch (error) {
      play("error");
      this.notice = error instanceof ApiError && error.code === "sold_out" ? t("kiosk.errors.sold_out") : t("kiosk.errors.generic");
      await this.reload().catch(() => {});
      this.show("grid");
    }
  }

  /** Show ``purchase`` and poll it until it is finished. */
  follow(purchase) {
    this.purchase = purchase;
    this.selected = this.selected || { code: purchase.slot, product: purchase.product, price: purchase.price };
    this.showPurchase();
    this.poll();
  }

  poll() {
    this.later("poll", POLL_MS, async () => {
      if (!this.purchase || FINAL.has(this.purchase.state)) return;
      const id = this.purchase.id;
      try {
        const fresh = await this.call(() => this.api.get(`/api/kiosk/${this.machineId}/purchases/${id}`));
        this.update(fresh);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404 && this.purchase && this.purchase.id === id) {
          // The hub restarted and forgot the purchase.
          this.purchase = { ...this.purchase, state: "failed", reason: "interrupted", refunded: false };
          this.showPurchase();
          return;
        }
      }
      if (this.purchase && !FINAL.has(this.purchase.state)) this.poll();
    });
  }

  update(fresh) {
    if (!this.purchase || fresh.id !== this.purchase.id) return;
    if (fresh.seq === this.purchase.seq && fresh.state === this.purchase.state) return;
    const before = this.purchase;
    this.purchase = fresh;
    if (fresh.credit > before.credit) play("coin");
    this.showPurchase();
  }

  showPurchase() {
    const state = this.purchase.state;
    if (state === "selecting" || state === "awaiting_payment") {
      this.show("payment");
      this.tick();
    } else if (state === "authorized" || state === "dispensing") {
      if (this.screen !== "dispensing") play("attention");
      this.show("dispensing");
    } else {
      this.clear("tick");
      this.clear("poll");
      play(state === "completed" ? "success" : "error");
      this.show("outcome");
      this.later("outcome", OUTCOME_SECONDS * 1000, () => this.goAttract());
    }
  }

  /** The payment screen's countdown. */
  tick() {
    this.later("tick", 1000, () => {
      if (this.screen !== "payment") return;
      const el = this.querySelector("[data-field=expires]");
      if (el) el.textContent = this.timeLeft();
      this.tick();
    });
  }

  timeLeft() {
    if (!this.purchase || !this.purchase.expires) return "";
    const seconds = Math.max(0, Math.round((Date.parse(this.purchase.expires) - Date.now()) / 1000));
    return t("kiosk.payment.expires", { seconds });
  }

  async purchaseAction(path, body = {}) {
    const id = this.purchase.id;
    try {
      const fresh = await this.call(() => this.api.post(`/api/kiosk/${this.machineId}/purchases/${id}/${path}`, body));
      this.update(fresh);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 409) throw error;
      // The purchase moved on meanwhile (paid, timed out): the next poll shows it.
    }
  }

  insert(amount) {
    play("coin");
    return this.purchaseAction("cash", { amount });
  }

  approve(decline = false) {
    play("tap");
    return this.purchaseAction("pay", { decline });
  }

  async cancel() {
    if (!this.purchase || FINAL.has(this.purchase.state)) return;
    play("tap");
    await this.purchaseAction("cancel");
    if (this.purchase.state === "cancelled" && !this.purchase.refunded) {
      // Nothing was paid: straight back to the products.
      this.clear("poll");
      this.clear("tick");
      this.purchase = null;
      await this.reload().catch(() => {});
      this.show("grid");
    }
  }

  async setup(form) {
    const machineId = form.querySelector("#machine-id").value.trim();
    const password = form.querySelector("#machine-password").value;
    const credentials = { machine_id: machineId, password };
    this.show("setup", { busy: true, machineId });
    try {
      await this.signIn(credentials);
    } catch (error) {
      const invalid = error instanceof ApiError && (error.status === 401 || error.status === 400);
      this.show("setup", {
        machineId,
        error: invalid ? t("kiosk.setup.invalid") : t("kiosk.setup.unreachable"),
      });
      return;
    }
    localStorage.setItem(CREDENTIALS_KEY, JSON.stringify(credentials));
    this.machineId = machineId;
    if (machineFromPath() !== machineId) history.replaceState(null, "", `/kiosk/${machineId}`);
    await this.goAttract();
  }

  // ---- settings -----------------------------------------------------------------------

  applyMotion() {
    document.documentElement.dataset.motion = this.motion ? "on" : "off";
  }

  async switchLanguage(code) {
    play("tap");
    await setLanguage(code, { extra: EXTRA_STRINGS });
    this.render();
  }

  toggleSound() {
    setSoundEnabled(!soundEnabled());
    play("tap");
    this.render();
  }

  toggleMotion() {
    this.motion = !this.motion;
    localStorage.setItem(MOTION_KEY, this.motion ? "on" : "off");
    this.applyMotion();
    play("tap");
    this.render();
  }

  // ---- rendering ----------------------------------------------------------------------

  money(minor) {
    return formatMoney(minor, (this.purchase && this.purchase.currency) || (this.kiosk && this.kiosk.currency) || "EUR");
  }

  render() {
    const focused = document.activeElement && this.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
    const screens = {
      boot: () => this.renderBoot(),
      setup: () => this.renderSetup(),
      attract: () => this.renderAttract(),
      grid: () => this.renderGrid(),
      detail: () => this.renderDetail(),
      method: () => this.renderMethod(),
      starting: () => this.renderBoot(),
      payment: () => this.renderPayment(),
      dispensing: () => this.renderDispensing(),
      outcome: () => this.renderOutcome(),
      unavailable: () => this.renderUnavailable(),
    };
    const body = (screens[this.screen] || screens.boot)();
    const overlay = h(
      "div",
      { class: "offline", role: "alert", hidden: !this.offline, "data-testid": "offline" },
      h("div", { class: "spinner", "aria-hidden": "true" }),
      h("h2", {}, t("kiosk.offline.title")),
      h("p", {}, t("kiosk.offline.hint")),
    );
    mount(this, body, overlay);
    this.dataset.ready = "true";
    document.title = this.kiosk ? `${this.kiosk.name} — ${t("kiosk.title")}` : t("kiosk.title");
    const again = focused && this.querySelector(`[data-focus="${focused}"]`);
    if (again) again.focus();
    else {
      const first = this.screen === "attract" ? this.querySelector("[data-testid=start]") : this.querySelector("h1");
      if (first) first.focus({ preventScroll: true });
    }
  }

  renderBoot() {
    return h("main", { class: "screen boot" }, h("div", { class: "spinner", role: "status", "aria-label": t("kiosk.loading") }));
  }

  toolbar() {
    const languages = ((this.kiosk && this.kiosk.languages) || Object.keys(LANGUAGES)).filter((code) => code in LANGUAGES);
    return h(
      "div",
      { class: "toolbar" },
      h(
        "div",
        { class: "languages", role: "group", "aria-label": t("kiosk.controls.language") },
        languages.map((code) =>
          h(
            "button",
            {
              class: `chip${code === language() ? " active" : ""}`,
              lang: code,
              "aria-pressed": code === language() ? "true" : "false",
              "data-testid": `lang-${code}`,
              "data-focus": `lang-${code}`,
              onclick: (event) => {
                event.stopPropagation();
                this.switchLanguage(code);
              },
            },
            LANGUAGES[code],
          ),
        ),
      ),
      h(
        "div",
        { class: "toggles" },
        h(
          "button",
          {
            class: "chip",
            "aria-pressed": soundEnabled() ? "true" : "false",
            "data-testid": "toggle-sound",
            "data-focus": "toggle-sound",
            onclick: (event) => {
              event.stopPropagation();
              this.toggleSound();
            },
          },
          soundEnabled() ? t("kiosk.controls.sound_on") : t("kiosk.controls.sound_off"),
        ),
        h(
          "button",
          {
            class: "chip",
            "aria-pressed": this.motion ? "true" : "false",
            "data-testid": "toggle-motion",
            "data-focus": "toggle-motion",
            onclick: (event) => {
              event.stopPropagation();
              this.toggleMotion();
            },
          },
          this.motion ? t("kiosk.controls.motion_on") : t("kiosk.controls.motion_off"),
        ),
      ),
    );
  }

  header(title) {
    return h(
      "header",
      { class: "bar" },
      h("div", { class: "machine-name" }, this.kiosk ? this.kiosk.name : ""),
      this.toolbar(),
      title ? h("h1", { tabindex: "-1" }, title) : null,
    );
  }

  renderSetup() {
    const options = this.options || {};
    const form = h(
      "form",
      {
        class: "setup-form",
        "data-testid": "setup",
        onsubmit: (event) => {
          event.preventDefault();
          this.setup(form);
        },
      },
      h("label", { for: "machine-id" }, t("kiosk.setup.machine_id")),
      h("input", {
        id: "machine-id",
        name: "machine_id",
        autocomplete: "username",
        autocapitalize: "none",
        spellcheck: "false",
        required: true,
        pattern: "[a-z0-9_]{1,64}",
        value: options.machineId || this.machineId || "",
      }),
      h("label", { for: "machine-password" }, t("kiosk.setup.password")),
      h("input", { id: "machine-password", name: "password", type: "password", autocomplete: "current-password", required: true }),
      options.error ? h("p", { class: "error", role: "alert", "data-testid": "setup-error" }, options.error) : null,
      h(
        "button",
        { class: "primary big", type: "submit", disabled: Boolean(options.busy), "data-testid": "setup-sign-in" },
        options.busy ? t("kiosk.setup.signing_in") : t("kiosk.setup.sign_in"),
      ),
    );
    return h(
      "main",
      { class: "screen setup" },
      h("h1", { tabindex: "-1" }, t("kiosk.setup.title")),
      h("p", { class: "muted" }, t("kiosk.setup.explain")),
      form,
    );
  }

  renderAttract() {
    const products = (this.kiosk ? this.kiosk.slots : []).filter((slot) => slot.available).slice(0, 6);
    return h(
      "main",
      {
        class: "screen attract",
        "data-testid": "attract",
        onclick: () => this.start(),
      },
      this.toolbar(),
      h(
        "div",
        { class: "attract-body" },
        h("div", { class: "attract-art", "aria-hidden": "true" }, products.map((slot, i) => h("div", { class: "float", style: { "--i": String(i) } }, productArt(slot.product, { size: 120 })))),
        h("h1", {}, t("kiosk.attract.welcome")),
        h("p", { class: "machine-name big-text" }, this.kiosk ? this.kiosk.name : ""),
        this.notice ? h("p", { class: "notice-text", role: "status" }, this.notice) : null,
        h(
          "button",
          {
            class: "primary huge pulse",
            "data-testid": "start",
            "data-focus": "start",
            onclick: (event) => {
              event.stopPropagation();
              this.start();
            },
          },
          t("kiosk.attract.touch"),
        ),
      ),
    );
  }

  renderGrid() {
    const slots = this.kiosk ? this.kiosk.slots : [];
    return h(
      "main",
      { class: "screen grid-screen" },
      this.header(t("kiosk.grid.title")),
      this.notice ? h("p", { class: "notice-text", role: "status" }, this.notice) : null,
      slots.length
        ? h(
            "ul",
            { class: "products", "data-testid": "products" },
            slots.map((slot) => {
              const status = slot.available ? "" : slot.sold_out ? t("kiosk.grid.sold_out") : t("kiosk.grid.unavailable");
              return h(
                "li",
                {},
                h(
                  "button",
                  {
                    class: `product${slot.available ? "" : " sold-out"}`,
                    "data-slot": slot.code,
                    "data-focus": `slot-${slot.code}`,
                    "aria-disabled": slot.available ? "false" : "true",
                    "aria-label": [slot.product, this.money(slot.price), status].filter(Boolean).join(", "),
                    onclick: () => {
                      if (slot.available) this.choose(slot);
                      else play("error");
                    },
                  },
                  productArt(slot.product, { soldOut: !slot.available }),
                  h("span", { class: "product-name" }, slot.product || "—"),
                  h("span", { class: "price" }, this.money(slot.price)),
                  status ? h("span", { class: "badge sold-out-badge", "data-testid": "sold-out" }, status) : null,
                ),
              );
            }),
          )
        : h("p", { class: "big-text" }, t("kiosk.grid.empty")),
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "big", "data-focus": "home", onclick: () => this.goAttract() }, t("kiosk.back_to_start")),
      ),
    );
  }

  renderDetail() {
    const slot = this.selected;
    return h(
      "main",
      { class: "screen detail" },
      this.header(null),
      h(
        "div",
        { class: "detail-body" },
        h("div", { class: "detail-art" }, productArt(slot.product, { size: 320 })),
        h("h1", { tabindex: "-1", "data-testid": "detail-name" }, slot.product),
        h("p", { class: "price huge-text" }, this.money(slot.price)),
        h("p", { class: "muted big-text" }, t("kiosk.detail.slot", { code: slot.code })),
        slot.stock !== null && slot.stock !== undefined ? h("p", { class: "muted" }, t("kiosk.detail.left", { count: slot.stock })) : null,
      ),
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "big", "data-focus": "back", onclick: () => this.show("grid") }, t("kiosk.back")),
        h(
          "button",
          { class: "primary big", "data-testid": "buy", "data-focus": "buy", onclick: () => this.show("method") },
          t("kiosk.detail.buy", { price: this.money(slot.price) }),
        ),
      ),
    );
  }

  renderMethod() {
    const slot = this.selected;
    const methods = this.kiosk.payment_methods;
    return h(
      "main",
      { class: "screen method" },
      this.header(t("kiosk.method.title")),
      h("p", { class: "big-text" }, t("kiosk.method.paying", { product: slot.product, price: this.money(slot.price) })),
      h(
        "div",
        { class: "methods" },
        methods.map((method) =>
          h(
            "button",
            {
              class: "method-button",
              "data-method": method,
              "data-testid": `method-${method}`,
              "data-focus": `method-${method}`,
              onclick: () => this.buy(method),
            },
            h("span", { class: "method-icon", "aria-hidden": "true" }, methodIcon(method)),
            h("span", { class: "method-name" }, t(`kiosk.methods.${method}`)),
            h("span", { class: "muted" }, t(`kiosk.method.hint_${method}`)),
          ),
        ),
      ),
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "big", "data-focus": "back", onclick: () => this.show("detail") }, t("kiosk.back")),
      ),
    );
  }

  renderPayment() {
    const p = this.purchase;
    const parts = [];
    if (p.method === "card") {
      parts.push(
        h("div", { class: "card-visual", "aria-hidden": "true" }, methodIcon("card", 200)),
        h("h1", { tabindex: "-1" }, t("kiosk.payment.card_title")),
        h("p", { class: "big-text" }, t("kiosk.payment.waiting")),
      );
    } else if (p.method === "qr") {
      parts.push(
        h("h1", { tabindex: "-1" }, t("kiosk.payment.qr_title")),
        qrCode(p.payment_url || p.id, t("kiosk.payment.qr_label")),
        h("p", { class: "big-text" }, t("kiosk.payment.qr_hint")),
      );
    } else {
      parts.push(
        h("h1", { tabindex: "-1" }, t("kiosk.payment.cash_title")),
        h(
          "dl",
          { class: "cash-figures" },
          h("div", {}, h("dt", {}, t("kiosk.payment.price")), h("dd", { "data-field": "price" }, this.money(p.price))),
          h("div", { class: "credit" }, h("dt", {}, t("kiosk.payment.inserted")), h("dd", { "data-field": "credit", "aria-live": "polite" }, this.money(p.credit))),
          h("div", {}, h("dt", {}, t("kiosk.payment.due")), h("dd", { "data-field": "due" }, this.money(p.due))),
        ),
      );
    }
    const demo = h(
      "section",
      { class: "demo", "aria-label": t("kiosk.payment.demo") },
      h("h2", {}, t("kiosk.payment.demo")),
      p.method === "cash"
        ? h(
            "div",
            { class: "coins" },
            COINS.map((amount) =>
              h(
                "button",
                {
                  class: "coin",
                  "data-amount": String(amount),
                  "data-testid": `coin-${amount}`,
                  "data-focus": `coin-${amount}`,
                  "aria-label": t("kiosk.payment.insert", { amount: this.money(amount) }),
                  onclick: () => this.insert(amount),
                },
                this.money(amount),
              ),
            ),
          )
        : h(
            "div",
            { class: "demo-actions" },
            h("button", { class: "primary big", "data-testid": "approve", "data-focus": "approve", onclick: () => this.approve(false) }, t("kiosk.payment.approve")),
            h("button", { class: "big", "data-testid": "decline", "data-focus": "decline", onclick: () => this.approve(true) }, t("kiosk.payment.decline")),
          ),
    );
    return h(
      "main",
      { class: `screen payment payment-${p.method}`, "data-method": p.method },
      this.header(null),
      h("p", { class: "big-text summary" }, t("kiosk.payment.total", { product: p.product, price: this.money(p.price) })),
      h("div", { class: "payment-body" }, parts),
      h("p", { class: "muted", "data-field": "expires" }, this.timeLeft()),
      demo,
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "big danger", "data-testid": "cancel", "data-focus": "cancel", onclick: () => this.cancel() }, t("kiosk.payment.cancel")),
      ),
    );
  }

  renderDispensing() {
    const p = this.purchase;
    return h(
      "main",
      { class: "screen dispensing", "data-testid": "dispensing" },
      h("p", { class: "approved big-text" }, t("kiosk.dispensing.approved")),
      h(
        "div",
        { class: "chute", "aria-hidden": "true" },
        h("div", { class: "drop" }, productArt(p.product, { size: 180 })),
        h("div", { class: "tray" }),
      ),
      h("h1", { tabindex: "-1", role: "status" }, t("kiosk.dispensing.title", { product: p.product })),
      h("p", { class: "big-text muted" }, t("kiosk.dispensing.wait")),
    );
  }

  renderOutcome() {
    const p = this.purchase;
    const lines = [];
    let title;
    let kind;
    if (p.state === "completed") {
      kind = "success";
      title = t("kiosk.outcome.success", { product: p.product });
      lines.push(t("kiosk.outcome.take"));
      if (p.change > 0) lines.push(h("strong", { "data-testid": "change" }, t("kiosk.outcome.change", { amount: this.money(p.change) })));
    } else if (p.reason === "declined") {
      kind = "problem";
      title = t("kiosk.outcome.declined");
      lines.push(t("kiosk.outcome.declined_hint"));
    } else if (p.reason === "interrupted") {
      kind = "problem";
      title = t("kiosk.outcome.interrupted");
      lines.push(t("kiosk.outcome.interrupted_hint"));
    } else if (p.state === "cancelled") {
      kind = "neutral";
      title = p.reason === "timeout" ? t("kiosk.outcome.timeout") : t("kiosk.outcome.cancelled");
      lines.push(p.refunded ? h("strong", { "data-testid": "refund" }, t("kiosk.outcome.refunded_cash", { amount: this.money(p.refund_amount) })) : t("kiosk.outcome.nothing_charged"));
    } else {
      kind = "problem";
      title = t("kiosk.outcome.failed", { product: p.product });
      lines.push(t(`kiosk.reasons.${knownReason(p.reason)}`));
      if (p.refunded) {
        lines.push(
          h(
            "strong",
            { "data-testid": "refund" },
            p.method === "cash"
              ? t("kiosk.outcome.refunded_cash", { amount: this.money(p.refund_amount) })
              : t("kiosk.outcome.refunded", { amount: this.money(p.refund_amount) }),
          ),
        );
      }
    }
    return h(
      "main",
      { class: `screen outcome outcome-${kind}`, "data-testid": "outcome", "data-outcome": p.state, "data-reason": p.reason || "" },
      h("div", { class: "outcome-icon", "aria-hidden": "true" }, kind === "success" ? "✓" : kind === "problem" ? "!" : "×"),
      h("h1", { tabindex: "-1", role: "status" }, title),
      lines.map((line) => h("p", { class: "big-text" }, line)),
      h("p", { class: "muted" }, t("kiosk.outcome.back_soon", { seconds: OUTCOME_SECONDS })),
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "primary big", "data-testid": "done", "data-focus": "done", onclick: () => this.goAttract() }, t("kiosk.outcome.done")),
      ),
    );
  }

  renderUnavailable() {
    return h(
      "main",
      { class: "screen unavailable", "data-testid": "unavailable" },
      this.toolbar(),
      h("h1", { tabindex: "-1" }, t("kiosk.unavailable.title")),
      h("p", { class: "big-text" }, this.kiosk && !this.kiosk.purchases ? t("kiosk.unavailable.not_simulated") : t("kiosk.unavailable.hint")),
      h("footer", { class: "actions" }, h("button", { class: "big", onclick: () => this.goAttract() }, t("kiosk.back_to_start"))),
    );
  }
}

const REASONS = new Set(["jam", "motor", "locked", "sold_out", "error", "stopped", "replaced"]);
function knownReason(reason) {
  return REASONS.has(reason) ? reason : "error";
}

function qrCode(text, label) {
  const code = encodeQr(text, "M");
  const size = code.size + 8;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("class", "qr");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("shape-rendering", "crispEdges");
  svg.dataset.testid = "qr";
  svg.dataset.payload = text;
  const background = document.createElementNS("http://www.w3.org/2000/svg", "rect");
  background.setAttribute("width", String(size));
  background.setAttribute("height", String(size));
  background.setAttribute("fill", "#ffffff");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", qrPath(code, 4));
  path.setAttribute("fill", "#000000");
  svg.append(background, path);
  return svg;
}

define("vh-kiosk", VhKiosk);
