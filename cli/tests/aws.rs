//! `plan`, `apply`, `destroy`, `secrets` and ECR against a real moto server (one per test, on
//! a free loopback port): the `fullslack` binary does the work, the tests check what exists
//! through the same SDK.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fullslack_aws::{Aws, ExposeSecret, Kind};
use moto::Moto;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `fullslack ARGS` against moto, with `stdin` piped in.
fn fullslack(moto: &Moto, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("run fullslack");
    {
        let mut i = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait for fullslack")
}

fn text(o: &Output) -> String {
    format!(
        "--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    text(o)
}

fn ssh_keygen(dir: &Path) -> PathBuf {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "fullslack-test",
            "-f",
        ])
        .arg(&key)
        .output()
        .expect("run ssh-keygen (openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("id_ed25519.pub")
}

/// An EC2 stack like stacks/ec2-single.toml, with a test key and a fixed SSH address.
fn ec2_stack(dir: &Path, name: &str, ssh_cidr: Option<&str>) -> PathBuf {
    let public_key = ssh_keygen(dir);
    let cidr = ssh_cidr
        .map(|c| format!("ssh_cidr = \"{c}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"name = "{name}"
domains = ["chat.example.com"]
target = "ec2"

[ec2]
region = "us-east-1"
instance_type = "t3.small"
count = 1
ami = "al2023"
key_name = "{name}-key"
public_key_file = "{key}"
{cidr}
[ssh]
user = "ec2-user"

[image]
name = "{name}/chat"
registry = "ecr"

[tls]
acme_email = "ops@example.com"

[secrets]
FULLSLACK_AUTH__JWT_SECRET = {{ ssm = "/{name}/jwt-secret" }}
"#,
        key = public_key.display()
    );
    let path = dir.join("stack.toml");
    std::fs::write(&path, text).expect("write stack");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn secrets_round_trip_and_values_never_shown() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
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

    // SSM holds it as a SecureString with exactly that value (no trailing newline).
    moto.env_here();
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

    // Overwrite bumps the version; list shows names and versions, never values (also --json).
    ok(&fullslack(
        &moto,
        &["secrets", "set", "jwt-secret", "--stack", s(&stack)],
        Some("another-value-xyz"),
    ));
    ok(&fullslack(
        &moto,
        &["secrets", "set", "smtp-password", "--stack", s(&stack)],
        Some("smtp-pass-123"),
    ));
    let list = ok(&fullslack(
        &moto,
        &["-vvv", "secrets", "list", "--stack", s(&stack)],
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
        &moto,
        &["--json", "secrets", "list", "--stack", s(&stack)],
        None,
    );
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json list");
    assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{}", text(&json));
    assert!(!text(&json).contains("another-value-xyz"));

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

    // An empty value and a bad name are refused; rm removes; rm of a missing one says so.
    let empty = fullslack(
        &moto,
        &["secrets", "set", "empty", "--stack", s(&stack)],
        Some(""),
    );
    assert_eq!(empty.status.code(), Some(1), "{}", text(&empty));
    assert!(text(&empty).contains("empty"), "{}", text(&empty));
    let bad = fullslack(
        &moto,
        &["secrets", "set", "no/slashes", "--stack", s(&stack)],
        Some("x"),
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    ok(&fullslack(
        &moto,
        &["secrets", "rm", "jwt-secret", "--stack", s(&stack)],
        None,
    ));
    let list = ok(&fullslack(
        &moto,
        &["secrets", "list", "--stack", s(&stack)],
        None,
    ));
    assert!(
        !list.contains("jwt-secret") && list.contains("smtp-password"),
        "{list}"
    );
    let again = fullslack(
        &moto,
        &["secrets", "rm", "jwt-secret", "--stack", s(&stack)],
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
fn ec2_plan_apply_noop_drift_stale_plan_destroy() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
    let stack = ec2_stack(dir.path(), "ec2-test", Some("203.0.113.7/32"));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");

    // Something that is not ours must survive the destroy at the end.
    let foreign = rt
        .block_on(
            aws.ec2()
                .create_security_group()
                .group_name("not-fullslack")
                .description("someone else's")
                .send(),
        )
        .expect("foreign sg")
        .group_id()
        .unwrap()
        .to_string();

    // First plan: everything to create, with a labelled cost estimate; exit 2.
    let plan_path = dir.path().join("plan.json");
    let first = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--out", s(&plan_path)],
        None,
    );
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let out = text(&first);
    for want in [
        "+ ecr_repository ec2-test/chat: create",
        "+ security_group ec2-test: create",
        "tcp/22 from 203.0.113.7/32",
        "tcp/443 from 0.0.0.0/0",
        "+ key_pair ec2-test-key: create",
        "+ instance ec2-test-1: create",
        "+ elastic_ip ec2-test-1: create",
        "5 to create",
        "ESTIMATE",
        "instance ec2-test-1 (t3.small)",
        "total (estimate)",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }

    // Apply exactly that plan.
    let applied = ok(&fullslack(&moto, &["apply", s(&plan_path)], None));
    assert!(applied.contains("is running"), "{applied}");
    assert!(applied.contains("Applied: 5 change(s)"), "{applied}");

    // What exists now, read back with the SDK.
    let have = rt
        .block_on(fullslack_aws::read_actual(
            &aws,
            "ec2-test",
            "ec2",
            &fullslack_aws::Lookup {
                ecr_repository: Some("ec2-test/chat".into()),
                cluster: None,
            },
        ))
        .expect("read actual");
    let kinds: Vec<Kind> = have.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::EcrRepository,
            Kind::SecurityGroup,
            Kind::KeyPair,
            Kind::Instance,
            Kind::ElasticIp
        ],
        "{have:#?}"
    );
    let inst = &have[3];
    assert_eq!(inst.input("state"), "running");
    assert_eq!(inst.text("instance_type"), "t3.small");
    let eip = &have[4];
    assert_eq!(eip.text("instance"), "ec2-test-1");
    let instance_id = inst.id.clone().unwrap();
    let described = rt
        .block_on(
            aws.ec2()
                .describe_instances()
                .instance_ids(&instance_id)
                .send(),
        )
        .expect("describe");
    let i = &described.reservations()[0].instances()[0];
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("fullslack:stack") && t.value() == Some("ec2-test")));
    assert_eq!(i.key_name(), Some("ec2-test-key"));
    assert!(i.image_id().unwrap_or_default().starts_with("ami-"));
    let ud = rt
        .block_on(
            aws.ec2()
                .describe_instance_attribute()
                .instance_id(&instance_id)
                .attribute(fullslack_aws::sdk::ec2::types::InstanceAttributeName::UserData)
                .send(),
        )
        .expect("user data");
    let ud = ud.user_data().and_then(|v| v.value()).unwrap_or_default();
    let ud = String::from_utf8(base64_decode(ud)).unwrap_or_default();
    assert!(
        ud.contains("systemctl enable --now docker") && ud.contains("nginx"),
        "{ud}"
    );

    // Second plan: nothing to do (exit 0); a second apply is a no-op.
    let again = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("No changes"), "{}", text(&again));
    let noop = ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    assert!(noop.contains("Nothing to do"), "{noop}");

    // Drift: a rule added out of band shows up, and a plan saved before that is refused.
    let stale_path = dir.path().join("stale.json");
    let sg_id = have[1].id.clone().unwrap();
    // A plan made while the stack still matched… (an instance type change: replace)
    let edited = std::fs::read_to_string(&stack)
        .unwrap()
        .replace("t3.small", "t3.medium");
    let stack2 = dir.path().join("stack2.toml");
    std::fs::write(&stack2, edited).unwrap();
    let p = fullslack(
        &moto,
        &["plan", "--stack", s(&stack2), "--out", s(&stale_path)],
        None,
    );
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    assert!(
        text(&p).contains("instance_type: t3.small → t3.medium"),
        "{}",
        text(&p)
    );
    // Resized in place (stop, modify, start), not replaced.
    assert!(
        text(&p).contains("~ instance ec2-test-1") && text(&p).contains("resized in place"),
        "{}",
        text(&p)
    );
    rt.block_on(
        aws.ec2()
            .authorize_security_group_ingress()
            .group_id(&sg_id)
            .ip_permissions(
                fullslack_aws::sdk::ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(3306)
                    .to_port(3306)
                    .ip_ranges(
                        fullslack_aws::sdk::ec2::types::IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .expect("out-of-band rule");
    let drift = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift));
    let d = text(&drift);
    assert!(d.contains("~ security_group ec2-test"), "{d}");
    assert!(
        d.contains("ingress: - tcp/3306 from 0.0.0.0/0   (not in the stack: drift)"),
        "{d}"
    );
    // …no longer matches reality: refused, nothing changed.
    let refused = fullslack(&moto, &["apply", s(&stale_path)], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("no longer matches"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("hint: make a new plan"),
        "{}",
        text(&refused)
    );
    // Applying the stack reverts the drift.
    let fixed = ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    assert!(
        fixed.contains("removed `tcp/3306 from 0.0.0.0/0`"),
        "{fixed}"
    );
    let clean = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    // Without --yes and without a terminal, apply refuses to change anything.
    let replace = fullslack(&moto, &["apply", "--stack", s(&stack2)], None);
    assert_eq!(replace.status.code(), Some(64), "{}", text(&replace));
    assert!(text(&replace).contains("--yes"), "{}", text(&replace));

    // Destroy removes exactly what is tagged for the stack.
    let gone = ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&stack), "--yes"],
        None,
    ));
    assert!(gone.contains("Destroy plan"), "{gone}");
    assert!(
        gone.contains("5 to delete") || gone.contains("6 to delete"),
        "{gone}"
    );
    let after = rt
        .block_on(fullslack_aws::read_actual(
            &aws,
            "ec2-test",
            "ec2",
            &fullslack_aws::Lookup {
                ecr_repository: Some("ec2-test/chat".into()),
                cluster: None,
            },
        ))
        .expect("read actual");
    assert!(after.is_empty(), "{after:#?}");
    let still = rt
        .block_on(
            aws.ec2()
                .describe_security_groups()
                .group_ids(&foreign)
                .send(),
        )
        .expect("foreign sg still there");
    assert_eq!(still.security_groups().len(), 1);
    let nothing = ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&stack), "--yes"],
        None,
    ));
    assert!(nothing.contains("Nothing to destroy"), "{nothing}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

#[test]
fn ssh_is_never_open_to_the_world_without_the_flag_and_closed_without_ssh_cidr() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
    let stack = ec2_stack(dir.path(), "ssh-test", Some("0.0.0.0/0"));
    let refused = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("--allow-ssh-from-anywhere"),
        "{}",
        text(&refused)
    );
    let forced = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--allow-ssh-from-anywhere"],
        None,
    );
    assert_eq!(forced.status.code(), Some(2), "{}", text(&forced));
    assert!(
        text(&forced).contains("tcp/22 from 0.0.0.0/0"),
        "{}",
        text(&forced)
    );

    // No ssh_cidr: port 22 stays closed, and the plan says so. The plan is a function of the
    // stack file and AWS alone (no what-is-my-IP service), so a colleague's plan is the same.
    let dir2 = common::tempdir();
    let stack2 = ec2_stack(dir2.path(), "ssh-none", None);
    let closed = fullslack(&moto, &["plan", "--stack", s(&stack2)], None);
    assert_eq!(closed.status.code(), Some(2), "{}", text(&closed));
    let t = text(&closed);
    assert!(!t.contains("tcp/22"), "{t}");
    assert!(
        t.contains("Note: port 22 stays closed: ec2.ssh_cidr is not set"),
        "{t}"
    );
}

