//! The Fargate service of an ECS stack: its tasks' security group (the app port from the load
//! balancer only), the service with a desired count, the task definition revision, the
//! network, the target group and the deployment circuit breaker with rollback; created or
//! updated and then waited on until it is stable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    DeploymentRolloutState, LaunchType, LoadBalancer as EcsLoadBalancer, NetworkConfiguration,
    Service, ServiceField,
};

use super::{bad_build, task_definition, CONTAINER};
use crate::ec2::security_group::{group_refs, resolve_groups};
use crate::error::SdkResultExt;
use crate::family::{ecs_tagged, ecs_tags, Ids, Lifecycle, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource, Value};
use crate::spec::EcsSpec;
use crate::{Aws, AwsError};

/// The tasks' own security group: the app port from the load balancer's group only.
pub(crate) fn security_group(stack: &str, vpc: &str, port: u16) -> Resource {
    let tasks_sg = format!("{stack}-tasks");
    Resource::new(Kind::SecurityGroup, tasks_sg.as_str())
        .attr("vpc", vpc)
        .attr(
            "ingress",
            Value::set([format!("tcp/{port} from group:{stack}-alb")]),
        )
        .extra("group_name", format!("fullslack-{tasks_sg}"))
        .extra(
            "description",
            format!("fullslack stack {stack}: tasks, the app port from the load balancer"),
        )
}

/// The service as the stack wants it; `td_print` is the wanted task definition's fingerprint.
pub(crate) fn desired(stack: &str, e: &EcsSpec, td_print: &str) -> Resource {
    // The tasks take the stack's own groups besides their own.
    let task_groups = Value::set(
        e.security_groups
            .iter()
            .cloned()
            .chain([format!("group:{stack}-tasks")]),
    );
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
        .extra("port", e.port.to_string())
}

/// The stack's active service in `cluster`. `tg_arn` is the stack's target group, named by
/// the stack's name.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    cluster: &str,
    sg_names: &HashMap<String, String>,
    tg_arn: Option<&str>,
) -> Result<Vec<Resource>, AwsError> {
    let svc = aws
        .ecs()
        .describe_services()
        .cluster(cluster)
        .services(stack)
        .include(ServiceField::Tags)
        .send()
        .await
        .ctx("ecs:DescribeServices")?;
    let mut out = Vec::new();
    for s in svc.services() {
        if s.status() != Some("ACTIVE") || !ecs_tagged(s.tags(), stack) {
            continue;
        }
        let td_arn = s.task_definition().unwrap_or_default().to_string();
        let td_print = task_definition::fingerprint_of(aws, &td_arn).await;
        out.push(service_of(
            s, stack, cluster, sg_names, tg_arn, td_arn, &td_print,
        ));
    }
    Ok(out)
}

/// One service as a resource.
fn service_of(
    s: &Service,
    stack: &str,
    cluster: &str,
    sg_names: &HashMap<String, String>,
    tg_arn: Option<&str>,
    td_arn: String,
    td_print: &str,
) -> Resource {
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
            if Some(a) == tg_arn {
                stack.to_string()
            } else {
                a.to_string()
            }
        })
        .unwrap_or_default();
    let groups = net
        .map(AwsVpcConfiguration::security_groups)
        .unwrap_or_default();
    let mut r = Resource::new(Kind::EcsService, stack)
        .attr("cluster", cluster)
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
        .attr("security_groups", group_refs(sg_names, groups))
        .attr("target_group", tg)
        .extra("running_count", s.running_count().to_string())
        .extra("task_definition_arn", td_arn)
        .extra(
            "target_group_arn",
            s.load_balancers()
                .first()
                .and_then(|l| l.target_group_arn())
                .unwrap_or_default(),
        );
    if let Some(cb) = cb {
        r = r.attr("circuit_breaker", cb);
    }
    r.id = s.service_arn().map(str::to_string);
    r
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

/// ECS services: created (or moved over in a replacement), updated in place and waited for,
/// deleted.
pub(crate) struct Services;

impl Lifecycle for Services {
    async fn create(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        create(step, ch).await
    }

    async fn update(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        update(step, ch).await
    }

    async fn delete(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        let r = ch.resource();
        delete_service(step.aws, r.text("cluster"), &r.name).await?;
        step.say(format!("deleted ECS service {}", r.name));
        Ok(())
    }
}

