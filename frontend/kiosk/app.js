// The customer kiosk of one machine, at /kiosk/<machine_id>: the machine's touchscreen.
//
// It signs in as its machine (the credentials `vendhub machine add` printed, entered once on
// the setup screen and kept in this browser's localStorage), so it reaches only its own
// machine. Screens: attract (idle) → product grid → product detail → payment method →
// payment (card / QR / cash) → dispensing → outcome → attract. The purchase's progress is
// polled every 500 ms (a machine identity may not use the WebSocket API). When the hub cannot
// be reached (a restart) it shows "connecting", retries, signs in again by itself and goes on.
//
// Two backends sell (`backend` of GET /api/kiosk/<id>):
// - a machine of the `vending:` block runs the vend engine with real payment providers: the
//   payment screen follows the provider's progress (present your card, the QR code to scan,
//   cash credit as it grows, processing), Cancel shows while the session can still be
//   cancelled, and the outcome screen says what the engine's outcome code means for the
//   customer (declined, timed out, not charged, refunded, change). A wallet payment asks for
//   the customer's wallet code (typed, or typed by a scanner) and sends it once, with the
//   purchase; the kiosk keeps it nowhere.
// - a simulated machine has SIMULATED payment (the simulator's purchase flow): the demo
//   buttons approve or decline a card or QR payment and insert coins.

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
const ENGINE = "engine";
/** Card readers take cards, contactless cards and phones alike: one button offers them. */
const CONTACTLESS = ["card", "nfc", "mobile_wallet"];
const METHOD_ICONS = { nfc: "card", mobile_wallet: "card", e_wallet: "qr", crypto: "qr" };
/** The vend engine's states while the customer pays, and while a failure is being undone. */
const PAYING_STATES = new Set(["selected", "authorizing"]);
const RELEASING_STATES = new Set(["voiding", "refunding"]);
/** The engine's outcome codes (vendhub/vending/session.py) with words in i18n outcomes.*. */
const OUTCOMES = new Set([
  "completed",
  "capture_failed",
  "declined",
  "cancelled",
  "payment_timeout",
  "payment_error",
  "dispense_failed",
  "refunded_dispense_failed",
  "voided_error",
]);
const SOLD = new Set(["completed", "capture_failed"]);
const NOTHING_LOST = new Set(["cancelled", "payment_timeout"]);
const DECLINES = new Set(["insufficient_funds", "expired", "unknown_token", "amount_mismatch"]);
const DISPENSE_REASONS = new Set(["jammed", "not_dropped", "motor_stuck", "no_motor", "timeout", "error", "dispense_unknown_after_restart"]);
/** The 409 codes of a refused purchase, with words in i18n errors.*. */
const REFUSALS = new Set(["sold_out", "busy", "method_not_accepted", "not_selling", "slot_locked"]);
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

/** Whether ``purchase`` is a vend engine's session (else the simulator's). */
const isEngine = (purchase) => purchase.backend === ENGINE;

function isFinished(purchase) {
  return isEngine(purchase) ? purchase.finished : FINAL.has(purchase.state);
}

function isPaying(purchase) {
  if (isEngine(purchase)) return PAYING_STATES.has(purchase.state) && !purchase.free_vend;
  return purchase.state === "selecting" || purchase.state === "awaiting_payment";
}

function isSold(purchase) {
  return isEngine(purchase) ? SOLD.has(purchase.outcome) : purchase.state === "completed";
}

/** The methods to offer: one button for the contactless ones, in the machine's order. */
function offeredMethods(methods) {
  const contactless = CONTACTLESS.find((method) => methods.includes(method));
  return methods.filter((method) => !CONTACTLESS.includes(method) || method === contactless);
}

