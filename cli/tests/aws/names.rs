//! Names: per stack, refused at plan time when taken; the stack file named the same way on
//! every command.

use super::*;

#[test]
fn names_are_per_stack_and_a_taken_name_is_refused_at_plan_time() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let a = ec2_stack(dir.path(), "names-a", Some("203.0.113.7/32"));
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&a), "--yes"],
        None,
    ));

    // Stack B copies A's repository and key pair names: refused before anything is made.
    let b_text = std::fs::read_to_string(&a).unwrap().replacen(
        "name = \"names-a\"",
        "name = \"names-b\"",
        1,
    );
    let b = dir.path().join("b.toml");
    std::fs::write(&b, &b_text).unwrap();
    let out = fullslack(&moto, &["plan", "--stack", s(&b)], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("ECR repository `names-a/chat` already exists and belongs to stack `names-a`"),
        "{t}"
    );
    assert!(t.contains("image.name = \"names-b/chat\""), "{t}");
    assert!(!t.contains("wait a little"), "{t}");
    let b_text = b_text.replace("name = \"names-a/chat\"", "name = \"names-b/chat\"");
    std::fs::write(&b, &b_text).unwrap();
    let out = fullslack(&moto, &["plan", "--stack", s(&b)], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "key pair `names-a-key` already exists in us-east-1 and belongs to stack `names-a`"
        ),
        "{}",
        text(&out)
    );
    // Without key_name, the imported key is the stack's own.
    let b_text: String = b_text
        .lines()
        .filter(|l| !l.starts_with("key_name"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&b, &b_text).unwrap();
    let out = fullslack(&moto, &["plan", "--stack", s(&b)], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("+ key_pair fullslack-names-b: create"),
        "{}",
        text(&out)
    );
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&b), "--yes"],
        None,
    ));
    // Destroying B leaves A whole.
    ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&b), "--yes"],
        None,
    ));
    let again = fullslack(&moto, &["plan", "--stack", s(&a)], None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

/// `--stack`, `-s` and `FULLSLACK_STACK` mean the same on every command that reads a stack
/// file; `apply PLAN` with FULLSLACK_STACK set (as CI sets it) applies the plan.
#[test]
fn the_stack_file_is_named_the_same_way_on_every_command() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "flag-test", Some("203.0.113.7/32"));
    let env = [("FULLSLACK_STACK", s(&stack))];
    let plan_path = dir.path().join("p.json");
    let p = fullslack_env(&moto, &["plan", "--out", s(&plan_path)], &env);
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    ok(&fullslack_env(&moto, &["apply", s(&plan_path)], &env));
    let same = fullslack_env(&moto, &["plan", "-s", s(&stack)], &[]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    // (`stack check` reads the same flag but refuses this stack's example.com placeholders.)
    for args in [
        vec!["secrets", "list"],
        vec!["nginx", "render"],
        vec!["lock", "acquire", "--dry-run"],
    ] {
        ok(&fullslack_env(&moto, &args, &env));
        let mut short = args.clone();
        short.extend(["-s", s(&stack)]);
        ok(&fullslack_env(&moto, &short, &[]));
    }
    // `apply` without PLAN takes the stack from the environment too.
    let noop = fullslack_env(&moto, &["apply", "--yes"], &env);
    let t = ok(&noop);
    assert!(t.contains("Nothing to do"), "{t}");
    // A missing stack file names the flag and the variable.
    let none = fullslack_env(
        &moto,
        &["plan"],
        &[("FULLSLACK_STACK", "/nonexistent/stack.toml")],
    );
    assert_ne!(none.status.code(), Some(0), "{}", text(&none));
    assert!(
        text(&none).contains("/nonexistent/stack.toml"),
        "{}",
        text(&none)
    );
}
