//! ECS Fargate stacks: a cluster, security groups of their own for the ALB (web from
//! anywhere) and the tasks (the app port from the ALB only), a task definition family (image, port, health check, awslogs,
//! secrets from SSM by ARN), an ALB with a target group checking `/readyz` and listeners on 80
//! (and 443 with a certificate), and a Fargate service with a desired count and the deployment
//! circuit breaker with rollback. A changed task definition registers a new revision, points
//! the service at it and waits until the service is stable, within a timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ClusterField, Compatibility, ContainerDefinition,
    DeploymentCircuitBreaker, DeploymentConfiguration, HealthCheck, KeyValuePair, LaunchType,
    LoadBalancer as EcsLoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration,
    NetworkMode, PortMapping, Secret as EcsSecret, ServiceField, TaskDefinitionField,
    TransportProtocol,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action as LbAction, ActionTypeEnum, Certificate, Matcher, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum, Tag as LbTag, TargetTypeEnum,
};

use crate::ec2::{resolve_groups, sha256_hex, Ids};
use crate::error::SdkResultExt;
use crate::plan::{Action, Change, Kind, Resource, Unchanged, Value};
use crate::spec::{EcsSpec, StackSpec};
use crate::{Aws, AwsError, Lookup, TAG_RESOURCE, TAG_STACK};

/// The container's name inside the task definition.
pub const CONTAINER: &str = "chat";

/// ALB and target group names: at most 32 characters, letters, digits and hyphens.
pub fn lb_name(stack: &str) -> String {
    let mut n = format!("fs-{stack}");
    n.truncate(32);
    n.trim_end_matches('-').to_string()
}

fn bad_build(e: impl std::fmt::Display) -> AwsError {
    AwsError::invalid(
        format!("cannot build an ECS request: {e}"),
        "report this bug with the stack file",
    )
}

/// What a task definition consists of, as compared.
struct TaskInputs<'a> {
    image: &'a str,
    cpu: &'a str,
    memory: &'a str,
    port: i32,
    env: &'a BTreeMap<String, String>,
    secrets: &'a BTreeMap<String, String>,
    health: &'a str,
    execution_role: &'a str,
    log_group: &'a str,
}

/// Attributes of a task definition, computed the same way from the stack and from AWS so that
/// they compare.
fn task_attrs(t: &TaskInputs<'_>) -> BTreeMap<String, Value> {
    let mut a = BTreeMap::new();
    a.insert("image".into(), Value::from(t.image));
    a.insert("cpu".into(), Value::from(t.cpu));
    a.insert("memory".into(), Value::from(t.memory));
    a.insert("port".into(), Value::One(t.port.to_string()));
    a.insert(
        "env".into(),
        Value::set(t.env.iter().map(|(k, v)| format!("{k}={v}"))),
    );
    a.insert(
        "secrets".into(),
        Value::set(t.secrets.iter().map(|(k, v)| format!("{k} from {v}"))),
    );
    a.insert("health_check".into(), Value::from(t.health));
    a.insert("execution_role".into(), Value::from(t.execution_role));
    a.insert("log_group".into(), Value::from(t.log_group));
    a
}

fn fingerprint(attrs: &BTreeMap<String, Value>) -> String {
    let json = serde_json::to_string(attrs).unwrap_or_default();
    sha256_hex(json.as_bytes())[..16].to_string()
}

/// The container health check: chat images are FROM scratch (no shell, no curl) and carry
/// `fullslack-healthcheck`, which probes `/healthz` on the given address. The ALB's target
/// group checks readiness (`/readyz`) separately.
pub const HEALTHCHECK_BIN: &str = "/usr/local/bin/fullslack-healthcheck";

fn health_command(port: u16) -> String {
    format!("{HEALTHCHECK_BIN} 127.0.0.1:{port}")
}

async fn account_id(aws: &Aws) -> Result<String, AwsError> {
    let out = aws
        .sts()
        .get_caller_identity()
        .send()
        .await
        .ctx("sts:GetCallerIdentity")?;
    Ok(out.account().unwrap_or_default().to_string())
}

