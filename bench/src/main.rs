//! `bench`: load tool for `fullslack-chat` (see docs/protocol.md and docs/benchmarks.md).
//!
//! It opens N WebSocket clients against a running server (`--url`, loopback only, repeatable
//! for several nodes) or one it spawns itself (`--spawn`), puts them in channels over REST,
//! sends at a set rate and reports deliveries/s, send→deliver and send→ack latency
//! percentiles, acks/s, errors, server RSS per connection and the CPU time of server and tool.
//!
//! Modules:
//! - [`cli`]: command line (scenarios `idle`, `fanout`, `latency`, `ingest`; shared flags).
//! - [`target`]: the server under test: `--url` checks, `--spawn` with raised limits, stop.
//! - [`setup`]: REST setup: users (cached with their tokens between runs), channels, members.
//! - [`client`]: one lean WebSocket client (source-address binding, resume, send/receive loop).
//! - [`plan`]: scenario → plan (sockets, users, channels, senders, rate; who sits where).
//! - [`run`]: set-up, connect, warm-up, measurement window, drain, collect.
//! - [`stats`]: clock, counters, window, per-thread HDR histograms, frame scanning, math.
//! - [`procfs`]: VmRSS and CPU time from /proc, RLIMIT_NOFILE.
//! - [`report`]: the result as a table or JSON.

mod cli;
mod client;
mod plan;
mod procfs;
mod report;
mod run;
mod setup;
mod stats;
mod target;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let nofile = procfs::raise_nofile();
    stats::now_ns(); // start the clock
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cli.common.threads > 0 {
        rt.worker_threads(cli.common.threads);
    }
    let rt = rt.enable_all().build()?;
    let report = rt.block_on(run::run(&cli, nofile))?;
    if cli.common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
