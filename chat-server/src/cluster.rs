//! Scale-out over Redis: fan-out between nodes, presence across nodes, shared rate limits.
//!
//! Set `redis_url` and several nodes (sharing one store) behave as one chat server. Without it
//! nothing here runs and a node works alone. Redis is only a fast path and a shared scratchpad:
//! the store stays the source of truth, so anything lost or reordered on the bus heals through
//! the sockets' sequence-gap recovery (`ws.rs`).
//!
//! - **One subscriber connection per node** (the *link* task, [`run_link`]). The hub reports
//!   which topics this node needs ([`Interest`]): a channel's topic while at least one local
//!   socket follows it, a user's topic while the user has a local socket, a user's presence
//!   topic while a local socket watches it, plus [`MEMBERS_TOPIC`] always (membership changes
//!   also keep every node's channel cache right). After a SUBSCRIBE the local sockets of that
//!   channel re-check the store, so nothing published just before it is missed.
//! - **Publishing** goes through a bounded queue to one task that pipelines `PUBLISH`es on a
//!   separate multiplexed [`ConnectionManager`]: a send is acknowledged after local delivery,
//!   never after Redis. Each event is serialized once (its frame) and sent as
//!   `origin \n header-json \n frame`; a node ignores what it published itself.
//! - **Presence**: a sorted set per user, member `o:NODE` (online) or `a:NODE` (away), score =
//!   expiry in ms. Nodes refresh their entries every `presence_ttl_secs / 3`; an index sorted
//!   set (score = a user's earliest expiry) lets any live node sweep entries of a crashed node
//!   atomically (Lua), so exactly one node announces the change and stores the last-seen time.
//! - **Rate limits**: GCRA in one Lua script per check (atomic across nodes); the local
//!   governor buckets take over while Redis is unreachable.
//! - **Degradation**: Redis down → `/readyz` degraded, `fullslack_redis_up` 0, one warning per
//!   outage, reconnect with backoff. On reconnect: resubscribe, forget cached channel facts,
//!   re-register presence, and nudge every socket to refill its channels from the store.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::topics::{channel_topic, presence_topic, user_topic, Interest};
use crate::topics::{CHANNEL_TOPIC, PRESENCE_TOPIC};
use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Script,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::{
    sync::{mpsc, Notify},
    task::JoinSet,
};

use crate::{
    auth::{ExposeSecret, SecretString},
    config::Settings,
    hub::Published,
    metrics::Metrics,
    model::{ChannelId, EventKind, Presence, SessionId, UserId},
};

/// Membership changes of every channel: all nodes listen (routing and channel caches).
pub const MEMBERS_TOPIC: &str = "fullslack:members";
/// Sorted set per user: `o:NODE` / `a:NODE` scored by expiry (ms since the epoch).
const PRESENCE_KEY: &str = "fullslack:pres:";
/// Sorted set of users with presence entries, scored by their earliest expiry.
const PRESENCE_INDEX: &str = "fullslack:pres-index";
const RATE_KEY: &str = "fullslack:rl:";

/// Bound on a Redis round trip on a request's path (rate limit, presence): past it the node
/// answers from its local state instead of waiting.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on one pipelined batch of publishes.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on connecting (and subscribing) the link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Publishes waiting for the publisher task; beyond this they are dropped (receivers heal).
const OUTBOX: usize = 65_536;
const PUBLISH_BATCH: usize = 512;
/// Users swept per script run (the script loops while there is more).
const SWEEP_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid redis_url: {0}")]
    Url(String),
}

/// The header line of a bus message (the frame, if any, follows it verbatim).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Header {
    /// A channel event; `u` is the member concerned by membership events.
    #[serde(rename = "ev")]
    Event {
        c: ChannelId,
        s: i64,
        k: EventKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        a: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u: Option<UserId>,
    },
    /// Typing in channel `c` by user `u` (not relayed back to `u`).
    #[serde(rename = "ty")]
    Typing { c: ChannelId, u: UserId },
    #[serde(rename = "pr")]
    Presence {
        u: UserId,
        st: Presence,
        #[serde(default, with = "time::serde::rfc3339::option")]
        ls: Option<OffsetDateTime>,
    },
    /// Session `sid` of user `u` ended: close its sockets.
    #[serde(rename = "rv")]
    Revoke { u: UserId, sid: SessionId },
}

