//! `fullslack operate`: the loop that keeps a deployed stack healthy. Every round checks each
//! host's live release and repairs what it may repair on its own (a chat container that is
//! down, or unhealthy past a grace period; a certificate that is due); drift between the
//! stack file and what runs is reported, and repaired only with `--fix`.
//!
//! Module map:
//! - [`mod@self`]: the log of a round ([`Journal`]: one JSON line or one human line per check
//!   and per action, counted into the metrics), the checks of one host ([`check_host`]:
//!   release, container, `/healthz` `/readyz` and the WebSocket round trip through
//!   [`crate::health`], the idle colour, Nginx against the render) and of the stack's
//!   certificate ([`check_certs`], renewing through [`crate::certs::renew`]).
//! - [`metrics`]: the counters and their `/metrics` endpoint.
//!
//! What needs the whole command line (the SSH connections, AWS plan drift, a `--fix` redeploy
//! with the stack's secrets, signals, the interval) is in [`crate::cmd::operate`].

pub mod metrics;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::certs::{self, Outcome as CertOutcome};
use crate::check::{Check, Outcome};
use crate::commands::{docker, files, lock as lock_cmd};
use crate::deploy::host::read_log;
use crate::deploy::releases::now;
use crate::deploy::{color_name, switch, Layout, NginxSetup};
use crate::error::CliError;
use crate::health::HealthOptions;
use crate::nginx::render_site;
use crate::runner::Runner;
use crate::stack::Stack;

/// One line of `operate`'s log.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A check and its outcome (`ok`, `fail`, `skip`).
    Check {
        /// When (RFC 3339, UTC).
        at: String,
        /// Host label (`localhost`, the SSH host, or the stack for stack-wide checks).
        host: String,
        /// The check.
        #[serde(flatten)]
        check: Check,
    },
    /// Something operate did (`restart`, `renew`, `remove`, `nginx`, `redeploy`).
    Action {
        /// When.
        at: String,
        /// Host label.
        host: String,
        /// What it did.
        action: String,
        /// On what (a container, the site file, the stack's domains).
        target: String,
        /// Whether it worked.
        ok: bool,
        /// Why, and what came of it.
        detail: String,
    },
    /// Something to know that is neither a check nor an action (a restart pending its grace).
    Note {
        /// When.
        at: String,
        /// Host label.
        host: String,
        /// The note.
        detail: String,
    },
    /// The end of a round.
    Round {
        /// When.
        at: String,
        /// Round number, from 1.
        round: u64,
        /// Checks run.
        checks: usize,
        /// Checks that found a problem.
        failed: usize,
        /// Actions taken.
        actions: usize,
        /// No check failed.
        ok: bool,
        /// How long the round took.
        seconds: f64,
    },
}

/// The log of one round: prints each event as it happens (a JSON line with `--json`, else a
/// human line, both on stdout), counts it into the metrics and keeps it for the summary.
#[derive(Debug)]
pub struct Journal {
    json: bool,
    metrics: metrics::Shared,
    /// Every check of the round with its host.
    pub checks: Vec<(String, Check)>,
    /// Every action of the round.
    pub actions: Vec<Event>,
}

