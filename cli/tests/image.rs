//! `fullslack build` / `fullslack push` against the real Docker Engine of this machine and a
//! real registry (Debian's `docker-registry`) on loopback, with and without htpasswd auth.
//!
//! The offline image packs `target/debug/fullslack-chat` (built by scripts/test.sh before the
//! tests; a missing binary fails with the command to run). Every image and container gets a
//! unique name and is removed when the test ends, passed or failed.

mod common;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/registry.rs"]
mod registry;

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
use fullslack::secret::Secret;
use registry::{start_registry, Registry};

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
    let mut cmd = common::fullslack();
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
    let name = unique("run");
    let port = common::free_port();
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
    let info = docker
        .inspect_container(&name, None)
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
            let state = docker.inspect_container(&name, None).await.ok();
            panic!(
                "no /healthz answer from {urls:?} after 30 s; container state: {:?}",
                state.and_then(|s| s.state)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The HEALTHCHECK probe inside the image (first run after its 5 s interval).
    let start = Instant::now();
    loop {
        let s = docker
            .inspect_container(&name, None)
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

#[test]
fn offline_image_runs_pushes_to_an_auth_registry_and_pulls_back() {
    let reg = start_registry(Some(("ci-user", "ci-pass-1234")));
    let path = format!("{}/chat", unique("auth"));
    let repo = format!("{}/{path}", reg.addr);
    let image = format!("{repo}:t1");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(image.clone());

    let events = build_offline(&repo, "t1", &[]);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"build.step"), "{kinds:?}");
    let built = events
        .iter()
        .find(|e| e["event"] == "built")
        .expect("built event");
    assert_eq!(built["tags"][0], image.as_str());
    let steps = built["steps"].as_u64().unwrap();
    assert!(steps >= 5, "{built}");

    let rt = rt();
    let docker = rt.block_on(fullslack::image::connect()).expect("engine");
    let inspect = rt.block_on(docker.inspect_image(&image)).expect("inspect");
    let config = inspect.config.expect("image config");
    assert_eq!(config.user.as_deref(), Some("10001:10001"), "non-root user");
    let labels = config.labels.unwrap_or_default();
    for l in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
    ] {
        assert!(
            labels.get(l).is_some_and(|v| !v.is_empty()),
            "label {l} missing: {labels:?}"
        );
    }
    let hc = config.healthcheck.expect("HEALTHCHECK");
    assert_eq!(
        hc.test.unwrap_or_default(),
        ["CMD", "/usr/local/bin/fullslack-healthcheck"]
    );

    // A second build of the same inputs is answered from the engine's cache: same layers
    // (only the `created` label, and so the image id, differ).
    let again = build_offline(&repo, "t1", &[]);
    let again = again.iter().find(|e| e["event"] == "built").unwrap();
    cleanup
        .images
        .push(built["id"].as_str().unwrap().to_string());
    assert!(again["cached_steps"].as_u64().unwrap() >= 2, "{again}");
    let layers = |id: &str| {
        rt.block_on(docker.inspect_image(id))
            .expect("inspect")
            .root_fs
            .and_then(|r| r.layers)
            .expect("layers")
    };
    assert_eq!(
        layers(built["id"].as_str().unwrap()),
        layers(again["id"].as_str().unwrap()),
        "same inputs, same layers"
    );

    rt.block_on(run_and_probe(&docker, &image, &mut cleanup));

    let out = run_cli(
        &["push", &image, "--username", "ci-user"],
        &[("FULLSLACK_REGISTRY_PASSWORD", "ci-pass-1234")],
    );
    assert!(out.status.success(), "push failed: {}", text(&out));
    assert!(!text(&out).contains("ci-pass-1234"), "password printed");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("pushed {image}@sha256:")),
        "{}",
        text(&out)
    );
    assert_eq!(tags_in_registry(&reg, &path), ["t1"]);

    // Gone locally, then back from the registry, then running again.
    rt.block_on(docker.remove_image(
        &image,
        Some(RemoveImageOptions {
            force: true,
            ..Default::default()
        }),
        None,
    ))
    .expect("remove image");
    assert!(rt.block_on(docker.inspect_image(&image)).is_err());
    let auth = RegistryAuth {
        server: reg.addr.clone(),
        username: "ci-user".into(),
        password: Secret::new("ci-pass-1234"),
    };
    rt.block_on(fullslack::image::push::pull(&docker, &image, Some(&auth)))
        .expect("pull back");
    rt.block_on(run_and_probe(&docker, &image, &mut cleanup));
}

