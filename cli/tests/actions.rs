//! The CLI as GitHub Actions sees it (`GITHUB_ACTIONS=true`, a step-summary file): stack-file
//! errors become `::error` annotations at the exact line and column, summaries are Markdown in
//! `$GITHUB_STEP_SUMMARY`, stdout and `--json` stay the same, and nothing of it shows outside
//! Actions. And `init --ci github`: the workflows it writes lint clean (actionlint, zizmor),
//! and the project's own deploy workflow is one of them.

use std::path::Path;
use std::process::{Command, Output};

use fullslack_test_support::{fullslack, paths::tempdir, paths::workspace};

/// A stack file with one mistake: `adress` (line 7, column 1) instead of `address`.
const BROKEN_STACK: &str = r#"name = "chat-gh"
domains = ["chat.example.com"]
target = "ssh"

[[hosts]]
roles = ["chat", "proxy"]
adress = "203.0.113.10"
"#;

/// `fullslack ARGS` as in a GitHub Actions step (summary file given), or outside Actions
/// (the test itself may run in Actions: its variables are removed).
fn run(args: &[&str], summary: Option<&Path>, dir: &Path) -> Output {
    let mut cmd = fullslack!();
    cmd.args(args)
        .current_dir(dir)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("FULLSLACK_STACK");
    if let Some(s) = summary {
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", s);
    }
    cmd.output().expect("run fullslack")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_broken_stack_file_is_annotated_at_the_key_in_actions_only() {
    let dir = tempdir();
    let stack = dir.path().join("fullslack.toml");
    std::fs::write(&stack, BROKEN_STACK).expect("write stack");
    let summary = dir.path().join("summary.md");
    let path = stack.to_str().expect("utf-8");

    let gh = run(
        &["stack", "check", "--stack", path],
        Some(&summary),
        dir.path(),
    );
    assert_eq!(gh.status.code(), Some(1), "{}", stderr(&gh));
    let annotations: Vec<&str> = std::str::from_utf8(&gh.stderr)
        .expect("utf-8")
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    assert_eq!(annotations.len(), 1, "{}", stderr(&gh));
    let want = format!("::error file={path},line=7,col=1,title=stack file%3A hosts[0].adress::");
    assert!(
        annotations[0].starts_with(&want),
        "annotation {:?}, want it to start with {want:?}",
        annotations[0]
    );
    let summary_text = std::fs::read_to_string(&summary).expect("summary written");
    insta::assert_snapshot!(
        "broken_stack_annotation",
        annotations[0].replace(path, "[STACK]")
    );
    insta::assert_snapshot!(
        "broken_stack_summary",
        summary_text.replace(path, "[STACK]")
    );

    // Outside Actions: the same error text, no workflow command, no summary file.
    let plain_summary = dir.path().join("never.md");
    let plain = run(&["stack", "check", "--stack", path], None, dir.path());
    assert_eq!(plain.status.code(), Some(1));
    assert!(!stderr(&plain).contains("::"), "{}", stderr(&plain));
    assert!(!plain_summary.exists());
    // The human text is the same in both; Actions only adds its command lines.
    let without_commands: String = stderr(&gh)
        .lines()
        .filter(|l| !l.starts_with("::"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(without_commands, stderr(&plain));

    // `--json` stays the same everywhere.
    let gh_json = run(
        &["stack", "check", "--stack", path, "--json"],
        Some(&summary),
        dir.path(),
    );
    let plain_json = run(
        &["stack", "check", "--stack", path, "--json"],
        None,
        dir.path(),
    );
    assert_eq!(gh_json.stdout, plain_json.stdout);
    assert!(!gh_json.stdout.is_empty());
}

#[test]
fn failed_health_checks_are_summarised_with_their_fixes() {
    let dir = tempdir();
    let summary = dir.path().join("summary.md");
    // A port that nothing listens on: every HTTP check fails the same way on every machine.
    let port = fullslack_test_support::ports::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let o = run(
        &["health", &url, "--no-websocket", "--timeout", "5"],
        Some(&summary),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = std::fs::read_to_string(&summary).expect("summary written");
    assert!(text.contains("| **FAIL** |"), "{text}");
    assert!(text.contains("fix"), "{text}");
    insta::assert_snapshot!("health_summary", text.replace(&port.to_string(), "[PORT]"));
    // Checks that failed are reported by the summary, not as a second error annotation.
    assert!(!stderr(&o).contains("::error"), "{}", stderr(&o));
}

/// `fullslack init --ci github [--from-source] STACK` in a copy of `STACK` at the same
/// relative path; returns the directory with `.github/workflows/`.
fn init_ci(stack_rel: &str, from_source: bool) -> tempfile::TempDir {
    let dir = tempdir();
    let dest = dir.path().join(stack_rel);
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::copy(workspace().join(stack_rel), &dest).expect("copy stack");
    let mut args = vec!["init", "--ci", "github"];
    if from_source {
        args.push("--from-source");
    }
    args.push(stack_rel);
    let o = run(&args, None, dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    dir
}

#[test]
fn the_projects_deploy_workflow_is_what_init_writes() {
    let dir = init_ci("stacks/ec2-single.toml", true);
    let written = std::fs::read_to_string(dir.path().join(".github/workflows/deploy.yml"))
        .expect("deploy.yml written");
    let ours = std::fs::read_to_string(workspace().join(".github/workflows/deploy.yml"))
        .expect("the project's deploy.yml");
    assert_eq!(
        written, ours,
        "the project's .github/workflows/deploy.yml differs from the template: regenerate it with \
         `fullslack init --ci github --from-source stacks/ec2-single.toml` at the workspace root"
    );
}

#[test]
fn init_ci_github_writes_workflows_that_lint_clean() {
    for stack in [
        "stacks/ssh-host.toml",
        "stacks/ec2-single.toml",
        "stacks/ecs-fargate.toml",
    ] {
        let dir = init_ci(stack, false);
        let workflows = dir.path().join(".github/workflows");
        let deploy = std::fs::read_to_string(workflows.join("deploy.yml")).expect("deploy.yml");
        assert!(
            deploy.contains(&format!("FULLSLACK_STACK: {stack}")),
            "{deploy}"
        );
        let lint = Command::new(workspace().join("scripts/lint-workflows.sh"))
            .arg(&workflows)
            .output()
            .expect("run scripts/lint-workflows.sh");
        assert!(
            lint.status.success(),
            "{stack}: {}\n{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
        // A second run refuses to overwrite them.
        let again = run(&["init", "--ci", "github", stack], None, dir.path());
        assert_eq!(again.status.code(), Some(64), "{}", stderr(&again));
        assert!(
            stderr(&again).contains("already exists"),
            "{}",
            stderr(&again)
        );
    }
}

/// The stack's secrets from the environment are repository secrets passed to the deploy step;
/// SSM ones are not (they come through the AWS role).
#[test]
fn the_deploy_workflow_passes_the_stacks_env_secrets_only() {
    let dir = init_ci("stacks/ssh-host.toml", false);
    let deploy = std::fs::read_to_string(dir.path().join(".github/workflows/deploy.yml"))
        .expect("deploy.yml");
    for name in [
        "FULLSLACK_AUTH__JWT_SECRET",
        "REGISTRY_PASSWORD",
        "FULLSLACK_PROBE_PASSWORD",
    ] {
        assert!(
            deploy.contains(&format!("{name}: ${{{{ secrets.{name} }}}}")),
            "{name} missing:\n{deploy}"
        );
    }
    let ec2 = init_ci("stacks/ec2-single.toml", false);
    let deploy = std::fs::read_to_string(ec2.path().join(".github/workflows/deploy.yml"))
        .expect("deploy.yml");
    assert!(
        !deploy.contains("secrets.FULLSLACK_AUTH__JWT_SECRET"),
        "{deploy}"
    );
    assert!(
        deploy.contains("--yes"),
        "an AWS stack's deploy applies: {deploy}"
    );
}
