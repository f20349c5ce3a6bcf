//! `fullslack deploy` and `fullslack rollback`: builds the [`Plan`] from the stack file and
//! the command line (image, resolved secrets, Nginx, health gate, lock policy), then switches
//! each host in turn through [`crate::deploy::host::deploy`], over SSH or on this machine for
//! a `local` stack. The stack's managed Redis / MongoDB are made to run first
//! ([`crate::deploy::accessory`]). Hosts go one at a time and the first failure stops the run. Every host's
//! audit line is also appended to `.fullslack/<stack>/audit.jsonl` beside the stack file.
//! A `deploy` of a `tls.enabled` stack then runs the certificate step
//! ([`crate::deploy::certificate`]) on every host. A stack with `image.registry` gets the
//! release's image pushed there first ([`super::push::push_release`], once, before any host
//! pulls it). An `ecs` stack goes to [`super::deploy_ecs`] instead (no hosts: a task
//! definition revision and the service moved to it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::release::{append_local_audit, image_target};
use super::usage;
use crate::args::{
    ApplyArgs, CertCheckOpts, DeployArgs, LockOpts, RollbackArgs, StackOpt, SwitchOpts,
};
use crate::certs::Options as CertOptions;
use crate::commands::docker;
use crate::commands::lock::Holder;
use crate::deploy::accessory::{self, Accessory};
use crate::deploy::certificate::{self, CertificateReport};
use crate::deploy::host::{self, Outcome};
use crate::deploy::releases::AuditEntry;
use crate::deploy::{
    host_stack, lock, with_host, Gate, Layout, NginxSetup, Plan, Transfer, Wanted,
};
use crate::error::CliError;
use crate::health::HealthOptions;
use crate::nginx::SiteParams;
use crate::output::Reporter;
use crate::runner::{LocalRunner, Runner, SshRunner, SshTarget};
use crate::secret::{SecretRef, SecretString};
use crate::stack::{Stack, Target as StackTarget};

/// `fullslack deploy`.
pub async fn run(a: &DeployArgs, r: &Reporter) -> Result<(), CliError> {
    let mut s = crate::stack::load(&a.stack.stack)?;
    if s.target == StackTarget::Ecs {
        return super::deploy_ecs::deploy(a, &s, r).await;
    }
    if s.target == StackTarget::Ec2 {
        provision(a, r).await?;
    }
    crate::hosts::resolve(&mut s).await?;
    let mut target = image_target(&a.stack.stack, &s, a.version.as_deref()).await?;
    let transfer = transfer_of(&s, a.send_image, a.compress_image)?;
    // Checked before anything is pushed: secrets, the probe identity, the Nginx site.
    let mut plan = plan(
        &s,
        &a.switch,
        "deploy",
        Wanted::Image(target.clone()),
        transfer,
    )
    .await?;
    let pushed = match &plan.transfer {
        Transfer::Registry { .. } => {
            let _group = crate::actions::Group::start("push the image");
            let p = super::push::push_release(&s, &target.image, &target.version, r).await?;
            if !r.json {
                println!("{p}");
            }
            // The hosts pull what was pushed.
            target.image.clone_from(&p.reference);
            plan.wanted = Wanted::Image(target);
            Some(p)
        }
        _ => None,
    };
    let certs = s
        .tls
        .enabled
        .then(|| cert_options(&a.stack.stack, &s, &a.switch, &a.cert_checks));
    run_plan(
        &a.stack.stack,
        &s,
        &a.switch,
        &plan,
        certs.as_ref(),
        pushed.as_ref(),
        r,
    )
    .await
}

