//! Nginx site configs rendered from the templates in `cli/nginx/` (minijinja).

use serde::{Deserialize, Serialize};

use crate::stack::{Stack, Target};

const SITE_TEMPLATE: &str = include_str!("../nginx/site.conf.j2");
const MAIN_TEMPLATE: &str = include_str!("../nginx/nginx.conf.j2");

/// Default ACME webroot on a host: what the rendered Nginx site serves
/// `/.well-known/acme-challenge/` from (and where `certs` puts HTTP-01 tokens).
pub const ACME_ROOT: &str = "/var/lib/fullslack/acme";

/// Default certificate directory of a stack on its hosts (what the rendered site reads, and
/// where `certs` installs what it issues).
pub fn default_cert_dir(stack: &str) -> String {
    format!("/etc/fullslack/certs/{stack}")
}

/// The chat server's WebSocket ping interval (docs/protocol.md: `heartbeat_ms` 25000).
pub const SERVER_PING_SECS: u64 = 25;

/// Errors of the rendering boundary.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template failed (a bug in `cli/nginx/`).
    #[error("nginx template error: {0}")]
    Template(#[from] minijinja::Error),
    /// The stack does not use Nginx.
    #[error("stack `{0}` runs on ECS behind an ALB: it has no Nginx")]
    NoNginx(String),
}

impl RenderError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            RenderError::Template(_) => {
                "this is a bug in the templates under cli/nginx/: please report it"
            }
            RenderError::NoNginx(_) => {
                "ECS stacks route through the ALB; render Nginx only for ec2, ssh or local stacks"
            }
        }
    }
}

/// Blue/green colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// Blue.
    Blue,
    /// Green.
    Green,
}

impl Color {
    /// The other colour.
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
}

/// Everything the site template needs.
#[derive(Debug, Clone, Serialize)]
pub struct SiteParams {
    /// Stack name.
    pub name: String,
    /// Prefix of upstream names (stack name with `-` → `_`).
    pub upstream_prefix: String,
    /// Server names.
    pub domains: Vec<String>,
    /// Serve HTTPS.
    pub tls: bool,
    /// Active colour.
    pub active: Color,
    /// Blue upstream servers (`127.0.0.1:8100`).
    pub blue: Vec<String>,
    /// Green upstream servers.
    pub green: Vec<String>,
    /// Directory with `fullchain.pem` and `privkey.pem`.
    pub cert_dir: String,
    /// Webroot of the ACME HTTP-01 challenge files.
    pub acme_root: String,
    /// HTTP port.
    pub http_port: u16,
    /// HTTPS port.
    pub https_port: u16,
    /// IPv4 address to listen on (`None`: every address).
    pub listen_v4: Option<String>,
    /// IPv6 address to listen on (`Some("::")`: every address; `None`: no IPv6).
    pub listen_v6: Option<String>,
    /// Server ping interval (for the comment).
    pub ping_interval_secs: u64,
    /// `proxy_read_timeout` of `/api/ws`.
    pub ws_read_timeout_secs: u64,
    /// Request body limit.
    pub client_max_body_size: String,
}

impl SiteParams {
    /// Defaults for a stack: containers on 127.0.0.1 from `app.host_port` (blue) and
    /// `app.host_port + 100` (green), certificates under /etc/fullslack/certs/NAME.
    pub fn from_stack(stack: &Stack) -> Result<Self, RenderError> {
        if stack.target == Target::Ecs {
            return Err(RenderError::NoNginx(stack.name.clone()));
        }
        // u32: a stack is validated before (ports above 65535 are refused with the key), but
        // arithmetic here never panics whatever it is given.
        let base = u32::from(stack.app.host_port);
        let servers = |offset: u32| {
            (0..stack.app.replicas)
                .map(|i| format!("127.0.0.1:{}", base + offset + i))
                .collect::<Vec<_>>()
        };
        Ok(Self {
            name: stack.name.clone(),
            upstream_prefix: format!("fullslack_{}", stack.name.replace('-', "_")),
            domains: stack.domains.clone(),
            tls: stack.tls.enabled,
            active: Color::Blue,
            blue: servers(0),
            green: servers(100),
            cert_dir: default_cert_dir(&stack.name),
            acme_root: ACME_ROOT.into(),
            http_port: 80,
            https_port: 443,
            listen_v4: None,
            listen_v6: Some("::".into()),
            ping_interval_secs: SERVER_PING_SECS,
            ws_read_timeout_secs: SERVER_PING_SECS * 4,
            client_max_body_size: "1m".into(),
        })
    }
}

/// Renders the site config.
pub fn render_site(p: &SiteParams) -> Result<String, RenderError> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template("site.conf", SITE_TEMPLATE)?;
    let mut out = env.get_template("site.conf")?.render(p)?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Renders a self-contained main `nginx.conf` that includes `site` and keeps pid, logs and
/// temp files under `prefix`.
pub fn render_main(prefix: &str, site: &str, daemon: bool) -> Result<String, RenderError> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template("nginx.conf", MAIN_TEMPLATE)?;
    let prefix = prefix.trim_end_matches('/');
    let mut out = env
        .get_template("nginx.conf")?
        .render(minijinja::context! { prefix, site, daemon })?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}
