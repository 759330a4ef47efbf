// The WebSocket client of the console and the kiosk (/api/websocket, docs/api-websocket.md):
// signs in with the session cookie (or a token), re-subscribes after every reconnect, and
// reconnects with backoff. Events: "status" (detail: connecting|connected|disconnected),
// "reconnected" (states may have changed meanwhile: refetch snapshots), "unauthorized".

const CLOSE_POLICY = 1008;

export class HubSocket extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.url] default: /api/websocket on this origin
   * @param {() => string|null} [options.token] an access token when there is no session cookie
   */
  constructor({ url, token = null } = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${scheme}//${location.host}/api/websocket`;
    this.token = token;
    this.status = "disconnected";
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map(); // id → {resolve, reject}
    this.subscriptions = new Map(); // key → {message, callback, id}
    this.byId = new Map(); // current subscription id → key
    this.keys = 1;
    this.retry = 0;
    this.stopped = true;
    this.everConnected = false;
    this.timer = null;
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }

  /** Connect (again); resolves when signed in, rejects if the first attempt fails. */
  connect() {
    this.stopped = false;
    if (this.socket) return this.ready || Promise.resolve();
    this._setStatus("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.ready = new Promise((resolve, reject) => {
      this._readyResolve = resolve;
      this._readyReject = reject;
    });
    this.ready.catch(() => {});
    socket.addEventListener("message", (event) => this._onMessage(event.data));
    socket.addEventListener("close", (event) => this._onClose(event));
    socket.addEventListener("error", () => {});
    return this.ready;
  }

  /** Close for good (sign-out, page left). */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "bye");
    this.socket = null;
    this._setStatus("disconnected");
  }

  _send(message) {
    this.socket.send(JSON.stringify(message));
  }

  _onMessage(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      return;
    }
    const messages = Array.isArray(data) ? data : [data];
    for (const message of messages) this._handle(message);
  }

  _handle(message) {
    switch (message.type) {
      case "auth_required": {
        const token = this.token ? this.token() : null;
        if (token) this._send({ type: "auth", access_token: token });
        else {
          this._unauthorized("no session");
          this.socket.close(1000, "not signed in");
        }
        return;
      }
      case "auth_invalid":
        this._unauthorized(message.message);
        return;
      case "auth_ok":
        this._signedIn();
        return;
      case "event": {
        const key = this.byId.get(message.id);
        const entry = key && this.subscriptions.get(key);
        if (entry) {
          try {
            entry.callback(message.event);
          } catch (error) {
            console.error(error); // a page's bug must not stop the other subscribers
          }
        }
        return;
      }
      case "result":
      case "pong": {
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (message.type === "pong" || message.success) waiter.resolve(message.result);
        else {
          const error = new Error((message.error && message.error.message) || "failed");
          error.code = message.error && message.error.code;
          waiter.reject(error);
        }
        return;
      }
      default:
    }
  }

  _signedIn() {
    const again = this.everConnected;
    this.everConnected = true;
    this.retry = 0;
    this._request({ type: "supported_features", features: { coalesce_messages: 1 } }).catch(() => {});
    this.byId.clear();
    for (const [key, entry] of this.subscriptions) this._subscribe(key, entry);
    this._setStatus("connected");
    this._readyResolve();
    if (again) this.dispatchEvent(new CustomEvent("reconnected"));
  }

  _unauthorized(reason) {
    this.stopped = true;
    this._readyReject(new Error(reason || "unauthorized"));
    this.dispatchEvent(new CustomEvent("unauthorized", { detail: reason }));
  }

  _onClose(event) {
    this.socket = null;
    for (const waiter of this.pending.values()) waiter.reject(new Error("disconnected"));
    this.pending.clear();
    this.byId.clear();
    this._readyReject(new Error("disconnected"));
    this._setStatus("disconnected");
    // 1008 also closes a client that read too slowly: that one just reconnects.
    if (event.code === CLOSE_POLICY && !this.stopped && !/too slow/i.test(event.reason || "")) {
      this._unauthorized(event.reason);
      return;
    }
    if (this.stopped) return;
    const delay = Math.min(30000, 1000 * 2 ** this.retry) * (0.75 + Math.random() / 2);
    this.retry = Math.min(this.retry + 1, 5);
    this.timer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, delay);
  }

  _request(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this._send({ ...message, id });
    });
  }

  _subscribe(key, entry) {
    if (this.status !== "connected" && !(this.socket && this.socket.readyState === WebSocket.OPEN)) return;
    const id = this.nextId; // the id the request below takes
    this.byId.set(id, key);
    entry.id = id;
    this._request(entry.message).catch((error) => {
      this.byId.delete(id);
      if (entry.onError) entry.onError(error);
    });
  }

  _add(message, callback, onError) {
    const key = this.keys++;
    const entry = { message, callback, onError, id: null };
    this.subscriptions.set(key, entry);
    if (this.socket && this.socket.readyState === WebSocket.OPEN && this.status === "connected") {
      this._subscribe(key, entry);
    }
    return () => {
      this.subscriptions.delete(key);
      if (entry.id !== null && this.byId.get(entry.id) === key) {
        this.byId.delete(entry.id);
        this._request({ type: "unsubscribe", subscription: entry.id }).catch(() => {});
      }
    };
  }

  /**
   * ``callback({entity_id, new_state})`` on every state change that ``filter`` lets through
   * ({entity_id: glob or list, machine_id: id or list}). Returns the unsubscribe function.
   */
  subscribeStates(filter, callback, onError) {
    return this._add({ type: "subscribe_states", ...(filter || {}) }, callback, onError);
  }

  /** ``callback(event)`` for bus events of ``eventType`` (string, list, or null for all). */
  subscribeEvents(eventType, filter, callback, onError) {
    const message = { type: "subscribe_events", ...(filter || {}) };
    if (eventType) message.event_type = eventType;
    return this._add(message, callback, onError);
  }

  /** The current states ``filter`` lets through. */
  async getStates(filter) {
    await this.ready;
    return this._request({ type: "get_states", ...(filter || {}) });
  }

  async callService(domain, service, serviceData = {}) {
    await this.ready;
    return this._request({ type: "call_service", domain, service, service_data: serviceData });
  }

  async ping() {
    await this.ready;
    return this._request({ type: "ping" });
  }
}