impl Journal {
    /// An empty round log.
    pub fn new(json: bool, metrics: metrics::Shared) -> Self {
        Self {
            json,
            metrics,
            checks: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn emit(&self, e: &Event) {
        if self.json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", human(e));
        }
    }

    /// Logs a check.
    pub fn check(&mut self, host: &str, c: Check) {
        metrics::with(&self.metrics, |m| {
            m.check(&c.name, c.outcome == Outcome::Fail);
        });
        let e = Event::Check {
            at: now(),
            host: host.to_string(),
            check: c.clone(),
        };
        self.emit(&e);
        self.checks.push((host.to_string(), c));
    }

    /// Logs an action: `Ok(what came of it)` or `Err(why it failed)`.
    pub fn action(
        &mut self,
        host: &str,
        action: &str,
        target: &str,
        result: Result<String, String>,
    ) {
        let ok = result.is_ok();
        metrics::with(&self.metrics, |m| m.action(action, ok));
        let e = Event::Action {
            at: now(),
            host: host.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            ok,
            detail: result.unwrap_or_else(|e| e),
        };
        self.emit(&e);
        self.actions.push(e);
    }

    /// Logs a note.
    pub fn note(&self, host: &str, detail: String) {
        self.emit(&Event::Note {
            at: now(),
            host: host.to_string(),
            detail,
        });
    }

    /// Checks that found a problem.
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|(_, c)| c.outcome == Outcome::Fail)
            .count()
    }

    /// Ends the round: logs its line and counts it. Whether every check passed.
    pub fn finish(&self, round: u64, started: Instant) -> bool {
        let failed = self.failed();
        let ok = failed == 0;
        metrics::with(&self.metrics, |m| m.round(ok, Instant::now()));
        self.emit(&Event::Round {
            at: now(),
            round,
            checks: self.checks.len(),
            failed,
            actions: self.actions.len(),
            ok,
            seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        ok
    }

    /// The round as a check report (subjects prefixed with their host), for the summary.
    pub fn report(&self, target: &str) -> crate::check::Report {
        let checks = self
            .checks
            .iter()
            .map(|(h, c)| {
                let mut c = c.clone();
                c.subject = format!("{h}: {}", c.subject);
                c
            })
            .collect();
        crate::check::Report::new(target, checks)
    }
}

/// The human line of an event.
pub fn human(e: &Event) -> String {
    match e {
        Event::Check { host, check, .. } => {
            let outcome = match check.outcome {
                Outcome::Ok => "ok",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            let fix = check
                .fix
                .as_deref()
                .filter(|_| check.outcome == Outcome::Fail)
                .map(|f| format!(" (fix: {f})"))
                .unwrap_or_default();
            format!(
                "{host}: {outcome} {} {}: {}{fix}",
                check.name, check.subject, check.detail
            )
        }
        Event::Action {
            host,
            action,
            target,
            ok,
            detail,
            ..
        } => {
            let result = if *ok { "done" } else { "FAILED" };
            format!("{host}: ACTION {action} {target} {result}: {detail}")
        }
        Event::Note { host, detail, .. } => format!("{host}: {detail}"),
        Event::Round {
            round,
            checks,
            failed,
            actions,
            ok,
            seconds,
            ..
        } => format!(
            "round {round}: {} ({checks} checks, {failed} failed, {actions} actions, {seconds:.1} s)",
            if *ok { "all passed" } else { "PROBLEMS" }
        ),
    }
}

/// What every host's checks need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Repair drift (else only report it).
    pub fix: bool,
    /// How long a running container may stay unhealthy before it is restarted.
    pub grace: Duration,
    /// The health probe (its URL is replaced by the live release's forwarded port).
    pub probe: HealthOptions,
    /// A deploy lock whose heartbeat is older than this belongs to a deploy that died: the
    /// host is checked anyway (`--lock-stale-after`, as deploys judge it).
    pub lock_stale_after: Duration,
}

/// What operate remembers between rounds: since when each container has been unhealthy.
#[derive(Debug, Default)]
pub struct Memory {
    unhealthy_since: HashMap<String, Instant>,
}

/// One host: its names and paths, and the Nginx site its deploy renders.
#[derive(Debug, Clone)]
pub struct HostSetup {
    /// Names and paths on the host.
    pub layout: Layout,
    /// Nginx as `deploy` sets it up there.
    pub nginx: NginxSetup,
}

/// A redeploy of the live release that `--fix` asks of the caller (it needs the stack's
/// secrets and the whole switch: [`crate::deploy::host::deploy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeploy {
    /// The live release's version.
    pub version: String,
    /// Why.
    pub why: String,
}

