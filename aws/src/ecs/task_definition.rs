//! The task definition family of an ECS stack: one container (image, port, health check,
//! awslogs, environment, secrets from SSM by ARN). Its attributes are computed the same way
//! from the stack and from AWS, and their fingerprint stands in the service's
//! `task_definition` attribute, so a new revision also updates the service.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver,
    NetworkMode, PortMapping, Secret as EcsSecret, TaskDefinitionField, TaskDefinitionStatus,
    TransportProtocol,
};

use super::{bad_build, CONTAINER};
use crate::error::SdkResultExt;
use crate::family::{ecs_tagged, ecs_tags, sha256_hex, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource, Value};
use crate::spec::{EcsSpec, StackSpec};
use crate::{Aws, AwsError};

/// The container health check: chat images are FROM scratch (no shell, no curl) and carry
/// `fullslack-healthcheck`, which probes `/healthz` on the given address. The ALB's target
/// group checks readiness (`/readyz`) separately.
pub const HEALTHCHECK_BIN: &str = "/usr/local/bin/fullslack-healthcheck";

fn health_command(port: u16) -> String {
    format!("{HEALTHCHECK_BIN} 127.0.0.1:{port}")
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

/// A short hash of a task definition's attributes.
pub(crate) fn fingerprint(attrs: &BTreeMap<String, Value>) -> String {
    let json = serde_json::to_string(attrs).unwrap_or_default();
    sha256_hex(json.as_bytes())[..16].to_string()
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

/// The task definition the stack wants: the image from the stack's ECR repository (or as
/// named), secrets by their SSM ARNs, and the load balancer's subnets as trusted proxies.
pub(crate) async fn desired(
    aws: &Aws,
    spec: &StackSpec,
    e: &EcsSpec,
) -> Result<Resource, AwsError> {
    let stack = spec.name.as_str();
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
            crate::network::subnet_cidrs(aws, &e.subnets)
                .await?
                .join(","),
        );
    }
    let mut td = Resource::new(Kind::TaskDefinition, stack);
    td.attrs = task_attrs(&TaskInputs {
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
    Ok(td)
}

/// The attributes of a registered task definition.
pub(crate) fn attrs_of(td: &aws_sdk_ecs::types::TaskDefinition) -> BTreeMap<String, Value> {
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

/// The newest ACTIVE revision of the stack's family, when it is the stack's.
pub(crate) async fn actual(aws: &Aws, stack: &str) -> Result<Option<Resource>, AwsError> {
    match aws
        .ecs()
        .describe_task_definition()
        .task_definition(stack)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(td) => {
            let ours = ecs_tagged(td.tags(), stack);
            // Deregistered (INACTIVE) revisions are gone as far as the stack is concerned.
            let active = td
                .task_definition()
                .and_then(|d| d.status())
                .map(TaskDefinitionStatus::as_str)
                == Some("ACTIVE");
            let (true, true, Some(def)) = (ours, active, td.task_definition()) else {
                return Ok(None);
            };
            let mut r = Resource::new(Kind::TaskDefinition, stack);
            r.attrs = attrs_of(def);
            r.id = def.task_definition_arn().map(str::to_string);
            Ok(Some(r))
        }
        Err(e) => {
            let e = AwsError::from_sdk("ecs:DescribeTaskDefinition", e);
            // No revision of the family yet.
            if !matches!(e.code(), Some("ClientException" | "ClientError"))
                && e.kind() != Some(crate::ErrorKind::NotFound)
            {
                return Err(e);
            }
            Ok(None)
        }
    }
}

/// The fingerprint of the revision `arn` (empty when it cannot be read).
pub(crate) async fn fingerprint_of(aws: &Aws, arn: &str) -> String {
    match aws
        .ecs()
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
    {
        Ok(td) => td
            .task_definition()
            .map(|d| fingerprint(&attrs_of(d)))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The one container of the task.
fn container(aws: &Aws, r: &Resource) -> Result<ContainerDefinition, AwsError> {
    let port: i32 = r.text("port").parse().unwrap_or(8080);
    let memory: i32 = r.text("memory").parse().unwrap_or(1024);
    let health = HealthCheck::builder()
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
        .map_err(bad_build)?;
    let logs = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", r.text("log_group"))
        .options("awslogs-region", aws.region.as_str())
        .options("awslogs-stream-prefix", CONTAINER)
        .options("awslogs-create-group", "true")
        .build()
        .map_err(bad_build)?;
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
        .health_check(health)
        .log_configuration(logs);
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
    Ok(c.build())
}

/// Registers a new revision of the family; returns its ARN.
async fn register(aws: &Aws, stack: &str, r: &Resource) -> Result<String, AwsError> {
    let mut req = aws
        .ecs()
        .register_task_definition()
        .family(stack)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(r.text("cpu"))
        .memory(r.text("memory"))
        .container_definitions(container(aws, r)?)
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

/// Runs one task definition change: any change registers a new revision; a delete
/// deregisters every revision of the family.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    if ch.action != Action::Delete {
        let arn = register(step.aws, step.stack, r).await?;
        step.say(format!("registered task definition {arn}"));
        step.remember(r.kind, &r.name, arn);
        return Ok(());
    }
    let ecs = step.aws.ecs();
    let mut n = 0;
    let mut pages = ecs
        .list_task_definitions()
        .family_prefix(&r.name)
        .status(TaskDefinitionStatus::Active)
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
    step.say(format!(
        "deregistered {n} revision(s) of task definition {}",
        r.name
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
