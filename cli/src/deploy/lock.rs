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

/// How long a lock directory without details counts as another deploy in the middle of
/// taking it (its `mkdir` and the write of its details are two steps).
const MID_ACQUIRE: Duration = Duration::from_secs(5);

/// What [`take_over_if_dead`] found.
enum Takeover {
    /// The holder is alive (or has no heartbeat): the lock stays.
    Alive,
    /// The lock was a dead deploy's and is removed.
    Done,
    /// The lock is no longer the one read: another deploy took it over, or it was released.
    Changed,
}

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
            if !held.success() && start.elapsed() < policy.wait.max(MID_ACQUIRE) {
                // No details to read: released between our mkdir and cat, or another deploy
                // is between its mkdir and writing them. Look again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            // The details are there but unreadable, or nobody holds it and mkdir still fails:
            // the directory cannot be made.
            return Err(RunError::failed(r.host(), &cmd, &out).into());
        };
        match take_over_if_dead(r, root, stack, &h, &held.stdout, policy).await? {
            Takeover::Done => {
                broken = Some(h);
                continue;
            }
            // Someone else took it over (or released it) since we read it: read it again.
            Takeover::Changed => continue,
            Takeover::Alive => {}
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
/// The removal re-checks, in one step under the lock's guard, that the lock is still the one
/// read (`details`) and still stale: another deploy may have taken it over first.
async fn take_over_if_dead<R: Runner>(
    r: &R,
    root: &str,
    stack: &str,
    h: &Holder,
    details: &str,
    policy: Policy,
) -> Result<Takeover, CliError> {
    let Some(bound) = policy.stale_after else {
        return Ok(Takeover::Alive);
    };
    let Some(age) = heartbeat_age(r, root, stack).await? else {
        // No heartbeat: an operator's lock (never taken over), or the lock read went away
        // meanwhile (another deploy took it over): then read it again rather than name a
        // holder that is gone.
        let now = r.run(&lock::status(root, stack)).await?;
        return Ok(if now.success() && now.stdout == details {
            Takeover::Alive
        } else {
            Takeover::Changed
        });
    };
    let bound_secs = bound.as_secs().max(1);
    if age <= bound_secs {
        return Ok(Takeover::Alive);
    }
    let release = lock::release_if(root, stack, details, Some(bound_secs));
    let removed = r.run(&release).await?;
    if removed.status == lock::NOT_THAT_LOCK {
        // Another deploy took it over, or it was released, since we read it.
        return Ok(Takeover::Changed);
    }
    if !removed.success() {
        return Err(RunError::failed(r.host(), &release, &removed).into());
    }
    eprintln!(
        "{}: the deploy lock held by {} since {} ({}) has had no heartbeat for {age} s \
         (bound {} s): that deploy died; taking the lock over",
        r.host(),
        h.who,
        h.since,
        h.message,
        bound_secs
    );
    Ok(Takeover::Done)
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

/// Gives the lock back, if it is still `me`'s: a deploy whose lock was taken over (it was
/// judged dead, or broken with `--break-lock`) must not remove the new holder's lock.
pub async fn give_back<R: Runner>(
    r: &R,
    root: &str,
    stack: &str,
    me: &Holder,
) -> Result<(), CliError> {
    let cmd = lock::release_if(root, stack, &me.details(), None);
    let out = r.run(&cmd).await?;
    if out.status == lock::NOT_THAT_LOCK {
        eprintln!(
            "{}: the deploy lock of `{stack}` was no longer this deploy's (taken over or broken \
             while it ran); left to its holder",
            r.host()
        );
        return Ok(());
    }
    if !out.success() {
        return Err(RunError::failed(r.host(), &cmd, &out).into());
    }
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
            id: String::new(),
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
        give_back(&LocalRunner, root, "chat", &holder("deploy v3"))
            .await
            .expect("released");
        assert!(!dir.path().join("locks/chat.lock").exists());
    }

    /// Leaves a lock of `message` whose heartbeat is an hour old: a dead deploy's.
    async fn dead_lock(root: &str, message: &str) -> Holder {
        let dead = Holder::new(
            "ci@old".into(),
            "2026-11-30T01:00:00Z".into(),
            message.into(),
        );
        LocalRunner
            .check(&lock::acquire(root, "chat", &dead))
            .await
            .expect("dead deploy's lock");
        LocalRunner
            .check(&Cmd::new("touch").args([
                "-d".to_string(),
                "1 hour ago".to_string(),
                heartbeat_file(root, "chat"),
            ]))
            .await
            .expect("old heartbeat");
        dead
    }

    #[tokio::test]
    async fn of_deploys_racing_for_one_dead_lock_exactly_one_takes_it_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("locks");
        let root = root.to_str().expect("utf-8");
        let policy = Policy {
            wait: Duration::ZERO,
            break_lock: false,
            stale_after: Some(Duration::from_secs(60)),
        };
        // Several rounds: before the takeover was one guarded step, two deploys that both
        // read the dead lock could both "take it over", the second removing the first's.
        for round in 0..8 {
            let dead = dead_lock(root, &format!("deploy v{round}")).await;
            let racers: Vec<Holder> = (0..4)
                .map(|i| Holder::new(format!("ci@runner{i}"), now_ish(), format!("deploy r{i}")))
                .collect();
            let results = futures_util::future::join_all(
                racers
                    .iter()
                    .map(|me| take(&LocalRunner, root, "chat", me, policy)),
            )
            .await;
            let winners: Vec<usize> = results
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.as_ref().ok().map(|_| i))
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let w = winners[0];
            // The winner removed the dead lock itself, or took the lock right after another
            // racer removed it.
            let broke = results[w].as_ref().expect("winner").clone();
            assert!(broke.is_none() || broke == Some(dead.clone()), "{broke:?}");
            // The lock on disk is the winner's, and every loser named the winner.
            let held = LocalRunner
                .check(&lock::status(root, "chat"))
                .await
                .expect("held");
            assert_eq!(lock::parse_holder(&held.stdout), Some(racers[w].clone()));
            for (i, r) in results.iter().enumerate() {
                if i != w {
                    let e = r.as_ref().expect_err("loser");
                    assert!(
                        matches!(e, CliError::LockHeld { .. })
                            && e.to_string().contains(&format!("ci@runner{w}")),
                        "round {round}: {e}"
                    );
                }
            }
            give_back(&LocalRunner, root, "chat", &racers[w])
                .await
                .expect("released");
            assert!(!dir.path().join("locks/chat.lock").exists());
        }
    }

    #[tokio::test]
    async fn a_deploy_whose_lock_was_taken_over_does_not_remove_the_new_holders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("locks");
        let root = root.to_str().expect("utf-8");
        let slow = dead_lock(root, "deploy v1").await;
        let next = Holder::new("ci@next".into(), now_ish(), "deploy v2".into());
        let policy = Policy {
            wait: Duration::ZERO,
            break_lock: false,
            stale_after: Some(Duration::from_secs(60)),
        };
        let taken = take(&LocalRunner, root, "chat", &next, policy)
            .await
            .expect("taken over");
        assert_eq!(taken, Some(slow.clone()));
        // The slow deploy finishes after all and gives "its" lock back: the new one stays.
        give_back(&LocalRunner, root, "chat", &slow)
            .await
            .expect("not an error");
        let held = LocalRunner
            .check(&lock::status(root, "chat"))
            .await
            .expect("still held");
        assert_eq!(lock::parse_holder(&held.stdout), Some(next));
    }

    fn now_ish() -> String {
        "2026-11-30T03:00:00Z".into()
    }
}
