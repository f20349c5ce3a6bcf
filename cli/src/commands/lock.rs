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
    /// Tells this taking of the lock from any other (a deploy gives back, or takes over, only
    /// the lock whose details it read, even if the same user deploys the same version twice in
    /// one second). Empty in locks written before it existed and by `fullslack lock acquire`.
    pub id: String,
}

impl Holder {
    /// A holder with a fresh random id.
    pub fn new(who: String, since: String, message: String) -> Self {
        Holder {
            who,
            since,
            message,
            id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The `details` file's text (what `status` prints).
    pub fn details(&self) -> String {
        let mut d = format!(
            "who={}\nsince={}\nmessage={}\n",
            self.who, self.since, self.message
        );
        if !self.id.is_empty() {
            d.push_str(&format!("id={}\n", self.id));
        }
        d
    }
}

fn dir(root: &str, stack: &str) -> String {
    format!("{root}/{stack}.lock")
}

/// Takes the lock: fails (exit 1) when another deploy holds it.
pub fn acquire(root: &str, stack: &str, holder: &Holder) -> Cmd {
    let d = dir(root, stack);
    let details = holder.details();
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

/// The guard file that makes "is it still the lock I read? then remove it" one step: every
/// conditional removal runs under `flock` on it. (Taking the lock needs no guard: `mkdir` is
/// atomic.)
fn guard(root: &str, stack: &str) -> String {
    format!("{root}/.{stack}.lock.guard")
}

/// Removes the lock only if its details are still `details` (exit 3 otherwise), under the
/// guard. With `stale_after_secs`, also only if its heartbeat is older than that by the host's
/// clock: the check and the removal are one step, so two deploys that both judged the same
/// lock dead cannot both take it over (the second would remove the lock the first just took).
pub fn release_if(root: &str, stack: &str, details: &str, stale_after_secs: Option<u64>) -> Cmd {
    // `$(cat)` drops trailing newlines: compare without them.
    let want = details.trim_end_matches('\n');
    let script = "d=$1; [ \"$(cat \"$d/details\" 2>/dev/null)\" = \"$2\" ] || exit 3; \
                  if [ -n \"$3\" ]; then t=$(stat -c %Y \"$d/heartbeat\" 2>/dev/null) || exit 3; \
                  [ $(( $(date +%s) - t )) -gt \"$3\" ] || exit 3; fi; rm -rf \"$d\"";
    Cmd::new("flock").args([
        "-w".to_string(),
        "30".to_string(),
        guard(root, stack),
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "sh".to_string(),
        dir(root, stack),
        want.to_string(),
        stale_after_secs.map(|s| s.to_string()).unwrap_or_default(),
    ])
}

/// Exit status of [`release_if`] when the lock is no longer the one read (or not stale).
pub const NOT_THAT_LOCK: i32 = 3;

/// Parses `status` output.
pub fn parse_holder(text: &str) -> Option<Holder> {
    let mut who = None;
    let mut since = None;
    let mut message = None;
    let mut id = String::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("who", v)) => who = Some(v.to_string()),
            Some(("since", v)) => since = Some(v.to_string()),
            Some(("message", v)) => message = Some(v.to_string()),
            Some(("id", v)) => id = v.to_string(),
            _ => {}
        }
    }
    Some(Holder {
        who: who?,
        since: since?,
        message: message.unwrap_or_default(),
        id,
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
            id: String::new(),
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
                message: "m x".into(),
                id: String::new(),
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
            id: String::new(),
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
