//! ECS Fargate stacks: a cluster, security groups of their own for the ALB (web from
//! anywhere) and the tasks (the app port from the ALB only), a task definition family (image,
//! port, health check, awslogs, secrets from SSM by ARN), an ALB with a target group checking
//! `/readyz` and listeners on 80 (and 443 with a certificate), and a Fargate service with a
//! desired count and the deployment circuit breaker with rollback. A changed task definition
//! registers a new revision, points the service at it and waits until the service is stable,
//! within a timeout.
//!
//! One module per resource family, each with its desired / actual / apply:
//! - [`cluster`]: the cluster, and the refusal to destroy one others' services run in.
//! - [`task_definition`]: the container, its attributes and their fingerprint.
//! - [`target_group`]: the tasks behind the load balancer, and their health check; replaced
//!   create-before-destroy (a new port or VPC), the old group deleted after every other step.
//! - [`load_balancer`]: the ALB, its security group and its listeners.
//! - [`service`]: the tasks' security group, the service, and the wait until it is stable.
//! - [`release`]: revisions as releases (the image tag is the version), the service's live
//!   revision and deployments, and moving the service to an older revision (`rollback`).
//!
//! The security groups themselves are applied by [`crate::ec2::security_group`].

pub mod cluster;
pub mod load_balancer;
pub mod release;
pub mod service;
pub mod target_group;
pub mod task_definition;

pub use load_balancer::check_certificate_arn;
pub use service::wait_stable;
pub use task_definition::HEALTHCHECK_BIN;

use crate::error::SdkResultExt;
use crate::family::{apply_lifecycle, Step, TAG_STACK};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource};
use crate::spec::{EcsSpec, Lookup, StackSpec};
use crate::{Aws, AwsError};

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

/// A change the carry table never plans for this kind.
fn cannot(kind: Kind, action: Action) -> AwsError {
    AwsError::invalid(
        format!("cannot {action:?} a {}", kind.as_str()),
        "report this bug with the plan file",
    )
}

/// The id of what a change removes first: the old resource of a replacement, or the one a
/// delete removes.
fn going_id(ch: &Change) -> Option<String> {
    match ch.action {
        Action::Delete => Some(ch.resource().id.clone().unwrap_or_default()),
        Action::Replace => ch.before.as_ref().and_then(|b| b.id.clone()),
        Action::Create | Action::Update => None,
    }
}

/// Whether a load balancer, target group or listener carries the stack's tag.
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
    let vpc = crate::network::vpc_of_subnet(aws, &e.subnets[0], "check ecs.subnets and the region")
        .await?;
    let td = task_definition::desired(aws, spec, e).await?;
    let td_print = task_definition::fingerprint(&td.attrs);
    let mut out = Vec::new();
    out.extend(cluster::desired(aws, stack, e, notes).await?);
    out.push(td);
    out.push(load_balancer::security_group(stack, &vpc));
    out.push(service::security_group(stack, &vpc, e.port));
    out.push(target_group::desired(stack, e, &vpc));
    out.push(load_balancer::desired(stack, e));
    out.extend(load_balancer::listeners(stack, e));
    out.push(service::desired(stack, e, &td_print));
    Ok(out)
}

/// What exists for an ECS stack (by name, checked against the stack tag).
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    lookup: &Lookup,
) -> Result<Vec<Resource>, AwsError> {
    let (mut out, sg_names) = crate::ec2::security_group::actual(aws, stack).await?;
    let mut cluster_active = false;
    if let Some(cluster) = &lookup.cluster {
        let (active, ours) = cluster::actual(aws, stack, cluster).await?;
        cluster_active = active;
        out.extend(ours);
    }
    out.extend(task_definition::actual(aws, stack).await?);
    let (target_groups, tg_arn) = target_group::actual(aws, stack).await?;
    out.extend(target_groups);
    out.extend(load_balancer::actual(aws, stack, &sg_names, tg_arn.as_deref()).await?);
    if let (true, Some(cluster)) = (cluster_active, &lookup.cluster) {
        out.extend(service::actual(aws, stack, cluster, &sg_names, tg_arn.as_deref()).await?);
    }
    Ok(out)
}

/// Runs one ECS/ELB change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    match ch.resource().kind {
        Kind::EcsCluster => cluster::apply(step, ch).await,
        Kind::TaskDefinition => task_definition::apply(step, ch).await,
        Kind::TargetGroup => target_group::apply(step, ch).await,
        Kind::LoadBalancer => load_balancer::apply(step, ch).await,
        Kind::Listener => load_balancer::apply_listener(step, ch).await,
        Kind::EcsService => apply_lifecycle::<service::Services>(step, ch).await,
        kind => Err(cannot(kind, ch.action)),
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
}