/** What the payment screen shows before the provider's first step. */
function firstStep(method) {
  if (method === "cash") return "insert_cash";
  if (method === "qr" || method === "crypto") return "preparing_qr";
  if (CONTACTLESS.includes(method)) return "present_card";
  return "processing";
}

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
    if (this.kiosk.purchase && !isFinished(this.kiosk.purchase)) {
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
    if (["grid", "detail", "method", "token"].includes(this.screen)) {
      this.later("idle", IDLE_SECONDS * 1000, () => this.goAttract());
    }
  }

  onKey(event) {
    if (event.key === "Escape") {
      if (this.screen === "detail" || this.screen === "method") this.show("grid");
      else if (this.screen === "token") this.show("method");
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

  /** The customer picked a way to pay: a wallet first asks for the wallet's code. */
  choosePayment(method) {
    if (method === "e_wallet") {
      play("tap");
      this.show("token");
    } else {
      this.buy(method);
    }
  }

  /** Start the purchase; ``token`` (a wallet's code) goes to the hub with it, nowhere else. */
  async buy(method, token = null) {
    play("tap");
    const slot = this.selected;
    this.show("starting");
    const wanted = token ? { slot: slot.code, method, token } : { slot: slot.code, method };
    try {
      const purchase = await this.call(() => this.api.post(`/api/kiosk/${this.machineId}/purchases`, wanted));
      this.follow(purchase);
    } catch (error) {
      play("error");
      const code = error instanceof ApiError ? error.code : null;
      this.notice = REFUSALS.has(code) ? t(`kiosk.errors.${code}`) : t("kiosk.errors.generic");
      await this.reload().catch(() => {});
      this.show(this.kiosk && this.kiosk.selling ? "grid" : "unavailable");
    }
  }

  /** Show ``purchase`` and poll it until it is finished. */
  follow(purchase) {
    this.refundClaim = null;
    this.purchase = purchase;
    this.selected = this.selected || { code: purchase.slot, product: purchase.product, price: purchase.price };
    this.showPurchase();
    this.poll();
  }

  poll() {
    this.later("poll", POLL_MS, async () => {
      if (!this.purchase || isFinished(this.purchase)) return;
      const id = this.purchase.id;
      try {
        const fresh = await this.call(() => this.api.get(`/api/kiosk/${this.machineId}/purchases/${id}`));
        this.update(fresh);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404 && this.purchase && this.purchase.id === id) {
          // The hub restarted and forgot the purchase.
          this.purchase = {
            ...this.purchase,
            state: "failed",
            finished: true,
            cancellable: false,
            outcome: null,
            reason: "interrupted",
            refunded: false,
          };
          this.showPurchase();
          return;
        }
      }
      if (this.purchase && !isFinished(this.purchase)) this.poll();
    });
  }

  update(fresh) {
    if (!this.purchase || fresh.id !== this.purchase.id) return;
    const before = this.purchase;
    if (isEngine(fresh) ? JSON.stringify(fresh) === JSON.stringify(before) : fresh.seq === before.seq && fresh.state === before.state) return;
    this.purchase = fresh;
    if (isEngine(fresh) && fresh.progress.step === "refund_claim" && fresh.progress.url) {
      // A declined crypto payment that was partly paid: its claim link shows until the end.
      this.refundClaim = fresh.progress.url;
    }
    if (fresh.credit > before.credit) play("coin");
    this.showPurchase();
  }

  showPurchase() {
    const p = this.purchase;
    if (isFinished(p)) {
      this.clear("tick");
      this.clear("poll");
      play(isSold(p) ? "success" : "error");
      this.show("outcome");
      this.later("outcome", OUTCOME_SECONDS * 1000, () => this.goAttract());
    } else if (isPaying(p)) {
      this.show("payment");
      this.tick();
    } else {
      if (this.screen !== "dispensing") play("attention");
      this.show("dispensing");
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
    if (!this.purchase || isFinished(this.purchase)) return;
    if (isEngine(this.purchase) && !this.purchase.cancellable) return;
    play("tap");
    await this.purchaseAction("cancel");
    // The engine's cancelled session shows its outcome ("nothing was charged").
    if (!isEngine(this.purchase) && this.purchase.state === "cancelled" && !this.purchase.refunded) {
      // Nothing was paid: straight back to the products.
      this.clear("poll");
      this.clear("tick");
      this.purchase = null;
      await this.reload().catch(() => {});
      this.show("grid");
    }
  }

  /** Multi-vend: the credit left pays the next product. */
  async another() {
    play("tap");
    this.clear("outcome");
    this.purchase = null;
    this.selected = null;
    await this.reload().catch(() => {});
    this.show(this.kiosk && this.kiosk.selling ? "grid" : "unavailable");
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
      token: () => this.renderToken(),
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
      // The wallet code's field has the focus: a scanner types into it.
      const first =
        this.screen === "attract"
          ? this.querySelector("[data-testid=start]")
          : this.screen === "token"
            ? this.querySelector("#wallet-token")
            : this.querySelector("h1");
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
    const methods = offeredMethods(this.kiosk.payment_methods);
    const buttons = this.kiosk.free_vend
      ? [
          h(
            "button",
            {
              class: "method-button",
              "data-method": "free",
              "data-testid": "method-free",
              "data-focus": "method-free",
              // Free vend asks no provider; the engine still wants a method it knows.
              onclick: () => this.buy(methods.find((method) => method !== "e_wallet") || "card"),
            },
            h("span", { class: "method-name" }, t("kiosk.method.free")),
            h("span", { class: "muted" }, t("kiosk.method.free_hint")),
          ),
        ]
      : methods.map((method) =>
          h(
            "button",
            {
              class: "method-button",
              "data-method": method,
              "data-testid": `method-${method}`,
              "data-focus": `method-${method}`,
              onclick: () => this.choosePayment(method),
            },
            h("span", { class: "method-icon", "aria-hidden": "true" }, methodIcon(METHOD_ICONS[method] || method)),
            h("span", { class: "method-name" }, t(`kiosk.methods.${method}`)),
            h("span", { class: "muted" }, t(`kiosk.method.hint_${method}`)),
          ),
        );
    return h(
      "main",
      { class: "screen method" },
      this.header(t("kiosk.method.title")),
      h("p", { class: "big-text" }, t("kiosk.method.paying", { product: slot.product, price: this.money(slot.price) })),
      h("div", { class: "methods" }, buttons),
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "big", "data-focus": "back", onclick: () => this.show("detail") }, t("kiosk.back")),
      ),
    );
  }

  /** A wallet payment: the customer's wallet code, typed or scanned into the field. */
  renderToken() {
    const slot = this.selected;
    const form = h(
      "form",
      {
        class: "setup-form token-form",
        "data-testid": "token-form",
        autocomplete: "off",
        onsubmit: (event) => {
          event.preventDefault();
          const field = form.querySelector("#wallet-token");
          const token = field.value.trim();
          field.value = "";
          if (token) this.buy("e_wallet", token);
        },
      },
      h("label", { for: "wallet-token" }, t("kiosk.token.label")),
      h("input", {
        id: "wallet-token",
        name: "wallet_token",
        type: "password",
        autocomplete: "off",
        autocapitalize: "none",
        spellcheck: "false",
        required: true,
        maxlength: "256",
        "data-testid": "wallet-token",
        "data-focus": "wallet-token",
      }),
      h(
        "button",
        { class: "primary big", type: "submit", "data-testid": "token-pay", "data-focus": "token-pay" },
        t("kiosk.token.pay", { price: this.money(slot.price) }),
      ),
    );
    return h(
      "main",
      { class: "screen token" },
      this.header(t("kiosk.token.title")),
      h("p", { class: "big-text" }, t("kiosk.token.hint")),
      form,
      h(
        "footer",
        { class: "actions" },
        h("button", { class: "big", "data-focus": "back", onclick: () => this.show("method") }, t("kiosk.back")),
      ),
    );
  }

  cashFigures(p) {
    return h(
      "dl",
      { class: "cash-figures" },
      h("div", {}, h("dt", {}, t("kiosk.payment.price")), h("dd", { "data-field": "price" }, this.money(p.price))),
      h("div", { class: "credit" }, h("dt", {}, t("kiosk.payment.inserted")), h("dd", { "data-field": "credit", "aria-live": "polite" }, this.money(p.credit))),
      h("div", {}, h("dt", {}, t("kiosk.payment.due")), h("dd", { "data-field": "due" }, this.money(p.due))),
    );
  }

  /** A vend engine's payment: what its provider asks of the customer now. */
  renderEnginePayment() {
    const p = this.purchase;
    const step = p.progress.step || firstStep(p.method);
    const parts = [];
    if (step === "present_card") {
      parts.push(
        h("div", { class: "card-visual", "aria-hidden": "true" }, methodIcon("card", 200)),
        h("h1", { tabindex: "-1" }, t("kiosk.pay.present_card")),
        h("p", { class: "big-text" }, t("kiosk.pay.present_card_hint")),
      );
    } else if (step === "scan_qr" && p.payment_url) {
      parts.push(
        h("h1", { tabindex: "-1" }, t("kiosk.payment.qr_title")),
        qrCode(p.payment_url, t("kiosk.payment.qr_label")),
        h(
          "p",
          { class: "big-text", role: "status" },
          p.progress.paid_partially ? t("kiosk.pay.paid_partially") : t("kiosk.payment.qr_hint"),
        ),
      );
    } else if (step === "insert_cash") {
      parts.push(h("h1", { tabindex: "-1" }, t("kiosk.payment.cash_title")), this.cashFigures(p));
    } else if (step === "refund_claim" && p.progress.url) {
      parts.push(
        h("h1", { tabindex: "-1" }, t("kiosk.pay.refund_claim_title")),
        qrCode(p.progress.url, t("kiosk.pay.refund_claim_label")),
        h("p", { class: "big-text" }, t("kiosk.pay.refund_claim_hint")),
      );
    } else {
      // processing, the QR code on its way, or a step this kiosk does not know yet
      parts.push(
        h("div", { class: "spinner", "aria-hidden": "true" }),
        h("h1", { tabindex: "-1", role: "status" }, step === "preparing_qr" ? t("kiosk.pay.preparing_qr") : t("kiosk.pay.processing")),
        h("p", { class: "big-text muted" }, t("kiosk.dispensing.wait")),
      );
    }
    return h(
      "main",
      { class: `screen payment payment-${p.method}`, "data-method": p.method, "data-step": step, "data-testid": "engine-payment" },
      this.header(null),
      h("p", { class: "big-text summary" }, t("kiosk.payment.total", { product: p.product, price: this.money(p.price) })),
      h("div", { class: "payment-body" }, parts),
      h("p", { class: "muted", "data-field": "expires" }, this.timeLeft()),
      h(
        "footer",
        { class: "actions" },
        p.cancellable
          ? h("button", { class: "big danger", "data-testid": "cancel", "data-focus": "cancel", onclick: () => this.cancel() }, t("kiosk.payment.cancel"))
          : null,
      ),
    );
  }

  renderPayment() {
    const p = this.purchase;
    if (isEngine(p)) return this.renderEnginePayment();
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
      parts.push(h("h1", { tabindex: "-1" }, t("kiosk.payment.cash_title")), this.cashFigures(p));
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
    if (isEngine(p) && RELEASING_STATES.has(p.state)) {
      // The vend failed after the payment was approved: the engine gives the money back.
      return h(
        "main",
        { class: "screen dispensing releasing", "data-testid": "dispensing", "data-state": p.state },
        h("div", { class: "spinner", "aria-hidden": "true" }),
        h("h1", { tabindex: "-1", role: "status" }, t("kiosk.dispensing.problem")),
        h("p", { class: "big-text" }, t("kiosk.dispensing.releasing")),
      );
    }
    return h(
      "main",
      { class: "screen dispensing", "data-testid": "dispensing", "data-state": p.state },
      h("p", { class: "approved big-text" }, p.free_vend ? t("kiosk.dispensing.free") : t("kiosk.dispensing.approved")),
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
    const engine = isEngine(p);
    const { kind, title, lines, more = null } = engine ? this.engineOutcome(p) : this.simulatedOutcome(p);
    return h(
      "main",
      {
        class: `screen outcome outcome-${kind}`,
        "data-testid": "outcome",
        "data-backend": engine ? ENGINE : "simulator",
        "data-outcome": engine ? p.outcome || p.reason || "" : p.state,
        "data-reason": p.reason || "",
      },
      h("div", { class: "outcome-icon", "aria-hidden": "true" }, kind === "success" ? "✓" : kind === "problem" ? "!" : "×"),
      h("h1", { tabindex: "-1", role: "status" }, title),
      lines.map((line) => h("p", { class: "big-text" }, line)),
      h("p", { class: "muted" }, t("kiosk.outcome.back_soon", { seconds: OUTCOME_SECONDS })),
      h(
        "footer",
        { class: "actions" },
        more,
        h("button", { class: "primary big", "data-testid": "done", "data-focus": "done", onclick: () => this.goAttract() }, t("kiosk.outcome.done")),
      ),
    );
  }

  /** What the customer is told at the end of a vend engine's session, by its outcome code. */
  engineOutcome(p) {
    const lines = [];
    const amount = (minor) => ({ amount: this.money(minor), product: p.product });
    if (!p.outcome && p.reason === "interrupted") {
      return { kind: "problem", title: t("kiosk.outcome.interrupted"), lines: [t("kiosk.outcome.interrupted_hint")] };
    }
    if (SOLD.has(p.outcome)) {
      lines.push(t("kiosk.outcomes.completed.hint"));
      if (p.change > 0) lines.push(h("strong", { "data-testid": "change" }, t("kiosk.outcome.change", amount(p.change))));
      let more = null;
      if (p.credit_left > 0) {
        lines.push(h("strong", { "data-testid": "credit-left" }, t("kiosk.outcome.credit_left", amount(p.credit_left))));
        more = h("button", { class: "big", "data-testid": "another", "data-focus": "another", onclick: () => this.another() }, t("kiosk.outcome.another"));
      }
      return { kind: "success", title: t("kiosk.outcomes.completed.title", amount(0)), lines, more };
    }
    const outcome = OUTCOMES.has(p.outcome) ? p.outcome : "voided_error";
    if (outcome === "declined" && DECLINES.has(p.reason)) lines.push(t(`kiosk.declines.${p.reason}`));
    if (outcome === "dispense_failed" || outcome === "refunded_dispense_failed") {
      lines.push(t(`kiosk.dispense_reasons.${DISPENSE_REASONS.has(p.reason) ? p.reason : "error"}`));
    }
    // Whether and how the customer got their money back: the line they look for.
    lines.push(h("strong", { "data-testid": "money" }, t(`kiosk.outcomes.${outcome}.hint`, amount(p.refund_amount || p.price))));
    if (p.change > 0) {
      lines.push(h("strong", { "data-testid": "refund" }, t("kiosk.outcome.refunded_cash", amount(p.change))));
    } else if (p.method === "cash" && outcome !== "refunded_dispense_failed") {
      lines.push(t("kiosk.outcome.cash_returned"));
    }
    if (outcome === "declined" && this.refundClaim) {
      lines.push(qrCode(this.refundClaim, t("kiosk.pay.refund_claim_label")), t("kiosk.pay.refund_claim_hint"));
    }
    return {
      kind: NOTHING_LOST.has(outcome) ? "neutral" : "problem",
      title: t(`kiosk.outcomes.${outcome}.title`, amount(p.price)),
      lines,
    };
  }

  /** What the customer is told at the end of a simulated purchase. */
  simulatedOutcome(p) {
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
    return { kind, title, lines };
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