/// The probe of a release (the deploy's health gate, and what `operate` checks live releases
/// with): the stack's `[health]` and the probe identity the switch options name. The URL is
/// replaced per host by the release's forwarded port.
pub(super) fn probe_options(s: &Stack, o: &SwitchOpts) -> HealthOptions {
    let from_env = crate::secret::from_env;
    HealthOptions {
        url: reqwest::Url::parse("http://127.0.0.1/").expect("a constant URL parses"),
        probe_user: o.probe_user.clone(),
        probe_password: from_env(&o.probe_password_env),
        probe_token: from_env(&o.probe_token_env),
        register_probe: o.register_probe,
        timeout: Duration::from_secs(s.health.timeout_secs.max(1)),
        ca_file: None,
        websocket: s.health.websocket,
        cert_min_days: 0,
    }
}

/// Where the certificate step (and `operate`'s renewals) find things: the paths the rendered
/// site uses, and the stack's ACME account and order log beside the stack file (as
/// `fullslack certs`). `{host}` in the Nginx paths becomes the first host's name: the certs
/// flow reloads every host with the same paths.
pub(super) fn cert_options(
    stack_file: &Path,
    s: &Stack,
    o: &SwitchOpts,
    checks: &CertCheckOpts,
) -> CertOptions {
    let mut c = CertOptions::for_stack(stack_file, s);
    if let Some(d) = &o.cert_dir {
        c.cert_dir.clone_from(d);
    }
    c.acme_root.clone_from(&o.acme_root);
    let first = s.hosts.first().filter(|_| s.target != StackTarget::Local);
    c.nginx = crate::commands::nginx::NginxPaths {
        conf: o.nginx_conf.as_deref().map(|p| with_host(p, first)),
        prefix: o.nginx_prefix.as_deref().map(|p| with_host(p, first)),
    };
    c.dns_server = checks.dns_server;
    c.skip_checks = checks.skip_cert_checks;
    c
}

/// An `ec2` stack: `apply --stack FILE` first (the plan shown, then asked unless `--yes`;
/// without a terminal `--yes` is required), so the deploy goes to the instances it made.
async fn provision(a: &DeployArgs, r: &Reporter) -> Result<(), CliError> {
    let apply = ApplyArgs {
        plan: None,
        stack: StackOpt {
            stack: Some(a.stack.stack.clone()),
        },
        yes: a.yes,
        opts: a.aws.clone(),
        // The deploy's --break-lock is for the hosts' lock, not for the AWS one.
        lock: LockOpts {
            lock_wait: a.switch.lock.lock_wait,
            break_lock: false,
        },
    };
    super::apply::run(&apply, r).await
}

/// `fullslack rollback [VERSION]`.
pub async fn rollback(a: &RollbackArgs, r: &Reporter) -> Result<(), CliError> {
    let mut s = crate::stack::load(&a.stack.stack)?;
    if s.target == StackTarget::Ecs {
        return super::deploy_ecs::rollback(a, &s, r).await;
    }
    crate::hosts::resolve(&mut s).await?;
    let wanted = Wanted::Rollback(a.to_version.clone());
    let plan = plan(&s, &a.switch, "rollback", wanted, Transfer::AlreadyThere).await?;
    run_plan(&a.stack.stack, &s, &a.switch, &plan, None, None, r).await
}

