//! One host's deploy, in order: lock → bootstrap → env file → image → new release beside the
//! live one → health gate → Nginx → old release drained and removed → release log and old
//! images pruned → audit line → lock released. The lock is released and the audit line
//! written on every path, failures included; a failure before Nginx was pointed at the new
//! release leaves the live one serving, untouched.

use std::time::Instant;

use serde::Serialize;

use super::releases::{now, AuditEntry, Release, ReleaseLog};
use super::transfer::{self, Sent};
use super::{lock, setup, switch, Plan, Target, Wanted};
use crate::commands::{docker, files, lock::Holder, sh, Cmd, StdinData};
use crate::error::CliError;
use crate::nginx::Color;
use crate::runner::Runner;
use crate::secret::{ExposeSecret, SecretString};

/// What a host's deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Host label.
    pub host: String,
    /// Version now live.
    pub version: String,
    /// Version live before.
    pub from_version: Option<String>,
    /// Colour now live.
    pub color: Color,
    /// Image bytes sent over the connection.
    pub bytes_sent: u64,
    /// Whether the host already had the image.
    pub image_was_there: bool,
    /// What the transfer sent and left out (layers the host had, compression, fallback).
    pub transfer: Sent,
    /// The lock `--break-lock` removed, `who (message)`.
    pub broke_lock_of: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Versions kept for rollback (newest first, the live one first).
    pub kept: Vec<String>,
    /// Whether the site serves HTTPS (false for a `tls.enabled` stack whose host had no
    /// certificate yet: the site went out HTTP-only, see [`switch::point_nginx`]).
    pub https: bool,
}

/// What the switch did: the colour now live, the versions kept, whether the site is HTTPS.
struct Switched {
    color: Color,
    kept: Vec<String>,
    https: bool,
}

/// What the steps learnt, also on failure (for the audit line).
#[derive(Debug, Default)]
struct Progress {
    version: String,
    from_version: Option<String>,
    sent: Sent,
}

