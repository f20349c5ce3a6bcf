//! A run: set the plan up over REST, connect every socket, warm up, measure one window,
//! drain, and collect the report. Each phase is a function here; [`run_on`] calls them in
//! order.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fullslack_protocol::ChannelId;
use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::cli::{Cli, Common};
use crate::client::{self, Phase, SendMode, Shared, Spec};
use crate::plan::Plan;
use crate::procfs;
use crate::report::{Report, ServerFigures};
use crate::setup::{self, Rest};
use crate::stats::{self, counters};
use crate::target::{Node, Target};

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
    let result = run_on(c, &plan, &target).await;
    target.stop().await;
    let mut report = result?;
    report.notes.splice(0..0, target.notes.clone());
    Ok(report)
}

async fn run_on(c: &Common, plan: &Plan, target: &Target) -> Result<Report> {
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let nodes = &target.nodes;
    let rest = Rest::new(&nodes[0].base)?;
    let setup = set_up(c, plan, target, &rest, &run_id).await?;

    // Server memory before any socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_of(nodes);
    let mut sockets = connect(c, plan, nodes, &setup, &run_id).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_of(nodes);

    let window = measure(c, plan, nodes, &rest, &mut sockets).await;
    let k = counters();
    let hists = stats::merged();
    let closed = k.closed.load(Relaxed);
    sockets.tasks.abort_all();
    let bench_rss = procfs::rss_kib(std::process::id());

    let servers = server_figures(
        plan,
        nodes,
        sockets.connected,
        [rss_before, rss_after],
        &window,
    );
    let bench_cpu = cpu_between(window.self_cpu);
    let secs = window.length.as_secs_f64();
    let expected = k.expected_window.load(Relaxed);
    let got = k.delivered_of_window.load(Relaxed);
    Ok(Report {
        scenario: plan.scenario.into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        notes: fresh_users_note(setup.fresh_users),
        sockets: plan.sockets,
        connected: sockets.connected,
        connect_errors: sockets.connect_errors,
        connect_secs: sockets.connect_secs,
        slowest_connect_ms: sockets.slowest.as_secs_f64() * 1e3,
        users: plan.users,
        users_registered_now: setup.fresh_users,
        channels: plan.channels,
        senders: plan.senders,
        target_rate: plan.rate,
        inflight: plan.inflight,
        setup_secs: setup.secs,
        window_secs: secs,
        sent: k.sent_window.load(Relaxed),
        sent_per_sec: stats::rate(k.sent_window.load(Relaxed), window.length),
        acks: k.acks_window.load(Relaxed),
        acks_per_sec: stats::rate(k.acks_window.load(Relaxed), window.length),
        deliveries: k.delivered_window.load(Relaxed),
        deliveries_per_sec: stats::rate(k.delivered_window.load(Relaxed), window.length),
        expected_deliveries: expected,
        missing_deliveries: expected.saturating_sub(got),
        sockets_per_channel: (0..plan.channels)
            .map(|c| plan.fanout(c))
            .max()
            .unwrap_or(0),
        receipt_frames: k.receipts_window.load(Relaxed),
        receipt_frames_per_message: (k.acks_window.load(Relaxed) > 0)
            .then(|| k.receipts_window.load(Relaxed) as f64 / k.acks_window.load(Relaxed) as f64),
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
        bench_cpu_cores: bench_cpu.map(|s| s / secs),
        frames: k.frames_window.load(Relaxed),
        bench_cpu_us_per_frame: per_unit_us(bench_cpu, k.frames_window.load(Relaxed)),
        bench_rss_kib: bench_rss,
    })
}

/// A note when users were registered during the run: their Argon2id work is in the
/// server's memory baseline.
fn fresh_users_note(fresh_users: usize) -> Vec<String> {
    let mut notes = Vec::new();
    if fresh_users > 0 {
        notes.push(format!(
            "{fresh_users} users were registered/logged in during this run: the server's RSS baseline includes Argon2id work; rerun to reuse the cached users"
        ));
    }
    notes
}

/// What the setup made: the users (with their tokens), how many of them were registered or
/// logged in now, the channels, and how long it took.
struct Setup {
    users: Vec<setup::User>,
    fresh_users: usize,
    channel_ids: Vec<ChannelId>,
    secs: f64,
}