#[test]
fn ecr_repository_and_fresh_registry_credentials() {
    let moto = Moto::start(None);
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let a = rt
        .block_on(fullslack_aws::ecr::registry_auth(&aws))
        .expect("auth");
    assert_eq!(a.username, "AWS");
    assert!(
        a.server.ends_with(".amazonaws.com") && !a.server.starts_with("https://"),
        "{}",
        a.server
    );
    assert!(!a.password.expose_secret().is_empty());
    let shown = format!("{a:?}");
    assert!(!shown.contains(a.password.expose_secret()), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    // Fetched again each time (tokens expire after 12 h): a second call answers too.
    let b = rt
        .block_on(fullslack_aws::ecr::registry_auth(&aws))
        .expect("auth again");
    assert_eq!(b.server, a.server);
}

#[test]
fn aws_errors_say_what_to_do() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
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

    // An AWS error is one short sentence with the call, AWS's code and message, and the hint;
    // the SDK's dump only with -vv.
    let bad_subnet = std::fs::read_to_string(&stack).unwrap().replace(
        "count = 1\n",
        "count = 1\nsubnet_id = \"subnet-0doesnotexist\"\n",
    );
    let bad_subnet_path = dir.path().join("badsubnet.toml");
    std::fs::write(&bad_subnet_path, bad_subnet).unwrap();
    let out = fullslack(&moto, &["plan", "--stack", s(&bad_subnet_path)], None);
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
    let verbose = fullslack(
        &moto,
        &["-vv", "plan", "--stack", s(&bad_subnet_path)],
        None,
    );
    let verr = String::from_utf8_lossy(&verbose.stderr).to_string();
    assert!(
        verr.len() > err.len() + 200,
        "-vv shows the SDK's text:\n{verr}"
    );
}

