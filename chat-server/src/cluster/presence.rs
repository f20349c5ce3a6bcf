//! The presence sets in Redis: a sorted set per user, member `o:NODE` (online) or `a:NODE`
//! (away), score = expiry in ms, and an index of users by earliest expiry so that any live
//! node can sweep a crashed node's entries. The node's presence policy
//! ([`crate::presence`]) decides what to write and whom to tell.

use std::time::Duration;

use super::{lock, unix_ms, Cluster};
use crate::model::{Presence, UserId};

/// Sorted set per user: `o:NODE` / `a:NODE` scored by expiry (ms since the epoch).
const PRESENCE_KEY: &str = "fullslack:pres:";
/// Sorted set of users with presence entries, scored by their earliest expiry.
const PRESENCE_INDEX: &str = "fullslack:pres-index";
/// Users swept per script run (the script loops while there is more).
const SWEEP_BATCH: usize = 500;

/// Status of a user's presence set: any `o:` member → online, any member → away.
pub(super) const STATUS_LUA: &str = r#"
local function status(key)
  local s = 'offline'
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(m, 1, 2) == 'o:' then return 'online' end
    s = 'away'
  end
  return s
end
local function reindex(key, index, user)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('ZADD', index, first[2], user)
    redis.call('PEXPIREAT', key, math.floor(tonumber(last[2])) + 60000)
  else
    redis.call('ZREM', index, user)
    redis.call('DEL', key)
  end
end
"#;

/// KEYS: user's set, index. ARGV: now, node, member to add ('' = none), expiry, user.
/// Returns {status before, status after}; "before" still counts expired entries, because
/// nobody announced their expiry yet.
pub(super) const SET_PRESENCE_LUA: &str = r#"
local before = status(KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
redis.call('ZREM', KEYS[1], 'o:' .. ARGV[2], 'a:' .. ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3]) end
reindex(KEYS[1], KEYS[2], ARGV[5])
return {before, status(KEYS[1])}
"#;

/// KEYS: index. ARGV: now, presence key prefix, batch size.
/// Drops expired entries of users whose earliest entry expired; returns {user, status, ...}
/// for those whose status changed, and the number of users looked at.
pub(super) const SWEEP_PRESENCE_LUA: &str = r#"
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, u in ipairs(users) do
  local key = ARGV[2] .. u
  local before = status(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[1])
  reindex(key, KEYS[1], u)
  local after = status(key)
  if before ~= after then
    table.insert(out, u)
    table.insert(out, after)
  end
end
return {#users, out}
"#;

fn parse_status(s: &str) -> Presence {
    match s {
        "online" => Presence::Online,
        "away" => Presence::Away,
        _ => Presence::Offline,
    }
}

fn status_of_members(members: &[String]) -> Presence {
    if members.iter().any(|m| m.starts_with("o:")) {
        Presence::Online
    } else if members.is_empty() {
        Presence::Offline
    } else {
        Presence::Away
    }
}

impl Cluster {
    /// Writes this node's presence entry for a user; (global before, global after).
    pub(crate) async fn presence_set(
        &self,
        user_id: &str,
        local: Presence,
    ) -> Option<(Presence, Presence)> {
        if !self.is_up() {
            return None;
        }
        let now = unix_ms();
        let member = match local {
            Presence::Online => format!("o:{}", self.node_id),
            Presence::Away => format!("a:{}", self.node_id),
            Presence::Offline => String::new(),
        };
        let expiry = now + self.presence_ttl.as_millis() as i64;
        let mut conn = self.conn.clone();
        let mut inv = self.set_presence.key(format!("{PRESENCE_KEY}{user_id}"));
        inv.key(PRESENCE_INDEX)
            .arg(now)
            .arg(&self.node_id)
            .arg(member)
            .arg(expiry)
            .arg(user_id);
        let (before, after): (String, String) =
            self.op("presence", inv.invoke_async(&mut conn)).await?;
        {
            let mut reg = lock(&self.registered);
            if local == Presence::Offline {
                reg.remove(user_id);
            } else {
                reg.insert(user_id.into());
            }
        }
        Some((parse_status(&before), parse_status(&after)))
    }

    /// How often this node's presence entries are written again: a third of their lifetime.
    pub fn presence_refresh_period(&self) -> Duration {
        (self.presence_ttl / 3).max(Duration::from_millis(100))
    }

    /// Asks for this node's presence entries to be written now (the link came back up).
    pub fn request_presence_refresh(&self) {
        self.refresh_now.notify_one();
    }

    /// Resolves when [`Cluster::request_presence_refresh`] asks.
    pub async fn presence_refresh_requested(&self) {
        self.refresh_now.notified().await;
    }

    /// Users this node wrote a presence entry for (to remove the ones that left meanwhile).
    pub(crate) fn registered_users(&self) -> Vec<UserId> {
        lock(&self.registered).iter().cloned().collect()
    }

    /// Global presence of users (live entries only); `None` when Redis could not answer.
    pub(crate) async fn presences(&self, user_ids: &[UserId]) -> Option<Vec<Presence>> {
        if !self.is_up() {
            return None;
        }
        if user_ids.is_empty() {
            return Some(Vec::new());
        }
        let now = unix_ms();
        let mut pipe = redis::pipe();
        for u in user_ids {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(format!("{PRESENCE_KEY}{u}"))
                .arg(now)
                .arg("+inf");
        }
        let mut conn = self.conn.clone();
        let sets: Vec<Vec<String>> = self
            .op("presence read", pipe.query_async(&mut conn))
            .await?;
        Some(sets.iter().map(|m| status_of_members(m)).collect())
    }

    /// Removes expired entries (crashed nodes); the users whose status changed.
    pub(crate) async fn sweep(&self) -> Option<Vec<(UserId, Presence)>> {
        let mut changed = Vec::new();
        loop {
            let mut conn = self.conn.clone();
            let mut inv = self.sweep_presence.key(PRESENCE_INDEX);
            inv.arg(unix_ms()).arg(PRESENCE_KEY).arg(SWEEP_BATCH);
            let (looked, out): (usize, Vec<String>) = self
                .op("presence sweep", inv.invoke_async(&mut conn))
                .await?;
            for pair in out.chunks(2) {
                if let [user, status] = pair {
                    changed.push((user.as_str().into(), parse_status(status)));
                }
            }
            if looked < SWEEP_BATCH {
                return Some(changed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_prefers_online_then_away() {
        assert_eq!(status_of_members(&[]), Presence::Offline);
        assert_eq!(status_of_members(&["a:n1".into()]), Presence::Away);
        assert_eq!(
            status_of_members(&["a:n1".into(), "o:n2".into()]),
            Presence::Online
        );
    }
}
