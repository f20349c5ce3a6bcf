//! Scale-out over Redis: the transport between nodes. Fan-out of events, presence sets and
//! shared rate-limit buckets in Redis, the link's health. It knows nothing of the node's
//! rules: what arrives goes to the node's [`BusHandler`]; the node's policies (presence,
//! rate limits, delivery) call the operations here and fall back to local state when they
//! answer `None`.
//!
//! | module | what it is |
//! | --- | --- |
//! | this file | [`Cluster`]: the connections, health (up/down, `/readyz`), starting the tasks |
//! | [`bus`] | what nodes publish to each other: the wire format, the publisher task, [`BusHandler`] |
//! | [`link`] | the subscriber connection: (re)connecting, subscriptions, handing messages over |
//! | [`presence`] | the presence sets: this node's entries, reading, sweeping crashed nodes' |
//! | [`rate`] | the shared rate-limit buckets (GCRA) and the sign-in backoff |
//!
//! Set `redis_url` and several nodes (sharing one store) behave as one chat server. Without it
//! nothing here runs and a node works alone. Redis is only a fast path and a shared scratchpad:
//! the store stays the source of truth, so anything lost or reordered on the bus heals through
//! the sockets' sequence-gap recovery (`ws.rs`).
//!
//! - **One subscriber connection per node** ([`link`]). The hub reports
//!   which topics this node needs ([`Interest`]): a channel's topic while at least one local
//!   socket follows it, a user's topic while the user has a local socket, a user's presence
//!   topic while a local socket watches it, plus [`MEMBERS_TOPIC`] always (membership changes
//!   also keep every node's channel cache right). After a SUBSCRIBE the local sockets of that
//!   channel re-check the store (the node's [`BusHandler`] is told), so nothing published just
//!   before it is missed.
//! - **Publishing** ([`bus`]) goes through a bounded queue to one task that pipelines
//!   `PUBLISH`es on a separate multiplexed [`ConnectionManager`]: a send is acknowledged after
//!   local delivery, never after Redis. Each event is serialized once (its frame) and sent as
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

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Script,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::{
    sync::{mpsc, Notify},
    task::JoinSet,
};

use crate::{config::Settings, metrics::Metrics, model::UserId, topics::Interest};

mod bus;
mod link;
mod presence;
mod rate;

pub use bus::{BusEvent, BusHandler, BusMessage, MEMBERS_TOPIC};
use presence::{SET_PRESENCE_LUA, STATUS_LUA, SWEEP_PRESENCE_LUA};
use rate::{BACKOFF_LUA, GCRA_LUA};

/// Bound on a Redis round trip on a request's path (rate limit, presence): past it the node
/// answers from its local state instead of waiting.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Publishes waiting for the publisher task; beyond this they are dropped (receivers heal).
const OUTBOX: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid redis_url: {0}")]
    Url(String),
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

    /// Starts the link and the publisher; dropping the set stops them.
    pub fn spawn(self: &Arc<Self>, handler: Arc<dyn BusHandler>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        if let Some(rx) = lock(&self.outbox_rx).take() {
            set.spawn(bus::run_publisher(self.clone(), rx));
        }
        if let Some(rx) = lock(&self.interest_rx).take() {
            set.spawn(link::run_link(self.clone(), handler, rx));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
