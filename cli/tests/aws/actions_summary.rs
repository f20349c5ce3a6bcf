//! `plan` inside GitHub Actions: the plan's table goes to the step summary as Markdown, and
//! what is printed (text and `--json`) is the same as outside Actions.

use super::*;

#[test]
fn plan_in_github_actions_writes_its_table_to_the_step_summary() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "ghsum", Some("203.0.113.7/32"));
    let summary = dir.path().join("summary.md");
    let plan = |json: bool, actions: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
        cmd.args(["plan", "--stack", s(&stack)])
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_STEP_SUMMARY");
        if json {
            cmd.arg("--json");
        }
        if actions {
            cmd.env("GITHUB_ACTIONS", "true")
                .env("GITHUB_STEP_SUMMARY", &summary);
        }
        moto.env(&mut cmd);
        cmd.output().expect("run fullslack plan")
    };
    let gh = plan(false, true);
    assert_eq!(gh.status.code(), Some(2), "{}", text(&gh));
    let md = std::fs::read_to_string(&summary).expect("summary written");
    assert!(
        md.contains("| create | `"),
        "a create row in the table:\n{md}"
    );
    insta::assert_snapshot!("plan_step_summary", md);

    let plain = plan(false, false);
    assert_eq!(
        plain.stdout, gh.stdout,
        "stdout is the same in and out of Actions"
    );
    assert_eq!(
        plan(true, true).stdout,
        plan(true, false).stdout,
        "--json too"
    );
}