#[derive(Default)]
struct LinkState {
    up: bool,
    /// The last reason Redis was unreachable (for `/readyz`).
    error: Option<String>,
    /// Whether the current outage was logged already.
    outage_logged: bool,
}

/// This node's Redis side. Owned by the node; its tasks are started by [`Cluster::spawn`],
/// which hands what arrives to the node's [`BusHandler`].
pub struct Cluster {
    pub node_id: String,
    client: redis::Client,
    /// Commands and publishes (multiplexed; reconnects by itself).
    conn: ConnectionManager,
    /// `host:port` of Redis, for logs (the URL may carry a password).
    addr: String,
    up: AtomicBool,
    state: Mutex<LinkState>,
    outbox: mpsc::Sender<(String, String)>,
    outbox_rx: Mutex<Option<mpsc::Receiver<(String, String)>>>,
    interest_rx: Mutex<Option<mpsc::UnboundedReceiver<Interest>>>,
    /// Users this node wrote a presence entry for (to remove the ones that left meanwhile).
    registered: Mutex<HashSet<UserId>>,
    /// Asks the presence task to refresh now (after a reconnect).
    refresh_now: Notify,
    /// Asks the link to reconnect (a command saw the connection drop).
    kick: Notify,
    presence_ttl: Duration,
    metrics: Arc<Metrics>,
    set_presence: Script,
    sweep_presence: Script,
    gcra: Script,
    backoff: Script,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Status of a user's presence set: any `o:` member → online, any member → away.
const STATUS_LUA: &str = r#"
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
const SET_PRESENCE_LUA: &str = r#"
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
const SWEEP_PRESENCE_LUA: &str = r#"
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

/// GCRA. KEYS: bucket. ARGV: now (ms), emission interval (ms), burst.
/// Returns 0 when allowed, else how many ms until it would be.
const GCRA_LUA: &str = r#"
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
const BACKOFF_LUA: &str = r#"
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
    /// Checks the URL and prepares the (lazy) connections; connects nothing yet, so a node
    /// starts even while Redis is down. Returns the sender the hub reports interest with.
    pub fn new(
        url: &SecretString,
        settings: &Settings,
        node_id: String,
        metrics: Arc<Metrics>,
    ) -> Result<(Cluster, mpsc::UnboundedSender<Interest>), ClusterError> {
        // The redis crate's parse errors do not repeat the URL (it may hold a password).
        let client = redis::Client::open(url.expose_secret())
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let cluster = Cluster {
            node_id,
            client,
            conn,
            addr,
            up: AtomicBool::new(false),
            state: Mutex::new(LinkState::default()),
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            interest_rx: Mutex::new(Some(interest_rx)),
            registered: Mutex::new(HashSet::new()),
            refresh_now: Notify::new(),
            kick: Notify::new(),
            presence_ttl: Duration::from_secs(settings.realtime.presence_ttl_secs.max(1)),
            metrics,
            set_presence: Script::new(&format!("{STATUS_LUA}{SET_PRESENCE_LUA}")),
            sweep_presence: Script::new(&format!("{STATUS_LUA}{SWEEP_PRESENCE_LUA}")),
            gcra: Script::new(GCRA_LUA),
            backoff: Script::new(BACKOFF_LUA),
        };
        Ok((cluster, interest_tx))
    }

