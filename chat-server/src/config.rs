//! Settings: built-in defaults, then an optional TOML file, then `FULLSLACK_*` environment
//! variables (nested keys with `__`, e.g. `FULLSLACK_RATE_LIMIT__SEND_PER_SEC`), then flags.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::proxy::TrustedProxies;

/// Local mode generates what it lacks (a JWT secret kept on disk); production mode refuses to
/// start without it and marks cookies `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Local,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub log_format: LogFormat,
    /// Store URL: `sqlite` (default, `<data_dir>/fullslack.db`), `sqlite:PATH`, or `mongodb://…` (many nodes, with Redis).
    pub store_url: String,
    /// `redis://[:password@]host:port[/db]`: several nodes share fan-out, presence and rate
    /// limits through it. Unset: a single node. Redacted in Debug output (it may hold a password).
    #[serde(serialize_with = "redacted")]
    pub redis_url: Option<SecretString>,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client; from
    /// anyone else the header is ignored. Empty: the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
    pub auth: AuthSettings,
    pub limits: Limits,
    pub rate_limit: RateLimits,
    pub realtime: Realtime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 signing key. Never logged (see [`SecretString`]).
    #[serde(serialize_with = "redacted")]
    pub jwt_secret: Option<SecretString>,
    pub token_ttl_secs: u64,
    pub session_ttl_secs: u64,
    /// `None`: Secure cookies in production mode only.
    pub cookie_secure: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_len: usize,
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub history_page_max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub send_per_sec: u32,
    pub send_burst: u32,
    /// Overrides `send_per_sec` when set: one send per this many milliseconds (rates below
    /// one a second).
    pub send_interval_ms: Option<u64>,
    /// Sign-in attempts per (client address, user name): refused with 429 beyond it.
    pub auth_per_min: u32,
    pub auth_burst: u32,
    /// Sign-up and sign-in attempts per client address: refused with 429 beyond it.
    pub auth_addr_per_min: u32,
    pub auth_addr_burst: u32,
    /// Failed sign-ins per user name (from any address, refilling at `auth_per_min`) before
    /// that name's sign-ins are slowed down. Never refused: a stranger must not be able to
    /// lock the owner out.
    pub auth_name_burst: u32,
    /// Each failure beyond `auth_name_burst` delays the name's next sign-ins by one refill
    /// interval more, up to this.
    pub auth_name_max_delay_ms: u64,
}

impl RateLimits {
    /// Time between two sends once the burst is spent.
    pub fn send_interval(&self) -> Duration {
        match self.send_interval_ms {
            Some(ms) => Duration::from_millis(ms.max(1)),
            None => Duration::from_secs(1) / self.send_per_sec.max(1),
        }
    }

    /// Time between two sign-in attempts (per address and name) once the burst is spent;
    /// also the refill of a name's failure allowance.
    pub fn auth_interval(&self) -> Duration {
        Duration::from_secs(60) / self.auth_per_min.max(1)
    }

