//! A managed Redis (`[redis] mode = "managed"`): Debian's `redis-server` packed by the
//! offline image path, run by the deploy on the host beside the chat containers, on the
//! stack's Docker network. The chat server reports Redis connected through Nginx; a redeploy
//! leaves the accessory alone (same container, same start time, its data still there); an
//! image change replaces it on the same volume, and its data survives that too. Its setup
//! takes the host's deploy lock: while another deploy holds it, nothing is created.

use std::process::Command;

use super::{build_redis_image, inspect, readyz, text, Host};

const MARKER: &str = "fullslack-test-marker";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `redis-cli` from this machine to the accessory's address on the stack network.
fn redis_cli(addr: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", addr, "--raw"])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn redis_addr(h: &Host) -> String {
    inspect(
        &format!("{}-redis", h.name),
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}-net\").IPAddress}}}}",
            h.name
        ),
    )
}

fn assert_redis_connected(h: &Host) {
    let r = readyz(&h.url());
    assert_eq!(r["redis"], "ok", "the chat node behind Nginx: {r}");
    assert_eq!(r["status"], "ready", "{r}");
}

#[test]
fn a_managed_redis_serves_the_chat_containers_and_keeps_its_data_across_redeploys() {
    let h = Host::with_extra("[redis]\nmode = \"managed\"\nimage = \"@STACK@/redis:a\"\n");
    let redis_repo = format!("{}/redis", h.name);
    let accessory = format!("{}-redis", h.name);
    build_redis_image(&redis_repo, "a");
    h.build("v1", None);
    h.build("v2", None);
    h.build("v3", None);

    // The accessory is set up under the host's deploy lock: while another deploy holds it,
    // nothing is created (two first deploys would otherwise both create the accessory).
    let lock_root = h.state().join("locks");
    let lock = |verb: &str, extra: &[&str]| {
        let out = h
            .cli(&["lock", verb])
            .arg("--lock-root")
            .arg(&lock_root)
            .args(extra)
            .output()
            .expect("run lock");
        assert!(out.status.success(), "lock {verb}: {}", text(&out));
    };
    lock("acquire", &["-m", "deploy v9 by the other operator"]);
    let out = h.switch("deploy", Some("v1"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deploy v9 by the other operator"),
        "{}",
        text(&out)
    );
    let there = Command::new("docker")
        .args(["container", "inspect", &accessory])
        .output()
        .expect("docker inspect");
    assert!(
        !there.status.success(),
        "the accessory was created without the lock"
    );
    lock("release", &[]);

    // First deploy: the accessory starts, then the chat release, which reaches it by name.
    let out = h.switch("deploy", Some("v1"), &[]);
    assert!(out.status.success(), "deploy v1: {}", text(&out));
    assert!(
        stdout(&out).contains(&format!("redis {accessory} ({redis_repo}:a) started")),
        "{}",
        text(&out)
    );
    assert_redis_connected(&h);
    assert_eq!(
        inspect(&accessory, "{{.HostConfig.RestartPolicy.Name}}"),
        "unless-stopped"
    );
    assert_eq!(
        inspect(
            &accessory,
            "{{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}"
        ),
        format!("{accessory}-data:/data")
    );
    let first = inspect(&accessory, "{{.Id}} {{.State.StartedAt}}");
    assert_eq!(
        redis_cli(&redis_addr(&h), &["SET", MARKER, "kept across releases"]),
        "OK"
    );

    // A redeploy with the same accessory image: left alone, not even restarted (and `--json`
    // says so in its `accessories`).
    let out = h.switch("deploy", Some("v2"), &["--json"]);
    assert!(out.status.success(), "deploy v2: {}", text(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(
        doc["accessories"],
        serde_json::json!([{
            "host": doc["accessories"][0]["host"],
            "kind": "redis",
            "container": accessory,
            "image": format!("{redis_repo}:a"),
            "change": "unchanged",
        }]),
        "{}",
        text(&out)
    );
    assert_eq!(
        inspect(&accessory, "{{.Id}} {{.State.StartedAt}}"),
        first,
        "the accessory was restarted by a chat release"
    );
    assert_redis_connected(&h);
    assert_eq!(
        redis_cli(&redis_addr(&h), &["GET", MARKER]),
        "kept across releases"
    );

    // Another accessory image: replaced (and said so), on the same volume.
    build_redis_image(&redis_repo, "b");
    let stack = std::fs::read_to_string(&h.stack).expect("read stack");
    std::fs::write(
        &h.stack,
        stack.replace(&format!("{redis_repo}:a"), &format!("{redis_repo}:b")),
    )
    .expect("write stack");
    let out = h.switch("deploy", Some("v3"), &[]);
    assert!(out.status.success(), "deploy v3: {}", text(&out));
    assert!(
        stdout(&out).contains(&format!(
            "redis {accessory} ({redis_repo}:b) replaced: it ran image"
        )),
        "{}",
        text(&out)
    );
    let replaced = inspect(&accessory, "{{.Id}} {{.State.StartedAt}}");
    assert_ne!(replaced, first, "the accessory kept its old container");
    assert_eq!(
        inspect(&accessory, "{{.Config.Image}}"),
        format!("{redis_repo}:b")
    );
    assert_eq!(
        redis_cli(&redis_addr(&h), &["GET", MARKER]),
        "kept across releases",
        "the data volume did not survive the replacement"
    );
    assert_redis_connected(&h);
}
