//! ECS stacks end to end: plan, apply, no-op, drift, a new image, destroy; the wait for a
//! stable service; a cluster shared with another stack.

use super::*;

#[test]
fn ecs_plan_apply_noop_drift_new_image_destroy() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let dir = tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let cert = acm_certificate(&moto);
    let stack = ecs_stack(dir.path(), &rt, &aws, "ecs-test", 1, "v1", Some(&cert));

    a_certificate_of_another_region_is_refused(&moto, dir.path(), &rt, &aws);
    secrets_first_then_the_plan_shows_everything(&moto, &stack);
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
    applied_as_asked(&rt, &aws);

    // Second plan: no changes.
    let again = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    drift_is_planned_and_reverted(&moto, &stack, &rt, &aws);
    let v2 = ecs_stack(dir.path(), &rt, &aws, "ecs-test", 1, "v2", Some(&cert));
    a_new_image_moves_the_service(&moto, &v2, &rt, &aws);
    destroy_leaves_the_tasks_group(&moto, &v2, &rt, &aws);
}

/// A certificate of another region (or not an ACM ARN) is refused at plan time, before
/// apply could create the redirect listener and fail on the HTTPS one.
fn a_certificate_of_another_region_is_refused(
    moto: &Moto,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
) {
    let wrong = ecs_stack(
        dir,
        rt,
        aws,
        "ecs-test",
        1,
        "v0",
        Some("arn:aws:acm:eu-west-1:123456789012:certificate/abc"),
    );
    let refused = fullslack(moto, &["plan", "--stack", s(&wrong)], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused)
            .contains("ecs.certificate_arn is in region eu-west-1, the stack in us-east-1"),
        "{}",
        text(&refused)
    );
}

/// The secret the task definition references must exist first: the plan says how; with
/// the secrets set, the first plan shows every resource (and no secret value).
fn secrets_first_then_the_plan_shows_everything(moto: &Moto, stack: &Path) {
    let missing = fullslack(moto, &["plan", "--stack", s(stack)], None);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains("fullslack secrets set"),
        "{}",
        text(&missing)
    );
    ok(&fullslack(
        moto,
        &["secrets", "set", "jwt-secret", "--stack", s(stack)],
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
            moto,
            &["secrets", "set", name, "--stack", s(stack)],
            Some(value),
        ));
    }

    let first = fullslack(moto, &["plan", "--stack", s(stack)], None);
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
}

/// What exists after the apply: the task definition, service and target group as asked.
fn applied_as_asked(rt: &tokio::runtime::Runtime, aws: &Aws) {
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
}

/// Drift: the desired count changed out of band is planned back and applied.
fn drift_is_planned_and_reverted(
    moto: &Moto,
    stack: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
) {
    rt.block_on(
        aws.ecs()
            .update_service()
            .cluster("ecs-test-cluster")
            .service("ecs-test")
            .desired_count(3)
            .send(),
    )
    .expect("out-of-band scale");
    let drift = fullslack(moto, &["plan", "--stack", s(stack)], None);
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
        moto,
        &[
            "apply",
            "--stack",
            s(stack),
            "--yes",
            "--wait-timeout",
            "60",
        ],
        None,
    ));
    let clean = fullslack(moto, &["plan", "--stack", s(stack)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

/// A new image (stack file `v2`): a new task definition revision, the service moves to it
/// and is waited for.
fn a_new_image_moves_the_service(moto: &Moto, v2: &Path, rt: &tokio::runtime::Runtime, aws: &Aws) {
    let p = fullslack(moto, &["plan", "--stack", s(v2)], None);
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    assert!(text(&p).contains("image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-test/chat:v1 → 123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-test/chat:v2"), "{}", text(&p));
    assert!(text(&p).contains("~ ecs_service ecs-test"), "{}", text(&p));
    let up = ok(&fullslack(
        moto,
        &["apply", "--stack", s(v2), "--yes", "--wait-timeout", "60"],
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
    let clean = fullslack(moto, &["plan", "--stack", s(v2)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

/// Destroy: everything of the stack goes; the tasks' security group (not ours) stays.
fn destroy_leaves_the_tasks_group(moto: &Moto, v2: &Path, rt: &tokio::runtime::Runtime, aws: &Aws) {
    let gone = ok(&fullslack(
        moto,
        &["destroy", "--stack", s(v2), "--yes", "--wait-timeout", "60"],
        None,
    ));
    assert!(gone.contains("deleted ECS service ecs-test"), "{gone}");
    let after = rt
        .block_on(fullslack_aws::read_actual(
            aws,
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
    let dir = tempdir();
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
fn a_shared_ecs_cluster_is_used_but_never_deleted_under_another_stacks_service() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let dir = tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let a = stack_in_cluster(&moto, dir.path(), &rt, &aws, "ecs-a", None);
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
    let b = stack_in_cluster(
        &moto,
        dir.path(),
        &rt,
        &aws,
        "ecs-b",
        Some("fullslack-ecs-a"),
    );
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

/// An ECS stack `name` (in its own directory under `dir`, its secrets set) that runs in
/// `cluster`, or in the default cluster name when `None` (no `cluster` line).
fn stack_in_cluster(
    moto: &Moto,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    name: &str,
    cluster: Option<&str>,
) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let p = ecs_stack(&d, rt, aws, name, 1, "v1", None);
    let t = std::fs::read_to_string(&p).unwrap();
    let line = format!("cluster = \"{name}-cluster\"\n");
    let t = match cluster {
        Some(c) => t.replace(&line, &format!("cluster = \"{c}\"\n")),
        None => t.replace(&line, ""),
    };
    std::fs::write(&p, t).unwrap();
    for secret in ["jwt-secret", "redis-url", "mongodb-url"] {
        ok(&fullslack(
            moto,
            &["secrets", "set", secret, "--stack", s(&p)],
            Some("x-secret-value"),
        ));
    }
    p
}