    pub fn auth_addr_interval(&self) -> Duration {
        Duration::from_secs(60) / self.auth_addr_per_min.max(1)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Realtime {
    pub heartbeat_ms: u64,
    pub typing_ttl_ms: u64,
    /// Channels larger than this keep read watermarks but emit no receipt events.
    pub receipts_max_members: usize,
    /// Frames queued per connection before it is marked lagging and refilled from the store.
    pub outbound_queue: usize,
    /// Channels with at least this many sockets on a node have their sockets woken in rounds
    /// (`hub::rounds`): under load their events gather for up to `fanout_round_ms` and go
    /// out together. 0 turns rounds off. 256 (not more): waking that many sockets per message
    /// costs ~10 µs of CPU each; a 900-socket channel at 100 msgs/s took 10.3 µs per delivery
    /// woken at publish and 3.3 µs in rounds (docs/benchmarks.md).
    pub fanout_round_sockets: usize,
    /// At most one wake-up round per this many ms (the bound on the coalescing delay). 150:
    /// one send costs the kernel about the same whatever it carries, so CPU per delivery falls
    /// as the interval grows and latency rises; at 10,000 sockets 150 kept send→deliver p99
    /// under 200 ms at 200,000–300,000 deliveries/s, 175 did not (docs/benchmarks.md).
    pub fanout_round_ms: u64,
    /// While the node is busy (see `fanout_busy_deliveries_per_sec`), channels with at least
    /// this many sockets on it go in rounds too; 0: never. In groups of 100 at 100 msgs/s each
    /// a delivery woken at publish cost ~16 µs of CPU, ~6 µs in rounds; on a node with CPU to
    /// spare rounds only added ~80 ms (docs/benchmarks.md, "Rounds by load").
    pub fanout_busy_sockets: usize,
    /// The node is busy while its channels' events owe at least this many deliveries per
    /// second (events × sockets, over the last round interval). 60,000: about one core of
    /// sends on the 2-vCPU machines measured, where 50,000/s woken at publish still kept
    /// send→deliver p99 near 30 ms and 100,000/s fell seconds behind.
    pub fanout_busy_deliveries_per_sec: u64,
    pub shutdown_grace_ms: u64,
    pub delivered_flush_ms: u64,
    /// With Redis: a node's presence entries expire this long after its last refresh (it
    /// refreshes every third of it), so a crashed node's users go offline by themselves.
    pub presence_ttl_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".parse().expect("valid literal address"),
            data_dir: PathBuf::from("./data"),
            mode: Mode::Local,
            log_format: LogFormat::Human,
            store_url: "sqlite".into(),
            redis_url: None,
            trusted_proxies: TrustedProxies::default(),
            auth: AuthSettings::default(),
            limits: Limits::default(),
            rate_limit: RateLimits::default(),
            realtime: Realtime::default(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            token_ttl_secs: 3600,
            session_ttl_secs: 30 * 24 * 3600,
            cookie_secure: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: 4000,
            max_frame_bytes: 64 * 1024,
            max_body_bytes: 256 * 1024,
            history_page_max: 200,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            send_per_sec: 10,
            send_burst: 20,
            send_interval_ms: None,
            auth_per_min: 10,
            auth_burst: 5,
            auth_addr_per_min: 60,
            auth_addr_burst: 30,
            auth_name_burst: 20,
            auth_name_max_delay_ms: 10_000,
        }
    }
}

/// Upper bound of `realtime.fanout_round_ms`: past it a busy channel would look stalled.
pub const MAX_FANOUT_ROUND_MS: u64 = 2_000;

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            heartbeat_ms: 25_000,
            typing_ttl_ms: 6_000,
            receipts_max_members: 256,
            outbound_queue: 1024,
            fanout_round_sockets: 256,
            fanout_round_ms: 150,
            fanout_busy_sockets: 32,
            fanout_busy_deliveries_per_sec: 60_000,
            shutdown_grace_ms: 10_000,
            delivered_flush_ms: 100,
            presence_ttl_secs: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid settings: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("production mode needs a JWT secret: set FULLSLACK_AUTH__JWT_SECRET (at least 32 bytes) or auth.jwt_secret in the config file")]
    MissingSecret,
    #[error("the JWT secret must be at least 32 bytes long")]
    WeakSecret,
    #[error("invalid setting {key}: {reason}")]
    Setting { key: &'static str, reason: String },
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The settings' top-level keys, as environment variables see them.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "mode",
    "log_format",
    "store_url",
    "redis_url",
    "trusted_proxies",
    "auth",
    "limits",
    "rate_limit",
    "realtime",
];

