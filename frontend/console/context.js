// What every console page shares: the REST client, the WebSocket, the signed-in user, the
// hub's configuration, and formatting in the hub's currency.

import { api } from "../common/api.js";
import { HubSocket } from "../common/ws.js";
import { formatMoney } from "../common/i18n.js";

export { api };

export const session = {
  /** /api/config: name, currency, time_zone, languages, version, integrations. */
  config: null,
  /** /api/auth/me: name, role, user_id, permissions. */
  me: null,
  /** The HubSocket, connected while signed in. */
  socket: null,
  /** The browser's offer to install the console as an app (beforeinstallprompt). */
  installPrompt: null,
};

window.addEventListener("beforeinstallprompt", (event) => {
  event.preventDefault();
  session.installPrompt = event;
});

const prefetched = new Map();

/** Start ``GET path`` now (while the app is still booting) for a page to take soon. */
export function prefetch(path) {
  const promise = api.get(path);
  promise.catch(() => {}); // whoever takes it sees the error; nobody else should
  prefetched.set(path, { promise, at: performance.now() });
}

/** ``GET path``: the prefetched answer when it is fresh (at most ``maxAge`` ms), else anew. */
export function getFresh(path, maxAge = 3000) {
  const entry = prefetched.get(path);
  prefetched.delete(path);
  if (entry && performance.now() - entry.at <= maxAge) return entry.promise;
  return api.get(path);
}

export function newSocket() {
  session.socket = new HubSocket();
  return session.socket;
}

/** Whether the signed-in user holds ``permission`` (read, operate_machines, ...). */
export function can(permission) {
  return Boolean(session.me && session.me.permissions && session.me.permissions.includes(permission));
}

export function currency() {
  return (session.config && session.config.currency) || "EUR";
}

export function money(minor, code) {
  return formatMoney(minor, code || currency());
}

/** The hash route ``#/machines/lobby_1`` → ["machines", "lobby_1"]. */
export function routeParts() {
  return location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

export function go(path) {
  if (location.hash !== `#${path}`) location.hash = path;
}
