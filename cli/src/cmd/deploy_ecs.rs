//! `deploy`, `rollback`, `releases` and `status` of an `ecs` stack. A release is a revision of
//! the stack's task definition family (its image tag is the version); the live release is
//! the revision the service runs.
//!
//! - [`deploy`]: under the stack's AWS lock: plan the stack with the release's tag; changes
//!   beyond the release's own (a new task definition revision and the service moving to it)
//!   are infrastructure, shown and asked for as `apply` asks (`--yes`); the stack's ECR
//!   repository first when it is missing (the push needs it); then the image pushed
//!   ([`super::push::push_release`]); then the plan applied (register the revision, move the
//!   service, wait until it is stable within the stack's timeout). Prints one line per
//!   target as SSH deploys do, or one JSON document, and appends the audit line to
//!   `.fullslack/<stack>/audit.jsonl`, whatever the result, once the lock is held.
//! - [`rollback`]: the service back to an older revision (the one before the live one, or
//!   the newest of a named version), waited on the same way. The stack file still names the
//!   newer tag: `plan` shows the service as drift until the next deploy.
//! - [`releases`] / [`status`]: the family's revisions, and the service's deployments.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use fullslack_aws::ecs::release::{self, Live, Revision};
use fullslack_aws::{Action, Aws, Kind, Plan, TargetSpec};

use super::aws_run::{confirm, locked};
use super::push::{push_release, ReleaseImage};
use super::usage;
use crate::args::{AwsOpts, DeployArgs, LockOpts, RollbackArgs};
use crate::aws_spec::spec_of;
use crate::deploy::releases::{now, AuditEntry};
use crate::error::CliError;
use crate::output::Reporter;
use crate::stack::Stack;

/// Where an ECS stack runs: region connection, cluster, service (the stack's name), family
/// (the stack's name too) and the wait for a stable service.
struct Place {
    aws: Aws,
    cluster: String,
    service: String,
    timeout: Duration,
}

impl Place {
    /// The target label of output and audit lines.
    fn label(&self) -> String {
        format!("ecs:{}/{}", self.cluster, self.service)
    }
}

/// What one deploy or rollback did to the service.
#[derive(Debug, serde::Serialize)]
struct Moved {
    host: String,
    version: String,
    from_version: Option<String>,
    task_definition: String,
    from_task_definition: Option<String>,
    duration_ms: u64,
    result: &'static str,
}

async fn place_of(
    s: &Stack,
    opts: &AwsOpts,
    tag: Option<&str>,
) -> Result<(Place, fullslack_aws::StackSpec), CliError> {
    let mut spec = spec_of(s, opts, false).await?;
    let TargetSpec::Ecs(e) = &mut spec.target else {
        return Err(usage(
            format!("stack `{}` is not an `ecs` stack", s.name),
            "this is a bug: please report it",
        ));
    };
    if let Some(t) = tag {
        e.tag = t.to_string();
    }
    let place = Place {
        aws: Aws::connect(&spec.region).await?,
        cluster: e.cluster.clone(),
        service: spec.name.clone(),
        timeout: Duration::from_secs(spec.wait_timeout_secs),
    };
    Ok((place, spec))
}

/// Whether a change is the release's own: a new revision of the task definition family (the
/// family exists), or the service moving to it and nothing else.
fn is_release_change(ch: &fullslack_aws::Change) -> bool {
    let r = ch.resource();
    match r.kind {
        Kind::TaskDefinition => ch.action != Action::Delete && ch.before.is_some(),
        Kind::EcsService => {
            ch.action == Action::Update && ch.changed.iter().all(|c| c == "task_definition")
        }
        _ => false,
    }
}

/// The plan with only the changes `keep` selects (the rest left for another step).
fn part(plan: &Plan, keep: impl Fn(&fullslack_aws::Change) -> bool) -> Plan {
    let mut p = plan.clone();
    p.changes.retain(keep);
    p
}

/// What the audit line needs to know of a run that may fail half way: the version it went
/// for and the one live before, once known.
#[derive(Default)]
struct Track {
    version: Option<String>,
    from: Option<String>,
}

