//! `fullslack certs`: certificates for a stack's domains from an ACME CA (Let's Encrypt
//! staging by default; pebble in tests), answered over HTTP-01 through the stack's own Nginx,
//! installed on its hosts through a [`Runner`] (SSH, or this machine for a `local` stack).
//!
//! Module map:
//! - [`mod@self`]: where things are ([`Options`]), the errors with their fixes
//!   ([`CertsError`]), reading the installed certificate and its renewal window.
//! - [`flow`]: the entry points [`issue`], [`renew`], [`status`], and [`ensure`] (what a
//!   deploy calls: issue when there is no valid certificate from the stack's directory, renew
//!   when one is due).
//! - [`account`]: the directory URL of a stack, its ACME account (created once per stack and
//!   directory; credentials 0600 on this machine, never printed).
//! - [`order`]: one order: tokens on the hosts, validation, a fresh key and CSR, the chain.
//! - [`install`]: chain and key onto a host atomically, `nginx -t`, reload; the old files back
//!   when Nginx refuses the new ones; the certificate's origin (which directory issued it)
//!   recorded beside it on the host.
//! - [`inspect`]: what a PEM chain says: names, issuer, serial, validity, ARI identifier.
//! - [`policy`]: renewal windows (configured, ARI, a third of the lifetime) and the local order
//!   log that keeps the tool under Let's Encrypt's rate limits.

pub mod account;
pub mod flow;
pub mod inspect;
pub mod install;
pub mod order;
pub mod policy;

use instant_acme::{Account, CertificateIdentifier, Problem};
use rustls::pki_types::Der;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::commands::files;
use crate::commands::nginx::NginxPaths;
use crate::error::CliError;
use crate::runner::{RunError, Runner};
use crate::stack::Stack;
pub use flow::{ensure, issue, renew, status, CertStatus, DomainStatus, IssueReport, Outcome};
use inspect::CertSummary;
use policy::Window;

// Where the rendered site reads certificates and serves challenges from: facts of the
// rendered Nginx site, defined there (certs builds on the rendering, never the reverse).
pub use crate::nginx::{default_cert_dir, ACME_ROOT};

/// Where the certificate lives on the hosts and the CLI's own files on this machine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory on the host with `fullchain.pem` and `privkey.pem` (what the rendered Nginx
    /// site reads).
    pub cert_dir: String,
    /// Webroot the rendered Nginx serves `/.well-known/acme-challenge/` from.
    pub acme_root: String,
    /// The host's Nginx (`-c` / `-p`).
    pub nginx: NginxPaths,
    /// This machine's directory for the stack's ACME account and order log.
    pub state_dir: PathBuf,
    /// DNS server for the checks before ordering (default: the system's).
    pub dns_server: Option<SocketAddr>,
    /// Do not run the DNS/CAA checks before ordering.
    pub skip_checks: bool,
}

impl Options {
    /// The defaults for a stack: the paths the rendered Nginx site uses
    /// ([`crate::nginx::SiteParams::from_stack`]) and `.fullslack/STACK/acme/` beside the
    /// stack file.
    pub fn for_stack(stack_file: &Path, stack: &Stack) -> Self {
        Self {
            cert_dir: default_cert_dir(&stack.name),
            acme_root: ACME_ROOT.into(),
            nginx: NginxPaths::default(),
            state_dir: crate::state::dir(stack_file, &stack.name).join("acme"),
            dns_server: None,
            skip_checks: false,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.state_dir.join("orders.jsonl")
    }
}

/// Errors of `certs`, each with its fix.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// Talking to the CA failed (network, protocol, or a problem document).
    #[error("{what}: {source}")]
    Acme {
        /// What was being done.
        what: String,
        /// Cause.
        source: instant_acme::Error,
    },
    /// The CA answered something this tool cannot use (no HTTP-01, a bad token, no reason).
    #[error("{0}")]
    Ca(String),
    /// The CA could not validate a name.
    #[error("validation of {name} failed: {reason}: {detail}")]
    Validation {
        /// The name (or `the order`).
        name: String,
        /// The reason in words (from the problem type).
        reason: &'static str,
        /// The CA's own text.
        detail: String,
        /// The fix.
        fix: &'static str,
    },
    /// Nothing was ordered: a rule of this tool (second issue, rate limit, DNS checks).
    #[error("{message}")]
    Refused {
        /// Why.
        message: String,
        /// What to do.
        hint: String,
    },
    /// Nginx refused the new certificate; the old one was put back and keeps serving.
    #[error("nginx -t on {host} refused the new certificate (the old one was put back and keeps serving): {detail}")]
    Install {
        /// Host.
        host: String,
        /// `nginx -t` output.
        detail: String,
    },
    /// A command on a host failed.
    #[error(transparent)]
    Host(#[from] RunError),
    /// This machine's files (account, order log).
    #[error("{what}")]
    Local {
        /// What failed.
        what: String,
        /// The fix.
        hint: String,
    },
}

impl CertsError {
    pub(crate) fn acme(what: impl Into<String>, source: instant_acme::Error) -> Self {
        match source {
            instant_acme::Error::Api(p) if is_validation(&p) => Self::validation("the order", &p),
            source => Self::Acme {
                what: what.into(),
                source,
            },
        }
    }

