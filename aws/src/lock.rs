//! A per-stack lock in AWS, so that two `apply`/`destroy` runs (and later deploys) of the same
//! stack never interleave: a String parameter `/fullslack/<stack>/lock` in SSM, created with
//! `Overwrite=false` (creation is atomic: of two concurrent creates exactly one succeeds). Its
//! value says who holds it, since when and for what. Release deletes it only while it is still
//! ours (the token matches); `break_lock` deletes it whoever holds it.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ssm::types::{ParameterType, Tag};
use aws_smithy_types::date_time::{DateTime, Format};
use serde::{Deserialize, Serialize};

use crate::error::SdkResultExt;
use crate::{Aws, AwsError, TAG_STACK};

/// Who holds a lock, as stored in the parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `user@host` of the process that took it.
    pub holder: String,
    /// When it was taken (RFC 3339, UTC).
    pub since: String,
    /// What it was taken for (`apply`, `destroy`, `deploy`).
    pub command: String,
    /// Identifies this acquisition (so a release never deletes someone else's lock).
    pub token: String,
}

/// A lock this process holds. Release it with [`release`]; a process that dies leaves it
/// behind (break it with [`break_lock`]).
#[derive(Debug, Clone)]
pub struct Lock {
    /// The stack.
    pub stack: String,
    /// What is stored.
    pub holder: Holder,
}

/// The parameter that is the lock.
pub fn parameter(stack: &str) -> String {
    format!("/fullslack/{stack}/lock")
}

/// `user@host` of whoever runs this: the user from `USER` or `LOGNAME`, else the name of
/// the process's uid (CI often sets neither), the host from gethostname(2) (not `HOSTNAME`,
/// which shells set but do not export). Both locks (this one and the hosts' deploy lock)
/// name their holder with it.
pub fn whoami() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| {
            let uid = nix::unistd::getuid();
            match nix::unistd::User::from_uid(uid) {
                Ok(Some(u)) => u.name,
                _ => format!("uid{uid}"),
            }
        });
    let host = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host}")
}

fn now_rfc3339() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// Who holds the stack's lock now, if anyone.
pub async fn holder(aws: &Aws, stack: &str) -> Result<Option<Holder>, AwsError> {
    match aws
        .ssm()
        .get_parameter()
        .name(parameter(stack))
        .send()
        .await
    {
        Ok(out) => {
            let value = out.parameter().and_then(|p| p.value()).unwrap_or_default();
            Ok(Some(serde_json::from_str(value).unwrap_or(Holder {
                holder: format!("(unreadable lock value `{value}`)"),
                since: String::new(),
                command: String::new(),
                token: String::new(),
            })))
        }
        Err(e) => {
            let e = AwsError::from_sdk("ssm:GetParameter", e);
            if e.code() == Some("ParameterNotFound") {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Takes the stack's lock for `command`. While someone else holds it, waits up to `wait`
/// (polling), then fails naming the holder. `say` hears once that we are waiting.
pub async fn acquire(
    aws: &Aws,
    stack: &str,
    command: &str,
    wait: Duration,
    say: &(dyn Fn(String) + Sync),
) -> Result<Lock, AwsError> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let me = Holder {
        holder: whoami(),
        since: now_rfc3339(),
        command: command.to_string(),
        token: format!("{}-{nanos}", std::process::id()),
    };
    let value = serde_json::to_string(&me).unwrap_or_default();
    let start = Instant::now();
    let mut told = false;
    loop {
        let tag = Tag::builder()
            .key(TAG_STACK)
            .value(stack)
            .build()
            .map_err(|e| AwsError::invalid(format!("bad tag: {e}"), "report this bug"))?;
        let put = aws
            .ssm()
            .put_parameter()
            .name(parameter(stack))
            .value(&value)
            .r#type(ParameterType::String)
            .overwrite(false)
            .description(format!("fullslack lock of stack {stack}"))
            .tags(tag)
            .send()
            .await;
        match put {
            Ok(_) => {
                let mut holder = me;
                holder.since = now_rfc3339();
                return Ok(Lock {
                    stack: stack.to_string(),
                    holder,
                });
            }
            Err(e) => {
                let e = AwsError::from_sdk("ssm:PutParameter", e);
                if e.code() != Some("ParameterAlreadyExists") {
                    return Err(e);
                }
            }
        }
        // Held. (It may have been released in between: then the next put wins.)
        let Some(h) = holder(aws, stack).await? else {
            continue;
        };
        if start.elapsed() >= wait {
            return Err(AwsError::Locked {
                stack: stack.to_string(),
                holder: h.holder,
                since: h.since,
                command: h.command,
                waited_secs: wait.as_secs(),
            });
        }
        if !told {
            say(format!(
                "stack `{stack}` is locked by {} since {} ({}): waiting up to {} s",
                h.holder,
                h.since,
                h.command,
                wait.as_secs()
            ));
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Releases a lock we hold; a lock someone has broken and re-taken meanwhile is left alone.
pub async fn release(aws: &Aws, lock: &Lock) -> Result<(), AwsError> {
    match holder(aws, &lock.stack).await? {
        Some(h) if h.token == lock.holder.token => {
            aws.ssm()
                .delete_parameter()
                .name(parameter(&lock.stack))
                .send()
                .await
                .ctx("ssm:DeleteParameter")?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Removes the stack's lock whoever holds it (for a run that died). Returns who held it.
pub async fn break_lock(aws: &Aws, stack: &str) -> Result<Option<Holder>, AwsError> {
    let h = holder(aws, stack).await?;
    if h.is_some() {
        match aws
            .ssm()
            .delete_parameter()
            .name(parameter(stack))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = AwsError::from_sdk("ssm:DeleteParameter", e);
                if e.code() != Some("ParameterNotFound") {
                    return Err(e);
                }
            }
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_a_user_and_a_real_host() {
        let w = whoami();
        let (user, host) = w.split_once('@').expect("user@host");
        assert!(!user.is_empty() && !host.is_empty(), "{w}");
        if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(host, kernel.trim());
        }
        assert_eq!(parameter("s"), "/fullslack/s/lock");
    }
}
