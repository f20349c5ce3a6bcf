//! Pushes to a real registry: with auth and a pull back, under another name with `latest`,
//! wrong credentials, an unreachable registry, and no tag left behind by a failed push.

use super::*;

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
    the_image_is_hardened_and_labelled(&rt, &docker, &image);
    a_second_build_is_cached(&rt, &docker, &repo, built, &mut cleanup);
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
        password: SecretString::from("ci-pass-1234"),
    };
    rt.block_on(fullslack::image::push::pull(&docker, &image, Some(&auth)))
        .expect("pull back");
    rt.block_on(run_and_probe(&docker, &image, &mut cleanup));
}

/// The image runs as a non-root user, carries its OCI labels and a HEALTHCHECK.
fn the_image_is_hardened_and_labelled(rt: &tokio::runtime::Runtime, docker: &Docker, image: &str) {
    let inspect = rt.block_on(docker.inspect_image(image)).expect("inspect");
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
}

/// A second build of the same inputs (as `built`) is answered from the engine's cache: same
/// layers (only the `created` label, and so the image id, differ).
fn a_second_build_is_cached(
    rt: &tokio::runtime::Runtime,
    docker: &Docker,
    repo: &str,
    built: &serde_json::Value,
    cleanup: &mut Cleanup,
) {
    let again = build_offline(repo, "t1", &[]);
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
    let port = free_port();
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
    let port = free_port();
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
