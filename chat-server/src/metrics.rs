//! Prometheus metrics (`GET /metrics`), via the official `prometheus-client` crate.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub messages_sent: Counter,
    pub events_delivered: Counter<u64, AtomicU64>,
    pub lagged: Counter,
    /// Publishes handed to the wake-up rounds instead of waking their sockets at once.
    pub fanout_held: Counter,
    pub errors: Family<CodeLabel, Counter>,
    /// From a send frame's arrival to its durable ack.
    pub send_seconds: Histogram,
    pub store_ready: Gauge,
    /// 1 while the link to Redis is up (always 0 without `redis_url`).
    pub redis_up: Gauge,
    pub redis_published: Counter,
    pub redis_received: Counter,
    /// Bus messages not published (Redis down or slow); other nodes heal from the store.
    pub redis_dropped: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fullslack");
        let connections = Gauge::default();
        let messages_sent = Counter::default();
        let events_delivered = Counter::default();
        let lagged = Counter::default();
        let fanout_held = Counter::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let send_seconds = Histogram::new([
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
        ]);
        let store_ready = Gauge::default();
        let redis_up = Gauge::default();
        let redis_published = Counter::default();
        let redis_received = Counter::default();
        let redis_dropped = Counter::default();
        registry.register(
            "ws_connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "messages_sent",
            "Messages stored and acknowledged",
            messages_sent.clone(),
        );
        registry.register(
            "events_delivered",
            "Channel events written to sockets",
            events_delivered.clone(),
        );
        registry.register(
            "lagged_connections",
            "Times a connection's queue was full and it was refilled from the store",
            lagged.clone(),
        );
        registry.register(
            "fanout_held",
            "Channel events and typing frames that waited for a wake-up round (a big channel, or a mid-sized one while the node was busy) instead of waking their sockets at once",
            fanout_held.clone(),
        );
        registry.register(
            "errors",
            "Errors answered to clients, by code",
            errors.clone(),
        );
        registry.register(
            "send_duration_seconds",
            "Send frame to durable ack",
            send_seconds.clone(),
        );
        registry.register(
            "store_ready",
            "1 when the store answered the last readiness probe",
            store_ready.clone(),
        );
        registry.register(
            "redis_up",
            "1 while this node's link to Redis is up",
            redis_up.clone(),
        );
        registry.register(
            "redis_events_published",
            "Messages this node published on the Redis bus",
            redis_published.clone(),
        );
        registry.register(
            "redis_events_received",
            "Messages from other nodes received on the Redis bus",
            redis_received.clone(),
        );
        registry.register(
            "redis_events_dropped",
            "Bus messages not published because Redis was unreachable or slow (healed from the store)",
            redis_dropped.clone(),
        );
        Metrics {
            registry,
            connections,
            messages_sent,
            events_delivered,
            lagged,
            fanout_held,
            errors,
            send_seconds,
            store_ready,
            redis_up,
            redis_published,
            redis_received,
            redis_dropped,
        }
    }

    /// For metrics that live elsewhere (the store driver's own) to register themselves.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn error(&self, code: &str) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
