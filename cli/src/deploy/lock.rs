//! The deploy lock of a host for a deploy: taken before anything changes, with a wait for a
//! deploy that is running (`--lock-wait`), a break for one that died (`--break-lock`), and a
//! heartbeat: while a deploy runs it touches `heartbeat` in the lock every quarter of the
//! stale bound, so a lock whose heartbeat is older than the bound (`--lock-stale-after`) is a
//! dead deploy's (killed, laptop closed, SSH dropped) and the next deploy takes it over,
//! saying whose it was. A lock without a heartbeat (`fullslack lock acquire` by an operator)
//! is never taken over. Ages are measured by the host's own clock (`stat` and `date` there),
//! so a deployer's clock skew does not matter.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::commands::lock::{self, Holder};
use crate::commands::{sh, Cmd};
use crate::error::CliError;
use crate::runner::{RunError, Runner};

/// How to treat a lock someone else holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Wait this long for it.
    pub wait: Duration,
    /// Remove it first (a deploy that died left it).
    pub break_lock: bool,
    /// A heartbeat older than this marks the holder dead (`None`: no heartbeat, never stale).
    pub stale_after: Option<Duration>,
}

/// Polling interval while waiting: the lock is a directory on the host, there is nothing to
/// be notified by.
const POLL: Duration = Duration::from_millis(500);

fn heartbeat_file(root: &str, stack: &str) -> String {
    format!("{root}/{stack}.lock/heartbeat")
}

/// Takes the lock on the host. Returns the holder that was broken or taken over, if any.
pub async fn take<R: Runner>(
    r: &R,
    root: &str,
    stack: &str,
    me: &Holder,
    policy: Policy,
) -> Result<Option<Holder>, CliError> {
    let mut broken = None;
    if policy.break_lock {
        let held = r.run(&lock::status(root, stack)).await?;
        broken = lock::parse_holder(&held.stdout);
        r.check(&lock::release(root, stack)).await?;
    }
    let start = Instant::now();
    let mut said = false;
    loop {
        let cmd = lock::acquire(root, stack, me);
        let out = r.run(&cmd).await?;
        if out.success() {
            if policy.stale_after.is_some() {
                r.check(&Cmd::new("touch").arg(heartbeat_file(root, stack)))
                    .await?;
            }
            return Ok(broken);
        }
        let held = r.run(&lock::status(root, stack)).await?;
        let Some(h) = lock::parse_holder(&held.stdout) else {
            // Nobody holds it and mkdir still failed: the directory cannot be made.
            if held.success() || start.elapsed() >= policy.wait {
                return Err(RunError::Failed {
                    host: r.host(),
                    cmd: cmd.to_string(),
                    status: out.status,
                    stderr: out.stderr.trim().to_string(),
                }
                .into());
            }
            // Released between our mkdir and cat: try again at once.
            continue;
        };
        if take_over_if_dead(r, root, stack, &h, policy).await? {
            broken = Some(h);
            continue;
        }
        if start.elapsed() >= policy.wait {
            return Err(held_error(r, stack, &h, policy));
        }
        if !said {
            // On stderr, so that `--json` output stays one document: the user sees why
            // nothing happens yet.
            eprintln!(
                "{}: waiting up to {} s for the deploy lock held by {} since {} ({})",
                r.host(),
                policy.wait.as_secs(),
                h.who,
                h.since,
                h.message
            );
            said = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn held_error<R: Runner>(r: &R, stack: &str, h: &Holder, policy: Policy) -> CliError {
    CliError::LockHeld {
        message: format!(
            "the deploy lock of `{stack}` on {} is held by {} since {} ({}){}",
            r.host(),
            h.who,
            h.since,
            h.message,
            if policy.wait.is_zero() {
                String::new()
            } else {
                format!("; waited {} s", policy.wait.as_secs())
            }
        ),
    }
}

/// Removes the lock when its holder's heartbeat is older than the bound; says so on stderr.
async fn take_over_if_dead<R: Runner>(
    r: &R,
    root: &str,
    stack: &str,
    h: &Holder,
    policy: Policy,
) -> Result<bool, CliError> {
    let Some(bound) = policy.stale_after else {
        return Ok(false);
    };
    let Some(age) = heartbeat_age(r, root, stack).await? else {
        return Ok(false);
    };
    if age <= bound.as_secs().max(1) {
        return Ok(false);
    }
    eprintln!(
        "{}: the deploy lock held by {} since {} ({}) has had no heartbeat for {age} s \
         (bound {} s): that deploy died; taking the lock over",
        r.host(),
        h.who,
        h.since,
        h.message,
        bound.as_secs().max(1)
    );
    r.check(&lock::release(root, stack)).await?;
    Ok(true)
}

/// Seconds since the lock's heartbeat was last touched, by the host's clock (`None`: the lock
/// has no heartbeat, or it went away meanwhile).
pub async fn heartbeat_age<R: Runner>(
    r: &R,
    root: &str,
    stack: &str,
) -> Result<Option<u64>, CliError> {
    let cmd = sh(&Cmd::new("stat")
        .args(["-c", "%Y", &heartbeat_file(root, stack)])
        .and(Cmd::new("date").arg("+%s")));
    let out = r.run(&cmd).await?;
    if !out.success() {
        return Ok(None);
    }
    let mut n = out.stdout.split_whitespace().map(str::parse::<u64>);
    Ok(match (n.next(), n.next()) {
        (Some(Ok(touched)), Some(Ok(now))) => Some(now.saturating_sub(touched)),
        _ => None,
    })
}

/// Runs `work` while touching the lock's heartbeat every quarter of the stale bound, so other
/// deploys see this one is alive. A failed touch is logged, not fatal: the work decides.
pub async fn while_beating<R: Runner, T>(
    r: &R,
    root: &str,
    stack: &str,
    policy: Policy,
    work: impl Future<Output = T>,
) -> T {
    let Some(bound) = policy.stale_after else {
        return work.await;
    };
    let every = (bound / 4).max(Duration::from_millis(250));
    let touch = Cmd::new("touch").arg(heartbeat_file(root, stack));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Err(e) = r.check(&touch).await {
                    tracing::warn!(error = %e, "deploy lock heartbeat not refreshed");
                }
            }
        }
    }
}

