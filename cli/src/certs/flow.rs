//! The commands' flows: `issue` (refused while a certificate this tool issued is not due),
//! `renew` (only what is due, unless forced), `ensure` (what a deploy calls) and `status`.
//! Every order goes through the order log's limits and, unless skipped, `doctor`'s DNS and
//! CAA checks first; a failure anywhere before the install leaves the served files untouched.

use std::time::Instant;

use serde::Serialize;

use super::inspect::{sorted_names, CertSummary};
use super::policy::{OrderLog, OrderOutcome, OrderRecord, Window, WindowSource};
use super::{
    account, ari_identifier, ari_window, install, now, order, read_current, renewal_window,
    rfc3339, CertsError, Options,
};
use crate::check::Outcome as CheckOutcome;
use crate::runner::Runner;
use crate::stack::Stack;

/// What an order did.
#[derive(Debug, Clone, Serialize)]
pub struct IssueReport {
    /// ACME directory.
    pub directory: String,
    /// Hosts the certificate was installed on.
    pub hosts: Vec<String>,
    /// The new certificate.
    pub certificate: CertSummary,
    /// Wall time from the first check to the reload of the last host.
    pub seconds: f64,
}

/// What `renew` and `ensure` found and did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Outcome {
    /// There was no certificate for the names: one was issued.
    Issued(IssueReport),
    /// The certificate was due (or forced): a new one replaced it.
    Renewed(IssueReport),
    /// Nothing to do before the window starts.
    NotDue {
        /// The installed certificate.
        certificate: CertSummary,
        /// Its renewal window.
        window: Window,
    },
}

/// One domain's certificate on one host, for `certs status`.
#[derive(Debug, Clone, Serialize)]
pub struct DomainStatus {
    /// Domain.
    pub domain: String,
    /// Host.
    pub host: String,
    /// Whether the installed certificate covers the domain.
    pub covered: bool,
    /// The installed certificate (absent: none, or unreadable).
    pub certificate: Option<CertStatus>,
}

/// A certificate's dates and renewal window.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    /// Issuer.
    pub issuer: String,
    /// Serial (hex).
    pub serial: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
    /// Whole days left.
    pub days_left: i64,
    /// Renewal window start (RFC 3339).
    pub window_start: String,
    /// Renewal window end (RFC 3339).
    pub window_end: String,
    /// Where the window comes from.
    pub window_source: WindowSource,
    /// When the next renewal is due (RFC 3339): the window's start.
    pub next_renewal_due: String,
    /// Due now.
    pub due: bool,
}

fn first<R>(hosts: &[R]) -> Result<&R, CertsError> {
    hosts.first().ok_or_else(|| CertsError::Refused {
        message: "the stack has no host to install a certificate on".into(),
        hint: "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)".into(),
    })
}

fn load_log(o: &Options) -> Result<OrderLog, CertsError> {
    let path = o.log_path();
    OrderLog::load(&path).map_err(|e| CertsError::local(&path, e))
}

/// `certs issue`: one order for the stack's domains, installed on every host. Refused while
/// a certificate this tool issued for the same names from the same directory is not due.
pub async fn issue<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    o: &Options,
    force: bool,
) -> Result<IssueReport, CertsError> {
    let host = first(hosts)?;
    let directory = account::directory_url(stack);
    let log = load_log(o)?;
    if !force {
        if let Some(cur) = read_current(host, o).await? {
            let ours = from_directory(host, o, &log, &directory, &cur).await;
            if ours && cur.covers_exactly(&stack.domains) && now() < cur.not_after {
                let acct = account::existing(stack, &o.state_dir).await?;
                let w = renewal_window(stack, acct.as_ref(), &cur).await;
                if !w.due(now()) {
                    return Err(refuse_second(&cur, &w));
                }
            }
        }
    }
    order_and_install(stack, hosts, o, log, None).await
}

fn refuse_second(cur: &CertSummary, w: &Window) -> CertsError {
    CertsError::Refused {
        message: format!(
            "a valid certificate for {} (serial {}) has {} days left and is not due for renewal until {} ({}): a second one now would only count against the CA's duplicate-certificate limit (5 per week)",
            cur.names.join(", "),
            cur.serial,
            (cur.not_after - now()).div_euclid(super::policy::DAY),
            rfc3339(w.start),
            window_words(w.source),
        ),
        hint: "`fullslack certs renew` renews it once due (`certs status` shows when); --force orders a new one anyway".into(),
    }
}

