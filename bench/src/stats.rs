//! Shared measurement state: the clock, counters, the measurement window, latency histograms
//! (one per worker thread, merged at the end), and the rate/percentile math.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on the process-wide monotonic clock (all clients share it, so a timestamp taken
/// by a sender can be subtracted at any receiver).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Default)]
pub struct Counters {
    /// Send frames written (whole run).
    pub sent: AtomicU64,
    /// Send frames written inside the window.
    pub sent_window: AtomicU64,
    /// Deliveries owed for the window's sends (sum of their channels' connected sockets), by
    /// the send's timestamp, as [`Counters::delivered_of_window`] is.
    pub expected_window: AtomicU64,
    /// Message events received while the window was open (throughput).
    pub delivered_window: AtomicU64,
    /// Message events received (any time) for messages sent inside the window.
    pub delivered_of_window: AtomicU64,
    pub delivered_total: AtomicU64,
    /// Acks received while the window was open.
    pub acks_window: AtomicU64,
    pub acks_total: AtomicU64,
    /// Open loop: ticks dropped because a sender's queue was full (the client could not keep up).
    pub skipped: AtomicU64,
    /// Error frames received.
    pub error_frames: AtomicU64,
    /// Sockets closed or failed after they were set up.
    pub closed: AtomicU64,
    /// WebSocket frames the tool read or wrote while the window was open (any type): the unit
    /// of the tool's own CPU cost.
    pub frames_window: AtomicU64,
    /// `receipt`/`receipts` events received while the window was open (issue 15's receipt
    /// budget is counted per message: at most 2 × the channel's members).
    pub receipts_window: AtomicU64,
}

pub static COUNTERS: OnceLock<Counters> = OnceLock::new();
pub fn counters() -> &'static Counters {
    COUNTERS.get_or_init(Counters::default)
}

static MEASURING: AtomicBool = AtomicBool::new(false);
static WINDOW_START: AtomicU64 = AtomicU64::new(u64::MAX);
static WINDOW_END: AtomicU64 = AtomicU64::new(u64::MAX);

pub fn measuring() -> bool {
    MEASURING.load(Relaxed)
}

/// Was a message stamped `ts` sent inside the window?
pub fn in_window(ts: u64) -> bool {
    ts >= WINDOW_START.load(Relaxed) && ts < WINDOW_END.load(Relaxed)
}

pub fn open_window() {
    reset_histograms();
    WINDOW_START.store(now_ns(), Relaxed);
    MEASURING.store(true, Relaxed);
}

pub fn close_window() {
    MEASURING.store(false, Relaxed);
    WINDOW_END.store(now_ns(), Relaxed);
}

static ERROR_CODES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

pub fn count_error(code: &str) {
    counters().error_frames.fetch_add(1, Relaxed);
    *ERROR_CODES
        .lock()
        .unwrap()
        .entry(code.to_string())
        .or_default() += 1;
}

pub fn error_codes() -> BTreeMap<String, u64> {
    ERROR_CODES.lock().unwrap().clone()
}

/// Latencies in nanoseconds, 1 ns … 100 s, 3 significant figures.
pub struct Hists {
    pub deliver: Histogram<u64>,
    /// Deliveries to a socket on another node than the sender's (a subset of `deliver`).
    pub deliver_cross_node: Histogram<u64>,
    pub ack: Histogram<u64>,
}

impl Hists {
    pub fn new() -> Hists {
        let h = || Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
        Hists {
            deliver: h(),
            deliver_cross_node: h(),
            ack: h(),
        }
    }
}

static REGISTRY: Mutex<Vec<Arc<Mutex<Hists>>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Mutex<Hists>> = {
        let h = Arc::new(Mutex::new(Hists::new()));
        REGISTRY.lock().unwrap().push(h.clone());
        h
    };
}

pub fn record_deliver(ns: u64, cross_node: bool) {
    LOCAL.with(|h| {
        let mut h = h.lock().unwrap();
        h.deliver.saturating_record(ns.max(1));
        if cross_node {
            h.deliver_cross_node.saturating_record(ns.max(1));
        }
    });
}

