//! The ECS cluster of an ECS stack: made and deleted by the stack when it is the stack's own
//! (tagged), used but never changed when it belongs to another stack or was made by hand.

use aws_sdk_ecs::types::{Cluster, ClusterField, ServiceField};

use crate::error::SdkResultExt;
use crate::family::{ecs_tagged, ecs_tags, retry_conflict, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource};
use crate::spec::EcsSpec;
use crate::{Aws, AwsError, TAG_STACK};

/// The cluster as the stack wants it: `None` when it exists and is not the stack's (a note
/// then says it is used, not managed).
pub(crate) async fn desired(
    aws: &Aws,
    stack: &str,
    e: &EcsSpec,
    notes: &mut Vec<String>,
) -> Result<Option<Resource>, AwsError> {
    match cluster_owner(aws, &e.cluster).await? {
        // Another stack's cluster, or one made by hand: used, never changed or deleted.
        Some(owner) if owner.as_deref() != Some(stack) => {
            notes.push(format!(
                "ECS cluster {} exists and {}: the service runs in it; this stack never changes or deletes it",
                e.cluster,
                match owner {
                    Some(o) => format!("belongs to stack `{o}`"),
                    None => "is not a fullslack stack's".to_string(),
                }
            ));
            Ok(None)
        }
        _ => Ok(Some(
            Resource::new(Kind::EcsCluster, e.cluster.as_str()).attr("status", "ACTIVE"),
        )),
    }
}

/// Whether a cluster exists (active), and the stack that owns it: `None` when it does not
/// exist, `Some(None)` when it exists without a stack tag.
async fn cluster_owner(aws: &Aws, cluster: &str) -> Result<Option<Option<String>>, AwsError> {
    Ok(active_cluster(aws, cluster).await?.map(|c| {
        c.tags()
            .iter()
            .find(|t| t.key() == Some(TAG_STACK))
            .and_then(|t| t.value())
            .map(str::to_string)
    }))
}

/// The cluster named `cluster`, with its tags, if it exists and is active.
async fn active_cluster(aws: &Aws, cluster: &str) -> Result<Option<Cluster>, AwsError> {
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
        .cloned())
}

/// Whether the cluster is active (then services in it can be read), and the cluster itself
/// when it is the stack's.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    cluster: &str,
) -> Result<(bool, Option<Resource>), AwsError> {
    let Some(c) = active_cluster(aws, cluster).await? else {
        return Ok((false, None));
    };
    if !ecs_tagged(c.tags(), stack) {
        return Ok((true, None));
    }
    let mut r = Resource::new(Kind::EcsCluster, cluster).attr("status", "ACTIVE");
    r.id = c.cluster_arn().map(str::to_string);
    Ok((true, Some(r)))
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
            if !ecs_tagged(s.tags(), stack) && s.status() != Some("INACTIVE") {
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

/// Runs one cluster change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let ecs = step.aws.ecs();
    match ch.action {
        Action::Create => {
            let out = ecs
                .create_cluster()
                .cluster_name(&r.name)
                .set_tags(Some(ecs_tags(step.stack, &r.name)))
                .send()
                .await
                .ctx("ecs:CreateCluster")?;
            let arn = out
                .cluster()
                .and_then(|c| c.cluster_arn())
                .unwrap_or_default()
                .to_string();
            step.say(format!("created ECS cluster {}", r.name));
            step.remember(r.kind, &r.name, arn);
        }
        Action::Delete => {
            // A just-deleted service drains for a while and keeps the cluster busy.
            retry_conflict(step.timeout, || async {
                ecs.delete_cluster()
                    .cluster(&r.name)
                    .send()
                    .await
                    .ctx("ecs:DeleteCluster")
                    .map(|_| ())
            })
            .await?;
            step.say(format!("deleted ECS cluster {}", r.name));
        }
        action => return Err(super::cannot(r.kind, action)),
    }
    Ok(())
}
