// Message text → DOM nodes: @mentions highlighted, links clickable, `code` spans, and
// optional search-term highlighting. Only text nodes and safe elements are created.

import { h } from './util.js';

const TOKEN = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])|(@[A-Za-z0-9_.-]+)|(`[^`\n]+`)/g;

export function mentionsMe(m, me) {
  if (!me) return false;
  if ((m.mentions || []).includes(me.id)) return true;
  const re = new RegExp(`(^|[^A-Za-z0-9_.-])@(${escapeRe(me.username)}|here|channel|everyone)(?![A-Za-z0-9_-])`, 'i');
  return re.test(m.text || '');
}

function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); }

function highlight(text, q) {
  if (!q) return [text];
  const words = q.split(/\s+/).filter((w) => w.length > 1).map(escapeRe);
  if (!words.length) return [text];
  const re = new RegExp(`(${words.join('|')})`, 'gi');
  return text.split(re).map((part, i) => (i % 2 ? h('mark', {}, part) : part));
}

export function renderText(text, users, me, query) {
  const out = [];
  let last = 0;
  const byName = new Map([...users.values()].map((u) => [u.username.toLowerCase(), u]));
  for (const m of (text || '').matchAll(TOKEN)) {
    if (m.index > last) out.push(...highlight(text.slice(last, m.index), query));
    const [whole, url, mention, code] = m;
    if (url) {
      out.push(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow' }, url));
    } else if (mention) {
      const name = mention.slice(1).replace(/[.]+$/, '');
      const u = byName.get(name.toLowerCase());
      const special = ['here', 'channel', 'everyone'].includes(name.toLowerCase());
      if (u || special) {
        const self = special || (me && u && u.id === me.id);
        out.push(h('span', { class: `mention${self ? ' mention-me' : ''}`, title: u ? (u.display_name || u.username) : `Notifies ${name}` }, `@${name}`));
        if (name.length + 1 < mention.length) out.push(mention.slice(name.length + 1));
      } else out.push(...highlight(whole, query));
    } else if (code) {
      out.push(h('code', {}, code.slice(1, -1)));
    }
    last = m.index + whole.length;
  }
  if (last < (text || '').length) out.push(...highlight(text.slice(last), query));
  return out;
}
