//! `fullslack operate`: rounds of checks until SIGTERM/SIGINT (or one round with `--once`).
//! Each round reloads the stack file (drift is measured against what it says now), connects
//! to its hosts (this machine for a `local` stack, SSH otherwise: one connection per host per
//! round, so the forwarded probe ports close with it), runs [`crate::operate::check_host`] on
//! each, redeploys a live release with `--fix` when its container is gone or runs another
//! release, checks and renews the certificate when `tls.enabled`, and for an `ec2` stack runs
//! the AWS plan (report-only: changes there are `fullslack apply`'s). A signal cancels the
//! sleep or the round in flight (its commands are killed with it) and ends the process.

use std::pin::pin;
use std::time::Instant;

use fullslack_aws::Aws;
use tokio::signal::unix::{signal, SignalKind};

use super::deploy::{host_nginx, host_plan, plan, probe_options, ssh_targets};
use super::usage;
use crate::args::{AwsOpts, OperateArgs};
use crate::aws_spec::spec_of;
use crate::check::Check;
use crate::deploy::{host, Transfer, Wanted};
use crate::error::CliError;
use crate::operate::{self, metrics, HostSetup, Journal, Memory, Redeploy, Settings};
use crate::output::Reporter;
use crate::runner::{LocalRunner, Runner, SshRunner};
use crate::stack::{Host, Stack, Target};

/// Runs the loop.
pub async fn run(a: &OperateArgs, r: &Reporter) -> Result<(), CliError> {
    let s = crate::stack::load(&a.stack.stack)?;
    if s.target == Target::Ecs {
        return Err(usage(
            format!("stack `{}` runs on ECS: `operate` does not watch it", s.name),
            "ECS replaces unhealthy tasks itself and the ALB holds the certificate: watch it with `fullslack health --stack FILE` and drift with `fullslack plan --stack FILE`",
        ));
    }
    let signal_err = |e: std::io::Error| CliError::Failed {
        message: format!("cannot handle SIGTERM/SIGINT: {e}"),
        hint: "this is a bug: please report it".into(),
    };
    // Registered before the first round: a signal during it stops it too.
    let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut stop = pin!(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    });

    let shared = metrics::Shared::default();
    if let Some(addr) = a.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Failed {
                message: format!("cannot listen on {addr} for /metrics: {e}"),
                hint: "pick a free address with --metrics-listen (e.g. 127.0.0.1:9464)".into(),
            })?;
        let bound = listener.local_addr().unwrap_or(addr);
        say(r, "listening", &format!("http://{bound}/metrics"));
        let served = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, served).await {
                tracing::error!(error = %e, "the /metrics server stopped");
            }
        });
    }

    let mut mem = Memory::default();
    let mut last_summary = None;
    let mut round = 0;
    loop {
        round += 1;
        let started = Instant::now();
        let mut j = Journal::new(r.json, shared.clone());
        let stopped = tokio::select! {
            sig = &mut stop => Some(sig),
            () = one_round(a, &mut mem, &mut j) => None,
        };
        if let Some(sig) = stopped {
            return stopped_by(r, sig, last_summary.as_deref());
        }
        let ok = j.finish(round, started);
        let summary = summary_markdown(&s.name, round, &j);
        if a.once {
            if let Some(gh) = crate::actions::detect() {
                gh.summary(&summary);
            }
            return if ok {
                Ok(())
            } else {
                Err(CliError::ChecksFailed(j.failed()))
            };
        }
        last_summary = Some(summary);
        tokio::select! {
            sig = &mut stop => return stopped_by(r, sig, last_summary.as_deref()),
            () = tokio::time::sleep(a.interval) => {}
        }
    }
}

/// Ends the loop on a signal: says so, and in GitHub Actions leaves the last round's summary.
fn stopped_by(r: &Reporter, sig: &str, summary: Option<&str>) -> Result<(), CliError> {
    say(r, "stopped", &format!("{sig}: stopped"));
    if let (Some(gh), Some(md)) = (crate::actions::detect(), summary) {
        gh.summary(md);
    }
    Ok(())
}

/// One line about operate itself (`listening`, `stopped`).
fn say(r: &Reporter, kind: &str, detail: &str) {
    if r.json {
        println!(
            "{}",
            serde_json::json!({"kind": kind, "at": crate::deploy::releases::now(), "detail": detail})
        );
    } else {
        println!("operate {kind}: {detail}");
    }
}

/// The step summary of a round: the checks (failures with their fixes first), then the
/// actions taken.
fn summary_markdown(stack: &str, round: u64, j: &Journal) -> String {
    let mut md = crate::actions::checks_markdown(
        &format!("operate, round {round}, of stack"),
        &j.report(stack),
    );
    md.push_str(&crate::actions::operate_actions_markdown(&j.actions));
    md
}

