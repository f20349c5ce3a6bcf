//! The per-stack lock: applies of one stack take turns.

use super::*;

/// Starts `fullslack ARGS` in the background; its stderr lines arrive on the channel.
fn spawn_fullslack(
    moto: &Moto,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("run fullslack");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn finish(
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait");
    let mut all = String::from_utf8_lossy(&out.stdout).to_string();
    all.push_str("\n--- stderr\n");
    for l in &rx {
        all.push_str(&l);
        all.push('\n');
    }
    (out.status.code(), all)
}

#[test]
fn applies_of_one_stack_take_turns_under_its_lock() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let name = "lock-test";
    let base = ec2_stack(dir.path(), name, Some("203.0.113.7/32"));
    let [one, two, three] = [1, 2, 3].map(|n| stack_with_count(dir.path(), &base, n));
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&one), "--yes"],
        None,
    ));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let count = || instances_of(&rt, &aws, name).len();
    let quiet = |_: String| {};

    // Someone holds the lock: apply fails at once naming the holder, and launches nothing.
    let held = rt
        .block_on(fullslack_aws::lock::acquire(
            &aws,
            name,
            "deploy",
            std::time::Duration::ZERO,
            &quiet,
        ))
        .expect("take the lock");
    let me = fullslack_aws::lock::whoami();
    a_held_lock_refuses_apply_and_destroy(&moto, [&one, &two], name, &me, &count);
    lock_wait_goes_on_once_released(&moto, &two, &rt, &aws, &held, &count);
    two_applies_at_once_take_turns(&moto, &three, &rt, &aws, name, &count);
    // A lock left by a run that died: --break-lock says whose it was and goes on.
    rt.block_on(fullslack_aws::lock::acquire(
        &aws,
        name,
        "apply",
        std::time::Duration::ZERO,
        &quiet,
    ))
    .expect("take the lock");
    let broke = ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&three), "--yes", "--break-lock"],
        None,
    ));
    assert!(
        broke.contains(&format!("broke the lock of stack `{name}` held by {me}")),
        "{broke}"
    );
    assert_eq!(count(), 0);
}

/// Someone holds the lock: apply (of stack file `two`) fails at once naming the holder (`me`),
/// and launches nothing; destroy (of `one`) takes the same lock.
fn a_held_lock_refuses_apply_and_destroy(
    moto: &Moto,
    [one, two]: [&Path; 2],
    name: &str,
    me: &str,
    count: &dyn Fn() -> usize,
) {
    let refused = fullslack(moto, &["apply", "--stack", s(two), "--yes"], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let t = text(&refused);
    assert!(
        t.contains(&format!("stack `{name}` is locked by {me} since")) && t.contains("(deploy)"),
        "{t}"
    );
    assert!(
        t.contains("--lock-wait") && t.contains("--break-lock"),
        "{t}"
    );
    assert_eq!(count(), 1);
    // destroy takes the same lock.
    let refused = fullslack(moto, &["destroy", "--stack", s(one), "--yes"], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("is locked by"),
        "{}",
        text(&refused)
    );
}

/// --lock-wait: it waits, and goes on once the holder releases `held`.
fn lock_wait_goes_on_once_released(
    moto: &Moto,
    two: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    held: &fullslack_aws::lock::Lock,
    count: &dyn Fn() -> usize,
) {
    let (child, rx) = spawn_fullslack(
        moto,
        &["apply", "--stack", s(two), "--yes", "--lock-wait", "2m"],
    );
    let waiting = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a line while waiting");
    assert!(waiting.contains("waiting up to 120 s"), "{waiting}");
    assert_eq!(count(), 1, "nothing launched while the lock is held");
    rt.block_on(fullslack_aws::lock::release(aws, held))
        .expect("release");
    let (code, out) = finish(child, rx);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(count(), 2);
}

/// Two applies at once: one applies, the other waits and then finds nothing to do.
fn two_applies_at_once_take_turns(
    moto: &Moto,
    three: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    name: &str,
    count: &dyn Fn() -> usize,
) {
    let a = spawn_fullslack(
        moto,
        &["apply", "--stack", s(three), "--yes", "--lock-wait", "2m"],
    );
    let b = spawn_fullslack(
        moto,
        &["apply", "--stack", s(three), "--yes", "--lock-wait", "2m"],
    );
    let (ca, oa) = finish(a.0, a.1);
    let (cb, ob) = finish(b.0, b.1);
    assert_eq!((ca, cb), (Some(0), Some(0)), "{oa}\n=====\n{ob}");
    assert_eq!(count(), 3, "exactly one third instance:\n{oa}\n=====\n{ob}");
    let applied = [&oa, &ob]
        .iter()
        .filter(|o| o.contains("Applied: 2 change(s)"))
        .count();
    let nothing = [&oa, &ob]
        .iter()
        .filter(|o| o.contains("Nothing to do"))
        .count();
    assert_eq!((applied, nothing), (1, 1), "{oa}\n=====\n{ob}");
    assert!(rt
        .block_on(fullslack_aws::lock::holder(aws, name))
        .unwrap()
        .is_none());
}

/// The stack file `base` with `n` instances and managed Redis and MongoDB, written to `dir`.
fn stack_with_count(dir: &Path, base: &Path, n: u32) -> PathBuf {
    let p = dir.join(format!("count-{n}.toml"));
    std::fs::write(
        &p,
        std::fs::read_to_string(base)
            .unwrap()
            .replace("count = 1", &format!("count = {n}"))
            + "\n[redis]\nmode = \"managed\"\n\n[mongodb]\nmode = \"managed\"\n",
    )
    .unwrap();
    p
}
