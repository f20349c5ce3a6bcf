//! `fullslack build` / `fullslack push` against the real Docker Engine of this machine and a
//! real registry (Debian's `docker-registry`) on loopback, with and without htpasswd auth.
//!
//! The offline image packs `target/debug/fullslack-chat` (built by scripts/test.sh before the
//! tests; a missing binary fails with the command to run). Every image and container gets a
//! unique name and is removed when the test ends, passed or failed.
//!
//! One test binary (`image`) in modules: this file holds what they share (the CLI runner, the
//! offline build, running and probing an image, cleanup); [`push`] the registry pushes,
//! [`build`] the builds' failures and the multi-stage context, [`stack`] `--stack` builds and
//! pushes (ECR included).

mod build;
mod push;
mod stack;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HealthStatusEnum, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, RemoveImageOptions,
};
use bollard::Docker;
use fullslack::image::push::RegistryAuth;
use fullslack::secret::SecretString;
use fullslack_test_support::moto;
use fullslack_test_support::registry::{start_registry, Registry};
use fullslack_test_support::{free_port, fullslack, paths::tempdir};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The debug server binary; never built from here (that would take minutes inside a test).
fn server_bin() -> PathBuf {
    let bin = target_dir().join("debug/fullslack-chat");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p fullslack-chat` (scripts/test.sh does) before the image tests",
        bin.display()
    );
    bin
}

fn probe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fullslack-healthcheck"))
}

fn unique(prefix: &str) -> String {
    format!(
        "fstest-{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Removes the containers and images a test created, whatever happened.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut self.containers);
        let images = std::mem::take(&mut self.images);
        // Own thread and runtime: Drop may run inside (or outside) a tokio runtime.
        let _ = std::thread::spawn(move || {
            rt().block_on(async {
                let Ok(d) = fullslack::image::connect().await else {
                    return;
                };
                for c in containers {
                    let _ = d
                        .remove_container(
                            &c,
                            Some(RemoveContainerOptions {
                                force: true,
                                v: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                }
                for i in images {
                    let _ = d
                        .remove_image(
                            &i,
                            Some(RemoveImageOptions {
                                force: true,
                                ..Default::default()
                            }),
                            None,
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = fullslack!();
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FULLSLACK_REGISTRY") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run fullslack")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `fullslack build --offline --json` of the debug server; returns the JSON events.
fn build_offline(reference_repo: &str, tag: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let server = server_bin();
    let probe = probe_bin();
    let mut args = vec![
        "--json",
        "build",
        "--offline",
        "--binary",
        server.to_str().unwrap(),
    ];
    if !extra.contains(&"--no-healthcheck") {
        args.extend(["--healthcheck-binary", probe.to_str().unwrap()]);
    }
    args.extend([
        "--context",
        concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
        "--image",
        reference_repo,
        "--tag",
        tag,
    ]);
    args.extend_from_slice(extra);
    let out = run_cli(&args, &[]);
    assert!(out.status.success(), "build failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object per line: {l}: {e}"))
        })
        .collect()
}

/// Runs the image with its port published on 127.0.0.1 and waits for `/healthz` and for the
/// image's own HEALTHCHECK to report healthy.
async fn run_and_probe(docker: &Docker, image: &str, cleanup: &mut Cleanup) {
    // Deployed images run in production mode; the stack gives them the JWT secret.
    let env = docker
        .inspect_image(image)
        .await
        .expect("inspect image")
        .config
        .and_then(|c| c.env)
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e == "FULLSLACK_MODE=production"),
        "image env: {env:?}"
    );
    let (name, port) = start_container(docker, image, cleanup).await;
    wait_for_healthz(docker, &name, port).await;
    wait_for_healthcheck(docker, &name).await;
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
        .expect("remove container");
    cleanup.containers.retain(|c| *c != name);
}

/// Creates and starts a container of the image with port 8080 published on a free loopback
/// port; returns its name and that port.
async fn start_container(docker: &Docker, image: &str, cleanup: &mut Cleanup) -> (String, u16) {
    let name = unique("run");
    let port = free_port();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(vec![
            "FULLSLACK_AUTH__JWT_SECRET=image-test-secret-0123456789abcdef0123".to_string(),
        ]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(port.to_string()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .expect("create container");
    cleanup.containers.push(name.clone());
    docker
        .start_container(&name, None)
        .await
        .expect("start container");
    (name, port)
}

/// Waits up to 30 s for `/healthz` on the published port or the bridge address.
async fn wait_for_healthz(docker: &Docker, name: &str, port: u16) {
    let info = docker
        .inspect_container(name, None)
        .await
        .expect("inspect container");
    let ip = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get("bridge").and_then(|b| b.ip_address.clone()))
        .filter(|ip| !ip.is_empty());
    // The published port, and the container's bridge address as a second way in (engines
    // without a userland proxy on loopback still route to it).
    let mut urls = vec![format!("http://127.0.0.1:{port}/healthz")];
    if let Some(ip) = ip {
        urls.push(format!("http://{ip}:8080/healthz"));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    'outer: loop {
        for u in &urls {
            if let Ok(r) = client.get(u).send().await {
                if r.status().is_success() {
                    let body: serde_json::Value = r.json().await.expect("healthz JSON");
                    assert!(body.is_object(), "healthz body: {body}");
                    break 'outer;
                }
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let state = docker.inspect_container(name, None).await.ok();
            panic!(
                "no /healthz answer from {urls:?} after 30 s; container state: {:?}",
                state.and_then(|s| s.state)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits up to 40 s for the image's own HEALTHCHECK to report healthy.
async fn wait_for_healthcheck(docker: &Docker, name: &str) {
    // The probe's first run comes after its 5 s interval.
    let start = Instant::now();
    loop {
        let s = docker
            .inspect_container(name, None)
            .await
            .expect("inspect container");
        let health = s.state.and_then(|st| st.health);
        let status = health.as_ref().and_then(|h| h.status);
        if status == Some(HealthStatusEnum::HEALTHY) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "container not healthy after 40 s: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn tags_in_registry(reg: &Registry, repo_path: &str) -> Vec<String> {
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(format!("http://{}/v2/{repo_path}/tags/list", reg.addr));
    if let Some((u, p)) = &reg.credentials {
        req = req.basic_auth(u, Some(p));
    }
    let v: serde_json::Value = req
        .send()
        .expect("registry tags")
        .json()
        .expect("tags JSON");
    v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
