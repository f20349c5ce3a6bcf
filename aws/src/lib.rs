//! `fullslack-aws`: everything of `fullslack` that talks to AWS, through the official SDK
//! crates. Only the CLI depends on it; the chat server never compiles it.
//!
//! Module map:
//! - [`config`]: [`Aws`], the SDK configuration (region from the stack, standard credential
//!   chain, `AWS_ENDPOINT_URL`, an HTTPS client on rustls + ring) and the service clients.
//! - [`error`]: [`AwsError`]; SDK errors classified (no credentials, bad credentials, access
//!   denied, region, limits, …), each with a hint that says what to do.
//! - [`spec`]: [`spec::StackSpec`], the desired state as the CLI hands it over.
//! - [`plan`]: resources as data, the diff into a [`plan::Plan`] (saved as JSON), which
//!   attribute changes apply makes in place and which force a replacement (and why), the
//!   stale-plan check and the readable rendering.
//! - [`cost`]: the monthly cost estimate from a small price table.
//! - [`ec2`]: security group, key pair, instances (user data: Docker + Nginx), Elastic IPs.
//! - [`hosts`]: the running instances of an `ec2` stack, found by its tags (what `lock`,
//!   `doctor` and deploys connect to).
//! - [`ecs`]: cluster, task definition, Fargate service, ALB, target group, listeners, and the
//!   wait for a stable service.
//! - [`ecr`]: the stack's repository and fresh registry credentials ([`ecr::RegistryAuth`]).
//! - [`ssm`]: SecureString secrets under `/<stack>/<NAME>`.
//! - [`lock`]: the per-stack lock (`/fullslack/<stack>/lock` in SSM, create-only) that
//!   `apply`, `destroy` and deploys take: acquire (with a wait), release, break.
//! - [`secret`]: [`SecretString`] (the workspace's one secret string, `secrecy`'s), redacted Debug.
//! - [`sdk`]: the SDK crates re-exported, for callers that need their types (tests).
//!
//! Everything created carries the tags `fullslack:stack=<stack>` and
//! `fullslack:resource=<logical name>`; what exists is read back by those tags.

pub mod config;
pub mod cost;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod error;
pub mod hosts;
pub mod lock;
pub mod plan;
pub mod secret;
pub mod spec;
pub mod ssm;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The SDK crates, for callers that need their types (tests inspecting what was created).
pub mod sdk {
    pub use aws_sdk_ec2 as ec2;
    pub use aws_sdk_ecr as ecr;
    pub use aws_sdk_ecs as ecs;
    pub use aws_sdk_elasticloadbalancingv2 as elbv2;
    pub use aws_sdk_ssm as ssm;
}

pub use config::Aws;
pub use error::{AwsError, ErrorKind};
pub use plan::{Action, Change, Kind, Plan, Resource};
pub use secret::{ExposeSecret, SecretString};
pub use spec::{Ec2Spec, EcsSpec, StackSpec, TargetSpec};

/// Tag naming the stack a resource belongs to.
pub const TAG_STACK: &str = "fullslack:stack";
/// Tag holding a resource's logical name within its stack.
pub const TAG_RESOURCE: &str = "fullslack:resource";

/// Names needed to read a stack's resources that tags alone cannot find (ECR and ECS look
/// these up by name, then check the tag). Saved in the plan so `apply PLAN` needs no stack file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// ECR repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr_repository: Option<String>,
    /// ECS cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

fn lookup_of(spec: &StackSpec) -> Lookup {
    Lookup {
        ecr_repository: spec.ecr_repository.clone(),
        cluster: match &spec.target {
            TargetSpec::Ecs(e) => Some(e.cluster.clone()),
            TargetSpec::Ec2(_) => None,
        },
    }
}

/// Reads everything that exists for a stack.
pub async fn read_actual(
    aws: &Aws,
    stack: &str,
    target: &str,
    lookup: &Lookup,
) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    if let Some(repo) = &lookup.ecr_repository {
        out.extend(ecr::actual_repository(aws, stack, repo).await?);
    }
    match target {
        "ec2" => out.extend(ec2::actual(aws, stack).await?),
        "ecs" => out.extend(ecs::actual(aws, stack, lookup).await?),
        other => {
            return Err(AwsError::invalid(
                format!("target `{other}` has no AWS resources"),
                "plan/apply/destroy work on `ec2` and `ecs` stacks",
            ))
        }
    }
    Ok(out)
}