    /// Waits (up to `deadline`) until the publisher has taken every queued message: on
    /// shutdown the last events and presence changes should still reach the other nodes.
    pub async fn drain(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        while self.is_up()
            && self.outbox.capacity() < self.outbox.max_capacity()
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `host:port` of Redis (never the password).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the link to Redis is established.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn set_up(&self) -> bool {
        let mut st = lock(&self.state);
        let was_up = st.up;
        st.up = true;
        st.error = None;
        if st.outage_logged {
            tracing::info!(redis = %self.addr, "redis reachable again: cross-node delivery resumes");
        } else {
            tracing::info!(redis = %self.addr, node = %self.node_id, "redis connected");
        }
        st.outage_logged = false;
        self.up.store(true, Ordering::Release);
        self.metrics.redis_up.set(1);
        !was_up
    }

    fn set_down(&self, reason: String) {
        let mut st = lock(&self.state);
        st.up = false;
        self.up.store(false, Ordering::Release);
        self.metrics.redis_up.set(0);
        // One warning per outage, however many retries and messages it spans.
        if !st.outage_logged {
            tracing::warn!(redis = %self.addr, error = %reason,
                "redis unreachable: serving this node's clients only (local fan-out, rate limits, presence); reconnecting in the background");
            st.outage_logged = true;
        }
        st.error = Some(reason);
    }

    /// `Ok` when Redis answers a PING now; the error text otherwise (for `/readyz`).
    pub async fn check(&self) -> Result<(), String> {
        if !self.is_up() {
            let st = lock(&self.state);
            return Err(st
                .error
                .clone()
                .unwrap_or_else(|| "not connected yet".to_string()));
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("redis did not answer PING within 1 s".to_string()),
        }
    }

    /// Queues a message for the publisher; never waits. Dropped while Redis is down (the other
    /// nodes refill from the store when it returns).
    fn enqueue(&self, topic: String, header: &Header, body: &str) {
        if !self.is_up() {
            self.metrics.redis_dropped.inc();
            return;
        }
        let Ok(header) = serde_json::to_string(header) else {
            return;
        };
        let mut payload = String::with_capacity(self.node_id.len() + header.len() + body.len() + 2);
        payload.push_str(&self.node_id);
        payload.push('\n');
        payload.push_str(&header);
        payload.push('\n');
        payload.push_str(body);
        if self.outbox.try_send((topic, payload)).is_err() {
            self.metrics.redis_dropped.inc();
        }
    }

    /// Publishes a stored event: membership changes to every node, the rest to the channel.
    pub fn publish_event(&self, ev: &Published, member: Option<&str>) {
        let membership = matches!(ev.kind, EventKind::MemberJoined | EventKind::MemberLeft);
        let topic = if membership {
            MEMBERS_TOPIC.to_string()
        } else {
            channel_topic(&ev.channel)
        };
        let header = Header::Event {
            c: ev.channel.clone(),
            s: ev.seq,
            k: ev.kind,
            a: ev.author_id.clone(),
            u: member.map(Into::into),
        };
        self.enqueue(topic, &header, ev.frame.as_str());
    }

    pub fn publish_typing(&self, channel_id: &str, user_id: &str, frame: &str) {
        let header = Header::Typing {
            c: channel_id.into(),
            u: user_id.into(),
        };
        self.enqueue(channel_topic(channel_id), &header, frame);
    }

    pub fn publish_presence(
        &self,
        user_id: &str,
        status: Presence,
        last_seen: Option<OffsetDateTime>,
    ) {
        let header = Header::Presence {
            u: user_id.into(),
            st: status,
            ls: last_seen,
        };
        self.enqueue(presence_topic(user_id), &header, "");
    }

    pub fn publish_revoke(&self, user_id: &str, session_id: &str) {
        let header = Header::Revoke {
            u: user_id.into(),
            sid: session_id.into(),
        };
        self.enqueue(user_topic(user_id), &header, "");
    }

    async fn op<T, F>(&self, what: &str, fut: F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, what, "redis command failed; using local state");
                if e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() {
                    self.kick.notify_one();
                }
                None
            }
            Err(_) => {
                tracing::debug!(what, "redis command timed out; using local state");
                None
            }
        }
    }

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
        self.refresh_now.notified().await
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

/// The node as the transport sees it: where messages from other nodes and changes of the link
/// go. The transport knows nothing else of the node.
pub trait BusHandler: Send + Sync + 'static {
    /// A message another node published, decoded, in bus order.
    fn on_message(&self, message: BusMessage);
    /// The link came (back) up: what happened meanwhile is in the store, not on the bus.
    fn healed(&self);
    /// A channel's topic was just subscribed: events published before it took were not heard.
    fn channel_subscribed(&self, channel_id: &str);
    /// Users' presence topics were just subscribed: a change just before it took was not heard.
    fn presence_subscribed(self: Arc<Self>, users: Vec<UserId>);
}