#[test]
fn declining_the_apply_prompt_exits_1_and_changes_nothing() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
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

/// An ACM certificate in moto, for the HTTPS listener (our crate has no ACM client: the ALB
/// only references the ARN). moto speaks ACM's JSON protocol over plain HTTP.
fn acm_certificate(moto: &Moto) -> String {
    let resp: serde_json::Value = reqwest::blocking::Client::new()
        .post(&moto.url)
        .header("X-Amz-Target", "CertificateManager.RequestCertificate")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/acm/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(r#"{"DomainName":"chat.example.com"}"#)
        .send()
        .expect("acm request")
        .json()
        .expect("acm json");
    resp["CertificateArn"]
        .as_str()
        .expect("certificate arn")
        .to_string()
}

/// An ECS stack like stacks/ecs-fargate.toml, on moto's default subnets.
fn ecs_stack(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    name: &str,
    replicas: u32,
    tag: &str,
    cert: Option<&str>,
) -> PathBuf {
    let subnets = rt
        .block_on(
            aws.ec2()
                .describe_subnets()
                .filters(
                    fullslack_aws::sdk::ec2::types::Filter::builder()
                        .name("default-for-az")
                        .values("true")
                        .build(),
                )
                .send(),
        )
        .expect("subnets");
    let subnets: Vec<String> = subnets
        .subnets()
        .iter()
        .take(2)
        .map(|s| format!("\"{}\"", s.subnet_id().unwrap()))
        .collect();
    assert_eq!(subnets.len(), 2);
    let sg = match rt.block_on(
        aws.ec2()
            .describe_security_groups()
            .group_names(format!("{name}-tasks"))
            .send(),
    ) {
        Ok(o) if !o.security_groups().is_empty() => {
            o.security_groups()[0].group_id().unwrap().to_string()
        }
        _ => rt
            .block_on(
                aws.ec2()
                    .create_security_group()
                    .group_name(format!("{name}-tasks"))
                    .description("tasks")
                    .send(),
            )
            .expect("sg")
            .group_id()
            .unwrap()
            .to_string(),
    };
    // TLS on ECS needs the ALB's certificate: without one the service is plain HTTP.
    let tls = cert.is_some();
    let cert = cert
        .map(|c| format!("certificate_arn = \"{c}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"name = "{name}"
domains = ["chat.example.com"]
target = "ecs"

[ecs]
region = "us-east-1"
cluster = "{name}-cluster"
cpu = 1024
memory = 2048
subnets = [{subnets}]
security_groups = ["{sg}"]
{cert}execution_role_arn = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"

[image]
name = "{name}/chat"
tag = "{tag}"
registry = "ecr"

[app]
replicas = {replicas}

[app.env]
RUST_LOG = "info"

[redis]
mode = "external"
url = {{ ssm = "/{name}/redis-url" }}

[mongodb]
mode = "external"
url = {{ ssm = "/{name}/mongodb-url" }}

[tls]
enabled = {tls}

[secrets]
FULLSLACK_AUTH__JWT_SECRET = {{ ssm = "/{name}/jwt-secret" }}
"#,
        subnets = subnets.join(", ")
    );
    let path = dir.join(format!("stack-{tag}-{replicas}.toml"));
    std::fs::write(&path, text).expect("write stack");
    path
}

#[test]
fn ecs_plan_apply_noop_drift_new_image_destroy() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let dir = common::tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let cert = acm_certificate(&moto);
    let stack = ecs_stack(dir.path(), &rt, &aws, "ecs-test", 1, "v1", Some(&cert));

    // A certificate of another region (or not an ACM ARN) is refused at plan time, before
    // apply could create the redirect listener and fail on the HTTPS one.
    let wrong = ecs_stack(
        dir.path(),
        &rt,
        &aws,
        "ecs-test",
        1,
        "v0",
        Some("arn:aws:acm:eu-west-1:123456789012:certificate/abc"),
    );
    let refused = fullslack(&moto, &["plan", "--stack", s(&wrong)], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused)
            .contains("ecs.certificate_arn is in region eu-west-1, the stack in us-east-1"),
        "{}",
        text(&refused)
    );

    // The secret the task definition references must exist first: the plan says how.
    let missing = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains("fullslack secrets set"),
        "{}",
        text(&missing)
    );
    ok(&fullslack(
        &moto,
        &["secrets", "set", "jwt-secret", "--stack", s(&stack)],
        Some("jwt-value-never-shown-0123456789abcdef"),
    ));
    for (name, value) in [
        ("redis-url", "redis://:pw-never-shown@redis.internal:6379"),
        (
            "mongodb-url",
            "mongodb://u:pw-never-shown@mongo.internal/chat",
        ),
    ] {
        ok(&fullslack(
            &moto,
            &["secrets", "set", name, "--stack", s(&stack)],
            Some(value),
        ));
    }

    let first = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let out = text(&first);
    for want in [
        "+ ecs_cluster ecs-test-cluster: create",
        "+ task_definition ecs-test: create",
        "image = 123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-test/chat:v1",
        "FULLSLACK_AUTH__JWT_SECRET from arn:aws:ssm:us-east-1:123456789012:parameter/ecs-test/jwt-secret",
        "FULLSLACK_REDIS_URL from arn:aws:ssm:us-east-1:123456789012:parameter/ecs-test/redis-url",
        "FULLSLACK_STORE_URL from arn:aws:ssm:us-east-1:123456789012:parameter/ecs-test/mongodb-url",
        // The ALB's subnets (moto's default VPC is 172.31.0.0/16): the server trusts their
        // X-Forwarded-For.
        "env = FULLSLACK_LISTEN=0.0.0.0:8080, FULLSLACK_TRUSTED_PROXIES=172.31.",
        ", RUST_LOG=info",
        "+ target_group ecs-test: create",
        "health_path = /readyz",
        "+ load_balancer ecs-test: create",
        "+ listener http-80: create",
        "action = redirect to https",
        "+ listener https-443: create",
        "+ ecs_service ecs-test: create",
        "circuit_breaker = enabled, rollback",
        "Fargate task(s) of 1 vCPU / 2 GB",
        "load balancer ecs-test",
        "its ARN's form and region are checked",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    assert!(!out.contains("never-shown"), "{out}");

    let applied = ok(&fullslack(
        &moto,
        &[
            "apply",
            "--stack",
            s(&stack),
            "--yes",
            "--wait-timeout",
            "60",
        ],
        None,
    ));
    assert!(applied.contains("service ecs-test is stable"), "{applied}");
    assert!(applied.contains("load_balancer ecs-test"), "{applied}");

    // What exists: the task definition and service as asked.
    let td = rt
        .block_on(
            aws.ecs()
                .describe_task_definition()
                .task_definition("ecs-test")
                .send(),
        )
        .expect("task definition");
    let td = td.task_definition().unwrap();
    assert_eq!(td.revision(), 1);
    let c = &td.container_definitions()[0];
    assert_eq!(c.port_mappings()[0].container_port(), Some(8080));
    assert_eq!(c.secrets()[0].name(), "FULLSLACK_AUTH__JWT_SECRET");
    assert!(c.secrets()[0]
        .value_from()
        .ends_with(":parameter/ecs-test/jwt-secret"));
    assert_eq!(c.secrets().len(), 3);
    assert!(c.secrets().iter().any(|s| s.name() == "FULLSLACK_STORE_URL"
        && s.value_from().ends_with(":parameter/ecs-test/mongodb-url")));
    assert_eq!(
        c.log_configuration().map(|l| l.log_driver().as_str()),
        Some("awslogs")
    );
    assert!(c.health_check().is_some());
    let svc = rt
        .block_on(
            aws.ecs()
                .describe_services()
                .cluster("ecs-test-cluster")
                .services("ecs-test")
                .send(),
        )
        .expect("service");
    let svc = &svc.services()[0];
    assert_eq!(svc.desired_count(), 1);
    // (moto does not store deploymentConfiguration, so the circuit breaker is checked in the
    // plan above, not read back here.)
    let tgs = rt
        .block_on(
            aws.elb()
                .describe_target_groups()
                .names("fs-ecs-test")
                .send(),
        )
        .expect("target group");
    assert_eq!(tgs.target_groups()[0].health_check_path(), Some("/readyz"));

    // Second plan: no changes.
    let again = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // Drift: desired count changed out of band.
    rt.block_on(
        aws.ecs()
            .update_service()
            .cluster("ecs-test-cluster")
            .service("ecs-test")
            .desired_count(3)
            .send(),
    )
    .expect("out-of-band scale");
    let drift = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift));
    assert!(
        text(&drift).contains("~ ecs_service ecs-test"),
        "{}",
        text(&drift)
    );
    assert!(
        text(&drift).contains("desired_count: 3 → 1"),
        "{}",
        text(&drift)
    );
    ok(&fullslack(
        &moto,
        &[
            "apply",
            "--stack",
            s(&stack),
            "--yes",
            "--wait-timeout",
            "60",
        ],
        None,
    ));
    let clean = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    // A new image: a new task definition revision, the service moves to it and is waited for.
    let v2 = ecs_stack(dir.path(), &rt, &aws, "ecs-test", 1, "v2", Some(&cert));
    let p = fullslack(&moto, &["plan", "--stack", s(&v2)], None);
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    assert!(text(&p).contains("image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-test/chat:v1 → 123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-test/chat:v2"), "{}", text(&p));
    assert!(text(&p).contains("~ ecs_service ecs-test"), "{}", text(&p));
    let up = ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&v2), "--yes", "--wait-timeout", "60"],
        None,
    ));
    assert!(up.contains("ecs-test:2"), "{up}");
    let svc = rt
        .block_on(
            aws.ecs()
                .describe_services()
                .cluster("ecs-test-cluster")
                .services("ecs-test")
                .send(),
        )
        .expect("service");
    assert!(svc.services()[0]
        .task_definition()
        .unwrap()
        .ends_with("ecs-test:2"));
    let clean = fullslack(&moto, &["plan", "--stack", s(&v2)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    // Destroy: everything of the stack goes; the tasks' security group (not ours) stays.
    let gone = ok(&fullslack(
        &moto,
        &[
            "destroy",
            "--stack",
            s(&v2),
            "--yes",
            "--wait-timeout",
            "60",
        ],
        None,
    ));
    assert!(gone.contains("deleted ECS service ecs-test"), "{gone}");
    let after = rt
        .block_on(fullslack_aws::read_actual(
            &aws,
            "ecs-test",
            "ecs",
            &fullslack_aws::Lookup {
                ecr_repository: Some("ecs-test/chat".into()),
                cluster: Some("ecs-test-cluster".into()),
            },
        ))
        .expect("read actual");
    assert!(after.is_empty(), "{after:#?}");
    let sg = rt
        .block_on(
            aws.ec2()
                .describe_security_groups()
                .group_names("ecs-test-tasks")
                .send(),
        )
        .expect("tasks sg still there");
    assert_eq!(sg.security_groups().len(), 1);
}

#[test]
fn ecs_wait_for_stable_times_out_with_a_clear_failure() {
    // moto reports one running task per service: a service that wants two never settles.
    let moto = Moto::start(Some(1));
    moto.env_here();
    let dir = common::tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let stack = ecs_stack(dir.path(), &rt, &aws, "ecs-slow", 2, "v1", None);
    for name in ["jwt-secret", "redis-url", "mongodb-url"] {
        ok(&fullslack(
            &moto,
            &["secrets", "set", name, "--stack", s(&stack)],
            Some("x-secret-value"),
        ));
    }
    // A plan saved with the default wait (600 s); --wait-timeout on `apply PLAN` wins.
    let plan_path = dir.path().join("slow.json");
    let p = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--out", s(&plan_path)],
        None,
    );
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    let started = std::time::Instant::now();
    let out = fullslack(
        &moto,
        &["apply", s(&plan_path), "--wait-timeout", "3"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("ECS service ecs-slow becoming stable did not finish within 3 s"),
        "{t}"
    );
    assert!(t.contains("1 of 2 task(s) running"), "{t}");
    assert!(
        t.contains("hint: look at the resource in the AWS console"),
        "{t}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn secret_prompt_on_a_terminal_does_not_echo_and_plan_json_has_no_values() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
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
    let dir = common::tempdir();
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

#[test]
fn ec2_count_change_adds_and_removes_instances_with_their_addresses() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
    // More than one node needs MongoDB and Redis (run on the hosts here).
    let base = ec2_stack(dir.path(), "scale-test", Some("203.0.113.7/32"));
    let stack = dir.path().join("one.toml");
    std::fs::write(
        &stack,
        std::fs::read_to_string(&base).unwrap()
            + "\n[redis]\nmode = \"managed\"\n\n[mongodb]\nmode = \"managed\"\n",
    )
    .unwrap();
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));

    let two = dir.path().join("two.toml");
    std::fs::write(
        &two,
        std::fs::read_to_string(&stack)
            .unwrap()
            .replace("count = 1", "count = 2"),
    )
    .unwrap();
    let up = fullslack(&moto, &["plan", "--stack", s(&two)], None);
    assert_eq!(up.status.code(), Some(2), "{}", text(&up));
    let t = text(&up);
    assert!(
        t.contains("2 to create, 0 to update, 0 to replace, 0 to delete, 5 unchanged"),
        "{t}"
    );
    assert!(
        t.contains("+ instance scale-test-2: create")
            && t.contains("+ elastic_ip scale-test-2: create"),
        "{t}"
    );
    assert!(t.contains("instance scale-test-2 (t3.small)"), "{t}");
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&two), "--yes"],
        None,
    ));
    let same = fullslack(&moto, &["plan", "--stack", s(&two)], None);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));

    // Back to one: the second instance and its address go, the first stays untouched.
    let down = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(down.status.code(), Some(2), "{}", text(&down));
    let t = text(&down);
    assert!(
        t.contains("0 to create, 0 to update, 0 to replace, 2 to delete"),
        "{t}"
    );
    let eip = t.find("- elastic_ip scale-test-2").expect("eip delete");
    let inst = t.find("- instance scale-test-2").expect("instance delete");
    assert!(
        eip < inst,
        "the address is released before its instance goes:\n{t}"
    );
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    let clean = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

