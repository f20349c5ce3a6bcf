// The WebSocket at /api/ws: hello → resume → resumed, heartbeats, refs for acks, and
// automatic reconnection with exponential backoff and jitter. The app supplies the resume map
// (last seq processed per channel) on every (re)connect, so nothing is missed.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;

export class Connection {
  /**
   * @param {object} o
   * @param {() => Record<string, number>} o.resumeMap
   * @param {(frame: object) => void} o.onFrame every server frame after `hello`
   * @param {(state: string, info: object) => void} o.onState connecting | live | reconnecting | offline | paused
   * @param {(code: number, gotHello: boolean) => Promise<boolean>} o.onClosed may refresh auth; false stops
   */
  constructor({ resumeMap, onFrame, onState, onClosed }) {
    this.resumeMap = resumeMap;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onClosed = onClosed;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.paused = false;
    this.live = false;
    this.hello = null;
    this.refSeq = 0;
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.state = 'idle';
    window.addEventListener('online', () => this.connectNow());
    window.addEventListener('offline', () => { if (this.ws) this.ws.close(4000, 'offline'); });
  }

  setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  start() {
    this.paused = false;
    this.open();
  }

  /** Debug/test hook: close the socket and stay offline until `resume()`. */
  pause() {
    this.paused = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(4001, 'paused');
    this.setState('paused');
  }

  connectNow() {
    if (this.paused) this.paused = false;
    if (this.ws && this.ws.readyState <= 1) return;
    clearTimeout(this.timer);
    this.open();
  }

  stop() {
    this.paused = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  open() {
    clearTimeout(this.timer);
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.live = false;
    this.hello = null;
    let gotHello = false;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting', { attempt: this.attempt });

    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      this.trace('in', f);
      if (f.type === 'hello') {
        gotHello = true;
        this.hello = f;
        this.startHeartbeat(f.heartbeat_ms || 25000);
        const resume = { type: 'resume', channels: this.resumeMap() };
        this.trace('out', resume);
        ws.send(JSON.stringify(resume));
        this.onFrame(f);
        return;
      }
      if (f.type === 'resumed') {
        this.live = true;
        this.attempt = 0;
        this.onFrame(f);
        this.setState('live');
        return;
      }
      if (f.ref && this.pending.has(f.ref) && (f.type === 'ack' || f.type === 'error' || f.type === 'pong')) {
        const p = this.pending.get(f.ref);
        this.pending.delete(f.ref);
        clearTimeout(p.timer);
        if (f.type === 'error') p.reject(f); else p.resolve(f);
      }
      this.onFrame(f);
    };

    ws.onclose = async (ev) => {
      if (ws !== this.ws) return;
      this.stopHeartbeat();
      this.live = false;
      this.ws = null;
      for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject({ code: 'disconnected', message: 'Connection lost' }); }
      this.pending.clear();
      if (this.paused) { this.setState('paused'); return; }
      const keepGoing = await this.onClosed(ev.code, gotHello);
      if (!keepGoing || this.paused) return;
      this.scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  scheduleReconnect() {
    if (this.paused) return;
    this.attempt += 1;
    const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(this.attempt, 10));
    // "Equal jitter": half fixed, half random, so clients do not reconnect in lockstep.
    const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
    const state = navigator.onLine === false ? 'offline' : 'reconnecting';
    this.setState(state, { attempt: this.attempt, retryAt: Date.now() + delay });
    this.timer = setTimeout(() => this.open(), delay);
  }

  startHeartbeat(ms) {
    this.stopHeartbeat();
    this.lastRx = Date.now();
    this.hb = setInterval(() => {
      if (!this.ws || this.ws.readyState !== 1) return;
      if (Date.now() - this.lastRx > ms * 2 + 5000) {
        // Silent for too long: the connection is dead even if the browser has not noticed.
        this.ws.close(4002, 'heartbeat timeout');
        return;
      }
      this.raw({ type: 'ping', ref: this.nextRef() });
    }, ms);
  }

  stopHeartbeat() { clearInterval(this.hb); this.hb = null; }

  /** Keeps a short summary of the last frames (for `window.fullslack.log()`). */
  trace(dir, f) {
    this.log = this.log || [];
    const { type, kind, seq, channel, ref, code } = f;
    this.log.push({ t: Date.now(), dir, type, kind, seq, ref, code, channel: channel && String(channel).slice(-6) });
    if (this.log.length > 200) this.log.shift();
  }

  nextRef() { this.refSeq += 1; return `r${this.refSeq}`; }

  isLive() { return this.live && this.ws && this.ws.readyState === 1; }

  /** Sends a frame if the socket is open; returns whether it was written. */
  raw(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.trace('out', frame);
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame with a ref; resolves with the `ack`, rejects with the `error` frame. */
  request(frame, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      if (!this.isLive()) { reject({ code: 'disconnected', message: 'Not connected' }); return; }
      const ref = frame.ref || this.nextRef();
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject({ code: 'timeout', message: 'No answer from the server' });
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      this.raw({ ...frame, ref });
    });
  }
}