/// Users (cached across runs) and channels (fresh each run).
async fn set_up(
    c: &Common,
    plan: &Plan,
    target: &Target,
    rest: &Rest,
    run_id: &str,
) -> Result<Setup> {
    let setup_t = Instant::now();
    let base = &target.nodes[0].base;
    let users_file = c.users_file.clone().unwrap_or_else(|| {
        setup::default_users_file(!target.spawned.is_empty(), &c.data_dir, base)
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
    let channel_ids = if plan.channels > 0 {
        create_channels(c, plan, rest, run_id, &users).await?
    } else {
        Vec::new()
    };
    Ok(Setup {
        users,
        fresh_users,
        channel_ids,
        secs: setup_t.elapsed().as_secs_f64(),
    })
}

/// The plan's channels, user `u` a member of channel `u % channels`; their ids in index order.
async fn create_channels(
    c: &Common,
    plan: &Plan,
    rest: &Rest,
    run_id: &str,
    users: &[setup::User],
) -> Result<Vec<ChannelId>> {
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
        .map(|(ch, members)| async move {
            let name = format!("b{run_id}-{ch}");
            (
                ch,
                rest.create_channel(&name, members[0], &members[1..], c.setup_concurrency)
                    .await,
            )
        })
        .buffer_unordered(c.setup_concurrency.max(1))
        .collect()
        .await;
    // Each channel index answers once: in index order they are the channel ids.
    results.sort_by_key(|(ch, _)| *ch);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Each node's resident memory now.
fn rss_of(nodes: &[Node]) -> Vec<Option<u64>> {
    nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::rss_kib))
        .collect()
}

/// Each node's CPU time so far.
fn cpu_of(nodes: &[Node]) -> Vec<Option<Duration>> {
    nodes
        .iter()
        .map(|n| n.pid.and_then(procfs::cpu_time))
        .collect()
}

/// Microseconds of CPU per unit of work (`None` without a reading or without work).
fn per_unit_us(cpu_secs: Option<f64>, units: u64) -> Option<f64> {
    cpu_secs
        .filter(|_| units > 0)
        .map(|s| s * 1e6 / units as f64)
}

/// CPU seconds between two readings, when both were taken.
fn cpu_between(readings: (Option<Duration>, Option<Duration>)) -> Option<f64> {
    match readings {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    }
}

/// The connected sockets: their tasks, the phase they follow, the open-loop senders' ticks,
/// and how connecting went.
struct Sockets {
    tasks: JoinSet<()>,
    phase_tx: watch::Sender<Phase>,
    phase_rx: watch::Receiver<Phase>,
    ticks: Vec<mpsc::Sender<()>>,
    connected: usize,
    connect_errors: BTreeMap<String, u64>,
    slowest: Duration,
    connect_secs: f64,
}

/// Connects every socket of the plan (at most `connect_concurrency` at once) and waits until
/// each has resumed or failed; fails when none connected.
async fn connect(
    c: &Common,
    plan: &Plan,
    nodes: &[Node],
    setup: &Setup,
    run_id: &str,
) -> Result<Sockets> {
    let shared = Arc::new(Shared {
        run: run_id.to_string(),
        text: "x".repeat(c.text_size.max(1)),
        config: client::ws_config(c.read_buffer, c.write_buffer),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let sem = Arc::new(Semaphore::new(c.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut ticks = Vec::new();
    let fanouts: Vec<u64> = (0..plan.channels).map(|ch| plan.fanout(ch)).collect();
    let mut tasks = JoinSet::new();
    eprintln!(
        "connecting {} sockets over {} node(s)...",
        plan.sockets,
        nodes.len()
    );
    let connect_t = Instant::now();
    let senders = senders_runtime(plan);
    for i in 0..plan.sockets {
        let permit = sem.clone().acquire_owned().await?;
        let spec = spec_of_socket(i, c, plan, nodes, setup, &fanouts, &mut ticks);
        let client = client::run(
            spec,
            shared.clone(),
            phase_rx.clone(),
            permit,
            ready_tx.clone(),
        );
        match senders {
            Some(rt) if i < plan.senders => tasks.spawn_on(client, rt),
            _ => tasks.spawn(client),
        };
    }
    drop(ready_tx);
    let mut connected = 0usize;
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::default();
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
    Ok(Sockets {
        tasks,
        phase_tx,
        phase_rx,
        ticks,
        connected,
        connect_errors,
        slowest,
        connect_secs,
    })
}

/// The runtime of the sending sockets and their rate scheduler when they are a few among many
/// receivers (`fanout`): one thread of their own, so that a send's ack is read when it arrives
/// rather than behind thousands of reader tasks woken by the same message's deliveries (that
/// wait is the tool's, not the server's). `None` when (almost) every socket sends.
fn senders_runtime(plan: &Plan) -> Option<&'static tokio::runtime::Handle> {
    static SENDERS: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if plan.senders == 0 || plan.senders * 4 > plan.sockets {
        return None;
    }
    // Never dropped: the process ends with it (a runtime may not be dropped inside another).
    let rt = SENDERS.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-senders")
            .enable_all()
            .build()
            .expect("a one-thread runtime for the senders")
    });
    Some(rt.handle())
}

/// Socket `i`: its user's token, its node and source address, its channel, and how it sends
/// (an open-loop sender's tick channel goes to `ticks`).
fn spec_of_socket(
    i: usize,
    c: &Common,
    plan: &Plan,
    nodes: &[Node],
    setup: &Setup,
    fanouts: &[u64],
    ticks: &mut Vec<mpsc::Sender<()>>,
) -> Spec {
    let user = &setup.users[i % plan.users];
    let channel = plan
        .channel_of_socket(i)
        .map(|ch| (setup.channel_ids[ch].clone(), fanouts[ch]));
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
    Spec {
        idx: i,
        node,
        server: nodes[node].addr,
        source: std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % c.source_ips.max(1) as usize) as u8),
        token: user.token.clone(),
        channel,
        mode,
    }
}