fn window_words(s: WindowSource) -> &'static str {
    match s {
        WindowSource::Configured => "tls.renew_days_before",
        WindowSource::Ari => "the CA's renewal information",
        WindowSource::ThirdOfLifetime => "a third of the lifetime left",
    }
}

/// `certs renew`: a new certificate when the installed one is due (or `force`).
pub async fn renew<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    o: &Options,
    force: bool,
) -> Result<Outcome, CertsError> {
    let host = first(hosts)?;
    let Some(cur) = read_current(host, o).await? else {
        return Err(CertsError::Refused {
            message: format!("no certificate in {} on {}", o.cert_dir, host.host()),
            hint: "issue one first: `fullslack certs issue --stack FILE`".into(),
        });
    };
    let acct = account::existing(stack, &o.state_dir).await?;
    let w = renewal_window(stack, acct.as_ref(), &cur).await;
    let same_names = cur.covers_exactly(&stack.domains);
    if !force && same_names && !w.due(now()) {
        return Ok(Outcome::NotDue {
            certificate: cur,
            window: w,
        });
    }
    let log = load_log(o)?;
    // RFC 9773 §5: say which certificate this one replaces (the CA then knows the renewal
    // is the one it asked for), when the CA offers ARI and issued the old one to us.
    let ours = log.issued_here(&account::directory_url(stack), &cur.serial);
    let ari = match acct.as_ref() {
        Some(a) if ours && same_names => ari_window(Some(a), &cur).await,
        _ => None,
    };
    let replaces = ari.and_then(|_| ari_identifier(&cur));
    order_and_install(stack, hosts, o, log, replaces)
        .await
        .map(Outcome::Renewed)
}

/// Whether `cur` came from `directory`, as far as this tool can tell: this machine's order
/// log says it issued that serial there, or the host's [`install::Origin`] does (written by
/// whichever machine installed it).
async fn from_directory<R: Runner>(
    host: &R,
    o: &Options,
    log: &OrderLog,
    directory: &str,
    cur: &CertSummary,
) -> bool {
    if log.issued_here(directory, &cur.serial) {
        return true;
    }
    install::origin(host, &o.cert_dir)
        .await
        .is_some_and(|x| x.directory == directory && x.serial == cur.serial)
}

/// What a deploy calls: issue when the hosts have no valid certificate for the stack's
/// domains (none, expired, other names, or not from the stack's ACME directory as far as
/// [`from_directory`] can tell: a placeholder, another CA, staging after the switch to
/// production), renew when it is due, else nothing.
pub async fn ensure<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    o: &Options,
) -> Result<Outcome, CertsError> {
    let host = first(hosts)?;
    let directory = account::directory_url(stack);
    let log = load_log(o)?;
    let valid = match read_current(host, o).await? {
        Some(cur) => {
            cur.covers_exactly(&stack.domains)
                && now() < cur.not_after
                && from_directory(host, o, &log, &directory, &cur).await
        }
        None => false,
    };
    if valid {
        renew(stack, hosts, o, false).await
    } else {
        issue(stack, hosts, o, false).await.map(Outcome::Issued)
    }
}