impl Settings {
    /// Layers defaults, `config_file` (if any), and the environment.
    pub fn load(config_file: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            fig = fig.merge(Toml::file_exact(path));
        }
        // Other programs share the prefix (FULLSLACK_TEST_RUNTIME, the CLI's variables): take
        // only variables naming a top-level setting. Inside a section unknown keys are refused.
        let env = Env::prefixed("FULLSLACK_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            TOP_LEVEL_KEYS.iter().any(|k| top.eq_ignore_ascii_case(k))
        });
        fig = fig.merge(env);
        fig.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// Checks what the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.realtime.presence_ttl_secs == 0 {
            return Err(ConfigError::Setting {
                key: "realtime.presence_ttl_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.realtime.fanout_round_ms > MAX_FANOUT_ROUND_MS {
            return Err(ConfigError::Setting {
                key: "realtime.fanout_round_ms",
                reason: format!(
                    "must be at most {MAX_FANOUT_ROUND_MS} (it delays a busy big channel's events)"
                ),
            });
        }
        if let Some(url) = &self.redis_url {
            let u = url.expose_secret();
            // TLS (rediss://) is not compiled in: refuse it here rather than at first use.
            if !["redis://", "unix://", "redis+unix://"]
                .iter()
                .any(|p| u.starts_with(p))
            {
                return Err(ConfigError::Setting {
                    key: "redis_url",
                    reason: "must start with redis:// (or unix:// for a socket)".into(),
                });
            }
        }
        Ok(())
    }

    pub fn cookie_secure(&self) -> bool {
        self.auth
            .cookie_secure
            .unwrap_or(self.mode == Mode::Production)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.realtime.heartbeat_ms)
    }

    /// Returns the JWT secret, generating one into the data directory in local mode.
    pub fn resolve_jwt_secret(&self) -> Result<SecretString, ConfigError> {
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.expose_secret().len() < 32 {
                return Err(ConfigError::WeakSecret);
            }
            return Ok(secret.clone());
        }
        if self.mode == Mode::Production {
            return Err(ConfigError::MissingSecret);
        }
        let path = self.data_dir.join("jwt-secret");
        let io = |source| ConfigError::DataDir {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_string())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(&self.data_dir).map_err(io)?;
        write_private(&path, &hex).map_err(io)?;
        Ok(SecretString::from(hex))
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Serializes a secret setting as `null` when unset and `"[redacted]"` when set: the key stays
/// visible (the deploy tool's list of setting names is checked against the serialized
/// settings), the value never is.
fn redacted<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "listen = \"127.0.0.1:9000\"\n[rate_limit]\nsend_per_sec = 3\n",
            )?;
            jail.set_env("FULLSLACK_RATE_LIMIT__SEND_BURST", "7");
            jail.set_env("FULLSLACK_LISTEN", "127.0.0.1:9001");
            let s = Settings::load(Some(std::path::Path::new("c.toml"))).expect("loads");
            assert_eq!(s.listen.port(), 9001);
            assert_eq!(s.rate_limit.send_per_sec, 3);
            assert_eq!(s.rate_limit.send_burst, 7);
            assert_eq!(s.limits.max_message_len, 4000);
            Ok(())
        });
    }

    #[test]
    fn foreign_variables_with_our_prefix_are_ignored_but_typos_in_a_section_are_not() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FULLSLACK_TEST_RUNTIME", "/tmp/x");
            jail.set_env("FULLSLACK_CONFIG", "ignored.toml");
            let s = Settings::load(None).expect("foreign variables are ignored");
            assert_eq!(s.limits.max_message_len, 4000);
            jail.set_env("FULLSLACK_LIMITS__MAX_MESAGE_LEN", "3");
            let err = Settings::load(None).unwrap_err();
            assert!(err.to_string().contains("max_mesage_len"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn redis_settings_come_from_the_environment_and_are_checked() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).expect("defaults load");
            assert!(s.redis_url.is_none(), "single node by default");
            assert_eq!(s.realtime.presence_ttl_secs, 30);
            jail.set_env("FULLSLACK_REDIS_URL", "redis://:hunter2@127.0.0.1:6390/0");
            jail.set_env("FULLSLACK_REALTIME__PRESENCE_TTL_SECS", "3");
            let mut s = Settings::load(None).expect("loads");
            s.validate().expect("valid");
            assert_eq!(
                s.redis_url.as_ref().map(ExposeSecret::expose_secret),
                Some("redis://:hunter2@127.0.0.1:6390/0")
            );
            assert_eq!(s.realtime.presence_ttl_secs, 3);
            assert!(
                !format!("{s:?}").contains("hunter2"),
                "Debug redacts the URL"
            );
            s.realtime.presence_ttl_secs = 0;
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("presence_ttl_secs"), "{err}");
            s.realtime.presence_ttl_secs = 3;
            s.redis_url = Some(SecretString::from("http://127.0.0.1:6390"));
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("redis_url"), "{err}");
            jail.set_env("FULLSLACK_REALTIME__FANOUT_ROUND_MS", "60000");
            let err = Settings::load(None)
                .expect("loads")
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains("realtime.fanout_round_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_come_from_a_comma_separated_variable_or_a_list() {
        figment::Jail::expect_with(|jail| {
            assert!(Settings::load(None)
                .expect("loads")
                .trusted_proxies
                .is_empty());
            jail.set_env("FULLSLACK_TRUSTED_PROXIES", "127.0.0.1,172.16.0.0/12");
            let s = Settings::load(None).expect("loads");
            assert!(s.trusted_proxies.contains("172.17.0.1".parse().unwrap()));
            assert!(!s.trusted_proxies.contains("8.8.8.8".parse().unwrap()));
            jail.set_env("FULLSLACK_TRUSTED_PROXIES", "10.0.0.0/8");
            let s = Settings::load(None).expect("a single range loads");
            assert!(s.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
            jail.clear_env();
            jail.create_file("c.toml", "trusted_proxies = [\"::1\", \"10.0.0.0/8\"]\n")?;
            let s = Settings::load(Some(std::path::Path::new("c.toml"))).expect("loads");
            assert!(s.trusted_proxies.contains("::1".parse().unwrap()));
            jail.set_env("FULLSLACK_TRUSTED_PROXIES", "10.0.0.0/99");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("prefix"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[limits]\nmax_mesage_len = 3\n")?;
            let err = Settings::load(Some(std::path::Path::new("c.toml"))).unwrap_err();
            assert!(err.to_string().contains("max_mesage_len"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn local_mode_generates_and_keeps_a_secret_production_requires_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        let a = s.resolve_jwt_secret().unwrap();
        let b = s.resolve_jwt_secret().unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 64);
        s.mode = Mode::Production;
        assert!(matches!(
            s.resolve_jwt_secret(),
            Err(ConfigError::MissingSecret)
        ));
    }
}
