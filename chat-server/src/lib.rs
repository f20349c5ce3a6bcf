//! fullslack-chat: the real-time chat server.
//!
//! Module map (requests flow top to bottom; every module of the crate is listed):
//!
//! | module | what it is |
//! | --- | --- |
//! | [`config`] | settings: defaults → TOML file → `FULLSLACK_*` env → flags; the JWT secret |
//! | [`http`] | REST routes, `/healthz` `/readyz` `/metrics`, the OpenAPI document |
//! | [`ws`] | `GET /api/ws`: one task per socket; per-channel cursors give gap-free resume; write deadlines and the closing handshake |
//! | [`web`] | the embedded web client (HTML/CSS/JS) served at `/` |
//! | [`auth`] | Argon2id on reusing hashing threads, JWT access tokens bound to sessions, cookie, [`auth::AuthUser`] extractor |
//! | [`proxy`] | the client's address: the TCP peer, or `X-Forwarded-For` from `trusted_proxies` |
//! | [`accounts`] | [`App`]'s accounts: sign-up, sign-in, sessions, users; the rules for names |
//! | [`service`] | [`App`]'s chat rules: channels (the cached membership, authorization), messages, reads, search; what a live socket reads (its memberships, refills, its session), so [`ws`] never reads the store itself |
//! | [`sending`] | a message send: checks, the write (queued in its connection's order), publish, ack |
//! | [`delivery`] | [`App`] delivering what the store recorded: to this node's sockets through the hub, to other nodes through the transport; delivered receipts; what other nodes publish (the node's [`cluster::BusHandler`]) |
//! | [`presence`] | [`App`]'s presence policy: this node's view alone, every node's entries with Redis; announcements, last seen, the refresh |
//! | [`limits`] | [`App`]'s rate-limit policy: buckets shared through Redis, this node's [`ratelimit`] buckets alone or while Redis is down |
//! | [`hub`] | this node's live connections: channel fan-out (big channels' sockets woken in rounds, mid-sized ones' too while the node is busy), presence, typing; each connection's control state (revocation, joins, leaves, server shutdown: never dropped) |
//! | [`topics`] | the names nodes exchange (a topic per channel, user, presence) and the hub's [`topics::Interest`] in them: shared by the hub and the Redis transport |
//! | [`cluster`] | with `redis_url`, the Redis transport: connections and health, publishing and subscriptions, the presence and rate-limit operations; knows the node only as a [`cluster::BusHandler`] |
//! | [`store`] | the [`store::Store`] trait (source of truth, replay log) and its drivers |
//! | [`protocol`] | WebSocket frames and [`model`] the JSON objects and events: both from the `fullslack-protocol` crate; [`error`] the error codes |
//! | [`ratelimit`] | token buckets and the per-name sign-in backoff (mechanism, no policy); [`metrics`] Prometheus counters |
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests run the real server on
//! port 0; `main.rs` only parses flags and calls it.

pub mod accounts;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod error;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod presence;
/// WebSocket frames: the `fullslack-protocol` crate's, under the name the server has always used.
pub use fullslack_protocol::frames as protocol;
pub mod proxy;
pub mod ratelimit;
pub mod sending;
pub mod service;
pub mod store;
pub mod topics;
pub mod web;
pub mod ws;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::serve::{ListenerExt, TapIo};
use dashmap::DashMap;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::Auth,
    cluster::{Cluster, ClusterError},
    config::{ConfigError, Settings},
    hub::Hub,
    metrics::Metrics,
    model::{ChannelId, UserId},
    ratelimit::Limiters,
    service::ChannelMeta,
    store::{DynStore, StoreError},
};

/// Everything a node shares between requests and sockets.
pub struct App {
    pub settings: Settings,
    /// The driver wrapped in [`store::health::Watched`]: every outcome feeds `store_health`.
    pub store: DynStore,
    /// Whether writes currently fail (readiness) and the outage log's rate limit.
    pub store_health: Arc<store::health::StoreHealth>,
    pub auth: Arc<Auth>,
    pub hub: Hub,
    pub limiters: Limiters,
    pub metrics: Arc<Metrics>,
    pub channel_cache: DashMap<ChannelId, Arc<ChannelMeta>>,
    /// Bumped by every cache invalidation: a load that raced one is not cached (it may have
    /// read the membership from before the change).
    pub channel_cache_gen: std::sync::atomic::AtomicU64,
    /// (channel, user) → the receipt work the next flush owes: the highest seq written to one
    /// of the user's sockets, not yet stored, and whether a send of theirs moved their
    /// watermarks (announced in the channel's next receipt event).
    pub delivered: Mutex<HashMap<(ChannelId, UserId), delivery::Owed>>,
    /// Cancelled when the server begins shutting down: every socket closes with 1012.
    pub shutdown: CancellationToken,
    /// The WebSocket tasks, awaited (with a deadline) on shutdown.
    pub tasks: TaskTracker,
    /// Random per process start: tells this node's bus messages from other nodes'.
    pub node_id: String,
    /// The Redis side when `redis_url` is set; `None` runs a single node.
    pub cluster: Option<Arc<Cluster>>,
}

pub type AppState = Arc<App>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] ClusterError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

impl App {
    pub async fn new(settings: Settings) -> Result<AppState, StartError> {
        settings.validate()?;
        let secret = settings.resolve_jwt_secret()?;
        let store = store::open(&settings.store_url, &settings.data_dir).await?;
        App::with_store(settings, store, &secret)
    }

