#!/usr/bin/env node
// A minimal chat relay on Debian's node-ws, for the load tool's comparison mode (issue 15;
// docs/benchmarks.md "Beside a Node.js relay"). It is what a small ws/Socket.IO chat server
// does per message, speaking just the subset of the fullslack protocol (docs/protocol.md) the
// bench scenarios use, so `bench --spawn bench/relay/relay.js` runs them unchanged:
//   REST  POST /api/auth/register, /api/auth/login → {token, expires_at, user}; GET /api/me;
//         POST /api/channels {name, kind, member_ids}; POST /api/channels/:id/members, /join;
//         GET /healthz; GET /metrics (a few counters, same names as the server's).
//   WS    GET /api/ws with `Authorization: Bearer`; hello → resume → resumed; `send` → `ack`
//         to the sender, then ONE JSON.stringify of the `message` event and that same string
//         ws.send() to every socket in the channel's room; `ping` → `pong`; a ping every 25 s.
// What it does NOT do, so its figures are a floor for "a chat server in Node", not a peer:
// no persistence (all state in memory, gone on exit), no password hashing (a SHA-256 digest,
// not Argon2id) and opaque random tokens instead of signed JWTs with sessions and revocation,
// no replay on resume (events sent while a socket was away are lost), no idempotent client_id,
// no receipts, typing, presence, edits, reactions, rate limits, per-socket outbound limits or
// write deadlines (ws buffers without bound), no cluster. One process, one thread: Node's.
// Usage: node relay.js --listen 127.0.0.1:PORT [--data-dir IGNORED]; prints its URL first on
// stdout (as fullslack-chat does) and exits on SIGTERM.
'use strict';

const crypto = require('crypto');
const http = require('http');
let ws;
try {
  ws = require('ws');
} catch (_) {
  ws = require('/usr/share/nodejs/ws'); // Debian's node-ws without NODE_PATH
}

const HEARTBEAT_MS = 25000;
const MAX_FRAME = 65536;
const MAX_TEXT = 4000;
const MAX_BODY = 16 * 1024 * 1024; // a 10,000-member channel is one ~400 KB request

const users = new Map(); // lower-cased username → user
const usersById = new Map();
const tokens = new Map(); // token → user id
const channels = new Map(); // id → {info, seq, members: Set<user id>, room: Set<socket>}
const socketsOf = new Map(); // user id → Set<socket>
const counters = { messages: 0, deliveries: 0, connections: 0 };

const now = () => new Date().toISOString();
const digest = (p) => crypto.createHash('sha256').update(String(p)).digest();

function publicUser(u) {
  return {
    id: u.id,
    username: u.username,
    display_name: u.display_name,
    created_at: u.created_at,
    last_seen: null,
    presence: socketsOf.has(u.id) ? 'online' : 'offline',
  };
}

function channelView(ch) {
  return { ...ch.info, last_seq: ch.seq, member_ids: [...ch.members] };
}

function issue(u) {
  const token = crypto.randomBytes(32).toString('hex');
  tokens.set(token, u.id);
  const expires = new Date(Date.now() + 7 * 86400 * 1000).toISOString();
  return { token, expires_at: expires, user: publicUser(u) };
}

function userOfRequest(req) {
  const h = req.headers.authorization || '';
  const id = h.startsWith('Bearer ') ? tokens.get(h.slice(7)) : undefined;
  return id === undefined ? undefined : usersById.get(id);
}

function reply(res, status, body) {
  const s = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}

const fail = (res, status, code, message) => reply(res, status, { error: { code, message } });

function readJson(req, res, then) {
  const parts = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      fail(res, 413, 'payload_too_large', 'body too large');
      req.destroy();
    } else parts.push(c);
  });
  req.on('end', () => {
    let body = {};
    try {
      if (size) body = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch (_) {
      return fail(res, 400, 'bad_request', 'body is not JSON');
    }
    then(body || {});
  });
}

