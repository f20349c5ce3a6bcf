//! Deploying a release to a host: everything `fullslack deploy` and `fullslack rollback` do on
//! one host, through a [`crate::runner::Runner`] (SSH, or this machine for a `local` stack).
//!
//! Module map:
//! - [`mod@self`]: what a deploy needs ([`Plan`]: the image, the container environment, the
//!   host's layout, Nginx, the health gate) and the names of things on a host ([`Layout`]:
//!   `STACK`, or `STACK-NAME` for a host named in the stack file).
//! - [`releases`]: the host's release log (`releases.json`: which release is live on which
//!   colour, which are kept for rollback) and the audit entries (JSON lines).
//! - [`lock`]: the deploy lock with `--lock-wait` and `--break-lock`.
//! - [`transfer`]: getting the image onto the host: `docker save` (spooled here) sent over the
//!   SSH connection into `docker load` without the layers the host already has (no registry;
//!   the whole image if the host refuses that), or `docker pull` after a login whose password
//!   goes on stdin.
//! - [`switch`]: blue/green: start the new release on the idle colour, gate it on health,
//!   point Nginx at it, retire the old one.
//! - [`setup`]: the Docker Engine and Nginx on a host, installed (apt-get / dnf, as root or
//!   through `sudo -n`) when missing on an SSH host, after cloud-init's first boot.
//! - [`host`]: one host's whole deploy in order, with the lock released and the audit line
//!   written on every path.
//! - [`accessory`]: the stack's managed Redis / MongoDB containers on the stack's Docker
//!   network, made to run (idempotently) before any chat release switches.
//! - [`certificate`]: the deploy's certificate step once every host switched (`tls.enabled`
//!   stacks): issue or renew through [`crate::certs`], then the HTTPS site where it went out
//!   HTTP-only; what happened, for the output.
//!
//! The host keeps its state under `Layout::root` (default `/var/lib/fullslack`): the lock, the
//! env file (mode 0600), the release log and the audit log. Nothing secret leaves the env file.

pub mod accessory;
pub mod certificate;
pub mod host;
pub mod lock;
pub mod releases;
pub mod setup;
pub mod switch;
pub mod transfer;

use std::time::Duration;

use crate::commands::nginx::NginxPaths;
use crate::health::HealthOptions;
use crate::nginx::{Color, SiteParams};
use crate::secret::SecretString;
use crate::stack::{ContainerEnv, Host, Stack};

/// Default directory of the deploy state on a host.
pub const STATE_ROOT: &str = "/var/lib/fullslack";

/// Where things are on a host and what they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// State root (`/var/lib/fullslack`).
    pub root: String,
    /// Stack name: prefixes every container, volume and file of the stack.
    pub stack: String,
    /// The host's `name` in the stack file, if it has one: appended to the stack name in
    /// every container, volume and directory name ([`Layout::instance`]).
    pub host: Option<String>,
}

impl Layout {
    /// The layout on one host of the stack (`None`: a `local` stack). `{host}` in `root`
    /// becomes the host's name (or address; `local` for this machine).
    pub fn of(root: &str, stack: &str, host: Option<&Host>) -> Layout {
        Layout {
            root: with_host(root, host).trim_end_matches('/').to_string(),
            stack: stack.to_string(),
            host: host.and_then(|h| h.name.clone()),
        }
    }

    /// What names the stack's things on this host: `STACK`, or `STACK-NAME` for a named host
    /// (two hosts sharing a Docker Engine never share a container, volume or release log).
    pub fn instance(&self) -> String {
        match &self.host {
            Some(h) => format!("{}-{h}", self.stack),
            None => self.stack.clone(),
        }
    }

    /// The stack's state directory.
    pub fn stack_dir(&self) -> String {
        format!("{}/{}", self.root, self.instance())
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
        format!("{}-{}", self.instance(), color_name(color))
    }

    /// The named volume holding the server's data directory (survives every release).
    pub fn data_volume(&self) -> String {
        format!("{}-data", self.instance())
    }
}

/// `path` with `{host}` replaced by the host's name (or address; `local` for this machine).
pub fn with_host(path: &str, host: Option<&Host>) -> String {
    let key = host.map_or("local", |h| h.name.as_deref().unwrap_or(&h.address));
    path.replace("{host}", key)
}

/// The stack as one host sees it: its `app_port` instead of `app.host_port`.
pub fn host_stack(s: &Stack, host: Option<&Host>) -> Stack {
    let mut s = s.clone();
    if let Some(port) = host.and_then(|h| h.app_port) {
        s.app.host_port = port;
    }
    s
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
        /// Gzip the stream (level 1): fewer bytes for more CPU here, which pays on a link
        /// slower than this machine compresses (see docs/deploy.md).
        compress: bool,
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
    /// The stack's Docker network the chat containers join (`Some` when the stack runs
    /// accessories, which they reach by name there).
    pub network: Option<String>,
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
    /// Install Docker and Nginx when the host lacks them (hosts reached over SSH; a `local`
    /// stack's machine is only checked).
    pub install_missing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: Option<&str>) -> Host {
        Host {
            address: "10.0.0.7".into(),
            ipv4: None,
            ipv6: None,
            roles: Vec::new(),
            user: None,
            port: None,
            name: name.map(str::to_string),
            app_port: None,
            http_port: None,
        }
    }

    #[test]
    fn a_named_host_has_its_own_names_and_paths() {
        let l = Layout::of("/srv/{host}/state/", "chat", Some(&host(Some("web2"))));
        assert_eq!(l.root, "/srv/web2/state");
        assert_eq!(l.container(Color::Green), "chat-web2-green");
        assert_eq!(l.data_volume(), "chat-web2-data");
        assert_eq!(l.releases_file(), "/srv/web2/state/chat-web2/releases.json");
        // The lock stays the stack's: `fullslack lock` names it the same way.
        assert_eq!(l.lock_root(), "/srv/web2/state/locks");

        let plain = Layout::of(STATE_ROOT, "chat", Some(&host(None)));
        assert_eq!(plain.container(Color::Blue), "chat-blue");
        assert_eq!(
            with_host("/x/{host}.conf", Some(&host(None))),
            "/x/10.0.0.7.conf"
        );
        assert_eq!(with_host("/x/{host}.conf", None), "/x/local.conf");
    }
}
