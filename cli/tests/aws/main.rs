//! `plan`, `apply`, `destroy`, `secrets`, ECR and ECS deploys against a real moto server (one
//! per test, on a free loopback port): the `fullslack` binary does the work, the tests check
//! what exists through the same SDK. One test binary; a module per subject, the shared helpers here.

mod actions_summary;
mod deploy_ecs;
mod ec2;
mod ecr;
mod ecs;
mod errors;
mod hosts;
mod lock;
mod names;
mod plan_table;
mod plan_table_ecs;
mod secrets;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fullslack_aws::{Aws, Kind};
use fullslack_test_support::{moto::Moto, paths::tempdir};

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
    let subnets = two_default_subnets(rt, aws);
    let sg = tasks_security_group(rt, aws, name);
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

/// Two of moto's default subnets, quoted for a TOML array.
fn two_default_subnets(rt: &tokio::runtime::Runtime, aws: &Aws) -> Vec<String> {
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
    subnets
}

/// The id of security group `NAME-tasks` (the stack's tasks' group, which is not the
/// stack's own), made when missing.
fn tasks_security_group(rt: &tokio::runtime::Runtime, aws: &Aws, name: &str) -> String {
    match rt.block_on(
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
    }
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