/// Deploys (or rolls back) on one host. The audit entry is returned whatever happened (once
/// the lock was taken), for the local copy of the audit log.
pub async fn deploy<R: Runner>(r: &R, p: &Plan) -> (Option<AuditEntry>, Result<Outcome, CliError>) {
    let started = Instant::now();
    let wanted_version = match &p.wanted {
        Wanted::Image(t) => t.version.clone(),
        Wanted::Rollback(v) => v.clone().unwrap_or_else(|| "previous".into()),
    };
    let me = Holder::new(
        p.who.clone(),
        now(),
        format!("{} {wanted_version}", p.action),
    );
    let root = p.layout.lock_root();
    let broken = match lock::take(r, &root, &p.layout.stack, &me, p.lock).await {
        Ok(b) => b,
        Err(e) => return (None, Err(e)),
    };
    let mut progress = Progress {
        version: wanted_version,
        ..Progress::default()
    };
    let stack = &p.layout.stack;
    let work = switch_release(r, p, &mut progress);
    let result = lock::while_beating(r, &root, stack, p.lock, work).await;
    let entry = AuditEntry {
        at: now(),
        who: p.who.clone(),
        action: p.action.into(),
        stack: p.layout.stack.clone(),
        host: r.host(),
        version: progress.version.clone(),
        from_version: progress.from_version.clone(),
        result: if result.is_ok() { "ok" } else { "failed" }.into(),
        error: result.as_ref().err().map(|e| first_line(&e.to_string())),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        bytes_sent: progress.sent.bytes,
    };
    let audited = append_audit(r, p, &entry).await;
    let released = lock::give_back(r, &root, &p.layout.stack, &me).await;
    let outcome = result.and_then(|sw| {
        audited?;
        released?;
        Ok(Outcome {
            host: r.host(),
            version: progress.version,
            from_version: progress.from_version,
            color: sw.color,
            bytes_sent: progress.sent.bytes,
            image_was_there: progress.sent.skipped,
            transfer: progress.sent,
            broke_lock_of: broken.map(|h| format!("{} ({})", h.who, h.message)),
            duration_ms: entry.duration_ms,
            kept: sw.kept,
            https: sw.https,
        })
    });
    (Some(entry), outcome)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Everything between taking and releasing the lock.
async fn switch_release<R: Runner>(
    r: &R,
    p: &Plan,
    progress: &mut Progress,
) -> Result<Switched, CliError> {
    bootstrap(r, p).await?;
    let mut log = read_log(r, &p.layout.releases_file()).await?;
    let live = log.live().cloned();
    progress.from_version = live.as_ref().map(|l| l.version.clone());
    let target = match &p.wanted {
        Wanted::Image(t) => t.clone(),
        Wanted::Rollback(v) => rollback_target(r, &log, v.as_deref())?,
    };
    progress.version = target.version.clone();
    write_env_file(r, p).await?;
    progress.sent = transfer::ensure_image(r, &target, &p.transfer).await?;
    let image_id = transfer::host_image_id(r, &target.image)
        .await?
        .unwrap_or_default();
    let color = live.as_ref().map_or(Color::Blue, |l| l.color.other());
    let port = p.nginx.port(color).ok_or_else(|| CliError::Failed {
        message: format!("the Nginx site has no {color:?} upstream server"),
        hint: "check app.host_port and app.replicas in the stack file".into(),
    })?;
    let container = p.layout.container(color);
    if let Err(e) = switch::start(r, p, &target, color, port).await {
        // `docker run` may leave a created, never-started container (a port the host has
        // in use, a missing volume driver): shown and removed like a release that failed
        // its gate.
        let logs = switch::discard(r, &container).await;
        return Err(CliError::Failed {
            message: format!(
                "release {} could not start on {}: {}\nlast {} log lines of {container}:\n{}",
                target.version,
                r.host(),
                first_line(&e.to_string()),
                switch::LOG_LINES,
                logs.trim_end()
            ),
            hint: "it never got traffic: the live release keeps serving. Fix the host (or the release) and deploy again".into(),
        });
    }
    if let Err(reason) = switch::wait_healthy(r, p, &container, port).await {
        let logs = switch::discard(r, &container).await;
        return Err(CliError::Failed {
            message: format!(
                "release {} failed its health gate on {}: {reason}\nlast {} log lines of {container}:\n{}",
                target.version,
                r.host(),
                switch::LOG_LINES,
                logs.trim_end()
            ),
            hint: "it never got traffic: the live release keeps serving. Fix the release and deploy again".into(),
        });
    }
    let https = match switch::point_nginx(r, &p.nginx, color).await {
        Ok(https) => https,
        Err(e) => {
            let _ = switch::discard(r, &container).await;
            return Err(e);
        }
    };
    switch::retire(r, p, color.other()).await?;
    let dropped = log.went_live(
        Release {
            version: target.version.clone(),
            image: target.image.clone(),
            image_id,
            color,
            deployed_at: now(),
        },
        p.keep,
    );
    r.check(&files::write(
        &p.layout.releases_file(),
        &log.to_text(),
        0o644,
    ))
    .await?;
    prune(r, &log, &dropped).await;
    Ok(Switched {
        color,
        kept: log.releases.iter().map(|x| x.version.clone()).collect(),
        https,
    })
}

fn rollback_target<R: Runner>(
    r: &R,
    log: &ReleaseLog,
    version: Option<&str>,
) -> Result<Target, CliError> {
    let kept: Vec<&str> = log.releases.iter().map(|x| x.version.as_str()).collect();
    let rel = log
        .rollback_target(version)
        .ok_or_else(|| CliError::Failed {
            message: match version {
                Some(v) => format!(
                    "{} keeps no release {v} (kept: {})",
                    r.host(),
                    kept.join(", ")
                ),
                None => format!("{} has no earlier release to roll back to", r.host()),
            },
            hint: "`fullslack releases --stack FILE` lists what each host keeps".into(),
        })?;
    Ok(Target {
        image: rel.image.clone(),
        version: rel.version.clone(),
        image_id: Some(rel.image_id.clone()),
    })
}

/// Idempotent: Docker and Nginx are there (installed on an SSH host that lacks them, see
/// [`setup`]), the Docker Engine answers, the state directory (0700) and the data volume exist.
async fn bootstrap<R: Runner>(r: &R, p: &Plan) -> Result<(), CliError> {
    setup::ensure_programs(r, p.install_missing).await?;
    let engine = r
        .run(&Cmd::new("docker").args(["version", "--format", "{{.Server.Version}}"]))
        .await?;
    if !engine.success() {
        return Err(CliError::Failed {
            message: format!(
                "no Docker Engine answers on {}: {}",
                r.host(),
                engine.stderr.trim()
            ),
            hint: "install Docker on the host (https://docs.docker.com/engine/install/) and let the SSH user use it (group `docker`)".into(),
        });
    }
    let dir = p.layout.stack_dir();
    r.check(&sh(&Cmd::new("mkdir")
        .args(["-p", &dir])
        .and(Cmd::new("chmod").args(["700", &dir]))))
        .await?;
    let label = vec![("fullslack.stack".to_string(), p.layout.stack.clone())];
    r.check(&docker::volume_create(&p.layout.data_volume(), &label))
        .await?;
    Ok(())
}

/// The release log, empty when the host has none yet.
pub async fn read_log<R: Runner>(r: &R, path: &str) -> Result<ReleaseLog, CliError> {
    let out = r
        .check(&sh(&Cmd::new("test")
            .args(["!", "-e", path])
            .or(Cmd::new("cat").arg(path))))
        .await?;
    ReleaseLog::parse(&out.stdout).map_err(|e| CliError::Failed {
        message: format!("{path} on {}: {e}", r.host()),
        hint: "move the file away; the next deploy starts a new log".into(),
    })
}

/// The env file (mode 0600) with the stack's secrets, through stdin: never on a command line.
async fn write_env_file<R: Runner>(r: &R, p: &Plan) -> Result<(), CliError> {
    if p.env.secrets.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for (k, v) in &p.env.secrets {
        if v.expose_secret().contains('\n') {
            return Err(CliError::Usage {
                message: format!("the secret {k} has a line break, which an env file cannot hold"),
                hint: "store the value without line breaks (base64 it if it is binary)".into(),
            });
        }
        text.push_str(&format!("{k}={}\n", v.expose_secret()));
    }
    let mut cmd = files::write(&p.layout.env_file(), "", 0o600);
    cmd.stdin = Some(StdinData::Secret(SecretString::from(text)));
    r.check(&cmd).await?;
    Ok(())
}

/// Removes the images of releases no longer kept (unless a kept release uses the same
/// image). Best effort: an image still in use stays, and the next deploy tries again.
async fn prune<R: Runner>(r: &R, log: &ReleaseLog, dropped: &[Release]) {
    for d in dropped {
        if log.releases.iter().any(|k| k.image == d.image) {
            continue;
        }
        if let Err(e) = r.check(&docker::rmi(&d.image)).await {
            tracing::warn!(image = %d.image, error = %e, "old image not removed");
        }
    }
}

/// Appends the audit line on the host.
async fn append_audit<R: Runner>(r: &R, p: &Plan, e: &AuditEntry) -> Result<(), CliError> {
    r.check(&files::append(&p.layout.audit_file(), &e.to_line()))
        .await?;
    Ok(())
}
