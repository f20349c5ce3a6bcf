//! Commands run over SSH through a real sshd on loopback (own host key, own authorized key,
//! test-owned known_hosts: [`fullslack_test_support::Sshd`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fullslack::commands::{files, lock, Cmd};
use fullslack::runner::{RunError, Runner, SshRunner, SshTarget};
use fullslack_test_support::{fullslack, paths::short_tempdir, Sshd};

fn start_sshd(dir: &Path) -> Sshd {
    Sshd::start(dir)
}

fn target(s: &Sshd) -> SshTarget {
    let mut t = SshTarget::new("127.0.0.1", s.user.clone(), s.port);
    t.identity_file = Some(s.dir.join("client_key"));
    t.known_hosts = Some(s.dir.join("known_hosts"));
    t.control_dir = Some(s.dir.clone());
    t.connect_timeout = Duration::from_secs(10);
    t
}

#[tokio::test]
async fn commands_run_over_real_ssh_with_exact_quoting() {
    let dir = short_tempdir();
    let sshd = start_sshd(dir.path());
    let runner = SshRunner::connect(&target(&sshd))
        .await
        .expect("ssh connect");

    // Hostile values arrive verbatim through the remote shell.
    let hostile = "it's $(echo pwned) `id` ; rm -rf / && \"q\" \\ *\nline2";
    let out = runner
        .check(&Cmd::new("printf").args(["%s", hostile]))
        .await
        .expect("printf over ssh");
    assert_eq!(out.stdout, hostile);

    // Files are written atomically from stdin, in a path with spaces and quotes.
    let remote = dir.path().join("etc dir").join("it's.conf");
    let remote = remote.to_str().expect("utf-8");
    runner
        .check(&files::write(remote, "server { } # $(x)\n", 0o640))
        .await
        .expect("write over ssh");
    assert_eq!(
        std::fs::read_to_string(remote).expect("file written"),
        "server { } # $(x)\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(remote)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );

    // The deploy lock is exclusive over SSH too.
    let root = dir.path().join("locks");
    let root = root.to_str().expect("utf-8");
    let h = lock::Holder {
        who: "ci@runner".into(),
        since: "2026-01-01T00:00:00Z".into(),
        message: "deploy v1".into(),
        id: String::new(),
    };
    runner
        .check(&lock::acquire(root, "chat", &h))
        .await
        .expect("lock");
    let again = runner
        .run(&lock::acquire(root, "chat", &h))
        .await
        .expect("runs");
    assert!(!again.success());
    let st = runner
        .check(&lock::status(root, "chat"))
        .await
        .expect("status");
    assert_eq!(lock::parse_holder(&st.stdout), Some(h));

    // A failing command reports its status and stderr.
    match runner
        .check(&Cmd::new("sh").args(["-c", "echo broken >&2; exit 7"]))
        .await
    {
        Err(RunError::Failed { status, stderr, .. }) => {
            assert_eq!(status, 7);
            assert_eq!(stderr, "broken");
        }
        other => panic!("expected failure, got {other:?}"),
    }
    runner.close().await.expect("close");
}

#[tokio::test]
async fn unknown_host_key_is_refused() {
    let dir = short_tempdir();
    let sshd = start_sshd(dir.path());
    let mut t = target(&sshd);
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    t.known_hosts = Some(empty);
    let err = SshRunner::connect(&t)
        .await
        .err()
        .expect("strict host key checking refuses an unknown host");
    assert!(matches!(err, RunError::Ssh { .. }), "{err}");
}

#[test]
fn lock_cli_over_ssh() {
    let dir = short_tempdir();
    let sshd = start_sshd(dir.path());
    let stack = dir.path().join("stack.toml");
    std::fs::write(
        &stack,
        format!(
            "name = \"chat\"\ndomains = [\"chat.example.test\"]\ntarget = \"ssh\"\n\
             [ssh]\nuser = \"{}\"\nport = {}\nidentity_file = \"{}\"\n\
             [[hosts]]\naddress = \"127.0.0.1\"\n[image]\nname = \"fullslack/chat\"\n\
             [tls]\nenabled = false\n\
             [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"JWT\" }}\n",
            sshd.user,
            sshd.port,
            sshd.dir.join("client_key").display()
        ),
    )
    .expect("stack");
    let root = dir.path().join("locks");
    let run = |args: &[&str]| {
        fullslack!()
            .env_remove("USER")
            .env_remove("LOGNAME")
            .env_remove("HOSTNAME")
            .args(args)
            .arg("--stack")
            .arg(&stack)
            .arg("--known-hosts")
            .arg(sshd.dir.join("known_hosts"))
            .arg("--lock-root")
            .arg(&root)
            .output()
            .expect("run fullslack")
    };
    let out = run(&["lock", "acquire", "-m", "deploy v2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(root.join("chat.lock/details").exists());
    // The holder is this user at this machine, even where USER/LOGNAME/HOSTNAME are unset.
    let details = std::fs::read_to_string(root.join("chat.lock/details")).expect("details");
    let user = String::from_utf8(
        Command::new("id")
            .arg("-un")
            .output()
            .expect("id -un")
            .stdout,
    )
    .expect("utf-8");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert!(
        details.contains(&format!("who={}@{}\n", user.trim(), host.trim())),
        "{details}"
    );
    let out = run(&["lock", "acquire"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a held lock is a failure, not a usage error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is held by") && err.contains("deploy v2"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    let out = run(&["lock", "status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("held by"));
    let out = run(&["lock", "release"]);
    assert!(out.status.success());
    assert!(!root.join("chat.lock").exists());

    // --dry-run prints the exact commands and touches nothing.
    let out = run(&["lock", "acquire", "--dry-run", "-m", "x"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("sh -c 'mkdir -p "), "{text}");
    assert!(!root.join("chat.lock").exists());
}

#[test]
fn a_failed_multi_host_acquire_gives_back_what_it_took() {
    let dir = short_tempdir();
    let sshd = start_sshd(dir.path());
    let stack = dir.path().join("stack.toml");
    // Two hosts that share one lock directory: the second finds the lock the first just took,
    // as a host held by someone else would.
    std::fs::write(
        &stack,
        format!(
            "name = \"chat\"\ndomains = [\"chat.example.test\"]\ntarget = \"ssh\"\n\
             [ssh]\nuser = \"{}\"\nport = {}\nidentity_file = \"{}\"\n\
             [[hosts]]\naddress = \"127.0.0.1\"\n[[hosts]]\naddress = \"127.0.0.1\"\n\
             [image]\nname = \"fullslack/chat\"\n[tls]\nenabled = false\n\
             [mongodb]\nmode = \"external\"\nurl = {{ env = \"M\" }}\n\
             [redis]\nmode = \"external\"\nurl = {{ env = \"R\" }}\n\
             [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"JWT\" }}\n",
            sshd.user,
            sshd.port,
            sshd.dir.join("client_key").display()
        ),
    )
    .expect("stack");
    let root = dir.path().join("locks");
    let out = fullslack!()
        .args(["lock", "acquire", "--stack"])
        .arg(&stack)
        .arg("--known-hosts")
        .arg(sshd.dir.join("known_hosts"))
        .arg("--lock-root")
        .arg(&root)
        .output()
        .expect("run fullslack");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is held by"), "{err}");
    assert!(
        err.contains(&format!(
            "released the lock this run had taken on 127.0.0.1:{}",
            sshd.port
        )),
        "{err}"
    );
    assert!(
        !root.join("chat.lock").exists(),
        "the first host's lock was left behind"
    );
}

#[test]
fn doctor_logs_in_over_real_ssh_and_reports_an_unknown_host_key() {
    let dir = short_tempdir();
    let sshd = start_sshd(dir.path());
    let write_stack = |known_hosts: &Path| {
        let stack = dir.path().join("stack.toml");
        std::fs::write(
            &stack,
            format!(
                "name = \"chat\"\ndomains = [\"chat.example.test\"]\ntarget = \"ssh\"\n\
                 [ssh]\nuser = \"{}\"\nport = {}\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
                 [[hosts]]\naddress = \"127.0.0.1\"\n[image]\nname = \"fullslack/chat\"\n\
                 [tls]\nenabled = false\n\
             [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"JWT\" }}\n",
                sshd.user,
                sshd.port,
                sshd.dir.join("client_key").display(),
                known_hosts.display()
            ),
        )
        .expect("stack");
        stack
    };
    let doctor = |stack: &Path| {
        let out = fullslack!()
            .args(["doctor", "--json", "--timeout", "5", "--stack"])
            .arg(stack)
            .args([
                "--skip", "dns", "--skip", "reach", "--skip", "caa", "--skip", "tls",
            ])
            .args(["--skip", "clock", "--skip", "docker", "--skip", "aws"])
            .output()
            .expect("run doctor");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), v)
    };
    let (code, report) = doctor(&write_stack(&sshd.dir.join("known_hosts")));
    assert_eq!(code, Some(0), "{report:#}");
    let names: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["outcome"].as_str().unwrap_or(""),
            )
        })
        // Skipped checks are listed as such (never read as passed); only SSH's ran.
        .filter(|(_, outcome)| *outcome != "skip")
        .collect();
    assert_eq!(
        names,
        [("ssh.key", "ok"), ("ssh.reach", "ok"), ("ssh.login", "ok")]
    );

    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let (code, report) = doctor(&write_stack(&empty));
    assert_eq!(code, Some(1), "{report:#}");
    let login = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "ssh.login")
        .expect("ssh.login");
    assert_eq!(login["outcome"], "fail");
    assert!(login["fix"].as_str().expect("fix").contains("ssh-keyscan"));
}
