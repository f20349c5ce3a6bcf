//! Installing a chain and its key on a host: both written beside the live files first (the key
//! with umask 077 and mode 0600 from its first byte), the live ones kept as `*.fullslack-old`,
//! renamed into place, `nginx -t`; a config Nginx refuses puts the old files back before
//! anything reloads, so the certificate being served never changes for a bad one. Then a
//! reload: Nginx starts new workers with the new certificate and lets the old ones finish
//! their connections. Beside them, `acme-origin.json` says which ACME directory issued the
//! installed certificate ([`Origin`]).

use serde::{Deserialize, Serialize};

use super::CertsError;
use crate::commands::nginx::{self, NginxPaths};
use crate::commands::{files, sh, Cmd, StdinData};
use crate::runner::Runner;
use crate::secret::SecretString;

const CHAIN: &str = "fullchain.pem";
const KEY: &str = "privkey.pem";
const NEW: &str = ".fullslack-new";
const OLD: &str = ".fullslack-old";
const ORIGIN: &str = "acme-origin.json";

/// Which ACME directory issued the installed certificate, written on the host beside it after
/// an install. A deploy from another machine (a CI runner without this machine's order log)
/// then still knows the certificate is this directory's and does not order it again, while a
/// certificate from elsewhere (a placeholder, another CA, staging once the stack says
/// production) is replaced. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// ACME directory URL.
    pub directory: String,
    /// Serial (hex) of the certificate it issued.
    pub serial: String,
}

/// Records `origin` beside the certificate in `cert_dir`.
pub async fn record_origin<R: Runner>(
    host: &R,
    cert_dir: &str,
    origin: &Origin,
) -> Result<(), CertsError> {
    let path = format!("{}/{ORIGIN}", cert_dir.trim_end_matches('/'));
    let text = serde_json::to_string(origin).unwrap_or_default();
    host.check(&files::write(&path, &format!("{text}\n"), 0o644))
        .await?;
    Ok(())
}

/// The origin recorded in `cert_dir`, if any that parses.
pub async fn origin<R: Runner>(host: &R, cert_dir: &str) -> Option<Origin> {
    let path = format!("{}/{ORIGIN}", cert_dir.trim_end_matches('/'));
    let out = host.run(&files::read(&path)).await.ok()?;
    out.success()
        .then(|| serde_json::from_str(out.stdout.trim()).ok())
        .flatten()
}

/// Writes the key: `umask 077` first, so no moment exists where another user could read it.
fn write_key(path: &str, key: &SecretString) -> Cmd {
    let dir = path
        .rsplit_once('/')
        .map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
    let tmp = format!("{path}.fullslack-tmp");
    let script = Cmd::new("umask")
        .arg("077")
        .and(Cmd::new("mkdir").args(["-p", dir]))
        .and(Cmd::new("cat").redirect_to(&tmp))
        .and(Cmd::new("chmod").args(["600", &tmp]))
        .and(Cmd::new("mv").args(["-f", &tmp, path]));
    sh(&script).stdin(StdinData::Secret(key.clone()))
}

/// Installs `chain` and `key` under `cert_dir` on `host`, checks and reloads Nginx.
pub async fn install<R: Runner>(
    host: &R,
    cert_dir: &str,
    chain: &str,
    key: &SecretString,
    paths: &NginxPaths,
) -> Result<(), CertsError> {
    let dir = cert_dir.trim_end_matches('/');
    let live = |f: &str| format!("{dir}/{f}");
    let with = |f: &str, suffix: &str| format!("{dir}/{f}{suffix}");
    host.check(&files::write(&with(CHAIN, NEW), chain, 0o644))
        .await?;
    host.check(&write_key(&with(KEY, NEW), key)).await?;
    for f in [CHAIN, KEY] {
        // `cp -p` keeps the old key's 0600.
        let keep = Cmd::new("test")
            .args(["!", "-e", &live(f)])
            .or(Cmd::new("cp").args(["-p", &live(f), &with(f, OLD)]));
        host.check(&keep).await?;
    }
    let swap = Cmd::new("mv")
        .args(["-f", &with(CHAIN, NEW), &live(CHAIN)])
        .and(Cmd::new("mv").args(["-f", &with(KEY, NEW), &live(KEY)]));
    host.check(&swap).await?;
    let tested = host.run(&nginx::test(paths)).await?;
    if !tested.success() {
        put_back(host, dir).await;
        return Err(CertsError::Install {
            host: host.host(),
            detail: tested.stderr.trim().to_string(),
        });
    }
    host.check(&nginx::reload(paths)).await?;
    Ok(())
}

/// The files from before the install back in place (or none, when there were none).
async fn put_back<R: Runner>(host: &R, dir: &str) {
    for f in [CHAIN, KEY] {
        let live = format!("{dir}/{f}");
        let old = format!("{dir}/{f}{OLD}");
        let restore = Cmd::new("test")
            .args(["-e", &old])
            .and(Cmd::new("mv").args(["-f", &old, &live]))
            .or(files::remove(&live));
        if let Err(e) = host.run(&restore).await {
            tracing::warn!(error = %e, file = %live, "cannot put the old certificate file back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_never_readable_by_others_and_never_printed() {
        let c = write_key(
            "/etc/fullslack/certs/chat/privkey.pem.fullslack-new",
            &SecretString::from("KEY".to_string()),
        );
        let line = c.to_shell();
        assert!(
            line.starts_with("sh -c 'umask 077 && mkdir -p /etc/fullslack/certs/chat && cat > "),
            "{line}"
        );
        assert!(line.contains("chmod 600"), "{line}");
        assert!(!c.to_string().contains("KEY"), "{c}");
        assert!(c.to_string().ends_with("<<< [redacted]"), "{c}");
    }
}
