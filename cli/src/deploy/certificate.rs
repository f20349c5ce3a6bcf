//! The certificate step of a deploy (`tls.enabled` stacks), once every host switched:
//! [`crate::certs::ensure`] (issue when the hosts have no valid certificate for the stack's
//! domains, renew when it is due, else nothing: the same account, order log, limits and DNS/CAA
//! checks as `fullslack certs`), then the HTTPS site on the hosts whose site went out HTTP-only
//! because they had no certificate when the release switched ([`super::switch::point_nginx`]).
//!
//! A failure here never touches the release that switched: the hosts keep serving what they
//! served (HTTPS with the old certificate, or plain HTTP when there was none), and the report
//! says why, with the fix. The deploy fails ([`CertificateReport::failure`]) only when a host
//! is left without HTTPS.

use serde::Serialize;

use super::{host::read_log, lock, releases, switch, Plan};
use crate::certs::{self, Options, Outcome};
use crate::commands::lock::Holder;
use crate::error::CliError;
use crate::runner::Runner;
use crate::stack::Stack;

/// What happened to the stack's certificate during a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateReport {
    /// `issued`, `renewed`, `valid` (present and not due: nothing ordered) or `failed`.
    pub result: &'static str,
    /// Names the certificate covers (the stack's domains when there is none).
    pub names: Vec<String>,
    /// Serial (hex) of the certificate served now, if any.
    pub serial: Option<String>,
    /// Its expiry (RFC 3339).
    pub not_after: Option<String>,
    /// When its renewal is due (RFC 3339; a certificate that was not due).
    pub renewal_due: Option<String>,
    /// Why the step failed (the ACME problem in words, a refused order, a host).
    pub error: Option<String>,
    /// The fix.
    pub fix: Option<String>,
    /// Hosts whose site serves plain HTTP only (no certificate there).
    pub http_only: Vec<String>,
}

impl CertificateReport {
    fn failed(stack: &Stack, error: String, fix: Option<String>) -> Self {
        Self {
            result: "failed",
            names: stack.domains.clone(),
            serial: None,
            not_after: None,
            renewal_due: None,
            error: Some(error),
            fix,
            http_only: Vec::new(),
        }
    }

    /// The step failed before it could run on the hosts (a host unreachable): the hosts
    /// keep what the switch left (`served`: host and whether its site is HTTPS).
    pub fn unreachable(stack: &Stack, e: &CliError, served: &[(String, bool)]) -> Self {
        let mut rep = Self::failed(stack, e.to_string(), e.hint());
        rep.http_only = served
            .iter()
            .filter(|(_, https)| !https)
            .map(|(h, _)| h.clone())
            .collect();
        rep
    }

    /// One line: what happened and until when the certificate is valid.
    pub fn describe(&self) -> String {
        let names = self.names.join(", ");
        let cert = match (&self.serial, &self.not_after) {
            (Some(serial), Some(until)) => format!("valid until {until} (serial {serial})"),
            _ => "no certificate".into(),
        };
        match self.result {
            "failed" => {
                let kept = match (&self.not_after, self.http_only.is_empty()) {
                    (Some(until), true) => {
                        format!("the current certificate (valid until {until}) keeps serving")
                    }
                    _ => format!("{} serve(s) plain HTTP only", self.http_only.join(", ")),
                };
                format!(
                    "FAILED for {names}: {}; {kept}; fix: {}",
                    self.error.as_deref().unwrap_or("unknown"),
                    self.fix.as_deref().unwrap_or("see the error")
                )
            }
            "valid" => format!(
                "{cert} for {names}; renewal due from {}",
                self.renewal_due.as_deref().unwrap_or("?")
            ),
            verb => format!("{verb} for {names}, {cert}"),
        }
    }

    /// The deploy's error when a host is left without HTTPS (the exit code is then 1; a
    /// failed renewal with the old certificate still serving is only reported).
    pub fn failure(&self) -> Option<CliError> {
        if self.http_only.is_empty() {
            return None;
        }
        Some(CliError::Failed {
            message: format!(
                "the release switched, but {} serve(s) plain HTTP only: no certificate for {}: {}",
                self.http_only.join(", "),
                self.names.join(", "),
                self.error
                    .as_deref()
                    .unwrap_or("no certificate on the host")
            ),
            hint: self.fix.clone().unwrap_or_else(|| {
                "`fullslack certs status --stack FILE` shows what each host has".into()
            }),
        })
    }
}

