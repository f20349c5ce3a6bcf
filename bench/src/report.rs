//! The report: one struct, printed as a human table or as JSON (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::stats::Percentiles;

#[derive(Debug, Serialize)]
pub struct ServerFigures {
    pub url: String,
    pub pid: Option<u32>,
    pub rss_before_connect_kib: Option<u64>,
    pub rss_after_connect_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// (after connect − before connect) / sockets on this node.
    pub rss_per_conn_kib: Option<f64>,
    /// CPU time used during the measurement window.
    pub cpu_secs: Option<f64>,
    /// cpu_secs / window: 1.0 is one core fully busy.
    pub cpu_cores: Option<f64>,
    /// Counters from the server's /metrics at the end of the window (whole server lifetime).
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub command: String,
    pub machine: String,
    pub notes: Vec<String>,
    pub sockets: usize,
    pub connected: usize,
    pub connect_errors: BTreeMap<String, u64>,
    pub connect_secs: f64,
    pub slowest_connect_ms: f64,
    pub users: usize,
    pub users_registered_now: usize,
    pub channels: usize,
    pub senders: usize,
    /// Aggregate open-loop rate asked for (0: closed loop).
    pub target_rate: f64,
    /// Closed loop: unacknowledged sends per sender.
    pub inflight: usize,
    pub setup_secs: f64,
    pub window_secs: f64,
    pub sent: u64,
    pub sent_per_sec: f64,
    pub acks: u64,
    pub acks_per_sec: f64,
    /// Message events received by all sockets during the window.
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Deliveries owed for the window's sends, and how many had not arrived after the drain.
    pub expected_deliveries: u64,
    pub missing_deliveries: u64,
    /// Connected sockets per channel (the largest channel's): a message's fan-out.
    pub sockets_per_channel: u64,
    /// `receipt`/`receipts` events received by all sockets during the window, and per message
    /// acknowledged in it (issue 15: at most 2 × the channel's members in groups of 100).
    pub receipt_frames: u64,
    pub receipt_frames_per_message: Option<f64>,
    pub skipped_sends: u64,
    pub latency_deliver: Percentiles,
    /// With several nodes: deliveries to sockets on another node than the sender's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_deliver_cross_node: Option<Percentiles>,
    pub latency_ack: Percentiles,
    pub error_frames: u64,
    pub errors: BTreeMap<String, u64>,
    pub closed_unexpectedly: u64,
    pub servers: Vec<ServerFigures>,
    pub bench_cpu_secs: Option<f64>,
    pub bench_cpu_cores: Option<f64>,
    /// WebSocket frames the tool read and wrote in the window (sends, acks, events, anything).
    pub frames: u64,
    /// The tool's own CPU (its /proc/self) per frame: whether it measures the server or itself.
    pub bench_cpu_us_per_frame: Option<f64>,
    pub bench_rss_kib: Option<u64>,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "n/a".into())
}

fn mb(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn lat(p: &Percentiles) -> String {
    if p.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})",
        p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms, p.count
    )
}

impl Report {
    pub fn table(&self) -> String {
        let mut o = String::new();
        self.write_setup(&mut o);
        self.write_traffic(&mut o);
        self.write_latency_and_errors(&mut o);
        self.write_resources(&mut o);
        o
    }

    /// What ran where, the notes, the setup and the connects.
    fn write_setup(&self, w: &mut String) {
        let _ = writeln!(w, "bench {}  —  {}", self.scenario, self.command);
        let _ = writeln!(w, "machine           {}", self.machine);
        for n in &self.notes {
            let _ = writeln!(w, "note              {n}");
        }
        let _ = writeln!(
            w,
            "setup             {} users ({} registered/logged in now), {} channel(s), {:.1} s",
            self.users, self.users_registered_now, self.channels, self.setup_secs
        );
        let _ = writeln!(
            w,
            "sockets           {}/{} connected+resumed in {:.1} s (slowest {:.0} ms)",
            self.connected, self.sockets, self.connect_secs, self.slowest_connect_ms
        );
        for (e, n) in &self.connect_errors {
            let _ = writeln!(w, "  connect error   {n} × {e}");
        }
    }

    /// How the senders sent, and what was sent, acknowledged and delivered.
    fn write_traffic(&self, w: &mut String) {
        let mode = if self.inflight > 0 {
            format!("closed loop, {} in flight per sender", self.inflight)
        } else if self.senders > 0 {
            format!("open loop, target {:.0} msgs/s", self.target_rate)
        } else {
            "no sending".into()
        };
        let _ = writeln!(
            w,
            "senders           {} ({mode}), window {:.1} s",
            self.senders, self.window_secs
        );
        let _ = writeln!(
            w,
            "sent              {:>12}  {:>12.0} /s",
            self.sent, self.sent_per_sec
        );
        let _ = writeln!(
            w,
            "acks (persisted)  {:>12}  {:>12.0} /s",
            self.acks, self.acks_per_sec
        );
        let _ = writeln!(
            w,
            "deliveries        {:>12}  {:>12.0} /s",
            self.deliveries, self.deliveries_per_sec
        );
        let _ = writeln!(
            w,
            "missing           {:>12}  of {} owed for the window's sends (after drain)",
            self.missing_deliveries, self.expected_deliveries
        );
        if self.receipt_frames > 0 {
            let _ = writeln!(
                w,
                "receipt frames    {:>12}  {} per message acknowledged ({} sockets per channel)",
                self.receipt_frames,
                opt(self.receipt_frames_per_message.map(|v| format!("{v:.1}"))),
                self.sockets_per_channel
            );
        }
        if self.skipped_sends > 0 {
            let _ = writeln!(
                w,
                "skipped sends     {:>12}  (load tool could not keep up)",
                self.skipped_sends
            );
        }
    }

    /// Latency percentiles and errors.
    fn write_latency_and_errors(&self, w: &mut String) {
        let _ = writeln!(w, "send→deliver ms   {}", lat(&self.latency_deliver));
        if let Some(x) = &self.latency_deliver_cross_node {
            let _ = writeln!(w, "  cross-node ms   {}", lat(x));
        }
        let _ = writeln!(w, "send→ack ms       {}", lat(&self.latency_ack));
        let _ = writeln!(
            w,
            "errors            {} error frames {:?}, {} sockets closed unexpectedly",
            self.error_frames, self.errors, self.closed_unexpectedly
        );
    }

    /// Memory and CPU of each server and of the load tool.
    fn write_resources(&self, w: &mut String) {
        for s in &self.servers {
            let _ = writeln!(
                w,
                "server {} pid {}: RSS {} before connect, {} after, {} at end → {} KB per connection",
                s.url,
                opt(s.pid),
                mb(s.rss_before_connect_kib),
                mb(s.rss_after_connect_kib),
                mb(s.rss_end_kib),
                s.rss_per_conn_kib.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into())
            );
            let _ = writeln!(
                w,
                "  server CPU      {} s in window = {} cores",
                s.cpu_secs
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
                s.cpu_cores
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "n/a".into())
            );
        }
        let _ = writeln!(
            w,
            "load tool CPU     {} s in window = {} cores, {} µs per frame ({} frames read+written), RSS {}",
            self.bench_cpu_secs
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            self.bench_cpu_cores
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            self.bench_cpu_us_per_frame
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            self.frames,
            mb(self.bench_rss_kib)
        );
    }
}