/// The measurement window, as the machine saw it.
struct Window {
    length: Duration,
    /// Each node's CPU time at the window's start and end.
    server_cpu: (Vec<Option<Duration>>, Vec<Option<Duration>>),
    /// This process's CPU time at the window's start and end.
    self_cpu: (Option<Duration>, Option<Duration>),
    rss_end: Vec<Option<u64>>,
    metrics_end: Vec<BTreeMap<String, f64>>,
}

/// Send (warm-up, then the window), then drain until every delivery owed for the window's
/// sends arrived or the drain time is up.
async fn measure(
    c: &Common,
    plan: &Plan,
    nodes: &[Node],
    rest: &Rest,
    sockets: &mut Sockets,
) -> Window {
    let _ = sockets.phase_tx.send(Phase::Sending);
    let ticks = std::mem::take(&mut sockets.ticks);
    let scheduler = (!ticks.is_empty() && plan.rate > 0.0).then(|| {
        let s = scheduler(ticks, plan.rate, sockets.phase_rx.clone());
        match senders_runtime(plan) {
            Some(rt) => rt.spawn(s),
            None => tokio::spawn(s),
        }
    });
    if plan.senders > 0 {
        tokio::time::sleep(c.warmup).await;
    }
    let cpu0 = cpu_of(nodes);
    let self0 = procfs::cpu_time(std::process::id());
    let w0 = Instant::now();
    stats::open_window();
    tokio::time::sleep(c.duration).await;
    stats::close_window();
    let length = w0.elapsed();
    let cpu1 = cpu_of(nodes);
    let self1 = procfs::cpu_time(std::process::id());
    let rss_end = rss_of(nodes);
    let metrics_end = scrape_metrics(&rest.http, nodes).await;
    let _ = sockets.phase_tx.send(Phase::Draining);
    let k = counters();
    let drain_t = Instant::now();
    while drain_t.elapsed() < c.drain
        && (k.delivered_of_window.load(Relaxed) < k.expected_window.load(Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = sockets.phase_tx.send(Phase::Done);
    if let Some(s) = scheduler {
        s.abort();
    }
    Window {
        length,
        server_cpu: (cpu0, cpu1),
        self_cpu: (self0, self1),
        rss_end,
        metrics_end,
    }
}

/// Each node's figures: memory before and after connecting and at the end, per connection,
/// CPU over the window, and its metrics.
fn server_figures(
    plan: &Plan,
    nodes: &[Node],
    connected: usize,
    [rss_before, rss_after]: [Vec<Option<u64>>; 2],
    window: &Window,
) -> Vec<ServerFigures> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let cpu = cpu_between((window.server_cpu.0[i], window.server_cpu.1[i]));
            let conns = (0..plan.sockets)
                .filter(|&s| plan.node_of_socket(s, nodes.len()) == i)
                .count()
                .min(connected);
            ServerFigures {
                url: n.base.clone(),
                pid: n.pid,
                rss_before_connect_kib: rss_before[i],
                rss_after_connect_kib: rss_after[i],
                rss_end_kib: window.rss_end[i],
                rss_per_conn_kib: stats::per_conn_kib(rss_before[i], rss_after[i], conns),
                cpu_secs: cpu,
                cpu_cores: cpu.map(|s| s / window.length.as_secs_f64()),
                metrics: window.metrics_end[i].clone(),
            }
        })
        .collect()
}

/// Selected counters from each node's Prometheus `/metrics` (empty if it does not answer).
async fn scrape_metrics(http: &reqwest::Client, nodes: &[Node]) -> Vec<BTreeMap<String, f64>> {
    let mut out = Vec::new();
    for n in nodes {
        let mut m = BTreeMap::new();
        // Bounded: a server that is seconds behind (the Node relay answers HTTP on the same
        // event loop as its backlog) must not stretch the drain that follows.
        let req = http
            .get(format!("{}/metrics", n.base))
            .timeout(Duration::from_secs(2));
        if let Ok(r) = req.send().await {
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