/// The resources the stack wants, and notes for the plan's reader.
async fn desired(aws: &Aws, spec: &StackSpec) -> Result<(Vec<Resource>, Vec<String>), AwsError> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    if let Some(repo) = &spec.ecr_repository {
        ecr::check_repository_free(aws, &spec.name, repo).await?;
        out.push(ecr::desired_repository(repo));
    }
    match &spec.target {
        TargetSpec::Ec2(e) => out.extend(ec2::desired(aws, spec, e).await?),
        TargetSpec::Ecs(e) => out.extend(ecs::desired(aws, spec, e, &mut notes).await?),
    }
    Ok((out, notes))
}

/// Plans the changes that make AWS match the stack.
pub async fn plan(aws: &Aws, spec: &StackSpec) -> Result<Plan, AwsError> {
    let lookup = lookup_of(spec);
    let (want, notes) = desired(aws, spec).await?;
    let have = read_actual(aws, &spec.name, spec.target.as_str(), &lookup).await?;
    let (mut changes, mut unchanged) = plan::diff(&want, &have);
    if matches!(spec.target, TargetSpec::Ec2(_)) {
        ec2::link_addresses(&mut changes, &mut unchanged, &have, &want);
    }
    if let TargetSpec::Ecs(_) = spec.target {
        ecs::link_changes(&mut changes, &mut unchanged, &have, &want);
    }
    let mut notes = notes;
    if let TargetSpec::Ec2(e) = &spec.target {
        if e.ssh_cidr.is_none() {
            notes.push("port 22 stays closed: ec2.ssh_cidr is not set. Deploys over SSH need it: set it to the addresses that deploy (e.g. your office's /32 or CI's range)".into());
        }
    }
    Ok(Plan {
        format: plan::PLAN_FORMAT,
        stack: spec.name.clone(),
        target: spec.target.as_str().to_string(),
        region: spec.region.clone(),
        destroy: false,
        changes,
        unchanged,
        cost: cost::CostEstimate::of(&want),
        wait_timeout_secs: spec.wait_timeout_secs,
        lookup,
        notes,
    })
}

/// Plans the removal of everything the stack created (found by its tags), and nothing else.
pub async fn plan_destroy(aws: &Aws, spec: &StackSpec) -> Result<Plan, AwsError> {
    let lookup = lookup_of(spec);
    let have = read_actual(aws, &spec.name, spec.target.as_str(), &lookup).await?;
    if let Some(cluster) = &lookup.cluster {
        if have
            .iter()
            .any(|r| r.kind == Kind::EcsCluster && &r.name == cluster)
        {
            ecs::check_cluster_only_ours(aws, &spec.name, cluster).await?;
        }
    }
    let (changes, unchanged) = plan::diff(&[], &have);
    Ok(Plan {
        format: plan::PLAN_FORMAT,
        stack: spec.name.clone(),
        target: spec.target.as_str().to_string(),
        region: spec.region.clone(),
        destroy: true,
        changes,
        unchanged,
        cost: cost::CostEstimate::default(),
        wait_timeout_secs: spec.wait_timeout_secs,
        lookup,
        notes: Vec::new(),
    })
}

/// Applies exactly `plan`: first re-reads AWS and refuses if anything the plan saw has changed,
/// then runs the steps in order. `say` receives one line per step done.
pub async fn apply(aws: &Aws, plan: &Plan, say: &(dyn Fn(String) + Sync)) -> Result<(), AwsError> {
    if plan.format != plan::PLAN_FORMAT {
        return Err(AwsError::invalid(
            format!(
                "plan format {} is not supported (this fullslack writes {})",
                plan.format,
                plan::PLAN_FORMAT
            ),
            "make a new plan with this version of fullslack",
        ));
    }
    if plan.region != aws.region {
        return Err(AwsError::invalid(
            format!(
                "the plan is for region {}, the connection for {}",
                plan.region, aws.region
            ),
            "apply the plan with the region it was made for",
        ));
    }
    let have = read_actual(aws, &plan.stack, &plan.target, &plan.lookup).await?;
    plan::check_current(plan, &have).map_err(|detail| AwsError::StalePlan { detail })?;
    let mut ids: ec2::Ids = have
        .iter()
        .filter_map(|r| r.id.clone().map(|id| ((r.kind, r.name.clone()), id)))
        .collect();
    let timeout = Duration::from_secs(plan.wait_timeout_secs);
    let mut retire = ec2::Retire::new();
    for ch in &plan.changes {
        let kind = ch.resource().kind;
        match kind {
            Kind::EcrRepository => ecr::apply(aws, &plan.stack, ch, say).await?,
            Kind::SecurityGroup | Kind::KeyPair | Kind::Instance | Kind::ElasticIp => {
                ec2::apply(aws, &plan.stack, &mut ids, &mut retire, ch, timeout, say).await?;
            }
            _ => ecs::apply(aws, &plan.stack, &mut ids, ch, timeout, say).await?,
        }
    }
    ec2::retire_all(aws, &retire, timeout, say).await
}
