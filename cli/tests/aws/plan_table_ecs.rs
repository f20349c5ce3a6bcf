//! The table of planned changes for an ECS stack (cluster, task definition, service, ALB,
//! target group, listeners, security groups, ECR repository): every attribute changed one at a
//! time, in the stack file or behind the stack's back, is planned, applied, and leaves an empty
//! plan. What moto or AWS cannot change, and what apply cannot carry out yet, is listed as
//! excluded with the reason; the test fails on an attribute that is neither.

use super::plan_table::{change, compared_attrs, run_case, Case};
use super::*;

/// (kind, attribute) pairs no case changes, and why.
const EXCLUDED: &[(&str, &str, &str)] = &[
    ("ecs_cluster", "status", "only an ACTIVE cluster is read back: any other status reads as no cluster (a create), never as a changed attribute"),
    ("ecs_service", "cluster", "the cluster the stack names is also where the service is looked up: another name reads as a new cluster and service"),
    ("ecs_service", "launch_type", "always FARGATE; ECS cannot change a service's launch type"),
    ("ecs_service", "target_group", "always the stack's own target group; nothing in the stack names another"),
    ("ecs_service", "circuit_breaker", "moto does not store deploymentConfiguration, so it is never read back (the ECS end-to-end test checks it in the plan)"),
    ("task_definition", "log_group", "named after the stack; no setting of the stack changes it"),
    ("target_group", "protocol", "always HTTP; AWS cannot change an existing target group's protocol"),
    ("target_group", "target_type", "always ip; AWS cannot change an existing target group's target type"),
    ("target_group", "vpc", "follows the subnets' VPC, and so does the load balancer, which has no in-place move to another VPC (SetSubnets takes subnets of its own VPC only) and no compared vpc attribute to plan its replacement by"),
    ("security_group", "vpc", "follows the subnets' VPC: see target_group.vpc"),
    ("load_balancer", "scheme", "always internet-facing; AWS cannot change a load balancer's scheme"),
    ("listener", "port", "a listener's name is its protocol and port: another port is another listener"),
    ("listener", "protocol", "a listener's name is its protocol and port: another protocol is another listener"),
];

/// The stack's resource of `kind` named `name`, as read now.
fn resource(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    stack: &str,
    kind: Kind,
    name: &str,
) -> fullslack_aws::Resource {
    let lookup = fullslack_aws::Lookup {
        ecr_repository: Some(format!("{stack}/chat")),
        cluster: Some(format!("{stack}-cluster")),
    };
    rt.block_on(fullslack_aws::read_actual(aws, stack, "ecs", &lookup))
        .expect("read actual")
        .into_iter()
        .find(|r| r.kind == kind && r.name == name)
        .unwrap_or_else(|| panic!("no {} {name}", kind.as_str()))
}

/// Every attribute of an ECS stack's resources, changed one at a time: see the module doc.
#[test]
fn every_planned_ecs_change_applies_and_the_next_plan_is_empty() {
    let moto = Moto::start(Some(1));
    moto.env_here();
    let dir = tempdir();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let name = "tab";
    let cert = acm_certificate(&moto);
    let stack = ecs_stack(dir.path(), &rt, &aws, name, 1, "v1", Some(&cert));
    for (secret, value) in [
        ("jwt-secret", "jwt-value-0123456789abcdef0123456789"),
        ("jwt-secret-2", "jwt-value-2-0123456789abcdef012345678"),
        ("redis-url", "redis://redis.internal:6379"),
        ("mongodb-url", "mongodb://mongo.internal/chat"),
    ] {
        ok(&fullslack(
            &moto,
            &["secrets", "set", secret, "--stack", s(&stack)],
            Some(value),
        ));
    }
    let plan_path = dir.path().join("first.json");
    let first = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--out", s(&plan_path)],
        None,
    );
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    let all = compared_attrs(&first);
    ok(&fullslack(
        &moto,
        &["apply", s(&plan_path), "--wait-timeout", "60"],
        None,
    ));

    let second_cert = acm_certificate(&moto);
    assert_ne!(second_cert, cert);
    let env = EcsEnv {
        ec2: aws.ec2(),
        elb: aws.elb(),
        rt,
        aws,
        name,
        cert,
        second_cert,
    };

    let mut text_now = std::fs::read_to_string(&stack).unwrap();
    let cases = ecs_cases(&env);

    let mut covered: Vec<(String, String)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        run_case(
            &moto,
            dir.path(),
            &stack,
            &mut text_now,
            i,
            case,
            &mut covered,
        );
    }
    let excluded: Vec<(String, String)> = EXCLUDED
        .iter()
        .map(|(k, a, _)| ((*k).to_string(), (*a).to_string()))
        .collect();
    let stale: Vec<_> = excluded.iter().filter(|e| !all.contains(e)).collect();
    assert!(stale.is_empty(), "excluded but not an attribute: {stale:?}");
    let missing: Vec<_> = all
        .iter()
        .filter(|a| !covered.contains(a) && !excluded.contains(a))
        .collect();
    assert!(
        missing.is_empty(),
        "attributes no case changes and none excluded: {missing:?}"
    );
}

