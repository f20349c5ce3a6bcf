// fullslack web client: entry point. Wires the REST API, the WebSocket and the views.
//
// State lives in `S` (one object, plain maps); every change calls `render*()` which rebuilds
// the affected part of the DOM from it (batched per animation frame). Events are applied
// idempotently and deduplicated by channel seq and message id, so a replay after a resume
// never shows anything twice.

import { api, get, post, enc, ApiError } from './api.js';
import { Connection } from './socket.js';
import { h, $, $$, hash, initials, fmtTime, fmtFull, fmtDay, dayKey, fmtAgo, clientId } from './util.js';
import { renderText, mentionsMe } from './text.js';

const EMOJIS = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀', '🔥', '✅'];
const PAGE = 50;
const GROUP_GAP_MS = 5 * 60 * 1000;

const S = {
  me: null,
  users: new Map(),      // id -> User
  channels: new Map(),   // id -> Channel + local fields (see addChannel)
  current: null,         // channel id shown in the pane
  panel: null,           // {kind: 'thread', channel, root} | {kind: 'search', q, results} | {kind: 'members'} | {kind: 'people'}
  outbox: [],            // messages not yet acked: {client_id, channel, text, thread_root, state, error, created_at}
  editing: null,         // {channel, message_id}
  limits: { max_message_len: 4000 },
  conn: null,
  connState: 'connecting',
  typingSentAt: 0,
  refreshTimer: null,
};

// ---------------------------------------------------------------------------------------------
// Boot and authentication

async function boot() {
  wireStatic();
  try {
    // Also proves the cookie is valid and tells us when the token expires.
    const auth = await post('/api/auth/refresh');
    await startApp(auth);
  } catch (e) {
    showAuth();
  }
}

function showAuth(message) {
  stopApp();
  $('#boot').hidden = true;
  $('#app').hidden = true;
  $('#auth').hidden = false;
  document.title = 'Sign in · fullslack';
  const err = $('#auth-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('#auth-username').focus();
}

let authMode = 'signin';
function setAuthMode(mode) {
  authMode = mode;
  const up = mode === 'signup';
  $('#tab-signin').setAttribute('aria-selected', String(!up));
  $('#tab-signup').setAttribute('aria-selected', String(up));
  $('#auth-display-row').hidden = !up;
  $('#auth-hint').hidden = !up;
  $('#auth-password').autocomplete = up ? 'new-password' : 'current-password';
  $('#auth-submit').textContent = up ? 'Create account' : 'Sign in';
  $('#auth-error').hidden = true;
}

async function submitAuth(ev) {
  ev.preventDefault();
  const username = $('#auth-username').value.trim();
  const password = $('#auth-password').value;
  const display = $('#auth-display').value.trim();
  const err = $('#auth-error');
  const fail = (m) => { err.textContent = m; err.hidden = false; };
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(username)) return fail('Usernames are 1–32 letters, digits, _ . or -.');
  if (password.length < 8) return fail('Passwords have at least 8 characters.');
  const btn = $('#auth-submit');
  btn.disabled = true;
  try {
    const body = { username, password };
    if (authMode === 'signup' && display) body.display_name = display;
    const auth = await post(authMode === 'signup' ? '/api/auth/register' : '/api/auth/login', body);
    $('#auth-password').value = '';
    await startApp(auth);
  } catch (e) {
    if (e.code === 'conflict') fail('That username is taken.');
    else if (e.code === 'unauthorized') fail('Wrong username or password.');
    else if (e.code === 'rate_limited') fail(`Too many attempts. Try again in ${Math.ceil((e.retryAfterMs || 60000) / 1000)} s.`);
    else fail(e.message || 'Something went wrong.');
  } finally {
    btn.disabled = false;
  }
}

function scheduleRefresh(auth) {
  clearTimeout(S.refreshTimer);
  const exp = auth && auth.expires_at ? new Date(auth.expires_at).getTime() : Date.now() + 3600e3;
  const half = Math.max(10e3, (exp - Date.now()) / 2);
  S.refreshTimer = setTimeout(refreshToken, half);
}

async function refreshToken() {
  try {
    scheduleRefresh(await post('/api/auth/refresh'));
    return true;
  } catch (e) {
    if (e.status === 401) { showAuth('Your session ended. Please sign in again.'); return false; }
    S.refreshTimer = setTimeout(refreshToken, 30e3); // network trouble: try again soon
    return true;
  }
}

async function startApp(auth) {
  S.me = auth.user;
  scheduleRefresh(auth);
  const [channels, users] = await Promise.all([get('/api/channels'), get('/api/users')]);
  S.users = new Map(users.map((u) => [u.id, u]));
  S.users.set(S.me.id, { ...S.users.get(S.me.id), ...S.me });
  S.channels = new Map();
  for (const c of channels) addChannel(c);
  loadOutbox();
  $('#boot').hidden = true;
  $('#auth').hidden = true;
  $('#app').hidden = false;
  $('#app').dataset.ready = 'true';
  renderMe();
  renderSidebar();
  showChannel(null);
  S.conn = new Connection({
    resumeMap: () => Object.fromEntries([...S.channels.values()].map((c) => [c.id, c.processedSeq])),
    onFrame,
    onState: renderConn,
    onClosed,
  });
  S.conn.start();
  const wanted = location.hash.startsWith('#/c/') ? location.hash.slice(4) : sessionStorage.getItem('fullslack.current');
  if (wanted && S.channels.has(wanted) && !isPhone()) showChannel(wanted);
}

function stopApp() {
  clearTimeout(S.refreshTimer);
  if (S.conn) S.conn.stop();
  S.conn = null;
  $('#app').dataset.ready = '';
}

async function logout() {
  try { await post('/api/auth/logout'); } catch { /* cookie may already be gone */ }
  sessionStorage.removeItem('fullslack.current');
  if (S.me) localStorage.removeItem(`fullslack.outbox.${S.me.id}`);
  S.outbox = [];
  showAuth();
}

