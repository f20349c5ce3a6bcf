//! The release switch on one host, in the order a stack lives through it: v1 to a fresh host
//! (streamed over SSH, health green through Nginx), v2 while users post and read, a v3 that
//! never becomes healthy, then a rollback to v1.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fullslack_test_support::{Client, RemoteServer, Ws};
use serde_json::{json, Value};

use super::{health_through_nginx, text, Host, JWT, PROBE_PASSWORD};

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn assert_no_secret(o: &std::process::Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains(JWT), "the JWT secret was printed: {all}");
    assert!(
        !all.contains(PROBE_PASSWORD),
        "the probe password was printed"
    );
}

#[test]
fn releases_switch_without_dropping_users_and_a_failing_release_never_gets_traffic() {
    let h = Host::new();
    h.build("v1", None);
    h.build("v2", None);
    h.build("v3", Some(std::path::Path::new("/usr/bin/printf")));

    deploy_v1_to_a_fresh_host(&h);
    // v2 while users post through Nginx and one reads over a WebSocket.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(switch_under_load(&h));

    a_failing_release_never_gets_traffic(&h);
    roll_back_to_v1(&h);
    releases_and_status_show_v1_live(&h);
    the_audit_log_has_every_switch(&h);
}

/// v1 to a fresh host: the image streamed over SSH, env file 0600, served through Nginx.
fn deploy_v1_to_a_fresh_host(h: &Host) {
    let out = h.switch("deploy", Some("v1"), &["--json", "--send-image"]);
    assert!(out.status.success(), "deploy v1: {}", text(&out));
    assert_no_secret(&out);
    let v = json_of(&out);
    let host = &v["hosts"][0];
    assert_eq!(host["version"], "v1", "{v:#}");
    assert_eq!(host["color"], "blue", "{v:#}");
    assert_eq!(host["from_version"], Value::Null, "{v:#}");
    let sent = host["bytes_sent"].as_u64().expect("bytes_sent");
    let saved = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("docker save {}:v1 | wc -c", h.repo))
        .output()
        .expect("docker save | wc");
    let saved: u64 = String::from_utf8_lossy(&saved.stdout)
        .trim()
        .parse()
        .expect("byte count");
    // `docker save` went over SSH but for the layers the host has in other images (the
    // lower layers, in the build's intermediate images: see tests/deploy/transfer.rs); what
    // went plus what was left out is the whole stream (a second `docker save` may differ in a
    // few tar header bytes, not in its layers).
    let not_sent = host["transfer"]["bytes_not_sent"]
        .as_u64()
        .expect("bytes_not_sent");
    assert!(host["transfer"]["layers_sent"].as_u64() >= Some(1), "{v:#}");
    assert!(
        sent > 0 && (sent + not_sent).abs_diff(saved) <= saved / 100,
        "sent {sent} + not sent {not_sent} bytes, docker save makes {saved}"
    );
    eprintln!("registry-free transfer of v1: {sent} bytes");
    let env_file = h.state().join(format!("{}/env", h.name));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&env_file)
        .expect("env file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "env file mode");
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("env"),
        format!("FULLSLACK_AUTH__JWT_SECRET={JWT}\n")
    );
    let health = health_through_nginx(h);
    assert!(
        health.status.success(),
        "health through nginx: {}",
        text(&health)
    );
    assert_eq!(h.containers(), [format!("{}-blue v1", h.name)]);
}