/// The stack's lock (the deploy's `--lock-wait` / `--break-lock`) around `work`, with the
/// audit line written once `work` has named its version, whatever it returned.
async fn audited<F, Fut>(
    stack_file: &Path,
    s: &Stack,
    place: &Place,
    action: &'static str,
    lock: &LockOpts,
    r: &Reporter,
    work: F,
) -> Result<Moved, CliError>
where
    F: FnOnce(Instant) -> Fut,
    Fut: Future<Output = (Track, Result<Moved, CliError>)>,
{
    let mut out: Option<(Track, Result<Moved, CliError>)> = None;
    let started = Instant::now();
    let out_ref = &mut out;
    let locked_res = locked(&place.aws, &s.name, action, lock, r, || async move {
        *out_ref = Some(work(started).await);
        Ok(())
    })
    .await;
    let Some((track, work_res)) = out else {
        // The lock was not taken: nothing ran, nothing to audit.
        return Err(locked_res.err().unwrap_or_else(|| {
            usage("the deploy did not run", "this is a bug: please report it")
        }));
    };
    if let Some(version) = track.version {
        let (result, error, duration_ms) = match &work_res {
            Ok(m) => ("ok", None, m.duration_ms),
            Err(e) => ("failed", Some(e.to_string()), elapsed_ms(started)),
        };
        let entry = AuditEntry {
            at: now(),
            who: fullslack_aws::lock::whoami(),
            action: action.to_string(),
            stack: s.name.clone(),
            host: place.label(),
            version,
            from_version: track.from,
            result: result.to_string(),
            error,
            duration_ms,
            bytes_sent: 0,
        };
        super::release::append_local_audit(stack_file, &s.name, &entry)?;
    }
    // The work's error first; else the lock's release may have failed.
    let moved = work_res?;
    locked_res?;
    Ok(moved)
}

fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `fullslack deploy` of an `ecs` stack.
pub(super) async fn deploy(a: &DeployArgs, s: &Stack, r: &Reporter) -> Result<(), CliError> {
    let stack_file = &a.stack.stack;
    let target = super::release::image_target(stack_file, s, a.version.as_deref()).await?;
    let (place, spec) = place_of(s, &a.aws, Some(target.version.as_str())).await?;
    let mut image: Option<ReleaseImage> = None;
    let mut infra_applied = 0;
    let (image_ref, infra_ref) = (&mut image, &mut infra_applied);
    let (place_ref, spec_ref, target_ref) = (&place, &spec, &target);
    let moved = audited(
        stack_file,
        s,
        &place,
        "deploy",
        &a.switch.lock,
        r,
        |started| async move {
            let mut track = Track {
                version: Some(target_ref.version.clone()),
                from: None,
            };
            let res = async {
                let aws = &place_ref.aws;
                let before = release::live(aws, &place_ref.cluster, &place_ref.service).await?;
                track.from = before.as_ref().map(|l| l.revision.version.clone());
                let plan = fullslack_aws::plan(aws, spec_ref).await?;
                let infra = part(&plan, |c| !is_release_change(c));
                if !infra.is_empty() {
                    ask_for_infrastructure(&plan, &infra, a.yes, r)?;
                    *infra_ref = infra.changes.len();
                }
                // The repository before the push: the image goes into it.
                let repo = part(&plan, |c| c.resource().kind == Kind::EcrRepository);
                if !repo.is_empty() {
                    fullslack_aws::apply(aws, &repo, &say(r)).await?;
                }
                let pushed = push_release(s, &target_ref.image, &target_ref.version, r).await?;
                if !r.json {
                    println!("{pushed}");
                }
                *image_ref = Some(pushed);
                let rest = part(&plan, |c| c.resource().kind != Kind::EcrRepository);
                if !rest.is_empty() {
                    fullslack_aws::apply(aws, &rest, &say(r)).await?;
                }
                let after = release::live(aws, &place_ref.cluster, &place_ref.service)
                    .await?
                    .ok_or_else(|| gone(place_ref))?;
                Ok::<Moved, CliError>(Moved {
                    host: place_ref.label(),
                    version: after.revision.version.clone(),
                    from_version: before.as_ref().map(|l| l.revision.version.clone()),
                    task_definition: after.revision.name.clone(),
                    from_task_definition: before.map(|l| l.revision.name),
                    duration_ms: elapsed_ms(started),
                    result: "ok",
                })
            }
            .await;
            (track, res)
        },
    )
    .await?;
    if r.json {
        r.print_json(&serde_json::json!({
            "action": "deploy",
            "image": image,
            "infrastructure_changes": infra_applied,
            "hosts": [moved],
        }));
    } else {
        print_moved(&moved);
    }
    Ok(())
}

