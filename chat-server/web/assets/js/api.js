// REST client for /api (docs/protocol.md). Same-origin, authenticated by the HttpOnly
// `fullslack_token` cookie that register/login/refresh set.

export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* empty or not JSON */ }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const header = Number(res.headers.get('Retry-After'));
    const retry = err.retry_after_ms ?? data?.retry_after_ms ?? (header ? header * 1000 : undefined);
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, retry);
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b = {}) => api('POST', p, b);
export const enc = encodeURIComponent;