    pub(crate) fn acme_str(what: String) -> Self {
        Self::Ca(what)
    }

    pub(crate) fn validation(name: &str, p: &Problem) -> Self {
        let (reason, fix) = explain(p);
        Self::Validation {
            name: name.to_string(),
            reason,
            detail: p.to_string(),
            fix,
        }
    }

    pub(crate) fn local(path: &Path, e: std::io::Error) -> Self {
        Self::Local {
            what: format!("{}: {e}", path.display()),
            hint: "check that the directory beside the stack file is writable".into(),
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            CertsError::Acme { source: instant_acme::Error::Api(p), .. } => explain(p).1.into(),
            CertsError::Acme { .. } | CertsError::Ca(_) => "check tls.directory_url (and tls.directory_ca_file for a private CA) and that this machine reaches it over HTTPS".into(),
            CertsError::Validation { fix, .. } => (*fix).into(),
            CertsError::Refused { hint, .. } | CertsError::Local { hint, .. } => hint.clone(),
            CertsError::Install { .. } => "read nginx's error above: the site must use the cert_dir this command installs into (`fullslack nginx render --cert-dir`)".into(),
            CertsError::Host(e) => e.hint().into(),
        }
    }
}

impl From<CertsError> for CliError {
    fn from(e: CertsError) -> Self {
        CliError::Failed {
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

fn is_validation(p: &Problem) -> bool {
    let t = p.r#type.as_deref().unwrap_or_default();
    [
        "connection",
        "unauthorized",
        "dns",
        "caa",
        "incorrectResponse",
        "tls",
    ]
    .iter()
    .any(|k| t.ends_with(&format!(":{k}")))
}

/// The reason and fix of an ACME problem document (RFC 8555 §6.7 types).
pub fn explain(p: &Problem) -> (&'static str, &'static str) {
    let t = p.r#type.as_deref().unwrap_or_default();
    let kind = t.rsplit(':').next().unwrap_or_default();
    match kind {
        "connection" => ("the CA could not reach the host on port 80", "open port 80 to the internet on every address the domain's A/AAAA records give, with Nginx listening there (`fullslack doctor` checks both)"),
        "unauthorized" | "incorrectResponse" => ("the CA reached a web server that did not answer with the token", "Nginx on the host must serve /.well-known/acme-challenge/ from the ACME webroot over plain HTTP: deploy the rendered site (`fullslack nginx render`) and pass the same --acme-root here; check no other server answers for the domain"),
        "dns" => ("the CA could not resolve the domain", "create A (and AAAA only if the host answers on IPv6) records for the domain (`fullslack doctor` checks them)"),
        "caa" => ("a CAA record forbids this CA", "add a CAA record allowing the CA, e.g. `0 issue \"letsencrypt.org\"`, or remove the CAA records"),
        "rateLimited" => ("the CA's rate limit was hit", "wait until the time the CA's message gives; do not retry in a loop (this tool's order log stops it from doing so)"),
        "rejectedIdentifier" => ("the CA will not issue for this name", "use a public domain name the CA accepts"),
        "tls" => ("the TLS connection of the validation failed", "check that port 443 serves a working TLS configuration, or that port 80 does not redirect to a broken HTTPS"),
        _ => ("the CA refused", "read the CA's message above"),
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 text of Unix seconds.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// The certificate installed on `host`, if any that parses.
pub async fn read_current<R: Runner>(
    host: &R,
    o: &Options,
) -> Result<Option<CertSummary>, CertsError> {
    let path = format!("{}/fullchain.pem", o.cert_dir.trim_end_matches('/'));
    let out = host.run(&files::read(&path)).await?;
    if !out.success() {
        return Ok(None);
    }
    Ok(inspect::summarize(&out.stdout).ok())
}

fn ari_identifier(cert: &CertSummary) -> Option<CertificateIdentifier<'static>> {
    let (aki, serial) = cert.ari_id.as_ref()?;
    Some(CertificateIdentifier::new(Der::from_slice(aki), Der::from_slice(serial)).into_owned())
}

/// The CA's suggested renewal window (ARI), when the directory offers it.
async fn ari_window(account: Option<&Account>, cert: &CertSummary) -> Option<(i64, i64)> {
    let id = ari_identifier(cert)?;
    match account?.renewal_info(&id).await {
        Ok((info, _)) => Some((
            info.suggested_window.start.unix_timestamp(),
            info.suggested_window.end.unix_timestamp(),
        )),
        Err(e) => {
            tracing::debug!(error = %e, "no renewal information");
            None
        }
    }
}

/// The renewal window of a certificate for this stack.
pub async fn renewal_window(
    stack: &Stack,
    account: Option<&Account>,
    cert: &CertSummary,
) -> Window {
    let ari = match stack.tls.renew_days_before {
        Some(_) => None,
        None => ari_window(account, cert).await,
    };
    policy::window(cert, ari, stack.tls.renew_days_before)
}