/// Every check of one host (a failure of the host itself becomes a failed `host` check).
/// Returns the redeploy `--fix` wants, if any.
pub async fn check_host<R: Runner>(
    r: &R,
    h: &HostSetup,
    st: &Settings,
    mem: &mut Memory,
    j: &mut Journal,
) -> Option<Redeploy> {
    match host_checks(r, h, st, mem, j).await {
        Ok(redeploy) => redeploy,
        Err(e) => {
            j.check(
                &r.host(),
                Check::fail(
                    "host",
                    &h.layout.instance(),
                    e.to_string(),
                    e.hint()
                        .unwrap_or_else(|| "check the host is reachable".into()),
                ),
            );
            None
        }
    }
}

async fn host_checks<R: Runner>(
    r: &R,
    h: &HostSetup,
    st: &Settings,
    mem: &mut Memory,
    j: &mut Journal,
) -> Result<Option<Redeploy>, CliError> {
    let host = r.host();
    let instance = h.layout.instance();
    // A deploy in progress starts and retires containers and rewrites the site: nothing of
    // that is drift, and restarting under it would fight it.
    let lock = r
        .run(&lock_cmd::status(&h.layout.lock_root(), &h.layout.stack))
        .await?;
    if let Some(holder) = lock
        .success()
        .then(|| lock_cmd::parse_holder(&lock.stdout))
        .flatten()
    {
        let root = h.layout.lock_root();
        let age = crate::deploy::lock::heartbeat_age(r, &root, &h.layout.stack).await?;
        let bound = st.lock_stale_after.as_secs().max(1);
        let held = format!(
            "{} holds the deploy lock since {} ({})",
            holder.who, holder.since, holder.message
        );
        match age {
            // A deploy that died: its lock must not stop the watch; the next deploy takes
            // it over.
            Some(age) if age > bound => j.check(
                &host,
                Check::fail(
                    "deploy_lock",
                    &instance,
                    format!("{held}, with no heartbeat for {age} s (bound {bound} s): that deploy died"),
                    "the next deploy takes the lock over; or remove it: `fullslack lock release --stack FILE`",
                ),
            ),
            // A deploy at work, or an operator's lock (no heartbeat): hands off.
            _ => {
                j.check(
                    &host,
                    Check::skip(
                        "deploy_lock",
                        &instance,
                        format!("{held}: no restart or drift check while it is held"),
                    ),
                );
                return Ok(None);
            }
        }
    }
    let log = read_log(r, &h.layout.releases_file()).await?;
    let Some(live) = log.live().cloned() else {
        j.check(
            &host,
            Check::fail(
                "release",
                &instance,
                format!("no live release in {}", h.layout.releases_file()),
                "deploy one: `fullslack deploy --stack FILE`",
            ),
        );
        return Ok(None);
    };
    j.check(
        &host,
        Check::ok(
            "release",
            &instance,
            format!(
                "{} live on {} since {}",
                live.version,
                color_name(live.color),
                live.deployed_at
            ),
        ),
    );
    let name = h.layout.container(live.color);
    let redeploy_fix = if st.fix {
        "being redeployed (--fix)"
    } else {
        "run `fullslack operate --fix` (redeploys the live release) or `fullslack deploy`"
    };
    let inspect = r
        .run(&docker::inspect(
            &name,
            "{{.State.Status}}\t{{index .Config.Labels \"fullslack.version\"}}\t{{.Image}}",
        ))
        .await?;
    if !inspect.success() {
        mem.unhealthy_since.remove(&name);
        j.check(
            &host,
            Check::fail(
                "container",
                &name,
                "missing: the live release has no container",
                redeploy_fix,
            ),
        );
        return Ok(st.fix.then(|| Redeploy {
            version: live.version.clone(),
            why: format!("{name} was missing"),
        }));
    }
    let text = inspect.stdout.trim().to_string();
    let mut fields = text.split('\t');
    let state = fields.next().unwrap_or_default();
    let running_version = fields.next().unwrap_or_default();
    let image = fields.next().unwrap_or_default();

    let mut redeploy = None;
    let other_image = !live.image_id.is_empty() && image != live.image_id;
    if running_version != live.version || other_image {
        j.check(
            &host,
            Check::fail(
                "drift.release",
                &name,
                format!(
                    "runs {running_version} ({image}); the release log has {} ({}) live",
                    live.version, live.image_id
                ),
                redeploy_fix,
            ),
        );
        if st.fix {
            redeploy = Some(Redeploy {
                version: live.version.clone(),
                why: format!("{name} ran {running_version}"),
            });
        }
    } else {
        j.check(
            &host,
            Check::ok(
                "drift.release",
                &name,
                format!("runs {}, the live release", live.version),
            ),
        );
    }

    if state == "running" {
        j.check(&host, Check::ok("container", &name, "running"));
        health(r, h, st, mem, j, &name, live.color).await?;
    } else {
        mem.unhealthy_since.remove(&name);
        j.check(
            &host,
            Check::fail(
                "container",
                &name,
                format!("{state}, not running"),
                "operate starts it again (read its log: `docker logs` on the host)",
            ),
        );
        // A paused container cannot be started, only unpaused.
        let (verb, cmd) = if state == "paused" {
            ("unpause", docker::unpause(&name))
        } else {
            ("start", docker::start(&name))
        };
        let started = r.check(&cmd).await;
        j.action(
            &host,
            "restart",
            &name,
            started
                .map(|_| format!("it was {state}: docker {verb}"))
                .map_err(|e| e.to_string()),
        );
    }

    stray(r, h, st, j, &live, &name).await?;
    nginx_drift(r, h, st, j, live.color).await?;
    Ok(redeploy)
}

