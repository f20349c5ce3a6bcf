//! `fullslack deploy`, `rollback`, `releases` and `status` of an ECS stack against moto, with
//! the image in a real registry (Debian's `docker-registry` on loopback, htpasswd auth; moto's
//! ECR has no registry behind it to push to): the deploy pushes the image, registers a task
//! definition revision, moves the service and writes the audit line; the next version
//! registers the next revision; infrastructure that is missing (the cluster) is refused
//! without `--yes` and nothing is pushed or created; a service that never settles fails the
//! deploy (exit 1) and the audit line says so.

use super::*;
use fullslack_test_support::registry::{start_registry, Registry};

const PW_ENV: &str = "ECS_TEST_REGISTRY_PW";

/// A FROM-scratch image `reference` whose one file says `version` (so each version has its
/// own digest); removed again by [`Images`] on drop.
fn build_image(dir: &Path, reference: &str, version: &str) {
    let ctx = dir.join(format!("ctx-{version}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("version"), format!("{reference} {version}\n")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY version /version\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", reference])
        .arg(&ctx)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("run docker build");
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Local images the test made, removed whatever happened.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

/// The revision (`family:N`) the service runs.
fn service_revision(rt: &tokio::runtime::Runtime, aws: &Aws, cluster: &str, name: &str) -> String {
    let svc = rt
        .block_on(
            aws.ecs()
                .describe_services()
                .cluster(cluster)
                .services(name)
                .send(),
        )
        .expect("service");
    let arn = svc.services()[0].task_definition().unwrap().to_string();
    arn.rsplit('/').next().unwrap().to_string()
}

fn audit_lines(stack: &Path, name: &str) -> Vec<serde_json::Value> {
    let path = stack
        .parent()
        .unwrap()
        .join(".fullslack")
        .join(name)
        .join("audit.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per audit line"))
        .collect()
}

/// Points the ECS stack at the loopback registry (the stack's user name and password, the
/// password from `PW_ENV`) and stores the secrets its task definition names.
fn use_registry(moto: &Moto, stack: &Path, reg: &Registry) {
    let t = std::fs::read_to_string(stack).unwrap().replace(
        "registry = \"ecr\"\n",
        &format!(
            "registry = \"{}\"\nusername = \"deployer\"\npassword = {{ env = \"{PW_ENV}\" }}\n",
            reg.addr
        ),
    );
    std::fs::write(stack, t).unwrap();
    for secret in ["jwt-secret", "redis-url", "mongodb-url"] {
        ok(&fullslack(
            moto,
            &["secrets", "set", secret, "--stack", s(stack)],
            Some("x-secret-value"),
        ));
    }
}

