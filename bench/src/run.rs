//! A run: turn a scenario into a plan (sockets, users, channels, senders, rate), set it up over
//! REST, connect every socket, warm up, measure one window, drain, and collect the report.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fullslack_protocol::ChannelId;
use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::{Cli, Scenario};
use crate::client::{self, Phase, SendMode, Shared, Spec};
use crate::procfs;
use crate::report::{Report, ServerFigures};
use crate::setup::{self, Rest};
use crate::stats::{self, counters};
use crate::target::Target;

/// What a scenario asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: &'static str,
    pub sockets: usize,
    /// Socket `i` belongs to user `i % users`.
    pub users: usize,
    /// User `u` is a member of channel `u % channels` (0: no channels).
    pub channels: usize,
    /// Sockets `0..senders` send.
    pub senders: usize,
    /// Aggregate messages/s (open loop); 0 with `inflight > 0` is the closed loop.
    pub rate: f64,
    pub inflight: usize,
}

impl Plan {
    pub fn from(s: &Scenario) -> Result<Plan> {
        let p = match *s {
            Scenario::Idle { clients, users } => Plan {
                scenario: "idle",
                sockets: clients,
                users: users.unwrap_or(clients).clamp(1, clients.max(1)),
                channels: 0,
                senders: 0,
                rate: 0.0,
                inflight: 0,
            },
            Scenario::Fanout {
                members,
                senders,
                rate,
                users,
            } => Plan {
                scenario: "fanout",
                sockets: members,
                users: users.unwrap_or(members).clamp(1, members.max(1)),
                channels: 1,
                senders: senders.min(members),
                rate,
                inflight: 0,
            },
            Scenario::Latency {
                clients,
                channels,
                rate,
            } => Plan {
                scenario: "latency",
                sockets: clients,
                users: clients,
                channels: channels.min(clients),
                senders: clients,
                rate,
                inflight: 0,
            },
            Scenario::Ingest {
                senders,
                channels,
                inflight,
                rate,
            } => Plan {
                scenario: "ingest",
                sockets: senders,
                users: senders,
                channels: channels.unwrap_or(senders).clamp(1, senders.max(1)),
                senders,
                rate,
                inflight: if rate > 0.0 { 0 } else { inflight.max(1) },
            },
        };
        if p.sockets == 0 {
            bail!("need at least one client");
        }
        if p.senders > 0 && p.rate <= 0.0 && p.inflight == 0 {
            bail!("--rate must be > 0");
        }
        Ok(p)
    }

    pub fn channel_of_socket(&self, i: usize) -> Option<usize> {
        (self.channels > 0).then(|| (i % self.users) % self.channels)
    }

    /// Node socket `i` connects to. Members of one channel are spread over the nodes (the k-th
    /// member of a channel goes to node k mod n), so with several nodes most deliveries cross
    /// from the sender's node to another one, which is what a cluster benchmark is about.
    pub fn node_of_socket(&self, i: usize, nodes: usize) -> usize {
        let nodes = nodes.max(1);
        match (i % self.users).checked_div(self.channels) {
            Some(member) => (member + i / self.users) % nodes,
            None => i % nodes,
        }
    }