type Change<'a> = Box<dyn Fn(&mut String) + 'a>;

/// One row of the table: what, the (kind, attribute) pairs it covers, what the plan shows, the
/// change.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>, Change<'a>);

fn change<'a>(f: impl Fn(&mut String) + 'a) -> Change<'a> {
    Box::new(f)
}

/// What a plan JSON says changes: (kind, attribute) pairs, and the action per resource.
fn planned_attrs(plan: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for ch in plan["changes"].as_array().into_iter().flatten() {
        let action = ch["action"].as_str().unwrap_or_default().to_string();
        let res = if ch["after"].is_null() {
            &ch["before"]
        } else {
            &ch["after"]
        };
        let kind = res["kind"].as_str().unwrap_or_default().to_string();
        for a in ch["changed"].as_array().into_iter().flatten() {
            out.push((
                kind.clone(),
                a.as_str().unwrap_or_default().to_string(),
                action.clone(),
            ));
        }
    }
    out
}

fn instances_of(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    stack: &str,
) -> Vec<fullslack_aws::Resource> {
    rt.block_on(fullslack_aws::read_actual(
        aws,
        stack,
        "ec2",
        &fullslack_aws::Lookup::default(),
    ))
    .expect("read actual")
    .into_iter()
    .filter(|r| r.kind == Kind::Instance)
    .collect()
}