/// Infrastructure changes in a deploy: shown, then asked for (`--yes` skips the question;
/// without a terminal it is required), as `apply --stack` does.
fn ask_for_infrastructure(
    plan: &Plan,
    infra: &Plan,
    yes: bool,
    r: &Reporter,
) -> Result<(), CliError> {
    if !r.json {
        print!("{}", plan.render());
        println!();
    }
    if yes {
        return Ok(());
    }
    let what: Vec<String> = infra
        .changes
        .iter()
        .map(|c| {
            let action = format!("{:?}", c.action).to_lowercase();
            format!("{action} {}", c.resource().label())
        })
        .collect();
    let refused = || {
        usage(
            format!(
                "the deploy of stack `{}` needs infrastructure changes first: {}",
                plan.stack,
                what.join(", ")
            ),
            "review them with `fullslack plan --stack FILE`, then `fullslack apply --stack FILE` (or deploy again with --yes)",
        )
    };
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(refused());
    }
    if confirm("Apply these infrastructure changes and deploy?")? {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Where apply's step lines go: stdout as text, the log with `--json`.
fn say(r: &Reporter) -> impl Fn(String) + Sync {
    let json = r.json;
    move |line: String| {
        if json {
            tracing::info!("{line}");
        } else {
            println!("  {line}");
        }
    }
}

fn gone(p: &Place) -> CliError {
    CliError::Failed {
        message: format!(
            "ECS service {} is not running in cluster {}",
            p.service, p.cluster
        ),
        hint: "run `fullslack plan --stack FILE` to see what exists".into(),
    }
}

fn print_moved(m: &Moved) {
    let from = match (&m.from_version, &m.from_task_definition) {
        (Some(v), Some(td)) => format!("{v}, {td}"),
        _ => "nothing".into(),
    };
    println!(
        "{}: {} live on task definition {} (was {from}); {:.1} s",
        m.host,
        m.version,
        m.task_definition,
        m.duration_ms as f64 / 1000.0
    );
}

fn default_opts() -> AwsOpts {
    AwsOpts {
        allow_ssh_from_anywhere: false,
        wait_timeout: None,
    }
}

/// `fullslack rollback [VERSION]` of an `ecs` stack.
pub(super) async fn rollback(a: &RollbackArgs, s: &Stack, r: &Reporter) -> Result<(), CliError> {
    let (place, _) = place_of(s, &default_opts(), None).await?;
    let place_ref = &place;
    let to_version = a.to_version.as_deref();
    let moved = audited(
        &a.stack.stack,
        s,
        &place,
        "rollback",
        &a.switch.lock,
        r,
        |started| async move {
            let mut track = Track::default();
            let res = async {
                let aws = &place_ref.aws;
                let live = release::live(aws, &place_ref.cluster, &place_ref.service)
                    .await?
                    .ok_or_else(|| gone(place_ref))?;
                track.from = Some(live.revision.version.clone());
                let revisions = release::revisions(aws, &place_ref.service).await?;
                let to = release::rollback_target(&revisions, &live.revision, to_version)
                    .ok_or_else(|| no_rollback_target(&revisions, &live, to_version))?;
                track.version = Some(to.version.clone());
                if !r.json {
                    println!(
                        "{}: moving from {} to {}, waiting until it is stable",
                        place_ref.label(),
                        live.revision.name,
                        to.name
                    );
                }
                release::move_service(
                    aws,
                    &place_ref.cluster,
                    &place_ref.service,
                    to,
                    place_ref.timeout,
                )
                .await?;
                Ok::<Moved, CliError>(Moved {
                    host: place_ref.label(),
                    version: to.version.clone(),
                    from_version: Some(live.revision.version.clone()),
                    task_definition: to.name.clone(),
                    from_task_definition: Some(live.revision.name.clone()),
                    duration_ms: elapsed_ms(started),
                    result: "ok",
                })
            }
            .await;
            (track, res)
        },
    )
    .await?;
    if r.json {
        r.print_json(&serde_json::json!({"action": "rollback", "hosts": [moved]}));
    } else {
        print_moved(&moved);
    }
    Ok(())
}

fn no_rollback_target(revisions: &[Revision], live: &Live, to: Option<&str>) -> CliError {
    let known: Vec<String> = revisions
        .iter()
        .map(|r| format!("{} ({})", r.version, r.name))
        .collect();
    usage(
        match to {
            Some(v) => format!(
                "no revision of {} runs version {v} other than the live one ({})",
                live.service, live.revision.name
            ),
            None => format!(
                "no revision of {} is older than the live one ({})",
                live.service, live.revision.name
            ),
        },
        format!(
            "the registered revisions are: {}; `fullslack releases --stack FILE` lists them",
            known.join(", ")
        ),
    )
}

/// `fullslack releases` of an `ecs` stack: the family's revisions, newest first, the live one
/// marked.
pub(super) async fn releases(s: &Stack, r: &Reporter) -> Result<(), CliError> {
    let (place, _) = place_of(s, &default_opts(), None).await?;
    let live = release::live(&place.aws, &place.cluster, &place.service).await?;
    let revisions = release::revisions(&place.aws, &place.service).await?;
    let live_name = live.as_ref().map(|l| l.revision.name.clone());
    if r.json {
        r.print_json(&serde_json::json!({"hosts": [{
            "host": place.label(),
            "live": live.as_ref().map(|l| &l.revision.version),
            "releases": revisions,
        }]}));
        return Ok(());
    }
    println!("{}:", place.label());
    if revisions.is_empty() {
        println!("  no releases yet");
    }
    for rev in &revisions {
        let mark = if Some(&rev.name) == live_name.as_ref() {
            "live"
        } else {
            "kept"
        };
        println!(
            "  {mark:4}  {:<32} {:<12} {}",
            rev.version, rev.name, rev.image
        );
    }
    Ok(())
}

/// `fullslack status` of an `ecs` stack: the live revision, tasks and deployments. Exit 1 (as
/// for a host that is not ready) when there is no service or fewer tasks run than desired.
pub(super) async fn status(s: &Stack, r: &Reporter) -> Result<(), CliError> {
    let (place, _) = place_of(s, &default_opts(), None).await?;
    let live = release::live(&place.aws, &place.cluster, &place.service).await?;
    let ready = live.as_ref().is_some_and(|l| l.running >= l.desired);
    if r.json {
        r.print_json(
            &serde_json::json!({"hosts": [{"host": place.label(), "ready": ready, "service": live}]}),
        );
    } else if let Some(l) = &live {
        println!(
            "{}: {} live on {}, {} of {} task(s) running",
            place.label(),
            l.revision.version,
            l.revision.name,
            l.running,
            l.desired
        );
        for d in &l.deployments {
            println!(
                "  {:<8} {:<24} {} of {} running, {}",
                d.status,
                d.task_definition,
                d.running,
                d.desired,
                d.rollout.as_deref().unwrap_or("rollout state not reported")
            );
        }
    } else {
        println!(
            "{}: no service (`fullslack deploy --stack FILE` makes it)",
            place.label()
        );
    }
    if ready {
        Ok(())
    } else {
        Err(CliError::ChecksFailed(1))
    }
}