/// The resources an ECS stack wants.
pub(crate) async fn desired(
    aws: &Aws,
    spec: &StackSpec,
    e: &EcsSpec,
    notes: &mut Vec<String>,
) -> Result<Vec<Resource>, AwsError> {
    let stack = spec.name.as_str();
    if let Some(cert) = &e.certificate_arn {
        check_certificate_arn(cert, &aws.region)?;
        notes.push(format!(
            "certificate {cert}: its ARN's form and region are checked; whether it is issued is not (fullslack does not call ACM)"
        ));
    }
    if e.subnets.is_empty() {
        return Err(AwsError::invalid(
            "an ECS stack needs subnets",
            "list at least two subnets in different availability zones in ecs.subnets",
        ));
    }
    if !e.secrets.is_empty() && e.execution_role_arn.is_none() {
        return Err(AwsError::invalid(
            "tasks read secrets from SSM, which needs a task execution role",
            "set ecs.execution_role_arn to a role with AmazonECSTaskExecutionRolePolicy and ssm:GetParameters on the stack's parameters",
        ));
    }
    let vpc =
        crate::ec2::vpc_of_subnet(aws, &e.subnets[0], "check ecs.subnets and the region").await?;
    let image = match &spec.ecr_repository {
        Some(repo) => format!(
            "{}.dkr.ecr.{}.amazonaws.com/{repo}:{}",
            account_id(aws).await?,
            aws.region,
            e.tag
        ),
        None => format!("{}:{}", e.image, e.tag),
    };
    let names: Vec<String> = e.secrets.values().cloned().collect();
    let arns = crate::ssm::arns(aws, &names).await?;
    let secrets: BTreeMap<String, String> = e
        .secrets
        .iter()
        .map(|(k, p)| (k.clone(), arns.get(p).cloned().unwrap_or_else(|| p.clone())))
        .collect();
    let log_group = format!("/fullslack/{stack}");
    // The ALB's nodes take their addresses from these subnets: the chat server trusts their
    // X-Forwarded-For (and nobody else's), so each client gets its own sign-in budget.
    let mut env = e.env.clone();
    if !env.contains_key("FULLSLACK_TRUSTED_PROXIES") {
        env.insert(
            "FULLSLACK_TRUSTED_PROXIES".into(),
            subnet_cidrs(aws, &e.subnets).await?.join(","),
        );
    }
    let td_attrs = task_attrs(&TaskInputs {
        image: &image,
        cpu: &e.cpu.to_string(),
        memory: &e.memory.to_string(),
        port: e.port.into(),
        env: &env,
        secrets: &secrets,
        health: &health_command(e.port),
        execution_role: e.execution_role_arn.as_deref().unwrap_or(""),
        log_group: &log_group,
    });
    let td_print = fingerprint(&td_attrs);
    let mut td = Resource::new(Kind::TaskDefinition, stack);
    td.attrs = td_attrs;

    let mut out = Vec::new();
    match cluster_owner(aws, &e.cluster).await? {
        // Another stack's cluster, or one made by hand: used, never changed or deleted.
        Some(owner) if owner.as_deref() != Some(stack) => notes.push(format!(
            "ECS cluster {} exists and {}: the service runs in it; this stack never changes or deletes it",
            e.cluster,
            match owner {
                Some(o) => format!("belongs to stack `{o}`"),
                None => "is not a fullslack stack's".to_string(),
            }
        )),
        _ => out.push(Resource::new(Kind::EcsCluster, e.cluster.as_str()).attr("status", "ACTIVE")),
    }
    out.push(td);
    // The load balancer and the tasks get groups of their own: the ALB takes web traffic from
    // anywhere, the tasks take the app port from the ALB only (plus the stack's own groups).
    let alb_sg = format!("{stack}-alb");
    let tasks_sg = format!("{stack}-tasks");
    out.push(
        Resource::new(Kind::SecurityGroup, alb_sg.as_str())
            .attr("vpc", vpc.as_str())
            .attr(
                "ingress",
                Value::set(["tcp/80 from 0.0.0.0/0", "tcp/443 from 0.0.0.0/0"]),
            )
            .extra("group_name", format!("fullslack-{alb_sg}"))
            .extra(
                "description",
                format!("fullslack stack {stack}: load balancer, web from anywhere"),
            ),
    );
    out.push(
        Resource::new(Kind::SecurityGroup, tasks_sg.as_str())
            .attr("vpc", vpc.as_str())
            .attr(
                "ingress",
                Value::set([format!("tcp/{} from group:{alb_sg}", e.port)]),
            )
            .extra("group_name", format!("fullslack-{tasks_sg}"))
            .extra(
                "description",
                format!("fullslack stack {stack}: tasks, the app port from the load balancer"),
            ),
    );
    let task_groups = Value::set(
        e.security_groups
            .iter()
            .cloned()
            .chain([format!("group:{tasks_sg}")]),
    );
    out.push(
        Resource::new(Kind::TargetGroup, stack)
            .attr("port", e.port.to_string())
            .attr("protocol", "HTTP")
            .attr("target_type", "ip")
            .attr("vpc", vpc.as_str())
            .attr("health_path", e.health_path.as_str())
            .attr("matcher", "200")
            .extra("aws_name", lb_name(stack)),
    );
    out.push(
        Resource::new(Kind::LoadBalancer, stack)
            .attr("scheme", "internet-facing")
            .attr("subnets", Value::set(e.subnets.iter().cloned()))
            .attr("security_groups", Value::set([format!("group:{alb_sg}")]))
            .extra("aws_name", lb_name(stack)),
    );
    let http_action = if e.certificate_arn.is_some() {
        "redirect to https".to_string()
    } else {
        format!("forward to {stack}")
    };
    out.push(
        Resource::new(Kind::Listener, "http-80")
            .attr("port", "80")
            .attr("protocol", "HTTP")
            .attr("action", http_action)
            .extra("load_balancer", stack)
            .extra("target_group", stack),
    );
    if let Some(cert) = &e.certificate_arn {
        out.push(
            Resource::new(Kind::Listener, "https-443")
                .attr("port", "443")
                .attr("protocol", "HTTPS")
                .attr("action", format!("forward to {stack}"))
                .attr("certificate", cert.as_str())
                .extra("load_balancer", stack)
                .extra("target_group", stack),
        );
    }
    out.push(
        Resource::new(Kind::EcsService, stack)
            .attr("cluster", e.cluster.as_str())
            .attr("launch_type", "FARGATE")
            .attr("desired_count", e.desired_count.to_string())
            .attr("task_definition", format!("{stack}@{td_print}"))
            .attr("subnets", Value::set(e.subnets.iter().cloned()))
            .attr("security_groups", task_groups)
            .attr("target_group", stack)
            .attr("circuit_breaker", "enabled, rollback")
            .extra("cpu", e.cpu.to_string())
            .extra("memory", e.memory.to_string())
            .extra("port", e.port.to_string()),
    );
    Ok(out)
}