/// A message from another node.
#[derive(Debug)]
pub enum BusMessage {
    /// A stored channel event; `member` is the user a membership event concerns.
    Event {
        published: Arc<Published>,
        member: Option<UserId>,
    },
    /// Someone is typing in a channel (not relayed back to `user_id`'s sockets).
    Typing {
        channel_id: ChannelId,
        user_id: UserId,
        frame: Utf8Bytes,
    },
    /// A user's status across nodes changed.
    Presence {
        user_id: UserId,
        status: Presence,
        last_seen: Option<OffsetDateTime>,
    },
    /// A session ended: close its sockets.
    Revoke {
        user_id: UserId,
        session_id: SessionId,
    },
}

impl Cluster {
    /// Starts the link and the publisher; dropping the set stops them.
    pub fn spawn(self: &Arc<Self>, handler: Arc<dyn BusHandler>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        if let Some(rx) = lock(&self.outbox_rx).take() {
            set.spawn(run_publisher(self.clone(), rx));
        }
        if let Some(rx) = lock(&self.interest_rx).take() {
            set.spawn(run_link(self.clone(), handler, rx));
        }
        set
    }

    /// Decodes one bus message; `None` for this node's own messages and unreadable ones.
    fn decode(&self, payload: &[u8]) -> Option<BusMessage> {
        let text = std::str::from_utf8(payload).ok()?;
        let (origin, rest) = text.split_once('\n')?;
        if origin == self.node_id {
            return None;
        }
        let (header, body) = rest.split_once('\n').unwrap_or((rest, ""));
        let header: Header = match serde_json::from_str(header) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable bus message ignored");
                return None;
            }
        };
        self.metrics.redis_received.inc();
        Some(match header {
            Header::Event { c, s, k, a, u } => BusMessage::Event {
                published: Arc::new(Published {
                    channel: c,
                    seq: s,
                    kind: k,
                    author_id: a,
                    frame: Utf8Bytes::from(body.to_string()),
                }),
                member: u,
            },
            Header::Typing { c, u } => BusMessage::Typing {
                channel_id: c,
                user_id: u,
                frame: Utf8Bytes::from(body.to_string()),
            },
            Header::Presence { u, st, ls } => BusMessage::Presence {
                user_id: u,
                status: st,
                last_seen: ls,
            },
            Header::Revoke { u, sid } => BusMessage::Revoke {
                user_id: u,
                session_id: sid,
            },
        })
    }
}

/// Drains the outbox, one pipelined batch of `PUBLISH`es at a time (order kept).
async fn run_publisher(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<(String, String)>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let n = batch.len() as u64;
        if !cluster.is_up() {
            cluster.metrics.redis_dropped.inc_by(n);
            batch.clear();
            continue;
        }
        let mut pipe = redis::pipe();
        for (topic, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(topic).arg(payload).ignore();
        }
        let mut conn = cluster.conn.clone();
        let mut sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.exec_async(&mut conn)).await;
        if let Ok(Err(e)) = &sent {
            // The manager reconnects after a dropped connection: one more try on the new one.
            if e.is_connection_dropped() || e.is_io_error() {
                sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.exec_async(&mut conn)).await;
            }
        }
        match sent {
            Ok(Ok(())) => {
                cluster.metrics.redis_published.inc_by(n);
            }
            Ok(Err(e)) => {
                cluster.metrics.redis_dropped.inc_by(n);
                tracing::debug!(error = %e, "publish to redis failed");
                if e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() {
                    cluster.kick.notify_one();
                }
            }
            Err(_) => {
                cluster.metrics.redis_dropped.inc_by(n);
                tracing::debug!("publish to redis timed out");
            }
        }
    }
}

fn apply(desired: &mut HashSet<String>, i: Interest) {
    match i {
        Interest::Subscribe(t) => {
            desired.insert(t);
        }
        Interest::Unsubscribe(t) => {
            desired.remove(&t);
        }
    }
}