#[test]
fn push_to_an_open_registry_under_another_name_with_latest() {
    let reg = start_registry(None);
    let local_repo = format!("{}/chat", unique("local"));
    let local = format!("{local_repo}:v1");
    let path = format!("{}/chat", unique("open"));
    let target = format!("{}/{path}", reg.addr);
    let mut cleanup = Cleanup::default();
    cleanup.images.extend([
        local.clone(),
        format!("{target}:v1"),
        format!("{target}:latest"),
    ]);
    build_offline(&local_repo, "v1", &["--no-healthcheck"]);
    let out = run_cli(
        &["--json", "push", &local, "--to", &target, "--latest"],
        &[],
    );
    assert!(out.status.success(), "push failed: {}", text(&out));
    let pushed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|v: &serde_json::Value| v["event"] == "pushed")
        .collect();
    assert_eq!(pushed.len(), 2, "{}", text(&out));
    // The second tag shares every layer with the first.
    assert_eq!(pushed[1]["layers_pushed"], 0, "{}", text(&out));
    let mut tags = tags_in_registry(&reg, &path);
    tags.sort();
    assert_eq!(tags, ["latest", "v1"]);
}

#[test]
fn wrong_credentials_fail_with_an_auth_error_and_no_retry() {
    let reg = start_registry(Some(("ci-user", "right-pass")));
    let repo = format!("{}/{}/chat", reg.addr, unique("wrong"));
    let image = format!("{repo}:t1");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(image.clone());
    build_offline(&repo, "t1", &["--no-healthcheck"]);
    let out = run_cli(
        &[
            "push",
            &image,
            "--username",
            "ci-user",
            "--retry-delay-ms",
            "50",
        ],
        &[("FULLSLACK_REGISTRY_PASSWORD", "wrong-pass-5678")],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("failed (auth)"), "{t}");
    assert!(
        t.contains("hint: check the registry user name and password"),
        "{t}"
    );
    assert!(!t.contains("retrying"), "auth errors are not retried: {t}");
    assert!(!t.contains("wrong-pass-5678"), "password printed: {t}");
    let out = run_cli(&["push", &image], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("failed (auth)"), "no credentials: {t}");
}

#[test]
fn unreachable_registry_is_a_network_error_after_retries() {
    let port = common::free_port();
    let repo = format!("127.0.0.1:{port}/{}/chat", unique("net"));
    let image = format!("{repo}:t1");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(image.clone());
    build_offline(&repo, "t1", &["--no-healthcheck"]);
    let out = run_cli(
        &["push", &image, "--attempts", "2", "--retry-delay-ms", "100"],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("failed (network)"), "{t}");
    assert!(t.contains("push attempt 1 failed (network)"), "{t}");
    assert!(
        t.contains("hint: check that the registry host and port"),
        "{t}"
    );
}