/// `arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`, in the stack's region (an ALB only
/// takes certificates of its own region). Checked at plan time so that apply never creates
/// the redirect listener and then fails on the HTTPS one.
pub fn check_certificate_arn(arn: &str, region: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shaped = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "acm"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("certificate/")
            .is_some_and(|id| !id.is_empty());
    if !shaped {
        return Err(AwsError::invalid(
            format!("ecs.certificate_arn `{arn}` is not an ACM certificate ARN"),
            "copy the ARN from ACM: arn:aws:acm:REGION:ACCOUNT:certificate/ID",
        ));
    }
    if parts[3] != region {
        return Err(AwsError::invalid(
            format!(
                "ecs.certificate_arn is in region {}, the stack in {region}",
                parts[3]
            ),
            format!("a load balancer only takes certificates of its own region: request or import one in ACM in {region}"),
        ));
    }
    Ok(())
}

/// Whether a cluster exists (active), and the stack that owns it: `None` when it does not
/// exist, `Some(None)` when it exists without a stack tag.
async fn cluster_owner(aws: &Aws, cluster: &str) -> Result<Option<Option<String>>, AwsError> {
    let c = aws
        .ecs()
        .describe_clusters()
        .clusters(cluster)
        .include(ClusterField::Tags)
        .send()
        .await
        .ctx("ecs:DescribeClusters")?;
    Ok(c.clusters()
        .iter()
        .find(|c| c.status() == Some("ACTIVE"))
        .map(|c| {
            c.tags()
                .iter()
                .find(|t| t.key() == Some(TAG_STACK))
                .and_then(|t| t.value())
                .map(str::to_string)
        }))
}