/// The service's place behind the load balancer: the stack's target group, to the
/// container's port.
fn load_balancer(r: &Resource, target_group_arn: String) -> EcsLoadBalancer {
    EcsLoadBalancer::builder()
        .target_group_arn(target_group_arn)
        .container_name(CONTAINER)
        .container_port(r.input("port").parse().unwrap_or(8080))
        .build()
}

async fn create(step: &Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let cluster = r.text("cluster").to_string();
    if ch.action == Action::Replace {
        delete_service(step.aws, &cluster, &r.name).await?;
    }
    let td = step.id_of(Kind::TaskDefinition, &r.name)?;
    let tg = step.id_of(Kind::TargetGroup, r.text("target_group"))?;
    step.aws
        .ecs()
        .create_service()
        .cluster(&cluster)
        .service_name(&r.name)
        .task_definition(td)
        .desired_count(r.text("desired_count").parse().unwrap_or(1))
        .launch_type(LaunchType::Fargate)
        .network_configuration(network(r, &step.ids)?)
        .load_balancers(load_balancer(r, tg))
        .health_check_grace_period_seconds(60)
        .deployment_configuration(deployment())
        .set_tags(Some(ecs_tags(step.stack, &r.name)))
        .send()
        .await
        .ctx("ecs:CreateService")?;
    step.say(format!(
        "created ECS service {}, waiting until it is stable",
        r.name
    ));
    wait_stable(step.aws, &cluster, &r.name, step.timeout).await?;
    step.say(format!("service {} is stable", r.name));
    Ok(())
}

/// Updates the service in place. When this apply replaced the target group (its port or VPC
/// changed), the service moves to the new group in the same call as the new revision (ECS
/// takes `loadBalancers` in an update for services with the ECS deployment controller), so
/// that the old group is free to go once the service is stable.
async fn update(step: &Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let cluster = r.text("cluster").to_string();
    let td = step.id_of(Kind::TaskDefinition, &r.name)?;
    let tg = step.id_of(Kind::TargetGroup, r.text("target_group"))?;
    let had = ch
        .before
        .as_ref()
        .map_or("", |b| b.input("target_group_arn"));
    let moved = (tg != had).then(|| load_balancer(r, tg));
    step.aws
        .ecs()
        .update_service()
        .cluster(&cluster)
        .service(&r.name)
        .task_definition(&td)
        .desired_count(r.text("desired_count").parse().unwrap_or(1))
        .network_configuration(network(r, &step.ids)?)
        .set_load_balancers(moved.map(|lb| vec![lb]))
        .deployment_configuration(deployment())
        .send()
        .await
        .ctx("ecs:UpdateService")?;
    step.say(format!(
        "updated ECS service {} ({td}), waiting until it is stable",
        r.name
    ));
    wait_stable(step.aws, &cluster, &r.name, step.timeout).await?;
    step.say(format!("service {} is stable", r.name));
    Ok(())
}

/// `force` scales the service to zero and deletes it in one call.
async fn delete_service(aws: &Aws, cluster: &str, name: &str) -> Result<(), AwsError> {
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

fn rollout(d: &aws_sdk_ecs::types::Deployment) -> Option<&str> {
    d.rollout_state().map(DeploymentRolloutState::as_str)
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
        if let Some(failed) = deployments.iter().find(|d| rollout(d) == Some("FAILED")) {
            return Err(AwsError::invalid(
                format!(
                    "the deployment of service {service} failed: {} (the circuit breaker rolls back to the last working revision)",
                    failed.rollout_state_reason().unwrap_or("no reason given")
                ),
                "look at the stopped tasks' reasons and the container logs (/fullslack/<stack> in CloudWatch Logs), fix the image or settings and apply again",
            ));
        }
        let (running, desired) = (s.running_count(), s.desired_count());
        let done_rollout = deployments
            .iter()
            .all(|d| rollout(d).unwrap_or("COMPLETED") == "COMPLETED");
        if deployments.len() <= 1 && running == desired && done_rollout {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(AwsError::Timeout {
                what: format!("ECS service {service} becoming stable"),
                secs: timeout.as_secs(),
                state: format!(
                    "{running} of {desired} task(s) running, {} deployment(s)",
                    deployments.len()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