/// One round over the stack's hosts; every problem, the stack file's included, is a check.
async fn one_round(a: &OperateArgs, mem: &mut Memory, j: &mut Journal) {
    let file = a.stack.stack.display().to_string();
    let mut s = match crate::stack::load(&a.stack.stack) {
        Ok(s) => s,
        Err(e) => {
            let e = CliError::from(e);
            let fix = e.hint().unwrap_or_default();
            j.check(&file, Check::fail("stack", &file, e.to_string(), fix));
            return;
        }
    };
    if let Err(e) = crate::hosts::resolve(&mut s).await {
        let fix = e.hint().unwrap_or_default();
        j.check(&s.name, Check::fail("hosts", &s.name, e.to_string(), fix));
        return;
    }
    if s.target == Target::Ec2 {
        aws_drift(&s, j).await;
    }
    let st = Settings {
        fix: a.fix,
        grace: a.grace,
        probe: probe_options(&s, &a.switch),
        lock_stale_after: a.switch.lock_stale_after,
    };
    if s.target == Target::Local {
        hosts_round(a, &s, &[None], &[LocalRunner], &st, mem, j).await;
        return;
    }
    if s.hosts.is_empty() {
        j.check(
            &s.name,
            Check::fail(
                "hosts",
                &s.name,
                "the stack lists no hosts",
                "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)",
            ),
        );
        return;
    }
    let mut hosts = Vec::new();
    let mut runners = Vec::new();
    for (t, h) in ssh_targets(&s, a.switch.connect.known_hosts.as_ref())
        .iter()
        .zip(&s.hosts)
    {
        match SshRunner::connect(t).await {
            Ok(runner) => {
                hosts.push(Some(h));
                runners.push(runner);
            }
            Err(e) => j.check(
                &t.host,
                Check::fail("ssh", &t.host, e.to_string(), e.hint()),
            ),
        }
    }
    hosts_round(a, &s, &hosts, &runners, &st, mem, j).await;
    for runner in runners {
        let _ = runner.close().await;
    }
}

/// Every connected host's checks (and `--fix` redeploys), then the certificate.
async fn hosts_round<R: Runner>(
    a: &OperateArgs,
    s: &Stack,
    hosts: &[Option<&Host>],
    runners: &[R],
    st: &Settings,
    mem: &mut Memory,
    j: &mut Journal,
) {
    for (h, runner) in hosts.iter().zip(runners) {
        let setup = match host_nginx(s, &a.switch, *h) {
            Ok((layout, nginx)) => HostSetup { layout, nginx },
            Err(e) => {
                let fix = e.hint().unwrap_or_default();
                j.check(
                    &runner.host(),
                    Check::fail("nginx", &s.name, e.to_string(), fix),
                );
                continue;
            }
        };
        if let Some(want) = operate::check_host(runner, &setup, st, mem, j).await {
            redeploy(a, s, *h, runner, &want, j).await;
        }
    }
    if s.tls.enabled && !runners.is_empty() {
        operate::check_certs(
            s,
            runners,
            &super::deploy::cert_options(&a.stack.stack, s, &a.switch, &a.cert_checks),
            j,
        )
        .await;
    }
}

/// `--fix`: the live release switched to again, exactly as `rollback VERSION` would (lock,
/// the idle colour, health gate, Nginx, the old container retired, audit line).
async fn redeploy<R: Runner>(
    a: &OperateArgs,
    s: &Stack,
    h: Option<&Host>,
    runner: &R,
    want: &Redeploy,
    j: &mut Journal,
) {
    let wanted = Wanted::Rollback(Some(want.version.clone()));
    let result = match plan(s, &a.switch, "operate", wanted, Transfer::AlreadyThere).await {
        Ok(base) => match host_plan(s, &a.switch, &base, h) {
            Ok(p) => host::deploy(runner, &p).await.1,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    j.action(
        &runner.host(),
        "redeploy",
        &want.version,
        result
            .map(|o| {
                format!(
                    "{}: {} live again on {:?} in {:.1} s",
                    want.why,
                    o.version,
                    o.color,
                    o.duration_ms as f64 / 1000.0
                )
            })
            .map_err(|e| format!("{}: {e}", want.why)),
    );
}

/// An `ec2` stack's AWS plan: changes pending are drift. Report-only, even with `--fix`:
/// infrastructure changes go through `fullslack apply`, which shows the plan first.
async fn aws_drift(s: &Stack, j: &mut Journal) {
    let opts = AwsOpts {
        allow_ssh_from_anywhere: false,
        wait_timeout: None,
    };
    let planned = async {
        let spec = spec_of(s, &opts, false).await?;
        let aws = Aws::connect(&spec.region).await?;
        Ok::<_, CliError>(fullslack_aws::plan(&aws, &spec).await?)
    }
    .await;
    let c = match planned {
        Ok(p) if p.is_empty() => Check::ok("drift.aws", &s.name, "the AWS plan has no changes"),
        Ok(p) => {
            let (create, update, replace, delete) = p.counts();
            Check::fail(
                "drift.aws",
                &s.name,
                format!(
                    "the AWS plan has changes: {create} to create, {update} to update, {replace} to replace, {delete} to delete"
                ),
                "report-only (also with --fix): review with `fullslack plan --stack FILE`, then `fullslack apply --stack FILE`",
            )
        }
        Err(e) => {
            let fix = e.hint().unwrap_or_default();
            Check::fail("drift.aws", &s.name, e.to_string(), fix)
        }
    };
    j.check(&s.name, c);
}
