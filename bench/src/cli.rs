//! Command line: global target/measurement options plus one subcommand per scenario.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load tool for fullslack-chat.
#[derive(Parser, Debug, Clone)]
#[command(name = "bench", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options every scenario shares (they may be given before or after the subcommand).
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Base URL of a running server (loopback only), e.g. http://127.0.0.1:8080. Repeat for
    /// several nodes of one cluster: sockets are spread round-robin over them, setup uses the first.
    #[arg(long, global = true)]
    pub url: Vec<String>,
    /// Spawn this fullslack-chat binary on a free loopback port instead of using --url (or
    /// bench/relay/relay.js, the minimal Node.js relay of bench/scripts/compare-node.sh).
    #[arg(long, global = true, value_name = "PATH_TO_fullslack-chat")]
    pub spawn: Option<PathBuf>,
    /// With --spawn: how many server processes to start. More than one needs --store-url
    /// (MongoDB) and --redis-url so the nodes share a store and fan out over Redis; the nodes
    /// get one JWT secret (kept in --data-dir) and each its own data dir under --data-dir.
    #[arg(long, global = true, default_value_t = 1)]
    pub nodes: usize,
    /// With --spawn: the store the spawned server(s) use (FULLSLACK_STORE_URL), e.g.
    /// mongodb://127.0.0.1:27017/fullslack_bench. Default: the embedded SQLite store.
    #[arg(long, global = true)]
    pub store_url: Option<String>,
    /// With --spawn: the Redis the spawned servers share (FULLSLACK_REDIS_URL).
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// Data directory for the spawned server; kept between runs so registered users are reused.
    #[arg(long, global = true, default_value = "/tmp/fullslack-bench-data")]
    pub data_dir: PathBuf,
    /// PID(s) of the server process(es) behind --url, for RSS and CPU figures.
    #[arg(long, global = true)]
    pub server_pid: Vec<u32>,
    /// Measurement window (after warm-up): 10s, 500ms, 2m, or plain seconds.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the window: sending runs but nothing is counted.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After the window: how long to wait for outstanding deliveries before counting them missing.
    #[arg(long, global = true, default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Print the report as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Number of client source addresses, 127.0.0.2 and up, used round-robin.
    #[arg(long, global = true, default_value_t = 32)]
    pub source_ips: u8,
    /// WebSocket handshakes in flight at once while connecting.
    #[arg(long, global = true, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// REST setup requests (register/login/join) in flight at once.
    #[arg(long, global = true, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// Where registered users and their tokens are cached between runs
    /// (default: next to --data-dir when spawning, /tmp/fullslack-bench-users-HOST-PORT.json with --url).
    #[arg(long, global = true)]
    pub users_file: Option<PathBuf>,
    /// Username prefix of the bench users.
    #[arg(long, global = true, default_value = "bench")]
    pub user_prefix: String,
    /// Worker threads of the load tool's runtime (0: one per core).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// WebSocket read buffer per client, bytes (tungstenite's default is 128 KiB).
    #[arg(long, global = true, default_value_t = 4096)]
    pub read_buffer: usize,
    /// WebSocket write buffer per client, bytes (0: write every frame out at once).
    #[arg(long, global = true, default_value_t = 0)]
    pub write_buffer: usize,
    /// Message text length in bytes (the client_id carries the timestamp, the text is padding).
    #[arg(long, global = true, default_value_t = 32)]
    pub text_size: usize,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Connections only: open N sockets, hold them for --duration, report server RSS per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Distinct users behind the sockets (default: one per socket).
        #[arg(long)]
        users: Option<usize>,
    },
    /// One channel with every member connected; a few senders; reports deliveries/s.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Aggregate send rate, messages/s.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Distinct member users behind the sockets (default: one per socket). Fewer users
        /// with several sockets each saves Argon2id registrations; every socket still receives.
        #[arg(long)]
        users: Option<usize>,
    },
    /// Many small channels, every client sends; reports send→deliver percentiles at a set rate.
    Latency {
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        channels: usize,
        /// Aggregate send rate, messages/s.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
    },
    /// Maximum persisted messages/s: each sender keeps --inflight sends outstanding (closed loop).
    Ingest {
        #[arg(long, default_value_t = 64)]
        senders: usize,
        /// Channels the senders are spread over (default: one per sender, so fan-out is 1).
        #[arg(long)]
        channels: Option<usize>,
        /// Unacknowledged sends per sender.
        #[arg(long, default_value_t = 8)]
        inflight: usize,
        /// Open-loop aggregate rate instead of the closed loop (0: closed loop).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
}

/// `10s`, `250ms`, `2m`, `1.5s`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 10s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * mult > 3600.0 {
        return Err(format!("duration out of range (0..=1h): {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("forever").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn subcommands_and_global_flags_parse() {
        let cli = Cli::try_parse_from([
            "bench",
            "fanout",
            "--members",
            "10000",
            "--senders",
            "1",
            "--rate",
            "100",
            "--spawn",
            "/x/fullslack-chat",
            "--duration",
            "5s",
            "--json",
        ])
        .unwrap();
        assert!(cli.common.json);
        assert_eq!(cli.common.duration, Duration::from_secs(5));
        assert!(matches!(
            cli.scenario,
            Scenario::Fanout {
                members: 10000,
                senders: 1,
                ..
            }
        ));
        let cli = Cli::try_parse_from([
            "bench",
            "--url",
            "http://127.0.0.1:1",
            "--url",
            "http://127.0.0.1:2",
            "idle",
            "--clients",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.common.url.len(), 2);
        assert_eq!(cli.common.nodes, 1);
        assert!(matches!(
            cli.scenario,
            Scenario::Idle {
                clients: 5,
                users: None
            }
        ));
        let cli = Cli::try_parse_from([
            "bench",
            "latency",
            "--spawn",
            "/x/fullslack-chat",
            "--nodes",
            "2",
            "--store-url",
            "mongodb://127.0.0.1:1/b",
            "--redis-url",
            "redis://127.0.0.1:2/",
        ])
        .unwrap();
        assert_eq!(cli.common.nodes, 2);
        assert_eq!(
            cli.common.redis_url.as_deref(),
            Some("redis://127.0.0.1:2/")
        );
    }
}