/// `/healthz`, `/readyz` and the WebSocket round trip of the live release, through its
/// forwarded port; a restart once it has failed for longer than the grace period.
async fn health<R: Runner>(
    r: &R,
    h: &HostSetup,
    st: &Settings,
    mem: &mut Memory,
    j: &mut Journal,
    name: &str,
    color: crate::nginx::Color,
) -> Result<(), CliError> {
    let host = r.host();
    let Some(port) = h.nginx.port(color) else {
        j.check(
            &host,
            Check::fail(
                "readyz",
                name,
                format!("the Nginx site has no {} upstream", color_name(color)),
                "check app.host_port and app.replicas in the stack file",
            ),
        );
        return Ok(());
    };
    let local = r.reach(port).await?;
    let mut probe = st.probe.clone();
    probe.url = reqwest::Url::parse(&format!("http://127.0.0.1:{local}/")).map_err(|e| {
        CliError::Failed {
            message: format!("probe URL: {e}"),
            hint: "this is a bug: please report it".into(),
        }
    })?;
    let report = crate::health::run(&probe).await;
    let healthy = report.ok;
    for mut c in report.checks {
        c.subject = name.to_string();
        j.check(&host, c);
    }
    if healthy {
        mem.unhealthy_since.remove(name);
        return Ok(());
    }
    let since = *mem
        .unhealthy_since
        .entry(name.to_string())
        .or_insert_with(Instant::now);
    let unhealthy_for = since.elapsed();
    if unhealthy_for < st.grace {
        j.note(
            &host,
            format!(
                "{name} unhealthy for {} s: restarted when it still is after {} s",
                unhealthy_for.as_secs(),
                st.grace.as_secs()
            ),
        );
        return Ok(());
    }
    mem.unhealthy_since.remove(name);
    let restarted = r.check(&docker::restart(name, 10)).await;
    j.action(
        &host,
        "restart",
        name,
        restarted
            .map(|_| {
                format!(
                    "unhealthy for {} s (grace {} s): docker restart",
                    unhealthy_for.as_secs(),
                    st.grace.as_secs()
                )
            })
            .map_err(|e| e.to_string()),
    );
    Ok(())
}