/// What the ECS cases act on: the runtime, the AWS clients, the stack's name, and two ACM
/// certificates to move the HTTPS listener between.
struct EcsEnv {
    rt: tokio::runtime::Runtime,
    aws: Aws,
    ec2: fullslack_aws::sdk::ec2::Client,
    elb: fullslack_aws::sdk::elbv2::Client,
    name: &'static str,
    cert: String,
    second_cert: String,
}

impl EcsEnv {
    /// The stack's resource of `kind` named `n`, as read now.
    fn now(&self, kind: Kind, n: &str) -> fullslack_aws::Resource {
        resource(&self.rt, &self.aws, self.name, kind, n)
    }

    /// A security group of someone else's, named `group`, in the load balancer's VPC.
    fn hand_made_group(&self, group: &str) -> String {
        let vpc = self
            .now(Kind::SecurityGroup, "tab-alb")
            .text("vpc")
            .to_string();
        self.rt
            .block_on(
                self.ec2
                    .create_security_group()
                    .group_name(group)
                    .description("not ours")
                    .vpc_id(vpc)
                    .send(),
            )
            .expect("hand-made group")
            .group_id()
            .unwrap()
            .to_string()
    }
}

/// The table: every attribute of the ECS stack's resources that a case changes, one row
/// each (in the stack file, or behind the stack's back in AWS).
fn ecs_cases(env: &EcsEnv) -> Vec<Case<'_>> {
    use fullslack_aws::sdk::ec2::types as t;
    vec![
        (
            "new image tag: a new revision, the service follows",
            vec![("task_definition", "image"), ("ecs_service", "task_definition")],
            vec!["~ task_definition tab", "/tab/chat:v1 → ", "~ ecs_service tab"],
            change(move |t: &mut String| *t = t.replace("tag = \"v1\"", "tag = \"v2\"")),
        ),
        (
            "cpu and memory: a new revision",
            vec![("task_definition", "cpu"), ("task_definition", "memory")],
            vec!["cpu: 1024 → 512", "memory: 2048 → 1024"],
            change(move |t: &mut String| {
                *t = t.replace("cpu = 1024\nmemory = 2048", "cpu = 512\nmemory = 1024");
            }),
        ),
        (
            "environment: a new revision",
            vec![("task_definition", "env")],
            vec!["env: - RUST_LOG=info", "env: + RUST_LOG=debug"],
            change(move |t: &mut String| *t = t.replace("RUST_LOG = \"info\"", "RUST_LOG = \"debug\"")),
        ),
        (
            "execution role: a new revision",
            vec![("task_definition", "execution_role")],
            vec!["execution_role: arn:aws:iam::123456789012:role/ecsTaskExecutionRole → arn:aws:iam::123456789012:role/fullslackTasks"],
            change(move |t: &mut String| *t = t.replace("role/ecsTaskExecutionRole", "role/fullslackTasks")),
        ),
        (
            "a secret read from another parameter: a new revision",
            vec![("task_definition", "secrets")],
            vec!["secrets: + FULLSLACK_AUTH__JWT_SECRET from arn:aws:ssm:us-east-1:123456789012:parameter/tab/jwt-secret-2"],
            change(move |t: &mut String| *t = t.replace("\"/tab/jwt-secret\"", "\"/tab/jwt-secret-2\"")),
        ),
        (
            "the load balancer's group opened by hand: the rule revoked",
            vec![("security_group", "ingress")],
            vec![
                "~ security_group tab-alb",
                "ingress: - tcp/8443 from 10.0.0.0/8   (not in the stack: drift)",
            ],
            change(move |_: &mut String| {
                let sg = env.now(Kind::SecurityGroup, "tab-alb");
                let rule = t::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(8443)
                    .to_port(8443)
                    .ip_ranges(t::IpRange::builder().cidr_ip("10.0.0.0/8").build())
                    .build();
                env.rt.block_on(
                    env.ec2.authorize_security_group_ingress()
                        .group_id(sg.id.unwrap())
                        .ip_permissions(rule)
                        .send(),
                )
                .expect("out-of-band rule");
            }),
        ),
        (
            "health check edited by hand: set back in place",
            vec![("target_group", "health_path"), ("target_group", "matcher")],
            vec![
                "~ target_group tab",
                "health_path: /healthz → /readyz",
                "matcher: 200-299 → 200",
            ],
            change(move |_: &mut String| {
                env.rt.block_on(
                    env.elb.modify_target_group()
                        .target_group_arn(env.now(Kind::TargetGroup, env.name).id.unwrap())
                        .health_check_path("/healthz")
                        .matcher(
                            fullslack_aws::sdk::elbv2::types::Matcher::builder()
                                .http_code("200-299")
                                .build(),
                        )
                        .send(),
                )
                .expect("out-of-band health check");
            }),
        ),
        (
            "the load balancer's groups edited by hand: set back in place",
            vec![("load_balancer", "security_groups")],
            vec!["~ load_balancer tab", "security_groups: - sg-"],
            change(move |_: &mut String| {
                let alb_sg = env.now(Kind::SecurityGroup, "tab-alb").id.unwrap();
                env.rt.block_on(
                    env.elb.set_security_groups()
                        .load_balancer_arn(env.now(Kind::LoadBalancer, env.name).id.unwrap())
                        .security_groups(alb_sg)
                        .security_groups(env.hand_made_group("hand-made-alb"))
                        .send(),
                )
                .expect("out-of-band load balancer groups");
            }),
        ),
        (
            "service scaled by hand: set back in place",
            vec![("ecs_service", "desired_count")],
            vec!["~ ecs_service tab", "desired_count: 3 → 1"],
            change(move |_: &mut String| {
                env.rt.block_on(
                    env.aws.ecs()
                        .update_service()
                        .cluster("tab-cluster")
                        .service(env.name)
                        .desired_count(3)
                        .send(),
                )
                .expect("out-of-band scale");
            }),
        ),
        (
            "service's network edited by hand: set back in place",
            vec![("ecs_service", "subnets"), ("ecs_service", "security_groups")],
            vec!["~ ecs_service tab", "subnets: - ", "security_groups: + group:tab-tasks"],
            change(move |_: &mut String| {
                use fullslack_aws::sdk::ecs::types as e;
                let svc = env.now(Kind::EcsService, env.name);
                let subnet = svc.list("subnets").remove(0);
                let other = env.rt
                    .block_on(
                        env.ec2.describe_subnets()
                            .filters(t::Filter::builder().name("default-for-az").values("true").build())
                            .send(),
                    )
                    .unwrap()
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_id())
                    .find(|s| !svc.list("subnets").iter().any(|x| x == s))
                    .unwrap()
                    .to_string();
                let net = e::NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        e::AwsVpcConfiguration::builder()
                            .subnets(subnet)
                            .subnets(other)
                            .security_groups(env.hand_made_group("hand-made-tasks"))
                            .build()
                            .unwrap(),
                    )
                    .build();
                env.rt.block_on(
                    env.aws.ecs()
                        .update_service()
                        .cluster("tab-cluster")
                        .service(env.name)
                        .network_configuration(net)
                        .send(),
                )
                .expect("out-of-band network");
            }),
        ),
        (
            "another certificate: the HTTPS listener changed in place",
            vec![("listener", "certificate")],
            vec!["~ listener https-443", "certificate: "],
            change(move |t: &mut String| *t = t.replace(&env.cert, &env.second_cert)),
        ),
        (
            "no certificate: HTTP forwards, the HTTPS listener goes",
            vec![("listener", "action")],
            vec![
                "~ listener http-80",
                "action: redirect to https → forward to tab",
                "- listener https-443",
            ],
            change(move |t: &mut String| {
                *t = t
                    .replace(&format!("certificate_arn = \"{}\"\n", env.second_cert), "")
                    .replace("enabled = true", "enabled = false");
            }),
        ),
        (
            "another subnet: the load balancer and the service move in place",
            vec![("load_balancer", "subnets"), ("ecs_service", "subnets")],
            vec!["~ load_balancer tab", "~ ecs_service tab", "subnets: + "],
            change(move |t: &mut String| {
                let lb = env.now(Kind::LoadBalancer, env.name).list("subnets");
                let other = env.rt
                    .block_on(
                        env.ec2.describe_subnets()
                            .filters(t::Filter::builder().name("default-for-az").values("true").build())
                            .send(),
                    )
                    .unwrap()
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_id())
                    .find(|s| !lb.iter().any(|x| x == s))
                    .unwrap()
                    .to_string();
                *t = t.replace(&format!("\"{}\"", lb[1]), &format!("\"{other}\""));
            }),
        ),
        (
            "another app port: a new revision, the target group replaced before the old one goes",
            vec![
                ("target_group", "port"),
                ("task_definition", "port"),
                ("task_definition", "health_check"),
            ],
            vec![
                "-/+ target_group tab",
                "port: 8080 → 9090   (forces replacement",
                "create before destroy",
                "~ task_definition tab",
                "~ security_group tab-tasks",
                "~ ecs_service tab",
            ],
            change(move |t: &mut String| {
                *t = t.replace("[app]\n", "[app]\nport = 9090\n");
            }),
        ),
        (
            "ECR tags made immutable by hand: mutable again",
            vec![("ecr_repository", "tag_mutability")],
            vec!["~ ecr_repository tab/chat", "tag_mutability: IMMUTABLE → MUTABLE"],
            change(move |_: &mut String| {
                env.rt.block_on(
                    env.aws.ecr()
                        .put_image_tag_mutability()
                        .repository_name("tab/chat")
                        .image_tag_mutability(
                            fullslack_aws::sdk::ecr::types::ImageTagMutability::Immutable,
                        )
                        .send(),
                )
                .expect("out-of-band mutability");
            }),
        ),
    ]
}