    /// Connected sockets receiving each message of channel `c`.
    pub fn fanout(&self, c: usize) -> u64 {
        (0..self.sockets)
            .filter(|&i| self.channel_of_socket(i) == Some(c))
            .count() as u64
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB RAM, server and load tool on the same cores")
}

pub async fn run(cli: &Cli, nofile: u64) -> Result<Report> {
    let c = &cli.common;
    let plan = Plan::from(&cli.scenario)?;
    if plan.sockets as u64 + 64 > nofile {
        eprintln!(
            "warning: {} sockets but the open-files limit is {nofile}: some connects will fail",
            plan.sockets
        );
    }
    let mut target = Target::resolve(c).await?;
    let result = run_on(cli, &plan, &target).await;
    target.stop().await;
    let mut report = result?;
    report.notes.splice(0..0, target.notes.clone());
    Ok(report)
}

async fn run_on(cli: &Cli, plan: &Plan, target: &Target) -> Result<Report> {
    let c = &cli.common;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let nodes = target.nodes.clone();
    let rest = Rest::new(&nodes[0].base)?;

    // Users (cached across runs) and channels (fresh each run).
    let setup_t = Instant::now();
    let users_file = c.users_file.clone().unwrap_or_else(|| {
        setup::default_users_file(!target.spawned.is_empty(), &c.data_dir, &nodes[0].base)
    });
    let need_valid = c.warmup + c.duration + c.drain + Duration::from_secs(900);
    let (users, fresh_users) = rest
        .ensure_users(
            &c.user_prefix,
            plan.users,
            &users_file,
            c.setup_concurrency,
            need_valid,
        )
        .await?;
    let mut channel_ids: Vec<ChannelId> = Vec::with_capacity(plan.channels);
    if plan.channels > 0 {
        eprintln!("setup: creating {} channel(s)...", plan.channels);
        let specs: Vec<(usize, Vec<&setup::User>)> = (0..plan.channels)
            .map(|ch| {
                (
                    ch,
                    users
                        .iter()
                        .enumerate()
                        .filter(|(u, _)| u % plan.channels == ch)
                        .map(|(_, u)| u)
                        .collect(),
                )
            })
            .collect();
        let mut results: Vec<(usize, Result<ChannelId>)> = stream::iter(specs)
            .map(|(ch, members)| {
                let rest = &rest;
                let run_id = &run_id;
                async move {
                    let name = format!("b{run_id}-{ch}");
                    (
                        ch,
                        rest.create_channel(&name, members[0], &members[1..], c.setup_concurrency)
                            .await,
                    )
                }
            })
            .buffer_unordered(c.setup_concurrency.max(1))
            .collect()
            .await;
        // Each channel index answers once: in index order they are the channel ids.
        results.sort_by_key(|(ch, _)| *ch);
        channel_ids = results.into_iter().map(|(_, r)| r).collect::<Result<_>>()?;
    }
    let setup_secs = setup_t.elapsed().as_secs_f64();

    // Server memory before any socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before: Vec<Option<u64>> = nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::rss_kib))
        .collect();

    // Connect.
    let shared = Arc::new(Shared {
        run: run_id.clone(),
        text: "x".repeat(c.text_size.max(1)),
        config: client::ws_config(c.read_buffer, c.write_buffer),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let sem = Arc::new(Semaphore::new(c.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut ticks = Vec::new();
    let fanouts: Vec<u64> = (0..plan.channels).map(|ch| plan.fanout(ch)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    eprintln!(
        "connecting {} sockets over {} node(s)...",
        plan.sockets,
        nodes.len()
    );
    let connect_t = Instant::now();
    for i in 0..plan.sockets {
        let permit = sem.clone().acquire_owned().await?;
        let user = &users[i % plan.users];
        let channel = plan
            .channel_of_socket(i)
            .map(|ch| (channel_ids[ch].clone(), fanouts[ch]));
        let mode = if i < plan.senders && channel.is_some() {
            if plan.inflight > 0 {
                SendMode::Closed(plan.inflight)
            } else {
                let (tx, rx) = mpsc::channel(64);
                ticks.push(tx);
                SendMode::OpenLoop(rx)
            }
        } else {
            SendMode::None
        };
        let node = plan.node_of_socket(i, nodes.len());
        let spec = Spec {
            idx: i,
            node,
            server: nodes[node].addr,
            source: std::net::Ipv4Addr::new(
                127,
                0,
                0,
                2 + (i % c.source_ips.max(1) as usize) as u8,
            ),
            token: user.token.clone(),
            channel,
            mode,
        };
        tasks.spawn(client::run(
            spec,
            shared.clone(),
            phase_rx.clone(),
            permit,
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    let mut connected = 0usize;
    let mut connect_errors: std::collections::BTreeMap<String, u64> = Default::default();
    let mut slowest = Duration::ZERO;
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(d) => {
                connected += 1;
                slowest = slowest.max(d);
                if connected.is_multiple_of(2000) {
                    eprintln!("  {connected} connected");
                }
            }
            Err(e) => *connect_errors.entry(e).or_default() += 1,
        }
    }
    let connect_secs = connect_t.elapsed().as_secs_f64();
    eprintln!(
        "{connected}/{} sockets connected and resumed in {connect_secs:.1} s",
        plan.sockets
    );
    if connected == 0 {
        bail!("no socket connected: {connect_errors:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after: Vec<Option<u64>> = nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::rss_kib))
        .collect();

    // Send (warm-up, window), then drain.
    let _ = phase_tx.send(Phase::Sending);
    let scheduler = (!ticks.is_empty() && plan.rate > 0.0)
        .then(|| tokio::spawn(scheduler(ticks, plan.rate, phase_rx.clone())));
    if plan.senders > 0 {
        tokio::time::sleep(c.warmup).await;
    }
    let cpu0: Vec<Option<Duration>> = nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::cpu_time))
        .collect();
    let self0 = procfs::cpu_time(std::process::id());
    let w0 = Instant::now();
    stats::open_window();
    tokio::time::sleep(c.duration).await;
    stats::close_window();
    let window = w0.elapsed();
    let cpu1: Vec<Option<Duration>> = nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::cpu_time))
        .collect();
    let self1 = procfs::cpu_time(std::process::id());
    let rss_end: Vec<Option<u64>> = nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::rss_kib))
        .collect();
    let metrics_end = scrape_metrics(&rest.http, &nodes).await;
    let _ = phase_tx.send(Phase::Draining);
    let k = counters();
    let drain_t = Instant::now();
    while drain_t.elapsed() < c.drain
        && (k.delivered_of_window.load(Relaxed) < k.expected_window.load(Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = phase_tx.send(Phase::Done);
    if let Some(s) = scheduler {
        s.abort();
    }
    let hists = stats::merged();
    let closed = k.closed.load(Relaxed);
    tasks.abort_all();
    let bench_rss = procfs::rss_kib(std::process::id());

    let servers = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let cpu = match (cpu0[i], cpu1[i]) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
                _ => None,
            };
            let conns = (0..plan.sockets)
                .filter(|&s| plan.node_of_socket(s, nodes.len()) == i)
                .count()
                .min(connected);
            ServerFigures {
                url: n.base.clone(),
                pid: n.pid,
                rss_before_connect_kib: rss_before[i],
                rss_after_connect_kib: rss_after[i],
                rss_end_kib: rss_end[i],
                rss_per_conn_kib: stats::per_conn_kib(rss_before[i], rss_after[i], conns),
                cpu_secs: cpu,
                cpu_cores: cpu.map(|s| s / window.as_secs_f64()),
                metrics: metrics_end[i].clone(),
            }
        })
        .collect();
    let bench_cpu = match (self0, self1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let expected = k.expected_window.load(Relaxed);
    let got = k.delivered_of_window.load(Relaxed);
    let mut notes = Vec::new();
    if fresh_users > 0 {
        notes.push(format!(
            "{fresh_users} users were registered/logged in during this run: the server's RSS baseline includes Argon2id work; rerun to reuse the cached users"
        ));
    }
    Ok(Report {
        scenario: plan.scenario.into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        notes,
        sockets: plan.sockets,
        connected,
        connect_errors,
        connect_secs,
        slowest_connect_ms: slowest.as_secs_f64() * 1e3,
        users: plan.users,
        users_registered_now: fresh_users,
        channels: plan.channels,
        senders: plan.senders,
        target_rate: plan.rate,
        inflight: plan.inflight,
        setup_secs,
        window_secs: window.as_secs_f64(),
        sent: k.sent_window.load(Relaxed),
        sent_per_sec: stats::rate(k.sent_window.load(Relaxed), window),
        acks: k.acks_window.load(Relaxed),
        acks_per_sec: stats::rate(k.acks_window.load(Relaxed), window),
        deliveries: k.delivered_window.load(Relaxed),
        deliveries_per_sec: stats::rate(k.delivered_window.load(Relaxed), window),
        expected_deliveries: expected,
        missing_deliveries: expected.saturating_sub(got),
        skipped_sends: k.skipped.load(Relaxed),
        latency_deliver: stats::percentiles(&hists.deliver),
        latency_deliver_cross_node: (nodes.len() > 1)
            .then(|| stats::percentiles(&hists.deliver_cross_node)),
        latency_ack: stats::percentiles(&hists.ack),
        error_frames: k.error_frames.load(Relaxed),
        errors: stats::error_codes(),
        closed_unexpectedly: closed,
        servers,
        bench_cpu_secs: bench_cpu,
        bench_cpu_cores: bench_cpu.map(|s| s / window.as_secs_f64()),
        bench_rss_kib: bench_rss,
    })
}

/// Selected counters from each node's Prometheus `/metrics` (empty if it does not answer).
async fn scrape_metrics(
    http: &reqwest::Client,
    nodes: &[crate::target::Node],
) -> Vec<std::collections::BTreeMap<String, f64>> {
    let mut out = Vec::new();
    for n in nodes {
        let mut m = std::collections::BTreeMap::new();
        if let Ok(r) = http.get(format!("{}/metrics", n.base)).send().await {
            if let Ok(text) = r.text().await {
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    let mut it = line.rsplitn(2, ' ');
                    let (Some(v), Some(k)) = (it.next(), it.next()) else {
                        continue;
                    };
                    let keep = [
                        "ws_connections",
                        "messages_sent",
                        "events_delivered",
                        "lagged_connections",
                        "errors",
                    ];
                    if keep
                        .iter()
                        .any(|p| k.trim_start_matches("fullslack_").starts_with(p))
                        && !k.contains("_bucket")
                    {
                        if let Ok(v) = v.parse() {
                            m.insert(k.to_string(), v);
                        }
                    }
                }
            }
        }
        out.push(m);
    }
    out
}

/// Open loop: every millisecond, hand out the sends that are due, round-robin over senders.
async fn scheduler(ticks: Vec<mpsc::Sender<()>>, rate: f64, mut phase: watch::Receiver<Phase>) {
    let start = Instant::now();
    let mut issued: u64 = 0;
    let mut next = 0usize;
    let mut iv = tokio::time::interval(Duration::from_millis(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = iv.tick() => {}
            _ = phase.changed() => {}
        }
        if *phase.borrow() != Phase::Sending {
            return;
        }
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        while issued < due {
            if ticks[next].try_send(()).is_err() {
                counters().skipped.fetch_add(1, Relaxed);
            }
            issued += 1;
            next = (next + 1) % ticks.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = Plan::from(&Scenario::Latency {
            clients: 200,
            channels: 100,
            rate: 10000.0,
        })
        .unwrap();
        assert_eq!(
            (p.sockets, p.users, p.channels, p.senders),
            (200, 200, 100, 200)
        );
        assert_eq!(p.fanout(0), 2);
        assert_eq!(p.channel_of_socket(101), Some(1));
        // Two nodes: the two members of every channel sit on different nodes.
        for ch in 0..100 {
            assert_ne!(p.node_of_socket(ch, 2), p.node_of_socket(ch + 100, 2));
        }
        assert_eq!(p.node_of_socket(7, 1), 0);
        let f = Plan::from(&Scenario::Fanout {
            members: 10,
            senders: 1,
            rate: 5.0,
            users: None,
        })
        .unwrap();
        assert_eq!(f.fanout(0), 10);
        // One channel: sockets alternate between nodes.
        let on_node1 = (0..10).filter(|&i| f.node_of_socket(i, 2) == 1).count();
        assert_eq!(on_node1, 5);
        let i = Plan::from(&Scenario::Ingest {
            senders: 4,
            channels: None,
            inflight: 8,
            rate: 0.0,
        })
        .unwrap();
        assert_eq!((i.channels, i.inflight, i.fanout(3)), (4, 8, 1));
        let idle = Plan::from(&Scenario::Idle {
            clients: 100,
            users: Some(10),
        })
        .unwrap();
        assert_eq!((idle.users, idle.channel_of_socket(5)), (10, None));
        assert!(Plan::from(&Scenario::Fanout {
            members: 10,
            senders: 1,
            rate: 0.0,
            users: None,
        })
        .is_err());
    }
}