#[test]
fn an_ecs_deploy_pushes_registers_a_revision_moves_the_service_and_audits() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let reg = start_registry(Some(("deployer", "ecs registry pass 42")));
    let (_, pass) = reg.credentials.clone().unwrap();
    let dir = tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let name = "ecs-dep";
    let stack = ecs_stack(dir.path(), &rt, &aws, name, 1, "v1", None);
    use_registry(&moto, &stack, &reg);
    let repo = format!("{}/{name}/chat", reg.addr);
    let path = format!("{name}/chat");
    let images = Images(vec![format!("{repo}:v1"), format!("{repo}:v2")]);
    build_image(dir.path(), &images.0[0], "v1");
    build_image(dir.path(), &images.0[1], "v2");
    let env = [(PW_ENV, pass.as_str())];
    let cluster = format!("{name}-cluster");

    // No cluster yet: infrastructure, refused without --yes; nothing pushed or created.
    let refused = fullslack_env(
        &moto,
        &["deploy", "--stack", s(&stack), "--version", "v1"],
        &env,
    );
    // 64: a usage error (EX_USAGE), as every refused command line.
    assert_eq!(refused.status.code(), Some(64), "{}", text(&refused));
    let t = text(&refused);
    assert!(
        t.contains("the deploy of stack `ecs-dep` needs infrastructure changes first: create security_group ecs-dep-alb"),
        "{t}"
    );
    assert!(t.contains("create ecs_cluster ecs-dep-cluster"), "{t}");
    assert!(t.contains("--yes"), "{t}");
    assert_eq!(reg.digest(&path, "v1"), None);
    let clusters = rt
        .block_on(aws.ecs().describe_clusters().clusters(&cluster).send())
        .expect("describe clusters");
    assert!(
        clusters
            .clusters()
            .iter()
            .all(|c| c.status() != Some("ACTIVE")),
        "{clusters:?}"
    );

    // With --yes: the infrastructure, the push, revision 1, the service on it.
    let first = ok(&fullslack_env(
        &moto,
        &[
            "deploy",
            "--stack",
            s(&stack),
            "--version",
            "v1",
            "--yes",
            "--wait-timeout",
            "60",
        ],
        &env,
    ));
    let d1 = reg.digest(&path, "v1").expect("v1 pushed");
    assert!(first.contains(&format!("pushed {repo}:v1@{d1}")), "{first}");
    assert!(
        first.contains("+ ecs_cluster ecs-dep-cluster: create"),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "ecs:{cluster}/{name}: v1 live on task definition {name}:1 (was nothing)"
        )),
        "{first}"
    );
    assert!(!first.contains(&pass), "the registry password was printed");
    assert_eq!(
        service_revision(&rt, &aws, &cluster, name),
        format!("{name}:1")
    );

    // v2: no infrastructure change, so no --yes needed; the next revision, in --json.
    let second = fullslack_env(
        &moto,
        &[
            "--json",
            "deploy",
            "--stack",
            s(&stack),
            "--version",
            "v2",
            "--wait-timeout",
            "60",
        ],
        &env,
    );
    let out = ok(&second);
    let doc: serde_json::Value = serde_json::from_slice(&second.stdout).expect("one JSON document");
    let d2 = reg.digest(&path, "v2").expect("v2 pushed");
    assert_eq!(doc["action"], "deploy", "{out}");
    assert_eq!(doc["image"]["result"], "pushed", "{out}");
    assert_eq!(doc["image"]["digest"], d2.as_str(), "{out}");
    assert_eq!(doc["infrastructure_changes"], 0, "{out}");
    let host = &doc["hosts"][0];
    assert_eq!(host["version"], "v2", "{out}");
    assert_eq!(host["from_version"], "v1", "{out}");
    assert_eq!(host["task_definition"], format!("{name}:2"), "{out}");
    assert_eq!(host["from_task_definition"], format!("{name}:1"), "{out}");
    assert_eq!(
        service_revision(&rt, &aws, &cluster, name),
        format!("{name}:2")
    );
    let td = rt
        .block_on(
            aws.ecs()
                .describe_task_definition()
                .task_definition(format!("{name}:2"))
                .send(),
        )
        .expect("revision 2");
    assert_eq!(
        td.task_definition().unwrap().container_definitions()[0].image(),
        Some(format!("{repo}:v2").as_str())
    );

    // v2 again: the registry has it at this digest (not pushed), no new revision.
    let again = ok(&fullslack_env(
        &moto,
        &[
            "deploy",
            "--stack",
            s(&stack),
            "--version",
            "v2",
            "--wait-timeout",
            "60",
        ],
        &env,
    ));
    assert!(
        again.contains(&format!(
            "{repo}:v2@{d2} already in the registry: not pushed"
        )),
        "{again}"
    );
    assert!(
        again.contains("v2 live on task definition ecs-dep:2 (was v2, ecs-dep:2)"),
        "{again}"
    );

    // releases and status read the revisions and the service.
    let rel = ok(&fullslack_env(
        &moto,
        &["releases", "--stack", s(&stack)],
        &env,
    ));
    assert!(rel.contains(&format!("ecs:{cluster}/{name}:")), "{rel}");
    assert!(rel.contains("live  v2"), "{rel}");
    assert!(rel.contains("kept  v1"), "{rel}");
    let st = ok(&fullslack_env(
        &moto,
        &["status", "--stack", s(&stack)],
        &env,
    ));
    assert!(
        st.contains("v2 live on ecs-dep:2, 1 of 1 task(s) running"),
        "{st}"
    );

    // rollback: the service back on revision 1.
    let back = ok(&fullslack_env(
        &moto,
        &["rollback", "--stack", s(&stack)],
        &env,
    ));
    assert!(
        back.contains(&format!(
            "ecs:{cluster}/{name}: v1 live on task definition {name}:1 (was v2, {name}:2)"
        )),
        "{back}"
    );
    assert_eq!(
        service_revision(&rt, &aws, &cluster, name),
        format!("{name}:1")
    );
    let none_older = fullslack_env(&moto, &["rollback", "--stack", s(&stack)], &env);
    assert_eq!(none_older.status.code(), Some(64), "{}", text(&none_older));
    assert!(
        text(&none_older).contains("no revision of ecs-dep is older than the live one (ecs-dep:1)"),
        "{}",
        text(&none_older)
    );

    // The audit: every run that took the lock, with its result.
    let audit = audit_lines(&stack, name);
    let summary: Vec<(String, String, String, Option<String>)> = audit
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["version"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
                e["from_version"].as_str().map(str::to_string),
            )
        })
        .collect();
    let row = |a: &str, v: &str, r: &str, f: Option<&str>| {
        (
            a.to_string(),
            v.to_string(),
            r.to_string(),
            f.map(str::to_string),
        )
    };
    assert_eq!(
        summary,
        [
            row("deploy", "v1", "failed", None),
            row("deploy", "v1", "ok", None),
            row("deploy", "v2", "ok", Some("v1")),
            row("deploy", "v2", "ok", Some("v2")),
            row("rollback", "v1", "ok", Some("v2")),
        ],
        "{audit:#?}"
    );
    assert!(audit
        .iter()
        .all(|e| e["host"] == format!("ecs:{cluster}/{name}").as_str()));
    assert!(audit[0]["error"]
        .as_str()
        .unwrap()
        .contains("needs infrastructure changes first"));
    drop(images);
}

/// A deploy whose service never becomes stable (moto runs one task; the stack wants two):
/// exit 1 with the timeout, and the audit line says `failed` with the error.
#[test]
fn an_ecs_deploy_that_never_settles_fails_with_exit_1_and_a_failed_audit_line() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let reg = start_registry(Some(("deployer", "ecs registry pass 43")));
    let (_, pass) = reg.credentials.clone().unwrap();
    let dir = tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let name = "ecs-slowdep";
    let stack = ecs_stack(dir.path(), &rt, &aws, name, 2, "v1", None);
    use_registry(&moto, &stack, &reg);
    let images = Images(vec![format!("{}/{name}/chat:v1", reg.addr)]);
    build_image(dir.path(), &images.0[0], "v1");
    let out = fullslack_env(
        &moto,
        &[
            "deploy",
            "--stack",
            s(&stack),
            "--version",
            "v1",
            "--yes",
            "--wait-timeout",
            "2",
        ],
        &[(PW_ENV, pass.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("ECS service ecs-slowdep becoming stable did not finish within 2 s"),
        "{t}"
    );
    let audit = audit_lines(&stack, name);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["result"], "failed", "{audit:#?}");
    assert_eq!(audit[0]["version"], "v1", "{audit:#?}");
    assert!(
        audit[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{audit:#?}"
    );
    drop(images);
}
