//! The deploy lock on a host: a directory created with `mkdir` (atomic), holding who took it
//! and when.

use super::{sh, Cmd};

/// Default lock directory.
pub const LOCK_ROOT: &str = "/var/lib/fullslack/locks";

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// User (`$USER@hostname` of the deployer).
    pub who: String,
    /// RFC 3339 time the lock was taken.
    pub since: String,
    /// What is being done (`deploy v1.4.2`).
    pub message: String,
}

fn dir(root: &str, stack: &str) -> String {
    format!("{root}/{stack}.lock")
}

/// Takes the lock: fails (exit 1) when another deploy holds it.
pub fn acquire(root: &str, stack: &str, holder: &Holder) -> Cmd {
    let d = dir(root, stack);
    let details = format!(
        "who={}\nsince={}\nmessage={}\n",
        holder.who, holder.since, holder.message
    );
    sh(&Cmd::new("mkdir")
        .args(["-p", root])
        .and(Cmd::new("mkdir").arg(&d))
        .and(
            Cmd::new("printf")
                .args(["%s", &details])
                .redirect_to(&format!("{d}/details")),
        ))
}

/// Shows who holds the lock (`cat` fails when nobody does).
pub fn status(root: &str, stack: &str) -> Cmd {
    Cmd::new("cat").arg(format!("{}/details", dir(root, stack)))
}

/// Releases the lock.
pub fn release(root: &str, stack: &str) -> Cmd {
    Cmd::new("rm").args(["-rf", &dir(root, stack)])
}

/// Parses `status` output.
pub fn parse_holder(text: &str) -> Option<Holder> {
    let mut who = None;
    let mut since = None;
    let mut message = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("who", v)) => who = Some(v.to_string()),
            Some(("since", v)) => since = Some(v.to_string()),
            Some(("message", v)) => message = Some(v.to_string()),
            _ => {}
        }
    }
    Some(Holder {
        who: who?,
        since: since?,
        message: message.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let h = Holder {
            who: "alice@laptop".into(),
            since: "2026-01-02T03:04:05Z".into(),
            message: "deploy 'v2' $(id)".into(),
        };
        assert_eq!(
            acquire(LOCK_ROOT, "chat", &h).to_shell(),
            "sh -c 'mkdir -p /var/lib/fullslack/locks && mkdir /var/lib/fullslack/locks/chat.lock \
             && printf '\\''%s'\\'' '\\''who=alice@laptop\nsince=2026-01-02T03:04:05Z\nmessage=deploy '\\''\\'\\'''\\''v2'\\''\\'\\'''\\'' $(id)\n'\\'' \
             > /var/lib/fullslack/locks/chat.lock/details'"
        );
        assert_eq!(
            status(LOCK_ROOT, "chat").to_shell(),
            "cat /var/lib/fullslack/locks/chat.lock/details"
        );
        assert_eq!(
            release(LOCK_ROOT, "chat").to_shell(),
            "rm -rf /var/lib/fullslack/locks/chat.lock"
        );
        let parsed = parse_holder("who=a\nsince=t\nmessage=m x\n");
        assert_eq!(
            parsed,
            Some(Holder {
                who: "a".into(),
                since: "t".into(),
                message: "m x".into()
            })
        );
        assert_eq!(parse_holder("garbage"), None);
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;
    use crate::runner::{LocalRunner, Runner};

    #[tokio::test]
    async fn lock_is_exclusive_and_records_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("locks dir");
        let root = root.to_str().expect("utf-8");
        let h = Holder {
            who: "bob@ci".into(),
            since: "2026-01-02T03:04:05Z".into(),
            message: "deploy 'v3' $(touch /tmp/pwned)".into(),
        };
        LocalRunner
            .check(&acquire(root, "chat", &h))
            .await
            .expect("first acquire");
        let second = LocalRunner
            .run(&acquire(root, "chat", &h))
            .await
            .expect("runs");
        assert!(!second.success(), "a held lock must not be taken twice");
        let out = LocalRunner
            .check(&status(root, "chat"))
            .await
            .expect("status");
        assert_eq!(parse_holder(&out.stdout), Some(h));
        LocalRunner
            .check(&release(root, "chat"))
            .await
            .expect("release");
        assert!(!LocalRunner
            .run(&status(root, "chat"))
            .await
            .expect("runs")
            .success());
    }
}