/// Switches every host, one at a time; stops at the first failure. With `certs`, the
/// certificate step follows once every host switched. `pushed`: what the deploy pushed to
/// the stack's registry first (in the `--json` document as `image`).
async fn run_plan(
    stack_file: &Path,
    s: &Stack,
    o: &SwitchOpts,
    plan: &Plan,
    certs: Option<&CertOptions>,
    pushed: Option<&super::push::ReleaseImage>,
    r: &Reporter,
) -> Result<(), CliError> {
    let mut done = Vec::new();
    let (accessories, res) = match ensure_accessories(s, o, r).await {
        Ok(a) => (a, switch_hosts(stack_file, s, o, plan, r, &mut done).await),
        Err(e) => (Vec::new(), Err(e)),
    };
    let cert = match (&res, certs) {
        (Ok(()), Some(c)) => Some(certificate_step(s, o, plan, c, &done).await),
        _ => None,
    };
    let cert_failure = cert.as_ref().and_then(CertificateReport::failure);
    if let Some(gh) = crate::actions::detect() {
        let mut md = crate::actions::deploy_markdown(
            &s.name,
            plan.action,
            &done,
            res.as_ref().err().or(cert_failure.as_ref()),
        );
        if let Some(c) = &cert {
            md.push_str(&crate::actions::certificate_markdown(c));
        }
        gh.summary(&md);
    }
    res?;
    if r.json {
        let mut doc = serde_json::json!({
            "action": plan.action,
            "accessories": accessories,
            "hosts": done,
        });
        if let Some(p) = pushed {
            doc["image"] = serde_json::to_value(p).unwrap_or_default();
        }
        if let Some(c) = &cert {
            doc["certificate"] = serde_json::to_value(c).unwrap_or_default();
        }
        r.print_json(&doc);
    } else if let Some(c) = &cert {
        println!("certificate: {}", c.describe());
    }
    if let Some(c) = cert.as_ref().filter(|c| c.result == "failed") {
        if cert_failure.is_none() {
            // The old certificate keeps serving: not a failed deploy, but it must be seen.
            eprintln!("warning: certificate {}", c.describe());
        }
    }
    cert_failure.map_or(Ok(()), Err)
}