/// The idle colour's container: the release log has nothing live there, so a container of
/// that name is a leftover or something started by hand (removed with `--fix`).
async fn stray<R: Runner>(
    r: &R,
    h: &HostSetup,
    st: &Settings,
    j: &mut Journal,
    live: &crate::deploy::releases::Release,
    live_name: &str,
) -> Result<(), CliError> {
    let host = r.host();
    let idle = h.layout.container(live.color.other());
    let found = r
        .run(&docker::inspect(
            &idle,
            "{{.State.Status}} {{index .Config.Labels \"fullslack.version\"}}",
        ))
        .await?;
    if !found.success() {
        j.check(
            &host,
            Check::ok(
                "drift.stray",
                &idle,
                format!("absent: only {live_name} runs the stack here"),
            ),
        );
        return Ok(());
    }
    j.check(
        &host,
        Check::fail(
            "drift.stray",
            &idle,
            format!(
                "exists ({}) though the release log has {} live on {}",
                found.stdout.trim(),
                live.version,
                color_name(live.color)
            ),
            if st.fix {
                "being removed (--fix)"
            } else {
                "run `fullslack operate --fix` to remove it (it gets no traffic)"
            },
        ),
    );
    if st.fix {
        let removed = r.check(&docker::rm(&idle)).await;
        j.action(
            &host,
            "remove",
            &idle,
            removed
                .map(|_| "not in the release log: docker rm --force".to_string())
                .map_err(|e| e.to_string()),
        );
    }
    Ok(())
}

/// The host's site file against what the stack renders now for the live colour; with
/// `--fix` the render is written back (`nginx -t` first, the old file restored on refusal).
async fn nginx_drift<R: Runner>(
    r: &R,
    h: &HostSetup,
    st: &Settings,
    j: &mut Journal,
    color: crate::nginx::Color,
) -> Result<(), CliError> {
    let host = r.host();
    let path = &h.nginx.site_path;
    let site = switch::site_for(r, &h.nginx, color).await?;
    let rendered = render_site(&site)?;
    let on_host = r.run(&files::read(path)).await?;
    let differs = if on_host.success() {
        first_difference(&on_host.stdout, &rendered)
    } else {
        Some(format!("missing: {}", on_host.stderr.trim()))
    };
    let Some(difference) = differs else {
        j.check(
            &host,
            Check::ok("drift.nginx", path, "the site is the stack's render"),
        );
        return Ok(());
    };
    j.check(
        &host,
        Check::fail(
            "drift.nginx",
            path,
            difference,
            if st.fix {
                "being rewritten from the render (--fix)"
            } else {
                "run `fullslack operate --fix` to write the render back (`fullslack nginx render` shows it)"
            },
        ),
    );
    if st.fix {
        let written = switch::point_nginx(r, &h.nginx, color).await;
        j.action(
            &host,
            "nginx",
            path,
            written
                .map(|_| "the render written back, nginx -t passed, Nginx reloaded".to_string())
                .map_err(|e| e.to_string()),
        );
    }
    Ok(())
}

/// `None` when equal, else where the two texts first differ (line number and both lines).
pub fn first_difference(on_host: &str, rendered: &str) -> Option<String> {
    if on_host == rendered {
        return None;
    }
    let mut a = on_host.lines();
    let mut b = rendered.lines();
    let mut n = 0;
    loop {
        n += 1;
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                let show = |l: Option<&str>| {
                    l.map_or_else(
                        || "(end of file)".to_string(),
                        |l| format!("`{}`", l.trim()),
                    )
                };
                return Some(format!(
                    "differs from the render at line {n}: host has {}, render has {}",
                    show(x),
                    show(y)
                ));
            }
        }
    }
}