/// Every attribute a plan can show as changed, changed one at a time (in the stack file or
/// behind the stack's back in AWS): the plan shows it, apply carries it out, and the next plan
/// is empty. The last check makes the table complete: every attribute the stack's resources
/// have must have been covered by a case.
#[test]
fn every_planned_change_applies_and_the_next_plan_is_empty() {
    use fullslack_aws::sdk::ec2::types as t;
    let moto = Moto::start(None);
    let dir = common::tempdir();
    let name = "conv";
    let stack = ec2_stack(dir.path(), name, Some("203.0.113.7/32"));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let ec2 = aws.ec2();

    let plan_path = dir.path().join("first.json");
    let first = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--out", s(&plan_path)],
        None,
    );
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    // Every (kind, attribute) the stack's resources are compared on.
    let mut all: Vec<(String, String)> = Vec::new();
    for ch in first["changes"].as_array().unwrap() {
        let kind = ch["after"]["kind"].as_str().unwrap().to_string();
        for k in ch["after"]["attrs"].as_object().unwrap().keys() {
            if !all.contains(&(kind.clone(), k.clone())) {
                all.push((kind.clone(), k.clone()));
            }
        }
    }
    ok(&fullslack(&moto, &["apply", s(&plan_path)], None));

    // Safer defaults: IMDSv2 required, the root volume encrypted.
    let inst = &instances_of(&rt, &aws, name)[0];
    let d = rt
        .block_on(
            ec2.describe_instances()
                .instance_ids(inst.id.clone().unwrap())
                .send(),
        )
        .unwrap();
    let i = &d.reservations()[0].instances()[0];
    assert_eq!(
        i.metadata_options().and_then(|m| m.http_tokens()),
        Some(&t::HttpTokensState::Required)
    );
    let vols = rt
        .block_on(
            ec2.describe_volumes()
                .filters(
                    t::Filter::builder()
                        .name("attachment.instance-id")
                        .values(inst.id.clone().unwrap())
                        .build(),
                )
                .send(),
        )
        .unwrap();
    assert_eq!(vols.volumes()[0].encrypted(), Some(true));
    assert_eq!(vols.volumes()[0].size(), Some(20));

    // A group of someone else's in the same VPC, and subnets to move to.
    let foreign_sg = |rt: &tokio::runtime::Runtime, vpc: &str, n: &str| -> String {
        rt.block_on(
            ec2.create_security_group()
                .group_name(n)
                .description("not ours")
                .vpc_id(vpc)
                .send(),
        )
        .unwrap()
        .group_id()
        .unwrap()
        .to_string()
    };
    let instance = |rt: &tokio::runtime::Runtime| instances_of(rt, &aws, name).remove(0);
    let other_key = ssh_keygen(&{
        let d = dir.path().join("k2");
        std::fs::create_dir_all(&d).unwrap();
        d
    });

    let mut text_now = std::fs::read_to_string(&stack).unwrap();
    let cases: Vec<Case<'_>> = vec![
        (
            "root volume grows in place",
            vec![("instance", "volume_gb")],
            vec!["~ instance conv-1", "volume_gb: 20 → 30"],
            change(|t: &mut String| *t = t.replace("count = 1\n", "count = 1\nvolume_gb = 30\n")),
        ),
        (
            "root volume cannot shrink: replaced",
            vec![("instance", "volume_gb")],
            vec![
                "-/+ instance conv-1",
                "volume_gb: 30 → 25   (forces replacement: an EBS volume cannot shrink)",
                "DATA LOSS",
            ],
            change(|t: &mut String| *t = t.replace("volume_gb = 30", "volume_gb = 25")),
        ),
        (
            "instance type resized in place",
            vec![("instance", "instance_type")],
            vec![
                "~ instance conv-1",
                "instance_type: t3.small → t3.medium",
                "resized in place",
            ],
            change(|t: &mut String| *t = t.replace("t3.small", "t3.medium")),
        ),
        (
            "image: replaced",
            vec![("instance", "image")],
            vec![
                "-/+ instance conv-1",
                "image: al2023 → ami-04681a1dbd79675a5   (forces replacement: the image is chosen only at launch)",
                "~ elastic_ip conv-1",
            ],
            change(|t: &mut String| {
                *t = t.replace("ami = \"al2023\"", "ami = \"ami-04681a1dbd79675a5\"");
            }),
        ),
        (
            "key pair name: replaced",
            vec![("instance", "key_name")],
            vec![
                "+ key_pair conv-key2: create",
                "-/+ instance conv-1",
                "key_name: conv-key → conv-key2",
                "- key_pair conv-key (",
            ],
            change(|t: &mut String| *t = t.replace("conv-key", "conv-key2")),
        ),
        (
            "key material: key pair replaced",
            vec![("key_pair", "public_key_sha256")],
            vec!["-/+ key_pair conv-key2", "public_key_sha256:"],
            change(|t: &mut String| {
                let line = t.lines().find(|l| l.starts_with("public_key_file")).unwrap().to_string();
                *t = t.replace(&line, &format!("public_key_file = \"{}\"", other_key.display()));
            }),
        ),
        (
            "rules of every kind added by hand: revoked",
            vec![("security_group", "ingress")],
            vec![
                "~ security_group conv",
                "ingress: - -1/all from 10.0.0.0/8   (not in the stack: drift)",
                "ingress: - tcp/8080 from ::/0   (not in the stack: drift)",
                "ingress: - tcp/5432 from sg-",
            ],
            change(|_: &mut String| {
                let sg = rt
                    .block_on(fullslack_aws::read_actual(&aws, name, "ec2", &Default::default()))
                    .unwrap()
                    .into_iter()
                    .find(|r| r.kind == Kind::SecurityGroup)
                    .unwrap();
                let other = foreign_sg(&rt, sg.text("vpc"), "db-clients");
                let perms = [
                    t::IpPermission::builder()
                        .ip_protocol("-1")
                        .ip_ranges(t::IpRange::builder().cidr_ip("10.0.0.0/8").build())
                        .build(),
                    t::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(8080)
                        .to_port(8080)
                        .ipv6_ranges(t::Ipv6Range::builder().cidr_ipv6("::/0").build())
                        .build(),
                    t::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(5432)
                        .to_port(5432)
                        .user_id_group_pairs(t::UserIdGroupPair::builder().group_id(other).build())
                        .build(),
                ];
                for p in perms {
                    rt.block_on(
                        ec2.authorize_security_group_ingress()
                            .group_id(sg.id.clone().unwrap())
                            .ip_permissions(p)
                            .send(),
                    )
                    .expect("out-of-band rule");
                }
            }),
        ),
        (
            "security groups of the instance edited by hand: set back in place",
            vec![("instance", "security_group")],
            vec!["~ instance conv-1", "security_group: - sg-"],
            change(|_: &mut String| {
                let i = instance(&rt);
                let d = rt
                    .block_on(ec2.describe_instances().instance_ids(i.id.clone().unwrap()).send())
                    .unwrap();
                let inst = &d.reservations()[0].instances()[0];
                let ours = inst.security_groups()[0].group_id().unwrap().to_string();
                let other = foreign_sg(&rt, inst.vpc_id().unwrap(), "hand-made");
                rt.block_on(
                    ec2.modify_instance_attribute()
                        .instance_id(i.id.clone().unwrap())
                        .groups(ours)
                        .groups(other)
                        .send(),
                )
                .expect("out-of-band groups");
            }),
        ),
        (
            "IMDSv1 allowed by hand: IMDSv2 required again in place",
            vec![("instance", "metadata_tokens")],
            vec!["~ instance conv-1", "metadata_tokens: optional → required"],
            change(|_: &mut String| {
                rt.block_on(
                    ec2.modify_instance_metadata_options()
                        .instance_id(instance(&rt).id.unwrap())
                        .http_tokens(t::HttpTokensState::Optional)
                        .send(),
                )
                .expect("out-of-band metadata options");
            }),
        ),
        (
            "user data changed: replaced",
            vec![("instance", "user_data_sha256")],
            vec![
                "-/+ instance conv-1",
                "forces replacement: user data runs only on an instance's first boot",
            ],
            change(|_: &mut String| {
                rt.block_on(
                    ec2.create_tags()
                        .resources(instance(&rt).id.unwrap())
                        .tags(
                            t::Tag::builder()
                                .key("fullslack:user-data-sha256")
                                .value("0000")
                                .build(),
                        )
                        .send(),
                )
                .expect("out-of-band tag");
            }),
        ),
        (
            "Elastic IP detached by hand: attached again",
            vec![("elastic_ip", "instance")],
            vec!["~ elastic_ip conv-1", "instance: (none) → conv-1"],
            change(|_: &mut String| {
                let a = rt
                    .block_on(
                        ec2.describe_addresses()
                            .filters(
                                t::Filter::builder()
                                    .name("tag:fullslack:stack")
                                    .values(name)
                                    .build(),
                            )
                            .send(),
                    )
                    .unwrap();
                let assoc = a.addresses()[0].association_id().unwrap().to_string();
                rt.block_on(ec2.disassociate_address().association_id(assoc).send())
                    .expect("out-of-band disassociate");
            }),
        ),
        (
            "ECR tags made immutable by hand: mutable again",
            vec![("ecr_repository", "tag_mutability")],
            vec!["~ ecr_repository conv/chat", "tag_mutability: IMMUTABLE → MUTABLE"],
            change(|_: &mut String| {
                rt.block_on(
                    aws.ecr()
                        .put_image_tag_mutability()
                        .repository_name("conv/chat")
                        .image_tag_mutability(
                            fullslack_aws::sdk::ecr::types::ImageTagMutability::Immutable,
                        )
                        .send(),
                )
                .expect("out-of-band mutability");
            }),
        ),
        (
            "subnet: replaced",
            vec![("instance", "subnet")],
            vec!["-/+ instance conv-1", "forces replacement: an instance cannot move to another subnet"],
            change(|t: &mut String| {
                let now = instance(&rt).text("subnet").to_string();
                let subnets = rt
                    .block_on(
                        ec2.describe_subnets()
                            .filters(t::Filter::builder().name("default-for-az").values("true").build())
                            .send(),
                    )
                    .unwrap();
                let other = subnets
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_id())
                    .find(|s| *s != now)
                    .unwrap()
                    .to_string();
                *t = t.replace("count = 1\n", &format!("count = 1\nsubnet_id = \"{other}\"\n"));
            }),
        ),
        (
            "another VPC: security group and instance replaced",
            vec![("security_group", "vpc"), ("instance", "subnet")],
            vec![
                "-/+ security_group conv",
                "forces replacement: a security group cannot move to another VPC",
                "-/+ instance conv-1",
            ],
            change(|t: &mut String| {
                let vpc = rt
                    .block_on(ec2.create_vpc().cidr_block("10.9.0.0/16").send())
                    .unwrap()
                    .vpc()
                    .unwrap()
                    .vpc_id()
                    .unwrap()
                    .to_string();
                let subnet = rt
                    .block_on(
                        ec2.create_subnet()
                            .vpc_id(&vpc)
                            .cidr_block("10.9.1.0/24")
                            .send(),
                    )
                    .unwrap()
                    .subnet()
                    .unwrap()
                    .subnet_id()
                    .unwrap()
                    .to_string();
                let line = t.lines().find(|l| l.starts_with("subnet_id")).unwrap().to_string();
                *t = t.replace(&line, &format!("subnet_id = \"{subnet}\""));
            }),
        ),
    ];

    let mut covered: Vec<(String, String)> = Vec::new();
    for (i, (what, covers, expect, change)) in cases.iter().enumerate() {
        change(&mut text_now);
        std::fs::write(&stack, &text_now).unwrap();
        let path = dir.path().join(format!("case-{i}.json"));
        let p = fullslack(
            &moto,
            &["plan", "--stack", s(&stack), "--out", s(&path)],
            None,
        );
        let shown = text(&p);
        assert_eq!(p.status.code(), Some(2), "case `{what}`: {shown}");
        for want in expect {
            assert!(
                shown.contains(want),
                "case `{what}`: missing `{want}` in:\n{shown}"
            );
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let changed = planned_attrs(&json);
        for (kind, attr) in covers {
            assert!(
                changed.iter().any(|(k, a, _)| k == kind && a == attr),
                "case `{what}`: {kind}.{attr} not in the plan: {changed:?}"
            );
            covered.push((kind.to_string(), attr.to_string()));
        }
        let applied = fullslack(&moto, &["apply", s(&path), "--wait-timeout", "60"], None);
        assert_eq!(
            applied.status.code(),
            Some(0),
            "case `{what}`: {}",
            text(&applied)
        );
        let again = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
        assert_eq!(
            again.status.code(),
            Some(0),
            "case `{what}`: the plan after apply is not empty:\n{}",
            text(&again)
        );
        // An Elastic IP follows a replaced instance before the old one is terminated.
        if shown.contains("-/+ instance") {
            let out = text(&applied);
            let moved = out.find("Elastic IP conv-1 →").expect("address moved");
            let gone = out
                .find("terminated the replaced instance")
                .expect("old terminated");
            assert!(moved < gone, "case `{what}`: {out}");
        }
        if shown.contains("~ instance") && shown.contains("instance_type") {
            assert_eq!(instance(&rt).text("instance_type"), "t3.medium");
        }
    }
    let missing: Vec<_> = all.iter().filter(|a| !covered.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "attributes no case changes: {missing:?}"
    );
}

