//! Builds that fail (a failing Dockerfile step, a missing binary) and the multi-stage
//! template's context.

use super::*;

#[test]
fn a_failing_dockerfile_names_the_failing_step() {
    let dir = tempdir();
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