/// v3 never becomes healthy: v2 keeps serving, exit 1, its log shown, lock released.
fn a_failing_release_never_gets_traffic(h: &Host) {
    let out = h.switch("deploy", Some("v3"), &["--health-deadline", "20"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed its health gate"), "{err}");
    assert!(err.contains("log lines of"), "{err}");
    assert!(
        // The broken release is coreutils' printf installed as the server: its complaint.
        err.contains("missing operand"),
        "the failed release's own output is shown: {err}"
    );
    assert_eq!(h.containers(), [format!("{}-green v2", h.name)]);
    let health = health_through_nginx(h);
    assert!(
        health.status.success(),
        "v2 still serves: {}",
        text(&health)
    );
    assert!(
        !h.state().join(format!("locks/{}.lock", h.name)).exists(),
        "the lock was not released after the failure"
    );
}

/// Rollback to v1 (kept on the host: nothing sent), same switch path.
fn roll_back_to_v1(h: &Host) {
    let out = h.switch("rollback", Some("v1"), &["--json"]);
    assert!(out.status.success(), "rollback: {}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["hosts"][0]["version"], "v1", "{v:#}");
    assert_eq!(v["hosts"][0]["from_version"], "v2", "{v:#}");
    assert_eq!(v["hosts"][0]["bytes_sent"], 0, "{v:#}");
    assert_eq!(h.containers(), [format!("{}-blue v1", h.name)]);
    let health = health_through_nginx(h);
    assert!(health.status.success(), "after rollback: {}", text(&health));
}

/// `releases` lists what the host keeps, the live one first; `status` shows it running and ready.
fn releases_and_status_show_v1_live(h: &Host) {
    let out = h
        .cli(&["releases", "--json"])
        .arg("--state-dir")
        .arg(h.state())
        .output()
        .expect("releases");
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["hosts"][0]["live"], "v1", "{v:#}");
    let kept: Vec<&str> = v["hosts"][0]["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .filter_map(|r| r["version"].as_str())
        .collect();
    assert_eq!(kept, ["v1", "v2"]);

    // `status`: the live release, its container running, ready.
    let out = h
        .cli(&["status", "--json"])
        .arg("--state-dir")
        .arg(h.state())
        .output()
        .expect("status");
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["hosts"][0]["live"], "v1", "{v:#}");
    assert_eq!(v["hosts"][0]["color"], "blue", "{v:#}");
    assert_eq!(v["hosts"][0]["ready"], true, "{v:#}");
    assert!(
        v["hosts"][0]["container"]
            .as_str()
            .is_some_and(|c| c.contains("running")),
        "{v:#}"
    );
}

/// The audit log, on the host and beside the stack file: one line per switch, no secret.
fn the_audit_log_has_every_switch(h: &Host) {
    let host_audit = std::fs::read_to_string(h.state().join(format!("{}/audit.jsonl", h.name)))
        .expect("host audit log");
    let local_audit = std::fs::read_to_string(
        h.dir
            .path()
            .join(format!(".fullslack/{}/audit.jsonl", h.name)),
    )
    .expect("local audit log");
    for log in [&host_audit, &local_audit] {
        assert!(!log.contains(JWT), "secret in the audit log");
        let lines: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        let summary: Vec<(&str, &str, &str)> = lines
            .iter()
            .map(|l| {
                (
                    l["action"].as_str().unwrap_or(""),
                    l["version"].as_str().unwrap_or(""),
                    l["result"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("deploy", "v1", "ok"),
                ("deploy", "v2", "ok"),
                ("deploy", "v3", "failed"),
                ("rollback", "v1", "ok")
            ]
        );
        assert!(lines
            .iter()
            .all(|l| l["who"].as_str().is_some_and(|w| w.contains('@'))));
    }
}

/// What the load saw.
#[derive(Default)]
struct Load {
    http_ok: AtomicU64,
    http_failed: AtomicU64,
}

/// Deploys v2 while a sender posts to a channel and a DM through Nginx, a poller reads
/// `/healthz`, and a reader holds a WebSocket on v1. Afterwards: no failed request, every
/// acknowledged message reaches the reader exactly once and in order (live on v1, through
/// `resume` on v2 right after v1 closed its socket with 1012, then live on v2), and everything
/// runs v2. Reported: the time from the close to `resumed`, and the worst delay from a
/// message's acknowledgement to its arrival at the reader.
async fn switch_under_load(h: &Host) {
    let server = RemoteServer::new(&h.url());
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let channel = alice.create_channel("ops", "public", &[&bob.id]).await;
    let dm = alice.dm(&[&bob.id]).await;
    let reader = bob.ws().await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let poller = tokio::spawn(poll_health(h.url(), stop.clone(), load.clone()));
    let sender = tokio::spawn(send_messages(
        alice,
        [channel.clone(), dm.clone()],
        stop.clone(),
        load.clone(),
    ));
    // The reader behaves like the web client: on 1012 it reconnects and resumes at once.
    let reading = tokio::spawn(read_across_the_switch(
        reader,
        bob.ws_url.clone(),
        bob.token.clone(),
        [channel.clone(), dm.clone()],
        stop.clone(),
    ));

    let deploy = {
        let mut c = h.cli(&["deploy", "--json", "--version", "v2"]);
        c.args(h.switch_args());
        tokio::task::spawn_blocking(move || c.output().expect("run deploy"))
    };
    let out = deploy.await.expect("deploy task");
    assert!(out.status.success(), "deploy v2: {}", text(&out));
    // Keep sending on v2 for a moment of real traffic, then stop.
    let acks_at_switch = load.http_ok.load(Ordering::SeqCst);
    wait_until(|| load.http_ok.load(Ordering::SeqCst) >= acks_at_switch + 20).await;
    stop.store(true, Ordering::SeqCst);
    poller.await.expect("poller");
    let acked = sender.await.expect("sender");
    let mut r = reading.await.expect("reader");
    assert_eq!(
        r.close_code,
        Some(1012),
        "v1 closes sockets with 1012 (service restart)"
    );
    // The last messages sent before the stop arrive live on v2.
    let start = Instant::now();
    while !acked
        .iter()
        .all(|(c, sent)| r.seen.get(c).map_or(0, Vec::len) >= sent.len())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "acknowledged messages missing"
        );
        record(&mut r.seen, r.ws.drain(Duration::from_millis(20)).await);
    }
    r.ws.close().await;

    assert_eq!(
        load.http_failed.load(Ordering::SeqCst),
        0,
        "failed HTTP requests"
    );
    let worst = exactly_once_in_order(&acked, &r.seen, [&channel, &dm]);
    eprintln!(
        "switch under load: {} HTTP requests ok, 0 failed; 1012 close to resumed on v2 in {:?}; \
         worst message delay {:?}",
        load.http_ok.load(Ordering::SeqCst),
        r.reconnect_and_resume,
        worst
    );
    assert_eq!(h.containers(), [format!("{}-green v2", h.name)]);
}

/// Asserts that every acknowledged message reached the reader exactly once and in order;
/// the worst delay from an acknowledgement to the arrival.
fn exactly_once_in_order(
    acked: &BTreeMap<String, Vec<(i64, Instant)>>,
    seen: &BTreeMap<String, Vec<(i64, Instant)>>,
    channels: [&String; 2],
) -> Duration {
    let mut worst = Duration::ZERO;
    for c in channels {
        let sent: Vec<(i64, Instant)> = acked.get(c).cloned().unwrap_or_default();
        let got: Vec<i64> = seen
            .get(c)
            .map(|v| v.iter().map(|(s, _)| *s).collect())
            .unwrap_or_default();
        let want: Vec<i64> = sent.iter().map(|(s, _)| *s).collect();
        assert!(!want.is_empty(), "no message was acknowledged in {c}");
        assert_eq!(
            got, want,
            "channel {c}: every acknowledged message exactly once, in order"
        );
        for ((_, acked_at), (_, got_at)) in sent.iter().zip(seen.get(c).into_iter().flatten()) {
            worst = worst.max(got_at.saturating_duration_since(*acked_at));
        }
    }
    worst
}

/// What the reader saw across the switch.
struct Reading {
    close_code: Option<u64>,
    /// From v1's close frame to the `resumed` of v2.
    reconnect_and_resume: Duration,
    /// Message seqs per channel with their arrival.
    seen: BTreeMap<String, Vec<(i64, Instant)>>,
    /// The socket on v2, still open.
    ws: Ws,
}

/// Reads on v1 until it closes, reconnects through Nginx and resumes from the last seq per
/// channel (what a client does on 1012), then reads live on v2 until `stop`.
async fn read_across_the_switch(
    mut ws: Ws,
    url: String,
    token: String,
    channels: [String; 2],
    stop: Arc<AtomicBool>,
) -> Reading {
    let mut seen: BTreeMap<String, Vec<(i64, Instant)>> = BTreeMap::new();
    let close_code = read_until_close(&mut ws, &mut seen).await;
    let closed_at = Instant::now();
    let mut fresh = Ws::connect(&url, &token).await;
    let mut positions: HashMap<String, i64> = channels.iter().map(|c| (c.clone(), 0)).collect();
    for (c, v) in &seen {
        if let Some((s, _)) = v.last() {
            positions.insert(c.clone(), *s);
        }
    }
    let replayed = fresh.resume(positions).await;
    let reconnect_and_resume = closed_at.elapsed();
    record(&mut seen, replayed);
    while !stop.load(Ordering::SeqCst) {
        record(&mut seen, fresh.drain(Duration::from_millis(20)).await);
    }
    Reading {
        close_code,
        reconnect_and_resume,
        seen,
        ws: fresh,
    }
}

/// Message events recorded per channel with their arrival (now).
fn record(seen: &mut BTreeMap<String, Vec<(i64, Instant)>>, frames: Vec<Value>) {
    let now = Instant::now();
    for f in frames {
        if f["type"] == "event" && f["kind"] == "message" {
            let c = f["channel"].as_str().expect("channel").to_string();
            seen.entry(c)
                .or_default()
                .push((f["seq"].as_i64().expect("seq"), now));
        }
    }
}

async fn wait_until(cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "load stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Frames until the socket closes; message events recorded per channel with their arrival.
async fn read_until_close(
    ws: &mut Ws,
    seen: &mut BTreeMap<String, Vec<(i64, Instant)>>,
) -> Option<u64> {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "v1 never closed the socket"
        );
        let frames = ws.drain(Duration::from_millis(20)).await;
        let close = frames
            .iter()
            .find(|f| f["type"] == "__close")
            .map(|f| f["code"].as_u64());
        record(seen, frames);
        if let Some(code) = close {
            return code;
        }
    }
}

async fn poll_health(url: String, stop: Arc<AtomicBool>, load: Arc<Load>) {
    let http = reqwest::Client::new();
    while !stop.load(Ordering::SeqCst) {
        match http.get(format!("{url}/healthz")).send().await {
            Ok(r) if r.status().is_success() => load.http_ok.fetch_add(1, Ordering::SeqCst),
            Ok(r) => {
                eprintln!("healthz through nginx: {}", r.status());
                load.http_failed.fetch_add(1, Ordering::SeqCst)
            }
            Err(e) => {
                eprintln!("healthz through nginx: {e}");
                load.http_failed.fetch_add(1, Ordering::SeqCst)
            }
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts to each channel in turn until stopped; the acknowledged seqs per channel.
async fn send_messages(
    alice: Client,
    channels: [String; 2],
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> BTreeMap<String, Vec<(i64, Instant)>> {
    let mut acked: BTreeMap<String, Vec<(i64, Instant)>> = BTreeMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let c = &channels[usize::from(n % 2 == 1)];
        n += 1;
        let (status, v) = alice
            .post(
                &format!("/api/channels/{c}/messages"),
                json!({"text": format!("m{n}"), "client_id": format!("c{n}")}),
            )
            .await;
        if status == 201 {
            load.http_ok.fetch_add(1, Ordering::SeqCst);
            acked
                .entry(c.clone())
                .or_default()
                .push((v["seq"].as_i64().expect("ack seq"), Instant::now()));
        } else {
            eprintln!("send through nginx: {status} {v}");
            load.http_failed.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}