/// Starts `fullslack ARGS` in the background; its stderr lines arrive on the channel.
fn spawn_fullslack(
    moto: &Moto,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("run fullslack");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn finish(
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait");
    let mut all = String::from_utf8_lossy(&out.stdout).to_string();
    all.push_str("\n--- stderr\n");
    for l in &rx {
        all.push_str(&l);
        all.push('\n');
    }
    (out.status.code(), all)
}

#[test]
fn applies_of_one_stack_take_turns_under_its_lock() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
    let name = "lock-test";
    let base = ec2_stack(dir.path(), name, Some("203.0.113.7/32"));
    let with_count = |n: u32| {
        let p = dir.path().join(format!("count-{n}.toml"));
        std::fs::write(
            &p,
            std::fs::read_to_string(&base)
                .unwrap()
                .replace("count = 1", &format!("count = {n}"))
                + "\n[redis]\nmode = \"managed\"\n\n[mongodb]\nmode = \"managed\"\n",
        )
        .unwrap();
        p
    };
    let (one, two, three) = (with_count(1), with_count(2), with_count(3));
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&one), "--yes"],
        None,
    ));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let count = || instances_of(&rt, &aws, name).len();
    let quiet = |_: String| {};

    // Someone holds the lock: apply fails at once naming the holder, and launches nothing.
    let held = rt
        .block_on(fullslack_aws::lock::acquire(
            &aws,
            name,
            "deploy",
            std::time::Duration::ZERO,
            &quiet,
        ))
        .expect("take the lock");
    let me = fullslack_aws::lock::whoami();
    let refused = fullslack(&moto, &["apply", "--stack", s(&two), "--yes"], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let t = text(&refused);
    assert!(
        t.contains(&format!("stack `{name}` is locked by {me} since")) && t.contains("(deploy)"),
        "{t}"
    );
    assert!(
        t.contains("--lock-wait") && t.contains("--break-lock"),
        "{t}"
    );
    assert_eq!(count(), 1);
    // destroy takes the same lock.
    let refused = fullslack(&moto, &["destroy", "--stack", s(&one), "--yes"], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("is locked by"),
        "{}",
        text(&refused)
    );

    // --lock-wait: it waits, and goes on once the holder releases.
    let (child, rx) = spawn_fullslack(
        &moto,
        &["apply", "--stack", s(&two), "--yes", "--lock-wait", "2m"],
    );
    let waiting = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a line while waiting");
    assert!(waiting.contains("waiting up to 120 s"), "{waiting}");
    assert_eq!(count(), 1, "nothing launched while the lock is held");
    rt.block_on(fullslack_aws::lock::release(&aws, &held))
        .expect("release");
    let (code, out) = finish(child, rx);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(count(), 2);

    // Two applies at once: one applies, the other waits and then finds nothing to do.
    let a = spawn_fullslack(
        &moto,
        &["apply", "--stack", s(&three), "--yes", "--lock-wait", "2m"],
    );
    let b = spawn_fullslack(
        &moto,
        &["apply", "--stack", s(&three), "--yes", "--lock-wait", "2m"],
    );
    let (ca, oa) = finish(a.0, a.1);
    let (cb, ob) = finish(b.0, b.1);
    assert_eq!((ca, cb), (Some(0), Some(0)), "{oa}\n=====\n{ob}");
    assert_eq!(count(), 3, "exactly one third instance:\n{oa}\n=====\n{ob}");
    let applied = [&oa, &ob]
        .iter()
        .filter(|o| o.contains("Applied: 2 change(s)"))
        .count();
    let nothing = [&oa, &ob]
        .iter()
        .filter(|o| o.contains("Nothing to do"))
        .count();
    assert_eq!((applied, nothing), (1, 1), "{oa}\n=====\n{ob}");
    assert!(rt
        .block_on(fullslack_aws::lock::holder(&aws, name))
        .unwrap()
        .is_none());

    // A lock left by a run that died: --break-lock says whose it was and goes on.
    rt.block_on(fullslack_aws::lock::acquire(
        &aws,
        name,
        "apply",
        std::time::Duration::ZERO,
        &quiet,
    ))
    .expect("take the lock");
    let broke = ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&three), "--yes", "--break-lock"],
        None,
    ));
    assert!(
        broke.contains(&format!("broke the lock of stack `{name}` held by {me}")),
        "{broke}"
    );
    assert_eq!(count(), 0);
}