/// The stack's certificate on each host: days left (a failure when expired, missing or not
/// covering a domain), and a renewal through [`certs::renew`] when it is due.
pub async fn check_certs<R: Runner>(
    stack: &Stack,
    hosts: &[R],
    o: &certs::Options,
    j: &mut Journal,
) {
    let statuses = match certs::status(stack, hosts, o).await {
        Ok(s) => s,
        Err(e) => {
            j.check(
                &stack.name,
                Check::fail("tls.certificate", &o.cert_dir, e.to_string(), e.hint()),
            );
            return;
        }
    };
    let mut due = false;
    for d in statuses {
        let subject = d.domain.clone();
        let c = match (&d.certificate, d.covered) {
            (None, _) => Check::fail(
                "tls.certificate",
                &subject,
                format!("no certificate in {}", o.cert_dir),
                "issue one: `fullslack certs issue --stack FILE`",
            ),
            (Some(c), false) => Check::fail(
                "tls.certificate",
                &subject,
                format!("the certificate (serial {}) does not cover it", c.serial),
                "issue one for the stack's domains: `fullslack certs issue --stack FILE --force`",
            ),
            (Some(c), true) => {
                due |= c.due;
                let detail = format!(
                    "{} days left (expires {}), renewal due from {}{}",
                    c.days_left,
                    c.not_after,
                    c.next_renewal_due,
                    if c.due { ": due now" } else { "" }
                );
                if c.days_left < 0 {
                    Check::fail(
                        "tls.certificate",
                        &subject,
                        format!("expired: {detail}"),
                        "operate renews it; if that fails, see `fullslack certs renew`",
                    )
                } else {
                    Check::ok("tls.certificate", &subject, detail)
                }
            }
        };
        j.check(&d.host, c);
    }
    if !due {
        return;
    }
    let domains = stack.domains.join(", ");
    let renewed = certs::renew(stack, hosts, o, false).await;
    j.action(
        &stack.name,
        "renew",
        &domains,
        match renewed {
            Ok(CertOutcome::Renewed(rep) | CertOutcome::Issued(rep)) => Ok(format!(
                "due: renewed, serial {}, expires {}, installed on {}",
                rep.certificate.serial,
                certs::rfc3339(rep.certificate.not_after),
                rep.hosts.join(", ")
            )),
            Ok(CertOutcome::NotDue { window, .. }) => Ok(format!(
                "not due after all: renewal due from {}",
                certs::rfc3339(window.start)
            )),
            Err(e) => Err(format!("{e} (fix: {})", e.hint())),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_names_the_line_and_both_texts() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_difference("a\nx\n", "a\nb\n").as_deref(),
            Some("differs from the render at line 2: host has `x`, render has `b`")
        );
        assert_eq!(
            first_difference("a\nb\n# edited\n", "a\nb\n").as_deref(),
            Some(
                "differs from the render at line 3: host has `# edited`, render has (end of file)"
            )
        );
    }

    #[test]
    fn events_are_one_json_line_each_and_a_human_line() {
        let c = Check::fail("readyz", "chat-blue", "503 not ready", "read its log");
        let e = Event::Check {
            at: "2026-11-30T00:00:00Z".into(),
            host: "web1".into(),
            check: c,
        };
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&e).expect("json")).expect("parse");
        assert_eq!(v["kind"], "check");
        assert_eq!(v["name"], "readyz");
        assert_eq!(v["outcome"], "fail");
        assert_eq!(v["host"], "web1");
        assert_eq!(
            human(&e),
            "web1: FAIL readyz chat-blue: 503 not ready (fix: read its log)"
        );
        let a = Event::Action {
            at: "2026-11-30T00:00:00Z".into(),
            host: "web1".into(),
            action: "restart".into(),
            target: "chat-blue".into(),
            ok: true,
            detail: "it was exited: docker start".into(),
        };
        assert_eq!(
            human(&a),
            "web1: ACTION restart chat-blue done: it was exited: docker start"
        );
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(v["kind"], "action");
        assert_eq!(v["ok"], true);
    }
}
