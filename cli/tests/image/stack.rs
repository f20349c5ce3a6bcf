//! `--stack` builds and pushes: ECR credentials for an `ecr` stack, and the recorded build
//! that `push --stack` pushes.

use super::*;

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
    let stack = fullslack_test_support::paths::workspace().join("stacks/ecs-fargate.toml");
    let mut cmd = fullslack!();
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
    let dir = tempdir();
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