/// Refuses, at plan time, to destroy a cluster that runs services that are not the stack's:
/// deleting it would fail half-way (or, worse, take others' services with it).
pub(crate) async fn check_cluster_only_ours(
    aws: &Aws,
    stack: &str,
    cluster: &str,
) -> Result<(), AwsError> {
    let ecs = aws.ecs();
    let mut arns = Vec::new();
    let mut pages = ecs.list_services().cluster(cluster).into_paginator().send();
    while let Some(page) = pages.next().await {
        arns.extend(page.ctx("ecs:ListServices")?.service_arns().iter().cloned());
    }
    let mut others = Vec::new();
    for chunk in arns.chunks(10) {
        let out = ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .ctx("ecs:DescribeServices")?;
        for s in out.services() {
            let ours = s
                .tags()
                .iter()
                .any(|t| t.key() == Some(TAG_STACK) && t.value() == Some(stack));
            if !ours && s.status() != Some("INACTIVE") {
                others.push(s.service_name().unwrap_or("?").to_string());
            }
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    Err(AwsError::invalid(
        format!(
            "ECS cluster {cluster} also runs services that are not stack `{stack}`'s ({}): destroying the stack would delete the cluster under them",
            others.join(", ")
        ),
        "move or delete those services first (nothing was changed)",
    ))
}

/// The IPv4 CIDR blocks of `subnets`, sorted.
async fn subnet_cidrs(aws: &Aws, subnets: &[String]) -> Result<Vec<String>, AwsError> {
    let out = aws
        .ec2()
        .describe_subnets()
        .set_subnet_ids(Some(subnets.to_vec()))
        .send()
        .await
        .ctx("ec2:DescribeSubnets")?;
    let mut cidrs: Vec<String> = out
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block().map(str::to_string))
        .collect();
    cidrs.sort();
    cidrs.dedup();
    Ok(cidrs)
}

/// No cross-resource steps are needed beyond what the diff finds: a new task definition also
/// changes the service's `task_definition` fingerprint, so the service update follows.
pub(crate) fn link_changes(
    _changes: &mut [Change],
    _unchanged: &mut [Unchanged],
    _actual: &[Resource],
    _desired: &[Resource],
) {
}

fn td_attrs_of(td: &aws_sdk_ecs::types::TaskDefinition) -> BTreeMap<String, Value> {
    let c = td.container_definitions().first();
    let env: BTreeMap<String, String> = c
        .map(|c| {
            c.environment()
                .iter()
                .map(|kv| {
                    (
                        kv.name().unwrap_or_default().to_string(),
                        kv.value().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let secrets: BTreeMap<String, String> = c
        .map(|c| {
            c.secrets()
                .iter()
                .map(|s| (s.name().to_string(), s.value_from().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let health = c
        .and_then(|c| c.health_check())
        .map(|h| {
            h.command()
                .iter()
                .skip(1)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let port = c
        .and_then(|c| c.port_mappings().first())
        .and_then(PortMapping::container_port)
        .unwrap_or_default();
    let log_group = c
        .and_then(|c| c.log_configuration())
        .and_then(|l| l.options())
        .and_then(|o| o.get("awslogs-group").cloned())
        .unwrap_or_default();
    task_attrs(&TaskInputs {
        image: c.and_then(|c| c.image()).unwrap_or_default(),
        cpu: td.cpu().unwrap_or_default(),
        memory: td.memory().unwrap_or_default(),
        port,
        env: &env,
        secrets: &secrets,
        health: &health,
        execution_role: td.execution_role_arn().unwrap_or_default(),
        log_group: &log_group,
    })
}

async fn lb_tags_ours(aws: &Aws, arn: &str, stack: &str) -> Result<bool, AwsError> {
    let out = aws
        .elb()
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .ctx("elasticloadbalancing:DescribeTags")?;
    Ok(out
        .tag_descriptions()
        .iter()
        .flat_map(aws_sdk_elasticloadbalancingv2::types::TagDescription::tags)
        .any(|t| t.key() == Some(TAG_STACK) && t.value() == Some(stack)))
}

/// What exists for an ECS stack (by name, checked against the stack tag).
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    lookup: &Lookup,
) -> Result<Vec<Resource>, AwsError> {
    let (mut out, sg_names) = crate::ec2::actual_groups(aws, stack).await?;
    // The stack's own groups as the stack names them (`group:<name>`), others by id.
    let group_refs = |ids: &[String]| {
        Value::set(ids.iter().map(|g| match sg_names.get(g) {
            Some(n) => format!("group:{n}"),
            None => g.clone(),
        }))
    };
    let ecs = aws.ecs();
    let elb = aws.elb();
    let mut cluster_ok = false;
    if let Some(cluster) = &lookup.cluster {
        let c = ecs
            .describe_clusters()
            .clusters(cluster)
            .include(ClusterField::Tags)
            .send()
            .await
            .ctx("ecs:DescribeClusters")?;
        if let Some(c) = c.clusters().iter().find(|c| c.status() == Some("ACTIVE")) {
            let ours = c
                .tags()
                .iter()
                .any(|t| t.key() == Some(TAG_STACK) && t.value() == Some(stack));
            cluster_ok = true;
            if ours {
                let mut r =
                    Resource::new(Kind::EcsCluster, cluster.as_str()).attr("status", "ACTIVE");
                r.id = c.cluster_arn().map(str::to_string);
                out.push(r);
            }
        }
    }

    // The newest ACTIVE revision of the family.
    match ecs
        .describe_task_definition()
        .task_definition(stack)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(td) => {
            let ours = td
                .tags()
                .iter()
                .any(|t| t.key() == Some(TAG_STACK) && t.value() == Some(stack));
            // Deregistered (INACTIVE) revisions are gone as far as the stack is concerned.
            let active = td
                .task_definition()
                .and_then(|d| d.status())
                .map(aws_sdk_ecs::types::TaskDefinitionStatus::as_str)
                == Some("ACTIVE");
            if let (true, true, Some(def)) = (ours, active, td.task_definition()) {
                let mut r = Resource::new(Kind::TaskDefinition, stack);
                r.attrs = td_attrs_of(def);
                r.id = def.task_definition_arn().map(str::to_string);
                out.push(r);
            }
        }
        Err(e) => {
            let e = AwsError::from_sdk("ecs:DescribeTaskDefinition", e);
            // No revision of the family yet.
            if !matches!(e.code(), Some("ClientException" | "ClientError"))
                && e.kind() != Some(crate::ErrorKind::NotFound)
            {
                return Err(e);
            }
        }
    }

    let name = lb_name(stack);
    let mut tg_arn = None;
    match elb.describe_target_groups().names(&name).send().await {
        Ok(tgs) => {
            for tg in tgs.target_groups() {
                let arn = tg.target_group_arn().unwrap_or_default().to_string();
                if !lb_tags_ours(aws, &arn, stack).await? {
                    continue;
                }
                let mut r = Resource::new(Kind::TargetGroup, stack)
                    .attr("port", tg.port().map(|p| p.to_string()).unwrap_or_default())
                    .attr(
                        "protocol",
                        tg.protocol().map(ProtocolEnum::as_str).unwrap_or_default(),
                    )
                    .attr(
                        "target_type",
                        tg.target_type()
                            .map(TargetTypeEnum::as_str)
                            .unwrap_or_default(),
                    )
                    .attr("vpc", tg.vpc_id().unwrap_or_default())
                    .attr("health_path", tg.health_check_path().unwrap_or_default())
                    .attr(
                        "matcher",
                        tg.matcher().and_then(|m| m.http_code()).unwrap_or_default(),
                    )
                    .extra("aws_name", name.as_str());
                r.id = Some(arn.clone());
                tg_arn = Some(arn);
                out.push(r);
            }
        }
        Err(e) => {
            let e = AwsError::from_sdk("elasticloadbalancing:DescribeTargetGroups", e);
            if e.kind() != Some(crate::ErrorKind::NotFound) {
                return Err(e);
            }
        }
    }

    match elb.describe_load_balancers().names(&name).send().await {
        Ok(lbs) => {
            for lb in lbs.load_balancers() {
                let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
                if !lb_tags_ours(aws, &arn, stack).await? {
                    continue;
                }
                let subnets = lb
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.subnet_id())
                    .map(str::to_string);
                let mut r = Resource::new(Kind::LoadBalancer, stack)
                    .attr(
                        "scheme",
                        lb.scheme().map(aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::as_str).unwrap_or_default(),
                    )
                    .attr("subnets", Value::set(subnets))
                    .attr("security_groups", group_refs(lb.security_groups()))
                    .extra("aws_name", name.as_str())
                    .extra("dns_name", lb.dns_name().unwrap_or_default());
                r.id = Some(arn.clone());
                out.push(r);
                let ls = elb
                    .describe_listeners()
                    .load_balancer_arn(&arn)
                    .send()
                    .await
                    .ctx("elasticloadbalancing:DescribeListeners")?;
                for l in ls.listeners() {
                    let port = l.port().unwrap_or_default();
                    let protocol = l
                        .protocol()
                        .map(ProtocolEnum::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let action = match l.default_actions().first() {
                        Some(a) if a.r#type() == Some(&ActionTypeEnum::Redirect) => {
                            "redirect to https".to_string()
                        }
                        Some(a) if a.r#type() == Some(&ActionTypeEnum::Forward) => {
                            if a.target_group_arn().is_some()
                                && a.target_group_arn() == tg_arn.as_deref()
                            {
                                format!("forward to {stack}")
                            } else {
                                format!("forward to {}", a.target_group_arn().unwrap_or("?"))
                            }
                        }
                        Some(a) => a
                            .r#type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        None => String::new(),
                    };
                    let mut r = Resource::new(
                        Kind::Listener,
                        format!("{}-{port}", protocol.to_ascii_lowercase()),
                    )
                    .attr("port", port.to_string())
                    .attr("protocol", protocol.as_str())
                    .attr("action", action)
                    .extra("load_balancer", stack)
                    .extra("target_group", stack);
                    if protocol == "HTTPS" {
                        r = r.attr(
                            "certificate",
                            l.certificates()
                                .first()
                                .and_then(|c| c.certificate_arn())
                                .unwrap_or_default(),
                        );
                    }
                    r.id = l.listener_arn().map(str::to_string);
                    out.push(r);
                }
            }
        }
        Err(e) => {
            let e = AwsError::from_sdk("elasticloadbalancing:DescribeLoadBalancers", e);
            if e.kind() != Some(crate::ErrorKind::NotFound) {
                return Err(e);
            }
        }
    }

    if let (true, Some(cluster)) = (cluster_ok, &lookup.cluster) {
        let svc = ecs
            .describe_services()
            .cluster(cluster)
            .services(stack)
            .include(ServiceField::Tags)
            .send()
            .await
            .ctx("ecs:DescribeServices")?;
        for s in svc.services() {
            if s.status() != Some("ACTIVE") {
                continue;
            }
            let ours = s
                .tags()
                .iter()
                .any(|t| t.key() == Some(TAG_STACK) && t.value() == Some(stack));
            if !ours {
                continue;
            }
            let td_arn = s.task_definition().unwrap_or_default().to_string();
            let td_print = match ecs
                .describe_task_definition()
                .task_definition(&td_arn)
                .send()
                .await
            {
                Ok(td) => td
                    .task_definition()
                    .map(|d| fingerprint(&td_attrs_of(d)))
                    .unwrap_or_default(),
                Err(_) => String::new(),
            };
            let net = s
                .network_configuration()
                .and_then(|n| n.awsvpc_configuration());
            // AWS always reports the deployment configuration; when it is absent the attribute
            // is left out (not compared) rather than guessed.
            let cb = s.deployment_configuration().map(|d| {
                match d
                    .deployment_circuit_breaker()
                    .map(|c| (c.enable(), c.rollback()))
                {
                    Some((true, true)) => "enabled, rollback",
                    Some((true, false)) => "enabled, no rollback",
                    _ => "disabled",
                }
            });
            let tg = s
                .load_balancers()
                .first()
                .and_then(|l| l.target_group_arn())
                .map(|a| {
                    if Some(a) == tg_arn.as_deref() {
                        stack.to_string()
                    } else {
                        a.to_string()
                    }
                })
                .unwrap_or_default();
            let mut r = Resource::new(Kind::EcsService, stack)
                .attr("cluster", cluster.as_str())
                .attr(
                    "launch_type",
                    s.launch_type().map(LaunchType::as_str).unwrap_or_default(),
                )
                .attr("desired_count", s.desired_count().to_string())
                .attr("task_definition", format!("{stack}@{td_print}"))
                .attr(
                    "subnets",
                    Value::set(net.map(|n| n.subnets().to_vec()).unwrap_or_default()),
                )
                .attr(
                    "security_groups",
                    group_refs(
                        net.map(AwsVpcConfiguration::security_groups)
                            .unwrap_or_default(),
                    ),
                )
                .attr("target_group", tg)
                .extra("running_count", s.running_count().to_string())
                .extra("task_definition_arn", td_arn);
            if let Some(cb) = cb {
                r = r.attr("circuit_breaker", cb);
            }
            r.id = s.service_arn().map(str::to_string);
            out.push(r);
        }
    }
    Ok(out)
}

fn lb_tags(stack: &str, name: &str) -> Vec<LbTag> {
    vec![
        LbTag::builder().key(TAG_STACK).value(stack).build(),
        LbTag::builder().key(TAG_RESOURCE).value(name).build(),
    ]
}

fn ecs_tags(stack: &str, name: &str) -> Vec<aws_sdk_ecs::types::Tag> {
    vec![
        aws_sdk_ecs::types::Tag::builder()
            .key(TAG_STACK)
            .value(stack)
            .build(),
        aws_sdk_ecs::types::Tag::builder()
            .key(TAG_RESOURCE)
            .value(name)
            .build(),
    ]
}

fn id_of(ids: &Ids, kind: Kind, name: &str) -> Result<String, AwsError> {
    ids.get(&(kind, name.to_string())).cloned().ok_or_else(|| {
        AwsError::invalid(
            format!("{} {name} is needed but does not exist", kind.as_str()),
            "run `fullslack plan` again: the plan is missing a step",
        )
    })
}

fn listener_actions(r: &Resource, ids: &Ids) -> Result<LbAction, AwsError> {
    if r.text("action") == "redirect to https" {
        return Ok(LbAction::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build());
    }
    Ok(LbAction::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(id_of(ids, Kind::TargetGroup, r.input("target_group"))?)
        .build())
}

async fn register_task_definition(
    aws: &Aws,
    stack: &str,
    r: &Resource,
) -> Result<String, AwsError> {
    let port: i32 = r.text("port").parse().unwrap_or(8080);
    let memory: i32 = r.text("memory").parse().unwrap_or(1024);
    let mut c = ContainerDefinition::builder()
        .name(CONTAINER)
        .image(r.text("image"))
        .essential(true)
        // Fargate takes memory from the task; the container value keeps every ECS
        // implementation (and run_task) happy.
        .memory(memory)
        .port_mappings(
            PortMapping::builder()
                .container_port(port)
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .health_check(
            HealthCheck::builder()
                .set_command(Some(
                    std::iter::once("CMD".to_string())
                        .chain(r.text("health_check").split(' ').map(str::to_string))
                        .collect(),
                ))
                .interval(15)
                .timeout(5)
                .retries(3)
                .start_period(20)
                .build()
                .map_err(bad_build)?,
        )
        .log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", r.text("log_group"))
                .options("awslogs-region", aws.region.as_str())
                .options("awslogs-stream-prefix", CONTAINER)
                .options("awslogs-create-group", "true")
                .build()
                .map_err(bad_build)?,
        );
    for kv in r.list("env") {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        c = c.environment(KeyValuePair::builder().name(k).value(v).build());
    }
    for s in r.list("secrets") {
        let (k, arn) = s.split_once(" from ").unwrap_or((s.as_str(), ""));
        c = c.secrets(
            EcsSecret::builder()
                .name(k)
                .value_from(arn)
                .build()
                .map_err(bad_build)?,
        );
    }
    let mut req = aws
        .ecs()
        .register_task_definition()
        .family(stack)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(r.text("cpu"))
        .memory(r.text("memory"))
        .container_definitions(c.build())
        .set_tags(Some(ecs_tags(stack, stack)));
    if !r.text("execution_role").is_empty() {
        req = req.execution_role_arn(r.text("execution_role"));
    }
    let out = req.send().await.ctx("ecs:RegisterTaskDefinition")?;
    Ok(out
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap_or_default()
        .to_string())
}

fn network(r: &Resource, ids: &Ids) -> Result<NetworkConfiguration, AwsError> {
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .set_subnets(Some(r.list("subnets")))
                .set_security_groups(Some(resolve_groups(r.list("security_groups"), ids)?))
                .assign_public_ip(AssignPublicIp::Enabled)
                .build()
                .map_err(bad_build)?,
        )
        .build())
}

fn deployment() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .maximum_percent(200)
        .minimum_healthy_percent(100)
        .build()
}

/// Runs one ECS/ELB change.
pub(crate) async fn apply(
    aws: &Aws,
    stack: &str,
    ids: &mut Ids,
    ch: &Change,
    timeout: Duration,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), AwsError> {
    let r = ch.resource();
    let ecs = aws.ecs();
    let elb = aws.elb();
    match (r.kind, ch.action) {
        (Kind::EcsCluster, Action::Create) => {
            let out = ecs
                .create_cluster()
                .cluster_name(&r.name)
                .set_tags(Some(ecs_tags(stack, &r.name)))
                .send()
                .await
                .ctx("ecs:CreateCluster")?;
            let arn = out
                .cluster()
                .and_then(|c| c.cluster_arn())
                .unwrap_or_default()
                .to_string();
            say(format!("created ECS cluster {}", r.name));
            ids.insert((r.kind, r.name.clone()), arn);
        }
        (Kind::EcsCluster, Action::Delete) => {
            // A just-deleted service drains for a while and keeps the cluster busy.
            retry_conflict(timeout, || async {
                ecs.delete_cluster()
                    .cluster(&r.name)
                    .send()
                    .await
                    .ctx("ecs:DeleteCluster")
                    .map(|_| ())
            })
            .await?;
            say(format!("deleted ECS cluster {}", r.name));
        }
        (Kind::TaskDefinition, Action::Create | Action::Update | Action::Replace) => {
            let arn = register_task_definition(aws, stack, r).await?;
            say(format!("registered task definition {arn}"));
            ids.insert((r.kind, r.name.clone()), arn);
        }
        (Kind::TaskDefinition, Action::Delete) => {
            // Every revision of the family, newest first.
            let mut n = 0;
            let mut pages = ecs
                .list_task_definitions()
                .family_prefix(&r.name)
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                for arn in page.ctx("ecs:ListTaskDefinitions")?.task_definition_arns() {
                    ecs.deregister_task_definition()
                        .task_definition(arn)
                        .send()
                        .await
                        .ctx("ecs:DeregisterTaskDefinition")?;
                    n += 1;
                }
            }
            say(format!(
                "deregistered {n} revision(s) of task definition {}",
                r.name
            ));
        }
        (Kind::TargetGroup, Action::Create | Action::Replace) => {
            if ch.action == Action::Replace {
                if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
                    elb.delete_target_group()
                        .target_group_arn(old)
                        .send()
                        .await
                        .ctx("elasticloadbalancing:DeleteTargetGroup")?;
                }
            }
            let out = elb
                .create_target_group()
                .name(r.input("aws_name"))
                .protocol(ProtocolEnum::Http)
                .port(r.text("port").parse().unwrap_or(8080))
                .vpc_id(r.text("vpc"))
                .target_type(TargetTypeEnum::Ip)
                .health_check_path(r.text("health_path"))
                .health_check_enabled(true)
                .matcher(Matcher::builder().http_code(r.text("matcher")).build())
                .set_tags(Some(lb_tags(stack, &r.name)))
                .send()
                .await
                .ctx("elasticloadbalancing:CreateTargetGroup")?;
            let arn = out
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .unwrap_or_default()
                .to_string();
            say(format!(
                "created target group {} (health check {})",
                r.input("aws_name"),
                r.text("health_path")
            ));
            ids.insert((r.kind, r.name.clone()), arn);
        }
        (Kind::TargetGroup, Action::Update) => {
            let arn = id_of(ids, r.kind, &r.name)?;
            elb.modify_target_group()
                .target_group_arn(arn)
                .health_check_path(r.text("health_path"))
                .matcher(Matcher::builder().http_code(r.text("matcher")).build())
                .send()
                .await
                .ctx("elasticloadbalancing:ModifyTargetGroup")?;
            say(format!(
                "target group {}: health check {}",
                r.name,
                r.text("health_path")
            ));
        }
        (Kind::TargetGroup, Action::Delete) => {
            let arn = r.id.clone().unwrap_or_default();
            // The load balancer's deletion finishes asynchronously; until then the group is
            // still in use.
            retry_conflict(timeout, || async {
                elb.delete_target_group()
                    .target_group_arn(&arn)
                    .send()
                    .await
                    .ctx("elasticloadbalancing:DeleteTargetGroup")
                    .map(|_| ())
            })
            .await?;
            say(format!("deleted target group {}", r.name));
        }
        (Kind::LoadBalancer, Action::Create | Action::Replace) => {
            if ch.action == Action::Replace {
                if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
                    elb.delete_load_balancer()
                        .load_balancer_arn(old)
                        .send()
                        .await
                        .ctx("elasticloadbalancing:DeleteLoadBalancer")?;
                }
            }
            let out = elb
                .create_load_balancer()
                .name(r.input("aws_name"))
                .set_subnets(Some(r.list("subnets")))
                .set_security_groups(
                    Some(resolve_groups(r.list("security_groups"), ids)?).filter(|v| !v.is_empty()),
                )
                .scheme(
                    aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::InternetFacing,
                )
                .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Application)
                .set_tags(Some(lb_tags(stack, &r.name)))
                .send()
                .await
                .ctx("elasticloadbalancing:CreateLoadBalancer")?;
            let lb = out.load_balancers().first();
            let arn = lb
                .and_then(|l| l.load_balancer_arn())
                .unwrap_or_default()
                .to_string();
            say(format!(
                "created load balancer {} ({})",
                r.input("aws_name"),
                lb.and_then(|l| l.dns_name()).unwrap_or_default()
            ));
            ids.insert((r.kind, r.name.clone()), arn);
        }
        (Kind::LoadBalancer, Action::Update) => {
            let arn = id_of(ids, r.kind, &r.name)?;
            elb.set_security_groups()
                .load_balancer_arn(&arn)
                .set_security_groups(Some(resolve_groups(r.list("security_groups"), ids)?))
                .send()
                .await
                .ctx("elasticloadbalancing:SetSecurityGroups")?;
            say(format!("load balancer {}: security groups set", r.name));
        }
        (Kind::LoadBalancer, Action::Delete) => {
            let arn = r.id.clone().unwrap_or_default();
            elb.delete_load_balancer()
                .load_balancer_arn(arn)
                .send()
                .await
                .ctx("elasticloadbalancing:DeleteLoadBalancer")?;
            say(format!("deleted load balancer {}", r.name));
        }
        (Kind::Listener, Action::Create | Action::Replace) => {
            if ch.action == Action::Replace {
                if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
                    elb.delete_listener()
                        .listener_arn(old)
                        .send()
                        .await
                        .ctx("elasticloadbalancing:DeleteListener")?;
                }
            }
            let lb = id_of(ids, Kind::LoadBalancer, r.input("load_balancer"))?;
            let https = r.text("protocol") == "HTTPS";
            let mut req = elb
                .create_listener()
                .load_balancer_arn(lb)
                .port(r.text("port").parse().unwrap_or(80))
                .protocol(if https {
                    ProtocolEnum::Https
                } else {
                    ProtocolEnum::Http
                })
                .default_actions(listener_actions(r, ids)?)
                .set_tags(Some(lb_tags(stack, &r.name)));
            if https {
                req = req
                    .certificates(
                        Certificate::builder()
                            .certificate_arn(r.text("certificate"))
                            .build(),
                    )
                    .ssl_policy("ELBSecurityPolicy-TLS13-1-2-2021-06");
            }
            let out = req
                .send()
                .await
                .ctx("elasticloadbalancing:CreateListener")?;
            let arn = out
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .unwrap_or_default()
                .to_string();
            say(format!(
                "created listener {} ({})",
                r.name,
                r.text("action")
            ));
            ids.insert((r.kind, r.name.clone()), arn);
        }
        (Kind::Listener, Action::Update) => {
            let arn = id_of(ids, r.kind, &r.name)?;
            let mut req = elb
                .modify_listener()
                .listener_arn(arn)
                .default_actions(listener_actions(r, ids)?);
            if r.text("protocol") == "HTTPS" {
                req = req.certificates(
                    Certificate::builder()
                        .certificate_arn(r.text("certificate"))
                        .build(),
                );
            }
            req.send()
                .await
                .ctx("elasticloadbalancing:ModifyListener")?;
            say(format!("listener {}: {}", r.name, r.text("action")));
        }
        (Kind::Listener, Action::Delete) => {
            let arn = r.id.clone().unwrap_or_default();
            elb.delete_listener()
                .listener_arn(arn)
                .send()
                .await
                .ctx("elasticloadbalancing:DeleteListener")?;
            say(format!("deleted listener {}", r.name));
        }
        (Kind::EcsService, Action::Create | Action::Replace) => {
            let cluster = r.text("cluster").to_string();
            if ch.action == Action::Replace {
                delete_service(aws, &cluster, &r.name, timeout).await?;
            }
            let td = id_of(ids, Kind::TaskDefinition, &r.name)?;
            let tg = id_of(ids, Kind::TargetGroup, r.text("target_group"))?;
            let port: i32 = r.input("port").parse().unwrap_or(8080);
            ecs.create_service()
                .cluster(&cluster)
                .service_name(&r.name)
                .task_definition(td)
                .desired_count(r.text("desired_count").parse().unwrap_or(1))
                .launch_type(LaunchType::Fargate)
                .network_configuration(network(r, ids)?)
                .load_balancers(
                    EcsLoadBalancer::builder()
                        .target_group_arn(tg)
                        .container_name(CONTAINER)
                        .container_port(port)
                        .build(),
                )
                .health_check_grace_period_seconds(60)
                .deployment_configuration(deployment())
                .set_tags(Some(ecs_tags(stack, &r.name)))
                .send()
                .await
                .ctx("ecs:CreateService")?;
            say(format!(
                "created ECS service {}, waiting until it is stable",
                r.name
            ));
            wait_stable(aws, &cluster, &r.name, timeout).await?;
            say(format!("service {} is stable", r.name));
        }
        (Kind::EcsService, Action::Update) => {
            let cluster = r.text("cluster").to_string();
            let td = id_of(ids, Kind::TaskDefinition, &r.name)?;
            ecs.update_service()
                .cluster(&cluster)
                .service(&r.name)
                .task_definition(&td)
                .desired_count(r.text("desired_count").parse().unwrap_or(1))
                .network_configuration(network(r, ids)?)
                .deployment_configuration(deployment())
                .send()
                .await
                .ctx("ecs:UpdateService")?;
            say(format!(
                "updated ECS service {} ({td}), waiting until it is stable",
                r.name
            ));
            wait_stable(aws, &cluster, &r.name, timeout).await?;
            say(format!("service {} is stable", r.name));
        }
        (Kind::EcsService, Action::Delete) => {
            delete_service(aws, r.text("cluster"), &r.name, timeout).await?;
            say(format!("deleted ECS service {}", r.name));
        }
        (kind, action) => {
            return Err(AwsError::invalid(
                format!("cannot {action:?} a {}", kind.as_str()),
                "report this bug with the plan file",
            ))
        }
    }
    Ok(())
}