#[test]
fn a_failed_push_under_another_name_leaves_no_tag_behind() {
    let repo = format!("fullslack-test/{}", unique("keep"));
    let image = format!("{repo}:t1");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(image.clone());
    build_offline(&repo, "t1", &["--no-healthcheck"]);
    let port = common::free_port();
    let to = format!("127.0.0.1:{port}/{}/chat", unique("gone"));
    cleanup.images.push(format!("{to}:t1"));
    let out = run_cli(&["push", &image, "--to", &to, "--attempts", "1"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    rt().block_on(async {
        let docker = fullslack::image::connect().await.expect("engine");
        assert!(
            docker.inspect_image(&format!("{to}:t1")).await.is_err(),
            "the tag of the failed push is still there"
        );
        docker
            .inspect_image(&image)
            .await
            .expect("the source image stays");
    });
}

#[test]
fn a_failing_dockerfile_names_the_failing_step() {
    let dir = common::tempdir();
    std::fs::write(dir.path().join("present.txt"), "here\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "ignored\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY present.txt /\nCOPY secret.txt /\n",
    )
    .unwrap();
    let repo = unique("fail");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(format!("{repo}:t1"));
    let out = run_cli(
        &[
            "build",
            "--context",
            dir.path().to_str().unwrap(),
            "--file",
            "Dockerfile",
            "--image",
            &repo,
            "--tag",
            "t1",
        ],
        &[],
    );
    let t = text(&out);
    // The classic builder keeps the images of the steps that worked (its cache): remove them.
    for line in t.lines() {
        if let Some(id) = line.trim().strip_prefix("---> ") {
            if id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()) {
                cleanup.images.push(id.to_string());
            }
        }
    }
    assert_eq!(out.status.code(), Some(1), "{t}");
    // The file exists but .dockerignore kept it out of the context: step 3 fails.
    assert!(t.contains("error: build failed at Step 3/"), "{t}");
    assert!(t.contains(" : COPY secret.txt /: COPY failed"), "{t}");
    assert!(t.contains("secret.txt"), "{t}");
    assert!(t.contains("hint: fix that Dockerfile step"), "{t}");
}

#[test]
fn offline_build_without_the_binary_says_how_to_build_it() {
    let out = run_cli(
        &[
            "build",
            "--offline",
            "--binary",
            "/nonexistent/fullslack-chat",
            "--no-healthcheck",
        ],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("/nonexistent/fullslack-chat is missing"), "{t}");
    assert!(t.contains("cargo build --release -p fullslack-chat"), "{t}");
}

/// The workspace context honours the repository's .dockerignore; the multi-stage
/// `cli/templates/Dockerfile` itself runs only where its base images exist locally (this
/// machine's engine cannot pull them).
#[test]
fn multi_stage_template_context_and_build_where_base_images_exist() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let ctx = fullslack::image::context::from_dir(&root, "cli/templates/Dockerfile")
        .expect("workspace context")
        .finish()
        .unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(ctx.as_slice()).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    for must in [
        "cli/templates/Dockerfile",
        "Cargo.lock",
        "chat-server/Cargo.toml",
        "cli/src/image/healthcheck.rs",
        "chat-server/web/index.html",
    ] {
        assert!(names.iter().any(|n| n == must), "{must} not in the context");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("target/") || n.starts_with(".git/")),
        "target/ or .git/ sent to the engine"
    );

    let rust =
        std::env::var("FULLSLACK_TEST_RUST_IMAGE").unwrap_or_else(|_| "rust:1-bookworm".into());
    let runtime = std::env::var("FULLSLACK_TEST_RUNTIME_IMAGE")
        .unwrap_or_else(|_| "gcr.io/distroless/cc-debian12".into());
    let rt = rt();
    let docker = rt.block_on(fullslack::image::connect()).expect("engine");
    let missing: Vec<&str> = [rust.as_str(), runtime.as_str()]
        .into_iter()
        .filter(|i| rt.block_on(docker.inspect_image(i)).is_err())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIP multi-stage build: base image(s) {missing:?} not in the local engine and it \
             cannot pull; set FULLSLACK_TEST_RUST_IMAGE / FULLSLACK_TEST_RUNTIME_IMAGE to local \
             images to run it"
        );
        return;
    }
    let repo = unique("multi");
    let image = format!("{repo}:t1");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(image.clone());
    let rust_arg = format!("RUST_IMAGE={rust}");
    let runtime_arg = format!("RUNTIME_IMAGE={runtime}");
    let out = run_cli(
        &[
            "build",
            "--context",
            root.to_str().unwrap(),
            "--image",
            &repo,
            "--tag",
            "t1",
            "--build-arg",
            &rust_arg,
            "--build-arg",
            &runtime_arg,
        ],
        &[],
    );
    assert!(out.status.success(), "multi-stage build: {}", text(&out));
    rt.block_on(run_and_probe(&docker, &image, &mut cleanup));
}