#[test]
fn names_are_per_stack_and_a_taken_name_is_refused_at_plan_time() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
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

#[test]
fn a_shared_ecs_cluster_is_used_but_never_deleted_under_another_stacks_service() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let dir = common::tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let stack = |name: &str, cluster: Option<&str>| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let p = ecs_stack(&d, &rt, &aws, name, 1, "v1", None);
        let t = std::fs::read_to_string(&p).unwrap();
        let line = format!("cluster = \"{name}-cluster\"\n");
        let t = match cluster {
            Some(c) => t.replace(&line, &format!("cluster = \"{c}\"\n")),
            None => t.replace(&line, ""),
        };
        std::fs::write(&p, t).unwrap();
        for secret in ["jwt-secret", "redis-url", "mongodb-url"] {
            ok(&fullslack(
                &moto,
                &["secrets", "set", secret, "--stack", s(&p)],
                Some("x-secret-value"),
            ));
        }
        p
    };
    let a = stack("ecs-a", None);
    let p = fullslack(&moto, &["plan", "--stack", s(&a)], None);
    assert!(
        text(&p).contains("+ ecs_cluster fullslack-ecs-a: create"),
        "{}",
        text(&p)
    );
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&a), "--yes", "--wait-timeout", "60"],
        None,
    ));

    // B runs its service in A's cluster: used, not managed.
    let b = stack("ecs-b", Some("fullslack-ecs-a"));
    let p = fullslack(&moto, &["plan", "--stack", s(&b)], None);
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    let t = text(&p);
    assert!(!t.contains("ecs_cluster"), "{t}");
    assert!(
        t.contains("ECS cluster fullslack-ecs-a exists and belongs to stack `ecs-a`"),
        "{t}"
    );
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&b), "--yes", "--wait-timeout", "60"],
        None,
    ));
    let clean = fullslack(&moto, &["plan", "--stack", s(&a)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    // Destroying A would delete the cluster under B's service: refused at plan time, nothing
    // changed.
    let refused = fullslack(&moto, &["destroy", "--stack", s(&a), "--yes"], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("also runs services that are not stack `ecs-a`'s (ecs-b)"),
        "{}",
        text(&refused)
    );
    let still = fullslack(&moto, &["plan", "--stack", s(&a)], None);
    assert_eq!(still.status.code(), Some(0), "{}", text(&still));

    // B's destroy takes only B's things; then A's destroy goes through.
    let gone = ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&b), "--yes", "--wait-timeout", "60"],
        None,
    ));
    assert!(!gone.contains("deleted ECS cluster"), "{gone}");
    let gone = ok(&fullslack(
        &moto,
        &["destroy", "--stack", s(&a), "--yes", "--wait-timeout", "60"],
        None,
    ));
    assert!(
        gone.contains("deleted ECS cluster fullslack-ecs-a"),
        "{gone}"
    );
}