/// Retries `op` while AWS answers that the resource is still in use, up to `timeout`.
async fn retry_conflict<F, Fut>(timeout: Duration, mut op: F) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AwsError>>,
{
    let start = Instant::now();
    loop {
        match op().await {
            Err(e) if e.kind() == Some(crate::ErrorKind::Conflict) && start.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

async fn delete_service(
    aws: &Aws,
    cluster: &str,
    name: &str,
    _timeout: Duration,
) -> Result<(), AwsError> {
    // `force` scales the service to zero and deletes it in one call.
    aws.ecs()
        .delete_service()
        .cluster(cluster)
        .service(name)
        .force(true)
        .send()
        .await
        .ctx("ecs:DeleteService")?;
    Ok(())
}

/// Waits until the service has one deployment, it has completed, and as many tasks run as
/// desired. A deployment the circuit breaker failed (and rolled back) is an error at once.
pub async fn wait_stable(
    aws: &Aws,
    cluster: &str,
    service: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let start = Instant::now();
    let mut last;
    loop {
        let out = aws
            .ecs()
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .ctx("ecs:DescribeServices")?;
        let Some(s) = out.services().first() else {
            return Err(AwsError::invalid(
                format!("service {service} not found in cluster {cluster}"),
                "run `fullslack plan` to see what exists",
            ));
        };
        let deployments = s.deployments();
        if let Some(failed) = deployments.iter().find(|d| {
            d.rollout_state()
                .map(aws_sdk_ecs::types::DeploymentRolloutState::as_str)
                == Some("FAILED")
        }) {
            return Err(AwsError::invalid(
                format!(
                    "the deployment of service {service} failed: {} (the circuit breaker rolls back to the last working revision)",
                    failed.rollout_state_reason().unwrap_or("no reason given")
                ),
                "look at the stopped tasks' reasons and the container logs (/fullslack/<stack> in CloudWatch Logs), fix the image or settings and apply again",
            ));
        }
        let running = s.running_count();
        let desired = s.desired_count();
        last = format!(
            "{running} of {desired} task(s) running, {} deployment(s)",
            deployments.len()
        );
        let done_rollout = deployments.iter().all(|d| {
            d.rollout_state()
                .map(aws_sdk_ecs::types::DeploymentRolloutState::as_str)
                .unwrap_or("COMPLETED")
                == "COMPLETED"
        });
        if deployments.len() <= 1 && running == desired && done_rollout {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(AwsError::Timeout {
                what: format!("ECS service {service} becoming stable"),
                secs: timeout.as_secs(),
                state: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_elb_limits() {
        assert_eq!(lb_name("chat-ecs"), "fs-chat-ecs");
        let long = lb_name("a-very-long-stack-name-that-goes-on-");
        assert!(long.len() <= 32 && !long.ends_with('-'));
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let a = task_attrs(&TaskInputs {
            image: "img:1",
            cpu: "512",
            memory: "1024",
            port: 8080,
            env: &env,
            secrets: &BTreeMap::new(),
            health: "h",
            execution_role: "",
            log_group: "/g",
        });
        let b = task_attrs(&TaskInputs {
            image: "img:2",
            cpu: "512",
            memory: "1024",
            port: 8080,
            env: &env,
            secrets: &BTreeMap::new(),
            health: "h",
            execution_role: "",
            log_group: "/g",
        });
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
