// The REST client of the console and the kiosk: same-origin JSON over fetch, with the
// console session's cookie and its CSRF header (double submit: X-CSRF-Token = vendhub_csrf).

export const CSRF_COOKIE = "vendhub_csrf";
export const CSRF_HEADER = "X-CSRF-Token";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** An answer other than 2xx: ``status``, the API's ``code`` and readable ``message``. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code || "http_error";
    this.details = details;
  }
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/** Whether this browser holds a console session (the readable CSRF cookie is its twin). */
export function hasSession() {
  return cookie(CSRF_COOKIE) !== null;
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

export class Api {
  /**
   * @param {object} options
   * @param {string} [options.base] prefix of every path ("" for this origin)
   * @param {() => string|null} [options.token] a bearer token (the kiosk); none: the session
   */
  constructor({ base = "", token = null } = {}) {
    this.base = base;
    this.token = token;
    this.listeners = new Set();
  }

  /** ``fn(error)`` on every 401 (the session ended): the app shows the sign-in. */
  onUnauthorized(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async request(method, path, { query, body, signal } = {}) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const bearer = this.token ? this.token() : null;
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    else if (!SAFE.has(method)) {
      const csrf = cookie(CSRF_COOKIE);
      if (csrf) headers[CSRF_HEADER] = csrf;
    }
    let response;
    try {
      response = await fetch(this.base + withQuery(path, query), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "network", error.message);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      const info = (data && data.error) || {};
      const error = new ApiError(response.status, info.code, info.message, info.details);
      if (response.status === 401) for (const fn of this.listeners) fn(error);
      throw error;
    }
    return data;
  }

  get(path, query, options = {}) {
    return this.request("GET", path, { ...options, query });
  }

  post(path, body = {}, options = {}) {
    return this.request("POST", path, { ...options, body });
  }

  put(path, body, options = {}) {
    return this.request("PUT", path, { ...options, body });
  }

  patch(path, body, options = {}) {
    return this.request("PATCH", path, { ...options, body });
  }

  delete(path, options = {}) {
    return this.request("DELETE", path, options);
  }

  // ---- the session ------------------------------------------------------------------

  /** Sign in with a password and start a console session (cookies); the tokens are dropped. */
  async login(username, password) {
    await this.post("/api/auth/login", { grant_type: "password", username, password, session: true });
  }

  /** Create the owner on a new hub, and start their session. */
  async onboard(username, password, name) {
    const body = { username, password, session: true };
    if (name) body.name = name;
    await this.post("/api/onboarding", body);
  }

  async logout() {
    try {
      await this.post("/api/auth/logout");
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
    }
  }
}

/** The one client of pages served by the hub. */
export const api = new Api();
