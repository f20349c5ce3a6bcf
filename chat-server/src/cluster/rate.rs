//! The shared rate-limit buckets in Redis: GCRA in one Lua script per check (atomic across
//! nodes), and the per-name sign-in backoff. The node's policy ([`crate::limits`]) falls back
//! to its own buckets when these answer `None`.

use super::{unix_ms, Cluster};

const RATE_KEY: &str = "fullslack:rl:";

/// GCRA. KEYS: bucket. ARGV: now (ms), emission interval (ms), burst.
/// Returns 0 when allowed, else how many ms until it would be.
pub(super) const GCRA_LUA: &str = r#"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
local limit = now + interval * burst
if next_tat > limit then
  return math.max(1, math.ceil(next_tat - limit))
end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return 0
"#;

/// Failed sign-ins per user name (see [`crate::ratelimit::Backoff`]): KEYS[1] the name's key;
/// ARGV now (ms), interval (ms), burst, max delay (ms), and `1` to record a failure (returns 0)
/// or `0` to ask how long an attempt waits (ms).
pub(super) const BACKOFF_LUA: &str = r#"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local allowance = interval * tonumber(ARGV[3])
local max_delay = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[5] == '1' then
  if tat < now then tat = now end
  tat = math.min(tat + interval, now + allowance + max_delay)
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  return 0
end
return math.max(0, math.min(max_delay, math.ceil(tat - now - allowance)))
"#;

impl Cluster {
    /// GCRA check of `key`; `None` when Redis could not answer (use the local limiter).
    pub(crate) async fn rate_check(&self, key: &str, interval_ms: f64, burst: u32) -> Option<u64> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.conn.clone();
        let mut inv = self.gcra.key(format!("{RATE_KEY}{key}"));
        inv.arg(unix_ms()).arg(interval_ms).arg(burst.max(1));
        self.op("rate limit", inv.invoke_async::<u64>(&mut conn))
            .await
    }

    /// [`BACKOFF_LUA`] on `key`: the wait in ms (`fail` false) or records a failure (`fail`
    /// true); `None` when Redis could not answer (use the local state).
    pub(crate) async fn backoff(
        &self,
        key: &str,
        interval_ms: f64,
        burst: u32,
        max_delay_ms: u64,
        fail: bool,
    ) -> Option<u64> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.conn.clone();
        let mut inv = self.backoff.key(format!("{RATE_KEY}{key}"));
        inv.arg(unix_ms())
            .arg(interval_ms)
            .arg(burst.max(1))
            .arg(max_delay_ms)
            .arg(u8::from(fail));
        self.op("sign-in backoff", inv.invoke_async::<u64>(&mut conn))
            .await
    }
}