/// Gives the lock back.
pub async fn give_back<R: Runner>(r: &R, root: &str, stack: &str) -> Result<(), CliError> {
    r.check(&lock::release(root, stack)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::LocalRunner;

    fn holder(message: &str) -> Holder {
        Holder {
            who: "ci@runner".into(),
            since: "2026-11-30T03:00:00Z".into(),
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn a_held_lock_names_its_holder_and_break_lock_takes_it_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("locks");
        let root = root.to_str().expect("utf-8");
        let first = take(
            &LocalRunner,
            root,
            "chat",
            &holder("deploy v1"),
            Policy::default(),
        )
        .await
        .expect("free lock");
        assert_eq!(first, None);
        let held = take(
            &LocalRunner,
            root,
            "chat",
            &holder("deploy v2"),
            Policy::default(),
        )
        .await
        .expect_err("held");
        let text = held.to_string();
        assert!(matches!(held, CliError::LockHeld { .. }), "{text}");
        assert!(
            text.contains("held by ci@runner") && text.contains("(deploy v1)"),
            "{text}"
        );
        let broken = take(
            &LocalRunner,
            root,
            "chat",
            &holder("deploy v3"),
            Policy {
                wait: Duration::ZERO,
                break_lock: true,
                stale_after: None,
            },
        )
        .await
        .expect("broken and taken");
        assert_eq!(broken, Some(holder("deploy v1")));
        give_back(&LocalRunner, root, "chat")
            .await
            .expect("released");
        assert!(!dir.path().join("locks/chat.lock").exists());
    }
}