// A member's resumed sockets enter the channel's room when they join; a socket enters its
// channels' rooms at `resume` (no channel events before it, as in the protocol).
function addMember(ch, userId) {
  ch.members.add(userId);
  for (const s of socketsOf.get(userId) || []) if (s.resumed) ch.room.add(s);
}

function register(body, res) {
  const name = String(body.username || '');
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(name) || String(body.password || '').length < 8) {
    return fail(res, 400, 'bad_request', 'username or password invalid');
  }
  if (users.has(name.toLowerCase())) return fail(res, 409, 'conflict', 'username taken');
  const u = {
    id: crypto.randomUUID(),
    username: name,
    display_name: body.display_name || name,
    created_at: now(),
    password: digest(body.password),
  };
  users.set(name.toLowerCase(), u);
  usersById.set(u.id, u);
  reply(res, 201, issue(u));
}

function login(body, res) {
  const u = users.get(String(body.username || '').toLowerCase());
  if (!u || !crypto.timingSafeEqual(u.password, digest(body.password))) {
    return fail(res, 401, 'unauthorized', 'wrong username or password');
  }
  reply(res, 200, issue(u));
}

function createChannel(me, body, res) {
  const ch = {
    info: {
      id: crypto.randomUUID(),
      kind: body.kind === 'private' ? 'private' : 'public',
      name: String(body.name || ''),
      topic: String(body.topic || ''),
      created_by: me.id,
      created_at: now(),
    },
    seq: 0,
    members: new Set(),
    room: new Set(),
  };
  channels.set(ch.info.id, ch);
  addMember(ch, me.id);
  for (const id of body.member_ids || []) if (usersById.has(id)) addMember(ch, id);
  reply(res, 201, channelView(ch));
}

function metrics(res) {
  const s =
    `fullslack_ws_connections ${counters.connections}\n` +
    `fullslack_messages_sent_total ${counters.messages}\n` +
    `fullslack_events_delivered_total ${counters.deliveries}\n`;
  res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
  res.end(s);
}

function route(req, res) {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/healthz') return reply(res, 200, { status: 'ok' });
  if (req.method === 'GET' && path === '/metrics') return metrics(res);
  if (req.method === 'POST' && path === '/api/auth/register') return readJson(req, res, (b) => register(b, res));
  if (req.method === 'POST' && path === '/api/auth/login') return readJson(req, res, (b) => login(b, res));
  const me = userOfRequest(req);
  if (!me) return fail(res, 401, 'unauthorized', 'missing or bad token');
  if (req.method === 'GET' && path === '/api/me') return reply(res, 200, publicUser(me));
  if (req.method === 'POST' && path === '/api/channels') return readJson(req, res, (b) => createChannel(me, b, res));
  const m = /^\/api\/channels\/([^/]+)\/(members|join)$/.exec(path);
  if (req.method === 'POST' && m) {
    const ch = channels.get(m[1]);
    if (!ch) return fail(res, 404, 'not_found', 'no such channel');
    if (m[2] === 'join') {
      addMember(ch, me.id);
      return reply(res, 200, channelView(ch));
    }
    return readJson(req, res, (b) => {
      if (!ch.members.has(me.id)) return fail(res, 403, 'forbidden', 'not a member');
      if (!usersById.has(b.user_id)) return fail(res, 404, 'not_found', 'no such user');
      addMember(ch, b.user_id);
      reply(res, 204);
    });
  }
  fail(res, 404, 'not_found', 'not supported by the relay');
}

