//! AWS errors say what to do: bad input, refused credentials, missing permissions, a declined
//! prompt.

use super::*;

#[test]
fn aws_errors_say_what_to_do() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "err-test", Some("203.0.113.7/32"));

    // No credentials anywhere.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(["secrets", "list", "--stack", s(&stack)])
        .stdin(Stdio::null());
    moto.env(&mut cmd);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("hint: no AWS credentials found"),
        "{}",
        text(&out)
    );

    // A region that is not a region name: refused with the stack file's line, before AWS.
    let bad = std::fs::read_to_string(&stack)
        .unwrap()
        .replace("us-east-1", "Mars 1");
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, bad).unwrap();
    let out = fullslack(&moto, &["secrets", "list", "--stack", s(&bad_path)], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("bad.toml:6:1: `ec2.region` AWS has no region `Mars 1`"),
        "{}",
        text(&out)
    );

    // A key pair that does not exist and is not imported.
    let no_key = std::fs::read_to_string(&stack)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("public_key_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let no_key_path = dir.path().join("nokey.toml");
    std::fs::write(&no_key_path, no_key).unwrap();
    let out = fullslack(&moto, &["plan", "--stack", s(&no_key_path)], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("key pair `err-test-key` does not exist"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("public_key_file"), "{}", text(&out));

    an_aws_error_is_one_sentence_and_a_hint(&moto, dir.path(), &stack);
}

/// An AWS error is one short sentence with the call, AWS's code and message, and the hint;
/// the SDK's dump only with -vv.
fn an_aws_error_is_one_sentence_and_a_hint(moto: &Moto, dir: &Path, stack: &Path) {
    let bad_subnet = std::fs::read_to_string(stack).unwrap().replace(
        "count = 1\n",
        "count = 1\nsubnet_id = \"subnet-0doesnotexist\"\n",
    );
    let bad_subnet_path = dir.join("badsubnet.toml");
    std::fs::write(&bad_subnet_path, bad_subnet).unwrap();
    let out = fullslack(moto, &["plan", "--stack", s(&bad_subnet_path)], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: ec2:DescribeSubnets failed: InvalidSubnetID.NotFound: "),
        "{err}"
    );
    assert!(lines[0].len() < 200, "{err}");
    assert!(lines[1].starts_with("hint: "), "{err}");
    let verbose = fullslack(moto, &["-vv", "plan", "--stack", s(&bad_subnet_path)], None);
    let verr = String::from_utf8_lossy(&verbose.stderr).to_string();
    assert!(
        verr.len() > err.len() + 200,
        "-vv shows the SDK's text:\n{verr}"
    );
}

#[test]
fn declining_the_apply_prompt_exits_1_and_changes_nothing() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "no-test", Some("203.0.113.7/32"));
    // `script` gives apply a terminal; we answer once the prompt is on the screen.
    let bin = env!("CARGO_BIN_EXE_fullslack");
    let inner = format!("{bin} apply --stack {}", stack.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("run script (util-linux)");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !String::from_utf8_lossy(&seen).contains("Only `yes` is accepted") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!("no prompt:\n{}", String::from_utf8_lossy(&seen)),
        }
    }
    stdin.write_all(b"no\n").expect("answer");
    let status = child.wait().expect("wait");
    drop(stdin);
    let _ = reader.join();
    seen.extend(rx.try_iter().flatten());
    let shown = String::from_utf8_lossy(&seen).to_string();
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(shown.contains("error: apply cancelled"), "{shown}");
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    assert!(instances_of(&rt, &aws, "no-test").is_empty());
}

/// One IAM query call to moto, unauthenticated (allowed for the first calls by
/// INITIAL_NO_AUTH_ACTION_COUNT); returns the XML answer.
fn iam_call(moto: &Moto, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    reqwest::blocking::Client::new()
        .post(&moto.url)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .expect("iam call")
        .text()
        .expect("iam answer")
}

fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find("</").expect("closing tag") + start;
    xml[start..end].to_string()
}

#[test]
fn refused_credentials_and_missing_permissions_get_their_own_hints() {
    // moto checks signatures and IAM policies once its first two (setup) calls are done.
    let moto = Moto::start_with(None, &[("INITIAL_NO_AUTH_ACTION_COUNT", "2")]);
    iam_call(
        &moto,
        &[("Action", "CreateUser"), ("UserName", "no-rights")],
    );
    let key = iam_call(
        &moto,
        &[("Action", "CreateAccessKey"), ("UserName", "no-rights")],
    );
    let (id, secret) = (
        xml_value(&key, "AccessKeyId"),
        xml_value(&key, "SecretAccessKey"),
    );
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "iam-test", Some("203.0.113.7/32"));

    // A user without any policy: permission denied, with the IAM hint.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(["plan", "--stack", s(&stack)])
        .stdin(Stdio::null());
    moto.env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", &id)
        .env("AWS_SECRET_ACCESS_KEY", &secret);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("hint: the AWS identity lacks a permission"),
        "{}",
        text(&out)
    );

    // A key AWS does not know: refused credentials, with that hint.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(["secrets", "list", "--stack", s(&stack)])
        .stdin(Stdio::null());
    moto.env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("hint: AWS refused the credentials"),
        "{}",
        text(&out)
    );
}