/// The certificate step on `hosts` (their plans in the same order; `served_https`: whether
/// each one's site went out as HTTPS when its release switched).
pub async fn after_switch<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    plans: &[Plan],
    served_https: &[bool],
    o: &Options,
) -> CertificateReport {
    let outcome = certs::ensure(stack, hosts, o).await;
    let installed = matches!(outcome, Ok(Outcome::Issued(_) | Outcome::Renewed(_)));
    let mut rep = match outcome {
        Ok(Outcome::Issued(r)) => from_certificate("issued", &r.certificate, None),
        Ok(Outcome::Renewed(r)) => from_certificate("renewed", &r.certificate, None),
        Ok(Outcome::NotDue {
            certificate,
            window,
        }) => from_certificate("valid", &certificate, Some(window.start)),
        Err(e) => {
            let mut rep = CertificateReport::failed(stack, e.to_string(), Some(e.hint()));
            // What keeps serving meanwhile, and for how long.
            if let Some(h) = hosts.first() {
                if let Ok(Some(cur)) = certs::read_current(h, o).await {
                    rep.serial = Some(cur.serial);
                    rep.not_after = Some(certs::rfc3339(cur.not_after));
                }
            }
            rep
        }
    };
    for ((r, p), https) in hosts.iter().zip(plans).zip(served_https) {
        let https = if *https || !installed {
            *https
        } else {
            match serve_https(r, p).await {
                Ok(https) => https,
                Err(e) => {
                    rep.error = Some(format!("the HTTPS site on {}: {e}", r.host()));
                    rep.fix = e.hint();
                    false
                }
            }
        };
        if !https {
            rep.http_only.push(r.host());
        }
    }
    rep
}

fn from_certificate(
    result: &'static str,
    c: &certs::inspect::CertSummary,
    renewal_due: Option<i64>,
) -> CertificateReport {
    CertificateReport {
        result,
        names: c.names.clone(),
        serial: Some(c.serial.clone()),
        not_after: Some(certs::rfc3339(c.not_after)),
        renewal_due: renewal_due.map(certs::rfc3339),
        error: None,
        fix: None,
        http_only: Vec::new(),
    }
}

/// The host's site re-rendered now that it has a certificate, under the host's deploy lock
/// and pointed at the colour its release log says is live (not the one this deploy switched
/// to: another deploy may have switched since this one released the lock).
async fn serve_https<R: Runner>(r: &R, p: &Plan) -> Result<bool, CliError> {
    let me = Holder::new(
        p.who.clone(),
        releases::now(),
        "deploy: HTTPS site with the new certificate".into(),
    );
    let root = p.layout.lock_root();
    lock::take(r, &root, &p.layout.stack, &me, p.lock).await?;
    let res = async {
        let log = read_log(r, &p.layout.releases_file()).await?;
        match log.live() {
            Some(live) => switch::point_nginx(r, &p.nginx, live.color).await,
            None => Ok(false),
        }
    }
    .await;
    let released = lock::give_back(r, &root, &p.layout.stack, &me).await;
    let https = res?;
    released?;
    Ok(https)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        toml::from_str(
            "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"ssh\"\n\
             [[hosts]]\naddress = \"203.0.113.7\"\n[image]\nname = \"chat/chat\"\n",
        )
        .expect("stack")
    }

    #[test]
    fn a_failed_renewal_with_the_old_certificate_serving_is_reported_not_fatal() {
        let mut rep = CertificateReport::failed(
            &stack(),
            "validation of the order failed: the CA could not reach the host on port 80".into(),
            Some("open port 80".into()),
        );
        rep.serial = Some("0a:1b".into());
        rep.not_after = Some("2027-01-01T00:00:00Z".into());
        assert!(rep.failure().is_none());
        assert_eq!(
            rep.describe(),
            "FAILED for chat.example.com: validation of the order failed: the CA could not reach \
             the host on port 80; the current certificate (valid until 2027-01-01T00:00:00Z) \
             keeps serving; fix: open port 80"
        );
    }

    #[test]
    fn a_host_left_on_plain_http_fails_the_deploy_with_the_fix() {
        let e = CliError::Failed {
            message: "connection refused".into(),
            hint: "check sshd".into(),
        };
        let rep = CertificateReport::unreachable(
            &stack(),
            &e,
            &[("a".into(), true), ("b".into(), false)],
        );
        assert_eq!(rep.http_only, ["b"]);
        let err = rep.failure().expect("a failure");
        assert_eq!(
            err.to_string(),
            "the release switched, but b serve(s) plain HTTP only: no certificate for \
             chat.example.com: connection refused"
        );
        assert_eq!(err.hint().as_deref(), Some("check sshd"));
    }
}