/// The limits, the checks, the order, the log, the install.
async fn order_and_install<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    o: &Options,
    mut log: OrderLog,
    replaces: Option<instant_acme::CertificateIdentifier<'static>>,
) -> Result<IssueReport, CertsError> {
    let started = Instant::now();
    let directory = account::directory_url(stack);
    let names = sorted_names(&stack.domains);
    if let Some(hit) = log.check(&directory, &names, now()) {
        return Err(CertsError::Refused {
            message: format!("not ordering: another order now would go over Let's Encrypt's limit on {} (counted in this machine's order log)", hit.limit),
            hint: format!("it clears at {}; fix what made the orders fail meanwhile (`fullslack doctor`)", rfc3339(hit.clears_at)),
        });
    }
    if !o.skip_checks {
        preflight(stack, o).await?;
    }
    let acct = account::load_or_create(stack, &o.state_dir).await?;
    let issued = match order::order(&acct, &stack.domains, hosts, &o.acme_root, replaces).await {
        Ok(i) => i,
        Err(e) => {
            if let CertsError::Validation { detail, .. } = &e {
                record(
                    &mut log,
                    &directory,
                    &names,
                    OrderOutcome::Failed,
                    None,
                    Some(detail.clone()),
                    o,
                )?;
            }
            return Err(e);
        }
    };
    let cert = super::inspect::summarize(&issued.chain_pem).map_err(|e| {
        CertsError::acme_str(format!("the CA sent a chain that does not parse: {e}"))
    })?;
    record(
        &mut log,
        &directory,
        &names,
        OrderOutcome::Issued,
        Some(cert.serial.clone()),
        None,
        o,
    )?;
    let origin = install::Origin {
        directory: directory.clone(),
        serial: cert.serial.clone(),
    };
    let mut done = Vec::new();
    for h in hosts {
        install::install(h, &o.cert_dir, &issued.chain_pem, &issued.key_pem, &o.nginx).await?;
        // Best effort: without it, only this machine's order log knows the certificate is
        // ours, and a deploy from elsewhere orders a new one (within the limits).
        if let Err(e) = install::record_origin(h, &o.cert_dir, &origin).await {
            tracing::warn!(host = %h.host(), error = %e, "certificate origin not recorded");
        }
        done.push(h.host());
    }
    Ok(IssueReport {
        directory,
        hosts: done,
        certificate: cert,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn record(
    log: &mut OrderLog,
    directory: &str,
    names: &[String],
    outcome: OrderOutcome,
    serial: Option<String>,
    problem: Option<String>,
    o: &Options,
) -> Result<(), CertsError> {
    let rec = OrderRecord {
        at: now(),
        directory: directory.to_string(),
        names: names.to_vec(),
        outcome,
        serial,
        problem,
    };
    log.append(rec)
        .map_err(|e| CertsError::local(&o.log_path(), e))
}

/// `doctor`'s DNS (A/AAAA against the hosts, IPv6) and CAA checks: an order they would fail
/// is not placed (it would count as a failed validation).
async fn preflight(stack: &Stack, o: &Options) -> Result<(), CertsError> {
    let opts = crate::doctor::DoctorOptions {
        dns_server: o.dns_server,
        skip: ["reach", "tls", "clock", "ssh", "docker", "aws"]
            .into_iter()
            .map(String::from)
            .collect(),
        ..Default::default()
    };
    let report = crate::doctor::run(stack, &opts).await;
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.outcome == CheckOutcome::Fail)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(CertsError::Refused {
        message: format!(
            "nothing was ordered: the DNS/CAA checks say validation would fail: {}",
            failed
                .iter()
                .map(|c| format!("{} {}: {}", c.name, c.subject, c.detail))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        hint: failed
            .iter()
            .filter_map(|c| c.fix.clone())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// `certs status`: per host and domain, the installed certificate and its renewal window.
pub async fn status<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    o: &Options,
) -> Result<Vec<DomainStatus>, CertsError> {
    let acct = account::existing(stack, &o.state_dir).await.ok().flatten();
    let mut out = Vec::new();
    for h in hosts {
        let cur = read_current(h, o).await?;
        let cert = match &cur {
            Some(c) => Some((c, renewal_window(stack, acct.as_ref(), c).await)),
            None => None,
        };
        for d in &stack.domains {
            let covered = cur
                .as_ref()
                .is_some_and(|c| c.names.contains(&d.to_ascii_lowercase()));
            out.push(DomainStatus {
                domain: d.clone(),
                host: h.host(),
                covered,
                certificate: cert.map(|(c, w)| CertStatus {
                    issuer: c.issuer.clone(),
                    serial: c.serial.clone(),
                    not_after: rfc3339(c.not_after),
                    days_left: (c.not_after - now()).div_euclid(super::policy::DAY),
                    window_start: rfc3339(w.start),
                    window_end: rfc3339(w.end),
                    window_source: w.source,
                    next_renewal_due: rfc3339(w.start),
                    due: w.due(now()),
                }),
            });
        }
    }
    Ok(out)
}
