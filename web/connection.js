// One WebSocket to confab that survives the network: it reconnects with
// backoff, replays unacknowledged sends (the server deduplicates them by
// client_msg_id), and tells the page when each connection is ready so the
// page can chat:sync what it missed.

const RETRYABLE = new Set(['unavailable', 'rate_limited']);
const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 10000;

export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.ready = false;
    this.attempt = 0;
    this.nextRef = 1;
    this.pending = new Map(); // ref -> {resolve, reject}
    this.outbox = new Map(); // client_msg_id -> {data, resolve, reject, ref}
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    window.addEventListener('online', () => this.reconnectNow());
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.socket?.close(1000, 'signed out');
  }

  // Closes the socket as a network failure would, to exercise recovery.
  drop() {
    this.socket?.close(4000, 'dropped by the page');
  }

  reconnectNow() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  open() {
    this.retryTimer = null;
    this.status('connecting');
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener('message', (e) => this.onFrame(e.data));
    socket.addEventListener('close', (e) => this.onClose(socket, e));
  }

  onClose(socket, event) {
    if (this.socket !== socket) return;
    const wasReady = this.ready;
    this.socket = null;
    this.ready = false;
    clearInterval(this.pingTimer);
    for (const { reject } of this.pending.values()) reject(new Error('disconnected'));
    this.pending.clear();
    for (const entry of this.outbox.values()) entry.ref = null;
    this.emit('closed', { code: event.code, wasReady });
    if (this.stopped) {
      this.status('closed');
      return;
    }
    if (wasReady) this.attempt = 0;
    // Exponential backoff with jitter, so a restarted server is not
    // stormed by every client at once.
    const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.status('reconnecting', { delay });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const { event, ref, data } = frame;
    if (event === 'chat:ready') {
      this.ready = true;
      this.status('online');
      this.startPinging();
      // The page syncs first; queued sends go out right after, in order.
      this.emit('ready', data);
      for (const [clientMsgId, entry] of this.outbox) {
        if (entry.ref === null) this.transmitSend(clientMsgId, entry);
      }
      return;
    }
    if (ref !== undefined && ref !== null && this.pending.has(ref)) {
      const { resolve, reject } = this.pending.get(ref);
      this.pending.delete(ref);
      if (event === 'chat:error') reject(Object.assign(new Error(data.message), { code: data.code }));
      else resolve(data);
      return;
    }
    this.emit(event, data);
  }

  startPinging() {
    clearInterval(this.pingTimer);
    // A socket can die silently (a laptop lid, a dead Wi-Fi): no pong in
    // time means the connection is gone, so it is closed and redialled.
    this.pingTimer = setInterval(() => {
      const socket = this.socket;
      const timeout = setTimeout(() => {
        // 4000 as for drop(): 4001 and 4003 are the server's "signed out".
        if (this.socket === socket) socket.close(4000, 'no pong');
      }, PONG_WITHIN_MS);
      this.request('ping', {}).then(() => clearTimeout(timeout), () => clearTimeout(timeout));
    }, PING_EVERY_MS);
  }

  // A request with a ref: resolves with the ack's data, rejects with the
  // chat:error (its `code` set) or when the connection drops.
  request(event, data) {
    if (!this.ready) return Promise.reject(new Error('not connected'));
    const ref = `r${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.socket.send(JSON.stringify({ event, ref, data }));
    });
  }

  // Fire and forget (receipts, typing): lost if offline, which is harmless
  // because the next one carries the newer state.
  notify(event, data) {
    if (this.ready) this.socket.send(JSON.stringify({ event, data }));
  }

  // chat:send that keeps trying until the server acks it. Resolves with
  // the stored message; rejects only when the server refuses it for good.
  send(data) {
    return new Promise((resolve, reject) => {
      const entry = { data, resolve, reject, ref: null };
      this.outbox.set(data.client_msg_id, entry);
      if (this.ready) this.transmitSend(data.client_msg_id, entry);
    });
  }

  transmitSend(clientMsgId, entry) {
    const attempt = this.request('chat:send', entry.data);
    entry.ref = attempt;
    attempt.then(
      ({ message }) => {
        this.outbox.delete(clientMsgId);
        entry.resolve(message);
      },
      (err) => {
        if (entry.ref !== attempt) return;
        if (err.code && !RETRYABLE.has(err.code)) {
          this.outbox.delete(clientMsgId);
          entry.reject(err);
          return;
        }
        entry.ref = null;
        // Retryable, or the socket dropped (then chat:ready replays it).
        if (err.code) setTimeout(() => this.ready && entry.ref === null && this.transmitSend(clientMsgId, entry), 1000);
      },
    );
  }

  status(state, detail = {}) {
    this.emit('status', { state, ...detail });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