/// `push --stack` of a stack with `registry = "ecr"` takes fresh credentials from ECR
/// (`GetAuthorizationToken` on a moto server) and pushes under the account's registry host.
/// moto's registry host is made up (nothing answers there), so the push itself must fail as a
/// network error naming that host; the push to a real registry is tested above.
#[test]
fn ecr_stack_push_takes_credentials_from_ecr() {
    let moto = moto::Moto::start(None);
    let tag = unique("ecr");
    let local = format!("fullslack/chat:{tag}");
    let mut cleanup = Cleanup::default();
    cleanup.images.push(local.clone());
    build_offline("fullslack/chat", &tag, &["--no-healthcheck"]);
    let stack = moto::workspace().join("stacks/ecs-fargate.toml");
    let mut cmd = common::fullslack();
    moto.env(&mut cmd);
    let out = cmd
        .args([
            "push",
            &local,
            "--stack",
            stack.to_str().unwrap(),
            "--attempts",
            "1",
        ])
        .output()
        .expect("run fullslack push");
    let t = text(&out);
    let ecr_ref = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/chat-ecs/chat:{tag}");
    cleanup.images.push(ecr_ref.clone());
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!("push of {ecr_ref} failed (network)")),
        "{t}"
    );
}

/// `build --stack` tags the image with its version and the stack's `image.tag`, and records
/// the build beside the stack file; `push --stack` (no IMAGE) pushes exactly that build.
#[test]
fn a_stack_build_is_recorded_and_push_stack_pushes_it() {
    let reg = start_registry(None);
    let path = format!("{}/chat", unique("stack"));
    let dir = common::tempdir();
    let stack_name = "recorded";
    let stack = dir.path().join("stack.toml");
    std::fs::write(
        &stack,
        format!(
            "name = \"{stack_name}\"\ndomains = [\"chat.localhost.test\"]\ntarget = \"local\"\n\
             [image]\nname = \"{path}\"\ntag = \"stable\"\nregistry = \"{}\"\n[tls]\nenabled = false\n",
            reg.addr
        ),
    )
    .expect("write stack");
    let repo = format!("{}/{path}", reg.addr);
    let mut cleanup = Cleanup::default();

    // Nothing built yet: push --stack says to build first.
    let early = run_cli(&["push", "--stack", stack.to_str().unwrap()], &[]);
    assert_eq!(early.status.code(), Some(64), "{}", text(&early));
    assert!(
        text(&early).contains("fullslack build --stack"),
        "{}",
        text(&early)
    );

    let server = server_bin();
    let out = run_cli(
        &[
            "--json",
            "build",
            "--offline",
            "--no-healthcheck",
            "--binary",
            server.to_str().unwrap(),
            "--context",
            concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
            "--stack",
            stack.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "build failed: {}", text(&out));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".fullslack/recorded/last-build.json"))
            .expect("the build is recorded beside the stack file"),
    )
    .expect("record JSON");
    let version = record["tag"].as_str().expect("tag").to_string();
    cleanup
        .images
        .extend([format!("{repo}:{version}"), format!("{repo}:stable")]);
    assert_ne!(version, "stable");
    assert_eq!(record["repository"], repo.as_str());
    assert_eq!(record["tags"], serde_json::json!([version, "stable"]));
    assert!(record["id"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"event\":\"recorded\""),
        "{}",
        text(&out)
    );

    let pushed = run_cli(&["push", "--stack", stack.to_str().unwrap()], &[]);
    assert!(pushed.status.success(), "push failed: {}", text(&pushed));
    let mut tags = tags_in_registry(&reg, &path);
    tags.sort();
    let mut want = vec![version.clone(), "stable".to_string()];
    want.sort();
    assert_eq!(tags, want);
}
