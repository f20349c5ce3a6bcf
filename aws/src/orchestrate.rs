//! The whole stack at once, as the CLI drives it: read what exists, plan (desired against
//! actual, with the cross-resource steps the diff alone does not find), plan a destroy, and
//! apply a plan step by step, handing each change to its resource family.

use std::time::Duration;

use crate::cost::CostEstimate;
use crate::family::Step;
use crate::plan::{self, Plan, PLAN_FORMAT};
use crate::resource::{Kind, Resource};
use crate::spec::{Lookup, StackSpec, TargetSpec};
use crate::{ec2, ecr, ecs, Aws, AwsError};

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
    let lookup = Lookup::of(spec);
    let (want, mut notes) = desired(aws, spec).await?;
    let have = read_actual(aws, &spec.name, spec.target.as_str(), &lookup).await?;
    let (mut changes, mut unchanged) = plan::diff(&want, &have);
    // ECS needs no such step: a new task definition also changes the service's
    // `task_definition` fingerprint, so the diff already finds the service update.
    if let TargetSpec::Ec2(e) = &spec.target {
        ec2::address::link_addresses(&mut changes, &mut unchanged, &have, &want);
        if e.ssh_cidr.is_none() {
            notes.push("port 22 stays closed: ec2.ssh_cidr is not set. Deploys over SSH need it: set it to the addresses that deploy (e.g. your office's /32 or CI's range)".into());
        }
    }
    Ok(Plan {
        format: PLAN_FORMAT,
        stack: spec.name.clone(),
        target: spec.target.as_str().to_string(),
        region: spec.region.clone(),
        destroy: false,
        changes,
        unchanged,
        cost: CostEstimate::of(&want),
        wait_timeout_secs: spec.wait_timeout_secs,
        lookup,
        notes,
    })
}

/// Plans the removal of everything the stack created (found by its tags), and nothing else.
pub async fn plan_destroy(aws: &Aws, spec: &StackSpec) -> Result<Plan, AwsError> {
    let lookup = Lookup::of(spec);
    let have = read_actual(aws, &spec.name, spec.target.as_str(), &lookup).await?;
    if let Some(cluster) = &lookup.cluster {
        if have
            .iter()
            .any(|r| r.kind == Kind::EcsCluster && &r.name == cluster)
        {
            ecs::cluster::check_cluster_only_ours(aws, &spec.name, cluster).await?;
        }
    }
    let (changes, unchanged) = plan::diff(&[], &have);
    Ok(Plan {
        format: PLAN_FORMAT,
        stack: spec.name.clone(),
        target: spec.target.as_str().to_string(),
        region: spec.region.clone(),
        destroy: true,
        changes,
        unchanged,
        cost: CostEstimate::default(),
        wait_timeout_secs: spec.wait_timeout_secs,
        lookup,
        notes: Vec::new(),
    })
}

/// Refuses a plan of another format or region.
fn check_plan_fits(aws: &Aws, plan: &Plan) -> Result<(), AwsError> {
    if plan.format != PLAN_FORMAT {
        return Err(AwsError::invalid(
            format!(
                "plan format {} is not supported (this fullslack writes {})",
                plan.format, PLAN_FORMAT
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
    Ok(())
}

/// Applies exactly `plan`: first re-reads AWS and refuses if anything the plan saw has changed,
/// then runs the steps in order. `say` receives one line per step done.
pub async fn apply(aws: &Aws, plan: &Plan, say: &(dyn Fn(String) + Sync)) -> Result<(), AwsError> {
    check_plan_fits(aws, plan)?;
    let have = read_actual(aws, &plan.stack, &plan.target, &plan.lookup).await?;
    plan::check_current(plan, &have).map_err(|detail| AwsError::StalePlan { detail })?;
    let mut step = Step {
        aws,
        stack: &plan.stack,
        ids: have
            .iter()
            .filter_map(|r| r.id.clone().map(|id| ((r.kind, r.name.clone()), id)))
            .collect(),
        retire: Vec::new(),
        timeout: Duration::from_secs(plan.wait_timeout_secs),
        say,
    };
    for ch in &plan.changes {
        match ch.resource().kind {
            Kind::EcrRepository => ecr::apply(aws, &plan.stack, ch, say).await?,
            Kind::SecurityGroup | Kind::KeyPair | Kind::Instance | Kind::ElasticIp => {
                ec2::apply(&mut step, ch).await?;
            }
            _ => ecs::apply(&mut step, ch).await?,
        }
    }
    ecs::target_group::retire_replaced(&step).await?;
    ec2::retire_all(&step).await
}
