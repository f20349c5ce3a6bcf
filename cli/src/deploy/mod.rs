//! Deploying a release to a host: everything `fullslack deploy` and `fullslack rollback` do on
//! one host, through a [`crate::runner::Runner`] (SSH, or this machine for a `local` stack).
//!
//! Module map:
//! - [`mod@self`]: what a deploy needs ([`Plan`]: the image, the container environment, the
//!   host's layout, Nginx, the health gate) and the names of things on a host ([`Layout`]).
//! - [`releases`]: the host's release log (`releases.json`: which release is live on which
//!   colour, which are kept for rollback) and the audit entries (JSON lines).
//! - [`lock`]: the deploy lock with `--lock-wait` and `--break-lock`.
//! - [`transfer`]: getting the image onto the host: `docker save` streamed over the SSH
//!   connection into `docker load` (no registry), or `docker pull` after a login whose
//!   password goes on stdin.
//! - [`switch`]: blue/green: start the new release on the idle colour, gate it on health,
//!   point Nginx at it, retire the old one.
//! - [`host`]: one host's whole deploy in order, with the lock released and the audit line
//!   written on every path.
//!
//! The host keeps its state under `Layout::root` (default `/var/lib/fullslack`): the lock, the
//! env file (mode 0600), the release log and the audit log. Nothing secret leaves the env file.

pub mod host;
pub mod lock;
pub mod releases;
pub mod switch;
pub mod transfer;

use std::time::Duration;

use crate::commands::nginx::NginxPaths;
use crate::health::HealthOptions;
use crate::nginx::{Color, SiteParams};
use crate::secret::SecretString;
use crate::stack::ContainerEnv;

/// Default directory of the deploy state on a host.
pub const STATE_ROOT: &str = "/var/lib/fullslack";

/// Where things are on a host and what they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// State root (`/var/lib/fullslack`).
    pub root: String,
    /// Stack name: prefixes every container, volume and file of the stack.
    pub stack: String,
}

impl Layout {
    /// The stack's state directory.
    pub fn stack_dir(&self) -> String {
        format!("{}/{}", self.root, self.stack)
    }

    /// The env file with the stack's secrets (mode 0600).
    pub fn env_file(&self) -> String {
        format!("{}/env", self.stack_dir())
    }

    /// The release log.
    pub fn releases_file(&self) -> String {
        format!("{}/releases.json", self.stack_dir())
    }

    /// The audit log (JSON lines).
    pub fn audit_file(&self) -> String {
        format!("{}/audit.jsonl", self.stack_dir())
    }

    /// Where the deploy lock lives.
    pub fn lock_root(&self) -> String {
        format!("{}/locks", self.root)
    }

    /// The container of one colour.
    pub fn container(&self, color: Color) -> String {
        format!("{}-{}", self.stack, color_name(color))
    }

    /// The named volume holding the server's data directory (survives every release).
    pub fn data_volume(&self) -> String {
        format!("{}-data", self.stack)
    }
}

/// `blue` / `green`.
pub fn color_name(c: Color) -> &'static str {
    match c {
        Color::Blue => "blue",
        Color::Green => "green",
    }
}

/// How the image gets onto the host.
#[derive(Debug, Clone)]
pub enum Transfer {
    /// `docker save` here, streamed over the connection into `docker load` there.
    Stream {
        /// Send it even when the host has an image of the same id (a host whose copy is
        /// damaged; measuring the transfer).
        always: bool,
    },
    /// `docker login` (password on stdin) and `docker pull` on the host.
    Registry {
        /// Registry host (`registry.example.com:5000`).
        server: String,
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// The image must already be on the host (rollback to a kept release).
    AlreadyThere,
}

/// The release to switch to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Image reference the host runs (`repo:tag`).
    pub image: String,
    /// Version shown in the release log (the tag).
    pub version: String,
    /// Image id (`sha256:…`) when known here (lets the transfer skip an image the host has).
    pub image_id: Option<String>,
}

/// What to switch to.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// This image (a deploy).
    Image(Target),
    /// A release the host kept: this version, or the one before the live one.
    Rollback(Option<String>),
}

/// The health gate of a new release.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Probe settings; the URL is replaced by the forwarded port of the new release.
    pub probe: HealthOptions,
    /// How long the new release may take to become healthy.
    pub deadline: Duration,
}

/// Nginx on the host.
#[derive(Debug, Clone)]
pub struct NginxSetup {
    /// Where the site file goes.
    pub site_path: String,
    /// `-c` / `-p` of the host's Nginx.
    pub paths: NginxPaths,
    /// The site (ports, listen addresses); `active` is set by the switch.
    pub site: SiteParams,
}

impl NginxSetup {
    /// The loopback port of a colour's first server (`127.0.0.1:8100` → 8100).
    pub fn port(&self, c: Color) -> Option<u16> {
        let servers = match c {
            Color::Blue => &self.site.blue,
            Color::Green => &self.site.green,
        };
        servers
            .first()
            .and_then(|s| s.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
    }
}

/// Everything one host's deploy needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `deploy` or `rollback` (audit, lock message).
    pub action: &'static str,
    /// Names and paths on the host.
    pub layout: Layout,
    /// The release.
    pub wanted: Wanted,
    /// How the image gets there.
    pub transfer: Transfer,
    /// The container environment (secrets go to the env file only).
    pub env: ContainerEnv,
    /// Port the server listens on inside the container.
    pub container_port: u16,
    /// Nginx.
    pub nginx: NginxSetup,
    /// Health gate.
    pub gate: Gate,
    /// Releases whose images are kept for rollback (the live one included).
    pub keep: usize,
    /// Seconds the old release gets to drain after SIGTERM before it is killed.
    pub drain_secs: u32,
    /// Lock policy.
    pub lock: lock::Policy,
    /// Who deploys (`user@machine`).
    pub who: String,
}
