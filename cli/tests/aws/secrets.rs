//! `fullslack secrets`: values round-trip through SSM and are never shown, on the command line
//! or in a plan.

use super::*;
use fullslack_aws::ExposeSecret;

#[test]
fn secrets_round_trip_and_values_never_shown() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "sec-stack", Some("203.0.113.7/32"));
    let value = "s3cr3t-VALUE-that-must-never-print-4f2a";

    // Set (value on stdin), with full trace logging: the value must not show up anywhere.
    let set = fullslack(
        &moto,
        &["-vvv", "secrets", "set", "jwt-secret", "--stack", s(&stack)],
        Some(&format!("{value}\n")),
    );
    let out = ok(&set);
    assert!(out.contains("/sec-stack/jwt-secret"), "{out}");
    assert!(out.contains("version 1"), "{out}");
    assert!(!out.contains(value), "the value leaked:\n{out}");

    moto.env_here();
    ssm_holds_a_secure_string(value);
    overwrite_then_list_names_and_versions(&moto, &stack, value);
    // A plan of a stack that references the secret never contains its value either.
    let plan_path = dir.path().join("plan.json");
    let plan = fullslack(
        &moto,
        &["-vv", "plan", "--stack", s(&stack), "--out", s(&plan_path)],
        None,
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let saved = std::fs::read_to_string(&plan_path).expect("plan file");
    assert!(!saved.contains("another-value-xyz") && !text(&plan).contains("another-value-xyz"));

    bad_values_refused_and_rm(&moto, &stack);
}

/// SSM holds the secret as a SecureString with exactly `value` (no trailing newline).
fn ssm_holds_a_secure_string(value: &str) {
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let got = rt
        .block_on(fullslack_aws::ssm::get(&aws, "/sec-stack/jwt-secret"))
        .expect("get parameter");
    assert_eq!(got.expose_secret(), value);
    let desc = rt
        .block_on(
            aws.ssm()
                .get_parameter()
                .name("/sec-stack/jwt-secret")
                .send(),
        )
        .expect("get_parameter");
    assert_eq!(
        desc.parameter()
            .and_then(|p| p.r#type())
            .map(fullslack_aws::sdk::ssm::types::ParameterType::as_str),
        Some("SecureString")
    );
}

/// Overwrite bumps the version; list shows names and versions, never values (also --json).
fn overwrite_then_list_names_and_versions(moto: &Moto, stack: &Path, value: &str) {
    ok(&fullslack(
        moto,
        &["secrets", "set", "jwt-secret", "--stack", s(stack)],
        Some("another-value-xyz"),
    ));
    ok(&fullslack(
        moto,
        &["secrets", "set", "smtp-password", "--stack", s(stack)],
        Some("smtp-pass-123"),
    ));
    let list = ok(&fullslack(
        moto,
        &["-vvv", "secrets", "list", "--stack", s(stack)],
        None,
    ));
    assert!(
        list.contains("/sec-stack/jwt-secret") && list.contains("version 2"),
        "{list}"
    );
    assert!(list.contains("/sec-stack/smtp-password"), "{list}");
    for v in [value, "another-value-xyz", "smtp-pass-123"] {
        assert!(!list.contains(v), "a value leaked in list:\n{list}");
    }
    let json = fullslack(
        moto,
        &["--json", "secrets", "list", "--stack", s(stack)],
        None,
    );
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json list");
    assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{}", text(&json));
    assert!(!text(&json).contains("another-value-xyz"));
}

/// An empty value and a bad name are refused; rm removes; rm of a missing one says so.
fn bad_values_refused_and_rm(moto: &Moto, stack: &Path) {
    let empty = fullslack(
        moto,
        &["secrets", "set", "empty", "--stack", s(stack)],
        Some(""),
    );
    assert_eq!(empty.status.code(), Some(1), "{}", text(&empty));
    assert!(text(&empty).contains("empty"), "{}", text(&empty));
    let bad = fullslack(
        moto,
        &["secrets", "set", "no/slashes", "--stack", s(stack)],
        Some("x"),
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    ok(&fullslack(
        moto,
        &["secrets", "rm", "jwt-secret", "--stack", s(stack)],
        None,
    ));
    let list = ok(&fullslack(
        moto,
        &["secrets", "list", "--stack", s(stack)],
        None,
    ));
    assert!(
        !list.contains("jwt-secret") && list.contains("smtp-password"),
        "{list}"
    );
    let again = fullslack(
        moto,
        &["secrets", "rm", "jwt-secret", "--stack", s(stack)],
        None,
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("hint: `fullslack secrets list"),
        "{}",
        text(&again)
    );
}

#[test]
fn secret_prompt_on_a_terminal_does_not_echo_and_plan_json_has_no_values() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "tty-test", Some("203.0.113.7/32"));
    let value = "typed-at-the-prompt-9c1e";
    // `script` gives the command a real terminal; what it prints (and what the terminal
    // echoes) lands on our stdout. The value is typed after the prompt appears.
    let bin = env!("CARGO_BIN_EXE_fullslack");
    let inner = format!("{bin} secrets set typed --stack {}", stack.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("run script (util-linux)");
    let mut stdin = child.stdin.take().expect("stdin");
    // Give the prompt time to silence the terminal before typing.
    std::thread::sleep(std::time::Duration::from_secs(2));
    stdin
        .write_all(format!("{value}\n").as_bytes())
        .expect("type");
    let out = child.wait_with_output().expect("wait");
    drop(stdin);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("Value for typed (not shown)"), "{shown}");
    assert!(shown.contains("stored /tty-test/typed"), "{shown}");
    assert!(
        !shown.contains(value),
        "the typed value was echoed:\n{shown}"
    );
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let got = rt
        .block_on(fullslack_aws::ssm::get(&aws, "/tty-test/typed"))
        .expect("get");
    assert_eq!(got.expose_secret(), value);

    // `plan --json`: the plan as JSON on stdout, exit 2, parseable, no value inside.
    let plan = fullslack(&moto, &["--json", "plan", "--stack", s(&stack)], None);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    assert_eq!(v["stack"], "tty-test");
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(5));
    assert!(v["cost"]["lines"].as_array().is_some_and(|l| !l.is_empty()));
    assert!(!text(&plan).contains(value));
    // Errors in --json mode are JSON too, with the hint.
    let bad = fullslack(
        &moto,
        &["--json", "secrets", "rm", "missing", "--stack", s(&stack)],
        None,
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let e: serde_json::Value = serde_json::from_slice(&bad.stdout).expect("error json");
    assert!(
        e["hint"]
            .as_str()
            .is_some_and(|h| h.contains("secrets list")),
        "{e}"
    );
}