pub fn record_ack(ns: u64) {
    LOCAL.with(|h| h.lock().unwrap().ack.saturating_record(ns.max(1)));
}

fn reset_histograms() {
    for h in REGISTRY.lock().unwrap().iter() {
        let mut h = h.lock().unwrap();
        h.deliver.reset();
        h.deliver_cross_node.reset();
        h.ack.reset();
    }
}

/// All threads' histograms merged.
pub fn merged() -> Hists {
    let mut all = Hists::new();
    for h in REGISTRY.lock().unwrap().iter() {
        let h = h.lock().unwrap();
        all.deliver.add(&h.deliver).expect("same bounds");
        all.deliver_cross_node
            .add(&h.deliver_cross_node)
            .expect("same bounds");
        all.ack.add(&h.ack).expect("same bounds");
    }
    all
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1e6,
    }
}

/// Events per second over `d` (0 for an empty window).
pub fn rate(count: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        count as f64 / s
    } else {
        0.0
    }
}

/// Growth of resident memory per connection in KiB (`None` without both readings or sockets).
pub fn per_conn_kib(before_kib: Option<u64>, after_kib: Option<u64>, conns: usize) -> Option<f64> {
    match (before_kib, after_kib) {
        (Some(b), Some(a)) if conns > 0 => Some((a as f64 - b as f64) / conns as f64),
        _ => None,
    }
}

/// A JSON string field's value (`"key":"value"`, no escapes in the value) found by scanning:
/// the hot path parses thousands of frames per second per core and needs only two fields.
pub fn str_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = frame[from..].find(key) {
        let start = from + pos;
        from = start + key.len();
        let quoted = start > 0
            && frame.as_bytes()[start - 1] == b'"'
            && frame.as_bytes().get(from) == Some(&b'"');
        if !quoted {
            continue;
        }
        let rest = frame[from + 1..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        return rest.find('"').map(|end| &rest[..end]);
    }
    None
}

/// `client_id` of a bench message: `RUN-SENDER-N-NODE-SENTNS` (NODE: the sender's node).
pub fn make_client_id(run: &str, sender: usize, node: usize, n: u64, ts: u64) -> String {
    format!("{run}-{sender}-{n}-{node}-{ts}")
}

/// The sender's node and send timestamp of a client_id made by this run, `None` for anyone
/// else's.
pub fn parse_client_id(run: &str, cid: &str) -> Option<(usize, u64)> {
    let rest = cid.strip_prefix(run)?.strip_prefix('-')?;
    let mut it = rest.rsplit('-');
    let ts = it.next()?.parse().ok()?;
    let node = it.next()?.parse().ok()?;
    Some((node, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_fields() {
        let f = r#"{"type":"event","channel":"c1","seq":3,"kind":"message","data":{"id":"m","client_id":"r1-0-7-12345","text":"the \"type\" client_id"}}"#;
        assert_eq!(str_field(f, "type"), Some("event"));
        assert_eq!(str_field(f, "client_id"), Some("r1-0-7-12345"));
        assert_eq!(str_field(f, "missing"), None);
        let spaced = r#"{ "type" : "ack", "client_id" : "x" }"#;
        assert_eq!(str_field(spaced, "type"), Some("ack"));
        assert_eq!(str_field(spaced, "client_id"), Some("x"));
    }

    #[test]
    fn client_ids_round_trip() {
        let cid = make_client_id("18f2a", 12, 1, 99, 123_456_789);
        assert!(cid.len() <= 64);
        assert_eq!(parse_client_id("18f2a", &cid), Some((1, 123_456_789)));
        assert_eq!(parse_client_id("other", &cid), None);
        assert_eq!(parse_client_id("18f2a", "c-123"), None);
    }

    #[test]
    fn percentile_and_rate_math() {
        let mut h = Hists::new().deliver;
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).unwrap(); // 1..=1000 ms
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.p999_ms - 999.0).abs() < 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
        assert_eq!(percentiles(&Hists::new().ack), Percentiles::default());
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        assert_eq!(per_conn_kib(Some(1000), Some(11_000), 1000), Some(10.0));
        assert_eq!(per_conn_kib(None, Some(1), 1), None);
    }
}