    /// Builds the node around an open store. Connects nothing to Redis yet ([`serve`] starts
    /// the link), so a node starts while Redis is down.
    pub fn with_store(
        settings: Settings,
        store: DynStore,
        secret: &auth::SecretString,
    ) -> Result<AppState, StartError> {
        let mut metrics = Metrics::new();
        store.register_metrics(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let store_health = Arc::new(store::health::StoreHealth::default());
        let store: DynStore = Arc::new(store::health::Watched::new(store, store_health.clone()));
        let node_id: String = model::new_id();
        let (cluster, interest) = match &settings.redis_url {
            Some(url) => {
                let (c, tx) = Cluster::new(url, &settings, node_id.clone(), metrics.clone())?;
                (Some(Arc::new(c)), Some(tx))
            }
            None => (None, None),
        };
        let auth = Auth::new(
            secret,
            Duration::from_secs(settings.auth.token_ttl_secs),
            Duration::from_secs(settings.auth.session_ttl_secs),
            settings.cookie_secure(),
        );
        Ok(Arc::new(App {
            limiters: Limiters::new(&settings.rate_limit),
            hub: Hub::new(metrics.clone(), interest, round_settings(&settings)),
            settings,
            store,
            store_health,
            auth,
            metrics,
            channel_cache: DashMap::new(),
            channel_cache_gen: Default::default(),
            delivered: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            node_id,
            cluster,
        }))
    }
}

/// The hub's wake-up rounds for big channels (and mid-sized ones under load), unless turned off
/// (`fanout_round_sockets = 0`).
fn round_settings(settings: &Settings) -> Option<hub::rounds::RoundSettings> {
    let rt = &settings.realtime;
    (rt.fanout_round_sockets > 0).then(|| hub::rounds::RoundSettings {
        min_sockets: rt.fanout_round_sockets,
        interval: Duration::from_millis(rt.fanout_round_ms),
        busy_min_sockets: rt.fanout_busy_sockets,
        busy_deliveries: rt
            .fanout_busy_deliveries_per_sec
            .saturating_mul(rt.fanout_round_ms)
            / 1000,
    })
}

/// The whole HTTP surface: API, WebSocket, operations, web client. A known path asked with
/// another method answers 405 in the JSON error shape; every answer says
/// `X-Content-Type-Options: nosniff` (no browser guesses an API answer is HTML).
pub fn router(app: AppState) -> axum::Router {
    http::router(app)
        .merge(web::routes())
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::middleware::map_response(nosniff))
}

async fn nosniff(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut()
        .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    res
}

/// Serves until `shutdown` resolves, then stops accepting, closes every socket with 1012
/// (clients reconnect and resume elsewhere) and waits for them up to the grace deadline.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = spawn_background(app.clone());
    // Dropped at the end: stops the Redis tasks after the sockets had their say.
    let cluster_tasks = start_cluster(&app);
    let token = app.shutdown.clone();
    let to_close = app.clone();
    let service = router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(no_delay(listener), service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets with 1012");
            token.cancel();
            to_close.hub.close_all();
        })
        .await?;
    app.tasks.close();
    let grace = Duration::from_millis(app.settings.realtime.shutdown_grace_ms);
    if tokio::time::timeout(grace, app.tasks.wait()).await.is_err() {
        tracing::warn!(
            remaining = app.tasks.len(),
            "shutdown deadline passed with sockets still open"
        );
    }
    background.abort();
    app.flush_delivered().await;
    if let Some(c) = &app.cluster {
        c.drain(Duration::from_secs(1)).await;
    }
    drop(cluster_tasks);
    Ok(())
}

/// The listener with `TCP_NODELAY` on every accepted connection. Without it Nagle's algorithm
/// holds a small write while an earlier one is unacknowledged, and the peer delays its ACK
/// (up to 40 ms) until it has something to send: a sender's ack, written just after its own
/// copy of the message, waited for the client's next frame (measured: every ack one send
/// interval late at 30 sends/s).
pub fn no_delay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    fn set(tcp: &mut TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
        }
    }
    listener.tap_io(set as fn(&mut TcpStream))
}

/// With Redis: the link and the publisher (handing what arrives to this node) and the presence
/// refresh. An empty set on one node.
fn start_cluster(app: &AppState) -> JoinSet<()> {
    let Some(cluster) = &app.cluster else {
        return JoinSet::new();
    };
    let mut tasks = cluster.spawn(app.clone());
    tasks.spawn(presence::run_presence(app.clone()));
    tasks
}

fn spawn_background(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Big channels' wake-up rounds in a task of their own (a slow store write below must not
        // hold a channel's events back), stopped with this one (their end wakes what is left).
        let _rounds = tokio_util::task::AbortOnDropHandle::new(tokio::spawn({
            let app = app.clone();
            async move { app.hub.run_rounds().await }
        }));
        let mut flush = tokio::time::interval(Duration::from_millis(
            app.settings.realtime.delivered_flush_ms.max(10),
        ));
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = flush.tick() => app.flush_delivered().await,
                _ = sweep.tick() => app.limiters.sweep(),
            }
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Off unless asked for: why `no_delay` exists.
        let client = tokio::spawn(TcpStream::connect(addr));
        let (plain, _) = listener.accept().await.unwrap();
        assert!(!plain.nodelay().unwrap());
        drop(client.await.unwrap().unwrap());

        let mut listener = super::no_delay(listener);
        let client = tokio::spawn(TcpStream::connect(addr));
        let (tapped, _) = Listener::accept(&mut listener).await;
        assert!(tapped.nodelay().unwrap());
        drop(client.await.unwrap().unwrap());
    }
}