function onSend(sock, user, f) {
  const ch = channels.get(f.channel);
  const err = (code, message) =>
    sock.send(JSON.stringify({ type: 'error', ref: f.ref, code, message }));
  if (!ch || !ch.members.has(user.id)) return err('forbidden', 'not a member of that channel');
  const text = String(f.text || '');
  if (!text || text.length > MAX_TEXT) return err('message_too_long', 'text must be 1-4000 characters');
  const seq = ++ch.seq;
  const at = now();
  const id = crypto.randomUUID();
  counters.messages++;
  sock.send(
    JSON.stringify({ type: 'ack', ref: f.ref, channel: ch.info.id, seq, message_id: id, client_id: f.client_id, duplicate: false }),
  );
  // The broadcast: one string for every member, as ws/Socket.IO apps do.
  const event = JSON.stringify({
    type: 'event',
    channel: ch.info.id,
    seq,
    kind: 'message',
    at,
    data: {
      id,
      channel_id: ch.info.id,
      seq,
      author_id: user.id,
      client_id: f.client_id,
      text,
      thread_root: f.thread_root || null,
      reply_count: 0,
      created_at: at,
      edited_at: null,
      deleted: false,
      reactions: [],
      mentions: [],
    },
  });
  for (const s of ch.room) s.send(event);
  counters.deliveries += ch.room.size;
}

function onFrame(sock, user, data, isBinary) {
  if (isBinary) return sock.send(JSON.stringify({ type: 'error', code: 'binary_not_supported', message: 'text frames only' }));
  let f;
  try {
    f = JSON.parse(data.toString('utf8'));
  } catch (_) {
    return sock.send(JSON.stringify({ type: 'error', code: 'bad_frame', message: 'not JSON' }));
  }
  if (f.type === 'send') return onSend(sock, user, f);
  if (f.type === 'resume') {
    const seqs = {};
    sock.resumed = true;
    for (const ch of channels.values()) {
      if (ch.members.has(user.id)) {
        ch.room.add(sock);
        seqs[ch.info.id] = ch.seq;
      }
    }
    return sock.send(JSON.stringify({ type: 'resumed', channels: seqs }));
  }
  if (f.type === 'ping') return sock.send(JSON.stringify({ type: 'pong', ref: f.ref }));
  sock.send(JSON.stringify({ type: 'error', ref: f.ref, code: 'unknown_type', message: 'not supported by the relay' }));
}

const server = http.createServer(route);
const wss = new ws.WebSocketServer({ noServer: true, maxPayload: MAX_FRAME, perMessageDeflate: false });

server.on('upgrade', (req, socket, head) => {
  const user = req.url.split('?')[0] === '/api/ws' ? userOfRequest(req) : undefined;
  if (!user) {
    socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (sock) => {
    counters.connections++;
    sock.alive = true;
    let mine = socketsOf.get(user.id);
    if (!mine) socketsOf.set(user.id, (mine = new Set()));
    mine.add(sock);
    sock.on('pong', () => (sock.alive = true));
    sock.on('message', (data, isBinary) => onFrame(sock, user, data, isBinary));
    sock.on('close', () => {
      counters.connections--;
      mine.delete(sock);
      if (mine.size === 0) socketsOf.delete(user.id);
      for (const ch of channels.values()) ch.room.delete(sock);
    });
    sock.send(
      JSON.stringify({
        type: 'hello',
        user: publicUser(user),
        session_id: crypto.randomUUID(),
        heartbeat_ms: HEARTBEAT_MS,
        limits: { max_message_len: MAX_TEXT, max_frame_bytes: MAX_FRAME },
      }),
    );
  });
});

// Heartbeat as in ws's README: ping every interval, drop a socket that missed the last pong.
setInterval(() => {
  for (const s of wss.clients) {
    if (!s.alive) s.terminate();
    else {
      s.alive = false;
      s.ping();
    }
  }
}, HEARTBEAT_MS).unref();

const args = process.argv.slice(2);
const at = args.indexOf('--listen');
const [host, port] = (at >= 0 ? args[at + 1] : '127.0.0.1:0').split(/:(?=\d+$)/);
server.listen(Number(port), host, () => {
  const a = server.address();
  process.stdout.write(`fullslack relay (node ${process.version}, ws) listening on http://${a.address}:${a.port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