/// The subscriber connection: (re)connects with backoff, keeps the subscriptions equal to
/// what the hub needs, and hands every message to the node's [`BusHandler`].
async fn run_link(
    cluster: Arc<Cluster>,
    handler: Arc<dyn BusHandler>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    let mut desired: HashSet<String> = HashSet::from([MEMBERS_TOPIC.to_string()]);
    let mut backoff = BACKOFF_MIN;
    loop {
        while let Ok(i) = interest.try_recv() {
            apply(&mut desired, i);
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let pubsub = cluster.client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            let topics: Vec<String> = desired.iter().cloned().collect();
            for chunk in topics.chunks(1000) {
                sink.subscribe(chunk).await?;
            }
            // The command connection may still hold the socket of before the outage: have it
            // reconnect now, so the first publishes after "up" are not lost on it.
            let mut conn = cluster.conn.clone();
            let mut ping = redis::cmd("PING").query_async::<String>(&mut conn).await;
            if ping.is_err() {
                ping = redis::cmd("PING").query_async::<String>(&mut conn).await;
            }
            ping?;
            Ok::<_, redis::RedisError>((sink, stream))
        })
        .await;
        let (mut sink, mut stream) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                cluster.set_down(e.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(_) => {
                cluster.set_down("connecting to redis timed out".to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let mut subscribed = desired.clone();
        cluster.set_up();
        handler.healed();
        let reason = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => {
                        if let Some(message) = cluster.decode(m.get_payload_bytes()) {
                            handler.on_message(message);
                        }
                    }
                    None => break "redis closed the subscriber connection".to_string(),
                },
                Some(i) = interest.recv() => {
                    apply(&mut desired, i);
                    while let Ok(i) = interest.try_recv() {
                        apply(&mut desired, i);
                    }
                    let add: Vec<String> = desired.difference(&subscribed).cloned().collect();
                    let drop: Vec<String> = subscribed.difference(&desired).cloned().collect();
                    if !add.is_empty() {
                        if let Err(e) = sink.subscribe(&add).await {
                            break e.to_string();
                        }
                        let mut watched = Vec::new();
                        for t in &add {
                            if let Some(ch) = t.strip_prefix(CHANNEL_TOPIC) {
                                // Events published before the SUBSCRIBE took are in the store.
                                handler.channel_subscribed(ch);
                            } else if let Some(user) = t.strip_prefix(PRESENCE_TOPIC) {
                                watched.push(UserId::from(user));
                            }
                        }
                        if !watched.is_empty() {
                            // A change just before the SUBSCRIBE took was not heard: compare.
                            handler.clone().presence_subscribed(watched);
                        }
                        subscribed.extend(add);
                    }
                    if !drop.is_empty() {
                        if let Err(e) = sink.unsubscribe(&drop).await {
                            break e.to_string();
                        }
                        for t in &drop {
                            subscribed.remove(t);
                        }
                    }
                }
                _ = cluster.kick.notified() => {
                    // A command saw the connection drop: make sure the link is still alive.
                    // (In subscribed mode PING answers ["pong", ""], not a string.)
                    let ping = tokio::time::timeout(Duration::from_secs(1), sink.ping::<redis::Value>()).await;
                    match ping {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "redis did not answer PING within 1 s".to_string(),
                    }
                }
            }
        };
        cluster.set_down(reason);
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

    #[test]
    fn headers_round_trip_compactly() {
        let h = Header::Event {
            c: "c1".into(),
            s: 7,
            k: EventKind::Message,
            a: Some("u1".into()),
            u: None,
        };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"t":"ev","c":"c1","s":7,"k":"message","a":"u1"}"#);
        match serde_json::from_str::<Header>(&json).unwrap() {
            Header::Event { s, k, u, .. } => {
                assert_eq!((s, k, u), (7, EventKind::Message, None));
            }
            other => panic!("wrong variant {other:?}"),
        }
        let p: Header = serde_json::from_str(r#"{"t":"pr","u":"x","st":"offline"}"#).unwrap();
        assert!(matches!(p, Header::Presence { ls: None, .. }));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let settings = Settings::default();
        let url = SecretString::from("http://user:hunter2@host:1");
        let err = Cluster::new(&url, &settings, "n".into(), Arc::new(Metrics::new()))
            .err()
            .expect("not a redis URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
