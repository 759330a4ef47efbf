// Translations and formatting. Strings live in /static/common/i18n/<lang>.json as nested
// objects: t("fleet.title"), t("fleet.machines", {count: 3}) with {name} placeholders; a value
// that is an object picks its form by Intl.PluralRules ({one, few, many, other}).
// English is loaded as the fallback of every other language, so a missing string shows in
// English (and is reported once on the console as a warning), never as its key.

export const LANGUAGES = { en: "English", ru: "Русский" };
const STORAGE_KEY = "vendhub.language";
// Beside this module, so a versioned page (/static/v/<build>/...) loads its own strings.
const BASE = new URL("./i18n/", import.meta.url).pathname;

let current = "en";
let strings = {};
let fallback = {};
let timeZone;
const listeners = new Set();
const missing = new Set();

function merge(into, from) {
  for (const [key, value] of Object.entries(from)) {
    if (value && typeof value === "object" && !Array.isArray(value) && !isPluralForms(value)) {
      into[key] = merge(into[key] && typeof into[key] === "object" ? into[key] : {}, value);
    } else {
      into[key] = value;
    }
  }
  return into;
}

function isPluralForms(value) {
  return "other" in value && Object.values(value).every((v) => typeof v === "string");
}

async function fetchBundle(lang, extra) {
  const urls = [`${BASE}${lang}.json`, ...extra.map((url) => url.replace("{lang}", lang))];
  const bundles = await Promise.all(
    urls.map(async (url) => {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`cannot load ${url}: ${response.status}`);
      return response.json();
    }),
  );
  return bundles.reduce((all, bundle) => merge(all, bundle), {});
}

/** The language the user chose on this device, else the browser's, else ``fallbackLang``. */
export function preferredLanguage(available = Object.keys(LANGUAGES), fallbackLang = null) {
  const stored = localStorage.getItem(STORAGE_KEY);
  if (stored && available.includes(stored)) return stored;
  if (fallbackLang && available.includes(fallbackLang)) return fallbackLang;
  for (const candidate of navigator.languages || [navigator.language]) {
    const code = String(candidate || "").slice(0, 2).toLowerCase();
    if (available.includes(code)) return code;
  }
  return available[0] || "en";
}

export function hasStoredLanguage() {
  return localStorage.getItem(STORAGE_KEY) !== null;
}

/**
 * Load ``lang`` (and English beneath it). ``extra``: more bundle URLs with {lang}, e.g. the
 * kiosk's own strings. ``remember``: keep the choice on this device.
 */
export async function setLanguage(lang, { extra = [], remember = false } = {}) {
  if (!(lang in LANGUAGES)) lang = "en";
  const [base, chosen] = await Promise.all([
    Object.keys(fallback).length ? fallback : fetchBundle("en", extra),
    lang === "en" ? null : fetchBundle(lang, extra),
  ]);
  fallback = base;
  strings = chosen || base;
  current = lang;
  document.documentElement.lang = lang;
  if (remember) localStorage.setItem(STORAGE_KEY, lang);
  for (const fn of listeners) fn(lang);
}

export function language() {
  return current;
}

export function setTimeZone(zone) {
  timeZone = zone || undefined;
}

/** ``fn(lang)`` after every change of language; returns the function that stops it. */
export function onLanguageChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function lookup(bundle, key) {
  let value = bundle;
  for (const part of key.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = value[part];
  }
  return value;
}

/** The string ``key`` in the current language, with ``{name}`` placeholders filled. */
export function t(key, params = {}) {
  let value = lookup(strings, key);
  if (value === undefined) {
    value = lookup(fallback, key);
    if (!missing.has(key) && current !== "en") {
      missing.add(key);
      console.warn(`i18n: no ${current} string for ${key}`);
    }
  }
  if (value === undefined) return key;
  if (typeof value === "object") {
    const count = Number(params.count ?? 0);
    const form = new Intl.PluralRules(current).select(count);
    value = value[form] ?? value.other;
  }
  return String(value).replace(/\{(\w+)\}/g, (match, name) =>
    name in params ? String(params[name]) : match,
  );
}

/** Whether ``key`` has a string (in the current language or English). */
export function has(key) {
  return lookup(strings, key) !== undefined || lookup(fallback, key) !== undefined;
}

/** ``t(`${group}.${value}`)`` when there is such a string, else ``value`` itself (codes the
 * hub may grow, such as payment methods from a new provider). */
export function label(group, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${group}.${value}`;
  return has(key) ? t(key) : String(value);
}

/** Fill ``data-i18n`` (text), ``data-i18n-placeholder``, ``-title`` and ``-aria-label``. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [attr, name] of [
    ["i18nPlaceholder", "placeholder"],
    ["i18nTitle", "title"],
    ["i18nAriaLabel", "aria-label"],
  ]) {
    const selector = `[data-${attr.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}]`;
    for (const el of root.querySelectorAll(selector)) el.setAttribute(name, t(el.dataset[attr]));
  }
}

// ---- formatting -------------------------------------------------------------------------

const formatters = new Map();
function cached(kind, options) {
  const key = `${current}|${kind}|${JSON.stringify(options)}`;
  let formatter = formatters.get(key);
  if (!formatter) {
    formatter = kind === "number" ? new Intl.NumberFormat(current, options) : new Intl.DateTimeFormat(current, options);
    formatters.set(key, formatter);
  }
  return formatter;
}

/** Money in minor units (150 → "€1.50"). */
export function formatMoney(minor, currency = "EUR") {
  if (minor === null || minor === undefined) return "—";
  let formatter;
  try {
    formatter = cached("number", { style: "currency", currency });
  } catch {
    formatter = cached("number", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  const digits = formatter.resolvedOptions().maximumFractionDigits ?? 2;
  return formatter.format(minor / 10 ** digits);
}

/** How many minor units one major unit of ``currency`` has (100 for EUR, 1 for JPY). */
export function minorUnits(currency = "EUR") {
  try {
    const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits;
    return 10 ** digits;
  } catch {
    return 100;
  }
}

export function formatNumber(value, options = {}) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return cached("number", options).format(value);
}

function asDate(value) {
  return value instanceof Date ? value : new Date(value);
}

export function formatDateTime(value, options = { dateStyle: "medium", timeStyle: "short" }) {
  if (!value) return "—";
  return cached("date", { ...options, timeZone }).format(asDate(value));
}

export function formatTime(value) {
  return formatDateTime(value, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatDate(value, options = { day: "numeric", month: "short" }) {
  return formatDateTime(value, options);
}

/** "3 min ago" in the current language. */
export function formatRelative(value) {
  if (!value) return "—";
  const seconds = (asDate(value).getTime() - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(Math.round(seconds), "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
