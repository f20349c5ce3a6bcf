//! The deploy lock of a host for a deploy: taken before anything changes, with a wait for a
//! deploy that is running (`--lock-wait`) and a break for one that died (`--break-lock`).

use std::time::{Duration, Instant};

use crate::commands::lock::{self, Holder};
use crate::error::CliError;
use crate::runner::{RunError, Runner};

/// How to treat a lock someone else holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Wait this long for it.
    pub wait: Duration,
    /// Remove it first (a deploy that died left it).
    pub break_lock: bool,
}

/// Polling interval while waiting: the lock is a directory on the host, there is nothing to
/// be notified by.
const POLL: Duration = Duration::from_millis(500);

/// Takes the lock on the host. Returns the holder that was broken, if any.
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
        if start.elapsed() >= policy.wait {
            return Err(CliError::LockHeld {
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
            });
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
