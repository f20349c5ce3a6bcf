//! The comparison mode's Node.js relay (bench/relay/relay.js on Debian's node-ws) keeps working
//! with the load tool: the real `bench` binary spawns the relay on loopback and runs a short
//! fanout through it, as bench/scripts/compare-node.sh does at full size.

use std::process::Command;

use fullslack_test_support::paths::{program, tempdir};

#[test]
fn fanout_through_the_node_relay_delivers_every_message() {
    program("/usr/bin/node");
    program("/usr/share/nodejs/ws/package.json");
    let dir = tempdir();
    let relay = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("relay/relay.js");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["fanout", "--members", "8", "--users", "4", "--senders", "1"])
        .args(["--rate", "50", "--warmup", "200ms", "--duration", "1s"])
        // The drain ends as soon as every owed delivery arrived; the long limit only keeps a
        // slow, loaded machine from counting late deliveries as missing.
        .args(["--drain", "60s", "--source-ips", "2", "--json", "--spawn"])
        .arg(&relay)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench --json output");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(n("connected"), 8, "{stderr}");
    assert!(n("sent") > 0 && n("acks") > 0, "{r}");
    assert!(n("deliveries") > 0, "{r}");
    assert_eq!(n("missing_deliveries"), 0, "{r}");
    assert_eq!(n("error_frames"), 0, "{r}");
    assert_eq!(n("closed_unexpectedly"), 0, "{r}");
    assert!(r["latency_deliver"]["count"].as_u64() > Some(0), "{r}");
    // Every socket got each message: a sender's own socket included, as in fullslack.
    assert_eq!(n("expected_deliveries"), 8 * n("sent"), "{r}");
    // The relay's process was measured (its PID is node's: the shebang execs it).
    assert!(r["servers"][0]["cpu_secs"].is_f64(), "{r}");
    assert!(
        r["servers"][0]["rss_after_connect_kib"].as_u64() > Some(0),
        "{r}"
    );
    assert!(n("frames") >= n("deliveries") + n("sent"), "{r}");
    assert!(r["bench_cpu_us_per_frame"].is_f64(), "{r}");
}