/// `fullslack ARGS` against moto with extra environment (set after moto's, so it wins).
fn fullslack_env(moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fullslack"));
    cmd.args(args).stdin(Stdio::null());
    moto.env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run fullslack")
}

/// An `ec2` stack lists no hosts: `lock` and `doctor` find the instances `apply` made by the
/// stack's tags (as `plan` does), and before any apply they say to run it.
#[test]
fn ec2_hosts_are_found_by_the_stack_tags_after_apply() {
    use fullslack_aws::sdk::ec2::types as t;
    let moto = Moto::start(None);
    let dir = common::tempdir();
    let name = "hosts-test";
    let stack = ec2_stack(dir.path(), name, Some("203.0.113.7/32"));

    // Before apply: a clear failure that says what to run, not "lists no hosts".
    let lock = fullslack(&moto, &["lock", "status", "--stack", s(&stack)], None);
    assert_eq!(lock.status.code(), Some(1), "{}", text(&lock));
    let t = text(&lock);
    assert!(t.contains("has no running EC2 instances"), "{t}");
    assert!(t.contains("fullslack apply --stack"), "{t}");
    assert!(!t.contains("lists no hosts"), "{t}");
    let skip_all_but_ssh = [
        "--skip", "dns", "--skip", "reach", "--skip", "caa", "--skip", "tls", "--skip", "clock",
        "--skip", "docker", "--skip", "aws",
    ];
    let mut args = vec!["--json", "doctor", "--stack", s(&stack), "--timeout", "1"];
    args.extend(skip_all_but_ssh);
    let doc = fullslack(&moto, &args, None);
    assert_eq!(doc.status.code(), Some(1), "{}", text(&doc));
    let report: serde_json::Value = serde_json::from_slice(&doc.stdout).expect("doctor JSON");
    let first = &report["checks"][0];
    assert_eq!(first["name"], "ec2.hosts", "{report}");
    assert_eq!(first["outcome"], "fail", "{report}");

    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let addrs = rt
        .block_on(
            aws.ec2()
                .describe_addresses()
                .filters(
                    t::Filter::builder()
                        .name("tag:fullslack:stack")
                        .values(name)
                        .build(),
                )
                .send(),
        )
        .expect("describe addresses");
    let eip = addrs.addresses()[0]
        .public_ip()
        .expect("the stack's Elastic IP")
        .to_string();

    // The host found is the instance behind the stack's Elastic IP.
    let found = rt
        .block_on(fullslack_aws::hosts::ec2_hosts(&aws, name))
        .expect("hosts");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, "hosts-test-1");
    assert_eq!(found[0].address(), Some(eip.as_str()), "{found:?}");

    // doctor's SSH check now targets it (the address is not reachable from here; the check
    // names it, which is what this test is about).
    let doc = fullslack(&moto, &args, None);
    let report: serde_json::Value = serde_json::from_slice(&doc.stdout).expect("doctor JSON");
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.iter().any(|c| c["name"] == "ec2.hosts"), "{report}");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "ssh.reach" && c["subject"] == format!("{eip}:22")),
        "{report}"
    );
    // lock resolves the same host (--dry-run prints the commands without connecting).
    let dry = fullslack(
        &moto,
        &["lock", "acquire", "--dry-run", "--stack", s(&stack)],
        None,
    );
    ok(&dry);
}

/// `--stack`, `-s` and `FULLSLACK_STACK` mean the same on every command that reads a stack
/// file; `apply PLAN` with FULLSLACK_STACK set (as CI sets it) applies the plan.
#[test]
fn the_stack_file_is_named_the_same_way_on_every_command() {
    let moto = Moto::start(None);
    let dir = common::tempdir();
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
