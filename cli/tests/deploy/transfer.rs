//! The registry-free transfer: only the layers a host lacks go over SSH.
//!
//! The stand-in host shares this machine's Docker Engine, so it has every image built here;
//! `--send-image` (and `stream(.., as_if_absent = true)`) leaves out of the host's layers the
//! images with exactly the deployed image's layers, which makes the host look like one that
//! has the earlier release but not this one. Two cases:
//! - a release whose server binary alone changed (the same binary with bytes appended):
//!   only the top layer (the binary) is sent, the rest is skipped, and it runs healthy;
//! - an image none of whose layers any other image has (`docker import` of a fresh tar): it
//!   goes whole, plain and then gzip-compressed, and the host's engine loads it each time.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{server_bin, text, Host};
use fullslack::deploy::transfer;
use fullslack::runner::{SshRunner, SshTarget};

/// Bytes of `docker save IMAGE`.
fn saved_size(image: &str) -> u64 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("docker save {image} | wc -c"))
        .output()
        .expect("docker save | wc");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("byte count")
}

fn layers(image: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            image,
        ])
        .output()
        .expect("docker image inspect");
    assert!(out.status.success(), "inspect {image}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("layer list")
}

#[test]
fn a_release_whose_binary_alone_changed_sends_only_that_layer_and_runs() {
    let h = Host::new();
    h.build("v1", None);
    let changed = h.dir.path().join("fullslack-chat-changed");
    std::fs::copy(server_bin(), &changed).expect("copy the server");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&changed)
            .expect("open the copy");
        f.write_all(format!("only the binary changed {}", h.name).as_bytes())
            .expect("append");
    }
    let changed_len = std::fs::metadata(&changed).expect("size").len();
    // The same probe as v1 (build_image passes it for the real server only).
    let probe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_fullslack-healthcheck"));
    let out = fullslack_test_support::fullslack!()
        .args(["build", "--offline", "--binary"])
        .arg(&changed)
        .arg("--healthcheck-binary")
        .arg(&probe)
        .args(["--context", concat!(env!("CARGO_MANIFEST_DIR"), "/..")])
        .args(["--image", &h.repo, "--tag", "v2"])
        .output()
        .expect("build v2");
    assert!(out.status.success(), "build v2: {}", text(&out));
    let (l1, l2) = (
        layers(&format!("{}:v1", h.repo)),
        layers(&format!("{}:v2", h.repo)),
    );
    assert_eq!(l1.len(), l2.len(), "{l1:?} {l2:?}");
    assert_eq!(
        l1[..l1.len() - 1],
        l2[..l2.len() - 1],
        "only the top layer differs"
    );
    assert_ne!(l1.last(), l2.last());

    let out = h.switch("deploy", Some("v2"), &["--json", "--send-image"]);
    assert!(out.status.success(), "deploy v2: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let host = &v["hosts"][0];
    let t = &host["transfer"];
    let sent = host["bytes_sent"].as_u64().expect("bytes_sent");
    let not_sent = t["bytes_not_sent"].as_u64().expect("bytes_not_sent");
    assert_eq!(t["layers_sent"], 1, "{v:#}");
    assert_eq!(
        t["layers_skipped"].as_u64(),
        Some(l2.len() as u64 - 1),
        "{v:#}"
    );
    assert_eq!(t["fell_back"], false, "{v:#}");
    assert_eq!(host["image_was_there"], false, "{v:#}");
    // What went is the binary's layer (its content, tar headers) and the small metadata
    // files; what was left out plus what went is the whole `docker save`.
    assert!(
        sent >= changed_len && sent < changed_len + 256 * 1024,
        "sent {sent} bytes for a {changed_len}-byte binary"
    );
    let saved = saved_size(&format!("{}:v2", h.repo));
    assert!(not_sent > 0, "{v:#}");
    assert!(
        (sent + not_sent).abs_diff(saved) <= saved / 100,
        "sent {sent} + not sent {not_sent} vs docker save {saved}"
    );
    eprintln!("redeploy, binary changed: {sent} bytes sent, {not_sent} bytes not sent (docker save: {saved})");
    assert_eq!(h.containers(), [format!("{}-blue v2", h.name)]);
    let health = super::health_through_nginx(&h);
    assert!(health.status.success(), "{}", text(&health));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A one-layer image no other image has: 4.6 MB of one line repeated (gzip shrinks it).
fn import_fresh(image: &str, dir: &Path) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).expect("rootfs");
    let body = format!("a fresh layer for {image}\n").repeat(200_000);
    std::fs::write(root.join("data"), body).expect("write the layer's file");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import - {image}",
            root.display()
        ))
        .output()
        .expect("docker import");
    assert!(out.status.success(), "import: {}", text(&out));
}

#[test]
fn an_image_the_host_has_no_layer_of_goes_whole_plain_or_compressed() {
    let h = Host::new();
    let image = format!("{}:fresh", h.repo);
    import_fresh(&image, h.dir.path());
    let id = super::inspect(&image, "{{.Id}}");
    let saved = saved_size(&image);
    let since = unix_now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (plain, gz) = rt.block_on(async {
        let mut t = SshTarget::new("127.0.0.1", h.sshd.user.clone(), h.sshd.port);
        t.identity_file = Some(h.sshd.identity_file());
        t.known_hosts = Some(h.sshd.known_hosts());
        t.control_dir = Some(h.dir.path().to_path_buf());
        let r = SshRunner::connect(&t).await.expect("ssh");
        let plain = transfer::stream(&r, &image, false, true)
            .await
            .expect("plain stream");
        let gz = transfer::stream(&r, &image, true, true)
            .await
            .expect("gzip stream");
        r.close().await.expect("close");
        (plain, gz)
    });
    for s in [&plain, &gz] {
        assert_eq!((s.layers_sent, s.layers_skipped), (1, 0), "{s:?}");
        assert_eq!(s.bytes_not_sent, 0, "{s:?}");
        assert!(!s.fell_back, "{s:?}");
    }
    assert!(
        plain.bytes.abs_diff(saved) <= saved / 100,
        "sent {} bytes, docker save makes {saved}",
        plain.bytes
    );
    assert!(!plain.compressed && gz.compressed);
    // 4.6 MB of one repeated line: gzip leaves a small fraction of it.
    assert!(
        gz.bytes < saved / 10,
        "gzip sent {} bytes of {saved}",
        gz.bytes
    );
    // The host's engine loaded this image twice (the engine records a `load` event per
    // `docker load`); `--until` is past both loads, so this returns at once.
    let out = Command::new("docker")
        .args(["events", "--filter", "type=image", "--filter", "event=load"])
        .args(["--format", "{{.ID}}", "--since", &since.to_string()])
        .args(["--until", &(unix_now() + 1).to_string()])
        .output()
        .expect("docker events");
    let loads = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == id)
        .count();
    assert_eq!(loads, 2, "load events of {id}: {}", text(&out));
    eprintln!(
        "fresh image: docker save {saved} bytes, sent {} plain, {} gzip",
        plain.bytes, gz.bytes
    );
}