async function onClosed(code, gotHello) {
  if (code === 1008 || !gotHello) {
    // Revoked/expired session, or a refused handshake (401 before the upgrade): check auth.
    try {
      scheduleRefresh(await post('/api/auth/refresh'));
    } catch (e) {
      if (e.status === 401) { showAuth('Your session ended. Please sign in again.'); return false; }
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Model

function addChannel(c) {
  const old = S.channels.get(c.id);
  const ch = old || {
    msgs: new Map(),       // id -> Message (top-level and replies)
    loaded: false,
    loading: false,
    hasMore: true,
    members: null,         // Map user_id -> Member
    typing: new Map(),     // user_id -> expiry timestamp
    threads: new Map(),    // root id -> {replies: Set<id>, loaded}
    processedSeq: c.last_seq || 0,
    unreadBase: c.last_seq || 0, // messages up to here are already in `unread`
  };
  Object.assign(ch, c);
  if (old) ch.processedSeq = Math.max(old.processedSeq, c.last_seq || 0);
  ch.read_seq = Math.max(old?.read_seq || 0, c.read_seq || 0);
  ch.unread = c.unread ?? old?.unread ?? 0;
  S.channels.set(c.id, ch);
  return ch;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const isDirect = (ch) => ch.kind === 'dm' || ch.kind === 'group';
const userName = (id) => { const u = S.users.get(id); return u ? (u.display_name || u.username) : 'Unknown'; };
const others = (ch) => (ch.member_ids || []).filter((id) => id !== S.me.id);

function channelTitle(ch) {
  if (!ch) return '';
  if (isDirect(ch)) {
    const o = others(ch);
    if (o.length === 0) return `${userName(S.me.id)} (you)`;
    return o.map(userName).join(', ');
  }
  return ch.name;
}

function sortedTopLevel(ch) {
  return [...ch.msgs.values()].filter((m) => !m.thread_root).sort((a, b) => a.seq - b.seq);
}

function upsertMessage(ch, m) {
  const old = ch.msgs.get(m.id);
  ch.msgs.set(m.id, old ? { ...old, ...m } : { ...m });
  if (m.thread_root) {
    const t = ch.threads.get(m.thread_root);
    if (t) t.replies.add(m.id);
  }
}

async function loadHistory(ch, older = false) {
  if (ch.loading || (older && !ch.hasMore)) return;
  ch.loading = true;
  renderHistoryStatus();
  try {
    let url = `/api/channels/${enc(ch.id)}/messages?limit=${PAGE}`;
    if (older) {
      const first = sortedTopLevel(ch)[0];
      if (first) url += `&before=${first.seq}`;
    }
    const page = await get(url);
    for (const m of page.messages) upsertMessage(ch, m);
    ch.hasMore = !!page.has_more;
    ch.loaded = true;
  } catch (e) {
    toastError(e, 'Could not load messages');
  } finally {
    ch.loading = false;
  }
  if (S.current === ch.id) renderMessages({ keepFromBottom: older });
}

async function loadMembers(ch) {
  try {
    const list = await get(`/api/channels/${enc(ch.id)}/members`);
    ch.members = new Map(list.map((m) => [m.user_id, m]));
    const ids = list.map((m) => m.user_id);
    if (ids.length) ch.member_ids = ids;
    if (S.current === ch.id) { renderMessages(); renderPaneHead(); }
    if (S.panel?.kind === 'members') renderPanel();
  } catch (e) {
    if (e.status !== 404) toastError(e, 'Could not load members');
  }
}

/** One member's watermarks moved (a `receipt` event's data, or one of a `receipts` event's). */
function applyReceipt(ch, d) {
  if (d.user_id === S.me.id) ch.read_seq = Math.max(ch.read_seq || 0, d.read_seq || 0);
  if (ch.members) {
    const mem = ch.members.get(d.user_id) || { user_id: d.user_id, role: 'member', read_seq: 0, delivered_seq: 0 };
    mem.read_seq = Math.max(mem.read_seq || 0, d.read_seq || 0);
    mem.delivered_seq = Math.max(mem.delivered_seq || 0, d.delivered_seq || 0);
    ch.members.set(d.user_id, mem);
  }
}

/** sent | delivered | read for one of my messages (docs/protocol.md, Receipts). */
function receiptOf(ch, seq) {
  if (!ch.members) return { status: 'sent', readBy: [] };
  const rest = [...ch.members.values()].filter((m) => m.user_id !== S.me.id);
  if (rest.length === 0) return { status: 'read', readBy: [] };
  const readBy = rest.filter((m) => m.read_seq >= seq).map((m) => m.user_id);
  const deliveredTo = rest.filter((m) => Math.max(m.delivered_seq, m.read_seq) >= seq).length;
  const status = readBy.length === rest.length ? 'read' : deliveredTo === rest.length ? 'delivered' : 'sent';
  return { status, readBy, total: rest.length };
}

// ---------------------------------------------------------------------------------------------
// Socket frames

function onFrame(f) {
  switch (f.type) {
    case 'hello':
      S.limits = { ...S.limits, ...(f.limits || {}) };
      if (f.user) { S.me = { ...S.me, ...f.user }; S.users.set(S.me.id, { ...S.users.get(S.me.id), ...f.user }); }
      subscribePresence();
      break;
    case 'resumed':
      for (const [id, seq] of Object.entries(f.channels || {})) {
        const ch = S.channels.get(id);
        if (ch) ch.last_seq = Math.max(ch.last_seq || 0, seq);
      }
      // Back online: (re)send everything typed meanwhile, with the same client_id.
      // Read first: the server moves your read watermark to your own new message, so a
      // read sent after it would change nothing (the others learn either way).
      markRead();
      flushOutbox();
      renderSidebar();
      if (S.current) renderMessages();
      break;
    case 'event': onEvent(f); break;
    case 'ack': onAck(f); break;
    case 'error': onSocketError(f); break;
    case 'typing': onTyping(f); break;
    case 'presence': {
      const u = S.users.get(f.user_id);
      if (u) {
        u.presence = f.status;
        if (f.last_seen !== undefined) u.last_seen = f.last_seen;
        renderSidebar(); renderPaneHead();
        if (S.panel?.kind === 'people' || S.panel?.kind === 'members') renderPanel();
      }
      break;
    }
    case 'channel_added': {
      const known = S.channels.has(f.channel.id);
      const ch = addChannel(f.channel);
      // Its events follow from where we were added: replay them (deduped by seq and id)
      // rather than trusting last_seq, which may already include some of them.
      if (!known) ch.processedSeq = 0;
      ensureUsers(ch.member_ids || []);
      renderSidebar();
      break;
    }
    case 'channel_removed':
      S.channels.delete(f.channel_id);
      if (S.current === f.channel_id) showChannel(null);
      renderSidebar();
      break;
    default: break;
  }
}

function onEvent(f) {
  const ch = S.channels.get(f.channel);
  if (!ch) { refreshChannels(); return; }
  if (f.seq <= ch.processedSeq) return; // already seen (replay overlap): dedupe by seq
  ch.processedSeq = f.seq;
  ch.last_seq = Math.max(ch.last_seq || 0, f.seq);
  const d = f.data || {};
  const viewing = S.current === ch.id;
  switch (f.kind) {
    case 'message': {
      const known = ch.msgs.has(d.id);
      upsertMessage(ch, d);
      // Replace the pending copy of my own message.
      if (d.author_id === S.me.id && d.client_id) {
        const before = S.outbox.length;
        S.outbox = S.outbox.filter((o) => o.client_id !== d.client_id);
        if (S.outbox.length !== before) { saveOutbox(); pump(); }
      }
      if (d.thread_root) {
        const root = ch.msgs.get(d.thread_root);
        if (root && !known) root.reply_count = (root.reply_count || 0) + 1;
      }
      ch.typing.delete(d.author_id);
      // Writing implies having read everything before: the server moves the author's
      // watermarks to their message (its next batch of receipts says so), mirrored here at once.
      const author = ch.members?.get(d.author_id);
      if (author) {
        author.read_seq = Math.max(author.read_seq || 0, f.seq);
        author.delivered_seq = Math.max(author.delivered_seq || 0, f.seq);
      }
      if (d.author_id !== S.me.id && !known) {
        if (!viewing || document.visibilityState !== 'visible') {
          if (!d.thread_root && f.seq > (ch.unreadBase || 0)) ch.unread = (ch.unread || 0) + 1;
        }
        if (viewing) announce(`${userName(d.author_id)}: ${d.text}`);
        ensureUsers([d.author_id]);
      }
      break;
    }
    case 'edit': {
      const m = ch.msgs.get(d.message_id);
      if (m) Object.assign(m, { text: d.text, edited_at: d.edited_at, mentions: d.mentions || m.mentions });
      break;
    }
    case 'delete': {
      const m = ch.msgs.get(d.message_id);
      if (m) Object.assign(m, { deleted: true, text: '', reactions: [] });
      if (S.editing?.message_id === d.message_id) cancelEdit();
      break;
    }
    case 'reaction': {
      const m = ch.msgs.get(d.message_id);
      if (m) {
        m.reactions = m.reactions || [];
        let r = m.reactions.find((x) => x.emoji === d.emoji);
        if (!r) { r = { emoji: d.emoji, user_ids: [] }; m.reactions.push(r); }
        const has = r.user_ids.includes(d.user_id);
        if (d.added && !has) r.user_ids.push(d.user_id);
        if (!d.added && has) r.user_ids = r.user_ids.filter((x) => x !== d.user_id);
        m.reactions = m.reactions.filter((x) => x.user_ids.length > 0);
      }
      break;
    }
    case 'receipt':
      applyReceipt(ch, d);
      break;
    // Several members' receipts in one event (delivered watermarks, aggregated per flush).
    case 'receipts':
      for (const r of d.receipts || []) applyReceipt(ch, r);
      break;
    case 'member_joined':
      if (!ch.member_ids.includes(d.user_id)) ch.member_ids.push(d.user_id);
      ensureUsers([d.user_id]);
      if (ch.members) loadMembers(ch);
      break;
    case 'member_left':
      ch.member_ids = ch.member_ids.filter((x) => x !== d.user_id);
      if (ch.members) ch.members.delete(d.user_id);
      break;
    default: break;
  }
  scheduleRender(ch);
  if (viewing && f.kind === 'message') markReadSoon();
}

let renderQueued = new Set();
let rafPending = false;
function scheduleRender(ch) {
  renderQueued.add(ch.id);
  if (rafPending) return;
  rafPending = true;
  requestAnimationFrame(() => {
    rafPending = false;
    const ids = renderQueued;
    renderQueued = new Set();
    renderSidebar();
    if (S.current && ids.has(S.current)) { renderMessages(); renderTyping(); renderPaneHead(); }
    if (S.panel?.kind === 'thread' && ids.has(S.panel.channel)) renderPanel();
  });
}

let refreshing = null;
function refreshChannels() {
  if (refreshing) return;
  refreshing = get('/api/channels').then((list) => {
    for (const c of list) if (!S.channels.has(c.id)) addChannel(c);
    renderSidebar();
  }).catch(() => {}).finally(() => { refreshing = null; });
}

async function ensureUsers(ids) {
  const missing = ids.filter((id) => !S.users.has(id));
  if (!missing.length) return;
  try {
    const list = await get('/api/users');
    for (const u of list) S.users.set(u.id, { ...S.users.get(u.id), ...u });
    subscribePresence();
    renderSidebar();
    if (S.current) { renderMessages(); renderPaneHead(); }
  } catch { /* names show as Unknown until the next try */ }
}

// The server takes at most 500 ids per presence_subscribe frame (docs/protocol.md).
const PRESENCE_IDS_PER_FRAME = 500;

function subscribePresence() {
  const ids = [...S.users.keys()].filter((id) => id !== S.me.id);
  for (let i = 0; i < ids.length; i += PRESENCE_IDS_PER_FRAME) {
    S.conn?.raw({ type: 'presence_subscribe', user_ids: ids.slice(i, i + PRESENCE_IDS_PER_FRAME) });
  }
}

function onTyping(f) {
  const ch = S.channels.get(f.channel);
  if (!ch || f.user_id === S.me.id) return;
  ch.typing.set(f.user_id, Date.now() + (f.expires_in_ms || 6000));
  setTimeout(() => { renderTyping(); renderSidebar(); }, (f.expires_in_ms || 6000) + 50);
  renderTyping();
  renderSidebar();
}

// ---------------------------------------------------------------------------------------------
// Sending, the outbox and errors

function send(channelId, text, threadRoot = null) {
  text = text.replace(/\s+$/, '');
  if (!text.trim()) return false;
  const max = S.limits.max_message_len || 4000;
  if ([...text].length > max) {
    toast(`Message too long: ${[...text].length} of ${max} characters.`);
    return false;
  }
  const item = {
    client_id: clientId(), channel: channelId, text, thread_root: threadRoot,
    state: 'queued', error: null, created_at: new Date().toISOString(),
  };
  S.outbox.push(item);
  if (channelId === S.current) markRead(); // see 'resumed' in onFrame
  trySend(item);
  saveOutbox();
  const ch = S.channels.get(channelId);
  if (ch) scheduleRender(ch);
  return true;
}

/** Keeps unsent messages across reloads (per user, this browser only). */
function saveOutbox() {
  if (!S.me) return;
  const keep = S.outbox.filter((o) => !o.seq).map(({ client_id, channel, text, thread_root, created_at, state, error }) => ({ client_id, channel, text, thread_root, created_at, state: state === 'failed' ? 'failed' : 'queued', error }));
  try {
    if (keep.length) localStorage.setItem(`fullslack.outbox.${S.me.id}`, JSON.stringify(keep));
    else localStorage.removeItem(`fullslack.outbox.${S.me.id}`);
  } catch { /* storage full or disabled: the queue still lives in memory */ }
}

function loadOutbox() {
  try {
    const list = JSON.parse(localStorage.getItem(`fullslack.outbox.${S.me.id}`) || '[]');
    S.outbox = list.filter((o) => o && o.client_id && S.channels.has(o.channel));
  } catch { S.outbox = []; }
}

// The outbox is sent one message at a time, in order: the next goes when the previous is
// acked (or failed for good). A rate limit pauses the whole queue, so messages never overtake
// each other; a lost ack is resent with the same client_id (the server dedupes it).
function pump() {
  if (!S.conn || !S.conn.isLive() || Date.now() < (S.pausedUntil || 0)) return;
  if (S.outbox.some((o) => o.state === 'sending')) return;
  const item = S.outbox.find((o) => o.state === 'queued');
  if (!item) return;
  item.state = 'sending';
  const frame = { type: 'send', ref: item.client_id, channel: item.channel, client_id: item.client_id, text: item.text };
  if (item.thread_root) frame.thread_root = item.thread_root;
  S.conn.raw(frame);
  setTimeout(() => {
    if (item.state === 'sending' && S.outbox.includes(item)) { item.state = 'queued'; pump(); }
  }, 10000);
}

function trySend(item) {
  if (item.state !== 'sending') item.state = 'queued';
  pump();
}

function flushOutbox() {
  // After a reconnect: anything that was in flight may have lost its ack, send it again.
  for (const item of S.outbox) if (item.state === 'sending') item.state = 'queued';
  pump();
}

function onAck(f) {
  const item = S.outbox.find((o) => o.client_id === (f.client_id || f.ref));
  if (!item) return;
  item.state = 'acked';
  item.seq = f.seq;
  item.message_id = f.message_id;
  saveOutbox();
  const ch = S.channels.get(item.channel);
  if (ch && ch.msgs.has(f.message_id)) S.outbox = S.outbox.filter((o) => o !== item);
  if (ch) scheduleRender(ch);
  pump();
}

function onSocketError(f) {
  const item = f.ref ? S.outbox.find((o) => o.client_id === f.ref) : null;
  if (item) {
    const ch = S.channels.get(item.channel);
    if (f.code === 'rate_limited' || f.code === 'unavailable') {
      const wait = f.retry_after_ms || 1000;
      item.state = 'queued';
      S.pausedUntil = Date.now() + wait;
      toast(f.code === 'rate_limited'
        ? `You are sending too fast. Retrying in ${Math.max(1, Math.ceil(wait / 1000))} s.`
        : 'The server could not store your message. Retrying…');
      setTimeout(pump, wait + 20);
    } else {
      item.state = 'failed';
      item.error = errorText(f);
      saveOutbox();
      toast(`Message not sent: ${item.error}`);
      pump();
    }
    if (ch) scheduleRender(ch);
    return;
  }
  if (f.ref && f.ref.startsWith('r')) return; // answered through Connection.request()
  toast(errorText(f));
}

function errorText(e) {
  switch (e.code) {
    case 'message_too_long': return `message too long (max ${S.limits.max_message_len} characters)`;
    case 'too_large': return 'message too long';
    case 'forbidden': return 'you are not allowed to do that here';
    case 'not_found': return 'that no longer exists';
    case 'rate_limited': return `slow down, try again in ${Math.ceil((e.retry_after_ms || e.retryAfterMs || 1000) / 1000)} s`;
    case 'unavailable': return 'the server is unavailable, try again';
    case 'disconnected': return 'not connected, try again when back online';
    case 'network': return e.message;
    default: return e.message || e.code || 'something went wrong';
  }
}

/** A request over the socket (edit/delete/react), with errors shown to the user. */
async function act(frame, what) {
  if (!S.conn || !S.conn.isLive()) { toast(`Cannot ${what} while offline.`); return; }
  try {
    await S.conn.request(frame);
  } catch (e) {
    toast(`Could not ${what}: ${errorText(e)}`);
  }
}

let readTimer = null;
function markReadSoon() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 300);
}

function markRead() {
  const ch = S.current && S.channels.get(S.current);
  if (!ch || document.visibilityState !== 'visible' || !S.conn?.isLive()) return;
  const seq = ch.processedSeq || ch.last_seq || 0;
  if (seq > (ch.read_seq || 0) || ch.unread) {
    ch.read_seq = Math.max(ch.read_seq || 0, seq);
    ch.unread = 0;
    S.conn.request({ type: 'read', channel: ch.id, seq }).catch(() => {});
    renderSidebar();
  }
}

// ---------------------------------------------------------------------------------------------
// Views: sidebar

function avatar(userId, size = '') {
  const u = S.users.get(userId);
  const name = u ? (u.display_name || u.username) : '?';
  return h('span', { class: `avatar ${size} av-c${hash(userId || name) % 8}`, 'aria-hidden': 'true' }, initials(name));
}

function presenceDot(userId) {
  const p = S.users.get(userId)?.presence || 'offline';
  return h('span', { class: `presence ${p}`, title: p, 'aria-hidden': 'true' });
}

function presenceText(userId) {
  const u = S.users.get(userId);
  if (!u) return '';
  if (u.presence === 'online') return 'Online';
  if (u.presence === 'away') return 'Away';
  return u.last_seen ? `Last seen ${fmtAgo(u.last_seen)}` : 'Offline';
}

function renderSidebar() {
  const chans = [...S.channels.values()];
  const byName = (a, b) => channelTitle(a).localeCompare(channelTitle(b));
  const channels = chans.filter((c) => !isDirect(c)).sort(byName);
  const dms = chans.filter(isDirect).sort((a, b) => (b.last_seq || 0) - (a.last_seq || 0) || byName(a, b));
  $('#list-channels').replaceChildren(...(channels.length ? channels.map(sideItem) : [h('li', { class: 'side-empty' },
    h('button', { type: 'button', class: 'side-item side-cta', onclick: browseChannels }, h('span', { class: 'side-icon i-hash', 'aria-hidden': 'true' }), h('span', { class: 'side-name' }, 'Browse channels')))]));
  $('#list-dms').replaceChildren(...(dms.length ? dms.map(sideItem) : [h('li', { class: 'side-empty muted' }, 'No conversations yet')]));
  const total = chans.reduce((n, c) => n + (c.unread || 0), 0);
  document.title = `${total ? `(${total}) ` : ''}${S.current ? channelTitle(S.channels.get(S.current)) + ' · ' : ''}fullslack`;
}

function sideItem(ch) {
  const active = S.current === ch.id;
  const unread = ch.unread || 0;
  const o = others(ch);
  let icon;
  if (ch.kind === 'dm') icon = h('span', { class: 'side-av' }, avatar(o[0] || S.me.id, 'xs'), presenceDot(o[0] || S.me.id));
  else if (ch.kind === 'group') icon = h('span', { class: 'side-icon group', 'aria-hidden': 'true' }, String(o.length + 1));
  else icon = h('span', { class: `side-icon ${ch.kind === 'private' ? 'i-lock' : 'i-hash'}`, 'aria-hidden': 'true' });
  const typing = [...ch.typing.entries()].some(([, exp]) => exp > Date.now());
  const label = `${channelTitle(ch)}${ch.kind === 'dm' ? `, ${presenceText(o[0])}` : ''}${unread ? `, ${unread} unread` : ''}`;
  return h('li', {},
    h('a', {
      href: `#/c/${ch.id}`, class: `side-item${active ? ' active' : ''}${unread ? ' has-unread' : ''}`,
      'aria-current': active ? 'page' : false, 'aria-label': label, dataset: { channel: ch.id, kind: ch.kind },
      onclick: (e) => { e.preventDefault(); showChannel(ch.id); },
    },
    icon,
    h('span', { class: 'side-name' }, channelTitle(ch)),
    typing ? h('span', { class: 'side-typing', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')) : null,
    unread ? h('span', { class: 'badge', 'aria-hidden': 'true' }, unread > 99 ? '99+' : String(unread)) : null));
}

function renderMe() {
  // My own presence is what this session says (the server's may lag behind by a frame).
  const me = S.users.get(S.me.id);
  if (me) me.presence = S.connState === 'live' ? $('#me-presence').value : 'offline';
  $('#me-avatar').replaceChildren(h('span', { class: 'side-av' }, avatar(S.me.id, 'sm'), presenceDot(S.me.id)));
  $('#me-name').textContent = S.me.display_name || S.me.username;
}

// ---------------------------------------------------------------------------------------------
// Views: conversation

const isPhone = () => window.matchMedia('(max-width: 720px)').matches;

function showChannel(id) {
  if (S.editing) cancelEdit();
  S.current = id;
  const ch = id && S.channels.get(id);
  $('#app').classList.toggle('in-conversation', !!ch);
  $('#empty-state').hidden = !!ch;
  $('#conversation').hidden = !ch;
  if (id) sessionStorage.setItem('fullslack.current', id); else sessionStorage.removeItem('fullslack.current');
  if (history.replaceState) history.replaceState(null, '', id ? `#/c/${id}` : location.pathname);
  if (S.panel && S.panel.kind !== 'people' && S.panel.kind !== 'search') closePanel();
  renderSidebar();
  renderPaneHead();
  if (!ch) return;
  $('#message-list').replaceChildren();
  $('#composer-input').placeholder = `Message ${isDirect(ch) ? channelTitle(ch) : '#' + ch.name}`;
  renderMessages({ toBottom: true });
  renderTyping();
  if (!ch.loaded) loadHistory(ch).then(() => { renderMessages({ toBottom: true }); markRead(); });
  loadMembers(ch);
  markRead();
  if (!isPhone()) $('#composer-input').focus();
}

function renderPaneHead() {
  const ch = S.current && S.channels.get(S.current);
  const title = $('#pane-title');
  const sub = $('#pane-sub');
  const av = $('#pane-avatar');
  const btn = $('#btn-members');
  if (!ch) {
    title.textContent = 'Welcome';
    sub.textContent = S.me ? `Signed in as @${S.me.username}` : '';
    av.replaceChildren();
    btn.hidden = true;
    return;
  }
  title.textContent = isDirect(ch) ? channelTitle(ch) : `#${ch.name}`;
  const o = others(ch);
  if (ch.kind === 'dm') {
    av.replaceChildren(h('span', { class: 'side-av' }, avatar(o[0] || S.me.id, 'sm'), presenceDot(o[0] || S.me.id)));
    sub.textContent = o[0] ? presenceText(o[0]) : 'Notes to yourself';
  } else {
    av.replaceChildren(h('span', { class: `pane-icon ${ch.kind === 'private' ? 'i-lock' : ch.kind === 'group' ? 'i-people' : 'i-hash'}`, 'aria-hidden': 'true' }));
    const online = o.filter((id) => S.users.get(id)?.presence === 'online').length;
    sub.textContent = [ch.topic, plural((ch.member_ids || []).length, 'member'), online ? `${online} online` : ''].filter(Boolean).join(' · ');
  }
  btn.hidden = false;
  $('#members-count').textContent = String((ch.member_ids || []).length);
}

function renderHistoryStatus() {
  const ch = S.current && S.channels.get(S.current);
  const el = $('#history-status');
  if (!ch) return;
  el.replaceChildren();
  if (ch.loading) el.append(h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading messages…');
  else if (ch.loaded && !ch.hasMore) {
    el.append(h('div', { class: 'conv-start' },
      h('strong', {}, isDirect(ch) ? channelTitle(ch) : `#${ch.name}`),
      h('p', { class: 'muted' }, isDirect(ch)
        ? 'This is the beginning of your conversation.'
        : `This is the very beginning of #${ch.name}.${ch.topic ? ' ' + ch.topic : ''}`)));
  } else if (ch.loaded) {
    el.append(h('button', { type: 'button', class: 'link-btn', onclick: () => loadHistory(ch, true) }, 'Load older messages'));
  }
}

function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 80; }

function renderMessages(opts = {}) {
  const ch = S.current && S.channels.get(S.current);
  if (!ch) return;
  const box = $('#messages');
  const wasNearBottom = nearBottom(box);
  const fromBottom = box.scrollHeight - box.scrollTop;
  // Keep keyboard focus on the same control across the rebuild.
  const act = document.activeElement;
  const focusKey = act && box.contains(act) ? [act.closest('[data-key]')?.dataset.key, act.dataset.action] : null;

  renderHistoryStatus();
  const list = sortedTopLevel(ch);
  const pending = S.outbox.filter((o) => o.channel === ch.id && !o.thread_root && !(o.message_id && ch.msgs.has(o.message_id)));
  const items = [...list, ...pending.map(pendingAsMessage)];
  const frag = document.createDocumentFragment();
  let prev = null;
  let lastMine = null;
  for (const m of items) if (m.author_id === S.me.id && !m.pending && !m.deleted) lastMine = m;
  for (const m of items) {
    if (!prev || dayKey(prev.created_at) !== dayKey(m.created_at)) {
      frag.append(h('div', { class: 'day-sep', role: 'separator' }, h('span', {}, fmtDay(m.created_at))));
      prev = null;
    }
    const grouped = prev && prev.author_id === m.author_id && !prev.deleted
      && new Date(m.created_at) - new Date(prev.created_at) < GROUP_GAP_MS;
    frag.append(messageEl(ch, m, { grouped, seenBy: m === lastMine && ch.kind !== 'dm' }));
    prev = m;
  }
  $('#message-list').replaceChildren(frag);

  if (opts.toBottom || (wasNearBottom && !opts.keepFromBottom)) box.scrollTop = box.scrollHeight;
  else if (opts.keepFromBottom) box.scrollTop = box.scrollHeight - fromBottom;
  $('#jump-latest').hidden = nearBottom(box);
  if (focusKey && focusKey[0]) {
    const el = box.querySelector(`[data-key="${CSS.escape(focusKey[0])}"] [data-action="${CSS.escape(focusKey[1] || '')}"]`);
    if (el) el.focus({ preventScroll: true });
  }
}

function pendingAsMessage(o) {
  return {
    id: o.message_id || o.client_id, key: o.client_id, pending: true, outbox: o, channel_id: o.channel,
    seq: o.seq || Infinity, author_id: S.me.id, client_id: o.client_id, text: o.text,
    thread_root: o.thread_root, reply_count: 0, created_at: o.created_at, edited_at: null,
    deleted: false, reactions: [], mentions: [],
  };
}

function ticks(ch, m) {
  if (m.pending) {
    const o = m.outbox;
    if (o.state === 'failed') return h('span', { class: 'ticks failed', title: `Not sent: ${o.error}` }, '!', h('span', { class: 'sr-only' }, ' not sent'));
    if (o.state === 'acked') return h('span', { class: 'ticks sent', title: 'Sent' }, '✓', h('span', { class: 'sr-only' }, ' sent'));
    return h('span', { class: 'ticks pending', title: o.state === 'queued' ? 'Waiting for connection' : 'Sending…' }, h('span', { class: 'i i-clock', 'aria-hidden': 'true' }), h('span', { class: 'sr-only' }, ' pending'));
  }
  const r = receiptOf(ch, m.seq);
  const label = r.status === 'read' ? (r.total > 1 ? `Read by everyone` : 'Read')
    : r.status === 'delivered' ? 'Delivered' : 'Sent';
  const extra = r.total > 1 && r.status !== 'read' && r.readBy.length ? ` (read by ${r.readBy.length} of ${r.total})` : '';
  return h('span', { class: `ticks ${r.status}`, title: label + extra, dataset: { status: r.status } },
    r.status === 'sent' ? '✓' : '✓✓', h('span', { class: 'sr-only' }, ` ${label}`));
}

function messageEl(ch, m, { grouped, seenBy, inThread } = {}) {
  const mine = m.author_id === S.me.id;
  const key = m.key || m.id;
  const meta = h('span', { class: 'meta' },
    m.edited_at && !m.deleted ? h('span', { class: 'edited' }, 'edited') : null,
    h('time', { datetime: m.created_at, title: fmtFull(m.created_at) }, fmtTime(m.created_at)),
    mine && !m.deleted ? ticks(ch, m) : null);
  const body = m.deleted
    ? h('p', { class: 'text tombstone' }, h('span', { class: 'i i-ban', 'aria-hidden': 'true' }), 'This message was deleted')
    : h('p', { class: 'text' }, renderText(m.text, S.users, S.me));
  const bubble = h('div', { class: 'bubble' },
    !mine && !grouped && !(ch.kind === 'dm' && !inThread) ? h('span', { class: `author av-t${hash(m.author_id) % 8}` }, userName(m.author_id)) : null,
    body, meta);
  const reactions = !m.deleted && m.reactions?.length
    ? h('div', { class: 'reactions' }, m.reactions.map((r) => {
      const minePressed = r.user_ids.includes(S.me.id);
      return h('button', {
        type: 'button', class: `reaction${minePressed ? ' mine' : ''}`, 'aria-pressed': String(minePressed),
        title: r.user_ids.map(userName).join(', '), dataset: { action: `react-${r.emoji}` },
        'aria-label': `${r.emoji} ${r.user_ids.length}, ${minePressed ? 'remove your reaction' : 'react'}`,
        onclick: () => react(ch, m, r.emoji, !minePressed),
      }, h('span', {}, r.emoji), h('span', { class: 'n' }, String(r.user_ids.length)));
    }))
    : null;
  const thread = !inThread && !m.thread_root && m.reply_count > 0
    ? h('button', { type: 'button', class: 'thread-link', dataset: { action: 'thread-link' }, onclick: () => openThread(ch.id, m.id) },
      h('span', { class: 'i i-thread', 'aria-hidden': 'true' }), `${m.reply_count} ${m.reply_count === 1 ? 'reply' : 'replies'}`)
    : null;
  let seen = null;
  if (seenBy && mine && ch.members) {
    const r = receiptOf(ch, m.seq);
    if (r.readBy.length) {
      seen = h('div', { class: 'seen-by' }, r.status === 'read' && r.total > 1 ? 'Seen by everyone' : `Seen by ${r.readBy.map(userName).join(', ')}`);
    }
  }
  const actions = !m.pending && !m.deleted ? h('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions' },
    h('button', { type: 'button', class: 'icon-btn sm', 'aria-label': 'Add reaction', title: 'React', dataset: { action: 'react' }, onclick: (e) => openEmoji(e.currentTarget, ch, m) }, h('span', { class: 'i i-smile', 'aria-hidden': 'true' })),
    !inThread && !m.thread_root ? h('button', { type: 'button', class: 'icon-btn sm', 'aria-label': 'Reply in thread', title: 'Reply in thread', dataset: { action: 'thread' }, onclick: () => openThread(ch.id, m.id) }, h('span', { class: 'i i-thread', 'aria-hidden': 'true' })) : null,
    mine ? h('button', { type: 'button', class: 'icon-btn sm', 'aria-label': 'Edit message', title: 'Edit', dataset: { action: 'edit' }, onclick: () => startEdit(ch, m) }, h('span', { class: 'i i-edit', 'aria-hidden': 'true' })) : null,
    mine ? h('button', { type: 'button', class: 'icon-btn sm danger', 'aria-label': 'Delete message', title: 'Delete', dataset: { action: 'delete' }, onclick: () => confirmDelete(ch, m) }, h('span', { class: 'i i-trash', 'aria-hidden': 'true' })) : null)
    : null;
  const failed = m.pending && m.outbox.state === 'failed'
    ? h('div', { class: 'failed-row' }, `Not sent: ${m.outbox.error}. `,
      h('button', { type: 'button', class: 'link-btn', onclick: () => { m.outbox.state = 'queued'; m.outbox.error = null; trySend(m.outbox); scheduleRender(ch); } }, 'Retry'),
      ' · ',
      h('button', { type: 'button', class: 'link-btn', onclick: () => { S.outbox = S.outbox.filter((x) => x !== m.outbox); saveOutbox(); scheduleRender(ch); } }, 'Discard'))
    : null;
  const classes = ['msg', mine ? 'mine' : 'theirs', grouped ? 'grouped' : '', m.pending ? 'pending' : '',
    m.deleted ? 'deleted' : '', !m.deleted && mentionsMe(m, S.me) ? 'mentioned' : ''].filter(Boolean).join(' ');
  return h('article', {
    class: classes, dataset: { key, seq: m.pending ? '' : String(m.seq), id: m.id, author: m.author_id },
    'aria-label': `${userName(m.author_id)}, ${fmtTime(m.created_at)}`,
  },
  !mine && !(ch.kind === 'dm' && !inThread) ? (grouped ? h('span', { class: 'avatar-spacer' }) : avatar(m.author_id)) : null,
  h('div', { class: 'msg-body' }, bubble, reactions, thread, failed, seen),
  actions);
}

function renderTyping() {
  const ch = S.current && S.channels.get(S.current);
  const el = $('#typing');
  if (!ch) { el.replaceChildren(); return; }
  const now = Date.now();
  const who = [...ch.typing.entries()].filter(([, exp]) => exp > now).map(([id]) => userName(id));
  if (!who.length) { el.replaceChildren(); return; }
  const text = who.length === 1 ? `${who[0]} is typing…` : who.length === 2 ? `${who[0]} and ${who[1]} are typing…` : 'Several people are typing…';
  el.replaceChildren(h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', {}, text));
}

// ---------------------------------------------------------------------------------------------
// Message actions

function react(ch, m, emoji, add) {
  act({ type: 'react', channel: ch.id, message_id: m.id, emoji, add }, 'react');
}

let emojiTarget = null;
function openEmoji(button, ch, m) {
  const pop = $('#emoji-pop');
  emojiTarget = { ch, m, button };
  pop.replaceChildren(...EMOJIS.map((e) => h('button', {
    type: 'button', role: 'menuitem', class: 'emoji', 'aria-label': `React with ${e}`,
    onclick: () => {
      const mine = (m.reactions || []).find((r) => r.emoji === e)?.user_ids.includes(S.me.id);
      react(ch, m, e, !mine);
      closeEmoji(true);
    },
  }, e)));
  pop.hidden = false;
  const r = button.getBoundingClientRect();
  const w = pop.offsetWidth;
  pop.style.left = `${Math.max(8, Math.min(window.innerWidth - w - 8, r.right - w))}px`;
  pop.style.top = `${r.top > 70 ? r.top - pop.offsetHeight - 6 : r.bottom + 6}px`;
  pop.querySelector('button').focus();
}

function closeEmoji(refocus) {
  const pop = $('#emoji-pop');
  if (pop.hidden) return;
  pop.hidden = true;
  if (refocus && emojiTarget?.button?.isConnected) emojiTarget.button.focus();
  emojiTarget = null;
}

function startEdit(ch, m) {
  S.editing = { channel: ch.id, message_id: m.id };
  const input = $('#composer-input');
  input.value = m.text;
  $('#composer-context').hidden = false;
  $('#composer-context-text').textContent = 'Editing message · Esc to cancel';
  $('#composer').classList.add('editing');
  autosize(input);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

function cancelEdit() {
  S.editing = null;
  $('#composer-context').hidden = true;
  $('#composer').classList.remove('editing');
  $('#composer-input').value = '';
  autosize($('#composer-input'));
}

async function confirmDelete(ch, m) {
  const dlg = $('#dlg-confirm');
  dlg.returnValue = '';
  dlg.showModal();
  dlg.addEventListener('close', () => {
    if (dlg.returnValue === 'ok') act({ type: 'delete', channel: ch.id, message_id: m.id }, 'delete the message');
  }, { once: true });
}

// ---------------------------------------------------------------------------------------------
// Composer

function autosize(el) {
  el.style.height = 'auto';
  el.style.height = `${Math.min(el.scrollHeight, 180)}px`;
}

function updateCount(el) {
  const n = [...el.value].length;
  const max = S.limits.max_message_len || 4000;
  const c = $('#composer-count');
  c.textContent = n > max * 0.9 ? `· ${n}/${max}` : '';
  c.classList.toggle('over', n > max);
}

function submitComposer(ev) {
  ev?.preventDefault();
  const input = $('#composer-input');
  const ch = S.current && S.channels.get(S.current);
  if (!ch) return;
  if (S.editing) {
    const text = input.value.trim();
    const { channel, message_id } = S.editing;
    const m = ch.msgs.get(message_id);
    if (!text) { toast('A message cannot be empty. Delete it instead.'); return; }
    if (m && text !== m.text) act({ type: 'edit', channel, message_id, text }, 'edit the message');
    cancelEdit();
    return;
  }
  if (send(ch.id, input.value)) {
    input.value = '';
    autosize(input);
    updateCount(input);
    const box = $('#messages');
    requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
  }
}

function composerKeys(ev, submit) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    submit();
  } else if (ev.key === 'Escape' && S.editing && ev.currentTarget.id === 'composer-input') {
    ev.preventDefault();
    cancelEdit();
  } else if (ev.key === 'ArrowUp' && !ev.currentTarget.value && ev.currentTarget.id === 'composer-input') {
    // Up in an empty composer edits your last message.
    const ch = S.current && S.channels.get(S.current);
    const last = ch && sortedTopLevel(ch).filter((m) => m.author_id === S.me.id && !m.deleted).pop();
    if (last) { ev.preventDefault(); startEdit(ch, last); }
  }
}

function onComposerInput(ev) {
  const el = ev.currentTarget;
  autosize(el);
  if (el.id === 'composer-input') updateCount(el);
  const chId = el.id === 'thread-input' ? S.panel?.channel : S.current;
  if (!chId || !el.value || S.editing) return;
  if (Date.now() - S.typingSentAt > 3000) {
    S.typingSentAt = Date.now();
    S.conn?.raw({ type: 'typing', channel: chId });
  }
}

// ---------------------------------------------------------------------------------------------
// Side panel: thread, search, members, people

function openPanel(p) {
  S.panel = p;
  $('#panel').hidden = false;
  $('#app').classList.add('with-panel');
  renderPanel();
}

function closePanel() {
  S.panel = null;
  $('#panel').hidden = true;
  $('#app').classList.remove('with-panel');
}

async function openThread(channelId, rootId) {
  const ch = S.channels.get(channelId);
  if (!ch) return;
  let t = ch.threads.get(rootId);
  if (!t) { t = { replies: new Set(), loaded: false }; ch.threads.set(rootId, t); }
  openPanel({ kind: 'thread', channel: channelId, root: rootId });
  $('#thread-input').focus();
  try {
    const r = await get(`/api/channels/${enc(channelId)}/messages/${enc(rootId)}/replies`);
    upsertMessage(ch, r.root);
    for (const m of r.replies) upsertMessage(ch, m);
    for (const m of r.replies) t.replies.add(m.id);
    t.loaded = true;
    if (!ch.members) await loadMembers(ch);
  } catch (e) {
    toastError(e, 'Could not load the thread');
  }
  if (S.panel?.kind === 'thread' && S.panel.root === rootId) renderPanel();
}

function renderPanel() {
  const p = S.panel;
  if (!p) return;
  const body = $('#panel-body');
  $('#thread-composer').hidden = p.kind !== 'thread';
  $('#panel').dataset.kind = p.kind;
  if (p.kind === 'thread') {
    const ch = S.channels.get(p.channel);
    const t = ch?.threads.get(p.root);
    const root = ch?.msgs.get(p.root);
    $('#panel-title').textContent = 'Thread';
    if (!ch || !root) { body.replaceChildren(h('p', { class: 'muted pad' }, 'Loading…')); return; }
    const wasBottom = nearBottom(body);
    const replies = [...t.replies].map((id) => ch.msgs.get(id)).filter(Boolean).sort((a, b) => a.seq - b.seq);
    const pending = S.outbox.filter((o) => o.channel === ch.id && o.thread_root === p.root && !(o.message_id && ch.msgs.has(o.message_id))).map(pendingAsMessage);
    body.replaceChildren(
      h('p', { class: 'panel-sub muted' }, isDirect(ch) ? channelTitle(ch) : `#${ch.name}`),
      h('div', { class: 'thread-root' }, messageEl(ch, root, { inThread: true })),
      h('div', { class: 'thread-sep' }, h('span', {}, `${replies.length} ${replies.length === 1 ? 'reply' : 'replies'}`)),
      h('div', { class: 'thread-replies message-list' }, [...replies, ...pending].map((m) => messageEl(ch, m, { inThread: true }))),
    );
    if (wasBottom) body.scrollTop = body.scrollHeight;
  } else if (p.kind === 'search') {
    $('#panel-title').textContent = 'Search';
    body.replaceChildren(
      h('p', { class: 'panel-sub muted' }, p.results ? `${p.results.length} result${p.results.length === 1 ? '' : 's'} for “${p.q}”` : `Searching for “${p.q}”…`),
      h('ul', { class: 'results' }, (p.results || []).map((m) => {
        const ch = S.channels.get(m.channel_id);
        return h('li', {}, h('button', { type: 'button', class: 'result', onclick: () => jumpTo(m) },
          h('span', { class: 'result-head' }, avatar(m.author_id, 'xs'),
            h('strong', {}, userName(m.author_id)),
            h('span', { class: 'muted' }, ` in ${ch ? (isDirect(ch) ? channelTitle(ch) : '#' + ch.name) : 'a channel'} · ${fmtDay(m.created_at)} ${fmtTime(m.created_at)}`)),
          h('span', { class: 'result-text' }, renderText(m.text, S.users, S.me, p.q))));
      })),
    );
  } else if (p.kind === 'members') {
    const ch = S.current && S.channels.get(S.current);
    if (!ch) { closePanel(); return; }
    $('#panel-title').textContent = 'Members';
    const ids = ch.members ? [...ch.members.keys()] : (ch.member_ids || []);
    const canInvite = ch.kind === 'private' || ch.kind === 'group' || ch.kind === 'public';
    body.replaceChildren(
      h('div', { class: 'panel-actions' },
        canInvite ? h('button', { type: 'button', class: 'btn primary', id: 'btn-invite', onclick: () => pickUsers('invite') }, 'Add people') : null,
        ch.kind === 'dm' ? h('button', { type: 'button', class: 'btn', onclick: () => pickUsers('group', others(ch)) }, 'Start a group with…') : null,
        !isDirect(ch) ? h('button', { type: 'button', class: 'btn', onclick: () => leaveChannel(ch) }, 'Leave channel') : null),
      h('ul', { class: 'people' }, ids.map((id) => personEl(id, ch.members?.get(id)))),
    );
  } else if (p.kind === 'people') {
    $('#panel-title').textContent = 'People';
    const list = [...S.users.values()].sort((a, b) => rank(a) - rank(b) || (a.display_name || a.username).localeCompare(b.display_name || b.username));
    body.replaceChildren(h('ul', { class: 'people' }, list.map((u) => personEl(u.id, null, true))));
  }
}

const rank = (u) => (u.presence === 'online' ? 0 : u.presence === 'away' ? 1 : 2);

function personEl(id, member, clickable) {
  const u = S.users.get(id);
  const inner = [
    h('span', { class: 'side-av' }, avatar(id, 'sm'), presenceDot(id)),
    h('span', { class: 'person-text' },
      h('span', { class: 'person-name' }, userName(id), id === S.me.id ? h('span', { class: 'muted' }, ' (you)') : null,
        member?.role === 'owner' ? h('span', { class: 'tag' }, 'owner') : null),
      h('span', { class: 'muted small' }, `@${u?.username || '?'} · ${presenceText(id)}`)),
  ];
  if (clickable && id !== S.me.id) {
    return h('li', {}, h('button', { type: 'button', class: 'person', title: 'Send a direct message', onclick: () => startDm([id]) }, inner));
  }
  return h('li', { class: 'person' }, inner);
}

async function runSearch(q) {
  q = q.trim();
  if (!q) return;
  openPanel({ kind: 'search', q, results: null });
  try {
    const r = await get(`/api/search?q=${enc(q)}&limit=50`);
    if (S.panel?.kind === 'search' && S.panel.q === q) { S.panel.results = r.results || []; renderPanel(); }
  } catch (e) {
    toastError(e, 'Search failed');
    if (S.panel?.kind === 'search') { S.panel.results = []; renderPanel(); }
  }
}

async function jumpTo(m) {
  const ch = S.channels.get(m.channel_id);
  if (!ch) return;
  if (isPhone()) closePanel();
  if (S.current !== ch.id) showChannel(ch.id);
  if (m.thread_root) { openThread(ch.id, m.thread_root); return; }
  for (let i = 0; i < 20 && !ch.msgs.has(m.id); i++) {
    if (!ch.loaded) await loadHistory(ch);
    else if (ch.hasMore) await loadHistory(ch, true);
    else break;
  }
  const el = $(`#message-list [data-id="${CSS.escape(m.id)}"]`);
  if (el) {
    el.scrollIntoView({ block: 'center' });
    el.classList.add('flash');
    setTimeout(() => el.classList.remove('flash'), 2000);
  }
}

async function leaveChannel(ch) {
  try {
    await post(`/api/channels/${enc(ch.id)}/leave`);
    S.channels.delete(ch.id);
    closePanel();
    showChannel(null);
  } catch (e) { toastError(e, 'Could not leave'); }
}

// ---------------------------------------------------------------------------------------------
// Dialogs: create channel, new DM/group, invite, browse

function openDialog(dlg) {
  $$('.form-error', dlg).forEach((e) => { e.hidden = true; });
  dlg.showModal();
}

function dialogError(dlg, e) {
  const el = $('.form-error', dlg);
  el.textContent = typeof e === 'string' ? e : errorText(e);
  el.hidden = false;
}

async function createChannel(ev) {
  ev.preventDefault();
  const dlg = $('#dlg-channel');
  const name = $('#ch-name').value.trim().toLowerCase();
  if (!/^[a-z0-9_-]{1,64}$/.test(name)) return dialogError(dlg, 'Channel names are 1–64 characters: a-z, 0-9, - and _.');
  const kind = $('input[name="ch-kind"]:checked').value;
  const topic = $('#ch-topic').value.trim();
  try {
    const ch = addChannel(await post('/api/channels', { name, kind, topic }));
    dlg.close();
    $('#ch-name').value = ''; $('#ch-topic').value = '';
    renderSidebar();
    showChannel(ch.id);
  } catch (e) {
    dialogError(dlg, e.code === 'conflict' ? 'A channel with that name exists.' : e);
  }
}

let pickMode = 'dm';
let picked = new Set();
function pickUsers(mode, preselected = []) {
  pickMode = mode;
  picked = new Set(preselected);
  const dlg = $('#dlg-users');
  const ch = S.current && S.channels.get(S.current);
  $('#dlg-users-title').textContent = mode === 'invite' ? `Add people to ${isDirect(ch) ? 'this group' : '#' + ch.name}` : mode === 'group' ? 'New group' : 'New message';
  $('#dlg-users-help').textContent = mode === 'invite' ? 'They will see the whole history.' : 'Pick one person for a direct message, or several for a group.';
  $('#users-filter').value = '';
  renderPick();
  openDialog(dlg);
  $('#users-filter').focus();
  // People who signed up since we loaded the list.
  get('/api/users').then((list) => {
    for (const u of list) S.users.set(u.id, { ...S.users.get(u.id), ...u });
    if (dlg.open) renderPick();
    subscribePresence();
  }).catch(() => {});
}

function renderPick() {
  const q = $('#users-filter').value.trim().toLowerCase();
  const ch = S.current && S.channels.get(S.current);
  const exclude = new Set(pickMode === 'invite' && ch ? ch.member_ids : [S.me.id]);
  exclude.add(S.me.id);
  const list = [...S.users.values()].filter((u) => !exclude.has(u.id))
    .filter((u) => !q || u.username.toLowerCase().includes(q) || (u.display_name || '').toLowerCase().includes(q))
    .sort((a, b) => rank(a) - rank(b) || (a.display_name || a.username).localeCompare(b.display_name || b.username));
  $('#users-pick').replaceChildren(...(list.length ? list.map((u) => h('li', {},
    h('label', { class: 'pick' },
      h('input', { type: 'checkbox', value: u.id, checked: picked.has(u.id), dataset: { username: u.username },
        onchange: (e) => { if (e.target.checked) picked.add(u.id); else picked.delete(u.id); updatePickOk(); } }),
      h('span', { class: 'side-av' }, avatar(u.id, 'sm'), presenceDot(u.id)),
      h('span', { class: 'person-text' }, h('span', { class: 'person-name' }, u.display_name || u.username),
        h('span', { class: 'muted small' }, `@${u.username} · ${presenceText(u.id)}`))))) : [h('li', { class: 'muted pad' }, 'Nobody to add.')]));
  updatePickOk();
}

function updatePickOk() {
  const ok = $('#users-ok');
  ok.disabled = picked.size === 0;
  ok.textContent = pickMode === 'invite' ? `Add${picked.size ? ` ${picked.size}` : ''}` : picked.size > 1 || pickMode === 'group' ? 'Start group' : 'Start conversation';
}

async function submitPick(ev) {
  ev.preventDefault();
  const dlg = $('#dlg-users');
  const ids = [...picked];
  if (!ids.length) return;
  if (pickMode === 'invite') {
    const ch = S.channels.get(S.current);
    try {
      for (const id of ids) await post(`/api/channels/${enc(ch.id)}/members`, { user_id: id });
      dlg.close();
      loadMembers(ch);
      toast(`Added ${ids.map(userName).join(', ')}.`, 'ok');
    } catch (e) { dialogError(dlg, e); }
    return;
  }
  try {
    dlg.close();
    await startDm(ids);
  } catch (e) { toastError(e, 'Could not start the conversation'); }
}

async function startDm(ids) {
  try {
    const ch = addChannel(await post('/api/dms', { user_ids: ids }));
    renderSidebar();
    if (isPhone()) closePanel();
    showChannel(ch.id);
  } catch (e) { toastError(e, 'Could not start the conversation'); }
}

async function browseChannels() {
  const dlg = $('#dlg-browse');
  const list = $('#browse-list');
  list.replaceChildren(h('li', { class: 'muted pad' }, 'Loading…'));
  openDialog(dlg);
  try {
    const all = await get('/api/channels/public');
    list.replaceChildren(...(all.length ? all.sort((a, b) => a.name.localeCompare(b.name)).map((c) => {
      const joined = S.channels.has(c.id);
      return h('li', { class: 'browse-item' },
        h('span', { class: 'side-icon i-hash', 'aria-hidden': 'true' }),
        h('span', { class: 'person-text' }, h('span', { class: 'person-name' }, c.name),
          h('span', { class: 'muted small' }, [c.topic, plural((c.member_ids || []).length, 'member')].filter(Boolean).join(' · '))),
        h('button', { type: 'button', class: `btn ${joined ? '' : 'primary'} sm`, onclick: async () => {
          try {
            const ch = joined ? S.channels.get(c.id) : addChannel(await post(`/api/channels/${enc(c.id)}/join`));
            dlg.close(); renderSidebar(); showChannel(ch.id);
          } catch (e) { dialogError(dlg, e); }
        } }, joined ? 'Open' : 'Join'));
    }) : [h('li', { class: 'muted pad' }, 'No public channels yet. Create one!')]));
  } catch (e) { dialogError(dlg, e); }
}

// ---------------------------------------------------------------------------------------------
// Connection banner, toasts, announcements

let bannerTimer = null;
function renderConn(state, info = {}) {
  S.connState = state;
  const banner = $('#conn-banner');
  const text = $('#conn-text');
  clearInterval(bannerTimer);
  clearTimeout(bannerTimer);
  const show = (t) => { banner.hidden = false; banner.dataset.shown = '1'; text.textContent = t; };
  banner.dataset.state = state;
  $('#app').dataset.conn = state;
  if (S.me) renderMe();
  if (state === 'live') {
    if (!banner.hidden && banner.dataset.shown) {
      text.textContent = 'Back online';
      banner.dataset.state = 'back';
      $('#conn-retry').hidden = true;
      bannerTimer = setTimeout(() => { banner.hidden = true; banner.dataset.shown = ''; }, 1500);
    } else banner.hidden = true;
    return;
  }
  if (state === 'connecting') {
    // Do not flash a banner for the first, normally instant, connection.
    bannerTimer = setTimeout(() => { if (S.connState === 'connecting') show('Connecting…'); }, 1500);
    return;
  }
  $('#conn-retry').hidden = false;
  if (state === 'paused') { show('Offline. Messages you send are queued.'); $('#conn-retry').textContent = 'Reconnect'; return; }
  $('#conn-retry').textContent = 'Retry now';
  const tick = () => {
    const s = info.retryAt ? Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000)) : 0;
    const base = state === 'offline' ? 'No network.' : 'Reconnecting…';
    show(s > 0 ? `${base} Trying again in ${s} s.` : base);
  };
  tick();
  if (info.retryAt) bannerTimer = setInterval(tick, 1000);
}

function toast(message, kind = 'error') {
  // The same message again replaces the old one instead of stacking up.
  for (const t of $$('#toasts .toast')) if (t.firstChild?.textContent === message) t.remove();
  const t = h('div', { class: `toast ${kind}` }, h('span', {}, message),
    h('button', { type: 'button', class: 'icon-btn sm', 'aria-label': 'Dismiss', onclick: () => t.remove() }, h('span', { class: 'i i-close', 'aria-hidden': 'true' })));
  $('#toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

function toastError(e, prefix) {
  toast(`${prefix}: ${errorText(e)}`);
}

function announce(text) {
  const el = $('#announcer');
  el.append(h('p', {}, text.length > 200 ? text.slice(0, 200) + '…' : text));
  while (el.childNodes.length > 5) el.firstChild.remove();
}

// ---------------------------------------------------------------------------------------------
// Static wiring

function wireStatic() {
  $('#tab-signin').addEventListener('click', () => setAuthMode('signin'));
  $('#tab-signup').addEventListener('click', () => setAuthMode('signup'));
  $('#auth-form').addEventListener('submit', submitAuth);
  $('#btn-logout').addEventListener('click', logout);
  $('#me-presence').addEventListener('change', (e) => {
    S.conn?.raw({ type: 'presence', status: e.target.value });
    const me = S.users.get(S.me.id);
    if (me) me.presence = e.target.value;
    renderMe();
  });
  $('#conn-retry').addEventListener('click', () => S.conn?.connectNow());
  $('#btn-back').addEventListener('click', () => showChannel(null));
  $('#btn-members').addEventListener('click', () => (S.panel?.kind === 'members' ? closePanel() : openPanel({ kind: 'members' })));
  $('#btn-people').addEventListener('click', () => (S.panel?.kind === 'people' ? closePanel() : openPanel({ kind: 'people' })));
  $('#panel-close').addEventListener('click', closePanel);
  $('#btn-new-channel').addEventListener('click', () => openDialog($('#dlg-channel')));
  $('#btn-empty-channel').addEventListener('click', () => openDialog($('#dlg-channel')));
  $('#btn-new-dm').addEventListener('click', () => pickUsers('dm'));
  $('#btn-empty-dm').addEventListener('click', () => pickUsers('dm'));
  $('#btn-browse').addEventListener('click', browseChannels);
  $('#form-channel').addEventListener('submit', createChannel);
  $('#form-users').addEventListener('submit', submitPick);
  $('#users-filter').addEventListener('input', renderPick);
  $$('dialog [data-close]').forEach((b) => b.addEventListener('click', () => b.closest('dialog').close()));
  $('#search-form').addEventListener('submit', (e) => { e.preventDefault(); runSearch($('#search-input').value); });

  const input = $('#composer-input');
  $('#composer').addEventListener('submit', submitComposer);
  input.addEventListener('keydown', (e) => composerKeys(e, submitComposer));
  input.addEventListener('input', onComposerInput);
  $('#composer-cancel').addEventListener('click', cancelEdit);
  const tinput = $('#thread-input');
  const submitThread = (e) => {
    e?.preventDefault();
    if (S.panel?.kind === 'thread' && send(S.panel.channel, tinput.value, S.panel.root)) {
      tinput.value = '';
      autosize(tinput);
      renderPanel();
      $('#panel-body').scrollTop = $('#panel-body').scrollHeight;
    }
  };
  $('#thread-composer').addEventListener('submit', submitThread);
  tinput.addEventListener('keydown', (e) => composerKeys(e, submitThread));
  tinput.addEventListener('input', onComposerInput);

  const box = $('#messages');
  box.addEventListener('scroll', () => {
    const ch = S.current && S.channels.get(S.current);
    if (!ch) return;
    if (box.scrollTop < 150 && ch.loaded && ch.hasMore && !ch.loading) loadHistory(ch, true);
    const bottom = nearBottom(box);
    $('#jump-latest').hidden = bottom;
    if (bottom) markReadSoon();
  }, { passive: true });
  $('#jump-latest').addEventListener('click', () => { box.scrollTop = box.scrollHeight; markRead(); });

  document.addEventListener('click', (e) => {
    const pop = $('#emoji-pop');
    if (!pop.hidden && !pop.contains(e.target) && !e.target.closest('[data-action="react"]')) closeEmoji(false);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      if (!$('#emoji-pop').hidden) { closeEmoji(true); e.preventDefault(); } else if (S.panel && !document.querySelector('dialog[open]')) closePanel();
    }
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k') { e.preventDefault(); $('#search-input').focus(); }
  });
  let awayTimer = null;
  document.addEventListener('visibilitychange', () => {
    clearTimeout(awayTimer);
    if (document.visibilityState === 'visible') {
      if ($('#me-presence').value === 'online') S.conn?.raw({ type: 'presence', status: 'online' });
      markRead();
    } else {
      awayTimer = setTimeout(() => S.conn?.raw({ type: 'presence', status: 'away' }), 60e3);
    }
  });
  setInterval(() => { if (S.me && !$('#app').hidden) { renderPaneHead(); } }, 60e3);
}

// Debug and test hooks (also handy from the devtools console).
window.fullslack = {
  disconnect: () => S.conn?.pause(),
  reconnect: () => S.conn?.connectNow(),
  log: () => (S.conn?.log || []).slice(-80),
  state: () => ({
    me: S.me, current: S.current, conn: S.connState, outbox: S.outbox.length,
    channels: [...S.channels.values()].map((c) => ({ id: c.id, kind: c.kind, name: c.name, processedSeq: c.processedSeq, read_seq: c.read_seq, unread: c.unread })),
  }),
};

export { ApiError, api };
boot();
