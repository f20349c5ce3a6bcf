//! The releases of an ECS stack, as `deploy`, `rollback`, `releases` and `status` see them: a
//! release is a revision of the stack's task definition family (its image tag is the version),
//! and the live one is the revision the service runs. `deploy` registers revisions through
//! the plan ([`crate::apply()`]); this module reads them back and moves the service to an
//! older one (a rollback), then waits until the service is stable as apply does.

use std::time::Duration;

use aws_sdk_ecs::types::{SortOrder, TaskDefinitionStatus};

use super::wait_stable;
use crate::error::SdkResultExt;
use crate::{Aws, AwsError};

/// One revision of the stack's task definition family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revision {
    /// `family:N`.
    pub name: String,
    /// The full ARN.
    pub arn: String,
    /// N.
    pub revision: i32,
    /// The container's image reference.
    pub image: String,
    /// The image's tag: the release's version.
    pub version: String,
}

/// A deployment of the service, as ECS reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployment {
    /// `PRIMARY` (the newest) or `ACTIVE` (being replaced).
    pub status: String,
    /// `family:N` it runs.
    pub task_definition: String,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`, when reported.
    pub rollout: Option<String>,
    /// Tasks running / desired.
    pub running: i32,
    /// Tasks desired.
    pub desired: i32,
}

/// The service's state: the revision it runs and its deployments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Live {
    /// Cluster.
    pub cluster: String,
    /// Service.
    pub service: String,
    /// The revision the service runs.
    pub revision: Revision,
    /// Its deployments (one once stable).
    pub deployments: Vec<Deployment>,
    /// Tasks running.
    pub running: i32,
    /// Tasks desired.
    pub desired: i32,
}

/// `family:N` of an ARN (`arn:aws:ecs:…:task-definition/family:N`).
fn short_name(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// The tag of an image reference (after the last `:` of the last path part; `latest` when
/// it has none).
fn tag_of(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.rsplit_once(':')
        .map_or_else(|| "latest".to_string(), |(_, t)| t.to_string())
}

/// One registered revision, by ARN or `family:N`.
pub async fn revision(aws: &Aws, task_definition: &str) -> Result<Revision, AwsError> {
    let out = aws
        .ecs()
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .ctx("ecs:DescribeTaskDefinition")?;
    let td = out.task_definition().ok_or_else(|| {
        AwsError::invalid(
            format!("task definition {task_definition} has no description"),
            "run `fullslack plan --stack FILE` to see what exists",
        )
    })?;
    let arn = td.task_definition_arn().unwrap_or(task_definition);
    let image = td
        .container_definitions()
        .first()
        .and_then(|c| c.image())
        .unwrap_or_default()
        .to_string();
    Ok(Revision {
        name: short_name(arn),
        arn: arn.to_string(),
        revision: td.revision(),
        version: tag_of(&image),
        image,
    })
}

/// The ACTIVE revisions of `family`, newest first.
pub async fn revisions(aws: &Aws, family: &str) -> Result<Vec<Revision>, AwsError> {
    let mut arns = Vec::new();
    let mut pages = aws
        .ecs()
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        arns.extend(
            page.ctx("ecs:ListTaskDefinitions")?
                .task_definition_arns()
                .iter()
                .cloned(),
        );
    }
    let mut out = Vec::new();
    for arn in arns {
        // `family_prefix` is a prefix: `chat` would list `chat-staging` too.
        if short_name(&arn).rsplit_once(':').map(|(f, _)| f) != Some(family) {
            continue;
        }
        out.push(revision(aws, &arn).await?);
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.revision));
    Ok(out)
}

/// The service's live revision and deployments; `None` when the cluster or the service does
/// not exist (or the service is no longer ACTIVE).
pub async fn live(aws: &Aws, cluster: &str, service: &str) -> Result<Option<Live>, AwsError> {
    let out = match aws
        .ecs()
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::from_sdk("ecs:DescribeServices", e);
            // A missing cluster: nothing is live.
            if e.code() == Some("ClusterNotFoundException")
                || e.kind() == Some(crate::ErrorKind::NotFound)
            {
                return Ok(None);
            }
            return Err(e);
        }
    };
    let Some(s) = out.services().iter().find(|s| s.status() == Some("ACTIVE")) else {
        return Ok(None);
    };
    let Some(td) = s.task_definition() else {
        return Ok(None);
    };
    let deployments = s
        .deployments()
        .iter()
        .map(|d| Deployment {
            status: d.status().unwrap_or_default().to_string(),
            task_definition: short_name(d.task_definition().unwrap_or_default()),
            rollout: d.rollout_state().map(|r| r.as_str().to_string()),
            running: d.running_count(),
            desired: d.desired_count(),
        })
        .collect();
    Ok(Some(Live {
        cluster: cluster.to_string(),
        service: service.to_string(),
        revision: revision(aws, td).await?,
        deployments,
        running: s.running_count(),
        desired: s.desired_count(),
    }))
}

/// Points the service at `to` (a revision of its family) and waits until it is stable.
pub async fn move_service(
    aws: &Aws,
    cluster: &str,
    service: &str,
    to: &Revision,
    timeout: Duration,
) -> Result<(), AwsError> {
    aws.ecs()
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(&to.arn)
        .send()
        .await
        .ctx("ecs:UpdateService")?;
    wait_stable(aws, cluster, service, timeout).await
}

/// The revision a rollback goes to: the newest revision with version `to` when one is named,
/// else the newest revision older than the live one.
pub fn rollback_target<'a>(
    revisions: &'a [Revision],
    live: &Revision,
    to: Option<&str>,
) -> Option<&'a Revision> {
    match to {
        Some(v) => revisions
            .iter()
            .find(|r| r.version == v && r.revision != live.revision),
        None => revisions.iter().find(|r| r.revision < live.revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(n: i32, v: &str) -> Revision {
        Revision {
            name: format!("chat:{n}"),
            arn: format!("arn:aws:ecs:us-east-1:1:task-definition/chat:{n}"),
            revision: n,
            image: format!("reg/chat:{v}"),
            version: v.to_string(),
        }
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(
            short_name("arn:aws:ecs:us-east-1:1:task-definition/chat:7"),
            "chat:7"
        );
        assert_eq!(tag_of("127.0.0.1:5000/a/chat:v2"), "v2");
        assert_eq!(tag_of("127.0.0.1:5000/a/chat"), "latest");
        assert_eq!(tag_of("a/chat:v3@sha256:00"), "v3");
    }

    #[test]
    fn rollback_goes_to_the_one_before_or_the_named_one() {
        let revs = [rev(3, "v3"), rev(2, "v2"), rev(1, "v1")];
        assert_eq!(rollback_target(&revs, &revs[0], None), Some(&revs[1]));
        assert_eq!(rollback_target(&revs, &revs[0], Some("v1")), Some(&revs[2]));
        assert_eq!(rollback_target(&revs, &revs[0], Some("v3")), None);
        assert_eq!(rollback_target(&revs, &revs[2], None), None);
    }
}