/// The certificate step on every host of the stack (connected anew: the switch closed its
/// connections), after all of them switched.
async fn certificate_step(
    s: &Stack,
    o: &SwitchOpts,
    plan: &Plan,
    certs: &CertOptions,
    done: &[Outcome],
) -> CertificateReport {
    let served: Vec<(String, bool)> = done.iter().map(|d| (d.host.clone(), d.https)).collect();
    let https: Vec<bool> = done.iter().map(|d| d.https).collect();
    if s.target == StackTarget::Local {
        return match host_plan(s, o, plan, None) {
            Ok(p) => certificate::after_switch(s, &[LocalRunner], &[p], &https, certs).await,
            Err(e) => CertificateReport::unreachable(s, &e, &served),
        };
    }
    let mut runners = Vec::new();
    let mut plans = Vec::new();
    let mut failed = None;
    for (t, h) in ssh_targets(s, o.connect.known_hosts.as_ref())
        .iter()
        .zip(&s.hosts)
    {
        let connected = match host_plan(s, o, plan, Some(h)) {
            Ok(p) => SshRunner::connect(t)
                .await
                .map(|r| (r, p))
                .map_err(CliError::from),
            Err(e) => Err(e),
        };
        match connected {
            Ok((r, p)) => {
                runners.push(r);
                plans.push(p);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let report = match failed {
        None => certificate::after_switch(s, &runners, &plans, &https, certs).await,
        Some(e) => CertificateReport::unreachable(s, &e, &served),
    };
    for r in runners {
        let _ = r.close().await;
    }
    report
}

/// The stack's managed Redis / MongoDB made to run on their host before any chat release
/// switches (so a switch never restarts them); says what changed. Every chat host must be on
/// the accessory's machine (same address): chat containers reach an accessory by name on the
/// stack's Docker network, which does not span machines.
async fn ensure_accessories(
    s: &Stack,
    o: &SwitchOpts,
    r: &Reporter,
) -> Result<Vec<accessory::Ensured>, CliError> {
    let mut out = Vec::new();
    for a in Accessory::of_stack(s) {
        let ensured = if s.target == StackTarget::Local {
            let _group =
                crate::actions::Group::start(&format!("{} on this machine", a.kind.name()));
            let layout = Layout::of(&o.connect.state_dir, &s.name, None);
            let work = accessory::ensure(&LocalRunner, &a, None);
            under_deploy_lock(&LocalRunner, &layout, o, &a, work).await?
        } else {
            let (t, h) = accessory_host(s, o, &a)?;
            if let Some(other) = s.hosts.iter().find(|x| x.address != h.address) {
                return Err(usage(
                    format!(
                        "the managed {} runs on {}, but the chat host {} is another machine: its containers could not reach it (the stack's Docker network does not span machines)",
                        a.kind.name(),
                        h.address,
                        other.address
                    ),
                    format!(
                        "run {name} elsewhere and give it as {name}.mode = \"external\" with {name}.url; several machines sharing a managed accessory are not supported yet",
                        name = a.kind.name()
                    ),
                ));
            }
            let _group = crate::actions::Group::start(&format!("{} on {}", a.kind.name(), t.host));
            let here = LocalRunner.run(&docker::image_id(&a.image)).await?;
            let local_id = here
                .success()
                .then(|| here.stdout.trim().to_string())
                .filter(|id| !id.is_empty());
            let runner = SshRunner::connect(&t).await?;
            let layout = Layout::of(&o.connect.state_dir, &s.name, Some(h));
            let work = accessory::ensure(&runner, &a, local_id);
            let res = under_deploy_lock(&runner, &layout, o, &a, work).await;
            let _ = runner.close().await;
            res?
        };
        if !r.json {
            println!("{ensured}");
        }
        out.push(ensured);
    }
    Ok(out)
}

/// Runs an accessory's setup under its host's deploy lock (with the deploy's `--lock-wait`,
/// `--break-lock` and heartbeat), so two first deploys of one stack do not both create it: the
/// second waits for the first, or fails naming it, as a second deploy of a release does.
async fn under_deploy_lock<R: Runner, T>(
    r: &R,
    layout: &Layout,
    o: &SwitchOpts,
    a: &Accessory,
    work: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    let policy = lock_policy(o);
    let me = Holder::new(
        fullslack_aws::lock::whoami(),
        crate::deploy::releases::now(),
        format!("deploy: the {} accessory", a.kind.name()),
    );
    let root = layout.lock_root();
    if let Some(h) = lock::take(r, &root, &layout.stack, &me, policy).await? {
        eprintln!(
            "{}: broke the deploy lock held by {} since {} ({})",
            r.host(),
            h.who,
            h.since,
            h.message
        );
    }
    let res = lock::while_beating(r, &root, &layout.stack, policy, work).await;
    let released = lock::give_back(r, &root, &layout.stack, &me).await;
    let out = res?;
    released?;
    Ok(out)
}

/// The deploy lock's policy from the command line.
fn lock_policy(o: &SwitchOpts) -> lock::Policy {
    lock::Policy {
        wait: o.lock.lock_wait,
        break_lock: o.lock.break_lock,
        stale_after: Some(o.lock_stale_after),
    }
}

/// The SSH target and host of an accessory: its `host` key (a host's `name` or `address`),
/// else the stack's first host.
fn accessory_host<'a>(
    s: &'a Stack,
    o: &SwitchOpts,
    a: &Accessory,
) -> Result<(SshTarget, &'a crate::stack::Host), CliError> {
    let targets = ssh_targets(s, o.connect.known_hosts.as_ref());
    let found = match &a.host {
        None => targets.into_iter().zip(&s.hosts).next(),
        Some(key) => targets
            .into_iter()
            .zip(&s.hosts)
            .find(|(_, h)| h.name.as_deref() == Some(key) || h.address == *key),
    };
    found.ok_or_else(|| match &a.host {
        Some(key) => usage(
            format!(
                "{}.host = \"{key}\" names no host of the stack",
                a.kind.name()
            ),
            "give the `name` or `address` of one of the [[hosts]]",
        ),
        None => usage(
            format!("stack `{}` lists no hosts", s.name),
            "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)",
        ),
    })
}

/// The hosts in turn (each folded in its own group in GitHub Actions); `done` gets the
/// outcome of every host that switched.
async fn switch_hosts(
    stack_file: &Path,
    s: &Stack,
    o: &SwitchOpts,
    plan: &Plan,
    r: &Reporter,
    done: &mut Vec<Outcome>,
) -> Result<(), CliError> {
    if s.target == StackTarget::Local {
        let local = host_plan(s, o, plan, None)?;
        let _group = crate::actions::Group::start(&format!("{} on this machine", plan.action));
        let (entry, res) = host::deploy(&LocalRunner, &local).await;
        finish_host(stack_file, s, entry, res, done, r)?;
    } else {
        if s.hosts.is_empty() {
            return Err(usage(
                format!("stack `{}` lists no hosts", s.name),
                "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)",
            ));
        }
        let targets = ssh_targets(s, o.connect.known_hosts.as_ref());
        let mut finished = Vec::new();
        for (t, h) in targets.iter().zip(&s.hosts) {
            let hp = host_plan(s, o, plan, Some(h))?;
            let group = crate::actions::Group::start(&format!("{} on {}", plan.action, t.host));
            let res = match SshRunner::connect(t).await {
                Ok(runner) => {
                    let (entry, res) = host::deploy(&runner, &hp).await;
                    let _ = runner.close().await;
                    finish_host(stack_file, s, entry, res, done, r)
                }
                Err(e) => Err(e.into()),
            };
            drop(group);
            if let Err(mut e) = res {
                if targets.len() > 1 {
                    e = stopped_at(e, &format!("{}@{}:{}", t.user, t.host, t.port));
                }
                let note = put_back(stack_file, s, &finished, done).await;
                return Err(with_note(e, &note));
            }
            finished.push((t.clone(), hp));
        }
    }
    Ok(())
}

/// The plan of one host (`None`: this machine): its layout (named after the host when it
/// has a `name`), `{host}` in the Nginx paths, and its own ports when the stack gives them.
pub(super) fn host_plan(
    s: &Stack,
    o: &SwitchOpts,
    base: &Plan,
    h: Option<&crate::stack::Host>,
) -> Result<Plan, CliError> {
    let mut p = base.clone();
    (p.layout, p.nginx) = host_nginx(s, o, h)?;
    Ok(p)
}

/// One host's layout and Nginx (`None`: this machine), as its deploy sets them up: what
/// `operate` compares the host's site file against.
pub(super) fn host_nginx(
    s: &Stack,
    o: &SwitchOpts,
    h: Option<&crate::stack::Host>,
) -> Result<(Layout, NginxSetup), CliError> {
    let layout = Layout::of(&o.connect.state_dir, &s.name, h);
    let mut nginx = nginx_setup(&host_stack(s, h), o, &layout)?;
    if let Some(port) = h.and_then(|h| h.http_port) {
        nginx.site.http_port = port;
    }
    nginx.site_path = with_host(&nginx.site_path, h);
    for path in [&mut nginx.paths.conf, &mut nginx.paths.prefix]
        .into_iter()
        .flatten()
    {
        *path = with_host(path, h);
    }
    Ok((layout, nginx))
}

/// The error of the host where a run over several hosts stopped, naming it first.
fn stopped_at(e: CliError, host: &str) -> CliError {
    match e {
        CliError::LockHeld { message } => CliError::LockHeld {
            message: format!("the deploy stopped at {host}: {message}"),
        },
        other => CliError::Failed {
            message: format!("the deploy stopped at {host}: {other}"),
            hint: other.hint().unwrap_or_default(),
        },
    }
}

/// After a host failed: the hosts finished before it go back to the release they had, so the
/// stack does not stay split between two releases. Says what it did.
async fn put_back(
    stack_file: &Path,
    s: &Stack,
    finished: &[(SshTarget, Plan)],
    done: &[Outcome],
) -> String {
    let mut notes = Vec::new();
    for ((t, plan), o) in finished.iter().zip(done) {
        // The SSH target, not the address alone: hosts may share an address (one machine).
        let label = format!("{}@{}:{}", t.user, t.host, t.port);
        let Some(from) = &o.from_version else {
            notes.push(format!(
                "{label} had no release before: {} stays live there",
                o.version
            ));
            continue;
        };
        let mut back = plan.clone();
        back.action = "rollback";
        back.wanted = Wanted::Rollback(Some(from.clone()));
        back.transfer = Transfer::AlreadyThere;
        let res = match SshRunner::connect(t).await {
            Ok(runner) => {
                let (entry, res) = host::deploy(&runner, &back).await;
                let _ = runner.close().await;
                if let Some(e) = entry {
                    let _ = append_local_audit(stack_file, &s.name, &e);
                }
                res.map(|_| ())
            }
            Err(e) => Err(e.into()),
        };
        notes.push(match res {
            Ok(()) => format!("{label} put back on {from}"),
            Err(e) => format!("{label} could NOT be put back on {from}: {e}"),
        });
    }
    notes.join("; ")
}

/// The error with what happened to the other hosts appended.
fn with_note(e: CliError, note: &str) -> CliError {
    if note.is_empty() {
        return e;
    }
    CliError::Failed {
        message: format!("{e}\n{note}"),
        hint: e.hint().unwrap_or_default(),
    }
}

/// Records the host's audit line locally and prints its outcome.
fn finish_host(
    stack_file: &Path,
    s: &Stack,
    entry: Option<AuditEntry>,
    res: Result<Outcome, CliError>,
    done: &mut Vec<Outcome>,
    r: &Reporter,
) -> Result<(), CliError> {
    if let Some(e) = entry {
        append_local_audit(stack_file, &s.name, &e)?;
    }
    let o = res?;
    if !r.json {
        let from = o.from_version.as_deref().unwrap_or("nothing");
        let image = o.transfer.describe();
        if let Some(b) = &o.broke_lock_of {
            println!("{}: broke the lock of {b}", o.host);
        }
        println!(
            "{}: {} live on {:?} (was {from}); {image}; {:.1} s; kept: {}",
            o.host,
            o.version,
            o.color,
            o.duration_ms as f64 / 1000.0,
            o.kept.join(", ")
        );
    }
    done.push(o);
    Ok(())
}

/// Registry-free (the image streamed over SSH) unless the stack names a registry.
fn transfer_of(s: &Stack, always: bool, compress: bool) -> Result<Transfer, CliError> {
    match (&s.image.registry, &s.image.username, &s.image.password) {
        (None, _, _) => Ok(Transfer::Stream { always, compress }),
        (Some(r), _, _) if r == "ecr" => Err(usage(
            "deploying an ECR image to hosts is not supported yet",
            "remove image.registry to stream the image over SSH",
        )),
        (Some(server), Some(user), Some(pw)) => Ok(Transfer::Registry {
            server: server.clone(),
            username: user.clone(),
            password: resolve_env_secret(pw)?,
        }),
        (Some(server), _, _) => Err(usage(
            format!("image.registry {server} has no username and password"),
            "set image.username and image.password in the stack file",
        )),
    }
}

fn resolve_env_secret(r: &SecretRef) -> Result<SecretString, CliError> {
    match r {
        SecretRef::Env(var) => crate::secret::from_env(var).ok_or_else(|| {
            usage(
                format!("the secret variable {var} is not set"),
                format!("export {var} before deploying"),
            )
        }),
        SecretRef::Ssm(name) => Err(usage(
            format!("the secret {name} is in SSM but was not fetched"),
            "this is a bug: please report it",
        )),
    }
}

/// Every secret the stack references, resolved: environment variables here, SSM parameters
/// from the stack's region.
async fn resolve_secrets(s: &Stack) -> Result<BTreeMap<String, SecretString>, CliError> {
    let mut refs: Vec<&SecretRef> = s.secrets.values().collect();
    refs.extend(s.redis.url.iter());
    refs.extend(s.mongodb.url.iter());
    let mut out = BTreeMap::new();
    let mut aws = None;
    for r in refs {
        let value = match r {
            SecretRef::Env(_) => resolve_env_secret(r)?,
            SecretRef::Ssm(name) => {
                if aws.is_none() {
                    let region = s.aws_region().ok_or_else(|| {
                        usage(
                            format!("the secret {name} is in SSM, but the stack has no AWS region"),
                            "give it as { env = \"VAR\" } instead",
                        )
                    })?;
                    aws = Some(fullslack_aws::Aws::connect(region).await?);
                }
                let Some(a) = aws.as_ref() else { continue };
                fullslack_aws::ssm::get(a, name).await?
            }
        };
        out.insert(r.to_string(), value);
    }
    Ok(out)
}

/// The plan every host gets.
pub(super) async fn plan(
    s: &Stack,
    o: &SwitchOpts,
    action: &'static str,
    wanted: Wanted,
    transfer: Transfer,
) -> Result<Plan, CliError> {
    if s.target == StackTarget::Ecs {
        return Err(usage(
            "an ECS stack has no hosts to switch",
            "`fullslack deploy --stack FILE` and `fullslack rollback --stack FILE` move its service; operate works on host stacks",
        ));
    }
    let resolved = resolve_secrets(s).await?;
    let env = s.container_env(|r| {
        resolved
            .get(&r.to_string())
            .cloned()
            .ok_or_else(|| usage(format!("secret {r} not resolved"), "this is a bug"))
    })?;
    let probe = probe_options(s, o);
    if probe.websocket && probe.probe_password.is_none() && probe.probe_token.is_none() {
        return Err(usage(
            "the health gate's WebSocket round trip needs a probe identity",
            format!(
                "export {} (with --register-probe on a fresh host) or {}; or set health.websocket = false in the stack file",
                o.probe_password_env, o.probe_token_env
            ),
        ));
    }
    Ok(Plan {
        action,
        layout: Layout::of(&o.connect.state_dir, &s.name, None),
        wanted,
        transfer,
        env,
        container_port: s.app.port,
        network: (!Accessory::of_stack(s).is_empty()).then(|| accessory::network(&s.name)),
        nginx: nginx_setup(s, o, &Layout::of(&o.connect.state_dir, &s.name, None))?,
        gate: Gate {
            probe,
            deadline: o.health_deadline,
        },
        keep: o.keep,
        drain_secs: o.drain,
        lock: lock_policy(o),
        who: fullslack_aws::lock::whoami(),
        install_missing: s.target != StackTarget::Local,
    })
}

fn nginx_setup(s: &Stack, o: &SwitchOpts, layout: &Layout) -> Result<NginxSetup, CliError> {
    let mut site = SiteParams::from_stack(s)?;
    site.http_port = o.http_port;
    site.https_port = o.https_port;
    if let Some(d) = &o.cert_dir {
        site.cert_dir.clone_from(d);
    }
    site.acme_root.clone_from(&o.acme_root);
    site.listen_v4 = o.listen_v4.as_ref().map(ToString::to_string);
    if o.no_ipv6 {
        site.listen_v6 = None;
    }
    Ok(NginxSetup {
        site_path: o
            .nginx_site
            .clone()
            .unwrap_or_else(|| format!("/etc/nginx/conf.d/fullslack-{}.conf", layout.instance())),
        paths: crate::commands::nginx::NginxPaths {
            conf: o.nginx_conf.clone(),
            prefix: o.nginx_prefix.clone(),
        },
        site,
    })
}

/// The SSH targets of the stack's hosts (`~/` expanded; `--known-hosts` wins).
pub fn ssh_targets(s: &Stack, known_hosts: Option<&PathBuf>) -> Vec<SshTarget> {
    super::lock::ssh_targets(s, known_hosts)
}
