//! Concurrent deploys: a deploy finding the host's lock held fails at once naming the holder,
//! or waits for it with `--lock-wait`; `--break-lock` takes over a dead deploy's lock and says
//! whose it was. The live release is untouched by a deploy that could not lock.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use super::{text, Host};

#[test]
fn a_second_deploy_names_the_holder_waits_for_it_or_breaks_a_dead_lock() {
    let h = Host::new();
    h.build("v1", None);
    let lock_root = h.state().join("locks");
    let lock = |verb: &str, extra: &[&str]| {
        h.cli(&["lock", verb])
            .arg("--lock-root")
            .arg(&lock_root)
            .args(extra)
            .output()
            .expect("run lock")
    };
    // Another operator's deploy holds the lock (taken the way every deploy takes it).
    let out = lock("acquire", &["-m", "deploy v9 by the other operator"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = h.switch("deploy", Some("v1"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is held by"), "{err}");
    assert!(err.contains("deploy v9 by the other operator"), "{err}");
    assert!(
        h.containers().is_empty(),
        "nothing was started without the lock"
    );

    // --lock-wait: the holder finishes while the second deploy waits, which then proceeds.
    let mut waiting = h
        .cli(&["deploy", "--version", "v1", "--lock-wait", "120"])
        .args(h.switch_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start deploy");
    // Release only once the waiting deploy says it found the lock held and waits.
    let mut stderr = BufReader::new(waiting.stderr.take().expect("stderr"));
    let mut said = String::new();
    let mut line = String::new();
    while !line.contains("waiting up to 120 s for the deploy lock") {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "the deploy ended without waiting: {said}");
        said.push_str(&line);
    }
    assert!(line.contains("deploy v9 by the other operator"), "{line}");
    let out = lock("release", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read stderr");
    let status = waiting.wait().expect("deploy exits");
    assert!(status.success(), "deploy after waiting: {said}{rest}");
    assert_eq!(h.containers(), [format!("{}-blue v1", h.name)]);

    // A dead deploy's lock: --break-lock removes it, names whose it was, and deploys.
    let out = lock("acquire", &["-m", "deploy v8 that died"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = h.switch("deploy", Some("v1"), &["--break-lock"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("broke the lock of"), "{stdout}");
    assert!(stdout.contains("deploy v8 that died"), "{stdout}");
    assert_eq!(h.containers(), [format!("{}-green v1", h.name)]);
    assert!(!lock_root.join(format!("{}.lock", h.name)).exists());
}
